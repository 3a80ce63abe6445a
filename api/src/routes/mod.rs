//! One module per resource, each exposing `router()` and deciding, in one place, who may call
//! each of its routes; [`router`] merges them and [`crate::app::app`] puts the layers around.

pub mod contracts;
pub mod disputes;
pub mod gigs;
pub mod health;
pub mod me;
pub mod proposals;
pub mod reviews;
pub mod users;

use axum::Router;

use crate::state::AppState;

/// Every route of the API.
pub fn router() -> Router<AppState> {
    Router::new()
        .merge(health::router())
        .merge(gigs::router())
        .merge(proposals::router())
        .merge(contracts::router())
        .merge(disputes::router())
        .merge(reviews::router())
        .merge(me::router())
        .merge(users::router())
}
