//! Running one command through `CqrsFramework` over [`PgEventStore`], with the expected version,
//! the receipt and bounded retries.
//!
//! Commands on one aggregate queue inside the process ([`Queues`]): they run one at a time, each
//! on the state the previous one left in the cache, instead of racing for the same sequence number
//! and retrying. So in one process contention costs waiting, never a conflict, and no database
//! work. Only a writer in another process can still win a race; that loser retries on fresh state
//! after a growing, jittered pause ([`backoff`]), while holding its aggregate's queue (the
//! commands behind it would lose the same race).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cqrs_es::{Aggregate, AggregateError, CqrsFramework};
use gigledger_domain::snapshot::SnapshotSchema;
use rand::Rng;
use tokio::sync::OwnedMutexGuard;

use crate::metadata::CommandMetadata;
use crate::scope::{self, CommitReceipt};
use crate::store::{self, PgEventRepository, PgEventStore, StoreConfig};
use uuid::Uuid;

/// How many times a command without an expected version is tried when it keeps losing the race
/// for the next sequence number to other processes, before the conflict is reported. With
/// [`backoff`], the tries span at least about half a second: long enough for another process
/// to get through a burst of commands on the same aggregate.
pub const MAX_ATTEMPTS: u32 = 10;

/// The first pause before a retry; it doubles with each one, up to [`RETRY_PAUSE_CAP`].
const RETRY_PAUSE_BASE: Duration = Duration::from_millis(5);
const RETRY_PAUSE_CAP: Duration = Duration::from_millis(200);

/// The pause before try `attempt` (2, 3, …): the doubling ceiling's upper half at random ("equal
/// jitter"), so that two processes that collided once do not retry in step, and the pause still
/// grows with every loss.
fn backoff(attempt: u32) -> Duration {
    let doublings = attempt.saturating_sub(2).min(16);
    let ceiling = RETRY_PAUSE_BASE
        .saturating_mul(1 << doublings)
        .min(RETRY_PAUSE_CAP);
    let half = ceiling / 2;
    half + rand::thread_rng().gen_range(Duration::ZERO..=half)
}

/// One queue per aggregate id, in this process. An entry lives only while a command holds or
/// waits for it, so memory follows the commands in flight, not the aggregates ever seen.
#[derive(Default)]
struct Queues {
    lanes: Mutex<HashMap<String, Lane>>,
}

struct Lane {
    mutex: Arc<tokio::sync::Mutex<()>>,
    /// The turns that hold or wait for `mutex`, counted under the map's lock (not by `Arc`
    /// counts, which a cancelled wait may release later than its turn).
    users: usize,
}

/// A command's place in its aggregate's queue; the next command's turn comes when it drops
/// (tokio's mutex is fair: commands run in arrival order).
struct Turn<'a> {
    queues: &'a Queues,
    aggregate_id: &'a str,
    guard: Option<OwnedMutexGuard<()>>,
}

impl Queues {
    async fn turn<'a>(&'a self, aggregate_id: &'a str) -> Turn<'a> {
        let mutex = {
            let mut lanes = self.lanes.lock().unwrap_or_else(|e| e.into_inner());
            let lane = lanes
                .entry(aggregate_id.to_owned())
                .or_insert_with(|| Lane {
                    mutex: Arc::default(),
                    users: 0,
                });
            lane.users += 1;
            Arc::clone(&lane.mutex)
        };
        // The turn exists before the wait, so a caller that gives up waiting still leaves.
        let mut turn = Turn {
            queues: self,
            aggregate_id,
            guard: None,
        };
        turn.guard = Some(mutex.lock_owned().await);
        turn
    }
}

impl Drop for Turn<'_> {
    fn drop(&mut self) {
        self.guard = None;
        let mut lanes = self.queues.lanes.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(lane) = lanes.get_mut(self.aggregate_id) {
            lane.users -= 1;
            if lane.users == 0 {
                lanes.remove(self.aggregate_id);
            }
        }
    }
}

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
    A: Aggregate + SnapshotSchema + Clone,
    A::Event: 'static,
{
    cqrs: CqrsFramework<A, PgEventStore<A>>,
    store: PgEventStore<A>,
    queues: Queues,
}

