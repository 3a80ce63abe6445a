//! Building the application and serving it.

use std::future::IntoFuture;
use std::sync::Arc;

use gigledger_commands::clock::{Clock, SystemClock};
use tokio::net::TcpListener;

use crate::app::app;
use crate::auth::Authenticator;
use crate::settings::ServeSettings;
use crate::state::AppState;
use crate::workers::Workers;

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
    #[error("{0}")]
    Auth(crate::auth::AuthConfigError),
    #[error("cannot seed demo data: {0}")]
    Demo(String),
    #[error("server error: {0}")]
    Io(#[from] std::io::Error),
}

/// Prepares the database, starts the workers and serves until Ctrl-C or SIGTERM.
pub async fn serve(settings: ServeSettings) -> Result<(), ServeError> {
    let pool = crate::db::prepare(&settings.database).await?;
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let auth = Authenticator::from_settings(&settings.auth).map_err(ServeError::Auth)?;
    let state = AppState::new(pool.clone(), clock.clone(), auth, &settings.http);
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
    let (stopping, stop_seen) = tokio::sync::watch::channel(false);
    let purge = tokio::spawn(purge_idempotency_keys(
        state.idempotency.clone(),
        stop_seen.clone(),
    ));
    // In-flight requests get the request time limit (and a little more) to finish once a signal
    // came; the server stops accepting at once.
    let drain = state.limits.request_timeout + DRAIN_MARGIN;
    let tasks = state.tasks.clone();
    let command_bound = state.services.config().gateway_timeout * 3 + drain;
    let server = axum::serve(listener, app(state))
        .with_graceful_shutdown(async move {
            shutdown_signal().await;
            let _ = stopping.send(true);
        })
        .into_future();
    let mut signalled = stop_seen;
    tokio::select! {
        served = server => served?,
        () = async {
            let _ = signalled.wait_for(|stop| *stop).await;
            tokio::time::sleep(drain).await;
        } => tracing::warn!(drain_ms = drain.as_millis(), "in-flight requests did not finish in time; stopping anyway"),
    }
    purge.abort();
    // Commands that outlived their requests finish before the process ends (bounded by a few
    // gateway timeouts): one between its charge and its deposit event must not be cut there.
    if !tasks.close_and_wait(command_bound).await {
        tracing::error!("commands were still running at shutdown; run gigledger audit reconcile");
    }
    if let Some(workers) = workers {
        workers.stop().await;
    }
    Ok(())
}

/// What in-flight requests get beyond the request time limit after a shutdown signal.
const DRAIN_MARGIN: std::time::Duration = std::time::Duration::from_secs(2);

/// How often answered `Idempotency-Key` records past their retention are deleted.
const PURGE_EVERY: std::time::Duration = std::time::Duration::from_secs(600);

/// Deletes idempotency records older than their retention (24 h), every [`PURGE_EVERY`], until
/// shutdown. Records past retention already count as gone; this only keeps the table small.
async fn purge_idempotency_keys(
    store: crate::idempotency::IdempotencyStore,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    loop {
        match store.purge().await {
            Ok(0) => {}
            Ok(purged) => tracing::info!(purged, "purged expired idempotency keys"),
            Err(e) => tracing::warn!(error = %e, "cannot purge idempotency keys"),
        }
        tokio::select! {
            () = tokio::time::sleep(PURGE_EVERY) => {}
            _ = stop.wait_for(|stop| *stop) => return,
        }
    }
}

/// Runs only the workers (no HTTP) until Ctrl-C or SIGTERM.
pub async fn run_workers(settings: crate::settings::RunSettings) -> Result<(), ServeError> {
    let pool = crate::db::prepare(&settings.database).await?;
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let services = Arc::new(gigledger_commands::services::Services::new(
        pool.clone(),
        gigledger_commands::services::ServicesConfig::default(),
        Arc::new(gigledger_commands::provider::PgSimulatedGateway::new(
            pool.clone(),
        )),
        clock.clone(),
    ));
    let workers = Workers::start(&pool, &services, clock, &settings.workers).await?;
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
