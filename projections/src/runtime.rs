//! The worker runtime: one worker per named handler over the global log.
//!
//! A worker reads a batch after its checkpoint, hands it to the handler inside a transaction, and
//! moves its checkpoint in the same transaction, so a crash at any instant leaves the whole batch
//! applied or none of it. The checkpoint update is conditional on the checkpoint the batch was read
//! after: a second runner that got there first makes this one roll back, so an event is never
//! applied twice even if two processes run the same worker. A PostgreSQL advisory lock (held by a
//! dedicated session) keeps that to one active runner per handler across processes; when its
//! process dies the session ends, the lock is released, and a standby takes over at its next try.
//!
//! Process managers are workers too: their handler sends commands (idempotent ones) instead of
//! writing tables, so a batch repeated after a crash changes nothing.
//!
//! A handler that keeps failing on one event stops its worker, with the event's position and the
//! error stored in `projection_checkpoints` (shown by `/readyz` and `gigledger projections status`)
//! and logged. The event is never skipped.
//!
//! A failure marked [`RetryLater`] never stops the worker; if it keeps retrying one event for
//! longer than [`WorkerConfig::stall_after`], its stored state is `stalled` until it gets past.

use std::sync::atomic::{AtomicU64, Ordering as AtomicOrdering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use sqlx::{Connection, PgConnection, PgPool, Row};
use tokio::sync::watch;

use crate::log::{read_after, Checkpoint, RecordedEvent};

/// What a handler's failure says; it is stored and logged as text.
pub type HandlerError = Box<dyn std::error::Error + Send + Sync>;

/// A failure that says nothing against the event: a step whose precondition another worker has
/// not met yet, a conflict, a lost connection. The worker retries it with growing pauses and never
/// stops on it (the error shows in `projection_checkpoints.last_error` meanwhile).
#[derive(Debug, thiserror::Error)]
#[error("{0} (will retry)")]
pub struct RetryLater(pub String);

/// Marks `error` as one to retry rather than stop on.
pub fn retry_later(error: impl std::fmt::Display) -> HandlerError {
    Box::new(RetryLater(error.to_string()))
}

fn is_transient(error: &HandlerError) -> bool {
    if error.downcast_ref::<RetryLater>().is_some() {
        return true;
    }
    matches!(
        error.downcast_ref::<sqlx::Error>(),
        Some(
            sqlx::Error::Io(_)
                | sqlx::Error::PoolTimedOut
                | sqlx::Error::PoolClosed
                | sqlx::Error::WorkerCrashed
        )
    )
}

/// A named consumer of the global log.
#[async_trait::async_trait]
pub trait Handler: Send + Sync + 'static {
    /// The stored name (its checkpoint row's key). Never change it: a new name starts from zero.
    fn name(&self) -> &str;

    /// Applies one batch, in log order. Writes through `tx` commit together with the checkpoint;
    /// `tx`'s `search_path` starts with the schema the worker targets, so read-model SQL names
    /// its tables unqualified. An error rolls the whole batch back.
    async fn handle(
        &self,
        tx: &mut PgConnection,
        events: &[RecordedEvent],
    ) -> Result<(), HandlerError>;

    /// A gate a batch must pass before its transaction opens, for handlers that take a second
    /// connection from the pool while their batch's transaction holds one (process managers run
    /// commands). Without it, as many such batches as the pool has connections could each hold
    /// one and wait for another, forever: shared by all of them, with fewer permits than the
    /// pool has connections, it keeps a connection free for them.
    fn gate(&self) -> Option<Arc<tokio::sync::Semaphore>> {
        None
    }
}

/// How a worker paces itself.
#[derive(Clone, Debug)]
pub struct WorkerConfig {
    /// Events per batch (and per transaction).
    pub batch_size: i64,
    /// How long to wait for a NOTIFY before looking anyway.
    pub poll_interval: Duration,
    /// How often a standby tries to take the lease.
    pub lease_retry: Duration,
    /// How often one event is tried before the worker stops on it.
    pub max_attempts: u32,
    /// How long a worker may keep retrying one event (a failure counted as transient) before it
    /// is reported `stalled`. It keeps retrying; the state says that what depends on it stopped.
    pub stall_after: Duration,
}