impl<A> CommandBus<A>
where
    A: Aggregate + SnapshotSchema + Clone,
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
            queues: Queues::default(),
        }
    }

    /// Runs `command` on `aggregate_id`, after the commands on it that this process received
    /// before. With `expected_version`, a moved aggregate is a [`CommandError::Conflict`] at once;
    /// without, a race lost to another process is retried from fresh state after a pause, up to
    /// [`MAX_ATTEMPTS`] tries (the aggregate re-decides on the new state each time).
    pub async fn execute(
        &self,
        aggregate_id: &str,
        command: A::Command,
        metadata: &CommandMetadata,
        expected_version: Option<u64>,
    ) -> Result<Committed<A::Event>, CommandError<A::Error>> {
        let _turn = self.queues.turn(aggregate_id).await;
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
                    tokio::time::sleep(backoff(attempt)).await;
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

#[cfg(test)]
mod tests {
    use super::*;

    fn lanes(queues: &Queues) -> usize {
        queues.lanes.lock().unwrap().len()
    }

    #[tokio::test]
    async fn a_queue_entry_lives_only_while_a_command_holds_or_waits_for_it() {
        let queues = Queues::default();
        let first = queues.turn("a").await;
        let other = queues.turn("b").await;
        assert_eq!(lanes(&queues), 2);

        // A command that gives up while waiting behind `first` leaves nothing behind, whichever
        // of the two goes first.
        let gave_up = tokio::time::timeout(Duration::from_millis(1), queues.turn("a")).await;
        assert!(
            gave_up.is_err(),
            "the second command on a waits for the first"
        );
        drop(other);
        assert_eq!(lanes(&queues), 1);
        drop(first);
        assert_eq!(lanes(&queues), 0);

        let first = queues.turn("a").await;
        let mut waiting = Box::pin(queues.turn("a"));
        assert!(futures::poll!(waiting.as_mut()).is_pending());
        drop(first);
        drop(waiting);
        assert_eq!(lanes(&queues), 0);
    }

    #[tokio::test]
    async fn commands_on_one_aggregate_take_their_turns_in_arrival_order() {
        let queues = Arc::new(Queues::default());
        let order = Arc::new(Mutex::new(Vec::new()));
        let first = queues.turn("a").await;
        let mut waiting = Vec::new();
        for n in 0..5 {
            let (mine, order) = (Arc::clone(&queues), Arc::clone(&order));
            waiting.push(tokio::spawn(async move {
                let _turn = mine.turn("a").await;
                order.lock().unwrap().push(n);
            }));
            // Let task n reach the queue before task n + 1 is spawned (a task yields only once
            // it waits in the mutex's queue).
            while queues.lanes.lock().unwrap()["a"].users < n + 2 {
                tokio::task::yield_now().await;
            }
        }
        drop(first);
        for task in waiting {
            task.await.unwrap();
        }
        assert_eq!(*order.lock().unwrap(), vec![0, 1, 2, 3, 4]);
        assert_eq!(lanes(&queues), 0);
    }

    #[test]
    fn the_pause_before_a_retry_grows_and_stays_within_its_bounds() {
        for attempt in 2..=MAX_ATTEMPTS {
            let ceiling = RETRY_PAUSE_BASE
                .saturating_mul(1 << (attempt - 2))
                .min(RETRY_PAUSE_CAP);
            let pause = backoff(attempt);
            assert!(
                pause >= ceiling / 2 && pause <= ceiling,
                "{attempt}: {pause:?}"
            );
        }
        assert_eq!(backoff(u32::MAX).max(RETRY_PAUSE_CAP), RETRY_PAUSE_CAP);
    }
}
