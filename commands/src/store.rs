//! The PostgreSQL event store under cqrs-es.
//!
//! [`PgEventRepository`] owns the SQL: a cold load is one statement (snapshot plus the events after
//! it), an append is one statement (all of a command's events, and the snapshot when one is due,
//! atomically). It implements cqrs-es's `PersistedEventRepository`, so the stock
//! `PersistedEventStore` can run on it too.
//!
//! [`PgEventStore`] is the `EventStore` that `CqrsFramework` runs on. Beyond the stock store it
//! keeps recently used aggregates in memory, so a command on a warm aggregate costs one round trip
//! (the append); it returns each commit's version and global position through [`crate::scope`];
//! and it checks the caller's expected version. The cache is only ever an optimisation: the
//! primary key `(aggregate_type, aggregate_id, sequence)` decides every race, a lost race evicts
//! the entry, and the command retries from the database.

use std::collections::HashMap;
use std::marker::PhantomData;
use std::sync::Arc;

use cqrs_es::persist::{
    EventUpcaster, PersistedEventRepository, PersistenceError, ReplayStream, SerializedEvent,
    SerializedSnapshot,
};
use cqrs_es::{
    Aggregate, AggregateContext, AggregateError, DomainEvent, EventEnvelope, EventStore,
};
use gigledger_domain::snapshot::{SnapshotSchema, UNVERSIONED};
use gigledger_domain::upcast::{self, Upcaster};
use serde_json::Value;
use sqlx::postgres::PgRow;
use sqlx::{PgPool, Row};
use uuid::Uuid;

use crate::scope::{self, CommitReceipt};

/// The SQL behind the event store.
#[derive(Clone, Debug)]
pub struct PgEventRepository {
    pool: PgPool,
    wake: WakeReaders,
}

/// Wakes log readers after appends: one `NOTIFY gigledger_events` after a commit, coalescing every
/// commit that lands while one is being sent into the next. Sessions that set
/// `gigledger.notify = off` (the service's own pool) skip the trigger's per-commit NOTIFY, which
/// takes a database-wide lock at every commit; this keeps readers as prompt at a fraction of it.
#[derive(Clone, Debug, Default)]
struct WakeReaders {
    inner: Arc<WakeInner>,
}

#[derive(Debug, Default)]
struct WakeInner {
    pending: std::sync::atomic::AtomicBool,
    started: std::sync::OnceLock<()>,
    wake: tokio::sync::Notify,
}

impl WakeReaders {
    fn signal(&self, pool: &PgPool) {
        use std::sync::atomic::Ordering;
        self.inner.pending.store(true, Ordering::SeqCst);
        self.inner.started.get_or_init(|| {
            let inner = Arc::clone(&self.inner);
            let pool = pool.clone();
            tokio::spawn(async move {
                loop {
                    inner.wake.notified().await;
                    while inner.pending.swap(false, Ordering::SeqCst) {
                        if pool.is_closed() {
                            return;
                        }
                        // Best effort: readers poll anyway.
                        let _ = sqlx::query("select pg_notify('gigledger_events', '')")
                            .execute(&pool)
                            .await;
                    }
                }
            });
        });
        self.inner.wake.notify_one();
    }
}

/// One event ready to append.
#[derive(Clone, Debug)]
pub struct NewEvent {
    pub event_id: Uuid,
    pub event_type: String,
    pub event_version: String,
    pub payload: Value,
    pub metadata: Value,
}

/// Where each appended event landed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Appended {
    pub sequence: i64,
    pub position: i64,
}

/// A snapshot to write in the same statement as the events.
#[derive(Clone, Debug)]
pub struct SnapshotUpdate {
    /// The stream version the state includes.
    pub last_sequence: i64,
    /// The aggregate's `SnapshotSchema::SNAPSHOT_VERSION` the state was written with.
    pub schema_version: i32,
    pub payload: Value,
}

/// The unnest arrays are bound in sequence order and `with ordinality` keeps it, so the chain
/// trigger sees each event's predecessor inserted first.
macro_rules! insert_events {
    () => {
        "insert into events (aggregate_type, aggregate_id, sequence, event_type, event_version,
                             payload, metadata, event_id)
         select $1, $2, $3::bigint + e.ord, e.event_type, e.event_version, e.payload, e.metadata,
                e.event_id
           from unnest($4::text[], $5::text[], $6::jsonb[], $7::jsonb[], $8::uuid[])
                with ordinality as e(event_type, event_version, payload, metadata, event_id, ord)
          order by e.ord
         returning sequence, position"
    };
}

