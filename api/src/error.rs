//! The API's one error type and the extractors that report in it.
//!
//! Every failure a handler can meet becomes an [`ApiError`], answered as RFC 9457
//! `application/problem+json`: `type`, `title`, `status`, `detail`, and for input errors an
//! `errors` list of `{field, message}`. Handlers read their input with [`ApiJson`], [`ApiPath`]
//! and [`ApiQuery`] instead of axum's extractors, so that input axum would refuse in plain text
//! is refused here as a problem.
//!
//! Statuses:
//! - `400` the request cannot be read: a body that is not JSON (syntax, invalid UTF-8, nesting
//!   past serde_json's recursion limit of 128, trailing bytes), a path or query value of the
//!   wrong type, a malformed header.
//! - `413` a body over the limit; `415` a body that is not `application/json`.
//! - `422` the request was read but is invalid: a JSON value of the wrong type, a missing or
//!   unknown field, a domain validation refusal; also an `Idempotency-Key` reused for another
//!   request (API.md).
//! - `401`, `403`, `404`, `409` as their names; `412` a stale `If-Match`.
//! - `502` / `504` the payment gateway failed / did not answer; `503` storage failed before
//!   anything was recorded (retry), or a command recorded whose follow-up is not done yet.
//! - `500` anything else: an opaque body, and one log line here, at the boundary.
//!
//! Mapping from the services is exhaustive (no wildcard arm over [`ServiceError`],
//! [`ErrorKind`] or [`GatewayError`]), and each domain error's `kind()` is an exhaustive match in
//! the domain, so a new refusal without a status does not compile. There is deliberately no
//! `From<ServiceError>`: telling a stale `If-Match` (412) from a conflict that outlived every retry
//! (409) needs the request's [`RequestContext`], so handlers call [`ApiError::from_service`].

use axum::extract::rejection::{BytesRejection, PathRejection};
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::header::{CONTENT_TYPE, RETRY_AFTER};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use gigledger_commands::services::{RequestContext, ServiceError};
use gigledger_domain::contract::ContractError;
use gigledger_domain::error::{DomainError, ErrorKind};
use gigledger_domain::escrow::EscrowError;
use gigledger_domain::gateway::GatewayError;
use gigledger_domain::gig::GigError;
use serde::de::DeserializeOwned;
use serde::Serialize;

/// The media type of every error body.
pub const PROBLEM_JSON: &str = "application/problem+json";

/// Seconds a client is asked to wait (`Retry-After`) before retrying a request that may succeed
/// later.
const RETRY_AFTER_SECONDS: u32 = 1;

/// One input at fault: `field` names it as the client sent it (`milestones[0].amount`, `title`,
/// a path parameter's or query parameter's name, `body` for the body as a whole).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

impl FieldError {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
        }
    }
}

/// Why a request failed. Each variant's doc gives its status.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// 400: the request could not be read (see the module doc).
    #[error("{detail}")]
    BadRequest {
        detail: String,
        errors: Vec<FieldError>,
    },
    /// 401: no valid bearer token.
    #[error("{detail}")]
    Unauthorized { detail: String },
    /// 403: the caller may not do this.
    #[error("{detail}")]
    Forbidden { detail: String },
    /// 404: no such resource, or one the caller must not learn of; also an unknown route.
    #[error("{detail}")]
    NotFound { detail: String },
    /// 405: the route exists, the method does not.
    #[error("this method is not allowed on this resource")]
    MethodNotAllowed,
    /// 409: the resource's state does not allow this now.
    #[error("{detail}")]
    Conflict { detail: String },
    /// 409 with `Retry-After`: an earlier request with this `Idempotency-Key` is still running.
    #[error("a request with this idempotency key is still being processed")]
    IdempotencyKeyInFlight,
    /// 412: `If-Match` named a version the resource has moved on from; nothing was written.
    #[error("{detail}")]
    PreconditionFailed { detail: String },
    /// 413: the body is over the limit.
    #[error("the request body is too large")]
    PayloadTooLarge,
    /// 415: the body is not `application/json`.
    #[error("{detail}")]
    UnsupportedMediaType { detail: String },
    /// 422: the request was read but its input is invalid.
    #[error("{detail}")]
    Validation {
        detail: String,
        errors: Vec<FieldError>,
    },
    /// 422: this `Idempotency-Key` was used for a different method, path or body.
    #[error("this idempotency key was used for a different request")]
    IdempotencyKeyReused,
    /// 429 with `Retry-After`: the caller's command rate is used up.
    #[error("too many requests; retry after {retry_after} seconds")]
    TooManyRequests { retry_after: u32 },
    /// 502: the payment provider failed.
    #[error("{detail}")]
    BadGateway { detail: String },
    /// 503 with `Retry-After`: try again shortly. `outcome` is set when the command was recorded
    /// but a follow-up step is not done yet: its `id`, `version` and `position` go in the body.
    #[error("{detail}")]
    Unavailable {
        detail: String,
        outcome: Option<Box<gigledger_commands::services::Outcome>>,
    },
    /// 504: the payment provider did not answer in time.
    #[error("{detail}")]
    GatewayTimeout { detail: String },
    /// 500: not the client's fault. `cause` is logged once and never sent.
    #[error("internal error: {cause}")]
    Internal { cause: String },
}

