//! A minimal aggregate for exercising the store itself (the domain's aggregates have their own
//! tests): a tally that adds numbers and refuses negative ones.

use chrono::Utc;
use cqrs_es::event_sink::EventSink;
use cqrs_es::{Aggregate, DomainEvent};
use gigledger_commands::bus::CommandBus;
use gigledger_commands::metadata::CommandMetadata;
use gigledger_commands::store::{NewEvent, PgEventRepository, StoreConfig};
use gigledger_domain::SnapshotSchema;
use serde::{Deserialize, Serialize};
use sqlx::PgPool;
use uuid::Uuid;

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Tally {
    pub total: i64,
    pub additions: u32,
}

#[derive(Clone, Debug)]
pub enum TallyCommand {
    Add(i64),
    /// Adds each number as its own event, in one command.
    AddMany(Vec<i64>),
    /// Writes nothing.
    Nothing,
    /// Adds `n` only if the total is at least `threshold` (a rule that depends on the state).
    AddIfAtLeast {
        threshold: i64,
        n: i64,
    },
    /// Moves the total to `target` (nothing to write when it is there already).
    SetTo(i64),
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum TallyEvent {
    Added { n: i64 },
}

impl DomainEvent for TallyEvent {
    fn event_type(&self) -> String {
        "Added".to_owned()
    }
    fn event_version(&self) -> String {
        "1".to_owned()
    }
}

#[derive(Debug, PartialEq, thiserror::Error)]
pub enum Negative {
    #[error("cannot add a negative number")]
    Negative,
    #[error("the total is below the threshold")]
    BelowThreshold,
}

/// Not 1, so that a test can tell the current version from an old one.
impl SnapshotSchema for Tally {
    const SNAPSHOT_VERSION: i32 = 2;
}

impl Aggregate for Tally {
    const TYPE: &'static str = "tally";
    type Command = TallyCommand;
    type Event = TallyEvent;
    type Error = Negative;
    type Services = ();

    async fn handle(
        &mut self,
        command: TallyCommand,
        _: &(),
        sink: &EventSink<Self>,
    ) -> Result<(), Negative> {
        let numbers = match command {
            TallyCommand::Add(n) => vec![n],
            TallyCommand::AddMany(ns) => ns,
            TallyCommand::Nothing => vec![],
            TallyCommand::AddIfAtLeast { threshold, n } => {
                if self.total < threshold {
                    return Err(Negative::BelowThreshold);
                }
                vec![n]
            }
            TallyCommand::SetTo(target) => {
                if target == self.total {
                    vec![]
                } else {
                    sink.write(
                        TallyEvent::Added {
                            n: target - self.total,
                        },
                        self,
                    )
                    .await;
                    return Ok(());
                }
            }
        };
        if numbers.iter().any(|n| *n < 0) {
            return Err(Negative::Negative);
        }
        for n in numbers {
            sink.write(TallyEvent::Added { n }, self).await;
        }
        Ok(())
    }

    fn apply(&mut self, event: TallyEvent) {
        let TallyEvent::Added { n } = event;
        self.total += n;
        self.additions += 1;
    }
}

pub fn bus(pool: &PgPool, config: StoreConfig) -> CommandBus<Tally> {
    CommandBus::new(PgEventRepository::new(pool.clone()), config, ())
}

pub fn meta() -> CommandMetadata {
    CommandMetadata::for_user(
        Uuid::now_v7().to_string(),
        Uuid::now_v7().to_string(),
        "client",
        Utc::now(),
    )
}

/// A raw event for the repository-level tests.
pub fn added(n: i64) -> NewEvent {
    NewEvent {
        event_id: Uuid::now_v7(),
        event_type: "Added".to_owned(),
        event_version: "1".to_owned(),
        payload: serde_json::json!({ "Added": { "n": n } }),
        metadata: serde_json::json!({ "correlation_id": "test" }),
    }
}
