//! Gigs: post, revise, close, cancel; the board and one gig.
//!
//! Who (API.md): posting needs the role `client`; revising, closing and cancelling are the owning
//! client's (the domain checks ownership: `NotOwner` is a 403, the gig being public); reading is
//! anyone signed in, and a gig's proposals are shown to its owner only.

use axum::extract::State;
use axum::response::Response;
use chrono::NaiveDate;
use gigledger_domain::{Budget, GigCommand, GigId, GigStatus, Role};
use gigledger_projections::read::contracts as contract_views;
use gigledger_projections::read::gig_board::{self, GigCard, GigQuery, GigSort};
use gigledger_projections::read::proposals;
use serde::Deserialize;
use uuid::Uuid;

use crate::auth::Caller;
use crate::command::{self, CommandRequest, Reply};
use crate::error::{ApiError, ApiPath, ApiQuery};
use crate::query::{self, from_read, read_failed, Listed, MinPosition};
use crate::routes::Table;
use crate::state::AppState;

pub fn routes(table: Table) -> Table {
    table
        .post("/v1/gigs", "client", post_gig)
        .get("/v1/gigs", "anyone signed in", search)
        .get(
            "/v1/gigs/{gig_id}",
            "anyone signed in (proposals: the owner)",
            one,
        )
        .patch("/v1/gigs/{gig_id}", "the owning client, gig open", revise)
        .post("/v1/gigs/{gig_id}/close", "the owning client", close)
        .post(
            "/v1/gigs/{gig_id}/cancel",
            "the owning client, nobody hired",
            cancel,
        )
}

/// `POST /v1/gigs`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PostGig {
    pub title: String,
    pub description: String,
    pub skills: Vec<String>,
    pub budget: Budget,
    #[serde(default)]
    pub deadline: Option<NaiveDate>,
}

/// `PATCH /v1/gigs/{gig_id}`: any of the post-gig fields.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReviseGig {
    #[serde(default)]
    pub title: Option<String>,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub skills: Option<Vec<String>>,
    #[serde(default)]
    pub budget: Option<Budget>,
    #[serde(default)]
    pub deadline: Option<NaiveDate>,
}

/// A command with no body.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Empty {}

#[utoipa::path(post, path = "/v1/gigs", tag = "gigs", request_body = PostGig, responses((status = 201, description = "posted; `Location` names the gig", body = crate::openapi::CommandAnswer)))]
pub(crate) async fn post_gig(
    State(state): State<AppState>,
    request: CommandRequest<PostGig>,
) -> Response {
    if let Err(e) = request.require_any(&[Role::Client]) {
        return axum::response::IntoResponse::into_response(e);
    }
    command::run(&state, "post_gig", request, |inv| async move {
        let gig_id = GigId(inv.ids.id("gig"));
        let body = inv.body;
        let outcome = inv
            .services
            .gig(
                gig_id,
                GigCommand::PostGig {
                    gig_id,
                    title: body.title,
                    description: body.description,
                    skills: body.skills,
                    budget: body.budget,
                    deadline: body.deadline,
                    actor: inv.actor,
                    at: inv.services.now(),
                },
                &inv.ctx,
            )
            .await
            .map_err(|e| ApiError::from_service(e, &inv.ctx))?;
        Ok(Reply::created(format!("/v1/gigs/{gig_id}"), &outcome))
    })
    .await
}

#[utoipa::path(patch, path = "/v1/gigs/{gig_id}", tag = "gigs", params(("gig_id" = Uuid, Path, description = "the gig")), request_body = ReviseGig, responses((status = 200, description = "revised", body = crate::openapi::CommandAnswer)))]
pub(crate) async fn revise(
    State(state): State<AppState>,
    _caller: Caller,
    ApiPath(gig_id): ApiPath<Uuid>,
    request: CommandRequest<ReviseGig>,
) -> Response {
    if let Err(e) = request.require_any(&[Role::Client]) {
        return axum::response::IntoResponse::into_response(e);
    }
    command::run(&state, "revise_gig", request, move |inv| async move {
        let body = inv.body;
        let outcome = inv
            .services
            .gig(
                GigId(gig_id),
                GigCommand::ReviseGig {
                    title: body.title,
                    description: body.description,
                    skills: body.skills,
                    budget: body.budget,
                    deadline: body.deadline,
                    actor: inv.actor,
                    at: inv.services.now(),
                },
                &inv.ctx,
            )
            .await
            .map_err(|e| ApiError::from_service(e, &inv.ctx))?;
        Ok(Reply::ok(&outcome))
    })
    .await
}

#[utoipa::path(post, path = "/v1/gigs/{gig_id}/close", tag = "gigs", params(("gig_id" = Uuid, Path, description = "the gig")), request_body(content = Option<Empty>, description = "nothing, or `{}`"), responses((status = 200, description = "closed to new proposals", body = crate::openapi::CommandAnswer)))]
pub(crate) async fn close(
    State(state): State<AppState>,
    _caller: Caller,
    ApiPath(gig_id): ApiPath<Uuid>,
    request: CommandRequest<Empty>,
) -> Response {
    bodyless_gig_command(
        state,
        "close_gig",
        gig_id,
        Role::Client,
        request,
        |actor, at| GigCommand::CloseGig { actor, at },
    )
    .await
}