/// The problem document of RFC 9457, with our extension members.
#[derive(Debug, Serialize)]
struct Problem<'a> {
    #[serde(rename = "type")]
    kind: &'a str,
    title: &'a str,
    status: u16,
    detail: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    errors: Option<&'a [FieldError]>,
    /// For a recorded command whose follow-up is pending: what it wrote.
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    version: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    position: Option<i64>,
}

impl ApiError {
    /// A 400 about one input.
    pub fn bad_request(field: impl Into<String>, message: impl Into<String>) -> Self {
        let error = FieldError::new(field, message);
        Self::BadRequest {
            detail: format!("{}: {}", error.field, error.message),
            errors: vec![error],
        }
    }

    /// A 422 about one input.
    pub fn validation(field: impl Into<String>, message: impl Into<String>) -> Self {
        let error = FieldError::new(field, message);
        Self::Validation {
            detail: format!("{}: {}", error.field, error.message),
            errors: vec![error],
        }
    }

    /// A 500 whose cause is logged, never shown.
    pub fn internal(cause: impl std::fmt::Display) -> Self {
        Self::Internal {
            cause: cause.to_string(),
        }
    }

    /// The answer to a command service's error. `ctx` is the request's: a
    /// [`ServiceError::Conflict`] is a stale `If-Match` (412) when the request carried an
    /// expected version (the store then refuses a moved aggregate at once, before deciding),
    /// and otherwise a conflict that lasted through every retry (409).
    pub fn from_service(error: ServiceError, ctx: &RequestContext) -> Self {
        match error {
            ServiceError::Gig(e) => e.into(),
            ServiceError::Contract(e) => e.into(),
            ServiceError::Escrow(e) => e.into(),
            ServiceError::Wallet(e) => refusal(&e),
            ServiceError::ProviderRefused(cause) => {
                tracing::info!(error.message = %cause, "the payment provider refused");
                Self::Conflict {
                    detail: "the payment provider refused this request; nothing was recorded"
                        .to_owned(),
                }
            }
            ServiceError::ProviderUnavailable(GatewayError::Timeout) => Self::GatewayTimeout {
                detail: "the payment provider did not answer in time; nothing was recorded, \
                         retry later"
                    .to_owned(),
            },
            ServiceError::ProviderUnavailable(cause) => {
                tracing::warn!(error.message = %cause, "the payment provider failed");
                Self::BadGateway {
                    detail: "the payment provider failed; nothing was recorded, retry later"
                        .to_owned(),
                }
            }
            ServiceError::Conflict { aggregate_type } => match ctx.expected_version {
                Some(expected) => Self::PreconditionFailed {
                    detail: format!(
                        "the {aggregate_type} is no longer at version {expected}; reload it and \
                         decide again"
                    ),
                },
                None => Self::Conflict {
                    detail: format!(
                        "the {aggregate_type} kept changing while this request ran; try again"
                    ),
                },
            },
            ServiceError::Internal(cause) => Self::Internal { cause },
            ServiceError::NotRecorded(cause) => {
                tracing::warn!(error.message = %cause, "storage failed; nothing was recorded");
                Self::Unavailable {
                    detail: "the service could not record this request; nothing was written, \
                             so it is safe to retry"
                        .to_owned(),
                    outcome: None,
                }
            }
            ServiceError::Incomplete {
                outcome,
                step,
                cause,
            } => {
                tracing::warn!(
                    command.step = %step,
                    error.message = %cause,
                    "a command was recorded but its follow-up step failed"
                );
                Self::Unavailable {
                    detail: "the command was recorded, but a step that follows it is not done \
                             yet; it will complete without another request, read it back with \
                             X-Min-Position"
                        .to_owned(),
                    outcome: Some(outcome),
                }
            }
        }
    }

