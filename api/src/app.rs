//! The whole HTTP application: every resource's routes under one set of layers.

use axum::extract::DefaultBodyLimit;
use axum::Router;

use crate::error::{method_not_allowed, route_not_found};
use crate::routes;
use crate::state::AppState;

/// Request bodies over this are `413` (API.md: 256 KiB).
pub const BODY_LIMIT: usize = 256 * 1024;

/// The application; tests drive it with `oneshot` or serve it on port 0.
pub fn app(state: AppState) -> Router {
    let cors = crate::middleware::cors(&state.limits.cors_origins);
    let router = routes::table()
        .into_router()
        .fallback(route_not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            crate::middleware::observe,
        ));
    let router = match cors {
        Some(cors) => router.layer(cors),
        None => router,
    };
    router.with_state(state)
}
