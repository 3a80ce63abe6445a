//! Reading the global log in order, without ever skipping an event.
//!
//! # Why not "everything after position p"
//!
//! `events.position` comes from a sequence at insert time, but transactions commit in any order:
//! transaction A may take position 10 and commit after transaction B has taken 11 and committed.
//! A reader that saw 11 and remembered "after 11" would never see 10.
//!
//! # What we do instead
//!
//! Every event also stores the id of the transaction that wrote it (`transaction_id xid8`). A
//! reader asks for events with `transaction_id < pg_snapshot_xmin(pg_current_snapshot())`
//! (`log_horizon()`, see epochs below): xmin
//! is the oldest transaction still running, so every transaction below it has finished
//! (committed or rolled back) and no row with such a transaction id can ever appear again. Within
//! that settled prefix the reader orders by `(transaction_id, position)`, a total order, and its
//! checkpoint is the last `(transaction_id, position)` it returned. Any event that becomes
//! visible later belongs to a transaction at or above the xmin the reader saw, hence above its
//! checkpoint's transaction id, so it sorts after the checkpoint: nothing is skipped, and nothing
//! is returned twice.
//!
//! # What the database assigns
//!
//! `position`, `transaction_id` and `recorded_at` are set by the insert trigger whatever the
//! writer sends (the application role may not even name them), so no writer can place an event
//! behind a reader's checkpoint. An append whose predecessor in its stream was written by a later
//! transaction is refused, so a stream always reads in sequence order.
//!
//! # Epochs: a restore into another cluster
//!
//! Transaction ids are the cluster's counter. A dump restored into another cluster carries ids
//! that cluster has not reached, so its new events would sort below every checkpoint. The stored
//! `transaction_id` is therefore the server's id plus the current *log epoch*'s offset (table
//! `log_epochs`; 0 on the cluster the log was created on). When the log finds itself on another
//! cluster (`pg_control_system().system_identifier` differs from its epoch's), appends are
//! refused until `begin_log_epoch_if_moved()` — run by `gigledger migrate` and at every start —
//! begins an epoch whose offset puts every new id above every stored one. Readers compare with
//! `log_horizon()`, the oldest running transaction shifted by the same offset; restored events
//! are all below it, so they are settled. Checkpoints, read models and hashes move with the dump
//! unchanged.
//!
//! Consequences:
//! - Events of one transaction come together, in position order; a stream's events come in
//!   sequence order (a command that appends sequence n+1 started after n committed, so it got a
//!   larger transaction id: the append is the first write of its transaction).
//! - A rolled-back insert leaves a hole in the positions; the reader never waits for it.
//! - A writer that keeps its transaction open holds every reader back (correct, never lossy).
//!   There is no timer that skips it; instead [`oldest_open_writer_age`] feeds a metric, and
//!   production sets `idle_in_transaction_session_timeout` so an abandoned transaction is ended.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sqlx::postgres::PgRow;
use sqlx::{PgExecutor, Row};
use uuid::Uuid;

/// Where a reader stands in the global log: the last event it has read, in log order.
///
/// The zero checkpoint is before every event.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
pub struct Checkpoint {
    /// The writing transaction's id (`xid8`, epoch-extended so it never wraps).
    pub transaction_id: i64,
    /// The global position of the event.
    pub position: i64,
}

impl Checkpoint {
    /// Before the first event.
    pub const START: Checkpoint = Checkpoint {
        transaction_id: 0,
        position: 0,
    };
}

/// One stored event as the global log returns it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct RecordedEvent {
    pub position: i64,
    pub transaction_id: i64,
    pub aggregate_type: String,
    pub aggregate_id: String,
    pub sequence: i64,
    pub event_type: String,
    pub event_version: String,
    pub payload: Value,
    pub metadata: Value,
    pub event_id: Uuid,
    pub recorded_at: DateTime<Utc>,
    pub hash: Vec<u8>,
}

impl RecordedEvent {
    /// This event's place in the log; a reader that has processed it continues after it.
    pub fn checkpoint(&self) -> Checkpoint {
        Checkpoint {
            transaction_id: self.transaction_id,
            position: self.position,
        }
    }

    /// A metadata field as text (`correlation_id`, `causation_id`, `actor_id`, ...).
    pub fn metadata_str(&self, key: &str) -> Option<&str> {
        self.metadata.get(key).and_then(Value::as_str)
    }

    fn from_row(row: &PgRow) -> Result<Self, sqlx::Error> {
        Ok(Self {
            position: row.try_get("position")?,
            transaction_id: row.try_get("transaction_id")?,
            aggregate_type: row.try_get("aggregate_type")?,
            aggregate_id: row.try_get("aggregate_id")?,
            sequence: row.try_get("sequence")?,
            event_type: row.try_get("event_type")?,
            event_version: row.try_get("event_version")?,
            payload: row.try_get("payload")?,
            metadata: row.try_get("metadata")?,
            event_id: row.try_get("event_id")?,
            recorded_at: row.try_get("recorded_at")?,
            hash: row.try_get("hash")?,
        })
    }
}