    /// The status this error is answered with.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::BadRequest { .. } => StatusCode::BAD_REQUEST,
            Self::Unauthorized { .. } => StatusCode::UNAUTHORIZED,
            Self::Forbidden { .. } => StatusCode::FORBIDDEN,
            Self::NotFound { .. } => StatusCode::NOT_FOUND,
            Self::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Self::Conflict { .. } | Self::IdempotencyKeyInFlight => StatusCode::CONFLICT,
            Self::PreconditionFailed { .. } => StatusCode::PRECONDITION_FAILED,
            Self::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Self::UnsupportedMediaType { .. } => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::Validation { .. } | Self::IdempotencyKeyReused => {
                StatusCode::UNPROCESSABLE_ENTITY
            }
            Self::TooManyRequests { .. } => StatusCode::TOO_MANY_REQUESTS,
            Self::BadGateway { .. } => StatusCode::BAD_GATEWAY,
            Self::Unavailable { .. } => StatusCode::SERVICE_UNAVAILABLE,
            Self::GatewayTimeout { .. } => StatusCode::GATEWAY_TIMEOUT,
            Self::Internal { .. } => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The problem's `type` (a URI reference, relative to the API) and `title`: one per kind of
    /// problem, stable, so clients may branch on `type`.
    pub fn problem_type(&self) -> (&'static str, &'static str) {
        match self {
            Self::BadRequest { .. } => ("/problems/bad-request", "The request cannot be read"),
            Self::Unauthorized { .. } => ("/problems/unauthorized", "Authentication required"),
            Self::Forbidden { .. } => ("/problems/forbidden", "Not allowed"),
            Self::NotFound { .. } => ("/problems/not-found", "Not found"),
            Self::MethodNotAllowed => ("/problems/method-not-allowed", "Method not allowed"),
            Self::Conflict { .. } => ("/problems/conflict", "Conflict with the current state"),
            Self::IdempotencyKeyInFlight => (
                "/problems/idempotency-key-in-flight",
                "A request with this idempotency key is in progress",
            ),
            Self::PreconditionFailed { .. } => {
                ("/problems/precondition-failed", "The resource has changed")
            }
            Self::PayloadTooLarge => ("/problems/payload-too-large", "Request body too large"),
            Self::UnsupportedMediaType { .. } => {
                ("/problems/unsupported-media-type", "Unsupported media type")
            }
            Self::Validation { .. } => ("/problems/validation", "Invalid input"),
            Self::IdempotencyKeyReused => (
                "/problems/idempotency-key-reused",
                "Idempotency key reused for a different request",
            ),
            Self::TooManyRequests { .. } => ("/problems/too-many-requests", "Too many requests"),
            Self::BadGateway { .. } => (
                "/problems/payment-provider-failed",
                "The payment provider failed",
            ),
            Self::Unavailable { .. } => ("/problems/unavailable", "Temporarily unavailable"),
            Self::GatewayTimeout { .. } => (
                "/problems/payment-provider-timeout",
                "The payment provider did not answer",
            ),
            Self::Internal { .. } => ("/problems/internal", "Internal error"),
        }
    }

