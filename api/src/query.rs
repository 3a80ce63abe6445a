//! What every query shares: read-your-writes (`X-Min-Position`), `X-Position`, paging and
//! `ETag`s. Queries read the read models only, never the event store.

use axum::extract::FromRequestParts;
use axum::http::header::ETAG;
use axum::http::request::Parts;
use axum::http::{HeaderName, HeaderValue};
use axum::response::{IntoResponse, Response};
use gigledger_projections::read::{Page, ReadError, MAX_LIMIT};
use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use crate::error::ApiError;
use crate::state::AppState;

/// The request header (or `?min_position=`) asking for a read model at least this far.
pub const X_MIN_POSITION: HeaderName = HeaderName::from_static("x-min-position");
/// The response header: how far the read models a query read have processed the log, as the
/// position of the last event the slowest of them applied. Views apply events in the log's
/// gap-free order (by transaction, then position), not by position alone, so compare a command's
/// `position` by sending it as `X-Min-Position` (which waits exactly), not with `X-Position`.
pub const X_POSITION: HeaderName = HeaderName::from_static("x-position");

/// The position a query must reflect, if the client asked for one.
#[derive(Clone, Copy, Debug, Default)]
pub struct MinPosition(pub Option<i64>);

impl<S: Send + Sync> FromRequestParts<S> for MinPosition {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let header = parts
            .headers
            .get(&X_MIN_POSITION)
            .map(|v| {
                v.to_str()
                    .ok()
                    .map(str::to_owned)
                    .ok_or_else(|| invalid("X-Min-Position"))
            })
            .transpose()?;
        let query = parts.uri.query().and_then(|q| {
            form_urlencoded::parse(q.as_bytes())
                .find(|(name, _)| name == "min_position")
                .map(|(_, value)| value.into_owned())
        });
        let (field, text) = match (header, query) {
            (Some(h), _) => ("X-Min-Position", h),
            (None, Some(q)) => ("min_position", q),
            (None, None) => return Ok(Self(None)),
        };
        text.trim()
            .parse::<i64>()
            .ok()
            .filter(|p| *p >= 0)
            .map(|p| Self(Some(p)))
            .ok_or_else(|| invalid(field))
    }
}

fn invalid(field: &str) -> ApiError {
    ApiError::bad_request(field, "must be a log position: a whole number, 0 or more")
}

impl MinPosition {
    /// Waits (bounded by the configured wait) until every read model in `models` has processed
    /// the asked position, then says how far they have all got: the `X-Position` of the answer.
    /// `503` with `Retry-After` when the wait runs out.
    pub async fn wait(self, state: &AppState, models: &[&str]) -> Result<i64, ApiError> {
        // Position 0 is the start of the log, which every view has reached.
        if let Some(position) = self.0.filter(|p| *p > 0) {
            let not_yet = || ApiError::Unavailable {
                detail: format!(
                    "the view has not caught up with position {position} yet; retry shortly"
                ),
                outcome: None,
            };
            // Where the event stands in the log's order; a position no committed event has is
            // answered at once (a client only learns positions of committed events), not after
            // polling for the whole wait.
            let target = gigledger_projections::log::checkpoint_of(&state.pool, position)
                .await
                .map_err(|e| read_failed(&e))?
                .ok_or_else(not_yet)?;
            let deadline = Instant::now() + state.limits.min_position_wait;
            let mut pause = std::time::Duration::from_millis(5);
            for model in models {
                loop {
                    let at = gigledger_projections::runtime::load_checkpoint(&state.pool, model)
                        .await
                        .map_err(|e| read_failed(&e))?;
                    if at >= target {
                        break;
                    }
                    if Instant::now() + pause > deadline {
                        return Err(not_yet());
                    }
                    // Backing off: a waiter costs a few queries, not one every 10 ms for 5 s.
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(std::time::Duration::from_millis(100));
                }
            }
        }
        processed(state, models).await
    }
}

/// How far the slowest of `models` has processed the log.
pub async fn processed(state: &AppState, models: &[&str]) -> Result<i64, ApiError> {
    let names: Vec<String> = models.iter().map(|m| (*m).to_owned()).collect();
    let position: Option<i64> = sqlx::query_scalar(
        "select min(coalesce(c.position, 0))::bigint
           from unnest($1::text[]) as m(name)
           left join projection_checkpoints c on c.name = m.name",
    )
    .bind(&names)
    .fetch_one(&state.pool)
    .await
    .map_err(|e| read_failed(&e))?;
    Ok(position.unwrap_or(0))
}

/// A read that failed in storage: `503` (nothing the client did), logged once.
pub fn read_failed(error: &dyn std::fmt::Display) -> ApiError {
    tracing::warn!(error = %error, "a query failed in storage");
    ApiError::Unavailable {
        detail: "the service could not read its views; retry shortly".to_owned(),
        outcome: None,
    }
}

/// A read model's refusal of its arguments, or its storage failure.
pub fn from_read(error: ReadError) -> ApiError {
    match error {
        ReadError::Database(e) => read_failed(&e),
        ReadError::InvalidCursor => {
            ApiError::bad_request("cursor", error_text(&ReadError::InvalidCursor))
        }
        ReadError::BudgetWithoutCurrency => {
            ApiError::bad_request("currency", error_text(&ReadError::BudgetWithoutCurrency))
        }
        ReadError::InvalidArgument(message) => ApiError::bad_request("query", message),
    }
}

fn error_text(error: &ReadError) -> String {
    error.to_string()
}

/// `?limit=&cursor=` of every list (API.md: default 20, 1–100).
#[derive(Clone, Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct Paging {
    pub limit: Option<u32>,
    pub cursor: Option<String>,
}

impl Paging {
    /// The limit, checked.
    pub fn limit(&self) -> Result<Option<u32>, ApiError> {
        match self.limit {
            Some(n) if n == 0 || n > MAX_LIMIT => Err(ApiError::bad_request(
                "limit",
                format!("must be between 1 and {MAX_LIMIT}"),
            )),
            other => Ok(other),
        }
    }
}

/// A JSON answer to a query, with `X-Position`.
pub fn answer<T: Serialize>(position: i64, body: &T) -> Response {
    let mut response = axum::Json(body).into_response();
    response
        .headers_mut()
        .insert(X_POSITION, HeaderValue::from(position));
    response
}

/// The same with the `ETag` of the aggregate version the view reflects.
pub fn answer_tagged<T: Serialize>(position: i64, version: u64, body: &T) -> Response {
    let mut response = answer(position, body);
    response
        .headers_mut()
        .insert(ETAG, crate::command::etag(version));
    response
}

/// `{ items, next_cursor }` of API.md. A page may hold fewer than `limit` items while
/// `next_cursor` is set: a listing ends when `next_cursor` is null.
#[derive(Serialize, utoipa::ToSchema)]
pub struct Listed<T> {
    pub items: Vec<T>,
    pub next_cursor: Option<String>,
}

impl<T> From<Page<T>> for Listed<T> {
    fn from(page: Page<T>) -> Self {
        Self {
            items: page.items,
            next_cursor: page.next_cursor,
        }
    }
}
