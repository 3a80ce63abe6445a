//! The auditor's first routes (issue 10 builds the rest: filters, replay as of a moment, the
//! ledger digest, export): the global log in its gap-free order, one stream's history, the hash
//! chain check over a range, and reconciliation with the payment provider.
//!
//! Who (API.md): auditors and admins, read-only; anyone else 403.

use axum::extract::State;
use axum::response::Response;
use base64::Engine as _;
use gigledger_domain::Role;
use gigledger_projections::log::{self, Checkpoint, RecordedEvent};
use serde::{Deserialize, Serialize};

use crate::auth::{require_any, Caller};
use crate::error::{ApiError, ApiPath, ApiQuery};
use crate::query::{self, read_failed};
use crate::routes::Table;
use crate::state::AppState;

const WHO: &str = "auditor, admin";

pub fn routes(table: Table) -> Table {
    table
        .get("/v1/audit/events", WHO, events)
        .get(
            "/v1/audit/streams/{aggregate_type}/{aggregate_id}/events",
            WHO,
            stream,
        )
        .get(
            "/v1/audit/streams/{aggregate_type}/{aggregate_id}/state",
            WHO,
            state_as_of,
        )
        .get("/v1/audit/verify", WHO, verify)
        .get("/v1/audit/reconcile", WHO, reconcile)
}

/// One stored event as an auditor reads it.
#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct AuditEvent {
    position: i64,
    aggregate_type: String,
    aggregate_id: String,
    sequence: i64,
    #[serde(rename = "type")]
    event_type: String,
    version: String,
    event_id: uuid::Uuid,
    #[schema(value_type = Object)]
    payload: serde_json::Value,
    /// Actor, correlation and causation ids.
    #[schema(value_type = Object)]
    metadata: serde_json::Value,
    recorded_at: chrono::DateTime<chrono::Utc>,
    /// The event's chain hash, hex.
    hash: String,
}

impl From<RecordedEvent> for AuditEvent {
    fn from(e: RecordedEvent) -> Self {
        Self {
            position: e.position,
            aggregate_type: e.aggregate_type,
            aggregate_id: e.aggregate_id,
            sequence: e.sequence,
            event_type: e.event_type,
            version: e.event_version,
            event_id: e.event_id,
            payload: e.payload,
            metadata: e.metadata,
            recorded_at: e.recorded_at,
            hash: e.hash.iter().map(|b| format!("{b:02x}")).collect(),
        }
    }
}

/// A page of the log. `next_cursor` is always set: the log has no end, follow it later for
/// what commits meanwhile.
#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct AuditPage {
    items: Vec<AuditEvent>,
    next_cursor: String,
}

/// `?cursor=&limit=` of the feed.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct FeedQuery {
    /// Where the last page ended (opaque); none: the start of the log.
    pub cursor: Option<String>,
    /// 1–1 000, default 100.
    pub limit: Option<u32>,
}

const FEED_DEFAULT: u32 = 100;
const FEED_MAX: u32 = 1_000;

fn feed_limit(limit: Option<u32>) -> Result<i64, ApiError> {
    match limit.unwrap_or(FEED_DEFAULT) {
        n @ 1..=FEED_MAX => Ok(i64::from(n)),
        _ => Err(ApiError::bad_request(
            "limit",
            format!("must be between 1 and {FEED_MAX}"),
        )),
    }
}

fn encode(checkpoint: Checkpoint) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(format!(
        "a:{}:{}",
        checkpoint.transaction_id, checkpoint.position
    ))
}

fn decode(cursor: &str) -> Result<Checkpoint, ApiError> {
    let invalid = || ApiError::bad_request("cursor", "the cursor is not valid for this listing");
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(cursor)
        .map_err(|_| invalid())?;
    let text = String::from_utf8(bytes).map_err(|_| invalid())?;
    let mut parts = text.split(':');
    match (parts.next(), parts.next(), parts.next(), parts.next()) {
        (Some("a"), Some(tx), Some(pos), None) => Ok(Checkpoint {
            transaction_id: tx.parse().map_err(|_| invalid())?,
            position: pos.parse().map_err(|_| invalid())?,
        }),
        _ => Err(invalid()),
    }
}

