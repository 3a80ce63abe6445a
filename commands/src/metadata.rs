//! The metadata stored with every event (see `shared/DOMAIN.md`, "Event metadata").
//!
//! It travels as cqrs-es metadata (a string map) and is stored as the `metadata` jsonb column; the
//! store adds the event id, the global position, the record time and the hash in columns of their own.

use std::collections::HashMap;

use chrono::{DateTime, SecondsFormat, Utc};
use uuid::Uuid;

/// Who caused a command, why, and when. Request data travels here, never inside event payloads.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CommandMetadata {
    /// The request that started the chain (`X-Request-Id`, or a new id), shared by every event of
    /// that request and of the process steps it triggers.
    pub correlation_id: String,
    /// What directly caused this command: the command's own id for a person's command, the
    /// triggering event's id for a process manager's.
    pub causation_id: String,
    /// The acting user's id, or `system` for process managers.
    pub actor_id: String,
    /// The role the actor acted in (`client`, `freelancer`, `admin`, ... or `system`).
    pub actor_role: String,
    /// When the command was issued (from the injectable clock).
    pub at: DateTime<Utc>,
}

impl CommandMetadata {
    /// Metadata for a command issued by a person: a fresh command id is its causation.
    pub fn for_user(
        correlation_id: impl Into<String>,
        actor_id: impl Into<String>,
        actor_role: impl Into<String>,
        at: DateTime<Utc>,
    ) -> Self {
        Self {
            correlation_id: correlation_id.into(),
            causation_id: Uuid::now_v7().to_string(),
            actor_id: actor_id.into(),
            actor_role: actor_role.into(),
            at,
        }
    }

    /// Metadata for a command a process manager sends in reaction to `event_id`.
    pub fn for_process(
        correlation_id: impl Into<String>,
        event_id: Uuid,
        at: DateTime<Utc>,
    ) -> Self {
        Self {
            correlation_id: correlation_id.into(),
            causation_id: event_id.to_string(),
            actor_id: "system".to_owned(),
            actor_role: "system".to_owned(),
            at,
        }
    }

    /// The same request continuing with a follow-up step caused by `event_id` (the command service
    /// running a process step itself before it answers).
    pub fn follow_up(&self, event_id: Uuid) -> Self {
        Self {
            correlation_id: self.correlation_id.clone(),
            causation_id: event_id.to_string(),
            actor_id: "system".to_owned(),
            actor_role: "system".to_owned(),
            at: self.at,
        }
    }

    /// The cqrs-es form.
    pub fn to_map(&self) -> HashMap<String, String> {
        HashMap::from([
            ("correlation_id".to_owned(), self.correlation_id.clone()),
            ("causation_id".to_owned(), self.causation_id.clone()),
            ("actor_id".to_owned(), self.actor_id.clone()),
            ("actor_role".to_owned(), self.actor_role.clone()),
            (
                "command_time".to_owned(),
                self.at.to_rfc3339_opts(SecondsFormat::Micros, true),
            ),
        ])
    }
}
