//! The one way a command request is run, whatever its route.
//!
//! A handler takes the [`Caller`] first (so a request without a valid token is a 401 before its
//! path or body is looked at), then its path, then a [`CommandRequest`] (`If-Match`,
//! `Idempotency-Key`, `X-Request-Id` and the body as sent), checks the route's role rule (403),
//! and hands a closure that builds the domain command and calls the command service to [`run`].
//! `run` then, on a task of its own (so that neither the request time limit nor a client that hangs
//! up stops a command half-way, a deposit between its charge and its event say; `serve` waits for
//! these tasks at shutdown):
//! 1. parses the body (415, 400, 422) and fingerprints it as canonical JSON;
//! 2. with an `Idempotency-Key`, reserves it: a replay, `409` in flight, `422` another request;
//! 3. takes one command from the caller's rate allowance (`429`; a replay costs none);
//! 4. runs the closure, extending the key's lease while it runs;
//! 5. stores the answer under the key unless certainly nothing was written (a refusal or invalid
//!    input: the key is given up and can be used again, API.md); a command recorded whose
//!    follow-up failed answers `202` with its outcome;
//! 6. counts the command by name and outcome (`gigledger_commands_total`).

use std::future::Future;

use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::header::{CONTENT_TYPE, ETAG, IF_MATCH, LOCATION};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use gigledger_commands::services::{Outcome, RequestContext, Services};
use gigledger_domain::{Actor, Role};
use serde::de::DeserializeOwned;
use serde::Serialize;
use uuid::Uuid;

use crate::auth::Caller;
use crate::error::{parse_json, ApiError};
use crate::idempotency::{Begin, Fingerprint, IdempotencyKey, Reservation, StoredResponse};
use crate::middleware::RequestId;
use crate::state::AppState;

/// The most bytes of a response stored for a replay (command answers are a few hundred).
const STORED_RESPONSE_LIMIT: usize = 64 * 1024;

/// A command request, read and checked at the edge. The body is kept as sent and parsed by
/// [`run`], after the route's role rule, so that a caller without the role is told 403 whatever
/// they sent.
pub struct CommandRequest<T> {
    /// Who sent it, from the bearer token.
    pub actor: Actor,
    /// Correlation id and `If-Match`.
    pub ctx: RequestContext,
    key: Option<IdempotencyKey>,
    method: axum::http::Method,
    path: String,
    headers: HeaderMap,
    bytes: Bytes,
    body: std::marker::PhantomData<fn() -> T>,
}

impl<T> CommandRequest<T> {
    /// `403` unless the caller has one of `roles` (the route's "who" of API.md; the domain then
    /// checks which side of the deal they are on).
    pub fn require_any(&self, roles: &[Role]) -> Result<(), ApiError> {
        crate::auth::require_any(&self.actor, roles)
    }

    /// The idempotency key the client sent, if any.
    pub fn idempotency_key(&self) -> Option<&str> {
        self.key.as_ref().map(IdempotencyKey::as_str)
    }
}

impl<T> FromRequest<AppState> for CommandRequest<T> {
    type Rejection = Response;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, Self::Rejection> {
        let (mut parts, body) = req.into_parts();
        let Caller(actor) = Caller::from_request_parts(&mut parts, state)
            .await
            .map_err(IntoResponse::into_response)?;
        let read = || -> Result<(RequestContext, Option<IdempotencyKey>), ApiError> {
            let ctx = RequestContext {
                correlation_id: parts.extensions.get::<RequestId>().map(|id| id.0.clone()),
                expected_version: if_match(&parts.headers)?,
            };
            Ok((ctx, IdempotencyKey::from_headers(&parts.headers)?))
        };
        let (ctx, key) = read().map_err(IntoResponse::into_response)?;
        let path = parts
            .uri
            .path_and_query()
            .map_or_else(|| parts.uri.path().to_owned(), |p| p.as_str().to_owned());
        let method = parts.method.clone();
        let headers = parts.headers.clone();
        let bytes = Bytes::from_request(Request::from_parts(parts, body), state)
            .await
            .map_err(|rejection| {
                if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                    ApiError::PayloadTooLarge.into_response()
                } else {
                    ApiError::bad_request("body", rejection.body_text()).into_response()
                }
            })?;
        Ok(Self {
            actor,
            ctx,
            key,
            method,
            path,
            headers,
            bytes,
            body: std::marker::PhantomData,
        })
    }
}