/// The columns every log read returns, in [`RecordedEvent`]'s shape. `xid8` has no sqlx type, so it
/// travels as `bigint` (an xid8 fits: its epoch would have to pass 2^31 to overflow).
macro_rules! event_columns {
    () => {
        "position, transaction_id::text::bigint as transaction_id, aggregate_type, aggregate_id, \
         sequence, event_type, event_version, payload, metadata, event_id, recorded_at, hash"
    };
}

/// Events after a checkpoint, in log order, only from finished transactions. The order names the
/// table's columns: unqualified, it would bind to the output column `transaction_id` (a bigint),
/// which no index serves, and every batch would sort the whole rest of the log.
pub const READ_AFTER: &str = concat!(
    "select ",
    event_columns!(),
    " from events
      where (transaction_id, position) > ($1::bigint::text::xid8, $2)
        and transaction_id < log_horizon()
      order by events.transaction_id, events.position
      limit $3"
);

/// Up to `limit` events after `after`, in log order, all from transactions that have finished.
///
/// An empty result means nothing settled is newer than `after` *now*; call again later (after a
/// NOTIFY on `gigledger_events`, or a poll). A database error is returned as such: the log is never
/// reported shorter than it is.
pub async fn read_after<'e>(
    db: impl PgExecutor<'e>,
    after: Checkpoint,
    limit: i64,
) -> Result<Vec<RecordedEvent>, sqlx::Error> {
    let rows = sqlx::query(READ_AFTER)
        .bind(after.transaction_id)
        .bind(after.position)
        .bind(limit)
        .fetch_all(db)
        .await?;
    rows.iter().map(RecordedEvent::from_row).collect()
}

/// One stream's events after a sequence number.
pub const STREAM_EVENTS: &str = concat!(
    "select ",
    event_columns!(),
    " from events
      where aggregate_type = $1 and aggregate_id = $2 and sequence > $3
      order by sequence
      limit $4"
);

/// One stream's events after `after_sequence`, in sequence order (the audit view of one aggregate).
pub async fn read_stream<'e>(
    db: impl PgExecutor<'e>,
    aggregate_type: &str,
    aggregate_id: &str,
    after_sequence: i64,
    limit: i64,
) -> Result<Vec<RecordedEvent>, sqlx::Error> {
    let rows = sqlx::query(STREAM_EVENTS)
        .bind(aggregate_type)
        .bind(aggregate_id)
        .bind(after_sequence)
        .bind(limit)
        .fetch_all(db)
        .await?;
    rows.iter().map(RecordedEvent::from_row).collect()
}

/// The log order of the event at one position.
pub const CHECKPOINT_OF: &str =
    "select transaction_id::text::bigint as transaction_id from events where position = $1";

/// Whether any event, settled or not, comes after a checkpoint (a reader that found nothing
/// settled asks this to tell "caught up" from "waiting for an open transaction").
/// (A scalar subquery with its order, not `exists`: the planner drops the order inside `exists`
/// and may then scan the whole log to find that nothing is there.)
pub const PENDING_AFTER: &str = "select (
         select position from events
          where (transaction_id, position) > ($1::bigint::text::xid8, $2)
          order by transaction_id, position
          limit 1) is not null";

/// The last event in log order, settled or not.
/// (The order names the table's columns: unqualified, `transaction_id` would bind to the output
/// column of the same name, a bigint no index has, and the whole log would be sorted.)
pub const LAST_EVENT: &str = "select transaction_id::text::bigint, position from events
      order by events.transaction_id desc, events.position desc limit 1";

/// Whether any event, settled or not, comes after `after` in log order.
pub async fn pending_after<'e>(
    db: impl PgExecutor<'e>,
    after: Checkpoint,
) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar(PENDING_AFTER)
        .bind(after.transaction_id)
        .bind(after.position)
        .fetch_one(db)
        .await
}

/// The last event in log order, settled or not (the start of the log when there is none).
pub async fn last_event<'e>(db: impl PgExecutor<'e>) -> Result<Checkpoint, sqlx::Error> {
    let end: Option<(i64, i64)> = sqlx::query_as(LAST_EVENT).fetch_optional(db).await?;
    Ok(
        end.map_or(Checkpoint::START, |(transaction_id, position)| Checkpoint {
            transaction_id,
            position,
        }),
    )
}