impl Default for WorkerConfig {
    fn default() -> Self {
        Self {
            batch_size: 500,
            poll_interval: Duration::from_millis(500),
            lease_retry: Duration::from_secs(1),
            max_attempts: 5,
            stall_after: Duration::from_secs(60),
        }
    }
}

/// Where a worker writes: the live read-model schema, or the rebuild schema under another
/// checkpoint name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    pub schema: &'static str,
    pub checkpoint: String,
}

impl Target {
    pub fn live(name: &str) -> Self {
        Self {
            schema: "read",
            checkpoint: name.to_owned(),
        }
    }

    pub fn rebuild(name: &str) -> Self {
        Self {
            schema: "read_rebuild",
            checkpoint: format!("{name}#rebuild"),
        }
    }
}

/// Wakes workers when events are appended: one `LISTEN gigledger_events` connection per process,
/// fanned out through a watch channel. If the listener is lost, workers keep polling.
#[derive(Clone)]
pub struct LogNotifier {
    rx: watch::Receiver<u64>,
}

impl LogNotifier {
    /// Starts listening in the background.
    pub async fn start(pool: &PgPool) -> Result<Self, sqlx::Error> {
        let mut listener = sqlx::postgres::PgListener::connect_with(pool).await?;
        listener.listen("gigledger_events").await?;
        let (tx, rx) = watch::channel(0u64);
        tokio::spawn(async move {
            let mut n = 0u64;
            loop {
                match listener.recv().await {
                    Ok(_) => {
                        n = n.wrapping_add(1);
                        if tx.send(n).is_err() {
                            return; // every worker is gone
                        }
                    }
                    // Nobody to wake any more (the pool may be closed, too): stop retrying.
                    Err(_) if tx.is_closed() => return,
                    // PgListener reconnects by itself on the next recv; pace the retries.
                    Err(e) => {
                        tracing::warn!(error = %e, "event notifications interrupted; workers poll meanwhile");
                        tokio::time::sleep(Duration::from_secs(1)).await;
                    }
                }
            }
        });
        Ok(Self { rx })
    }

    /// A notifier that never fires (workers only poll).
    pub fn polling() -> Self {
        let (tx, rx) = watch::channel(0u64);
        std::mem::forget(tx); // keep the channel open: receivers then simply never change
        Self { rx }
    }

    /// Returns when events were appended since the last call, or after `at_most`.
    pub async fn wait(&mut self, at_most: Duration) {
        let _woken_or_timed_out = tokio::time::timeout(at_most, self.rx.changed()).await;
    }
}

/// How long the lease session may go without a word before it counts as lost, when no other
/// bound is given ([`Leases::with_timeout`]).
pub const DEFAULT_LEASE_TIMEOUT: Duration = Duration::from_secs(10);

/// The leases of one process: a single dedicated session (outside the pool) holding the advisory
/// lock of every worker this process runs. When the process dies the session ends and every lock
/// is released at once. If the session is lost while the process lives, the generation changes,
/// and workers that held a lease under the old session go back to asking for it.
///
/// A session can also be lost without either side seeing the connection close (a half-open
/// connection: the process froze, or the network dropped packets): TCP alone would notice only
/// after its own timeout, minutes to hours. Both sides are bounded by the lease timeout instead:
/// the server ends the session when it has been idle that long (`idle_session_timeout`; it is
/// pinged far more often), which releases its locks for a standby; and this process gives every
/// exchange on it that long before it drops the session as lost. The mutex over the session is
/// therefore never held longer than one timeout.
pub struct Leases {
    pool: PgPool,
    timeout: Duration,
    session: tokio::sync::Mutex<Option<PgConnection>>,
    generation: AtomicU64,
}

impl Leases {
    /// Leases with [`DEFAULT_LEASE_TIMEOUT`].
    pub fn new(pool: &PgPool) -> Arc<Self> {
        Self::with_timeout(pool, DEFAULT_LEASE_TIMEOUT)
    }

    /// Leases whose session counts as lost after `timeout` without an answer (this side) or
    /// without a ping (the server's side). Run [`Leases::keep_alive`] beside the workers (as
    /// `api`'s `Workers` does): it pings at least three times per timeout; without it the server
    /// ends a session idle for longer than the timeout, and nothing here would notice.
    pub fn with_timeout(pool: &PgPool, timeout: Duration) -> Arc<Self> {
        Arc::new(Self {
            pool: pool.clone(),
            timeout: timeout.max(Duration::from_millis(100)),
            session: tokio::sync::Mutex::new(None),
            generation: AtomicU64::new(0),
        })
    }

