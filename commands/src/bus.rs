//! Running one command through `CqrsFramework` over [`PgEventStore`], with the expected version,
//! the receipt and bounded retries.

use cqrs_es::{Aggregate, AggregateError, CqrsFramework};

use crate::metadata::CommandMetadata;
use crate::scope::{self, CommitReceipt};
use crate::store::{self, PgEventRepository, PgEventStore, StoreConfig};
use uuid::Uuid;

/// How often a command without an expected version is retried after losing a race for the next
/// sequence number before the conflict is reported.
pub const MAX_ATTEMPTS: u32 = 5;

/// Why a command did not take effect.
#[derive(Debug, thiserror::Error)]
pub enum CommandError<E: std::error::Error> {
    /// The aggregate refused the command: a domain rule, in the domain's own words.
    #[error(transparent)]
    Rejected(E),
    /// The aggregate is not at the version the caller expected, or it kept moving under us for
    /// every retry.
    #[error("the {aggregate_type} changed meanwhile; reload it and try again")]
    Conflict { aggregate_type: &'static str },
    /// The store failed (connection, serialisation): not the caller's fault. The command may
    /// have been recorded.
    #[error("event store failure: {0}")]
    Store(String),
    /// The store failed before anything of the command could be committed
    /// ([`crate::store::WriteOutcome::NotCommitted`]).
    #[error("event store failure, nothing written: {0}")]
    NotCommitted(String),
}

impl<E: std::error::Error> CommandError<E> {
    /// The domain's refusal, if that is what this is.
    pub fn rejection(&self) -> Option<&E> {
        match self {
            Self::Rejected(e) => Some(e),
            _ => None,
        }
    }
}

/// What a command wrote: the receipt and the events, each with its stored id.
#[derive(Clone, Debug)]
pub struct Committed<E> {
    pub receipt: CommitReceipt,
    pub events: Vec<(Uuid, E)>,
}

/// One aggregate type's command runner.
pub struct CommandBus<A>
where
    A: Aggregate + Clone,
    A::Event: 'static,
{
    cqrs: CqrsFramework<A, PgEventStore<A>>,
    store: PgEventStore<A>,
}

impl<A> CommandBus<A>
where
    A: Aggregate + Clone,
    A::Command: Clone,
    A::Event: 'static,
{
    pub fn new(repo: PgEventRepository, config: StoreConfig, services: A::Services) -> Self {
        Self::with_store(PgEventStore::new(repo, config), services)
    }

    pub fn with_store(store: PgEventStore<A>, services: A::Services) -> Self {
        Self {
            cqrs: CqrsFramework::new(store.clone(), Vec::new(), services),
            store,
        }
    }

    /// Runs `command` on `aggregate_id`. With `expected_version`, a moved aggregate is a
    /// [`CommandError::Conflict`] at once; without, a lost race is retried from fresh state up to
    /// [`MAX_ATTEMPTS`] times (the aggregate re-decides on the new state each time).
    pub async fn execute(
        &self,
        aggregate_id: &str,
        command: A::Command,
        metadata: &CommandMetadata,
        expected_version: Option<u64>,
    ) -> Result<Committed<A::Event>, CommandError<A::Error>> {
        let mut attempt = 1;
        let mut recheck = true;
        loop {
            let run =
                self.cqrs
                    .execute_with_metadata(aggregate_id, command.clone(), metadata.to_map());
            let (result, collected) = scope::run::<_, A::Event>(expected_version, run).await;
            // Only an append meets the database's primary key. A refusal or a no-op decided on
            // cached state (which another process may have moved on) is decided again on the
            // database's state before it is believed.
            let unverified = collected.from_cache
                && match &result {
                    Ok(()) => collected
                        .receipt
                        .as_ref()
                        .is_some_and(|r| r.position.is_none()),
                    Err(AggregateError::UserError(_)) => true,
                    Err(_) => false,
                };
            if unverified && recheck {
                recheck = false;
                self.store.evict(aggregate_id);
                continue;
            }
            match result {
                Ok(()) => {
                    let receipt = collected.receipt.ok_or_else(|| {
                        CommandError::Store("the store committed without a receipt".to_owned())
                    })?;
                    let events = receipt
                        .event_ids
                        .iter()
                        .copied()
                        .zip(collected.events)
                        .collect();
                    return Ok(Committed { receipt, events });
                }
                Err(AggregateError::UserError(e)) => return Err(CommandError::Rejected(e)),
                Err(AggregateError::AggregateConflict)
                    if expected_version.is_none() && attempt < MAX_ATTEMPTS =>
                {
                    attempt += 1;
                    metrics::counter!("gigledger_command_retries_total", "aggregate" => A::TYPE)
                        .increment(1);
                }
                Err(AggregateError::AggregateConflict) => {
                    return Err(CommandError::Conflict {
                        aggregate_type: A::TYPE,
                    })
                }
                Err(e) if store::write_outcome(&e) == store::WriteOutcome::NotCommitted => {
                    return Err(CommandError::NotCommitted(e.to_string()))
                }
                Err(e) => return Err(CommandError::Store(e.to_string())),
            }
        }
    }

    /// The current state of one aggregate and its version, read from the database (the cache may
    /// be behind another process; it is refreshed by the read).
    pub async fn load(&self, aggregate_id: &str) -> Result<(A, u64), CommandError<A::Error>> {
        use cqrs_es::EventStore;
        self.store.evict(aggregate_id);
        let (result, _) =
            scope::run::<_, A::Event>(None, self.store.load_aggregate(aggregate_id)).await;
        match result {
            Ok(mut context) => {
                let version = context.version();
                let aggregate = std::mem::take(cqrs_es::AggregateContext::aggregate(&mut context));
                Ok((aggregate, version))
            }
            Err(e) => Err(CommandError::Store(e.to_string())),
        }
    }

    pub fn store(&self) -> &PgEventStore<A> {
        &self.store
    }
}