const APPEND: &str = insert_events!();

/// Events and snapshot in one statement: either both are written or neither. The snapshot only
/// moves forward, so a slow writer can never replace a newer snapshot with an older one, and a
/// snapshot never makes a command fail.
const APPEND_WITH_SNAPSHOT: &str = concat!(
    "with appended as (",
    insert_events!(),
    "), snapshot as (
        insert into snapshots (aggregate_type, aggregate_id, last_sequence, current_snapshot, payload,
                               schema_version)
        values ($1, $2, $9, 1, $10, $11)
        on conflict (aggregate_type, aggregate_id) do update
           set last_sequence = excluded.last_sequence,
               current_snapshot = snapshots.current_snapshot + 1,
               payload = excluded.payload,
               schema_version = excluded.schema_version
         where snapshots.last_sequence < excluded.last_sequence
    )
    select sequence, position from appended"
);

/// A cold load in one statement: the snapshot row (kind 0) then the events after it (kind 1). Both
/// parts read the same statement snapshot, so they are consistent with each other. A snapshot of
/// another schema version than the caller's (`$3`) is not read at all, so the same statement then
/// returns the whole stream: falling back to a replay costs no second round trip.
const LOAD_WITH_SNAPSHOT: &str = "
    with snap as (
        select last_sequence, current_snapshot, payload
          from snapshots
         where aggregate_type = $1 and aggregate_id = $2 and schema_version = $3
    )
    select 0 as kind, last_sequence as sequence, current_snapshot, null::text as event_type,
           null::text as event_version, payload, null::jsonb as metadata
      from snap
    union all
    select 1, e.sequence, null, e.event_type, e.event_version, e.payload, e.metadata
      from events e
     where e.aggregate_type = $1 and e.aggregate_id = $2
       and e.sequence > coalesce((select last_sequence from snap), 0)
     order by kind, sequence";

const LOAD_AFTER: &str = "
    select aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata
      from events
     where aggregate_type = $1 and aggregate_id = $2 and sequence > $3
     order by sequence";

/// The stock path's snapshot. It cannot know the aggregate's schema version, so it reads and
/// writes only unversioned snapshots (version 0), which [`PgEventStore`] never trusts, and never
/// one of [`PgEventStore`]'s, whose shape it cannot check.
const LOAD_SNAPSHOT: &str = "
    select aggregate_id, last_sequence, current_snapshot, payload
      from snapshots
     where aggregate_type = $1 and aggregate_id = $2 and schema_version = $3";

const LOAD_ALL_OF_TYPE: &str = "
    select aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata
      from events
     where aggregate_type = $1
     order by position";

/// What a cold load found.
#[derive(Debug, Default)]
pub struct StoredStream {
    /// The snapshot, if one exists: (state, version it includes, snapshot count).
    pub snapshot: Option<(Value, i64, i64)>,
    /// The events after the snapshot (or all of them).
    pub events: Vec<SerializedEvent>,
}

