//! Contracts: fund, submit, request changes, approve, cancel; the contract and its ledger.
//!
//! Who (API.md): funding, requesting changes and approving need the role `client`, submitting
//! `freelancer`, cancelling either; the domain then checks the caller is that party of this
//! contract and answers 404 to a non-party (another client's contract does not exist for them).
//! Reading the contract is its parties' and admins'; its ledger also auditors'; anyone else 404.
//! `If-Match` names the contract's version (its `ETag`) on every command here, fund included: fund
//! writes the escrow, so it checks the contract's version in the database before charging. Fund's
//! answer carries the escrow's version (`escrow_version` in the contract's view) and no `ETag`.

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use gigledger_domain::{Actor, ContractCommand, ContractId, EscrowCommand, MilestoneId, Role};
use gigledger_projections::read::contracts::{self as contract_views, ContractView};
use gigledger_projections::read::ledger;
use serde::Deserialize;
use uuid::Uuid;

use crate::auth::Caller;
use crate::command::{self, CommandRequest, Reply};
use crate::error::{ApiError, ApiPath, ApiQuery};
use crate::query::{self, from_read, Listed, MinPosition, Paging};
use crate::routes::gigs::Empty;
use crate::routes::Table;
use crate::state::AppState;

pub fn routes(table: Table) -> Table {
    table
        .get("/v1/contracts/{contract_id}", "parties, admin", one)
        .get(
            "/v1/contracts/{contract_id}/ledger",
            "parties, admin, auditor",
            ledger_of,
        )
        .post(
            "/v1/contracts/{contract_id}/milestones/{milestone_id}/fund",
            "the contract's client",
            fund,
        )
        .post(
            "/v1/contracts/{contract_id}/milestones/{milestone_id}/submit",
            "the contract's freelancer, milestone funded",
            submit,
        )
        .post(
            "/v1/contracts/{contract_id}/milestones/{milestone_id}/request-changes",
            "the contract's client",
            request_changes,
        )
        .post(
            "/v1/contracts/{contract_id}/milestones/{milestone_id}/approve",
            "the contract's client",
            approve,
        )
        .post(
            "/v1/contracts/{contract_id}/cancel",
            "either party, no delivered milestone pending",
            cancel,
        )
}

/// Whether `caller` may read the contract `view`: a party or an admin (and, for the ledger, an
/// auditor). Anyone else is told it does not exist.
pub fn may_read(view: &ContractView, caller: &Actor, auditors_too: bool) -> bool {
    view.client_id == caller.user_id
        || view.freelancer_id == caller.user_id
        || caller.has_role(Role::Admin)
        || (auditors_too && caller.has_role(Role::Auditor))
}

fn no_such_contract() -> ApiError {
    ApiError::NotFound {
        detail: "no such contract".to_owned(),
    }
}

#[utoipa::path(get, path = "/v1/contracts/{contract_id}", tag = "contracts", params(("contract_id" = Uuid, Path, description = "the contract")), responses((status = 200, description = "the contract, its milestones with escrow balances, disputes and revealed reviews; `ETag` is its version", body = ContractView)))]
pub(crate) async fn one(
    State(state): State<AppState>,
    Caller(caller): Caller,
    min: MinPosition,
    ApiPath(contract_id): ApiPath<Uuid>,
) -> Result<Response, ApiError> {
    let position = min.wait(&state, &[contract_views::NAME]).await?;
    let view = contract_views::get_contract(&state.pool, ContractId(contract_id))
        .await
        .map_err(from_read)?
        .filter(|view| may_read(view, &caller, false))
        .ok_or_else(no_such_contract)?;
    let version = u64::try_from(view.version).unwrap_or_default();
    Ok(query::answer_tagged(position, version, &view))
}

