//! Building the application and serving it.

use axum::Router;
use sqlx::PgPool;
use tokio::net::TcpListener;

use crate::routes;
use crate::settings::ServeSettings;

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState {
    pub pool: PgPool,
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
    #[error("server error: {0}")]
    Io(#[from] std::io::Error),
}

/// Prepares the database and serves until Ctrl-C or SIGTERM.
pub async fn serve(settings: ServeSettings) -> Result<(), ServeError> {
    let pool = crate::db::prepare(&settings.database).await?;
    let listener = TcpListener::bind(settings.listen)
        .await
        .map_err(|source| ServeError::Bind {
            addr: settings.listen,
            source,
        })?;
    let addr = listener.local_addr()?;
    tracing::info!(http.addr = %addr, "gigledger listening");
    axum::serve(listener, app(AppState { pool }))
        .with_graceful_shutdown(shutdown_signal())
        .await?;
    Ok(())
}

async fn shutdown_signal() {
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