    /// Runs one exchange on the lease session within the lease timeout.
    async fn bounded<T>(
        &self,
        exchange: impl std::future::Future<Output = Result<T, sqlx::Error>>,
    ) -> Result<T, sqlx::Error> {
        tokio::time::timeout(self.timeout, exchange)
            .await
            .unwrap_or_else(|_| {
                Err(sqlx::Error::Io(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    "the lease session did not answer within the lease timeout",
                )))
            })
    }

    /// A new lease session, which the server ends once it has been idle for the lease timeout.
    async fn connect(&self) -> Result<PgConnection, sqlx::Error> {
        let millis = self.timeout.as_millis().to_string();
        let options = (*self.pool.connect_options())
            .clone()
            .options([("idle_session_timeout", millis)]);
        self.bounded(PgConnection::connect_with(&options)).await
    }

    /// Takes `name`'s lease if nobody holds it. `Some(generation)` when this process holds it.
    async fn try_take(&self, name: &str) -> Result<Option<u64>, sqlx::Error> {
        let mut session = self.session.lock().await;
        if session.is_none() {
            *session = Some(self.connect().await?);
            self.generation.fetch_add(1, AtomicOrdering::SeqCst);
        }
        let Some(conn) = session.as_mut() else {
            return Ok(None);
        };
        let taken: Result<bool, sqlx::Error> = self
            .bounded(
                sqlx::query_scalar("select pg_try_advisory_lock(hashtextextended($1, 0))")
                    .bind(lease_key(name))
                    .fetch_one(&mut *conn),
            )
            .await;
        match taken {
            Ok(true) => Ok(Some(self.generation.load(AtomicOrdering::SeqCst))),
            Ok(false) => Ok(None),
            Err(e) => {
                // The session is unusable; dropping it ends it, which releases its locks.
                *session = None;
                self.generation.fetch_add(1, AtomicOrdering::SeqCst);
                Err(e)
            }
        }
    }

    /// Pings the lease session every `interval` (at least three times per lease timeout, so the
    /// server never finds it idle that long) until `shutdown`, so a session the server dropped
    /// (a network cut, `pg_terminate_backend`, the idle timeout) or that stopped answering is
    /// noticed within one interval plus the timeout: the generation changes and this process's
    /// workers stop and ask for their leases again.
    pub async fn keep_alive(
        self: Arc<Self>,
        interval: Duration,
        mut shutdown: watch::Receiver<bool>,
    ) {
        let interval = interval.min(self.timeout / 3);
        loop {
            {
                let mut session = self.session.lock().await;
                if let Some(conn) = session.as_mut() {
                    let ping = self
                        .bounded(sqlx::query("select 1").execute(&mut *conn))
                        .await;
                    if ping.is_err() {
                        *session = None;
                        self.generation.fetch_add(1, AtomicOrdering::SeqCst);
                        tracing::warn!("lost the lease session; workers will ask again");
                    }
                }
            }
            tokio::select! {
                () = tokio::time::sleep(interval) => {}
                _ = shutdown.changed() => return,
            }
        }
    }

    /// Whether a lease taken under `generation` is still held.
    fn holds(&self, generation: u64) -> bool {
        self.generation.load(AtomicOrdering::SeqCst) == generation
    }

    /// Gives `name`'s lease back (a stopping worker), if the session that took it still lives.
    async fn release(&self, name: &str, generation: u64) {
        let mut session = self.session.lock().await;
        if !self.holds(generation) {
            return;
        }
        if let Some(conn) = session.as_mut() {
            let unlocked = self
                .bounded(
                    sqlx::query("select pg_advisory_unlock(hashtextextended($1, 0))")
                        .bind(lease_key(name))
                        .execute(&mut *conn),
                )
                .await;
            if unlocked.is_err() {
                // Not answering: end the session (and with it every lock it holds).
                *session = None;
                self.generation.fetch_add(1, AtomicOrdering::SeqCst);
            }
        }
    }
}