/// The body parsed, and the request's fingerprint: method, path and the body's canonical JSON
/// (keys sorted, no spacing; an empty body is `{}`), so that one request sent with other spacing
/// or key order, or `{}` sent as no body, is the same request.
fn parse_request<T: DeserializeOwned>(
    method: &axum::http::Method,
    path: &str,
    headers: &HeaderMap,
    bytes: &[u8],
) -> Result<(T, Fingerprint), ApiError> {
    let body: T = parse_body(headers, bytes)?;
    let canonical: serde_json::Value = if bytes.is_empty() {
        serde_json::json!({})
    } else {
        // Parsed once more as a plain value: the typed parse above already refused anything
        // that is not one JSON document, so this cannot fail on what reaches it.
        parse_json(bytes)?
    };
    let canonical = serde_json::to_vec(&canonical).map_err(ApiError::internal)?;
    Ok((body, Fingerprint::of(method, path, &canonical)))
}

/// An empty body is `{}` (commands such as accept and fund need none); any other body must be
/// JSON, sent as such.
fn parse_body<T: DeserializeOwned>(headers: &HeaderMap, bytes: &[u8]) -> Result<T, ApiError> {
    if bytes.is_empty() {
        return parse_json(b"{}");
    }
    if !is_json(headers) {
        return Err(ApiError::UnsupportedMediaType {
            detail: "the body must be JSON, sent with Content-Type: application/json".to_owned(),
        });
    }
    parse_json(bytes)
}

fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<mime::Mime>().ok())
        .is_some_and(|m| {
            m.type_() == mime::APPLICATION
                && (m.subtype() == mime::JSON || m.suffix() == Some(mime::JSON))
        })
}

/// `If-Match: "<version>"` (an entity tag as the `ETag` of a GET gives it; a weak `W/` prefix or
/// no quotes are accepted too). `*` asks for no particular version.
pub fn if_match(headers: &HeaderMap) -> Result<Option<u64>, ApiError> {
    let Some(value) = headers.get(IF_MATCH) else {
        return Ok(None);
    };
    let refuse = || ApiError::bad_request("If-Match", "must be an entity tag such as \"3\"");
    let text = value.to_str().map_err(|_| refuse())?.trim();
    if text == "*" {
        return Ok(None);
    }
    let tag = text.strip_prefix("W/").unwrap_or(text);
    let tag = tag
        .strip_prefix('"')
        .and_then(|t| t.strip_suffix('"'))
        .unwrap_or(tag);
    tag.parse::<u64>().map(Some).map_err(|_| refuse())
}

/// The `ETag` of an aggregate at `version`.
pub fn etag(version: u64) -> HeaderValue {
    HeaderValue::from_str(&format!("\"{version}\"")).unwrap_or(HeaderValue::from_static("\"0\""))
}

/// New ids for what a command creates: derived from the idempotency reservation when there is one
/// (a re-run after a crash meets what the first run created), random otherwise.
pub struct Ids {
    reservation: Option<Reservation>,
}

impl Ids {
    pub fn id(&self, purpose: &str) -> Uuid {
        self.reservation
            .as_ref()
            .map_or_else(Uuid::now_v7, |r| r.derived_id(purpose))
    }
}

/// What a command handler gets to run its command.
pub struct Invocation<T> {
    pub body: T,
    pub actor: Actor,
    pub ctx: RequestContext,
    pub ids: Ids,
    pub services: std::sync::Arc<Services>,
    /// The client's `Idempotency-Key`, or a fresh one (a deposit records the key it was sent with).
    pub key: String,
}

/// A command's answer.
pub struct Reply {
    status: StatusCode,
    location: Option<String>,
    /// The `ETag`'s version: `None` when the answer's version is not the resource's (fund answers
    /// the escrow's version; the contract's `ETag` is its GET's).
    etag: Option<u64>,
    body: serde_json::Value,
}

/// The body every command answers: `{ id, version, position }` plus what the route adds.
#[derive(Serialize)]
struct OutcomeBody<'a> {
    id: &'a str,
    version: u64,
    position: Option<i64>,
}

impl Reply {
    /// `200` with the outcome.
    pub fn ok(outcome: &Outcome) -> Self {
        Self::new(StatusCode::OK, None, outcome)
    }

