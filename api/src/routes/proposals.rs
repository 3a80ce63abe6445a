//! Proposals on a gig: propose, withdraw, reject, accept (hire); the owner's list.
//!
//! Who (API.md): proposing needs the role `freelancer` (the domain refuses the gig's owner);
//! withdrawing is the proposing freelancer's; rejecting and accepting are the owning client's;
//! the list is the owner's (403 to anyone else: the gig itself is public).

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use chrono::NaiveDate;
use gigledger_domain::{
    ContractId, GigCommand, GigId, MilestoneId, MilestoneTerms, Money, ProposalId, Role,
};
use gigledger_projections::read::proposals::ProposalView;
use gigledger_projections::read::{gig_board, proposals};
use serde::Deserialize;
use uuid::Uuid;

use crate::auth::Caller;
use crate::command::{self, CommandRequest, Reply};
use crate::error::{ApiError, ApiPath, ApiQuery};
use crate::query::{self, from_read, Listed, MinPosition, Paging};
use crate::routes::gigs::{bodyless_gig_command, Empty};
use crate::routes::Table;
use crate::state::AppState;

pub fn routes(table: Table) -> Table {
    table
        .post(
            "/v1/gigs/{gig_id}/proposals",
            "freelancer, not the owner, gig open",
            propose,
        )
        .get("/v1/gigs/{gig_id}/proposals", "the owning client", list)
        .post(
            "/v1/gigs/{gig_id}/proposals/{proposal_id}/withdraw",
            "the proposing freelancer",
            withdraw,
        )
        .post(
            "/v1/gigs/{gig_id}/proposals/{proposal_id}/reject",
            "the owning client",
            reject,
        )
        .post(
            "/v1/gigs/{gig_id}/proposals/{proposal_id}/accept",
            "the owning client",
            accept,
        )
}

/// `POST /v1/gigs/{gig_id}/proposals`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Propose {
    pub cover_letter: String,
    pub milestones: Vec<ProposedMilestone>,
}

/// One milestone of a proposal; its id is chosen by the server and answered.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ProposedMilestone {
    pub title: String,
    pub amount: Money,
    #[serde(default)]
    pub due_date: Option<NaiveDate>,
}

#[utoipa::path(post, path = "/v1/gigs/{gig_id}/proposals", tag = "proposals", params(("gig_id" = Uuid, Path, description = "the gig")), request_body = Propose, responses((status = 201, description = "proposed: `id` is the proposal, `milestone_ids` its milestones", body = crate::openapi::CommandAnswer)))]
pub(crate) async fn propose(
    State(state): State<AppState>,
    _caller: Caller,
    ApiPath(gig_id): ApiPath<Uuid>,
    request: CommandRequest<Propose>,
) -> Response {
    if let Err(e) = request.require_any(&[Role::Freelancer]) {
        return e.into_response();
    }
    command::run(&state, "submit_proposal", request, move |inv| async move {
        let proposal_id = ProposalId(inv.ids.id("proposal"));
        let milestones: Vec<MilestoneTerms> = inv
            .body
            .milestones
            .into_iter()
            .enumerate()
            .map(|(i, m)| MilestoneTerms {
                milestone_id: MilestoneId(inv.ids.id(&format!("milestone:{i}"))),
                title: m.title,
                amount: m.amount,
                due_date: m.due_date,
            })
            .collect();
        let milestone_ids: Vec<MilestoneId> = milestones.iter().map(|m| m.milestone_id).collect();
        let outcome = inv
            .services
            .gig(
                GigId(gig_id),
                GigCommand::SubmitProposal {
                    proposal_id,
                    cover_letter: inv.body.cover_letter,
                    milestones,
                    actor: inv.actor,
                    at: inv.services.now(),
                },
                &inv.ctx,
            )
            .await
            .map_err(|e| ApiError::from_service(e, &inv.ctx))?;
        // No route reads one proposal: its place is the gig's proposals (the owner's) and the
        // freelancer's own list.
        Ok(
            Reply::created(format!("/v1/gigs/{gig_id}/proposals"), &outcome)
                .with_id(proposal_id)
                .with("gig_id", gig_id)
                .with("milestone_ids", milestone_ids),
        )
    })
    .await
}

#[utoipa::path(post, path = "/v1/gigs/{gig_id}/proposals/{proposal_id}/withdraw", tag = "proposals", params(("gig_id" = Uuid, Path, description = "the gig"), ("proposal_id" = Uuid, Path, description = "the proposal")), request_body(content = Option<Empty>, description = "nothing, or `{}`"), responses((status = 200, description = "withdrawn", body = crate::openapi::CommandAnswer)))]
pub(crate) async fn withdraw(
    State(state): State<AppState>,
    _caller: Caller,
    ApiPath((gig_id, proposal_id)): ApiPath<(Uuid, Uuid)>,
    request: CommandRequest<Empty>,
) -> Response {
    bodyless_gig_command(
        state,
        "withdraw_proposal",
        gig_id,
        Role::Freelancer,
        request,
        move |actor, at| GigCommand::WithdrawProposal {
            proposal_id: ProposalId(proposal_id),
            actor,
            at,
        },
    )
    .await
}