    /// Whether the request recorded something before failing, so that its `Idempotency-Key`
    /// must keep this answer ([`crate::idempotency::IdempotencyStore::complete`]) rather than be
    /// given up for reuse (`abandon`). Only a command recorded with a follow-up pending has; every
    /// other error wrote nothing, or (`Internal`, after a store error of unknown outcome) may have,
    /// in which case a retry that runs again meets what was written (the domain refuses a repeat,
    /// a deposit meets its milestone's single charge) and tells the truth, which a stored 500
    /// would not.
    pub fn recorded_something(&self) -> bool {
        matches!(
            self,
            Self::Unavailable {
                outcome: Some(_),
                ..
            }
        )
    }

    fn retry_after(&self) -> Option<u32> {
        match self {
            Self::IdempotencyKeyInFlight | Self::Unavailable { .. } => Some(RETRY_AFTER_SECONDS),
            Self::TooManyRequests { retry_after } => Some(*retry_after),
            _ => None,
        }
    }
}

/// A domain refusal's status follows its kind; a validation refusal names its field (`body` when
/// the rule is about the request as a whole).
fn refusal(error: &dyn DomainError) -> ApiError {
    let detail = error.to_string();
    match error.kind() {
        ErrorKind::Validation => {
            let field = error.field().unwrap_or("body");
            ApiError::Validation {
                errors: vec![FieldError::new(field, detail.clone())],
                detail,
            }
        }
        ErrorKind::Forbidden => ApiError::Forbidden { detail },
        ErrorKind::NotFound => ApiError::NotFound { detail },
        ErrorKind::Conflict => ApiError::Conflict { detail },
        ErrorKind::Unavailable => ApiError::Unavailable {
            detail,
            outcome: None,
        },
    }
}

impl From<GigError> for ApiError {
    fn from(error: GigError) -> Self {
        refusal(&error)
    }
}

impl From<ContractError> for ApiError {
    fn from(error: ContractError) -> Self {
        refusal(&error)
    }
}

impl From<EscrowError> for ApiError {
    fn from(error: EscrowError) -> Self {
        match &error {
            // The gateway's failures are told apart: it failed (502), or it did not answer (504).
            EscrowError::Gateway(gateway) => match gateway {
                // The provider's own words (an HTTP client's error, a URL, a SQL error of the
                // simulated one) are logged, never sent.
                GatewayError::Unavailable(cause) => {
                    tracing::warn!(error.message = %cause, "the payment provider failed");
                    Self::BadGateway {
                        detail: "the payment provider failed; nothing was charged or recorded, \
                                 retry later"
                            .to_owned(),
                    }
                }
                GatewayError::Timeout => Self::GatewayTimeout {
                    detail: error.to_string(),
                },
                GatewayError::Declined(_) | GatewayError::Voided => refusal(&error),
            },
            _ => refusal(&error),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        let (kind, title) = self.problem_type();
        let detail = match &self {
            // Logged once, here at the boundary; the client learns nothing of the cause.
            Self::Internal { cause } => {
                tracing::error!(error.message = %cause, "request failed with an internal error");
                "the server failed to handle this request".to_owned()
            }
            other => other.to_string(),
        };
        let errors = match &self {
            Self::BadRequest { errors, .. } | Self::Validation { errors, .. } => {
                Some(errors.as_slice())
            }
            _ => None,
        };
        let outcome = match &self {
            Self::Unavailable {
                outcome: Some(outcome),
                ..
            } => Some(outcome.as_ref()),
            _ => None,
        };
        let problem = Problem {
            kind,
            title,
            status: status.as_u16(),
            detail,
            errors,
            id: outcome.map(|o| o.id.as_str()),
            version: outcome.map(|o| o.version),
            position: outcome.and_then(|o| o.position),
        };
        let body = match serde_json::to_vec(&problem) {
            Ok(body) => body,
            Err(e) => {
                tracing::error!(error.message = %e, "cannot serialise a problem");
                br#"{"type":"/problems/internal","title":"Internal error","status":500}"#.to_vec()
            }
        };
        let mut response = (status, body).into_response();
        let headers = response.headers_mut();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
        if let Some(seconds) = self.retry_after() {
            headers.insert(RETRY_AFTER, HeaderValue::from(seconds));
        }
        response
    }
}

/// The fallback for a path no route matches: a 404 problem, not an empty body.
pub async fn route_not_found() -> ApiError {
    ApiError::NotFound {
        detail: "no resource at this path".to_owned(),
    }
}

/// The fallback for a method a route does not take: a 405 problem.
pub async fn method_not_allowed() -> ApiError {
    ApiError::MethodNotAllowed
}

// ---- Extractors ----------------------------------------------------------------------------

/// A JSON body, refused as a problem: `415` when it is not `application/json` (or `+json`),
/// `413` over the body limit, `400` when it is not JSON, `422` with the field's path when a
/// value has the wrong type or a field is missing or unknown.
#[derive(Clone, Copy, Debug, Default)]
pub struct ApiJson<T>(pub T);

impl<S, T> FromRequest<S> for ApiJson<T>
where
    S: Send + Sync,
    T: DeserializeOwned,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        if !is_json(req.headers()) {
            return Err(ApiError::UnsupportedMediaType {
                detail: "the body must be JSON, sent with Content-Type: application/json"
                    .to_owned(),
            });
        }
        let bytes = Bytes::from_request(req, state)
            .await
            .map_err(from_bytes_rejection)?;
        parse_json(&bytes).map(ApiJson)
    }
}

