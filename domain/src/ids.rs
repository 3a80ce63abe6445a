//! Typed ids, so a `ContractId` can never be passed where a `GigId` is expected.
//!
//! Ids are UUID v7 (time-ordered, so indexes stay compact) and are chosen by the caller, never by
//! the domain: a command carries the ids of what it creates, which keeps `handle` deterministic.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

macro_rules! typed_id {
    ($(#[$meta:meta])* $name:ident) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, utoipa::ToSchema)]
        #[serde(transparent)]
        #[schema(value_type = String, format = Uuid)]
        pub struct $name(pub Uuid);

        impl $name {
            /// A fresh, time-ordered (v7) id.
            #[expect(
                clippy::new_without_default,
                reason = "a default id would be either random or nil, both surprising; ids are always chosen explicitly"
            )]
            #[must_use]
            pub fn new() -> Self {
                Self(Uuid::now_v7())
            }

            /// The underlying UUID.
            #[must_use]
            pub const fn as_uuid(&self) -> Uuid {
                self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Display::fmt(&self.0, f)
            }
        }

        impl FromStr for $name {
            type Err = uuid::Error;

            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Uuid::parse_str(s).map(Self)
            }
        }

        impl From<Uuid> for $name {
            fn from(uuid: Uuid) -> Self {
                Self(uuid)
            }
        }

        impl From<$name> for Uuid {
            fn from(id: $name) -> Self {
                id.0
            }
        }
    };
}

typed_id!(
    /// A client's job posting; also the gig stream's aggregate id.
    GigId
);
typed_id!(
    /// A freelancer's proposal, unique within the platform (it lives inside its gig's stream).
    ProposalId
);
typed_id!(
    /// A contract; also the aggregate id of both the contract and its escrow stream.
    ContractId
);
typed_id!(
    /// A milestone: chosen when the proposal is submitted and kept by the contract and escrow.
    MilestoneId
);
typed_id!(
    /// A dispute over one milestone of a contract.
    DisputeId
);
typed_id!(
    /// A payout: one request to transfer part of a freelancer's available earnings to their payout
    /// account, unique within the platform (it lives inside the freelancer's wallet stream).
    PayoutId
);
typed_id!(
    /// A person (the JWT `sub`), or the nil id for the platform itself (see `Actor::system`).
    UserId
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_id_displays_and_parses_as_its_uuid() {
        let id = ContractId::new();
        let text = id.to_string();
        assert_eq!(text, id.0.to_string());
        assert_eq!(text.parse::<ContractId>(), Ok(id));
        assert!("not-a-uuid".parse::<ContractId>().is_err());
    }

    #[test]
    fn an_id_serialises_as_a_bare_uuid_string() {
        let id = GigId::new();
        let json = serde_json::to_string(&id).ok();
        assert_eq!(json, Some(format!("\"{}\"", id.0)));
    }

    #[test]
    fn new_ids_are_version_7() {
        assert_eq!(MilestoneId::new().0.get_version_num(), 7);
    }
}