#[utoipa::path(post, path = "/v1/gigs/{gig_id}/proposals/{proposal_id}/reject", tag = "proposals", params(("gig_id" = Uuid, Path, description = "the gig"), ("proposal_id" = Uuid, Path, description = "the proposal")), request_body(content = Option<Empty>, description = "nothing, or `{}`"), responses((status = 200, description = "rejected", body = crate::openapi::CommandAnswer)))]
pub(crate) async fn reject(
    State(state): State<AppState>,
    _caller: Caller,
    ApiPath((gig_id, proposal_id)): ApiPath<(Uuid, Uuid)>,
    request: CommandRequest<Empty>,
) -> Response {
    bodyless_gig_command(
        state,
        "reject_proposal",
        gig_id,
        Role::Client,
        request,
        move |actor, at| GigCommand::RejectProposal {
            proposal_id: ProposalId(proposal_id),
            actor,
            at,
        },
    )
    .await
}

/// Hires the proposal's freelancer: the contract and its escrow start before the answer, which
/// names the contract and its milestones (the proposal's milestone ids).
#[utoipa::path(post, path = "/v1/gigs/{gig_id}/proposals/{proposal_id}/accept", tag = "proposals", params(("gig_id" = Uuid, Path, description = "the gig"), ("proposal_id" = Uuid, Path, description = "the proposal")), request_body(content = Option<Empty>, description = "nothing, or `{}`"), responses((status = 201, description = "hired: `contract_id` and `milestone_ids` name the contract started with its escrow; `Location` names the contract", body = crate::openapi::CommandAnswer)))]
pub(crate) async fn accept(
    State(state): State<AppState>,
    _caller: Caller,
    ApiPath((gig_id, proposal_id)): ApiPath<(Uuid, Uuid)>,
    request: CommandRequest<Empty>,
) -> Response {
    if let Err(e) = request.require_any(&[Role::Client]) {
        return e.into_response();
    }
    command::run(&state, "accept_proposal", request, move |inv| async move {
        let contract_id = ContractId(inv.ids.id("contract"));
        let config = inv.services.config().clone();
        let outcome = inv
            .services
            .gig(
                GigId(gig_id),
                GigCommand::AcceptProposal {
                    proposal_id: ProposalId(proposal_id),
                    contract_id,
                    fee_bps: config.fee_bps,
                    review_window_days: config.review_window_days,
                    max_revisions: config.max_revisions,
                    actor: inv.actor,
                    at: inv.services.now(),
                },
                &inv.ctx,
            )
            .await
            .map_err(|e| ApiError::from_service(e, &inv.ctx))?;
        // The contract this acceptance started (before the answer, with its escrow), whose
        // milestones keep the proposal's milestone ids.
        let (contract, _) = inv
            .services
            .load_contract(contract_id)
            .await
            .map_err(|e| ApiError::from_service(e, &inv.ctx))?;
        let hired = contract.id().unwrap_or(contract_id);
        let milestone_ids = contract.milestone_ids();
        Ok(Reply::created(format!("/v1/contracts/{hired}"), &outcome)
            .with("contract_id", hired)
            .with("milestone_ids", milestone_ids))
    })
    .await
}

/// The owner's view of a gig's proposals.
#[utoipa::path(get, path = "/v1/gigs/{gig_id}/proposals", tag = "proposals", params(("gig_id" = Uuid, Path, description = "the gig"), Paging), responses((status = 200, description = "the gig's proposals", body = crate::query::Listed<ProposalView>)))]
pub(crate) async fn list(
    State(state): State<AppState>,
    Caller(caller): Caller,
    min: MinPosition,
    ApiPath(gig_id): ApiPath<Uuid>,
    ApiQuery(paging): ApiQuery<Paging>,
) -> Result<Response, ApiError> {
    let limit = paging.limit()?;
    let position = min
        .wait(&state, &[gig_board::NAME, proposals::NAME])
        .await?;
    let gig = gig_board::get_gig(&state.pool, GigId(gig_id))
        .await
        .map_err(from_read)?
        .ok_or_else(|| ApiError::NotFound {
            detail: "no such gig".to_owned(),
        })?;
    if gig.client_id != caller.user_id {
        return Err(ApiError::Forbidden {
            detail: "only the gig's owner sees its proposals".to_owned(),
        });
    }
    let page =
        proposals::proposals_of_gig(&state.pool, GigId(gig_id), paging.cursor.as_deref(), limit)
            .await
            .map_err(from_read)?;
    Ok(query::answer(position, &Listed::from(page)))
}