fn is_json(headers: &HeaderMap) -> bool {
    let Some(value) = headers.get(CONTENT_TYPE).and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let Ok(mime) = value.parse::<mime::Mime>() else {
        return false;
    };
    mime.type_() == mime::APPLICATION
        && (mime.subtype() == mime::JSON || mime.suffix() == Some(mime::JSON))
}

fn from_bytes_rejection(rejection: BytesRejection) -> ApiError {
    if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
        ApiError::PayloadTooLarge
    } else {
        ApiError::bad_request("body", rejection.body_text())
    }
}

/// Parses a whole body as `T`. Public so that a handler that needs the raw bytes too (the
/// idempotency fingerprint) parses them the same way.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    let value = serde_path_to_error::deserialize(&mut deserializer)
        .map_err(|e| json_error(e.path().to_string(), e.into_inner()))?;
    // Trailing bytes after the value make it not one JSON document.
    deserializer
        .end()
        .map_err(|e| json_error(".".to_owned(), e))?;
    // JSON can carry NUL only as the escape `\u0000`, which PostgreSQL's text and jsonb refuse:
    // refused here, naming the field, rather than failing in storage.
    if bytes.windows(6).any(|w| w == b"\\u0000") {
        if let Ok(whole) = serde_json::from_slice::<serde_json::Value>(bytes) {
            if let Some(path) = nul_at(&whole, "") {
                return Err(ApiError::validation(
                    if path.is_empty() {
                        "body".to_owned()
                    } else {
                        path
                    },
                    "must not contain the NUL character (U+0000)",
                ));
            }
        }
    }
    Ok(value)
}

/// The path of the first string (value or key) holding U+0000, if any.
fn nul_at(value: &serde_json::Value, path: &str) -> Option<String> {
    match value {
        serde_json::Value::String(text) => text.contains('\0').then(|| path.to_owned()),
        serde_json::Value::Array(items) => items
            .iter()
            .enumerate()
            .find_map(|(i, item)| nul_at(item, &format!("{path}[{i}]"))),
        serde_json::Value::Object(fields) => fields.iter().find_map(|(key, item)| {
            let here = if path.is_empty() {
                key.clone()
            } else {
                format!("{path}.{key}")
            };
            if key.contains('\0') {
                Some(here)
            } else {
                nul_at(item, &here)
            }
        }),
        _ => None,
    }
}

fn json_error(path: String, error: serde_json::Error) -> ApiError {
    use serde_json::error::Category;
    let message = strip_position(&error);
    match error.classify() {
        Category::Data => ApiError::validation(field_of(&path, &message, "body"), message),
        Category::Syntax | Category::Eof | Category::Io => ApiError::BadRequest {
            detail: format!("the body is not valid JSON: {message}"),
            errors: vec![FieldError::new("body", message)],
        },
    }
}