impl PgEventRepository {
    pub fn new(pool: PgPool) -> Self {
        Self {
            pool,
            wake: WakeReaders::default(),
        }
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Appends `events` after `current_version` of one stream in one statement, with the snapshot
    /// if given. A stream that moved past `current_version` meanwhile is an `OptimisticLockError`,
    /// and nothing is written.
    pub async fn append(
        &self,
        aggregate_type: &str,
        aggregate_id: &str,
        current_version: i64,
        events: &[NewEvent],
        snapshot: Option<&SnapshotUpdate>,
    ) -> Result<Vec<Appended>, PersistenceError> {
        let appended = Self::append_with(
            &self.pool,
            aggregate_type,
            aggregate_id,
            current_version,
            events,
            snapshot,
        )
        .await?;
        self.wake.signal(&self.pool);
        Ok(appended)
    }

    /// [`Self::append`] on a given connection or transaction (it must be the transaction's first
    /// write, so that its transaction id is taken after the state it decided on was committed).
    pub async fn append_with<'e>(
        db: impl sqlx::PgExecutor<'e>,
        aggregate_type: &str,
        aggregate_id: &str,
        current_version: i64,
        events: &[NewEvent],
        snapshot: Option<&SnapshotUpdate>,
    ) -> Result<Vec<Appended>, PersistenceError> {
        let mut types = Vec::with_capacity(events.len());
        let mut versions = Vec::with_capacity(events.len());
        let mut payloads = Vec::with_capacity(events.len());
        let mut metadata = Vec::with_capacity(events.len());
        let mut ids = Vec::with_capacity(events.len());
        for e in events {
            types.push(e.event_type.as_str());
            versions.push(e.event_version.as_str());
            payloads.push(&e.payload);
            metadata.push(&e.metadata);
            ids.push(e.event_id);
        }
        let query = sqlx::query(match snapshot {
            None => APPEND,
            Some(_) => APPEND_WITH_SNAPSHOT,
        })
        .bind(aggregate_type)
        .bind(aggregate_id)
        .bind(current_version)
        .bind(types)
        .bind(versions)
        .bind(payloads)
        .bind(metadata)
        .bind(ids);
        let query = match snapshot {
            None => query,
            Some(s) => query
                .bind(s.last_sequence)
                .bind(&s.payload)
                .bind(s.schema_version),
        };
        let rows = query.fetch_all(db).await.map_err(map_write_error)?;
        rows.iter()
            .map(|r| {
                Ok(Appended {
                    sequence: r.try_get("sequence")?,
                    position: r.try_get("position")?,
                })
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(map_answer_error)
    }

    /// The snapshot of schema version `snapshot_version` (when given and there is one) and the
    /// events after it, in one round trip. A snapshot of any other version is ignored: the whole
    /// stream comes back.
    pub async fn load(
        &self,
        aggregate_type: &str,
        aggregate_id: &str,
        snapshot_version: Option<i32>,
    ) -> Result<StoredStream, PersistenceError> {
        let Some(snapshot_version) = snapshot_version else {
            let events = self.events_after(aggregate_type, aggregate_id, 0).await?;
            return Ok(StoredStream {
                snapshot: None,
                events,
            });
        };
        let rows = sqlx::query(LOAD_WITH_SNAPSHOT)
            .bind(aggregate_type)
            .bind(aggregate_id)
            .bind(snapshot_version)
            .fetch_all(&self.pool)
            .await
            .map_err(map_read_error)?;
        let mut stream = StoredStream::default();
        for row in &rows {
            let kind: i32 = row.try_get("kind").map_err(map_read_error)?;
            if kind == 0 {
                stream.snapshot = Some((
                    row.try_get("payload").map_err(map_read_error)?,
                    row.try_get("sequence").map_err(map_read_error)?,
                    row.try_get("current_snapshot").map_err(map_read_error)?,
                ));
            } else {
                stream.events.push(SerializedEvent {
                    aggregate_id: aggregate_id.to_owned(),
                    aggregate_type: aggregate_type.to_owned(),
                    sequence: to_usize(row.try_get("sequence").map_err(map_read_error)?)?,
                    event_type: row.try_get("event_type").map_err(map_read_error)?,
                    event_version: row.try_get("event_version").map_err(map_read_error)?,
                    payload: row.try_get("payload").map_err(map_read_error)?,
                    metadata: row.try_get("metadata").map_err(map_read_error)?,
                });
            }
        }
        Ok(stream)
    }

    /// One stream's events after `after_sequence`, in order.
    pub async fn events_after(
        &self,
        aggregate_type: &str,
        aggregate_id: &str,
        after_sequence: i64,
    ) -> Result<Vec<SerializedEvent>, PersistenceError> {
        let rows = sqlx::query(LOAD_AFTER)
            .bind(aggregate_type)
            .bind(aggregate_id)
            .bind(after_sequence)
            .fetch_all(&self.pool)
            .await
            .map_err(map_read_error)?;
        rows.iter().map(serialized_event).collect()
    }
}

fn serialized_event(row: &PgRow) -> Result<SerializedEvent, PersistenceError> {
    let read = || -> Result<SerializedEvent, sqlx::Error> {
        Ok(SerializedEvent {
            aggregate_id: row.try_get("aggregate_id")?,
            aggregate_type: row.try_get("aggregate_type")?,
            sequence: 0,
            event_type: row.try_get("event_type")?,
            event_version: row.try_get("event_version")?,
            payload: row.try_get("payload")?,
            metadata: row.try_get("metadata")?,
        })
    };
    let mut event = read().map_err(map_read_error)?;
    event.sequence = to_usize(row.try_get("sequence").map_err(map_read_error)?)?;
    Ok(event)
}

fn to_usize(n: i64) -> Result<usize, PersistenceError> {
    usize::try_from(n).map_err(|e| PersistenceError::DeserializationError(Box::new(e)))
}

fn to_i64(n: usize) -> Result<i64, PersistenceError> {
    i64::try_from(n).map_err(|e| PersistenceError::UnknownError(Box::new(e)))
}

/// Whether a failed store operation may have written anything.
///
/// The caller acts on it: after a charge, a write that certainly did not commit leaves the charge
/// unrecorded (it is voided), while one that may have committed must be left to reconciliation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WriteOutcome {
    /// Nothing was committed: the statement never reached the server (no connection from the
    /// pool, arguments that did not encode), the server refused it with an `ERROR` (which rolls
    /// its transaction back: a statement timeout, a deadlock, a constraint, a trigger's refusal,
    /// …), or it only read.
    NotCommitted,
    /// Perhaps committed: the connection failed or the server ended the session (`FATAL`,
    /// `PANIC`) while the statement or its commit was under way, or the statement succeeded and
    /// its answer could not be read.
    Unknown,
}

/// A failed database operation of the store, with whether it may have committed. It travels boxed
/// inside cqrs-es's errors; [`write_outcome`] finds it again.
#[derive(Debug, thiserror::Error)]
#[error("{source}")]
pub struct StoreFailure {
    pub outcome: WriteOutcome,
    #[source]
    pub source: sqlx::Error,
}

/// What a failed store operation may have written, as far as the error shows. Errors that did not
/// come from the store's SQL (serialisation, conversions) are `Unknown`: nothing vouches for them.
pub fn write_outcome<E: std::error::Error>(error: &AggregateError<E>) -> WriteOutcome {
    match error {
        // A refusal or a lost race: `handle` refused, or the primary key refused the append.
        AggregateError::UserError(_) | AggregateError::AggregateConflict => {
            WriteOutcome::NotCommitted
        }
        AggregateError::DatabaseConnectionError(e)
        | AggregateError::DeserializationError(e)
        | AggregateError::UnexpectedError(e) => e
            .downcast_ref::<StoreFailure>()
            .map_or(WriteOutcome::Unknown, |f| f.outcome),
    }
}

/// How a statement that writes failed, from the error alone. A single statement outside a
/// transaction commits only if it succeeds, and inside one makes the transaction roll back if it
/// fails, so any `ERROR` the server answers means nothing of it was committed; only a connection
/// lost (or a session ended by the server) before the answer leaves it open.
pub fn classify(e: &sqlx::Error) -> WriteOutcome {
    use sqlx::postgres::{PgDatabaseError, PgSeverity};
    match e {
        // Never sent: no connection, or the arguments did not encode.
        sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::Configuration(_)
        | sqlx::Error::InvalidArgument(_)
        | sqlx::Error::Encode(_)
        | sqlx::Error::TypeNotFound { .. } => WriteOutcome::NotCommitted,
        sqlx::Error::Database(db) => match db.try_downcast_ref::<PgDatabaseError>() {
            Some(pg) if pg.severity() == PgSeverity::Error => WriteOutcome::NotCommitted,
            // FATAL or PANIC end the session, possibly while the commit was being made durable.
            _ => WriteOutcome::Unknown,
        },
        // The connection broke mid-way (Io, Tls, Protocol, WorkerCrashed), or the statement
        // succeeded and its rows did not decode (RowNotFound, Column*, Decode).
        _ => WriteOutcome::Unknown,
    }
}

/// A unique violation on the events' primary key is a lost race for the next sequence number;
/// anything else keeps whether it may have committed.
fn map_write_error(e: sqlx::Error) -> PersistenceError {
    if let sqlx::Error::Database(db) = &e {
        if db.constraint() == Some("events_pkey") {
            return PersistenceError::OptimisticLockError;
        }
    }
    let outcome = classify(&e);
    persistence_error(e, outcome)
}

/// A failed read wrote nothing.
fn map_read_error(e: sqlx::Error) -> PersistenceError {
    persistence_error(e, WriteOutcome::NotCommitted)
}

/// A write succeeded but its answer could not be read: it committed (or will with its
/// transaction), so nothing about it is certain any more.
fn map_answer_error(e: sqlx::Error) -> PersistenceError {
    persistence_error(e, WriteOutcome::Unknown)
}

fn persistence_error(e: sqlx::Error, outcome: WriteOutcome) -> PersistenceError {
    type Boxed = Box<dyn std::error::Error + Send + Sync>;
    let kind: fn(Boxed) -> PersistenceError = match &e {
        sqlx::Error::Io(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::Tls(_)
        | sqlx::Error::Protocol(_) => PersistenceError::ConnectionError,
        sqlx::Error::ColumnDecode { .. } | sqlx::Error::Decode(_) => {
            PersistenceError::DeserializationError
        }
        _ => PersistenceError::UnknownError,
    };
    kind(Box::new(StoreFailure { outcome, source: e }))
}

impl PersistedEventRepository for PgEventRepository {
    async fn get_events<A: Aggregate>(
        &self,
        aggregate_id: &str,
    ) -> Result<Vec<SerializedEvent>, PersistenceError> {
        self.events_after(A::TYPE, aggregate_id, 0).await
    }

    async fn get_last_events<A: Aggregate>(
        &self,
        aggregate_id: &str,
        last_sequence: usize,
    ) -> Result<Vec<SerializedEvent>, PersistenceError> {
        self.events_after(A::TYPE, aggregate_id, to_i64(last_sequence)?)
            .await
    }

    async fn get_snapshot<A: Aggregate>(
        &self,
        aggregate_id: &str,
    ) -> Result<Option<SerializedSnapshot>, PersistenceError> {
        let row = sqlx::query(LOAD_SNAPSHOT)
            .bind(A::TYPE)
            .bind(aggregate_id)
            .bind(UNVERSIONED)
            .fetch_optional(&self.pool)
            .await
            .map_err(map_read_error)?;
        let Some(row) = row else { return Ok(None) };
        Ok(Some(SerializedSnapshot {
            aggregate_id: row.try_get("aggregate_id").map_err(map_read_error)?,
            aggregate: row.try_get("payload").map_err(map_read_error)?,
            current_sequence: to_usize(row.try_get("last_sequence").map_err(map_read_error)?)?,
            current_snapshot: to_usize(row.try_get("current_snapshot").map_err(map_read_error)?)?,
        }))
    }

    /// The stock store's write path. Unlike postgres-es, the snapshot is written in the same
    /// statement as the events, so a snapshot conflict can never leave events committed while the
    /// command reports failure.
    async fn persist<A: Aggregate>(
        &self,
        events: &[SerializedEvent],
        snapshot_update: Option<(String, Value, usize)>,
    ) -> Result<(), PersistenceError> {
        let Some(first) = events.first() else {
            return Ok(());
        };
        let current_version = to_i64(first.sequence)? - 1;
        let new_events = events
            .iter()
            .map(|e| NewEvent {
                event_id: Uuid::now_v7(),
                event_type: e.event_type.clone(),
                event_version: e.event_version.clone(),
                payload: e.payload.clone(),
                metadata: e.metadata.clone(),
            })
            .collect::<Vec<_>>();
        let last_sequence = current_version + to_i64(events.len())?;
        let snapshot = snapshot_update.map(|(_, payload, _)| SnapshotUpdate {
            last_sequence,
            schema_version: UNVERSIONED,
            payload,
        });
        self.append(
            A::TYPE,
            &first.aggregate_id,
            current_version,
            &new_events,
            snapshot.as_ref(),
        )
        .await?;
        Ok(())
    }

    /// Reads the whole stream before handing it over, so that a database error is reported as an
    /// error rather than as a stream that ends early.
    async fn stream_events<A: Aggregate>(
        &self,
        aggregate_id: &str,
    ) -> Result<ReplayStream, PersistenceError> {
        let events = self.events_after(A::TYPE, aggregate_id, 0).await?;
        Ok(replay_stream(events))
    }

    async fn stream_all_events<A: Aggregate>(&self) -> Result<ReplayStream, PersistenceError> {
        let rows = sqlx::query(LOAD_ALL_OF_TYPE)
            .bind(A::TYPE)
            .fetch_all(&self.pool)
            .await
            .map_err(map_read_error)?;
        let events = rows
            .iter()
            .map(serialized_event)
            .collect::<Result<Vec<_>, _>>()?;
        Ok(replay_stream(events))
    }
}

fn replay_stream(events: Vec<SerializedEvent>) -> ReplayStream {
    let (mut feed, stream) = ReplayStream::new(events.len().max(1));
    tokio::spawn(async move {
        for event in events {
            if feed.push(Ok(event)).await.is_err() {
                return; // the consumer hung up; nobody is left to tell
            }
        }
    });
    stream
}

/// One step of the domain's upcaster chain ([`gigledger_domain::upcast`]) as a cqrs-es
/// `EventUpcaster`: the write side reads old events through the same pure functions as the read
/// side's `AnyEvent::decode`.
struct ChainStep(&'static Upcaster);

impl EventUpcaster for ChainStep {
    fn can_upcast(&self, event_type: &str, event_version: &str) -> bool {
        self.0.applies_to(event_type, event_version)
    }

    fn upcast(&self, mut event: SerializedEvent) -> SerializedEvent {
        event.payload = self.0.upcast(std::mem::take(&mut event.payload));
        self.0.to.clone_into(&mut event.event_version);
        event
    }
}

/// The domain's upcasters for one aggregate type, in chain order, as cqrs-es `EventUpcaster`s
/// (what [`PgEventStore::new`] uses; the stock `PersistedEventStore` takes them too).
pub fn upcasters_for(aggregate_type: &str) -> Vec<Box<dyn EventUpcaster>> {
    upcast::chain_for(aggregate_type)
        .map(|step| Box::new(ChainStep(step)) as Box<dyn EventUpcaster>)
        .collect()
}

/// How an aggregate type is stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StoreConfig {
    /// Take a snapshot every this many events (`None`: never; loads replay the whole stream).
    pub snapshot_every: Option<u64>,
    /// How many aggregates to keep in memory (0: no cache; every command loads from the database).
    pub cache_capacity: usize,
}

impl Default for StoreConfig {
    fn default() -> Self {
        Self {
            snapshot_every: Some(100),
            cache_capacity: 10_000,
        }
    }
}

struct Cached<A> {
    aggregate: A,
    version: u64,
}

/// The `EventStore` that `CqrsFramework` runs on (see the module doc). A cheap handle: clones
/// share one cache.
pub struct PgEventStore<A: Aggregate> {
    inner: Arc<StoreInner<A>>,
}

impl<A: Aggregate> Clone for PgEventStore<A> {
    fn clone(&self) -> Self {
        Self {
            inner: Arc::clone(&self.inner),
        }
    }
}

impl<A: Aggregate> std::ops::Deref for PgEventStore<A> {
    type Target = StoreInner<A>;
    fn deref(&self) -> &StoreInner<A> {
        &self.inner
    }
}

#[doc(hidden)]
pub struct StoreInner<A: Aggregate> {
    repo: PgEventRepository,
    config: StoreConfig,
    upcasters: Vec<Box<dyn EventUpcaster>>,
    cache: Option<quick_cache::sync::Cache<String, Arc<Cached<A>>>>,
    _aggregate: PhantomData<A>,
}

/// The aggregate a command runs against, with the version it was loaded at.
pub struct StoreContext<A> {
    aggregate_id: String,
    aggregate: A,
    version: u64,
}

impl<A> StoreContext<A> {
    /// The version the aggregate was loaded at.
    pub fn version(&self) -> u64 {
        self.version
    }
}

impl<A: Aggregate> AggregateContext<A> for StoreContext<A> {
    fn aggregate(&mut self) -> &mut A {
        &mut self.aggregate
    }
}

impl<A> PgEventStore<A>
where
    A: Aggregate + SnapshotSchema + Clone,
{
    /// A store that reads old events through the domain's upcaster chain for `A`.
    pub fn new(repo: PgEventRepository, config: StoreConfig) -> Self {
        Self::build(repo, config, upcasters_for(A::TYPE))
    }

    fn build(
        repo: PgEventRepository,
        config: StoreConfig,
        upcasters: Vec<Box<dyn EventUpcaster>>,
    ) -> Self {
        let cache = (config.cache_capacity > 0)
            .then(|| quick_cache::sync::Cache::new(config.cache_capacity));
        Self {
            inner: Arc::new(StoreInner {
                repo,
                config,
                upcasters,
                cache,
                _aggregate: PhantomData,
            }),
        }
    }

    /// Replaces the upcasters, which turn stored events of an older `event_version` into the
    /// current shape on read (the domain's chain, by default).
    pub fn with_upcasters(self, upcasters: Vec<Box<dyn EventUpcaster>>) -> Self {
        Self::build(self.repo.clone(), self.config, upcasters)
    }

    pub fn repository(&self) -> &PgEventRepository {
        &self.repo
    }

    /// Forgets one cached aggregate: its next command loads it from the database.
    pub fn evict(&self, aggregate_id: &str) {
        if let Some(cache) = &self.cache {
            cache.remove(aggregate_id);
        }
    }

    /// Forgets every cached aggregate (tests use it to force loads from the database).
    pub fn clear_cache(&self) {
        if let Some(cache) = &self.cache {
            cache.clear();
        }
    }

    fn cached(&self, aggregate_id: &str) -> Option<Arc<Cached<A>>> {
        self.cache.as_ref()?.get(aggregate_id)
    }

    /// Keeps the newest state seen. Check-then-insert can race with another task caching a newer
    /// version; the cost is a stale entry, which the next append detects and evicts.
    fn remember(&self, aggregate_id: &str, aggregate: A, version: u64) {
        let Some(cache) = &self.cache else { return };
        if cache
            .get(aggregate_id)
            .is_some_and(|current| current.version >= version)
        {
            return;
        }
        cache.insert(
            aggregate_id.to_owned(),
            Arc::new(Cached { aggregate, version }),
        );
    }

    /// An event as stored, through every upcaster that applies, as the current shape. A version
    /// the upcasters do not lead to the one this code writes (a newer writer's) is refused rather
    /// than read as the current shape.
    fn decode(&self, event: SerializedEvent) -> Result<A::Event, PersistenceError> {
        let event = self.upcasters.iter().fold(event, |event, upcaster| {
            if upcaster.can_upcast(&event.event_type, &event.event_version) {
                upcaster.upcast(event)
            } else {
                event
            }
        });
        let decoded: A::Event = serde_json::from_value(event.payload)?;
        let current = decoded.event_version();
        if event.event_version != current {
            return Err(PersistenceError::DeserializationError(
                format!(
                    "{} event {} #{} is stored at version {}, which this code cannot read \
                     (it writes version {current})",
                    A::TYPE,
                    event.event_type,
                    event.sequence,
                    event.event_version
                )
                .into(),
            ));
        }
        Ok(decoded)
    }

    async fn load_from_db(&self, aggregate_id: &str) -> Result<StoreContext<A>, PersistenceError> {
        let stream = self
            .repo
            .load(
                A::TYPE,
                aggregate_id,
                self.config.snapshot_every.map(|_| A::SNAPSHOT_VERSION),
            )
            .await?;
        let mut context = StoreContext {
            aggregate_id: aggregate_id.to_owned(),
            aggregate: A::default(),
            version: 0,
        };
        let events = match stream.snapshot {
            Some((state, version, _)) => match serde_json::from_value::<A>(state) {
                Ok(aggregate) => {
                    context.aggregate = aggregate;
                    context.version = u64::try_from(version)
                        .map_err(|e| PersistenceError::DeserializationError(Box::new(e)))?;
                    stream.events
                }
                // A snapshot of the current schema version that does not decode is a bug in the
                // version's bump; the events still give the state.
                Err(_) => self.repo.events_after(A::TYPE, aggregate_id, 0).await?,
            },
            None => stream.events,
        };
        for event in events {
            context.version = event.sequence as u64;
            let event = self.decode(event)?;
            context.aggregate.apply(event);
        }
        Ok(context)
    }
}

impl<A> EventStore<A> for PgEventStore<A>
where
    A: Aggregate + SnapshotSchema + Clone,
    A::Event: 'static,
{
    type AC = StoreContext<A>;

    async fn load_events(
        &self,
        aggregate_id: &str,
    ) -> Result<Vec<EventEnvelope<A>>, AggregateError<A::Error>> {
        let events = self.repo.events_after(A::TYPE, aggregate_id, 0).await?;
        let mut envelopes = Vec::with_capacity(events.len());
        for event in events {
            let sequence = event.sequence;
            let metadata: HashMap<String, String> =
                serde_json::from_value(event.metadata.clone()).unwrap_or_default();
            envelopes.push(EventEnvelope {
                aggregate_id: aggregate_id.to_owned(),
                sequence,
                payload: self.decode(event)?,
                metadata,
            });
        }
        Ok(envelopes)
    }

    async fn load_aggregate(
        &self,
        aggregate_id: &str,
    ) -> Result<StoreContext<A>, AggregateError<A::Error>> {
        let expected = scope::expected_version();
        if let Some(hit) = self.cached(aggregate_id) {
            // A cached version other than the expected one may just be stale: ask the database.
            if expected.is_none_or(|v| v == hit.version) {
                scope::loaded_from_cache();
                return Ok(StoreContext {
                    aggregate_id: aggregate_id.to_owned(),
                    aggregate: hit.aggregate.clone(),
                    version: hit.version,
                });
            }
        }
        let context = self.load_from_db(aggregate_id).await?;
        self.remember(aggregate_id, context.aggregate.clone(), context.version);
        if expected.is_some_and(|v| v != context.version) {
            return Err(AggregateError::AggregateConflict);
        }
        Ok(context)
    }

    async fn commit(
        &self,
        events: Vec<A::Event>,
        context: StoreContext<A>,
        metadata: HashMap<String, String>,
    ) -> Result<Vec<EventEnvelope<A>>, AggregateError<A::Error>> {
        let StoreContext {
            aggregate_id,
            aggregate,
            version,
        } = context;
        if events.is_empty() {
            scope::record(
                CommitReceipt {
                    version,
                    position: None,
                    event_ids: Vec::new(),
                },
                Vec::<A::Event>::new(),
            );
            return Ok(Vec::new());
        }
        let metadata_json = serde_json::to_value(&metadata)?;
        let new_events = events
            .iter()
            .map(|event| {
                Ok(NewEvent {
                    event_id: Uuid::now_v7(),
                    event_type: event.event_type(),
                    event_version: event.event_version(),
                    payload: serde_json::to_value(event)?,
                    metadata: metadata_json.clone(),
                })
            })
            .collect::<Result<Vec<_>, serde_json::Error>>()?;
        let new_version = version + events.len() as u64;
        // `handle` wrote its events through the EventSink, which applied them: `aggregate` is
        // already the state after this command, ready to snapshot and cache.
        let snapshot = match self.config.snapshot_every {
            Some(every) if every > 0 && new_version / every > version / every => {
                Some(SnapshotUpdate {
                    last_sequence: i64::try_from(new_version)
                        .map_err(|e| AggregateError::UnexpectedError(Box::new(e)))?,
                    schema_version: A::SNAPSHOT_VERSION,
                    payload: serde_json::to_value(&aggregate)?,
                })
            }
            _ => None,
        };
        let current =
            i64::try_from(version).map_err(|e| AggregateError::UnexpectedError(Box::new(e)))?;
        let appended = match self
            .repo
            .append(
                A::TYPE,
                &aggregate_id,
                current,
                &new_events,
                snapshot.as_ref(),
            )
            .await
        {
            Ok(appended) => appended,
            Err(e) => {
                self.evict(&aggregate_id);
                return Err(e.into());
            }
        };
        self.remember(&aggregate_id, aggregate, new_version);
        scope::record(
            CommitReceipt {
                version: new_version,
                position: appended.last().map(|a| a.position),
                event_ids: new_events.iter().map(|e| e.event_id).collect(),
            },
            events.clone(),
        );
        let first_sequence = usize::try_from(version + 1)
            .map_err(|e| AggregateError::UnexpectedError(Box::new(e)))?;
        let envelopes = events
            .into_iter()
            .zip(first_sequence..)
            .map(|(payload, sequence)| EventEnvelope {
                aggregate_id: aggregate_id.clone(),
                sequence,
                payload,
                metadata: metadata.clone(),
            })
            .collect();
        Ok(envelopes)
    }
}
