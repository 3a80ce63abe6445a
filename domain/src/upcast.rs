//! Upcasters: how a stored event of an older `event_version` becomes the current shape, as pure
//! functions over its JSON payload.
//!
//! This chain is the only one. The write side's store turns it into cqrs-es `EventUpcaster`s
//! (`commands/src/store.rs`), and [`crate::AnyEvent::decode`] applies it for the read side
//! (projections and process managers), so an old event means the same to every reader. The
//! version an event is written with is where its chain ends ([`current_version`]), so a new step
//! here is also what makes the code write the new version.
//!
//! Changing an event's shape: add a step from the version written so far to the next one, and
//! keep every step forever (the log keeps every version ever written). Stored event names never
//! change.

use std::borrow::Cow;

use cqrs_es::Aggregate;
use serde_json::{Map, Value};

use crate::gig::Gig;

/// One step of the chain: an event of `event_type` in a stream of `aggregate_type`, stored at
/// version `from`, becomes version `to`.
#[derive(Clone, Copy, Debug)]
pub struct Upcaster {
    /// The stream's aggregate type (`Aggregate::TYPE`).
    pub aggregate_type: &'static str,
    /// The stored event type.
    pub event_type: &'static str,
    /// The version this step reads.
    pub from: &'static str,
    /// The version it writes.
    pub to: &'static str,
    /// Rewrites the event's fields: the object inside the payload's `{ "<event_type>": … }`.
    /// Total: a field it expects but does not find is left missing, and decoding names it.
    pub rewrite: fn(Map<String, Value>) -> Map<String, Value>,
}

/// Every step, in order (a type's steps from its oldest version on).
pub const CHAIN: &[Upcaster] = &[Upcaster {
    aggregate_type: <Gig as Aggregate>::TYPE,
    event_type: "ProposalAccepted",
    from: "1",
    to: "2",
    rewrite: proposal_accepted_terms_in_one_value,
}];

/// The version of events before any step: what every event was first written as.
pub const FIRST_VERSION: &str = "1";

/// `ProposalAccepted` v1 → v2: the contract's terms, four loose fields in v1 (`currency`,
/// `fee_bps`, `review_window_days`, `max_revisions`), travel as one `terms` value, the same
/// `ContractTerms` the contract starts with, so what the hire fixed is copied whole.
fn proposal_accepted_terms_in_one_value(mut fields: Map<String, Value>) -> Map<String, Value> {
    let mut terms = Map::new();
    for name in ["currency", "fee_bps", "review_window_days", "max_revisions"] {
        if let Some(value) = fields.remove(name) {
            terms.insert(name.to_owned(), value);
        }
    }
    fields.insert("terms".to_owned(), Value::Object(terms));
    fields
}

/// The steps for one aggregate type, in order.
pub fn chain_for(aggregate_type: &str) -> impl Iterator<Item = &'static Upcaster> + '_ {
    CHAIN
        .iter()
        .filter(move |step| step.aggregate_type == aggregate_type)
}

/// The version this code writes events of `event_type` with: where its chain ends.
#[must_use]
pub fn current_version(aggregate_type: &str, event_type: &str) -> &'static str {
    let mut version = FIRST_VERSION;
    for step in chain_for(aggregate_type) {
        if step.event_type == event_type && step.from == version {
            version = step.to;
        }
    }
    version
}

impl Upcaster {
    /// Whether this step reads an event of `event_type` at `event_version`.
    #[must_use]
    pub fn applies_to(&self, event_type: &str, event_version: &str) -> bool {
        self.event_type == event_type && self.from == event_version
    }

    /// The payload one version on. A payload that is not `{ "<event_type>": { … } }` is left as
    /// it is (it cannot decode either way, and decoding says why).
    #[must_use]
    pub fn upcast(&self, payload: Value) -> Value {
        let Value::Object(mut outer) = payload else {
            return payload;
        };
        match outer.remove(self.event_type) {
            Some(Value::Object(fields)) if outer.is_empty() => {
                outer.insert(
                    self.event_type.to_owned(),
                    Value::Object((self.rewrite)(fields)),
                );
            }
            Some(other) => {
                outer.insert(self.event_type.to_owned(), other);
            }
            None => {}
        }
        Value::Object(outer)
    }
}

/// Why a stored event cannot be brought to the current version.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{aggregate_type} event {event_type} is stored at version {stored}, which this code cannot \
     read (it reads versions up to {current})"
)]
pub struct UnknownVersion {
    /// The stream's aggregate type.
    pub aggregate_type: String,
    /// The stored event type.
    pub event_type: String,
    /// The version as stored (after every step that applied).
    pub stored: String,
    /// The version this code writes.
    pub current: &'static str,
}

