//! Operations endpoints (no auth): liveness and readiness.

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{json, Value};

use crate::startup::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
}

/// The process is up.
async fn healthz() -> Json<Value> {
    Json(json!({ "status": "ok" }))
}

/// The database answers and every migration this build knows is applied.
async fn readyz(State(state): State<AppState>) -> (StatusCode, Json<Value>) {
    let applied: Result<Vec<i64>, sqlx::Error> =
        sqlx::query_scalar("select version from _sqlx_migrations where success order by version")
            .fetch_all(&state.pool)
            .await;
    let checks = match applied {
        Err(e) => {
            tracing::warn!(error = %e, "readiness: database check failed");
            json!({ "database": "unreachable", "migrations": "unknown" })
        }
        Ok(applied) => {
            let missing: Vec<i64> = gigledger_projections::MIGRATOR
                .iter()
                .map(|m| m.version)
                .filter(|v| !applied.contains(v))
                .collect();
            if missing.is_empty() {
                json!({ "database": "ok", "migrations": "ok" })
            } else {
                json!({ "database": "ok", "migrations": { "missing": missing } })
            }
        }
    };
    let ready = checks["database"] == "ok" && checks["migrations"] == "ok";
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (
        status,
        Json(json!({ "status": if ready { "ready" } else { "not ready" }, "checks": checks })),
    )
}
