//! Building the application and serving it.

use std::sync::Arc;

use axum::Router;
use gigledger_commands::clock::{Clock, SystemClock};
use gigledger_commands::provider::PgSimulatedGateway;
use gigledger_commands::services::{Services, ServicesConfig};
use metrics_exporter_prometheus::PrometheusHandle;
use sqlx::PgPool;
use tokio::net::TcpListener;

use crate::routes;
use crate::settings::ServeSettings;
use crate::workers::Workers;

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState {
    pub pool: PgPool,
    pub services: Arc<Services>,
    pub metrics: PrometheusHandle,
}

impl AppState {
    /// The production wiring: the simulated payment provider (the only one so far), kept in the
    /// database's `provider` schema so that every process shares it, and real time.
    pub fn new(pool: PgPool, clock: Arc<dyn Clock>) -> Self {
        let services = Arc::new(Services::new(
            pool.clone(),
            ServicesConfig::default(),
            Arc::new(PgSimulatedGateway::new(pool.clone())),
            clock,
        ));
        Self {
            pool,
            services,
            metrics: crate::telemetry::metrics(),
        }
    }
}

/// The whole HTTP application; tests drive it with `oneshot` or serve it on port 0.
pub fn app(state: AppState) -> Router {
    Router::new()
        .merge(routes::health::router())
        .with_state(state)
}

/// Why the server stopped.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error(transparent)]
    Database(#[from] crate::db::DbError),
    #[error("cannot listen on {addr}: {source}\nChoose another address with GIGLEDGER_LISTEN or --listen.")]
    Bind {
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
    #[error("cannot start the workers: {0}")]
    Workers(#[from] sqlx::Error),
    #[error("cannot seed demo data: {0}")]
    Demo(String),
    #[error("server error: {0}")]
    Io(#[from] std::io::Error),
}

/// Prepares the database, starts the workers and serves until Ctrl-C or SIGTERM.
pub async fn serve(settings: ServeSettings) -> Result<(), ServeError> {
    let pool = crate::db::prepare(&settings.database).await?;
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let state = AppState::new(pool.clone(), clock.clone());
    if settings.demo {
        crate::demo::seed_if_empty(&pool, &state.services)
            .await
            .map_err(ServeError::Demo)?;
    }
    let listener = TcpListener::bind(settings.listen)
        .await
        .map_err(|source| ServeError::Bind {
            addr: settings.listen,
            source,
        })?;
    let workers = if settings.workers.enabled {
        Some(Workers::start(&pool, &state.services, clock, &settings.workers).await?)
    } else {
        None
    };
    let addr = listener.local_addr()?;
    tracing::info!(http.addr = %addr, "gigledger listening");
    axum::serve(listener, app(state))
        .with_graceful_shutdown(shutdown_signal())
        .await?;
    if let Some(workers) = workers {
        workers.stop().await;
    }
    Ok(())
}

/// Runs only the workers (no HTTP) until Ctrl-C or SIGTERM.
pub async fn run_workers(settings: crate::settings::RunSettings) -> Result<(), ServeError> {
    let pool = crate::db::prepare(&settings.database).await?;
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let state = AppState::new(pool.clone(), clock.clone());
    let workers = Workers::start(&pool, &state.services, clock, &settings.workers).await?;
    tracing::info!("gigledger workers running");
    shutdown_signal().await;
    workers.stop().await;
    Ok(())
}

pub(crate) async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
    tracing::info!("shutting down");
}
