//! Reviews: each party rates the other once the contract is completed.
//!
//! Who (API.md): either party (role `client` or `freelancer`; the domain answers 404 to a
//! non-party and refuses a second review). Reviews are double-blind: they show in the contract's
//! view once both are in or the review window has closed.

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use gigledger_domain::{ContractCommand, ContractId, Role};
use serde::Deserialize;
use uuid::Uuid;

use crate::auth::Caller;
use crate::command::{self, CommandRequest, Reply};
use crate::error::{ApiError, ApiPath};
use crate::routes::Table;
use crate::state::AppState;

pub fn routes(table: Table) -> Table {
    table.post(
        "/v1/contracts/{contract_id}/reviews",
        "either party, contract completed",
        review,
    )
}

/// `POST /v1/contracts/{contract_id}/reviews`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Review {
    /// 1 to 5.
    pub rating: u8,
    pub text: String,
}

#[utoipa::path(post, path = "/v1/contracts/{contract_id}/reviews", tag = "reviews", params(("contract_id" = Uuid, Path, description = "the contract")), request_body = Review, responses((status = 201, description = "reviewed (shown once both are in or the window closed)", body = crate::openapi::CommandAnswer)))]
pub(crate) async fn review(
    State(state): State<AppState>,
    _caller: Caller,
    ApiPath(contract_id): ApiPath<Uuid>,
    request: CommandRequest<Review>,
) -> Response {
    if let Err(e) = request.require_any(&[Role::Client, Role::Freelancer]) {
        return e.into_response();
    }
    command::run(&state, "leave_review", request, move |inv| async move {
        let outcome = inv
            .services
            .contract(
                ContractId(contract_id),
                ContractCommand::LeaveReview {
                    rating: inv.body.rating,
                    text: inv.body.text,
                    actor: inv.actor,
                    at: inv.services.now(),
                },
                &inv.ctx,
            )
            .await
            .map_err(|e| ApiError::from_service(e, &inv.ctx))?;
        Ok(Reply::created(
            format!("/v1/contracts/{contract_id}"),
            &outcome,
        ))
    })
    .await
}
