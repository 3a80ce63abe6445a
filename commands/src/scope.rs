//! What travels beside a command through `CqrsFramework::execute_with_metadata`.
//!
//! cqrs-es's `execute` returns `()`, and its metadata map is stored with the events, so neither can
//! carry the expected version in or the new version and global position out. Both travel in a
//! task-local scope instead: the command runs on one task from load to commit, so the event store
//! reads the expected version in `load_aggregate` and leaves its receipt in `commit`.

use std::any::Any;
use std::future::Future;
use std::sync::Mutex;

use uuid::Uuid;

/// What one command's commit wrote.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CommitReceipt {
    /// The aggregate's version after the command (unchanged when it wrote nothing).
    pub version: u64,
    /// The global position of the last event written, `None` when the command wrote nothing.
    pub position: Option<i64>,
    /// The ids of the events written, in order.
    pub event_ids: Vec<Uuid>,
}

struct CommandScope {
    expected_version: Option<u64>,
    /// Whether the aggregate was taken from the cache (and so may be stale).
    from_cache: Mutex<bool>,
    receipt: Mutex<Option<CommitReceipt>>,
    /// The committed events, as `Vec<A::Event>` of the aggregate that ran.
    events: Mutex<Option<Box<dyn Any + Send>>>,
}

tokio::task_local! {
    static SCOPE: CommandScope;
}

/// Runs `command` (one `execute_with_metadata` call) in a scope that carries `expected_version`
/// and collects the commit receipt.
/// What a scope collected besides the command's own output.
#[derive(Debug)]
pub struct Collected<E> {
    /// What the commit wrote; `None` if the command never reached a commit.
    pub receipt: Option<CommitReceipt>,
    /// The committed events.
    pub events: Vec<E>,
    /// The command decided on cached state.
    pub from_cache: bool,
}

pub async fn run<F: Future, E: 'static>(
    expected_version: Option<u64>,
    command: F,
) -> (F::Output, Collected<E>) {
    let scope = CommandScope {
        expected_version,
        from_cache: Mutex::new(false),
        receipt: Mutex::new(None),
        events: Mutex::new(None),
    };
    SCOPE
        .scope(scope, async move {
            let output = command.await;
            let (receipt, events, from_cache) = SCOPE.with(|s| {
                let from_cache = *s.from_cache.lock().unwrap_or_else(|e| e.into_inner());
                (take(&s.receipt), take(&s.events), from_cache)
            });
            let events = events
                .and_then(|e| e.downcast::<Vec<E>>().ok())
                .map(|e| *e)
                .unwrap_or_default();
            let collected = Collected {
                receipt,
                events,
                from_cache,
            };
            (output, collected)
        })
        .await
}

/// The version the caller expects the aggregate to be at, if the command runs in a scope that says.
pub(crate) fn expected_version() -> Option<u64> {
    SCOPE.try_with(|s| s.expected_version).ok().flatten()
}

/// Notes that the command's aggregate came from the cache.
pub(crate) fn loaded_from_cache() {
    let _outside_a_scope = SCOPE.try_with(|s| {
        *s.from_cache.lock().unwrap_or_else(|e| e.into_inner()) = true;
    });
}

/// Records what the commit wrote; outside a scope there is nobody to tell, which is fine.
pub(crate) fn record<E: Send + 'static>(receipt: CommitReceipt, events: Vec<E>) {
    let _outside_a_scope = SCOPE.try_with(|s| {
        put(&s.receipt, receipt);
        put(&s.events, Box::new(events) as Box<dyn Any + Send>);
    });
}

// A poisoned lock only means another holder panicked; the slot is still usable.
fn put<T>(slot: &Mutex<Option<T>>, value: T) {
    *slot.lock().unwrap_or_else(|e| e.into_inner()) = Some(value);
}

fn take<T>(slot: &Mutex<Option<T>>) -> Option<T> {
    slot.lock().unwrap_or_else(|e| e.into_inner()).take()
}