#[utoipa::path(get, path = "/v1/contracts/{contract_id}/ledger", tag = "contracts", params(("contract_id" = Uuid, Path, description = "the contract"), Paging), responses((status = 200, description = "the escrow's journal lines in log order", body = crate::query::Listed<gigledger_projections::read::ledger::LedgerEntry>)))]
pub(crate) async fn ledger_of(
    State(state): State<AppState>,
    Caller(caller): Caller,
    min: MinPosition,
    ApiPath(contract_id): ApiPath<Uuid>,
    ApiQuery(paging): ApiQuery<Paging>,
) -> Result<Response, ApiError> {
    let limit = paging.limit()?;
    let position = min
        .wait(&state, &[contract_views::NAME, ledger::NAME])
        .await?;
    contract_views::get_contract(&state.pool, ContractId(contract_id))
        .await
        .map_err(from_read)?
        .filter(|view| may_read(view, &caller, true))
        .ok_or_else(no_such_contract)?;
    let page = ledger::entries_of_contract(
        &state.pool,
        ContractId(contract_id),
        paging.cursor.as_deref(),
        limit,
    )
    .await
    .map_err(from_read)?;
    Ok(query::answer(position, &Listed::from(page)))
}

/// Funds a milestone: the payment provider is charged the milestone's amount (under the
/// milestone's own key, so it is charged at most once), the deposit recorded, and the milestone
/// marked funded, before the answer.
#[utoipa::path(post, path = "/v1/contracts/{contract_id}/milestones/{milestone_id}/fund", tag = "contracts", params(("contract_id" = Uuid, Path, description = "the contract"), ("milestone_id" = Uuid, Path, description = "the milestone")), request_body(content = Option<Empty>, description = "nothing, or `{}`"), responses((status = 200, description = "charged and deposited, the milestone funded; `version` is the escrow's", body = crate::openapi::CommandAnswer)))]
pub(crate) async fn fund(
    State(state): State<AppState>,
    _caller: Caller,
    ApiPath((contract_id, milestone_id)): ApiPath<(Uuid, Uuid)>,
    request: CommandRequest<Empty>,
) -> Response {
    if let Err(e) = request.require_any(&[Role::Client]) {
        return e.into_response();
    }
    command::run(&state, "fund_milestone", request, move |inv| async move {
        // `If-Match` names the contract's version (the `ETag` of its GET): checked against the
        // database before anything is charged; the deposit itself then writes the escrow.
        let mut ctx = inv.ctx.clone();
        if let Some(expected) = ctx.expected_version.take() {
            let (contract, version) = inv
                .services
                .load_contract(ContractId(contract_id))
                .await
                .map_err(|e| ApiError::from_service(e, &inv.ctx))?;
            let party = contract.party(inv.actor.user_id).is_some();
            if party && version != expected {
                return Err(ApiError::PreconditionFailed {
                    detail: format!(
                        "the contract is no longer at version {expected}; reload it and decide \
                         again"
                    ),
                });
            }
        }
        let outcome = inv
            .services
            .escrow(
                ContractId(contract_id),
                EscrowCommand::Deposit {
                    milestone_id: MilestoneId(milestone_id),
                    idempotency_key: inv.key,
                    actor: inv.actor,
                    at: inv.services.now(),
                },
                &ctx,
            )
            .await
            .map_err(|e| ApiError::from_service(e, &ctx))?;
        Ok(Reply::escrow(&outcome).with("milestone_id", milestone_id))
    })
    .await
}

/// `POST …/submit`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Submit {
    pub note: String,
    #[serde(default)]
    pub links: Vec<String>,
}

#[utoipa::path(post, path = "/v1/contracts/{contract_id}/milestones/{milestone_id}/submit", tag = "contracts", params(("contract_id" = Uuid, Path, description = "the contract"), ("milestone_id" = Uuid, Path, description = "the milestone")), request_body = Submit, responses((status = 200, description = "submitted for review", body = crate::openapi::CommandAnswer)))]
pub(crate) async fn submit(
    State(state): State<AppState>,
    _caller: Caller,
    ApiPath((contract_id, milestone_id)): ApiPath<(Uuid, Uuid)>,
    request: CommandRequest<Submit>,
) -> Response {
    if let Err(e) = request.require_any(&[Role::Freelancer]) {
        return e.into_response();
    }
    command::run(&state, "submit_milestone", request, move |inv| async move {
        let command = ContractCommand::SubmitMilestone {
            milestone_id: MilestoneId(milestone_id),
            note: inv.body.note,
            links: inv.body.links,
            actor: inv.actor,
            at: inv.services.now(),
        };
        contract_reply(&inv.services, contract_id, command, &inv.ctx).await
    })
    .await
}

