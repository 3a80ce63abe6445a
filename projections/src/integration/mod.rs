//! The public contract of what gigledger publishes to the rest of the marketplace (the NATS relay):
//! an [`Envelope`] per stored event, whose `data` is a documented,
//! versioned shape per event type ([`shapes`]), never the stored payload itself.
//!
//! The shapes carry ids, amounts, statuses, counts and times. Free text people write (gig titles
//! and descriptions, cover letters, milestone titles, submission notes and links, change-request,
//! cancellation and dispute reasons, review texts) stays in the store, and so do provider
//! references (charge, refund and transfer ids, payout account ids) and a review's rating before
//! both reviews are revealed (reviews are double-blind). [`data_of`] names every field of every
//! domain event, so a new event or a new field does not compile until it is given a shape or
//! left out on purpose.
//!
//! `docs/events.md` is generated from these types ([`events_doc`]); a test fails when it is
//! stale or when an event type has no shape.

pub mod shapes;

use chrono::{DateTime, Utc};
use gigledger_domain::AnyEvent;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

pub use shapes::{data_of, EventData};

use crate::log::RecordedEvent;

/// Every subject the relay publishes to starts with this (then `.<aggregate>.<event>`).
pub const SUBJECT_PREFIX: &str = "gigledger";

/// One published event: where it stands in our log, what it is, what caused it, and its data.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Envelope {
    /// The stored event's id; also the message's `Nats-Msg-Id`, so a consumer deduplicates on it.
    pub event_id: Uuid,
    /// The event's global position in our log. Events arrive in log order, which is not always
    /// position order (a transaction that took an earlier position may commit later).
    pub position: i64,
    /// `gig`, `contract`, `escrow` or `wallet`.
    pub aggregate_type: String,
    /// The stream's id (a gig, contract or escrow id, or a freelancer's user id for a wallet).
    pub aggregate_id: String,
    /// The event's number in its stream, from 1.
    pub sequence: i64,
    /// The event type in snake case, e.g. `proposal_submitted`.
    #[serde(rename = "type")]
    pub event_type: String,
    /// The version of `data`'s shape for this type (bumped when the shape changes incompatibly).
    pub version: u32,
    /// When the store recorded the event.
    pub recorded_at: DateTime<Utc>,
    /// The request (`X-Request-Id`) or process that caused it.
    pub correlation_id: Option<String>,
    /// The command or event that caused it.
    pub causation_id: Option<String>,
    /// The type's shape (see `docs/events.md`).
    #[schema(value_type = Object)]
    pub data: Value,
}

impl Envelope {
    /// The subject this envelope is published on: `gigledger.<aggregate>.<event>`.
    #[must_use]
    pub fn subject(&self) -> String {
        subject(&self.aggregate_type, &self.event_type)
    }
}

/// `gigledger.<aggregate_type>.<event_type>`.
#[must_use]
pub fn subject(aggregate_type: &str, event_type: &str) -> String {
    format!("{SUBJECT_PREFIX}.{aggregate_type}.{event_type}")
}

/// Why a stored event has no envelope.
#[derive(Debug, thiserror::Error)]
pub enum EnvelopeError {
    /// A stored event of one of our aggregates that does not decode: never skipped.
    #[error("event {event_id} at position {position} does not decode: {source}")]
    Undecodable {
        event_id: Uuid,
        position: i64,
        source: serde_json::Error,
    },
}

/// The envelope of a stored event; `None` for an aggregate type that is not ours.
pub fn envelope_of(event: &RecordedEvent) -> Result<Option<Envelope>, EnvelopeError> {
    let decoded = AnyEvent::decode(
        &event.aggregate_type,
        &event.event_type,
        &event.event_version,
        &event.payload,
    )
    .map_err(|source| EnvelopeError::Undecodable {
        event_id: event.event_id,
        position: event.position,
        source,
    })?;
    let Some(decoded) = decoded else {
        return Ok(None);
    };
    let data = data_of(&decoded);
    Ok(Some(Envelope {
        event_id: event.event_id,
        position: event.position,
        aggregate_type: event.aggregate_type.clone(),
        aggregate_id: event.aggregate_id.clone(),
        sequence: event.sequence,
        event_type: data.type_name().to_owned(),
        version: data.version(),
        recorded_at: event.recorded_at,
        correlation_id: event.metadata_str("correlation_id").map(str::to_owned),
        causation_id: event.metadata_str("causation_id").map(str::to_owned),
        data: data.to_json(),
    }))
}

