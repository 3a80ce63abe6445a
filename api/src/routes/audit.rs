//! The auditor's routes: the global log in its gap-free order (with filters), one stream's
//! history, an aggregate's state as of a version or a time, the hash chain check over a range,
//! the ledger digest and its verification, the log exported as JSON Lines, and reconciliation
//! with the payment provider.
//!
//! Who (API.md): auditors and admins, read-only; anyone else 403.

use axum::extract::State;
use axum::response::Response;
use base64::Engine as _;
use gigledger_domain::Role;
use gigledger_projections::digest::{self, DigestCheck, DigestPoint};
use gigledger_projections::export::{ExportError, Exporter};
use gigledger_projections::log::{self, Checkpoint, LogFilter, RecordedEvent};
use serde::{Deserialize, Serialize};

use crate::audit::{ReplayError, StateAsOf};
use crate::auth::{require_any, Caller};
use crate::error::{ApiError, ApiPath, ApiQuery};
use crate::query::{self, read_failed, MinPosition};
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
        .get("/v1/audit/digest", WHO, digest)
        .get("/v1/audit/digest/verify", WHO, verify_digest)
        .get("/v1/audit/export", WHO, export)
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
    /// The page reached the end of the settled log: follow `next_cursor` later for more. While
    /// false, follow it now (a filtered page can be short, even empty, with more to come).
    caught_up: bool,
}

/// `?cursor=&limit=&type=&aggregate_type=&correlation_id=` of the feed.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct FeedQuery {
    /// Where the last page ended (opaque); none: the start of the log.
    pub cursor: Option<String>,
    /// 1–1 000, default 100.
    pub limit: Option<u32>,
    /// Only events of this type (e.g. `FundsDeposited`).
    #[serde(rename = "type")]
    #[param(rename = "type")]
    pub event_type: Option<String>,
    /// Only events of this aggregate type (`gig`, `contract`, `escrow`).
    pub aggregate_type: Option<String>,
    /// Only events of this correlation id (one request and what followed from it).
    pub correlation_id: Option<String>,
}

/// The longest filter value accepted.
const FILTER_MAX: usize = 200;