/// Where the event at global `position` stands in log order, if it exists (it may be a hole left
/// by a rolled-back transaction). "Has a reader processed position p" is then a comparison of
/// checkpoints.
pub async fn checkpoint_of<'e>(
    db: impl PgExecutor<'e>,
    position: i64,
) -> Result<Option<Checkpoint>, sqlx::Error> {
    let row = sqlx::query(CHECKPOINT_OF)
        .bind(position)
        .fetch_optional(db)
        .await?;
    row.map(|r| {
        Ok(Checkpoint {
            transaction_id: r.try_get("transaction_id")?,
            position,
        })
    })
    .transpose()
}

/// How long the oldest transaction that holds a transaction id has been open, in seconds (`0.0`
/// when none is), across the whole cluster and including prepared transactions: transaction ids
/// are cluster-wide, so any of them holds readers back. This is the metric to alert on when
/// projections stall.
pub async fn oldest_open_writer_age<'e>(db: impl PgExecutor<'e>) -> Result<f64, sqlx::Error> {
    sqlx::query_scalar(
        "select coalesce(extract(epoch from now() - least(
                    (select min(xact_start) from pg_stat_activity where backend_xid is not null),
                    (select min(prepared) from pg_prepared_xacts)))::float8, 0)",
    )
    .fetch_one(db)
    .await
}

/// The problem an integrity check found: the first stored event whose hash no longer matches its
/// contents or its predecessor.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct BrokenLink {
    pub position: i64,
    pub aggregate_type: String,
    pub aggregate_id: String,
    pub sequence: i64,
}

/// The outcome of [`verify_chain`]: what the per-stream hash chain proves about the events in a
/// range of positions, and, stated in the report itself, what it cannot.
///
/// **Proves**, for every event stored in the range: its fields are the ones its hash was computed
/// over, and it follows the event its hash says it follows in its stream. So an event edited in
/// place, an event edited together with its hash (its successor's link breaks), and an event
/// removed from the middle of a stream (its successor's link breaks) are all found.
///
/// **Cannot prove** that the range is complete: a stream's last events removed, a whole stream
/// removed, or the global order of different streams changed leave every remaining link intact.
/// Those need a digest over the global order (the ledger digest of the audit API).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ChainReport {
    /// How many events were checked.
    pub checked: i64,
    /// The first event (by position) that does not match, if any.
    pub first_broken: Option<BrokenLink>,
    /// Always false: an intact chain says nothing about events that are no longer there.
    pub proves_completeness: bool,
    /// The tampering this check cannot see ([`ChainReport::LIMITS`]).
    pub cannot_detect: Vec<&'static str>,
}

impl ChainReport {
    /// What an intact chain does not rule out.
    pub const LIMITS: [&'static str; 3] = [
        "removal of a stream's last events",
        "removal of a whole stream",
        "a change in the global order of events of different streams",
    ];

    pub fn is_intact(&self) -> bool {
        self.first_broken.is_none()
    }
}

const VERIFY_CHAIN: &str = "
with checked as (
    select e.position, e.aggregate_type, e.aggregate_id, e.sequence,
           (e.sequence = 1 or p.hash is not null)
           and e.hash = event_hash(p.hash, e.position, e.aggregate_type, e.aggregate_id, e.sequence,
                                   e.event_id, e.event_type, e.event_version, e.payload,
                                   e.metadata, e.recorded_at) as intact
      from events e
      left join events p
        on p.aggregate_type = e.aggregate_type
       and p.aggregate_id = e.aggregate_id
       and p.sequence = e.sequence - 1
     where e.position between $1 and $2
)
select (select count(*) from checked) as checked,
       b.position, b.aggregate_type, b.aggregate_id, b.sequence
  from (select 1) as one
  left join lateral (
      select * from checked where not intact order by position limit 1
  ) as b on true";

/// Recomputes the hash chain of every event with a position in `from..=to` and reports the first
/// event whose stored hash no longer matches its own fields and its predecessor's hash. An event
/// edited in place breaks its own link; an event edited together with its hash breaks its
/// successor's; a deleted event breaks its successor's. A deleted *last* event has no successor,
/// so it is not found: see [`ChainReport`] for what the report can and cannot prove.
pub async fn verify_chain<'e>(
    db: impl PgExecutor<'e>,
    from: i64,
    to: i64,
) -> Result<ChainReport, sqlx::Error> {
    let row = sqlx::query(VERIFY_CHAIN)
        .bind(from)
        .bind(to)
        .fetch_one(db)
        .await?;
    let position: Option<i64> = row.try_get("position")?;
    let first_broken = match position {
        Some(position) => Some(BrokenLink {
            position,
            aggregate_type: row.try_get("aggregate_type")?,
            aggregate_id: row.try_get("aggregate_id")?,
            sequence: row.try_get("sequence")?,
        }),
        None => None,
    };
    Ok(ChainReport {
        checked: row.try_get("checked")?,
        first_broken,
        proves_completeness: false,
        cannot_detect: ChainReport::LIMITS.to_vec(),
    })
}