/// The advisory lock key of a worker's lease. `statuses` spells the same prefix in SQL.
fn lease_key(name: &str) -> String {
    format!("gigledger-worker:{name}")
}

/// The outcome of one batch attempt.
#[derive(Debug, PartialEq, Eq)]
enum Step {
    /// Applied this many events, up to this checkpoint.
    Applied(usize, Checkpoint),
    /// Nothing settled after the checkpoint. `pending`: committed events exist past it that are
    /// not settled yet (an older transaction elsewhere is still open), so look again soon: their
    /// NOTIFY has already been sent.
    CaughtUp { pending: bool },
    /// Another runner moved the checkpoint first; this batch was rolled back.
    Overtaken,
}

/// Creates a worker's checkpoint row at the start of the log if it has none.
pub async fn ensure_checkpoint(pool: &PgPool, name: &str) -> Result<(), sqlx::Error> {
    sqlx::query(
        "insert into projection_checkpoints (name) values ($1) on conflict (name) do nothing",
    )
    .bind(name)
    .execute(pool)
    .await?;
    Ok(())
}

/// Where a worker stands (the start of the log if it never ran).
pub async fn load_checkpoint(pool: &PgPool, name: &str) -> Result<Checkpoint, sqlx::Error> {
    let row =
        sqlx::query("select transaction_id, position from projection_checkpoints where name = $1")
            .bind(name)
            .fetch_optional(pool)
            .await?;
    match row {
        None => Ok(Checkpoint::START),
        Some(row) => Ok(Checkpoint {
            transaction_id: row.try_get("transaction_id")?,
            position: row.try_get("position")?,
        }),
    }
}

/// Runs one batch: read after the checkpoint, apply, move the checkpoint, commit.
async fn step(
    pool: &PgPool,
    handler: &dyn Handler,
    target: &Target,
    batch_size: i64,
) -> Result<Step, StepError> {
    let from = load_checkpoint(pool, &target.checkpoint)
        .await
        .map_err(StepError::Database)?;
    // Taken before the transaction's connection, held until it commits.
    let _permit = match handler.gate() {
        Some(gate) => Some(
            gate.acquire_owned()
                .await
                .map_err(|_| StepError::Database(sqlx::Error::PoolClosed))?,
        ),
        None => None,
    };
    let mut tx = pool.begin().await.map_err(StepError::Database)?;
    // Read before this transaction writes anything: it has no transaction id yet, so it does not
    // hold back its own view of the settled log.
    let events = read_after(&mut *tx, from, batch_size)
        .await
        .map_err(StepError::Database)?;
    let Some(last) = events.last() else {
        drop(tx);
        let pending = crate::log::pending_after(pool, from)
            .await
            .map_err(StepError::Database)?;
        return Ok(Step::CaughtUp { pending });
    };
    let to = last.checkpoint();
    sqlx::query("select set_config('search_path', $1, true)")
        .bind(format!("{}, public", target.schema))
        .execute(&mut *tx)
        .await
        .map_err(StepError::Database)?;
    handler
        .handle(&mut tx, &events)
        .await
        .map_err(|e| StepError::Handler {
            first: events[0].checkpoint(),
            last: to,
            error: e.to_string(),
            transient: is_transient(&e),
        })?;
    let moved = sqlx::query(
        "update projection_checkpoints
            set transaction_id = $4, position = $5, events_applied = events_applied + $6,
                updated_at = now(), status = 'running', failed_position = null, last_error = null
          where name = $1 and transaction_id = $2 and position = $3",
    )
    .bind(&target.checkpoint)
    .bind(from.transaction_id)
    .bind(from.position)
    .bind(to.transaction_id)
    .bind(to.position)
    .bind(i64::try_from(events.len()).unwrap_or(i64::MAX))
    .execute(&mut *tx)
    .await
    .map_err(StepError::Database)?;
    if moved.rows_affected() != 1 {
        tx.rollback().await.map_err(StepError::Database)?;
        return Ok(Step::Overtaken);
    }
    tx.commit().await.map_err(StepError::Database)?;
    Ok(Step::Applied(events.len(), to))
}

#[derive(Debug)]
enum StepError {
    Database(sqlx::Error),
    Handler {
        /// The first event of the failed batch.
        first: Checkpoint,
        /// The last event of the failed batch: the failing one is somewhere up to here.
        last: Checkpoint,
        error: String,
        transient: bool,
    },
}