/// The global log in the log reader's order: an event is served only once every transaction
/// that could still write before it has ended, so a client that follows `next_cursor` sees every
/// event exactly once even when transactions commit late.
#[utoipa::path(get, path = "/v1/audit/events", tag = "audit", params(FeedQuery), responses((status = 200, description = "a page of the log", body = AuditPage)))]
pub(crate) async fn events(
    State(state): State<AppState>,
    Caller(caller): Caller,
    ApiQuery(params): ApiQuery<FeedQuery>,
) -> Result<Response, ApiError> {
    require_any(&caller, &[Role::Auditor, Role::Admin])?;
    let limit = feed_limit(params.limit)?;
    let after = params
        .cursor
        .as_deref()
        .map(decode)
        .transpose()?
        .unwrap_or(Checkpoint::START);
    let events = log::read_after(&state.pool, after, limit)
        .await
        .map_err(|e| read_failed(&e))?;
    let next = events.last().map_or(after, RecordedEvent::checkpoint);
    let position = next.position;
    Ok(query::answer(
        position,
        &AuditPage {
            items: events.into_iter().map(AuditEvent::from).collect(),
            next_cursor: encode(next),
        },
    ))
}

/// `?after=&limit=` of one stream.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct StreamQuery {
    /// The sequence number the last page ended at; none: from the first event.
    pub after: Option<i64>,
    /// 1–1 000, default 100.
    pub limit: Option<u32>,
}

/// One stream's history, in sequence order.
#[utoipa::path(get, path = "/v1/audit/streams/{aggregate_type}/{aggregate_id}/events", tag = "audit", params(("aggregate_type" = String, Path, description = "gig, contract or escrow"), ("aggregate_id" = String, Path, description = "the aggregate's id"), StreamQuery), responses((status = 200, description = "the stream's events", body = Vec<AuditEvent>)))]
pub(crate) async fn stream(
    State(state): State<AppState>,
    Caller(caller): Caller,
    ApiPath((aggregate_type, aggregate_id)): ApiPath<(String, String)>,
    ApiQuery(params): ApiQuery<StreamQuery>,
) -> Result<Response, ApiError> {
    require_any(&caller, &[Role::Auditor, Role::Admin])?;
    let limit = feed_limit(params.limit)?;
    let events = log::read_stream(
        &state.pool,
        &aggregate_type,
        &aggregate_id,
        params.after.unwrap_or(0).max(0),
        limit,
    )
    .await
    .map_err(|e| read_failed(&e))?;
    let position = events.iter().map(|e| e.position).max().unwrap_or(0);
    let items: Vec<AuditEvent> = events.into_iter().map(AuditEvent::from).collect();
    Ok(query::answer(position, &items))
}

/// `?from=&to=` positions, at most [`VERIFY_SPAN`] apart.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct VerifyQuery {
    pub from: Option<i64>,
    pub to: Option<i64>,
}

/// The most positions one verify request walks (a whole log is walked range by range).
pub const VERIFY_SPAN: i64 = 100_000;

/// What the chain check found over the range.
#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct Verified {
    ok: bool,
    from: i64,
    to: i64,
    checked: i64,
    #[schema(value_type = Option<Object>)]
    first_broken: Option<serde_json::Value>,
    /// Always false: an intact chain does not prove nothing was removed at a stream's end.
    proves_completeness: bool,
    cannot_detect: Vec<&'static str>,
}

/// Walks the per-stream hash chains of the events in `from..=to`.
#[utoipa::path(get, path = "/v1/audit/verify", tag = "audit", params(VerifyQuery), responses((status = 200, description = "`ok`, how many events were checked, the first that no longer matches, and what the check cannot see", body = Verified)))]
pub(crate) async fn verify(
    State(state): State<AppState>,
    Caller(caller): Caller,
    ApiQuery(params): ApiQuery<VerifyQuery>,
) -> Result<Response, ApiError> {
    require_any(&caller, &[Role::Auditor, Role::Admin])?;
    let from = params.from.unwrap_or(1).max(1);
    let to = params.to.unwrap_or(from.saturating_add(VERIFY_SPAN - 1));
    if to < from || to - from >= VERIFY_SPAN {
        return Err(ApiError::bad_request(
            "to",
            format!("must be at least `from` and less than {VERIFY_SPAN} positions after it"),
        ));
    }
    let report = log::verify_chain(&state.pool, from, to)
        .await
        .map_err(|e| read_failed(&e))?;
    let body = Verified {
        ok: report.is_intact(),
        from,
        to,
        checked: report.checked,
        first_broken: report
            .first_broken
            .as_ref()
            .map(|b| serde_json::to_value(b).unwrap_or_default()),
        proves_completeness: report.proves_completeness,
        cannot_detect: report.cannot_detect.clone(),
    };
    Ok(axum::response::IntoResponse::into_response(axum::Json(
        body,
    )))
}

