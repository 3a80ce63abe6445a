//! What every handler can reach: the one state the router carries, built once at start-up (or by
//! a test). Routes and start-up both depend on this module and never on each other.

use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::FromRef;
use gigledger_commands::clock::Clock;
use gigledger_commands::provider::PgSimulatedGateway;
use gigledger_commands::services::{Services, ServicesConfig};
use gigledger_domain::PaymentGateway;
use governor::clock::{Clock as _, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota};
use metrics_exporter_prometheus::PrometheusHandle;
use sqlx::PgPool;
use uuid::Uuid;

use crate::auth::Authenticator;
use crate::idempotency::{IdempotencyConfig, IdempotencyStore};
use crate::live::Live;
use crate::settings::HttpSettings;

/// The request limits of API.md, resolved from [`HttpSettings`].
pub struct Limits {
    /// Past it a request is answered `503` (a command keeps running to its end).
    pub request_timeout: Duration,
    /// The most a query waits for `X-Min-Position`.
    pub min_position_wait: Duration,
    /// Commands per caller; `None` when the limit is off.
    commands: Option<DefaultKeyedRateLimiter<Uuid>>,
    /// Browser origins allowed (CORS); empty: none.
    pub cors_origins: Vec<String>,
}

/// How many callers the command limiter remembers before it forgets the ones whose allowance is
/// full again (its memory is bounded by the callers active within a minute).
const LIMITER_SWEEP_AT: usize = 10_000;

impl Limits {
    pub fn from_settings(settings: &HttpSettings) -> Self {
        Self {
            request_timeout: Duration::from_millis(settings.request_timeout_ms),
            min_position_wait: Duration::from_millis(settings.min_position_wait_ms),
            commands: NonZeroU32::new(settings.commands_per_minute)
                .map(|n| DefaultKeyedRateLimiter::keyed(Quota::per_minute(n))),
            cors_origins: settings.cors_origins.clone(),
        }
    }

    /// Takes one command from `caller`'s allowance, or says in how many seconds there is one.
    pub fn take_command(&self, caller: Uuid) -> Result<(), u32> {
        let Some(limiter) = &self.commands else {
            return Ok(());
        };
        if limiter.len() > LIMITER_SWEEP_AT {
            limiter.retain_recent();
        }
        limiter.check_key(&caller).map_err(|not_until| {
            let wait = not_until.wait_time_from(DefaultClock::default().now());
            u32::try_from(wait.as_secs().saturating_add(1)).unwrap_or(u32::MAX)
        })
    }
}

/// The command tasks running in this process, so that shutdown waits for them: a command that
/// outlived its request (time limit, hang-up) may be between a charge and its deposit event.
#[derive(Default)]
pub struct CommandTasks {
    running: std::sync::atomic::AtomicUsize,
    closing: std::sync::atomic::AtomicBool,
    idle: tokio::sync::Notify,
}

/// One running command; dropping it counts it done.
pub struct RunningCommand(Arc<CommandTasks>);

impl Drop for RunningCommand {
    fn drop(&mut self) {
        use std::sync::atomic::Ordering;
        if self.0.running.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.idle.notify_waiters();
        }
    }
}

impl CommandTasks {
    /// Counts a command in, or `None` once shutdown began (the command is then refused with a
    /// 503 before anything runs).
    pub fn begin(self: &Arc<Self>) -> Option<RunningCommand> {
        use std::sync::atomic::Ordering;
        self.running.fetch_add(1, Ordering::AcqRel);
        let guard = RunningCommand(self.clone());
        (!self.closing.load(Ordering::Acquire)).then_some(guard)
    }

    /// Refuses new commands and waits, at most `bound`, for the running ones; `false` if some
    /// were still running.
    pub async fn close_and_wait(&self, bound: Duration) -> bool {
        use std::sync::atomic::Ordering;
        self.closing.store(true, Ordering::Release);
        let deadline = tokio::time::Instant::now() + bound;
        loop {
            let notified = self.idle.notified();
            if self.running.load(Ordering::Acquire) == 0 {
                return true;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return self.running.load(Ordering::Acquire) == 0;
            }
        }
    }
}

/// The router's state.
#[derive(Clone)]
pub struct AppState {
    pub pool: PgPool,
    pub services: Arc<Services>,
    pub auth: Arc<Authenticator>,
    pub idempotency: IdempotencyStore,
    pub limits: Arc<Limits>,
    pub metrics: PrometheusHandle,
    pub tasks: Arc<CommandTasks>,
    /// The notification streams' shared waker and shutdown signal.
    pub live: Arc<Live>,
    /// The secret payment provider notices are signed with (`None`: the webhook refuses them).
    pub webhook_secret: Option<Arc<[u8]>>,
}

impl AppState {
    /// The production wiring: the simulated payment provider (the only one so far), kept in the
    /// database's `provider` schema so that every process shares it.
    pub fn new(
        pool: PgPool,
        clock: Arc<dyn Clock>,
        auth: Authenticator,
        http: &HttpSettings,
    ) -> Self {
        let gateway = Arc::new(PgSimulatedGateway::new(pool.clone()));
        Self::with_gateway(pool, clock, auth, http, ServicesConfig::default(), gateway)
    }

    /// The same with another gateway and service configuration (tests that make the provider fail).
    pub fn with_gateway(
        pool: PgPool,
        clock: Arc<dyn Clock>,
        auth: Authenticator,
        http: &HttpSettings,
        config: ServicesConfig,
        gateway: Arc<dyn PaymentGateway>,
    ) -> Self {
        let services = Arc::new(Services::new(pool.clone(), config, gateway, clock));
        let idempotency = IdempotencyStore::with_database_clock(
            pool.clone(),
            IdempotencyConfig {
                // A live request is never taken over: the lease outlasts the request time limit
                // (and a command past it still runs to its end, bounded by the gateway's timeout).
                lease: chrono::Duration::milliseconds(
                    i64::try_from(http.request_timeout_ms)
                        .unwrap_or(i64::MAX / 4)
                        .saturating_mul(3),
                )
                .max(chrono::Duration::seconds(60)),
                ..IdempotencyConfig::default()
            },
        );
        Self {
            services,
            auth: Arc::new(auth),
            idempotency,
            limits: Arc::new(Limits::from_settings(http)),
            metrics: crate::telemetry::metrics(),
            tasks: Arc::new(CommandTasks::default()),
            live: Arc::new(Live::new(pool.clone())),
            webhook_secret: http
                .payments_webhook_secret
                .as_ref()
                .map(|s| Arc::from(s.as_bytes())),
            pool,
        }
    }
}

impl FromRef<AppState> for Arc<Authenticator> {
    fn from_ref(state: &AppState) -> Self {
        state.auth.clone()
    }
}