/// serde_json's message without " at line 1 column 7", which is about bytes, not fields.
fn strip_position(error: &serde_json::Error) -> String {
    let message = error.to_string();
    let suffix = format!(" at line {} column {}", error.line(), error.column());
    message
        .strip_suffix(&suffix)
        .map_or(message.clone(), str::to_owned)
}

/// The field a data error is about: its path, and for a missing field (reported at the enclosing
/// object) that field's name below it. An unknown field's path already ends in its name.
fn field_of(path: &str, message: &str, whole: &str) -> String {
    let parent = if path == "." { "" } else { path };
    let named = message
        .strip_prefix("missing field `")
        .and_then(|rest| rest.split('`').next());
    match (parent, named) {
        ("", Some(name)) => name.to_owned(),
        (parent, Some(name)) => format!("{parent}.{name}"),
        ("", None) => whole.to_owned(),
        (parent, None) => parent.to_owned(),
    }
}

/// Path parameters, refused as a `400` problem naming the parameter (a bad UUID, say).
#[derive(Clone, Copy, Debug)]
pub struct ApiPath<T>(pub T);

impl<S, T> FromRequestParts<S> for ApiPath<T>
where
    S: Send + Sync,
    T: DeserializeOwned + Send,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        // NUL never names anything here, and PostgreSQL's text refuses it.
        if parts.uri.path().contains("%00") {
            return Err(ApiError::bad_request(
                "path",
                "must not contain the NUL character (%00)",
            ));
        }
        axum::extract::Path::<T>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Path(value)| ApiPath(value))
            .map_err(from_path_rejection)
    }
}

fn from_path_rejection(rejection: PathRejection) -> ApiError {
    use axum::extract::path::ErrorKind as PathErrorKind;
    // A 5xx from axum here is a route that does not fit its extractor: our bug, not the client's.
    if rejection.status().is_server_error() {
        return ApiError::internal(rejection.body_text());
    }
    let PathRejection::FailedToDeserializePathParams(error) = &rejection else {
        return ApiError::bad_request("path", rejection.body_text());
    };
    let field = match error.kind() {
        PathErrorKind::ParseErrorAtKey { key, .. }
        | PathErrorKind::DeserializeError { key, .. }
        | PathErrorKind::InvalidUtf8InPathParam { key } => key.clone(),
        _ => "path".to_owned(),
    };
    let message = match error.kind() {
        PathErrorKind::ParseErrorAtKey {
            value,
            expected_type,
            ..
        }
        | PathErrorKind::ParseErrorAtIndex {
            value,
            expected_type,
            ..
        }
        | PathErrorKind::ParseError {
            value,
            expected_type,
        } => format!("`{value}` is not a valid {}", short_type(expected_type)),
        _ => error.body_text(),
    };
    ApiError::bad_request(field, message)
}

/// `uuid::Uuid` → `uuid`: the client has no use for our module paths.
fn short_type(type_name: &str) -> String {
    type_name
        .rsplit("::")
        .next()
        .unwrap_or(type_name)
        .to_lowercase()
}

/// A query string, refused as a `400` problem naming the parameter.
#[derive(Clone, Copy, Debug, Default)]
pub struct ApiQuery<T>(pub T);

impl<S, T> FromRequestParts<S> for ApiQuery<T>
where
    S: Send + Sync,
    T: DeserializeOwned,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let query = parts.uri.query().unwrap_or_default();
        // PostgreSQL's text refuses NUL: refused here, naming the parameter.
        if let Some((key, _)) = form_urlencoded::parse(query.as_bytes())
            .find(|(key, value)| key.contains('\0') || value.contains('\0'))
        {
            return Err(ApiError::bad_request(
                key.replace('\0', ""),
                "must not contain the NUL character (%00)",
            ));
        }
        let deserializer =
            serde_urlencoded::Deserializer::new(form_urlencoded::parse(query.as_bytes()));
        serde_path_to_error::deserialize(deserializer)
            .map(ApiQuery)
            .map_err(|e| {
                let path = e.path().to_string();
                let message = e.into_inner().to_string();
                ApiError::bad_request(field_of(&path, &message, "query"), message)
            })
    }
}

#[cfg(test)]
mod tests;