/// `POST …/request-changes` and `POST …/cancel`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Reason {
    pub reason: String,
}

#[utoipa::path(post, path = "/v1/contracts/{contract_id}/milestones/{milestone_id}/request-changes", tag = "contracts", params(("contract_id" = Uuid, Path, description = "the contract"), ("milestone_id" = Uuid, Path, description = "the milestone")), request_body = Reason, responses((status = 200, description = "sent back", body = crate::openapi::CommandAnswer)))]
pub(crate) async fn request_changes(
    State(state): State<AppState>,
    _caller: Caller,
    ApiPath((contract_id, milestone_id)): ApiPath<(Uuid, Uuid)>,
    request: CommandRequest<Reason>,
) -> Response {
    if let Err(e) = request.require_any(&[Role::Client]) {
        return e.into_response();
    }
    command::run(&state, "request_changes", request, move |inv| async move {
        let command = ContractCommand::RequestChanges {
            milestone_id: MilestoneId(milestone_id),
            reason: inv.body.reason,
            actor: inv.actor,
            at: inv.services.now(),
        };
        contract_reply(&inv.services, contract_id, command, &inv.ctx).await
    })
    .await
}

/// Approves a milestone: the escrow releases its amount less the platform fee before the answer.
#[utoipa::path(post, path = "/v1/contracts/{contract_id}/milestones/{milestone_id}/approve", tag = "contracts", params(("contract_id" = Uuid, Path, description = "the contract"), ("milestone_id" = Uuid, Path, description = "the milestone")), request_body(content = Option<Empty>, description = "nothing, or `{}`"), responses((status = 200, description = "approved and released less the fee", body = crate::openapi::CommandAnswer)))]
pub(crate) async fn approve(
    State(state): State<AppState>,
    _caller: Caller,
    ApiPath((contract_id, milestone_id)): ApiPath<(Uuid, Uuid)>,
    request: CommandRequest<Empty>,
) -> Response {
    if let Err(e) = request.require_any(&[Role::Client]) {
        return e.into_response();
    }
    command::run(
        &state,
        "approve_milestone",
        request,
        move |inv| async move {
            let command = ContractCommand::ApproveMilestone {
                milestone_id: MilestoneId(milestone_id),
                actor: inv.actor,
                at: inv.services.now(),
            };
            contract_reply(&inv.services, contract_id, command, &inv.ctx).await
        },
    )
    .await
}

/// Cancels the contract: the funds of milestones never submitted are refunded before the answer.
#[utoipa::path(post, path = "/v1/contracts/{contract_id}/cancel", tag = "contracts", params(("contract_id" = Uuid, Path, description = "the contract")), request_body = Reason, responses((status = 200, description = "cancelled, unsubmitted funds refunded", body = crate::openapi::CommandAnswer)))]
pub(crate) async fn cancel(
    State(state): State<AppState>,
    _caller: Caller,
    ApiPath(contract_id): ApiPath<Uuid>,
    request: CommandRequest<Reason>,
) -> Response {
    if let Err(e) = request.require_any(&[Role::Client, Role::Freelancer]) {
        return e.into_response();
    }
    command::run(&state, "cancel_contract", request, move |inv| async move {
        let command = ContractCommand::CancelContract {
            reason: inv.body.reason,
            actor: inv.actor,
            at: inv.services.now(),
        };
        contract_reply(&inv.services, contract_id, command, &inv.ctx).await
    })
    .await
}

/// Runs a contract command and answers `200` with its outcome.
pub async fn contract_reply(
    services: &gigledger_commands::services::Services,
    contract_id: Uuid,
    command: ContractCommand,
    ctx: &gigledger_commands::services::RequestContext,
) -> Result<Reply, ApiError> {
    let outcome = services
        .contract(ContractId(contract_id), command, ctx)
        .await
        .map_err(|e| ApiError::from_service(e, ctx))?;
    Ok(Reply::ok(&outcome))
}
