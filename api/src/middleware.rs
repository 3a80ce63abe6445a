//! What wraps every request: its id, its span, its metrics, its time limit, and the browser
//! origins allowed to call.

use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderName, HeaderValue, Method};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tower_http::cors::{AllowOrigin, CorsLayer};
use tracing::Instrument;
use uuid::Uuid;

use crate::error::ApiError;
use crate::state::AppState;

/// The header naming a request, in and out.
pub const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// The longest `X-Request-Id` kept as sent; a longer or unprintable one is replaced.
const MAX_REQUEST_ID: usize = 128;

/// The request's id: the client's `X-Request-Id` when it is 1–128 printable characters, a new
/// UUID otherwise. It is the correlation id of every event the request writes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RequestId(pub String);

fn request_id_of(req: &Request) -> String {
    req.headers()
        .get(&X_REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|v| !v.is_empty() && v.len() <= MAX_REQUEST_ID)
        .filter(|v| v.bytes().all(|b| (b'!'..=b'~').contains(&b)))
        .map_or_else(|| Uuid::now_v7().to_string(), str::to_owned)
}

/// One span and one latency observation per request, its id in and out, and its time limit:
/// past it the answer is `503` (a command keeps running to its end on its own task, see
/// [`crate::command::run`]).
pub async fn observe(State(state): State<AppState>, mut req: Request, next: Next) -> Response {
    let started = Instant::now();
    let id = request_id_of(&req);
    req.extensions_mut().insert(RequestId(id.clone()));
    let method = req.method().clone();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let span = tracing::info_span!(
        "request",
        http.method = %method,
        http.route = %route,
        http.status = tracing::field::Empty,
        latency_ms = tracing::field::Empty,
        request_id = %id,
    );
    let limit = state.limits.request_timeout;
    let mut response = async move {
        match tokio::time::timeout(limit, next.run(req)).await {
            Ok(response) => response,
            Err(_) => ApiError::Unavailable {
                detail: "the request took longer than its time limit. A command it carried runs \
                         to its end and may have taken effect: retry with the same \
                         Idempotency-Key to get its answer, or read the resource back before \
                         sending it again without one"
                    .to_owned(),
                outcome: None,
            }
            .into_response(),
        }
    }
    .instrument(span.clone())
    .await;
    let elapsed = started.elapsed();
    let status = response.status();
    span.record("http.status", status.as_u16());
    span.record(
        "latency_ms",
        u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX),
    );
    span.in_scope(|| tracing::info!("answered"));
    metrics::histogram!(
        "gigledger_http_request_duration_seconds",
        "method" => method_label(&method),
        "route" => route,
        "status" => status.as_u16().to_string(),
    )
    .record(elapsed.as_secs_f64());
    if let Ok(value) = HeaderValue::from_str(&id) {
        response.headers_mut().insert(X_REQUEST_ID, value);
    }
    response
}

/// A bounded label: a client choosing any method name must not grow the metrics without end.
fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PATCH => "PATCH",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    }
}

/// CORS for the configured origins; `None` when there are none (browsers on other origins are
/// then refused by their own rules).
pub fn cors(origins: &[String]) -> Option<CorsLayer> {
    let origins: Vec<HeaderValue> = origins
        .iter()
        .map(|o| o.trim())
        .filter(|o| !o.is_empty())
        .filter_map(|o| HeaderValue::from_str(o).ok())
        .collect();
    if origins.is_empty() {
        return None;
    }
    // `*`: any origin (tower-http refuses a wildcard inside a list).
    let allow = if origins.iter().any(|o| o.as_bytes() == b"*") {
        AllowOrigin::any()
    } else {
        AllowOrigin::list(origins)
    };
    let header = HeaderName::from_static;
    Some(
        CorsLayer::new()
            .allow_origin(allow)
            .allow_methods([Method::GET, Method::POST, Method::PATCH, Method::PUT])
            .allow_headers([
                axum::http::header::AUTHORIZATION,
                axum::http::header::CONTENT_TYPE,
                axum::http::header::IF_MATCH,
                header("idempotency-key"),
                header("x-min-position"),
                header("last-event-id"),
                X_REQUEST_ID,
            ])
            .expose_headers([
                axum::http::header::ETAG,
                axum::http::header::LOCATION,
                axum::http::header::RETRY_AFTER,
                header("x-position"),
                header("idempotent-replayed"),
                X_REQUEST_ID,
            ])
            .max_age(std::time::Duration::from_secs(600)),
    )
}
