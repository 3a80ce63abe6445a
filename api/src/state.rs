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

/// The router's state.
#[derive(Clone)]
pub struct AppState {
    pub pool: PgPool,
    pub services: Arc<Services>,
    pub auth: Arc<Authenticator>,
    pub idempotency: IdempotencyStore,
    pub limits: Arc<Limits>,
    pub metrics: PrometheusHandle,
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
            pool,
            services,
            auth: Arc::new(auth),
            idempotency,
            limits: Arc::new(Limits::from_settings(http)),
            metrics: crate::telemetry::metrics(),
        }
    }
}

impl FromRef<AppState> for Arc<Authenticator> {
    fn from_ref(state: &AppState) -> Self {
        state.auth.clone()
    }
}
