//! Building the application and serving it.

use std::future::IntoFuture;
use std::sync::Arc;

use gigledger_commands::clock::{Clock, SystemClock};
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::app::app;
use crate::auth::Authenticator;
use crate::private_pg::PrivateCluster;
use crate::settings::ServeSettings;
use crate::state::AppState;
use crate::workers::Workers;

/// Why the server stopped.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error(transparent)]
    Database(#[from] crate::db::DbError),
    #[error("GIGLEDGER_PAYMENTS_WEBHOOK_SECRET must be at least {} bytes: a shorter one lets a provider's signature be guessed", gigledger_commands::notice::MIN_SECRET_BYTES)]
    WeakWebhookSecret,
    #[error("cannot listen on {addr}: {source}\nChoose another address with GIGLEDGER_LISTEN or --listen.")]
    Bind {
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
    #[error("cannot start the workers: {0}")]
    Workers(#[from] sqlx::Error),
    #[error("{0}")]
    Auth(crate::auth::AuthConfigError),
    #[error("{0}\n(`gigledger serve --demo` makes up a secret for a first look.)")]
    NoKey(crate::auth::AuthConfigError),
    #[error("cannot seed demo data: {0}")]
    Demo(#[from] crate::demo::DemoError),
    #[error("cannot start a private PostgreSQL for the demo: {0}")]
    PrivatePg(#[from] crate::private_pg::PrivatePgError),
    #[error("server error: {0}")]
    Io(#[from] std::io::Error),
}

/// Prepares the database, starts the workers and serves until Ctrl-C or SIGTERM.
///
/// With `--demo`: a random token secret when none is configured; when DATABASE_URL is unset and
/// nothing answers at the default address (or what answers refuses its user), a private
/// PostgreSQL ([`PrivateCluster`]), stopped
/// again on the way out whatever the outcome; the demo seeded into an empty database; and, once
/// the listener is bound, the workers started and the read models caught up, a guide printed to
/// stdout (tokens and curl lines).
pub async fn serve(mut settings: ServeSettings) -> Result<(), ServeError> {
    // The demo's simulated provider signs its notices; without a configured secret it gets one
    // for this process (a real deployment sets the provider's).
    if settings.demo && settings.http.payments_webhook_secret.is_none() {
        settings.http.payments_webhook_secret =
            Some(crate::demo::random_secret().expose().to_owned());
    }
    if settings
        .http
        .payments_webhook_secret
        .as_ref()
        .is_some_and(|s| s.len() < gigledger_commands::notice::MIN_SECRET_BYTES)
    {
        return Err(ServeError::WeakWebhookSecret);
    }
    // One listener for Ctrl-C and SIGTERM from the start: a signal during start-up (a long
    // seed, say) then stops the process through the same exits, which stop a private cluster.
    let (stop_tx, stop) = watch::channel(false);
    let signals = tokio::spawn(async move {
        shutdown_signal().await;
        let _ = stop_tx.send(true);
    });
    let mut auth_settings = settings.auth.clone();
    let secret_generated = settings.demo
        && auth_settings.jwt_secret.is_none()
        && auth_settings.jwt_jwks_file.is_none()
        && auth_settings.jwt_jwks_url.is_none();
    if secret_generated {
        auth_settings.jwt_secret = Some(crate::demo::random_secret());
        tracing::warn!("GIGLEDGER_JWT_SECRET is not set: the demo signs tokens with a random secret for this process");
    }
    let auth = Authenticator::load(&auth_settings)
        .await
        .map_err(|e| match e {
            crate::auth::AuthConfigError::NoKey => ServeError::NoKey(e),
            other => ServeError::Auth(other),
        })?;
    let mut database = settings.database.clone();
    let mut cluster = None;
    if settings.demo && settings.database_url_from_default {
        let probe = &settings.private_pg.demo_database_url;
        let refused = if crate::private_pg::answers(probe).await {
            crate::private_pg::refuses_us(probe).await
        } else {
            Some("nothing answers there".to_owned())
        };
        if let Some(why) = refused {
            let started = tokio::select! {
                started = PrivateCluster::start(&settings.private_pg) => started?,
                () = stopped(stop.clone()) => return Ok(()),
            };
            let programs = started.programs();
            let message = format!(
                "DATABASE_URL is not set, and the default PostgreSQL at {} cannot be used \
                 ({why}): started a private PostgreSQL {}.{} (from {}) on 127.0.0.1:{}, data in \
                 {}. It stops when gigledger does; the next `serve --demo` reuses it. (Set \
                 DATABASE_URL to use another server.)",
                crate::private_pg::address_of(probe),
                programs.version.0,
                programs.version.1,
                programs.bin.display(),
                started.port(),
                started.dir().display(),
            );
            tracing::info!(pg.port = started.port(), pg.dir = %started.dir().display(), "started a private PostgreSQL");
            println!("{message}");
            database.database_url = started.url("gigledger");
            cluster = Some(started);
        } else {
            database.database_url.clone_from(probe);
        }
    }
    let demo = settings.demo.then_some(DemoRun {
        auth: auth_settings,
        secret_generated,
    });
    let served = serve_on(&settings, &database, auth, demo, stop).await;
    if let Some(cluster) = cluster {
        cluster.stop().await;
    }
    signals.abort();
    served
}

/// What the demo's guide needs from start-up.
struct DemoRun {
    auth: crate::settings::AuthSettings,
    secret_generated: bool,
}

async fn stopped(mut stop: watch::Receiver<bool>) {
    let _ = stop.wait_for(|stopped| *stopped).await;
}

async fn serve_on(
    settings: &ServeSettings,
    database: &crate::settings::DatabaseSettings,
    auth: Authenticator,
    demo: Option<DemoRun>,
    stop: watch::Receiver<bool>,
) -> Result<(), ServeError> {
    let pool = tokio::select! {
        pool = crate::db::prepare(database) => pool?,
        () = stopped(stop.clone()) => return Ok(()),
    };
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let state = AppState::new(pool.clone(), clock.clone(), auth, &settings.http);
    // An identity provider rotates its keys: the set is fetched again on an interval.
    let _refresh = settings.auth.jwt_jwks_url.clone().map(|url| {
        let every = std::time::Duration::from_secs(settings.auth.jwt_jwks_refresh_secs.max(10));
        AbortOnDrop(tokio::spawn(state.auth.clone().refresh_keys(url, every)))
    });
    let listener = TcpListener::bind(settings.listen)
        .await
        .map_err(|source| ServeError::Bind {
            addr: settings.listen,
            source,
        })?;
    let found = match &demo {
        Some(_) => tokio::select! {
            found = crate::demo::seed_if_empty(&pool, &state.services, clock.clone()) => Some(found?),
            () = stopped(stop.clone()) => {
                pool.close().await;
                return Ok(());
            }
        },
        None => None,
    };
    let workers = if settings.workers.enabled {
        Some(Workers::start(&pool, &state.services, clock, &settings.workers).await?)
    } else {
        None
    };
    // The simulated provider's notices (an account verified, a transfer failed later) reach the
    // webhook's code as a real provider's would.
    let _deliveries = crate::notices::spawn_simulated_deliveries(state.clone()).map(AbortOnDrop);
    let addr = listener.local_addr()?;
    tracing::info!(http.addr = %addr, "gigledger listening");
    let guide = match (demo, found) {
        (Some(demo), Some(found)) => {
            let (pool, services) = (pool.clone(), state.services.clone());
            let workers = settings.workers.enabled;
            Some(tokio::spawn(async move {
                let caught_up = if workers {
                    let caught_up =
                        crate::demo::wait_for_read_models(&pool, crate::demo::CATCH_UP_LIMIT).await;
                    Some(caught_up.unwrap_or_else(|e| {
                        tracing::warn!(error = %e, "cannot tell whether the read models caught up");
                        false
                    }))
                } else {
                    None
                };
                let about = crate::demo::Circumstances {
                    addr,
                    found,
                    secret_generated: demo.secret_generated,
                    caught_up,
                };
                println!(
                    "{}",
                    crate::demo::guide(&services, &demo.auth, &about).await
                );
            }))
        }
        _ => None,
    };
    let purge = tokio::spawn(purge_idempotency_keys(
        state.idempotency.clone(),
        stop.clone(),
    ));
    // In-flight requests get the request time limit (and a little more) to finish once a signal
    // came; the server stops accepting at once.
    let drain = state.limits.request_timeout + DRAIN_MARGIN;
    let tasks = state.tasks.clone();
    let live = state.live.clone();
    let command_bound = state.services.config().gateway_timeout * 3 + drain;
    let server = axum::serve(listener, app(state))
        .with_graceful_shutdown({
            let stop = stop.clone();
            async move {
                stopped(stop).await;
                // Open notification streams end now: graceful shutdown waits for every open
                // response, and a stream would never end by itself.
                live.close();
            }
        })
        .into_future();
    tokio::select! {
        served = server => served?,
        () = async {
            stopped(stop).await;
            tokio::time::sleep(drain).await;
        } => tracing::warn!(drain_ms = drain.as_millis(), "in-flight requests did not finish in time; stopping anyway"),
    }
    purge.abort();
    // Commands that outlived their requests finish before the process ends (bounded by a few
    // gateway timeouts): one between its charge and its deposit event must not be cut there.
    if !tasks.close_and_wait(command_bound).await {
        tracing::error!("commands were still running at shutdown; run gigledger audit reconcile");
    }
    if let Some(guide) = guide {
        guide.abort();
    }
    if let Some(workers) = workers {
        workers.stop().await;
    }
    pool.close().await;
    Ok(())
}

/// A background task that ends with the value holding it.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
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