/// `ProposalSubmitted` → `proposal_submitted`.
#[must_use]
pub fn snake_case(name: &str) -> String {
    let mut out = String::with_capacity(name.len() + 4);
    for (i, c) in name.chars().enumerate() {
        if c.is_ascii_uppercase() {
            if i > 0 {
                out.push('_');
            }
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

/// The text of `docs/events.md`: the envelope, every event type with its subject, version and
/// what it leaves out, and the JSON Schema of every shape.
#[must_use]
pub fn events_doc() -> String {
    use std::fmt::Write as _;
    let catalog = shapes::catalog();
    let mut doc = String::from(
        "# Published events (generated: do not edit)\n\n\
         <!-- Generated from projections/src/integration by the test `events_doc_is_current`; \
         run it with UPDATE_EVENTS_DOC=1 to rewrite this file. -->\n\n\
         The relay publishes every event of the log, in log order, to NATS JetStream: subject \
         `gigledger.<aggregate>.<type>`, header `Nats-Msg-Id` = `event_id` (JetStream's duplicate \
         window drops a republish; consumers deduplicate on it too), headers `Gigledger-Correlation-Id` \
         and `Gigledger-Causation-Id`. The body is the envelope below as JSON; its `data` has the \
         shape of its `type` at its `version`. A shape changes only by adding optional fields; \
         anything else bumps `version`.\n\n\
         Never published: free text people write (gig titles and descriptions, cover letters, \
         milestone titles, submission notes and links, change-request, cancellation and dispute \
         reasons, review texts, provider failure reasons), provider references (charge, refund and \
         transfer ids, payout account ids, charge keys) and review ratings (reviews are \
         double-blind; read them from the API once revealed). Consumers read those from the API.\n\n\
         ## Event types\n\n\
         | subject | version | shape | left out |\n|---|---|---|---|\n",
    );
    for entry in &catalog {
        let _ = writeln!(
            doc,
            "| `{}` | {} | `{}` | {} |",
            subject(entry.aggregate_type, entry.type_name),
            entry.version,
            entry.schema_name,
            if entry.left_out.is_empty() {
                "—".to_owned()
            } else {
                entry
                    .left_out
                    .iter()
                    .map(|f| format!("`{f}`"))
                    .collect::<Vec<_>>()
                    .join(", ")
            }
        );
    }
    let schemas = serde_json::to_string_pretty(&shapes::json_schemas()).unwrap_or_default();
    let _ = write!(
        doc,
        "\n## Schemas\n\n`envelope` is the message body; `events` maps each subject to the schema \
         of its `data`; `components` holds the shapes and the types they share (OpenAPI 3.1 \
         schema objects, which are JSON Schema).\n\n```json\n{schemas}\n```\n"
    );
    doc
}

#[cfg(test)]
mod tests {
    use super::*;
    use gigledger_domain::gig::{GigEvent, MilestoneTerms};
    use gigledger_domain::{Currency, MilestoneId, Money, ProposalId, UserId};

    #[test]
    fn an_envelope_carries_the_stored_fields_and_no_cover_letter() {
        let usd = Currency::parse("USD").expect("USD");
        let event = GigEvent::ProposalSubmitted {
            proposal_id: ProposalId(Uuid::now_v7()),
            freelancer_id: UserId(Uuid::now_v7()),
            cover_letter: "SECRET-MARKER cover letter".to_owned(),
            milestones: vec![MilestoneTerms {
                milestone_id: MilestoneId(Uuid::now_v7()),
                title: "SECRET-MARKER title".to_owned(),
                amount: Money::new(5_000, usd),
                due_date: None,
            }],
            bid: Money::new(5_000, usd),
            submitted_at: Utc::now(),
        };
        let stored = RecordedEvent {
            position: 42,
            transaction_id: 7,
            aggregate_type: "gig".to_owned(),
            aggregate_id: Uuid::now_v7().to_string(),
            sequence: 3,
            event_type: "ProposalSubmitted".to_owned(),
            event_version: "1".to_owned(),
            payload: serde_json::to_value(&event).expect("a payload"),
            metadata: serde_json::json!({ "correlation_id": "req-1", "causation_id": "cmd-1" }),
            event_id: Uuid::now_v7(),
            recorded_at: Utc::now(),
            hash: Vec::new(),
        };
        let envelope = envelope_of(&stored).expect("decodes").expect("ours");
        assert_eq!(envelope.event_id, stored.event_id);
        assert_eq!(envelope.position, 42);
        assert_eq!(envelope.sequence, 3);
        assert_eq!(envelope.aggregate_id, stored.aggregate_id);
        assert_eq!(envelope.event_type, "proposal_submitted");
        assert_eq!(envelope.subject(), "gigledger.gig.proposal_submitted");
        assert_eq!(envelope.correlation_id.as_deref(), Some("req-1"));
        assert_eq!(envelope.causation_id.as_deref(), Some("cmd-1"));
        assert_eq!(envelope.data["bid"]["amount"], 5_000);
        let text = serde_json::to_string(&envelope).expect("json");
        assert!(!text.contains("SECRET-MARKER"), "{text}");
    }

    #[test]
    fn an_event_of_another_aggregate_type_has_no_envelope() {
        let stored = RecordedEvent {
            position: 1,
            transaction_id: 1,
            aggregate_type: "elsewhere".to_owned(),
            aggregate_id: "x".to_owned(),
            sequence: 1,
            event_type: "Happened".to_owned(),
            event_version: "1".to_owned(),
            payload: serde_json::json!({}),
            metadata: serde_json::json!({}),
            event_id: Uuid::now_v7(),
            recorded_at: Utc::now(),
            hash: Vec::new(),
        };
        assert!(envelope_of(&stored).expect("no error").is_none());
    }
}