fn filter_value(field: &str, value: Option<String>) -> Result<Option<String>, ApiError> {
    match value {
        Some(v) if v.is_empty() || v.len() > FILTER_MAX => Err(ApiError::bad_request(
            field,
            format!("must be 1 to {FILTER_MAX} characters"),
        )),
        other => Ok(other),
    }
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
/// event exactly once even when transactions commit late. With filters, one request walks at
/// most 10 000 events of the log (along the index of `correlation_id` or `type` when given): a
/// page may then be short, even empty, with `next_cursor` past what was walked.
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
    let filter = LogFilter {
        event_type: filter_value("type", params.event_type)?,
        aggregate_type: filter_value("aggregate_type", params.aggregate_type)?,
        correlation_id: filter_value("correlation_id", params.correlation_id)?,
    };
    let page = log::read_filtered(&state.pool, after, &filter, limit)
        .await
        .map_err(|e| read_failed(&e))?;
    Ok(query::answer(
        page.next.position,
        &AuditPage {
            items: page.events.into_iter().map(AuditEvent::from).collect(),
            next_cursor: encode(page.next),
            caught_up: page.caught_up,
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

use crate::audit::VERIFY_SPAN;

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
    let rebuilt = crate::audit::replay_as_of(
        &state.pool,
        &aggregate_type,
        &aggregate_id,
        params.version,
        params.at,
    )
    .await
    .map_err(|e| match e {
        ReplayError::Database(e) => read_failed(&e),
        other => ApiError::internal(other),
    })?
    .ok_or_else(|| ApiError::NotFound {
        detail: "no such stream at that version or time".to_owned(),
    })?;
    Ok(query::answer(rebuilt.position, &rebuilt))
}

/// The current ledger digest: a running hash over the whole log in its order, as far as the
/// `ledger_digest` worker has folded it (`X-Min-Position` waits for it like for a view).
#[utoipa::path(get, path = "/v1/audit/digest", tag = "audit", responses((status = 200, description = "the digest, the position it was taken at and how many events it covers", body = DigestPoint)))]
pub(crate) async fn digest(
    State(state): State<AppState>,
    Caller(caller): Caller,
    min: MinPosition,
) -> Result<Response, ApiError> {
    require_any(&caller, &[Role::Auditor, Role::Admin])?;
    let position = min.wait(&state, &[digest::NAME]).await?;
    let point = digest::latest(&state.pool)
        .await
        .map_err(|e| read_failed(&e))?;
    Ok(query::answer(position.max(point.position), &point))
}

/// `?position=&digest=` of a digest kept earlier.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct DigestQuery {
    /// The position the digest was given at.
    pub position: Option<i64>,
    /// The digest, hex.
    pub digest: Option<String>,
}

/// Recomputes the ledger digest from the events up to `position` and says whether history up
/// to there is exactly what the kept digest proved; when not, where it first differs from the
/// digests recorded as it happened.
#[utoipa::path(get, path = "/v1/audit/digest/verify", tag = "audit", params(DigestQuery), responses((status = 200, description = "`ok`, the recomputed digest, and where history first differs", body = DigestCheck)))]
pub(crate) async fn verify_digest(
    State(state): State<AppState>,
    Caller(caller): Caller,
    ApiQuery(params): ApiQuery<DigestQuery>,
) -> Result<Response, ApiError> {
    require_any(&caller, &[Role::Auditor, Role::Admin])?;
    let position = params.position.filter(|p| *p > 0).ok_or_else(|| {
        ApiError::bad_request("position", "the position the digest was given at, above 0")
    })?;
    let kept = params
        .digest
        .filter(|d| d.len() == 64 && d.bytes().all(|b| b.is_ascii_hexdigit()))
        .ok_or_else(|| {
            ApiError::bad_request("digest", "64 hex digits, as GET /v1/audit/digest gave it")
        })?;
    let check = digest::verify(&state.pool, position, &kept)
        .await
        .map_err(|e| read_failed(&e))?;
    Ok(axum::response::IntoResponse::into_response(axum::Json(
        check,
    )))
}

/// `?after=&before=` positions of the export.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ExportQuery {
    /// Start after the event at this position (in log order); none: the start of the log.
    pub after: Option<i64>,
    /// Stop before the event at this position; none: the end of the settled log now.
    pub before: Option<i64>,
}

/// The log as JSON Lines, streamed page by page: a header with the digest before the first
/// event, one line per event with its hashes, and a last line with the digest at the last
/// event, so that `gigledger audit verify-export` checks the file with no database.
#[utoipa::path(get, path = "/v1/audit/export", tag = "audit", params(ExportQuery), responses((status = 200, description = "JSON Lines (`application/jsonl`)", content_type = "application/jsonl", body = String)))]
pub(crate) async fn export(
    State(state): State<AppState>,
    Caller(caller): Caller,
    ApiQuery(params): ApiQuery<ExportQuery>,
) -> Result<Response, ApiError> {
    require_any(&caller, &[Role::Auditor, Role::Admin])?;
    let exporter = Exporter::start(&state.pool, params.after, params.before)
        .await
        .map_err(|e| match e {
            ExportError::NoSuchPosition { field, position } => {
                ApiError::bad_request(field, format!("no settled event has position {position}"))
            }
            ExportError::Database(e) => read_failed(&e),
        })?;
    let body = futures::stream::try_unfold(exporter, |mut exporter| async move {
        match exporter.next_chunk().await {
            Ok(Some(chunk)) => Ok(Some((bytes::Bytes::from(chunk), exporter))),
            Ok(None) => Ok(None),
            Err(e) => {
                // The status line is gone: the body ends early, without its digest line, which
                // verify-export reports as a cut file.
                tracing::error!(error = %e, "the export failed midway");
                Err(std::io::Error::other(e.to_string()))
            }
        }
    });
    Ok(axum::response::IntoResponse::into_response((
        [(axum::http::header::CONTENT_TYPE, "application/jsonl")],
        axum::body::Body::from_stream(body),
    )))
}