/// What an audit feed filters on; `None` matches everything.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LogFilter {
    pub event_type: Option<String>,
    pub aggregate_type: Option<String>,
    pub correlation_id: Option<String>,
}

/// The most events one filtered read walks: past it a page can be short (even empty) while the
/// log goes on, and the returned checkpoint says where to continue.
pub const FILTER_WALK: i64 = 10_000;

/// A filtered read: walks at most [`FILTER_WALK`] settled events after `$1, $2` in log order along
/// the index the leading filter names, and returns each walked event's key with its columns when
/// it matches every filter, up to `$3` matches. The three statements differ only in the index
/// they walk (fixed text, one per leading filter).
macro_rules! filtered_read {
    ($leading:literal) => {
        concat!(
            "with walked as (
                 select e.position, e.transaction_id,
                        ($4::text is null or e.event_type = $4)
                        and ($5::text is null or e.aggregate_type = $5)
                        and ($6::text is null or e.correlation_id = $6) as hit
                   from events e
                  where ",
            $leading,
            "
                    and (e.transaction_id, e.position) > ($1::bigint::text::xid8, $2)
                    and e.transaction_id < log_horizon()
                  order by e.transaction_id, e.position
                  limit $7
             ), numbered as (
                 select w.position, w.transaction_id, w.hit,
                        count(*) filter (where w.hit)
                            over (order by w.transaction_id, w.position) as hits
                   from walked w
             )
             select n.hit, n.position as walked_position,
                    n.transaction_id::text::bigint as walked_transaction_id,
                    e.position, e.transaction_id::text::bigint as transaction_id,
                    e.aggregate_type, e.aggregate_id, e.sequence, e.event_type, e.event_version,
                    e.payload, e.metadata, e.event_id, e.recorded_at, e.hash
               from numbered n
               left join events e on n.hit and e.position = n.position
              where n.hits <= $3
              order by n.transaction_id, n.position"
        )
    };
}

/// Walks the index of one event type.
pub const FILTERED_BY_TYPE: &str = filtered_read!("e.event_type = $4");
/// Walks the index of one correlation id.
pub const FILTERED_BY_CORRELATION: &str = filtered_read!("e.correlation_id = $6");
/// Walks the log's own order (an aggregate type is far too common for an index of its own).
pub const FILTERED_IN_LOG_ORDER: &str = filtered_read!("true");

/// A page of a filtered read.
#[derive(Clone, Debug, PartialEq)]
pub struct FilteredPage {
    /// The matching events, in log order.
    pub events: Vec<RecordedEvent>,
    /// Where to continue: past the last event walked, which may be past the last one returned.
    pub next: Checkpoint,
    /// Whether the read reached the end of the settled log (nothing more to walk now).
    pub caught_up: bool,
}

/// Up to `limit` events after `after` that match `filter`, in log order, walking at most
/// [`FILTER_WALK`] events. Without a filter this is [`read_after`].
pub async fn read_filtered<'e>(
    db: impl PgExecutor<'e>,
    after: Checkpoint,
    filter: &LogFilter,
    limit: i64,
) -> Result<FilteredPage, sqlx::Error> {
    let statement = if filter.correlation_id.is_some() {
        FILTERED_BY_CORRELATION
    } else if filter.event_type.is_some() {
        FILTERED_BY_TYPE
    } else if filter.aggregate_type.is_some() {
        FILTERED_IN_LOG_ORDER
    } else {
        let events = read_after(db, after, limit).await?;
        let next = events.last().map_or(after, RecordedEvent::checkpoint);
        let caught_up = i64::try_from(events.len()).unwrap_or(i64::MAX) < limit;
        return Ok(FilteredPage {
            events,
            next,
            caught_up,
        });
    };
    let rows = sqlx::query(statement)
        .bind(after.transaction_id)
        .bind(after.position)
        .bind(limit)
        .bind(filter.event_type.as_deref())
        .bind(filter.aggregate_type.as_deref())
        .bind(filter.correlation_id.as_deref())
        .bind(FILTER_WALK)
        .fetch_all(db)
        .await?;
    let mut next = after;
    let mut events = Vec::new();
    for row in &rows {
        next = Checkpoint {
            transaction_id: row.try_get("walked_transaction_id")?,
            position: row.try_get("walked_position")?,
        };
        if row.try_get::<bool, _>("hit")? {
            events.push(RecordedEvent::from_row(row)?);
        }
    }
    // Fewer matches than asked and a walk shorter than its bound: no row was cut, and the walk
    // ended where the settled log does.
    let caught_up = i64::try_from(events.len()).unwrap_or(i64::MAX) < limit
        && i64::try_from(rows.len()).unwrap_or(i64::MAX) < FILTER_WALK;
    Ok(FilteredPage {
        events,
        next,
        caught_up,
    })
}