/// Every payment provider charge against the escrow deposits: the report of
/// `gigledger audit reconcile`.
#[utoipa::path(get, path = "/v1/audit/reconcile", tag = "audit", responses((status = 200, description = "`ok`, how many were checked, and each mismatch named", body = Object)))]
pub(crate) async fn reconcile(
    State(state): State<AppState>,
    Caller(caller): Caller,
) -> Result<Response, ApiError> {
    require_any(&caller, &[Role::Auditor, Role::Admin])?;
    let report = gigledger_commands::reconcile::reconcile(&state.pool)
        .await
        .map_err(|e| read_failed(&e))?;
    Ok(axum::response::IntoResponse::into_response(axum::Json(
        serde_json::json!({
            "ok": report.ok(),
            "checked": report.checked,
            "mismatches": report.mismatches,
        }),
    )))
}

/// `?version=N` or `?at=<RFC 3339>` (one of them; neither: the current state).
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AsOfQuery {
    /// The stream's version (its sequence) to stop at.
    pub version: Option<i64>,
    /// The last event recorded at or before this time.
    pub at: Option<chrono::DateTime<chrono::Utc>>,
}

/// The most events one replay reads (a stream is far shorter: a gig's proposals, a contract's
/// milestones).
const REPLAY_MAX: i64 = 100_000;

/// An aggregate's state as of a version or a time.
#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct StateAsOf {
    aggregate_type: String,
    aggregate_id: String,
    /// The version (sequence) the state reflects.
    version: i64,
    /// When that version was recorded.
    recorded_at: Option<chrono::DateTime<chrono::Utc>>,
    /// The aggregate as its own `apply` rebuilds it (through the upcasters).
    #[schema(value_type = Object)]
    state: serde_json::Value,
}

/// Folds `events` (in sequence order) with the aggregate type's own `apply`, each payload brought
/// to the current version by the upcasters first.
fn replay<A>(events: &[RecordedEvent]) -> Result<serde_json::Value, ApiError>
where
    A: cqrs_es::Aggregate + Default + Serialize,
{
    let mut aggregate = A::default();
    for event in events {
        let payload = gigledger_domain::upcast::upcast(
            &event.aggregate_type,
            &event.event_type,
            &event.event_version,
            std::borrow::Cow::Borrowed(&event.payload),
        )
        .map_err(ApiError::internal)?;
        let decoded: A::Event =
            serde_json::from_value(payload.into_owned()).map_err(ApiError::internal)?;
        aggregate.apply(decoded);
    }
    serde_json::to_value(&aggregate).map_err(ApiError::internal)
}

/// The aggregate's state rebuilt by replaying its own events up to a version or a time.
#[utoipa::path(get, path = "/v1/audit/streams/{aggregate_type}/{aggregate_id}/state", tag = "audit", params(("aggregate_type" = String, Path, description = "gig, contract or escrow"), ("aggregate_id" = String, Path, description = "the aggregate's id"), AsOfQuery), responses((status = 200, description = "the state as of that version or time, and the version and time it reflects", body = StateAsOf)))]
pub(crate) async fn state_as_of(
    State(state): State<AppState>,
    Caller(caller): Caller,
    ApiPath((aggregate_type, aggregate_id)): ApiPath<(String, String)>,
    ApiQuery(params): ApiQuery<AsOfQuery>,
) -> Result<Response, ApiError> {
    require_any(&caller, &[Role::Auditor, Role::Admin])?;
    if params.version.is_some() && params.at.is_some() {
        return Err(ApiError::bad_request(
            "at",
            "give `version` or `at`, not both",
        ));
    }
    if params.version.is_some_and(|v| v < 1) {
        return Err(ApiError::bad_request("version", "versions start at 1"));
    }
    let limit = params.version.unwrap_or(REPLAY_MAX).min(REPLAY_MAX);
    let mut events = log::read_stream(&state.pool, &aggregate_type, &aggregate_id, 0, limit)
        .await
        .map_err(|e| read_failed(&e))?;
    if let Some(at) = params.at {
        events.retain(|e| e.recorded_at <= at);
    }
    let not_found = || ApiError::NotFound {
        detail: "no such stream at that version or time".to_owned(),
    };
    let last = events.last().ok_or_else(not_found)?;
    if params.version.is_some_and(|v| v != last.sequence) {
        return Err(not_found());
    }
    let (version, recorded_at, position) = (last.sequence, last.recorded_at, last.position);
    let rebuilt = match aggregate_type.as_str() {
        "gig" => replay::<gigledger_domain::Gig>(&events)?,
        "contract" => replay::<gigledger_domain::Contract>(&events)?,
        "escrow" => replay::<gigledger_domain::Escrow>(&events)?,
        _ => return Err(not_found()),
    };
    Ok(query::answer(
        position,
        &StateAsOf {
            aggregate_type,
            aggregate_id,
            version,
            recorded_at: Some(recorded_at),
            state: rebuilt,
        },
    ))
}
