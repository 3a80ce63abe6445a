//! The caller's own views: who they are, their gigs, proposals, contracts and notifications.
//!
//! Who (API.md): anyone signed in for `/v1/me`, notifications and their stream; `/v1/me/gigs`
//! needs the role `client`, `/v1/me/proposals` `freelancer`, `/v1/me/contracts` either. Every
//! list is of the caller's own rows only: the caller's id comes from the token, never from the
//! request.

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderMap, HeaderName, HeaderValue};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures::stream::{self, StreamExt as _};
use gigledger_domain::{GigStatus, Role};
use gigledger_projections::read::{contracts, gig_board, notifications, proposals};
use serde::{Deserialize, Serialize};

use crate::auth::{require_any, Caller, StreamCaller};
use crate::error::{ApiError, ApiJson, ApiQuery};
use crate::query::{self, from_read, read_failed, Listed, MinPosition, Paging};
use crate::routes::Table;
use crate::state::AppState;

pub fn routes(table: Table) -> Table {
    table
        .get("/v1/me", "anyone signed in", me)
        .get("/v1/me/gigs", "client", my_gigs)
        .get("/v1/me/proposals", "freelancer", my_proposals)
        .get("/v1/me/contracts", "client or freelancer", my_contracts)
        .get("/v1/me/notifications", "anyone signed in", my_notifications)
        .post("/v1/me/notifications/read", "anyone signed in", mark_read)
        .get("/v1/me/stream", "anyone signed in", stream)
}

/// `GET /v1/me`.
#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct Me {
    sub: String,
    roles: Vec<Role>,
}

/// Reads the token only; `X-Min-Position` waits for every frontend view, and `X-Position` says
/// how far the slowest of them has got, so a client can use it as a "views are here" probe.
#[utoipa::path(get, path = "/v1/me", tag = "me", responses((status = 200, description = "the caller as the server sees them", body = Me)))]
pub(crate) async fn me(
    State(state): State<AppState>,
    Caller(caller): Caller,
    min: MinPosition,
) -> Result<Response, ApiError> {
    let position = min
        .wait(
            &state,
            &[
                gig_board::NAME,
                proposals::NAME,
                contracts::NAME,
                notifications::NAME,
                gigledger_projections::read::user_stats::NAME,
            ],
        )
        .await?;
    Ok(query::answer(
        position,
        &Me {
            sub: caller.user_id.to_string(),
            roles: caller.roles,
        },
    ))
}

/// `GET /v1/me/gigs` query.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct MyGigsQuery {
    pub status: Option<GigStatus>,
    pub limit: Option<u32>,
    pub cursor: Option<String>,
}

#[utoipa::path(get, path = "/v1/me/gigs", tag = "me", params(MyGigsQuery), responses((status = 200, description = "the gigs the caller posted", body = crate::query::Listed<gigledger_projections::read::gig_board::GigCard>)))]
pub(crate) async fn my_gigs(
    State(state): State<AppState>,
    Caller(caller): Caller,
    min: MinPosition,
    ApiQuery(params): ApiQuery<MyGigsQuery>,
) -> Result<Response, ApiError> {
    require_any(&caller, &[Role::Client])?;
    let limit = Paging {
        limit: params.limit,
        cursor: None,
    }
    .limit()?;
    let position = min.wait(&state, &[gig_board::NAME]).await?;
    let page = gig_board::gigs_of_client(
        &state.pool,
        caller.user_id,
        params.status,
        params.cursor.as_deref(),
        limit,
    )
    .await
    .map_err(from_read)?;
    Ok(query::answer(position, &Listed::from(page)))
}

#[utoipa::path(get, path = "/v1/me/proposals", tag = "me", params(Paging), responses((status = 200, description = "the caller's proposals", body = crate::query::Listed<gigledger_projections::read::proposals::ProposalView>)))]
pub(crate) async fn my_proposals(
    State(state): State<AppState>,
    Caller(caller): Caller,
    min: MinPosition,
    ApiQuery(paging): ApiQuery<Paging>,
) -> Result<Response, ApiError> {
    require_any(&caller, &[Role::Freelancer])?;
    let limit = paging.limit()?;
    let position = min.wait(&state, &[proposals::NAME]).await?;
    let page = proposals::proposals_of_freelancer(
        &state.pool,
        caller.user_id,
        paging.cursor.as_deref(),
        limit,
    )
    .await
    .map_err(from_read)?;
    Ok(query::answer(position, &Listed::from(page)))
}

