//! Who sends a command: a signed-in person with roles, or the platform itself.
//!
//! The domain decides authorisation from the actor (roles and party membership); authentication
//! happens at the edge, which builds the `Actor` from the verified token.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::ids::UserId;

/// A role granted by the identity provider (the JWT `roles` claim).
#[derive(
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Serialize,
    Deserialize,
    utoipa::ToSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Posts gigs, hires, funds and approves.
    Client,
    /// Proposes, delivers and gets paid.
    Freelancer,
    /// Reads the audit log and ledgers.
    Auditor,
    /// Reads analytics.
    Analyst,
    /// Resolves disputes and reads everything.
    Admin,
}

impl Role {
    /// The role's wire name, as in the JWT claim.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Client => "client",
            Self::Freelancer => "freelancer",
            Self::Auditor => "auditor",
            Self::Analyst => "analyst",
            Self::Admin => "admin",
        }
    }
}

/// The sender of a command.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Actor {
    /// The person, or [`SYSTEM_USER_ID`] for the platform.
    pub user_id: UserId,
    /// What the person may do.
    pub roles: Vec<Role>,
}

/// The user id the platform acts under. The edge must never accept it as a token's subject.
pub const SYSTEM_USER_ID: UserId = UserId(Uuid::nil());

impl Actor {
    /// A person with the given roles.
    #[must_use]
    pub fn new(user_id: UserId, roles: Vec<Role>) -> Self {
        Self { user_id, roles }
    }

    /// The platform itself, for commands sent by process managers and the command service's
    /// follow-up steps. Process-only commands refuse every other actor.
    #[must_use]
    pub const fn system() -> Self {
        Self {
            user_id: SYSTEM_USER_ID,
            roles: Vec::new(),
        }
    }

    /// Whether this is the platform rather than a person.
    #[must_use]
    pub fn is_system(&self) -> bool {
        // Roles must be empty too, so a token that somehow carried the nil subject together with
        // roles is still not mistaken for the platform.
        self.user_id == SYSTEM_USER_ID && self.roles.is_empty()
    }

    /// Whether the actor holds `role`.
    #[must_use]
    pub fn has_role(&self, role: Role) -> bool {
        self.roles.contains(&role)
    }
}

/// The one capacity in which a command was authorised: what its events record as `actor_role`.
/// A person acts in one role even if they hold several (a `PostGig` by a client who is also a
/// freelancer is `client`; a party cancelling a contract is whichever party they are in it).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ActingAs {
    /// The platform (process steps).
    System,
    /// A person, in this role.
    Role(Role),
}

impl ActingAs {
    /// The stored name: `system` or the role's wire name.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::System => "system",
            Self::Role(role) => role.as_str(),
        }
    }
}

/// An aggregate that decides who may send each of its commands, and so in which capacity.
///
/// `authorise` is the aggregate's authorisation: its `handle` calls it first and refuses with the
/// same error, so the capacity it answers is exactly the one the command was accepted under. It
/// reads only who the aggregate belongs to (the owner, the parties, a proposal's author), facts
/// fixed when they are created, so the command service may ask it before running the command
/// to know what to record in the events' metadata.
pub trait Authorise: cqrs_es::Aggregate {
    /// The capacity `command` is authorised in on this state, or the refusal.
    fn authorise(&self, command: &Self::Command) -> Result<ActingAs, Self::Error>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_system_actor_is_the_nil_user_without_roles() {
        let system = Actor::system();
        assert!(system.is_system());
        assert!(system.user_id.0.is_nil());
        assert!(!system.has_role(Role::Admin));
    }

    #[test]
    fn a_person_is_never_the_system_even_with_the_nil_id_and_a_role() {
        assert!(!Actor::new(UserId::new(), vec![]).is_system());
        assert!(!Actor::new(SYSTEM_USER_ID, vec![Role::Admin]).is_system());
    }

    #[test]
    fn the_capacity_is_stored_as_one_role_or_system() {
        assert_eq!(ActingAs::System.as_str(), "system");
        assert_eq!(ActingAs::Role(Role::Client).as_str(), "client");
    }

    #[test]
    fn roles_serialise_in_lowercase() {
        let json = serde_json::to_string(&vec![Role::Client, Role::Admin]).ok();
        assert_eq!(json.as_deref(), Some(r#"["client","admin"]"#));
        assert_eq!(Role::Freelancer.as_str(), "freelancer");
    }
}
