//! Operations endpoints (no auth): liveness and readiness.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde_json::{json, Value};

use crate::routes::{Table, PUBLIC};
use crate::state::AppState;

pub fn routes(table: Table) -> Table {
    table
        .get("/healthz", PUBLIC, healthz)
        .get("/readyz", PUBLIC, readyz)
        .get("/metrics", PUBLIC, metrics)
        .get("/openapi.json", PUBLIC, crate::openapi::openapi_json)
        .get("/docs", PUBLIC, crate::openapi::docs)
}

/// Prometheus text: HTTP, commands, events, projection positions and lag.
#[utoipa::path(get, path = "/metrics", tag = "operations", responses((status = 200, description = "Prometheus text", content_type = "text/plain")))]
pub(crate) async fn metrics(State(state): State<AppState>) -> String {
    state.metrics.render()
}

/// The process is up.
#[utoipa::path(get, path = "/healthz", tag = "operations", responses((status = 200, description = "the process is up")))]
pub(crate) async fn healthz() -> Json<Value> {
    Json(json!({ "status": "ok" }))
}

/// The database answers, every migration this build knows is applied, and no worker has stopped
/// on a failing event or is stalled (retrying one event for longer than its bound). The NATS
/// relay, when it runs, is reported under `relay` (`ok`, or `degraded` with its lag and error)
/// and never makes the service unready.
#[utoipa::path(get, path = "/readyz", tag = "operations", responses((status = 200, description = "database reachable, migrations applied, no worker failed or stalled"), (status = 503, description = "not ready, and why")))]
pub(crate) async fn readyz(State(state): State<AppState>) -> (StatusCode, Json<Value>) {
    let reachable = sqlx::query("select 1").execute(&state.pool).await;
    let checks = match reachable {
        Err(e) => {
            tracing::warn!(error = %e, "readiness: database check failed");
            json!({ "database": "unreachable", "migrations": "unknown" })
        }
        Ok(_) => {
            let missing = crate::db::pending_migrations(&state.pool).await;
            if missing.is_empty() {
                json!({ "database": "ok", "migrations": "ok" })
            } else {
                json!({ "database": "ok", "migrations": { "missing": missing } })
            }
        }
    };
    let mut checks = checks;
    // A worker stopped on an event it cannot apply, or stuck retrying one: what depends on it
    // (a read model, every release) no longer moves.
    let known = crate::workers::known_names();
    // The relay to NATS is reported on its own: the bus being down degrades what other
    // services hear from us, never what this service answers.
    let relay_name = gigledger_projections::relay::NAME;
    let (failed, stalled) =
        match gigledger_projections::runtime::statuses(&state.pool, &known).await {
            Ok(all) => {
                if let Some(relay) = all.iter().find(|s| s.name == relay_name) {
                    // Not run by any process while events wait for it is degraded too.
                    let healthy = relay.status == "running"
                        && relay.last_error.is_none()
                        && !(relay.state() == "idle" && relay.lag_events > 0);
                    checks["relay"] = json!({
                        "status": if healthy { "ok" } else { "degraded" },
                        "state": relay.state(),
                        "lag_events": relay.lag_events,
                        "lag_seconds": relay.lag_seconds,
                        "error": relay.last_error,
                    });
                }
                let in_state = |state: &str| {
                    all.iter()
                        .filter(|s| s.status == state && s.name != relay_name)
                        .map(|s| {
                            json!({
                                "projection": s.name,
                                "failed_position": s.failed_position,
                                // Says why (a refusal's text, never a stack or a secret), so an
                                // operator sees it without shell access.
                                "error": s.last_error,
                            })
                        })
                        .collect::<Vec<_>>()
                };
                (in_state("failed"), in_state("stalled"))
            }
            Err(_) => (Vec::new(), Vec::new()),
        };
    checks["projections"] = match (failed.is_empty(), stalled.is_empty()) {
        (true, true) => json!("ok"),
        (false, true) => json!({ "failed": failed }),
        (true, false) => json!({ "stalled": stalled }),
        (false, false) => json!({ "failed": failed, "stalled": stalled }),
    };
    let ready =
        checks["database"] == "ok" && checks["migrations"] == "ok" && checks["projections"] == "ok";
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