#[utoipa::path(get, path = "/v1/me/contracts", tag = "me", params(Paging), responses((status = 200, description = "the caller's contracts", body = crate::query::Listed<gigledger_projections::read::contracts::ContractView>)))]
pub(crate) async fn my_contracts(
    State(state): State<AppState>,
    Caller(caller): Caller,
    min: MinPosition,
    ApiQuery(paging): ApiQuery<Paging>,
) -> Result<Response, ApiError> {
    require_any(&caller, &[Role::Client, Role::Freelancer])?;
    let limit = paging.limit()?;
    let position = min.wait(&state, &[contracts::NAME]).await?;
    let page =
        contracts::contracts_of_user(&state.pool, caller.user_id, paging.cursor.as_deref(), limit)
            .await
            .map_err(from_read)?;
    Ok(query::answer(position, &Listed::from(page)))
}

/// `GET /v1/me/notifications` query.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct NotificationsQuery {
    #[serde(default)]
    pub unread: bool,
    pub limit: Option<u32>,
    pub cursor: Option<String>,
}

/// Notifications, newest first, with the unread count.
#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct NotificationList {
    items: Vec<notifications::Notification>,
    next_cursor: Option<String>,
    unread_count: i64,
}

#[utoipa::path(get, path = "/v1/me/notifications", tag = "me", params(NotificationsQuery), responses((status = 200, description = "notifications, newest first, with the unread count", body = NotificationList)))]
pub(crate) async fn my_notifications(
    State(state): State<AppState>,
    Caller(caller): Caller,
    min: MinPosition,
    ApiQuery(params): ApiQuery<NotificationsQuery>,
) -> Result<Response, ApiError> {
    let limit = Paging {
        limit: params.limit,
        cursor: None,
    }
    .limit()?;
    let position = min.wait(&state, &[notifications::NAME]).await?;
    let page = notifications::notifications_newest_first(
        &state.pool,
        caller.user_id,
        params.unread,
        params.cursor.as_deref(),
        limit,
    )
    .await
    .map_err(from_read)?;
    let unread_count = notifications::unread_count(&state.pool, caller.user_id)
        .await
        .map_err(from_read)?;
    Ok(query::answer(
        position,
        &NotificationList {
            items: page.items,
            next_cursor: page.next_cursor,
            unread_count,
        },
    ))
}

/// `POST /v1/me/notifications/read`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MarkRead {
    /// The id of the newest notification the caller has seen.
    pub up_to: String,
}

#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct Marked {
    marked_read: u64,
}

/// Moves the caller's read mark (a view setting, not a ledger event).
#[utoipa::path(post, path = "/v1/me/notifications/read", tag = "me", request_body = MarkRead, responses((status = 200, description = "how many became read", body = Marked)))]
pub(crate) async fn mark_read(
    State(state): State<AppState>,
    Caller(caller): Caller,
    ApiJson(body): ApiJson<MarkRead>,
) -> Result<axum::Json<Marked>, ApiError> {
    let marked_read = notifications::mark_read_up_to(&state.pool, caller.user_id, &body.up_to)
        .await
        .map_err(|e| match e {
            gigledger_projections::read::ReadError::InvalidArgument(message) => {
                ApiError::validation("up_to", message)
            }
            other => from_read(other),
        })?;
    Ok(axum::Json(Marked { marked_read }))
}

/// The request header an `EventSource` sends when it reconnects: the `id` of the last event it
/// received.
pub const LAST_EVENT_ID: HeaderName = HeaderName::from_static("last-event-id");

/// How often a stream with nothing to send writes a comment line, so that proxies and clients
/// see the connection alive.
pub const HEARTBEAT: Duration = Duration::from_secs(15);