/// Runs `handler` until `shutdown` turns true: takes the lease, then applies batches as events
/// arrive. Returns when shut down, or when the handler failed on one event `max_attempts` times
/// (the failure is recorded first).
pub async fn run_worker(
    pool: PgPool,
    handler: Arc<dyn Handler>,
    target: Target,
    config: WorkerConfig,
    leases: Arc<Leases>,
    mut notifier: LogNotifier,
    mut shutdown: watch::Receiver<bool>,
) {
    let name = target.checkpoint.clone();
    loop {
        if *shutdown.borrow() {
            return;
        }
        let generation = match leases.try_take(&name).await {
            Ok(Some(generation)) => generation,
            Ok(None) => {
                sleep_or_shutdown(config.lease_retry, &mut shutdown).await;
                continue;
            }
            Err(e) => {
                tracing::warn!(projection.name = %name, error = %e, "lease check failed");
                sleep_or_shutdown(config.lease_retry, &mut shutdown).await;
                continue;
            }
        };
        if let Err(e) = ensure_checkpoint(&pool, &name).await {
            tracing::warn!(projection.name = %name, error = %e, "cannot create the checkpoint");
            // Advisory locks count: give this one back before asking again.
            leases.release(&name, generation).await;
            sleep_or_shutdown(config.lease_retry, &mut shutdown).await;
            continue;
        }
        tracing::info!(projection.name = %name, "worker took the lease");
        let stopped = drive(
            &pool,
            handler.as_ref(),
            &target,
            &config,
            (&leases, generation),
            &mut notifier,
            &mut shutdown,
        )
        .await;
        leases.release(&name, generation).await;
        if stopped {
            return;
        }
    }
}

/// Applies batches while holding the lease. Returns true when the worker should stop for good.
async fn drive(
    pool: &PgPool,
    handler: &dyn Handler,
    target: &Target,
    config: &WorkerConfig,
    (leases, generation): (&Leases, u64),
    notifier: &mut LogNotifier,
    shutdown: &mut watch::Receiver<bool>,
) -> bool {
    let name = target.checkpoint.as_str();
    let mut batch_size = config.batch_size;
    // After a failure, batches of one until the worker is past the whole batch that failed: the
    // failing event is somewhere in it, and a full batch before that would fail on it again
    // (resending, for a process manager, the commands of every event before it).
    let mut narrow_until: Option<Checkpoint> = None;
    let mut failures = 0u32;
    loop {
        if *shutdown.borrow() {
            return true;
        }
        if !leases.holds(generation) {
            tracing::warn!(projection.name = %name, "lost the lease session; asking again");
            return false;
        }
        let started = Instant::now();
        match step(pool, handler, target, batch_size).await {
            Ok(Step::Applied(n, to)) => {
                if failures > 0 {
                    clear_error(pool, name).await;
                }
                failures = 0;
                if narrow_until.is_none_or(|failed| to >= failed) {
                    narrow_until = None;
                    batch_size = config.batch_size;
                }
                metrics::counter!("gigledger_projection_events_total", "projection" => name.to_owned())
                    .increment(n as u64);
                metrics::histogram!("gigledger_projection_batch_seconds", "projection" => name.to_owned())
                    .record(started.elapsed().as_secs_f64());
            }
            Ok(Step::Overtaken) => {
                tracing::warn!(projection.name = %name, "another runner advanced this projection; yielding the lease");
                return false;
            }
            Ok(Step::CaughtUp { pending: true }) => {
                sleep_or_shutdown(Duration::from_millis(20), shutdown).await;
            }
            Ok(Step::CaughtUp { pending: false }) => {
                tokio::select! {
                    () = notifier.wait(config.poll_interval) => {}
                    _ = shutdown.changed() => {}
                }
            }
            Err(StepError::Database(e)) => {
                tracing::warn!(projection.name = %name, error = %e, "database error; retrying");
                sleep_or_shutdown(config.lease_retry, shutdown).await;
                return false;
            }
            Err(StepError::Handler {
                first,
                last,
                error,
                transient,
            }) => {
                // Narrow down to the one event that fails before judging it.
                if batch_size > 1 {
                    batch_size = 1;
                    narrow_until = Some(last);
                    continue;
                }
                failures = failures.saturating_add(1);
                if transient {
                    tracing::warn!(
                        projection.name = %name, event.position = first.position,
                        attempt = failures, error = %error, "step not possible yet; retrying"
                    );
                    record_error(pool, name, first.position, &error, config.stall_after).await;
                    let pause = 100u64.saturating_mul(1 << failures.min(8)).min(30_000);
                    sleep_or_shutdown(Duration::from_millis(pause), shutdown).await;
                    continue;
                }
                tracing::error!(
                    projection.name = %name, event.position = first.position, attempt = failures,
                    error = %error, "projection failed to apply an event"
                );
                if failures >= config.max_attempts {
                    record_failure(pool, name, first.position, &error).await;
                    return true;
                }
                sleep_or_shutdown(Duration::from_millis(100 * u64::from(failures)), shutdown).await;
            }
        }
    }
}

