//! Public user profiles.
//!
//! Who (API.md): anyone signed in. A profile shows only public figures (rating, completed
//! contracts, an earnings band), never amounts or reviews' authors.

use axum::extract::State;
use axum::response::Response;
use gigledger_domain::UserId;
use gigledger_projections::read::user_stats;
use uuid::Uuid;

use crate::auth::Caller;
use crate::error::{ApiError, ApiPath};
use crate::query::{self, from_read, MinPosition};
use crate::routes::Table;
use crate::state::AppState;

pub fn routes(table: Table) -> Table {
    table.get("/v1/users/{user_id}/profile", "anyone signed in", profile)
}

#[utoipa::path(get, path = "/v1/users/{user_id}/profile", tag = "users", params(("user_id" = Uuid, Path, description = "the user")), responses((status = 200, description = "public figures", body = gigledger_projections::read::user_stats::UserProfile)))]
pub(crate) async fn profile(
    State(state): State<AppState>,
    _caller: Caller,
    min: MinPosition,
    ApiPath(user_id): ApiPath<Uuid>,
) -> Result<Response, ApiError> {
    let position = min.wait(&state, &[user_stats::NAME]).await?;
    let profile = user_stats::profile(&state.pool, UserId(user_id))
        .await
        .map_err(from_read)?;
    Ok(query::answer(position, &profile))
}