/// Where a stream starts: after the event at the position `Last-Event-ID` names, or at the
/// current end (what the notifications projection has written so far).
async fn stream_start(
    state: &AppState,
    headers: &HeaderMap,
) -> Result<gigledger_projections::log::Checkpoint, ApiError> {
    let Some(value) = headers.get(&LAST_EVENT_ID) else {
        return gigledger_projections::runtime::load_checkpoint(&state.pool, notifications::NAME)
            .await
            .map_err(|e| read_failed(&e));
    };
    let invalid = || {
        ApiError::bad_request(
            "Last-Event-ID",
            "must be the id of an event of this stream: a whole number, 0 or more",
        )
    };
    let position: i64 = value
        .to_str()
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .filter(|p| *p >= 0)
        .ok_or_else(invalid)?;
    if position == 0 {
        return Ok(gigledger_projections::log::Checkpoint::START);
    }
    // An id is an event's position; the stream continues after that event in the order the
    // projection applies events (by transaction, then position), which positions alone do not
    // give.
    gigledger_projections::log::checkpoint_of(&state.pool, position)
        .await
        .map_err(|e| read_failed(&e))?
        .ok_or_else(|| {
            ApiError::bad_request(
                "Last-Event-ID",
                format!("no event has the position {position}: it is not an id this stream sent"),
            )
        })
}

/// `GET /v1/me/stream`: the caller's notifications as Server-Sent Events, as the notifications
/// projection writes them. Each event has `id:` = the notification's `position`, `event:
/// notification`, and `data:` = the notification as `GET /v1/me/notifications` lists it.
#[utoipa::path(
    get,
    path = "/v1/me/stream",
    tag = "me",
    description = "The caller's notifications, live, as Server-Sent Events (`text/event-stream`). \
                   Each event: `id:` the notification's `position`, `event: notification`, \
                   `data:` the notification as `GET /v1/me/notifications` lists it. Without \
                   `Last-Event-ID` the stream starts at the current end; with it, it first sends \
                   every notification of the caller after that id, then live ones. A comment line \
                   every 15 s keeps the connection alive; the stream ends when the server shuts \
                   down (reconnect with `Last-Event-ID`).\n\n\
                   Authentication: `Authorization: Bearer <JWT>`, or, for a browser's \
                   `EventSource`, which cannot set headers, `?access_token=<JWT>` (this route \
                   only). A query token must expire within 5 minutes of the request (its `exp` at \
                   most 300 s after now), else `401`: mint a short-lived token for the URL.",
    params(
        ("Last-Event-ID" = Option<String>, Header, description = "resume after the event with this id (a whole number, 0 or more; 0 = from the first notification)"),
        ("access_token" = Option<String>, Query, description = "a bearer token expiring within 5 minutes, for clients that cannot send headers"),
    ),
    responses((status = 200, description = "the event stream; each event's data is a notification (schema `Notification`)", content_type = "text/event-stream", body = String))
)]
pub(crate) async fn stream(
    State(state): State<AppState>,
    StreamCaller(caller): StreamCaller,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let admitted = state.live.admit().ok_or_else(|| ApiError::Unavailable {
        detail: "too many notification streams are open on this server; retry shortly".to_owned(),
        outcome: None,
    })?;
    let after = stream_start(&state, &headers).await?;
    let progress = state.live.progress().await.map_err(|e| read_failed(&e))?;
    // First, the place the stream starts from, as an id with no data: a browser's EventSource
    // keeps it (it dispatches nothing) and sends it back as Last-Event-ID if the stream ends
    // before its first notification, so a reconnect misses nothing written meanwhile.
    let start = stream::once(async move {
        Ok::<_, Infallible>(
            Event::default()
                .id(after.position.to_string())
                .comment("resume point"),
        )
    });
    let events = crate::live::notifications_after(
        state.pool.clone(),
        caller.user_id,
        after,
        progress,
        state.live.closing(),
    )
    .filter_map(|n| async move {
        match Event::default()
            .id(n.position.to_string())
            .event("notification")
            .json_data(&n)
        {
            Ok(event) => Some(Ok::<_, Infallible>(event)),
            Err(e) => {
                tracing::warn!(error = %e, "a notification did not serialise; skipped");
                None
            }
        }
    });
    // The place is held for as long as the stream lives.
    let events = events.map(move |event| {
        let _held = &admitted;
        event
    });
    let mut response = Sse::new(start.chain(events))
        .keep_alive(KeepAlive::new().interval(HEARTBEAT).text("heartbeat"))
        .into_response();
    // Proxies that buffer responses (nginx) pass this one through as it is written.
    response.headers_mut().insert(
        HeaderName::from_static("x-accel-buffering"),
        HeaderValue::from_static("no"),
    );
    Ok(response)
}
