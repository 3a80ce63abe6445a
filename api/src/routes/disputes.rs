//! Disputes: open one on a milestone, resolve it with a split; the admin queue.
//!
//! Who (API.md): opening needs the role `client` or `freelancer` and is either party's (the
//! domain answers 404 to a non-party); resolving needs `admin`, and an admin who is a party of the
//! contract may not judge it (403); the queue is admins' only.

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use gigledger_domain::{ContractCommand, ContractId, DisputeId, MilestoneId, Money, Role};
use gigledger_projections::read::contracts::{
    self as contract_views, DisputeStatus, QueuedDispute,
};
use serde::Deserialize;
use uuid::Uuid;

use crate::auth::{require_any, Caller};
use crate::command::{self, CommandRequest, Reply};
use crate::error::{ApiError, ApiPath, ApiQuery};
use crate::query::{self, from_read, Listed, MinPosition};
use crate::routes::Table;
use crate::state::AppState;

pub fn routes(table: Table) -> Table {
    table
        .post("/v1/contracts/{contract_id}/disputes", "either party", open)
        .post(
            "/v1/contracts/{contract_id}/disputes/{dispute_id}/resolve",
            "admin, not a party",
            resolve,
        )
        .get("/v1/disputes", "admin", queue)
}

/// `POST /v1/contracts/{contract_id}/disputes`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OpenDispute {
    pub milestone_id: Uuid,
    pub reason: String,
}

/// Opens a dispute: the milestone's funds are frozen before the answer.
#[utoipa::path(post, path = "/v1/contracts/{contract_id}/disputes", tag = "disputes", params(("contract_id" = Uuid, Path, description = "the contract")), request_body = OpenDispute, responses((status = 201, description = "opened, the milestone's funds frozen; `dispute_id` names it", body = crate::openapi::CommandAnswer)))]
pub(crate) async fn open(
    State(state): State<AppState>,
    _caller: Caller,
    ApiPath(contract_id): ApiPath<Uuid>,
    request: CommandRequest<OpenDispute>,
) -> Response {
    if let Err(e) = request.require_any(&[Role::Client, Role::Freelancer]) {
        return e.into_response();
    }
    command::run(&state, "open_dispute", request, move |inv| async move {
        let dispute_id = DisputeId(inv.ids.id("dispute"));
        let outcome = inv
            .services
            .contract(
                ContractId(contract_id),
                ContractCommand::OpenDispute {
                    dispute_id,
                    milestone_id: MilestoneId(inv.body.milestone_id),
                    reason: inv.body.reason,
                    actor: inv.actor,
                    at: inv.services.now(),
                },
                &inv.ctx,
            )
            .await
            .map_err(|e| ApiError::from_service(e, &inv.ctx))?;
        // A dispute is read in its contract's view.
        Ok(
            Reply::created(format!("/v1/contracts/{contract_id}"), &outcome)
                .with("dispute_id", dispute_id),
        )
    })
    .await
}

/// `POST …/resolve`: minor units of the contract's currency; they must add up to the frozen
/// amount.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Resolve {
    pub release: i64,
    pub refund: i64,
}

/// Resolves a dispute: the frozen funds are split (released less the fee, refunded) before the
/// answer.
#[utoipa::path(post, path = "/v1/contracts/{contract_id}/disputes/{dispute_id}/resolve", tag = "disputes", params(("contract_id" = Uuid, Path, description = "the contract"), ("dispute_id" = Uuid, Path, description = "the dispute")), request_body = Resolve, responses((status = 200, description = "resolved and settled", body = crate::openapi::CommandAnswer)))]
pub(crate) async fn resolve(
    State(state): State<AppState>,
    _caller: Caller,
    ApiPath((contract_id, dispute_id)): ApiPath<(Uuid, Uuid)>,
    request: CommandRequest<Resolve>,
) -> Response {
    if let Err(e) = request.require_any(&[Role::Admin]) {
        return e.into_response();
    }
    command::run(&state, "resolve_dispute", request, move |inv| async move {
        // The amounts are in the contract's currency, which the body does not repeat.
        let (contract, _) = inv
            .services
            .load_contract(ContractId(contract_id))
            .await
            .map_err(|e| ApiError::from_service(e, &inv.ctx))?;
        let currency = contract
            .terms()
            .map(|terms| terms.currency)
            .ok_or_else(|| ApiError::NotFound {
                detail: "no such contract".to_owned(),
            })?;
        let outcome = inv
            .services
            .contract(
                ContractId(contract_id),
                ContractCommand::ResolveDispute {
                    dispute_id: DisputeId(dispute_id),
                    release: Money::new(inv.body.release, currency),
                    refund: Money::new(inv.body.refund, currency),
                    actor: inv.actor,
                    at: inv.services.now(),
                },
                &inv.ctx,
            )
            .await
            .map_err(|e| ApiError::from_service(e, &inv.ctx))?;
        Ok(Reply::ok(&outcome).with("dispute_id", dispute_id))
    })
    .await
}

/// `GET /v1/disputes` query.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct QueueQuery {
    pub status: Option<DisputeStatus>,
    pub limit: Option<u32>,
    pub cursor: Option<String>,
}

#[utoipa::path(get, path = "/v1/disputes", tag = "disputes", params(QueueQuery), responses((status = 200, description = "the dispute queue", body = crate::query::Listed<QueuedDispute>)))]
pub(crate) async fn queue(
    State(state): State<AppState>,
    Caller(caller): Caller,
    min: MinPosition,
    ApiQuery(params): ApiQuery<QueueQuery>,
) -> Result<Response, ApiError> {
    require_any(&caller, &[Role::Admin])?;
    let limit = query::Paging {
        limit: params.limit,
        cursor: None,
    }
    .limit()?;
    let position = min.wait(&state, &[contract_views::NAME]).await?;
    let page =
        contract_views::dispute_queue(&state.pool, params.status, params.cursor.as_deref(), limit)
            .await
            .map_err(from_read)?;
    Ok(query::answer(position, &Listed::from(page)))
}