    /// `201` with `Location` for a new resource.
    pub fn created(location: String, outcome: &Outcome) -> Self {
        Self::new(StatusCode::CREATED, Some(location), outcome)
    }

    fn new(status: StatusCode, location: Option<String>, outcome: &Outcome) -> Self {
        let body = serde_json::to_value(OutcomeBody {
            id: &outcome.id,
            version: outcome.version,
            position: outcome.position,
        })
        .unwrap_or_default();
        Self {
            status,
            location,
            etag: Some(outcome.version),
            body,
        }
    }

    /// `200` for a command on a contract's escrow: its version is the escrow's, so no `ETag`.
    pub fn escrow(outcome: &Outcome) -> Self {
        Self {
            etag: None,
            ..Self::ok(outcome)
        }
    }

    /// Adds a member to the body (`contract_id`, `milestone_ids`, …).
    #[must_use]
    pub fn with(mut self, name: &str, value: impl Serialize) -> Self {
        if let serde_json::Value::Object(map) = &mut self.body {
            map.insert(
                name.to_owned(),
                serde_json::to_value(value).unwrap_or_default(),
            );
        }
        self
    }

    /// Replaces the `id` member (a proposal's id where the aggregate is its gig).
    #[must_use]
    pub fn with_id(self, id: impl Serialize) -> Self {
        self.with("id", id)
    }

    fn into_response(self) -> Response {
        let mut response = (self.status, axum::Json(self.body)).into_response();
        let headers = response.headers_mut();
        if let Some(version) = self.etag {
            headers.insert(ETAG, etag(version));
        }
        if let Some(location) = self.location.and_then(|l| HeaderValue::from_str(&l).ok()) {
            headers.insert(LOCATION, location);
        }
        response
    }
}

/// Runs a command request (see the module doc). `name` names the command in metrics.
pub async fn run<T, F, Fut>(
    state: &AppState,
    name: &'static str,
    request: CommandRequest<T>,
    command: F,
) -> Response
where
    T: DeserializeOwned + Send + 'static,
    F: FnOnce(Invocation<T>) -> Fut + Send + 'static,
    Fut: Future<Output = Result<Reply, ApiError>> + Send + 'static,
{
    let state = state.clone();
    // On a task of its own: finishes even when the request is dropped (time limit, hang-up), and
    // `serve` waits for it at shutdown.
    let Some(guard) = state.tasks.begin() else {
        return ApiError::Unavailable {
            detail: "the service is shutting down; nothing was written, so it is safe to retry"
                .to_owned(),
            outcome: None,
        }
        .into_response();
    };
    let task = tokio::spawn(async move {
        let _running = guard;
        let response = match run_inner(&state, request, command).await {
            Ok(response) => response,
            Err(error) => error.into_response(),
        };
        metrics::counter!(
            "gigledger_commands_total",
            "command" => name,
            "outcome" => outcome_label(response.status()),
        )
        .increment(1);
        response
    });
    match task.await {
        Ok(response) => response,
        Err(e) => ApiError::internal(format!("command task failed: {e}")).into_response(),
    }
}

fn outcome_label(status: StatusCode) -> &'static str {
    match status.as_u16() {
        202 => "pending",
        200..=299 => "ok",
        401 | 403 | 404 => "refused",
        409 | 412 => "conflict",
        429 => "rate_limited",
        400..=499 => "invalid",
        502..=504 => "unavailable",
        _ => "error",
    }
}