/// Notes a retried failure without stopping the worker; once it has retried the same event for
/// longer than `stall_after`, its state becomes `stalled` (until it gets past the event).
async fn record_error(
    pool: &PgPool,
    name: &str,
    position: i64,
    error: &str,
    stall_after: Duration,
) {
    // In SET, the columns on the right are the row's values before this update: the same
    // failed position as before means the same event is still being retried.
    let stored = sqlx::query(
        "update projection_checkpoints
            set failed_position = $2, last_error = $3, updated_at = now(),
                retrying_since = case when failed_position = $2
                                      then coalesce(retrying_since, now()) else now() end,
                status = case when status = 'running' and failed_position = $2
                                   and retrying_since <= now() - make_interval(secs => $4)
                              then 'stalled' else status end
          where name = $1",
    )
    .bind(name)
    .bind(position)
    .bind(error)
    .bind(stall_after.as_secs_f64())
    .execute(pool)
    .await;
    if let Err(e) = stored {
        tracing::warn!(projection.name = %name, error = %e, "could not record the retried failure");
    }
}

async fn clear_error(pool: &PgPool, name: &str) {
    let _best_effort = sqlx::query(
        "update projection_checkpoints
            set failed_position = null, last_error = null, retrying_since = null,
                status = 'running'
          where name = $1 and status in ('running', 'stalled')",
    )
    .bind(name)
    .execute(pool)
    .await;
}

async fn record_failure(pool: &PgPool, name: &str, position: i64, error: &str) {
    let stored = sqlx::query(
        "update projection_checkpoints
            set status = 'failed', failed_position = $2, last_error = $3, updated_at = now(),
                retrying_since = null
          where name = $1",
    )
    .bind(name)
    .bind(position)
    .bind(error)
    .execute(pool)
    .await;
    if let Err(e) = stored {
        tracing::error!(projection.name = %name, error = %e, "could not record the projection's failure");
    }
}

async fn sleep_or_shutdown(duration: Duration, shutdown: &mut watch::Receiver<bool>) {
    tokio::select! {
        () = tokio::time::sleep(duration) => {}
        _ = shutdown.changed() => {}
    }
}

