//! The one way a command request is run, whatever its route.
//!
//! A handler takes a [`CommandRequest`] (which has authenticated the caller and read `If-Match`,
//! `Idempotency-Key`, `X-Request-Id` and the JSON body, refusing each as a problem), checks the
//! route's role rule, and hands a closure that builds the domain command and calls the command
//! service to [`run`]. `run` then:
//! 1. takes one command from the caller's rate allowance (`429` past it);
//! 2. with an `Idempotency-Key`, reserves it (a replay, `409` in flight, `422` another request);
//! 3. runs the closure on a task of its own, so that neither the request time limit nor a client
//!    that hangs up stops a command half-way (a deposit between its charge and its event, say);
//! 4. stores the answer under the key when anything was recorded, and gives the key up when
//!    nothing was (a refusal, a validation error), so the key can be used again (API.md);
//! 5. counts the command by name and outcome (`gigledger_commands_total`).

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

/// A command request, read and checked at the edge.
pub struct CommandRequest<T> {
    /// The parsed body.
    pub body: T,
    /// Who sent it, from the bearer token.
    pub actor: Actor,
    /// Correlation id and `If-Match`.
    pub ctx: RequestContext,
    key: Option<IdempotencyKey>,
    fingerprint: Fingerprint,
}

impl<T> CommandRequest<T> {
    /// `403` unless the caller has one of `roles` (the route's "who" of API.md; the domain then
    /// checks which side of the deal they are on).
    pub fn require_any(&self, roles: &[Role]) -> Result<(), ApiError> {
        if roles.iter().any(|role| self.actor.has_role(*role)) {
            Ok(())
        } else {
            let names: Vec<&str> = roles.iter().map(|r| r.as_str()).collect();
            Err(ApiError::Forbidden {
                detail: format!("this needs the role {}", names.join(" or ")),
            })
        }
    }

    /// The idempotency key the client sent, if any.
    pub fn idempotency_key(&self) -> Option<&str> {
        self.key.as_ref().map(IdempotencyKey::as_str)
    }
}

impl<T> FromRequest<AppState> for CommandRequest<T>
where
    T: DeserializeOwned,
{
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
        let fingerprint_method = parts.method.clone();
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
        let body = parse_body(&headers, &bytes).map_err(IntoResponse::into_response)?;
        Ok(Self {
            body,
            actor,
            ctx,
            key,
            fingerprint: Fingerprint::of(&fingerprint_method, &path, &bytes),
        })
    }
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
    version: u64,
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
            version: outcome.version,
            body,
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
        headers.insert(ETAG, etag(self.version));
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
    T: Send + 'static,
    F: FnOnce(Invocation<T>) -> Fut + Send + 'static,
    Fut: Future<Output = Result<Reply, ApiError>> + Send + 'static,
{
    let state = state.clone();
    // On a task of its own: finishes even when the request is dropped (time limit, hang-up).
    let task = tokio::spawn(async move {
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
    F: FnOnce(Invocation<T>) -> Fut,
    Fut: Future<Output = Result<Reply, ApiError>>,
{
    state
        .limits
        .take_command(request.actor.user_id.0)
        .map_err(|retry_after| ApiError::TooManyRequests { retry_after })?;
    let caller = request.actor.user_id.0;
    let reservation = match &request.key {
        None => None,
        Some(key) => match state
            .idempotency
            .begin(caller, key, &request.fingerprint)
            .await
            .map_err(storage_unavailable)?
        {
            Begin::Fresh(reservation) => Some(reservation),
            Begin::Replay(stored) => return Ok(stored.into_replay()),
            Begin::InFlight => return Err(ApiError::IdempotencyKeyInFlight),
            Begin::Mismatch => return Err(ApiError::IdempotencyKeyReused),
        },
    };
    let invocation = Invocation {
        body: request.body,
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
    let result = command(invocation).await;
    let Some(reservation) = reservation else {
        return Ok(result.map_or_else(IntoResponse::into_response, Reply::into_response));
    };
    let (response, keep) = match result {
        Ok(reply) => (reply.into_response(), true),
        Err(error) => {
            let keep = error.recorded_something();
            (error.into_response(), keep)
        }
    };
    if !keep {
        if let Err(e) = state.idempotency.abandon(&reservation).await {
            // The lease runs out and the key is free again then.
            tracing::warn!(error = %e, "could not give an idempotency key up");
        }
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