async fn run_inner<T, F, Fut>(
    state: &AppState,
    request: CommandRequest<T>,
    command: F,
) -> Result<Response, ApiError>
where
    T: DeserializeOwned,
    F: FnOnce(Invocation<T>) -> Fut,
    Fut: Future<Output = Result<Reply, ApiError>>,
{
    let (body, fingerprint) = parse_request::<T>(
        &request.method,
        &request.path,
        &request.headers,
        &request.bytes,
    )?;
    let caller = request.actor.user_id.0;
    let limited = |retry_after| ApiError::TooManyRequests { retry_after };
    // A replay or an "in flight" costs no allowance: only a request that runs does.
    let reservation = match &request.key {
        None => {
            state.limits.take_command(caller).map_err(limited)?;
            None
        }
        Some(key) => match state
            .idempotency
            .begin(caller, key, &fingerprint)
            .await
            .map_err(storage_unavailable)?
        {
            Begin::Fresh(reservation) => {
                if let Err(retry_after) = state.limits.take_command(caller) {
                    give_up(state, &reservation).await;
                    return Err(limited(retry_after));
                }
                Some(reservation)
            }
            Begin::Replay(stored) => return Ok(stored.into_replay()),
            Begin::InFlight => return Err(ApiError::IdempotencyKeyInFlight),
            Begin::Mismatch => return Err(ApiError::IdempotencyKeyReused),
        },
    };
    let invocation = Invocation {
        body,
        actor: request.actor,
        ctx: request.ctx,
        key: request
            .key
            .as_ref()
            .map_or_else(|| Uuid::now_v7().to_string(), |k| k.as_str().to_owned()),
        ids: Ids {
            reservation: reservation.clone(),
        },
        services: state.services.clone(),
    };
    let Some(reservation) = reservation else {
        return Ok(answer(command(invocation).await).0);
    };
    let result = keeping_lease(state, &reservation, command(invocation)).await;
    let (response, recorded) = answer(result);
    // Given up only when certainly nothing was written: a refusal or invalid input, decided
    // before any append. Kept when something was, when it is unknown (a 500, a lost answer from
    // storage), and for a re-run after a takeover, whose first run may have written.
    let keep = recorded || response.status().is_server_error() || reservation.taken_over;
    if !keep {
        give_up(state, &reservation).await;
        return Ok(response);
    }
    let (stored, response) = StoredResponse::capture(response, STORED_RESPONSE_LIMIT).await?;
    match state.idempotency.complete(&reservation, &stored).await {
        Ok(true) => {}
        Ok(false) => {
            tracing::warn!("an idempotency reservation was taken over before this attempt answered")
        }
        Err(e) => tracing::error!(
            error = %e,
            "could not store a command's answer under its idempotency key; a retry runs it again \
             and meets what it wrote"
        ),
    }
    Ok(response)
}

/// The response to a command's result, and whether it recorded something. A command that was
/// recorded but whose follow-up step failed answers `202 Accepted` with its outcome (the process
/// managers finish the step; `X-Min-Position` on its position shows when): a replay of that
/// answer stays true, where a stored 503 would tell the client to retry for a day.
fn answer(result: Result<Reply, ApiError>) -> (Response, bool) {
    match result {
        Ok(reply) => (reply.into_response(), true),
        Err(ApiError::Unavailable {
            detail,
            outcome: Some(outcome),
        }) => {
            let body = serde_json::json!({
                "id": outcome.id,
                "version": outcome.version,
                "position": outcome.position,
                "pending": true,
                "detail": detail,
            });
            let mut response = (StatusCode::ACCEPTED, axum::Json(body)).into_response();
            response.headers_mut().insert(ETAG, etag(outcome.version));
            (response, true)
        }
        Err(error) => {
            let recorded = error.recorded_something();
            (error.into_response(), recorded)
        }
    }
}

/// Runs `work`, extending the reservation's lease every third of it, so that a command that
/// waits its turn or retries is never taken over while it runs.
async fn keeping_lease<R>(
    state: &AppState,
    reservation: &Reservation,
    work: impl Future<Output = R>,
) -> R {
    let every = (state.idempotency.lease() / 3)
        .to_std()
        .unwrap_or(std::time::Duration::from_secs(10))
        .max(std::time::Duration::from_millis(100));
    let mut work = std::pin::pin!(work);
    loop {
        tokio::select! {
            done = &mut work => return done,
            () = tokio::time::sleep(every) => {
                if let Err(e) = state.idempotency.extend(reservation).await {
                    tracing::warn!(error = %e, "could not extend an idempotency lease");
                }
            }
        }
    }
}

async fn give_up(state: &AppState, reservation: &Reservation) {
    if let Err(e) = state.idempotency.abandon(reservation).await {
        // The lease runs out and the key is free again then.
        tracing::warn!(error = %e, "could not give an idempotency key up");
    }
}

/// A storage failure before the command ran: nothing was written, retrying is safe.
pub fn storage_unavailable(error: sqlx::Error) -> ApiError {
    tracing::warn!(error = %error, "storage failed before a command ran");
    ApiError::Unavailable {
        detail: "the service could not reach its storage; nothing was written, so it is safe \
                 to retry"
            .to_owned(),
        outcome: None,
    }
}