/// Applies, in batches and without a lease, every event committed before the call, and returns
/// how many events it applied. For tests and rebuilds that must reach the end before going on.
/// (An event can be committed yet not settled while an older transaction is still open somewhere
/// in the cluster; then this waits for that transaction to end.)
pub async fn catch_up(
    pool: &PgPool,
    handler: &dyn Handler,
    target: &Target,
    batch_size: i64,
) -> Result<usize, sqlx::Error> {
    ensure_checkpoint(pool, &target.checkpoint).await?;
    let end = crate::log::last_event(pool).await?;
    let mut total = 0;
    let mut retries = 0;
    loop {
        match step(pool, handler, target, batch_size).await {
            Ok(Step::Applied(n, _)) => total += n,
            Ok(Step::CaughtUp { .. }) => {
                if load_checkpoint(pool, &target.checkpoint).await? >= end {
                    return Ok(total);
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            Ok(Step::Overtaken) => {}
            Err(StepError::Database(e)) => return Err(e),
            Err(StepError::Handler {
                transient: true, ..
            }) if retries < 50 => {
                retries += 1;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(StepError::Handler { first, error, .. }) => {
                return Err(sqlx::Error::Protocol(format!(
                    "{} failed at or after position {}: {error}",
                    handler.name(),
                    first.position
                )))
            }
        }
    }
}

/// One worker's state, for `/readyz`, `gigledger projections status` and metrics.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct WorkerStatus {
    pub name: String,
    pub position: i64,
    pub events_applied: i64,
    /// Settled events not applied yet.
    pub lag_events: i64,
    /// Age of the oldest event not applied yet (0 when caught up).
    pub lag_seconds: f64,
    /// The stored state: `running` (not stopped; a worker that never ran is `running` at
    /// position 0), `stalled` (retrying one event for longer than its bound) or `failed`
    /// (stopped on an event).
    pub status: String,
    pub failed_position: Option<i64>,
    pub last_error: Option<String>,
    /// Whether some process holds the worker's lease right now, i.e. runs it.
    pub leased: bool,
}

impl WorkerStatus {
    /// What the worker is doing, in one word: `failed` and `stalled` as stored, otherwise
    /// `running` when a process holds its lease and `idle` when none does.
    pub fn state(&self) -> &str {
        match self.status.as_str() {
            "running" if !self.leased => "idle",
            other => other,
        }
    }
}

/// The state of every worker in `known` (those that never ran included, at position 0) and of
/// every other worker with a checkpoint (a rebuild's, say), by name.
pub async fn statuses(pool: &PgPool, known: &[String]) -> Result<Vec<WorkerStatus>, sqlx::Error> {
    let rows = sqlx::query(
        "with names as (
             select unnest($1::text[]) as name
              union
             select name from projection_checkpoints
         )
         select n.name, coalesce(c.position, 0) as position,
                coalesce(c.events_applied, 0) as events_applied,
                coalesce(c.status, 'running') as status, c.failed_position, c.last_error,
                lag.events as lag_events,
                coalesce(extract(epoch from now() - lag.oldest)::float8, 0) as lag_seconds,
                -- the lease is a session advisory lock on a bigint key (lease_key in runtime.rs:
                -- the same prefix); pg_locks shows such a key split in two 32-bit halves
                exists (
                    select 1
                      from pg_locks l
                     where l.locktype = 'advisory' and l.granted and l.objsubid = 1
                       and l.database = (select oid from pg_database
                                          where datname = current_database())
                       and l.classid = ((lease.key >> 32) & 4294967295)::oid
                       and l.objid = (lease.key & 4294967295)::oid
                ) as leased
           from names n
           left join projection_checkpoints c on c.name = n.name
           cross join lateral (
               select hashtextextended('gigledger-worker:' || n.name, 0) as key
           ) lease
           cross join lateral (
               select count(*) as events, min(e.recorded_at) as oldest
                 from events e
                where (e.transaction_id, e.position)
                      > (coalesce(c.transaction_id, 0)::text::xid8, coalesce(c.position, 0))
                  and e.transaction_id < log_horizon()
           ) lag
          order by n.name",
    )
    .bind(known)
    .fetch_all(pool)
    .await?;
    rows.iter()
        .map(|r| {
            Ok(WorkerStatus {
                name: r.try_get("name")?,
                position: r.try_get("position")?,
                events_applied: r.try_get("events_applied")?,
                lag_events: r.try_get("lag_events")?,
                lag_seconds: r.try_get("lag_seconds")?,
                status: r.try_get("status")?,
                failed_position: r.try_get("failed_position")?,
                last_error: r.try_get("last_error")?,
                leased: r.try_get("leased")?,
            })
        })
        .collect()
}

/// Waits (bounded) until the worker `name` has applied the event at global `position`. Returns
/// false on timeout. An unknown position (never written, or rolled back) is never reached.
pub async fn wait_for_position(
    pool: &PgPool,
    name: &str,
    position: i64,
    timeout: Duration,
) -> Result<bool, sqlx::Error> {
    let deadline = Instant::now() + timeout;
    // Where the event stands in log order never changes once it is there: look it up until found.
    let mut target = None;
    loop {
        if target.is_none() {
            target = crate::log::checkpoint_of(pool, position).await?;
        }
        if let Some(target) = target {
            if load_checkpoint(pool, name).await? >= target {
                return Ok(true);
            }
        }
        if Instant::now() >= deadline {
            return Ok(false);
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
