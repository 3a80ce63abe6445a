//! What the auditor's routes and the `gigledger audit` commands share: an aggregate's state
//! rebuilt as of a version or a time by its own `apply`.

use chrono::{DateTime, Utc};
use gigledger_projections::log::{self, RecordedEvent};
use serde::Serialize;
use sqlx::PgPool;

/// The most events one replay reads (a stream is far shorter: a gig's proposals, a contract's
/// milestones).
pub const REPLAY_MAX: i64 = 100_000;

/// The aggregate types a replay knows, as the store names them.
pub const AGGREGATE_TYPES: [&str; 3] = ["gig", "contract", "escrow"];

/// An aggregate's state as of a version or a time.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct StateAsOf {
    pub aggregate_type: String,
    pub aggregate_id: String,
    /// The version (sequence) the state reflects.
    pub version: i64,
    /// When that version was recorded.
    pub recorded_at: DateTime<Utc>,
    /// The global position of that version's event.
    pub position: i64,
    /// The aggregate as its own `apply` rebuilds it (through the upcasters).
    #[schema(value_type = Object)]
    pub state: serde_json::Value,
}

/// Why a replay failed.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    #[error(transparent)]
    Database(#[from] sqlx::Error),
    /// A stored event that no longer decodes: the store and the code disagree.
    #[error("event {position} does not replay: {reason}")]
    Undecodable { position: i64, reason: String },
}

/// Folds `events` (in sequence order) with the aggregate type's own `apply`, each payload brought
/// to the current version by the upcasters first.
fn fold<A>(events: &[RecordedEvent]) -> Result<serde_json::Value, ReplayError>
where
    A: cqrs_es::Aggregate + Default + Serialize,
{
    let mut aggregate = A::default();
    for event in events {
        let undecodable = |reason: String| ReplayError::Undecodable {
            position: event.position,
            reason,
        };
        let payload = gigledger_domain::upcast::upcast(
            &event.aggregate_type,
            &event.event_type,
            &event.event_version,
            std::borrow::Cow::Borrowed(&event.payload),
        )
        .map_err(|e| undecodable(e.to_string()))?;
        let decoded: A::Event =
            serde_json::from_value(payload.into_owned()).map_err(|e| undecodable(e.to_string()))?;
        aggregate.apply(decoded);
    }
    serde_json::to_value(&aggregate).map_err(|e| ReplayError::Undecodable {
        position: events.last().map_or(0, |e| e.position),
        reason: e.to_string(),
    })
}

/// The state of `aggregate_type`/`aggregate_id` right after its event `version`, or after the
/// last event recorded at or before `at`, or now (neither given). `None`: no such aggregate type,
/// stream, version, or nothing recorded by then.
pub async fn replay_as_of(
    pool: &PgPool,
    aggregate_type: &str,
    aggregate_id: &str,
    version: Option<i64>,
    at: Option<DateTime<Utc>>,
) -> Result<Option<StateAsOf>, ReplayError> {
    if !AGGREGATE_TYPES.contains(&aggregate_type) || version.is_some_and(|v| v < 1) {
        return Ok(None);
    }
    let limit = version.unwrap_or(REPLAY_MAX).min(REPLAY_MAX);
    let mut events = log::read_stream(pool, aggregate_type, aggregate_id, 0, limit).await?;
    if let Some(at) = at {
        events.retain(|e| e.recorded_at <= at);
    }
    let Some(last) = events.last() else {
        return Ok(None);
    };
    if version.is_some_and(|v| v != last.sequence) {
        return Ok(None);
    }
    let (version, recorded_at, position) = (last.sequence, last.recorded_at, last.position);
    let state = match aggregate_type {
        "gig" => fold::<gigledger_domain::Gig>(&events)?,
        "contract" => fold::<gigledger_domain::Contract>(&events)?,
        _ => fold::<gigledger_domain::Escrow>(&events)?,
    };
    Ok(Some(StateAsOf {
        aggregate_type: aggregate_type.to_owned(),
        aggregate_id: aggregate_id.to_owned(),
        version,
        recorded_at,
        position,
        state,
    }))
}

/// The most positions one chain check walks at once (a whole log is walked range by range).
pub const VERIFY_SPAN: i64 = 100_000;

/// What `gigledger audit verify` found, line by line.
pub struct Verification {
    pub ok: bool,
    pub lines: Vec<String>,
}

/// Walks every stream's hash chain over the whole log, then recomputes the ledger digest and
/// compares it with `kept` (a position and the digest given there) or, without one, with the
/// latest digest the worker recorded.
pub async fn verify_all(
    pool: &PgPool,
    kept: Option<(i64, String)>,
) -> Result<Verification, sqlx::Error> {
    use gigledger_projections::digest;
    let mut lines = Vec::new();
    let mut ok = true;
    let last: i64 = sqlx::query_scalar("select coalesce(max(position), 0) from events")
        .fetch_one(pool)
        .await?;
    let mut checked = 0;
    let mut from = 1;
    while from <= last {
        let to = from.saturating_add(VERIFY_SPAN - 1);
        let report = log::verify_chain(pool, from, to).await?;
        checked += report.checked;
        if let Some(broken) = &report.first_broken {
            ok = false;
            lines.push(format!(
                "chain broken: the event at position {} ({}/{} sequence {}) no longer matches its hash or its predecessor",
                broken.position, broken.aggregate_type, broken.aggregate_id, broken.sequence
            ));
            break;
        }
        from = to.saturating_add(1);
    }
    if ok {
        lines.push(format!("ok: {checked} events, every hash chain intact"));
    }
    let (position, against, source) = match kept {
        Some((position, digest)) => (position, digest, "the kept digest"),
        None => {
            let latest = digest::latest(pool).await?;
            (latest.position, latest.digest, "the latest recorded digest")
        }
    };
    if position == 0 {
        lines.push("no ledger digest recorded yet: nothing to compare".to_owned());
        return Ok(Verification { ok, lines });
    }
    let check = digest::verify(pool, position, &against).await?;
    if check.ok {
        let events = check.recomputed.as_ref().map_or(0, |r| r.events);
        lines.push(format!(
            "ok: the log up to position {position} ({events} events) is exactly what {source} proves"
        ));
    } else {
        ok = false;
        lines.push(format!(
            "digest differs: {}",
            check.detail.unwrap_or_default()
        ));
        if let Some(first) = check.first_difference {
            lines.push(format!(
                "history first differs after position {} and by position {}: {}",
                first
                    .agrees_up_to
                    .map_or_else(|| "0 (the start)".to_owned(), |p| p.to_string()),
                first.differs_by,
                first.detail
            ));
        }
    }
    Ok(Verification { ok, lines })
}