#[utoipa::path(post, path = "/v1/gigs/{gig_id}/cancel", tag = "gigs", params(("gig_id" = Uuid, Path, description = "the gig")), request_body(content = Option<Empty>, description = "nothing, or `{}`"), responses((status = 200, description = "cancelled", body = crate::openapi::CommandAnswer)))]
pub(crate) async fn cancel(
    State(state): State<AppState>,
    _caller: Caller,
    ApiPath(gig_id): ApiPath<Uuid>,
    request: CommandRequest<Empty>,
) -> Response {
    bodyless_gig_command(
        state,
        "cancel_gig",
        gig_id,
        Role::Client,
        request,
        |actor, at| GigCommand::CancelGig { actor, at },
    )
    .await
}

/// A gig command without a body, sent by a caller with `role` (the domain then checks the
/// caller is the owner or the proposal's author), answered `200` with its outcome.
pub(crate) async fn bodyless_gig_command<F>(
    state: AppState,
    name: &'static str,
    gig_id: Uuid,
    role: Role,
    request: CommandRequest<Empty>,
    make: F,
) -> Response
where
    F: FnOnce(gigledger_domain::Actor, chrono::DateTime<chrono::Utc>) -> GigCommand
        + Send
        + 'static,
{
    if let Err(e) = request.require_any(&[role]) {
        return axum::response::IntoResponse::into_response(e);
    }
    command::run(&state, name, request, move |inv| async move {
        let outcome = inv
            .services
            .gig(GigId(gig_id), make(inv.actor, inv.services.now()), &inv.ctx)
            .await
            .map_err(|e| ApiError::from_service(e, &inv.ctx))?;
        Ok(Reply::ok(&outcome))
    })
    .await
}

/// `GET /v1/gigs` query.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct BoardQuery {
    pub q: Option<String>,
    /// Comma-separated.
    pub skills: Option<String>,
    pub currency: Option<String>,
    pub min_budget: Option<i64>,
    pub max_budget: Option<i64>,
    pub status: Option<GigStatus>,
    pub sort: Option<SortParam>,
    pub cursor: Option<String>,
    pub limit: Option<u32>,
}

/// `relevance` (the default with `q`) or `newest`.
#[derive(Clone, Copy, Debug, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum SortParam {
    Relevance,
    Newest,
}

#[utoipa::path(get, path = "/v1/gigs", tag = "gigs", params(BoardQuery), responses((status = 200, description = "one page of the board; a page may be short while `next_cursor` is set: follow it until null", body = crate::query::Listed<GigCard>)))]
pub(crate) async fn search(
    State(state): State<AppState>,
    _caller: Caller,
    min: MinPosition,
    ApiQuery(params): ApiQuery<BoardQuery>,
) -> Result<Response, ApiError> {
    let limit = query::Paging {
        limit: params.limit,
        cursor: None,
    }
    .limit()?;
    let skills: Vec<String> = params
        .skills
        .as_deref()
        .unwrap_or_default()
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect();
    let query = GigQuery {
        q: params.q,
        skills,
        currency: params.currency,
        min_budget: params.min_budget,
        max_budget: params.max_budget,
        status: params.status,
        sort: match params.sort {
            Some(SortParam::Newest) => GigSort::Newest,
            Some(SortParam::Relevance) | None => GigSort::Relevance,
        },
        cursor: params.cursor,
        limit,
    };
    let position = min.wait(&state, &[gig_board::NAME]).await?;
    let page = gig_board::search_gigs(&state.pool, &query)
        .await
        .map_err(from_read)?;
    Ok(query::answer(position, &Listed::from(page)))
}

/// One gig, with its proposals when the caller owns it.
#[utoipa::path(get, path = "/v1/gigs/{gig_id}", tag = "gigs", params(("gig_id" = Uuid, Path, description = "the gig")), responses((status = 200, description = "the gig; its owner also gets `proposals`, a party of its contract `contract_id`; `ETag` is its version", body = GigCard)))]
pub(crate) async fn one(
    State(state): State<AppState>,
    Caller(caller): Caller,
    min: MinPosition,
    ApiPath(gig_id): ApiPath<Uuid>,
) -> Result<Response, ApiError> {
    // The contracts model too: a hired freelancer learns the contract id from it.
    let position = min
        .wait(
            &state,
            &[gig_board::NAME, proposals::NAME, contract_views::NAME],
        )
        .await?;
    let gig = gig_board::get_gig(&state.pool, GigId(gig_id))
        .await
        .map_err(from_read)?
        .ok_or_else(|| ApiError::NotFound {
            detail: "no such gig".to_owned(),
        })?;
    let mut body = serde_json::to_value(&gig).map_err(read_failed_json)?;
    if gig.client_id == caller.user_id {
        let page = proposals::proposals_of_gig(&state.pool, GigId(gig_id), None, None)
            .await
            .map_err(from_read)?;
        body["proposals"] = serde_json::to_value(Listed::from(page)).map_err(read_failed_json)?;
    }
    let contract = gig_board::hired_contract(&state.pool, GigId(gig_id), caller.user_id)
        .await
        .map_err(from_read)?;
    if let Some(contract) = contract {
        body["contract_id"] = serde_json::json!(contract);
    }
    let version = u64::try_from(gig.version).unwrap_or_default();
    Ok(query::answer_tagged(position, version, &body))
}

fn read_failed_json(e: serde_json::Error) -> ApiError {
    read_failed(&e)
}