/// A stored payload at `event_version`, brought to the current version of its event type by
/// every step that applies (borrowed as it is when none does). A version the chain does not
/// lead from (a newer writer's, or one never written) is an error: decoding it as the current
/// shape would misread it.
pub fn upcast<'a>(
    aggregate_type: &str,
    event_type: &str,
    event_version: &str,
    mut payload: Cow<'a, Value>,
) -> Result<Cow<'a, Value>, UnknownVersion> {
    let mut version = event_version;
    for step in chain_for(aggregate_type) {
        if step.applies_to(event_type, version) {
            payload = Cow::Owned(step.upcast(payload.into_owned()));
            version = step.to;
        }
    }
    let current = current_version(aggregate_type, event_type);
    if version == current {
        Ok(payload)
    } else {
        Err(UnknownVersion {
            aggregate_type: aggregate_type.to_owned(),
            event_type: event_type.to_owned(),
            stored: version.to_owned(),
            current,
        })
    }
}

#[cfg(test)]
mod tests {
    use chrono::NaiveDate;
    use serde_json::json;

    use super::*;
    use crate::any_event::AnyEvent;
    use crate::contract::ContractTerms;
    use crate::gig::{GigEvent, MilestoneTerms};
    use crate::ids::{MilestoneId, ProposalId};
    use crate::money::Currency;
    use crate::test_support::*;

    fn accepted_v2() -> GigEvent {
        GigEvent::ProposalAccepted {
            gig_id: gig_id(),
            proposal_id: ProposalId(uuid::Uuid::from_u128(200)),
            contract_id: contract_id(),
            client_id: client().user_id,
            freelancer_id: freelancer().user_id,
            milestones: vec![MilestoneTerms {
                milestone_id: MilestoneId(uuid::Uuid::from_u128(400)),
                title: "Design".to_owned(),
                amount: usd(50_000),
                due_date: NaiveDate::from_ymd_opt(2025, 4, 1),
            }],
            terms: ContractTerms {
                currency: Currency::USD,
                fee_bps: 1_000,
                review_window_days: 7,
                max_revisions: 3,
            },
            accepted_at: now(),
            posted_at: now(),
        }
    }

    /// The same hire as an older build stored it: the terms as four loose fields.
    fn accepted_v1() -> Value {
        let mut v2 = serde_json::to_value(accepted_v2()).unwrap();
        let fields = v2["ProposalAccepted"].as_object_mut().unwrap();
        fields.remove("terms");
        fields.insert("currency".to_owned(), json!("USD"));
        fields.insert("fee_bps".to_owned(), json!(1_000));
        fields.insert("review_window_days".to_owned(), json!(7));
        fields.insert("max_revisions".to_owned(), json!(3));
        v2
    }

    #[test]
    fn a_stored_v1_proposal_accepted_is_read_as_v2_with_the_same_terms() {
        let decoded = AnyEvent::decode("gig", "ProposalAccepted", "1", &accepted_v1()).unwrap();
        assert_eq!(decoded, Some(AnyEvent::Gig(accepted_v2())));
        // The current version reads as it is.
        let current = serde_json::to_value(accepted_v2()).unwrap();
        let decoded = AnyEvent::decode("gig", "ProposalAccepted", "2", &current).unwrap();
        assert_eq!(decoded, Some(AnyEvent::Gig(accepted_v2())));
    }

    #[test]
    fn a_v1_payload_is_not_read_as_the_current_shape_without_its_upcaster() {
        assert!(serde_json::from_value::<GigEvent>(accepted_v1()).is_err());
        assert!(AnyEvent::decode("gig", "ProposalAccepted", "2", &accepted_v1()).is_err());
    }

    #[test]
    fn a_version_the_chain_does_not_lead_from_is_refused_not_guessed() {
        let current = serde_json::to_value(accepted_v2()).unwrap();
        let newer = AnyEvent::decode("gig", "ProposalAccepted", "3", &current).unwrap_err();
        assert!(newer.to_string().contains("version 3"), "{newer}");
        let closed = json!({ "GigClosed": { "closed_at": now() } });
        assert!(AnyEvent::decode("gig", "GigClosed", "1", &closed).is_ok());
        assert!(AnyEvent::decode("gig", "GigClosed", "2", &closed).is_err());
    }

    #[test]
    fn each_event_type_s_steps_lead_one_after_the_other_from_the_first_version() {
        for step in CHAIN {
            let before: Vec<_> = CHAIN
                .iter()
                .take_while(|s| !std::ptr::eq(*s, step))
                .filter(|s| {
                    s.aggregate_type == step.aggregate_type && s.event_type == step.event_type
                })
                .collect();
            let expected_from = before.last().map_or(FIRST_VERSION, |s| s.to);
            assert_eq!(step.from, expected_from, "{step:?}");
            assert_ne!(step.from, step.to, "{step:?}");
        }
    }
}
