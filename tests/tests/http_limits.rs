//! The edge's limits: the request time limit (a command past it finishes whole, and its answer is
//! then replayed), the bounded wait for `X-Min-Position`, and CORS.

use std::sync::Arc;
use std::time::Duration;

use gigledger_api::auth::Authenticator;
use gigledger_api::settings::HttpSettings;
use gigledger_api::state::AppState;
use gigledger_commands::clock::{Clock, SystemClock};
use gigledger_commands::provider::PgSimulatedGateway;
use gigledger_commands::services::ServicesConfig;
use gigledger_domain::{ChargeReceipt, ChargeRequest, GatewayError, PaymentGateway, Role};
use gigledger_tests::http::{auth_settings, TestApi, PATIENCE};
use reqwest::{Method, StatusCode};
use sqlx::PgPool;

/// The real simulated provider, answering a charge only after `delay`.
struct SlowGateway {
    inner: PgSimulatedGateway,
    delay: Duration,
}

#[async_trait::async_trait]
impl PaymentGateway for SlowGateway {
    async fn charge(&self, request: ChargeRequest) -> Result<ChargeReceipt, GatewayError> {
        tokio::time::sleep(self.delay).await;
        self.inner.charge(request).await
    }

    async fn void(&self, idempotency_key: &str) -> Result<(), GatewayError> {
        self.inner.void(idempotency_key).await
    }

    async fn onboard(
        &self,
        req: gigledger_domain::gateway::OnboardRequest,
    ) -> Result<gigledger_domain::gateway::OnboardReceipt, gigledger_domain::GatewayError> {
        self.inner.onboard(req).await
    }

    async fn transfer(
        &self,
        req: gigledger_domain::gateway::TransferRequest,
    ) -> Result<gigledger_domain::gateway::TransferReceipt, gigledger_domain::GatewayError> {
        self.inner.transfer(req).await
    }

    async fn refund(
        &self,
        req: gigledger_domain::gateway::RefundRequest,
    ) -> Result<gigledger_domain::gateway::RefundReceipt, gigledger_domain::GatewayError> {
        self.inner.refund(req).await
    }
}

#[sqlx::test(migrator = "gigledger_projections::MIGRATOR")]
async fn a_fund_past_the_time_limit_is_503_then_completes_whole_and_a_retry_gets_its_answer(
    pool: PgPool,
) {
    let http = HttpSettings {
        request_timeout_ms: 300,
        ..HttpSettings::default()
    };
    let auth = auth_settings();
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let state = AppState::with_gateway(
        pool.clone(),
        clock.clone(),
        Authenticator::from_settings(&auth).expect("auth"),
        &http,
        ServicesConfig::default(),
        Arc::new(SlowGateway {
            inner: PgSimulatedGateway::new(pool.clone()),
            delay: Duration::from_millis(1_500),
        }),
    );
    let api = TestApi::serve(pool, state, auth, clock, true).await;
    let hired = api.hire(&[25_000]).await;
    let fund = format!("{}/fund", hired.milestone_path(0));
    let send = || {
        api.send(
            Method::POST,
            &fund,
            Some(&hired.client.token),
            None,
            &[("idempotency-key", "slow-fund")],
        )
    };
    let first = send().await;
    assert_eq!(first.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(first.problem_type(), "/problems/unavailable");
    // The command runs on to its end: retries see it in flight, then its answer.
    let deadline = tokio::time::Instant::now() + PATIENCE;
    let answer = loop {
        let retry = send().await;
        match retry.status {
            StatusCode::CONFLICT | StatusCode::SERVICE_UNAVAILABLE => {
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "the fund never finished"
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            _ => break retry,
        }
    };
    assert_eq!(answer.status, StatusCode::OK, "{:?}", answer.json());
    assert_eq!(answer.header("idempotent-replayed"), Some("true"));
    // Whole: one charge, its deposit, and the milestone marked funded (the follow-up ran too).
    assert_eq!(api.charges().await, 1);
    assert_eq!(api.events_of_type("FundsDeposited").await, 1);
    assert_eq!(api.events_of_type("MilestoneFunded").await, 1);
    api.stop().await;
}

#[sqlx::test(migrator = "gigledger_projections::MIGRATOR")]
async fn a_position_the_views_do_not_reach_in_time_is_503_with_retry_after(pool: PgPool) {
    let http = HttpSettings {
        min_position_wait_ms: 100,
        ..HttpSettings::default()
    };
    let api = TestApi::start_with(pool, http, true).await;
    let user = api.user(&[Role::Client]);
    let answer = api.get_at(&user, "/v1/gigs", 1_000_000).await;
    assert_eq!(answer.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(answer.problem_type(), "/problems/unavailable");
    assert!(answer.header("retry-after").is_some());
    // Position 0 is always reached, and the answer says how far the view is.
    let answer = api.get_at(&user, "/v1/gigs", 0).await;
    assert_eq!(answer.status, StatusCode::OK);
    assert!(answer
        .header("x-position")
        .and_then(|p| p.parse::<i64>().ok())
        .is_some());
    api.stop().await;
}

#[sqlx::test(migrator = "gigledger_projections::MIGRATOR")]
async fn only_configured_origins_may_call_from_a_browser(pool: PgPool) {
    let http = HttpSettings {
        cors_origins: vec!["https://app.example.com".to_owned()],
        ..HttpSettings::default()
    };
    let api = TestApi::start_with(pool, http, false).await;
    let server = &api;
    let preflight = |origin: &'static str| async move {
        let headers = [
            ("origin", origin),
            ("access-control-request-method", "POST"),
            (
                "access-control-request-headers",
                "authorization,idempotency-key",
            ),
        ];
        server
            .send(Method::OPTIONS, "/v1/gigs", None, None, &headers)
            .await
    };
    let allowed = preflight("https://app.example.com").await;
    assert_eq!(
        allowed.header("access-control-allow-origin"),
        Some("https://app.example.com")
    );
    let refused = preflight("https://evil.example.com").await;
    assert_eq!(refused.header("access-control-allow-origin"), None);
    let user = api.user(&[Role::Client]);
    let read = api
        .send(
            Method::GET,
            "/v1/me",
            Some(&user.token),
            None,
            &[("origin", "https://app.example.com")],
        )
        .await;
    assert_eq!(read.status, StatusCode::OK);
    assert!(read
        .header("access-control-expose-headers")
        .is_some_and(|h| h.contains("x-position")));
    api.stop().await;
}
