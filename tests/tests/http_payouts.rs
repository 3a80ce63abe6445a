//! Money leaves the platform, black-box over HTTP: a freelancer registers a payout account (the
//! simulated provider verifies it with a signed notice), sees released net amounts in the wallet,
//! is paid out part of them; a cancelled milestone's deposit goes back to the card; the trial
//! balance stays zero and reconcile clean. Payout refusals, concurrent payouts, a provider that
//! fails or loses its answer, a transfer reported failed later, and the webhook's signature rules.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use gigledger_api::auth::Authenticator;
use gigledger_api::settings::HttpSettings;
use gigledger_api::state::AppState;
use gigledger_commands::clock::{Clock, SystemClock};
use gigledger_commands::provider::PgSimulatedGateway;
use gigledger_commands::services::ServicesConfig;
use gigledger_domain::gateway::{
    OnboardReceipt, OnboardRequest, RefundReceipt, RefundRequest, TransferReceipt, TransferRequest,
};
use gigledger_domain::{ChargeReceipt, ChargeRequest, GatewayError, PaymentGateway, Role};
use gigledger_tests::http::{
    assert_trial_balance_is_zero, auth_settings, Hired, TestApi, User, WEBHOOK_SECRET,
};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use sqlx::PgPool;

const PATIENCE: Duration = Duration::from_secs(30);

/// Polls `probe` until it answers `Some`, within [`PATIENCE`].
async fn eventually<T, F, Fut>(what: &str, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + PATIENCE;
    loop {
        if let Some(found) = probe().await {
            return found;
        }
        assert!(Instant::now() < deadline, "{what}: not within {PATIENCE:?}");
        // Pacing between polls; the assertion is the condition above.
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn usd(amount: i64) -> Value {
    json!({ "amount": amount, "currency": "USD" })
}

/// A contract of two milestones (200.00 and 100.00), both funded; the first approved (net 180.00
/// after the 10 % fee), then the contract cancelled (the second's 100.00 refunded).
async fn released_and_refunded(api: &TestApi) -> Hired {
    let hired = api.hire(&[20_000, 10_000]).await;
    for i in 0..2 {
        let funded = api
            .post(
                &hired.client,
                &format!("{}/fund", hired.milestone_path(i)),
                &json!({}),
            )
            .await;
        assert_eq!(funded.status, StatusCode::OK, "{:?}", funded.json());
    }
    for (user, step, body) in [
        (&hired.freelancer, "submit", json!({ "note": "done" })),
        (&hired.client, "approve", json!({})),
    ] {
        let answer = api
            .post(user, &format!("{}/{step}", hired.milestone_path(0)), &body)
            .await;
        assert_eq!(answer.status, StatusCode::OK, "{step}: {:?}", answer.json());
    }
    let cancelled = api
        .post(
            &hired.client,
            &format!("{}/cancel", hired.contract_path()),
            &json!({ "reason": "the rest is not needed" }),
        )
        .await;
    assert_eq!(cancelled.status, StatusCode::OK, "{:?}", cancelled.json());
    hired
}

async fn put_account(api: &TestApi, freelancer: &User) -> Value {
    let answer = api
        .send(
            Method::PUT,
            "/v1/me/payout-account",
            Some(&freelancer.token),
            Some(&json!({ "provider": "simulated" })),
            &[],
        )
        .await;
    assert_eq!(answer.status, StatusCode::OK, "{:?}", answer.json());
    answer.json()
}

async fn wallet(api: &TestApi, freelancer: &User) -> Value {
    let answer = api.get(freelancer, "/v1/me/wallet").await;
    assert_eq!(answer.status, StatusCode::OK, "{:?}", answer.json());
    answer.json()
}

fn usd_balance(wallet: &Value) -> (i64, i64, i64) {
    let usd = wallet["balances"]
        .as_array()
        .expect("balances")
        .iter()
        .find(|b| b["currency"] == "USD")
        .cloned()
        .unwrap_or(json!({ "available": 0, "pending": 0, "paid_out": 0 }));
    (
        usd["available"].as_i64().expect("available"),
        usd["pending"].as_i64().expect("pending"),
        usd["paid_out"].as_i64().expect("paid_out"),
    )
}

/// Registers the freelancer's account and waits until the provider's notice verified it.
async fn verified_account(api: &TestApi, freelancer: &User) {
    let registered = put_account(api, freelancer).await;
    assert_eq!(registered["status"], "pending", "{registered:?}");
    eventually("the account verified by the provider's notice", || async {
        let w = wallet(api, freelancer).await;
        (w["accounts"][0]["status"] == "verified").then_some(())
    })
    .await;
}

/// The wallet once `available` reached `amount`.
async fn available_reaches(api: &TestApi, freelancer: &User, amount: i64) {
    eventually("the release credited", || async {
        let (available, ..) = usd_balance(&wallet(api, freelancer).await);
        (available >= amount).then_some(())
    })
    .await;
}

async fn reconciled(api: &TestApi) -> Value {
    let auditor = api.user(&[Role::Auditor]);
    let answer = api.get(&auditor, "/v1/audit/reconcile").await;
    assert_eq!(answer.status, StatusCode::OK);
    answer.json()
}

#[sqlx::test(migrator = "gigledger_projections::MIGRATOR")]
async fn a_freelancer_is_paid_out_and_a_cancelled_deposit_returns_to_the_card(pool: PgPool) {
    let api = TestApi::start(pool.clone()).await;
    let hired = released_and_refunded(&api).await;
    let freelancer = &hired.freelancer;
    verified_account(&api, freelancer).await;
    available_reaches(&api, freelancer, 18_000).await;
    assert_eq!(usd_balance(&wallet(&api, freelancer).await), (18_000, 0, 0));

    let requested = api
        .post(
            freelancer,
            "/v1/me/payouts",
            &json!({ "amount": usd(5_000) }),
        )
        .await;
    assert_eq!(
        requested.status,
        StatusCode::CREATED,
        "{:?}",
        requested.json()
    );
    let payout_id = requested.json()["payout_id"]
        .as_str()
        .expect("a payout id")
        .to_owned();
    let paid = eventually("the payout paid", || async {
        let listed = api.get(freelancer, "/v1/me/payouts").await.json();
        let first = listed["items"][0].clone();
        (first["status"] == "paid").then_some(first)
    })
    .await;
    assert_eq!(paid["payout_id"], payout_id.as_str());
    assert!(paid["transfer_id"]
        .as_str()
        .is_some_and(|t| t.starts_with("sim_tr_")));
    // A notice that another transfer failed changes nothing of this payout.
    let stray = api
        .notice(&json!({
            "id": "evt_stray",
            "type": "transfer.failed",
            "data": { "user_id": freelancer.id(), "payout_id": payout_id,
                      "transfer_id": "sim_tr_999999", "reason": "not this one" },
        }))
        .await;
    assert_eq!(stray.status, StatusCode::OK, "{:?}", stray.json());
    assert!(stray.json()["outcome"]
        .as_str()
        .is_some_and(|o| o.starts_with("refused")));
    assert_eq!(api.events_of_type("PayoutFailed").await, 0);
    eventually("the wallet shows it paid", || async {
        (usd_balance(&wallet(&api, freelancer).await) == (13_000, 0, 5_000)).then_some(())
    })
    .await;

    // The cancelled milestone's deposit comes back to the client's card.
    eventually("the card refund issued", || async {
        (api.events_of_type("RefundIssued").await == 1).then_some(())
    })
    .await;
    let refunds: i64 = sqlx::query_scalar(
        "select count(*) from provider.refunds where amount = 10000 and status = 'succeeded'",
    )
    .fetch_one(&pool)
    .await
    .expect("counted");
    assert_eq!(refunds, 1);
    let admin = api.user(&[Role::Admin]);
    let waiting = eventually("nothing waits", || async {
        let view = api.get(&admin, "/v1/payouts?status=pending").await.json();
        (view["refunds"].as_array().is_some_and(Vec::is_empty)
            && view["payouts"].as_array().is_some_and(Vec::is_empty))
        .then_some(view)
    })
    .await;
    assert!(waiting["refunds"].is_array());

    // The ledger holds the payout and the card refund, and still balances; reconcile is clean.
    eventually("the ledger has both", || async {
        let lines: i64 = sqlx::query_scalar(
            "select (select count(*) from read.wallet_ledger_entries)
                  + (select count(*) from read.ledger_entries where movement = 'card_refund')",
        )
        .fetch_one(&pool)
        .await
        .expect("counted");
        (lines == 4).then_some(())
    })
    .await;
    assert_trial_balance_is_zero(&pool).await;
    let report = reconciled(&api).await;
    assert_eq!(report["ok"], true, "{report:?}");

    // GMV counts what left the platform: paid out, and refunded to the card.
    let analyst = api.user(&[Role::Analyst]);
    let (paid_out, to_card) = eventually("the analytics caught up", || async {
        let series = api
            .get(&analyst, "/v1/analytics/gmv?interval=month&currency=USD")
            .await
            .json();
        let sum = |field: &str| -> i64 {
            series
                .as_array()
                .into_iter()
                .flatten()
                .flat_map(|p| p["totals"].as_array().cloned().unwrap_or_default())
                .map(|t| t[field].as_i64().unwrap_or(0))
                .sum()
        };
        let found = (sum("paid_out"), sum("refunded_to_card"));
        (found == (5_000, 10_000)).then_some(found)
    })
    .await;
    assert_eq!((paid_out, to_card), (5_000, 10_000));
    api.stop().await;
}

#[sqlx::test(migrator = "gigledger_projections::MIGRATOR")]
async fn payouts_beyond_the_rules_are_problems_and_write_nothing(pool: PgPool) {
    let api = TestApi::start(pool.clone()).await;
    let hired = released_and_refunded(&api).await;
    let freelancer = &hired.freelancer;
    available_reaches(&api, freelancer, 18_000).await;

    let before = api.events_by_users().await;
    let without_account = api
        .post(
            freelancer,
            "/v1/me/payouts",
            &json!({ "amount": usd(5_000) }),
        )
        .await;
    assert_eq!(
        without_account.status,
        StatusCode::CONFLICT,
        "{:?}",
        without_account.json()
    );
    assert_eq!(api.events_by_users().await, before);

    verified_account(&api, freelancer).await;
    let before = api.events_by_users().await;
    for (amount, status) in [
        (usd(18_001), StatusCode::CONFLICT),
        (usd(999), StatusCode::UNPROCESSABLE_ENTITY),
        (
            json!({ "amount": 5_000, "currency": "EUR" }),
            StatusCode::CONFLICT,
        ),
        (usd(0), StatusCode::UNPROCESSABLE_ENTITY),
        (usd(-5), StatusCode::UNPROCESSABLE_ENTITY),
    ] {
        let refused = api
            .post(freelancer, "/v1/me/payouts", &json!({ "amount": amount }))
            .await;
        assert_eq!(refused.status, status, "{amount}: {:?}", refused.json());
        assert!(refused.problem_type().starts_with("/problems/"));
        assert_eq!(
            api.events_by_users().await,
            before,
            "{amount}: nothing written"
        );
    }
    // Not a freelancer, or no token.
    let refused = api
        .post(
            &hired.client,
            "/v1/me/payouts",
            &json!({ "amount": usd(5_000) }),
        )
        .await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    let anonymous = api
        .send(Method::GET, "/v1/me/wallet", None, None, &[])
        .await;
    assert_eq!(anonymous.status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        api.get(&hired.client, "/v1/payouts").await.status,
        StatusCode::FORBIDDEN
    );
    assert_eq!(api.events_by_users().await, before);
    api.stop().await;
}

#[sqlx::test(migrator = "gigledger_projections::MIGRATOR")]
async fn twenty_concurrent_payouts_never_exceed_the_balance(pool: PgPool) {
    let api = Arc::new(TestApi::start(pool.clone()).await);
    let hired = released_and_refunded(&api).await;
    let freelancer = hired.freelancer.clone();
    verified_account(&api, &freelancer).await;
    available_reaches(&api, &freelancer, 18_000).await;
    let mut requests = Vec::new();
    for _ in 0..20 {
        let (api, freelancer) = (api.clone(), freelancer.clone());
        requests.push(tokio::spawn(async move {
            api.post(
                &freelancer,
                "/v1/me/payouts",
                &json!({ "amount": usd(2_000) }),
            )
            .await
            .status
        }));
    }
    let mut accepted = 0_i64;
    for request in requests {
        let status = request.await.expect("a request");
        assert!(
            status == StatusCode::CREATED
                || status == StatusCode::CONFLICT
                || status == StatusCode::SERVICE_UNAVAILABLE,
            "{status}"
        );
        if status == StatusCode::CREATED {
            accepted += 1;
        }
    }
    assert!(
        accepted >= 1 && accepted * 2_000 <= 18_000,
        "{accepted} accepted"
    );
    let requested: i64 = sqlx::query_scalar(
        "select coalesce(sum((payload->'PayoutRequested'->'amount'->>'amount')::bigint), 0)::bigint
           from events where event_type = 'PayoutRequested'",
    )
    .fetch_one(&pool)
    .await
    .expect("summed");
    assert!(requested <= 18_000, "{requested} requested of 18000");
    assert_eq!(requested, accepted * 2_000);
    let api = Arc::into_inner(api).expect("the only handle");
    api.stop().await;
}

/// The provider: the first transfer is made but its answer is lost (as if the process died
/// between the transfer and its event), the second call fails outright; then it answers.
struct LosesAnswers {
    inner: PgSimulatedGateway,
    transfers: AtomicU32,
}

#[async_trait::async_trait]
impl PaymentGateway for LosesAnswers {
    async fn charge(&self, req: ChargeRequest) -> Result<ChargeReceipt, GatewayError> {
        self.inner.charge(req).await
    }

    async fn void(&self, key: &str) -> Result<(), GatewayError> {
        self.inner.void(key).await
    }

    async fn onboard(&self, req: OnboardRequest) -> Result<OnboardReceipt, GatewayError> {
        self.inner.onboard(req).await
    }

    async fn transfer(&self, req: TransferRequest) -> Result<TransferReceipt, GatewayError> {
        match self.transfers.fetch_add(1, Ordering::SeqCst) {
            0 => {
                let _made = self.inner.transfer(req).await;
                Err(GatewayError::Timeout)
            }
            1 => Err(GatewayError::Unavailable("down for the test".to_owned())),
            _ => self.inner.transfer(req).await,
        }
    }

    async fn refund(&self, req: RefundRequest) -> Result<RefundReceipt, GatewayError> {
        self.inner.refund(req).await
    }
}

async fn api_with(pool: &PgPool, gateway: Arc<dyn PaymentGateway>) -> TestApi {
    api_with_clock(pool, gateway, Arc::new(SystemClock)).await
}

async fn api_with_clock(
    pool: &PgPool,
    gateway: Arc<dyn PaymentGateway>,
    clock: Arc<dyn Clock>,
) -> TestApi {
    let http = HttpSettings {
        payments_webhook_secret: Some(WEBHOOK_SECRET.to_owned()),
        ..HttpSettings::default()
    };
    let auth = auth_settings();
    let state = AppState::with_gateway(
        pool.clone(),
        clock.clone(),
        Authenticator::from_settings(&auth).expect("auth"),
        &http,
        ServicesConfig::default(),
        gateway,
    );
    TestApi::serve(pool.clone(), state, auth, clock, true).await
}

#[sqlx::test(migrator = "gigledger_projections::MIGRATOR")]
async fn a_transfer_whose_answer_was_lost_is_made_once_and_the_payout_ends_paid(pool: PgPool) {
    let gateway = Arc::new(LosesAnswers {
        inner: PgSimulatedGateway::new(pool.clone()),
        transfers: AtomicU32::new(0),
    });
    let api = api_with(&pool, gateway.clone()).await;
    let hired = released_and_refunded(&api).await;
    let freelancer = &hired.freelancer;
    verified_account(&api, freelancer).await;
    available_reaches(&api, freelancer, 18_000).await;
    let requested = api
        .post(
            freelancer,
            "/v1/me/payouts",
            &json!({ "amount": usd(6_000) }),
        )
        .await;
    assert_eq!(requested.status, StatusCode::CREATED);
    eventually("the payout paid after the retries", || async {
        let listed = api.get(freelancer, "/v1/me/payouts").await.json();
        (listed["items"][0]["status"] == "paid").then_some(())
    })
    .await;
    assert!(gateway.transfers.load(Ordering::SeqCst) >= 3);
    let transfers: i64 = sqlx::query_scalar("select count(*) from provider.transfers")
        .fetch_one(&pool)
        .await
        .expect("counted");
    assert_eq!(transfers, 1, "exactly one transfer at the provider");
    assert_eq!(api.events_of_type("PayoutPaid").await, 1);
    eventually("reconcile clean", || async {
        (reconciled(&api).await["ok"] == true).then_some(())
    })
    .await;
    api.stop().await;
}

#[sqlx::test(migrator = "gigledger_projections::MIGRATOR")]
async fn a_transfer_reported_failed_later_puts_the_money_back(pool: PgPool) {
    let gateway = Arc::new(PgSimulatedGateway::new(pool.clone()));
    gateway.fail_transfers_later(true);
    let api = api_with(&pool, gateway.clone()).await;
    let hired = released_and_refunded(&api).await;
    let freelancer = &hired.freelancer;
    verified_account(&api, freelancer).await;
    available_reaches(&api, freelancer, 18_000).await;
    let requested = api
        .post(
            freelancer,
            "/v1/me/payouts",
            &json!({ "amount": usd(7_000) }),
        )
        .await;
    assert_eq!(requested.status, StatusCode::CREATED);
    let failed = eventually("the payout failed by the later notice", || async {
        let listed = api.get(freelancer, "/v1/me/payouts").await.json();
        let first = listed["items"][0].clone();
        (first["status"] == "failed").then_some(first)
    })
    .await;
    assert!(failed["reason"].as_str().is_some_and(|r| !r.is_empty()));
    assert_eq!(api.events_of_type("PayoutPaid").await, 1);
    assert_eq!(api.events_of_type("PayoutFailed").await, 1);
    eventually("the money is back", || async {
        (usd_balance(&wallet(&api, freelancer).await) == (18_000, 0, 0)).then_some(())
    })
    .await;
    // The ledger agrees: paid out and back, nothing left in payouts_sent.
    eventually("the ledger has the return", || async {
        let lines: i64 = sqlx::query_scalar("select count(*) from read.wallet_ledger_entries")
            .fetch_one(&pool)
            .await
            .expect("counted");
        (lines == 4).then_some(())
    })
    .await;
    let sent: i64 = sqlx::query_scalar(
        "select coalesce(sum(amount), 0)::bigint from read.wallet_ledger_entries
          where account = 'payouts_sent'",
    )
    .fetch_one(&pool)
    .await
    .expect("summed");
    assert_eq!(sent, 0);
    assert_trial_balance_is_zero(&pool).await;
    eventually("reconcile clean", || async {
        (reconciled(&api).await["ok"] == true).then_some(())
    })
    .await;
    api.stop().await;
}

#[sqlx::test(migrator = "gigledger_projections::MIGRATOR")]
async fn a_notice_applies_once_and_a_bad_signature_stale_time_or_changed_body_is_refused(
    pool: PgPool,
) {
    // No workers: the simulated provider delivers nothing itself, the test is the provider.
    let api = TestApi::start_with(pool.clone(), HttpSettings::default(), false).await;
    let freelancer = api.user(&[Role::Freelancer]);
    let registered = put_account(&api, &freelancer).await;
    let account_id = registered["account_id"].as_str().expect("an account id");
    let notice = json!({
        "id": "evt_test_1",
        "type": "account.verified",
        "created": chrono::Utc::now().timestamp(),
        "data": { "account_id": account_id, "user_id": freelancer.id(), "provider": "simulated" },
    });
    let body = serde_json::to_vec(&notice).expect("JSON");
    let now = chrono::Utc::now().timestamp();
    let notices = || async {
        sqlx::query_scalar::<_, i64>("select count(*) from provider_notices")
            .fetch_one(&pool)
            .await
            .expect("counted")
    };

    // Refused, and nothing recorded or applied: another secret, six minutes old, a body changed
    // after signing, no signature at all.
    let forged = gigledger_commands::notice::sign(b"not the secret", now, &body);
    let mut changed = body.clone();
    let at = changed.len() - 2;
    changed[at] = b' ';
    let signed = gigledger_commands::notice::sign(WEBHOOK_SECRET.as_bytes(), now, &body);
    for (what, signature, sent) in [
        ("another secret", Some(forged), body.clone()),
        (
            "six minutes old",
            Some(gigledger_commands::notice::sign(
                WEBHOOK_SECRET.as_bytes(),
                now - 360,
                &body,
            )),
            body.clone(),
        ),
        ("a changed body", Some(signed.clone()), changed),
        ("no signature", None, body.clone()),
    ] {
        let mut request = api
            .http
            .post(format!("{}/v1/webhooks/payments", api.base))
            .header("content-type", "application/json")
            .body(sent);
        if let Some(signature) = signature {
            request = request.header("gigledger-signature", signature);
        }
        let answer = request.send().await.expect("an answer");
        assert_eq!(answer.status(), StatusCode::BAD_REQUEST, "{what}");
        let problem: Value = answer.json().await.expect("a problem");
        assert_eq!(
            problem["errors"][0]["field"], "gigledger-signature",
            "{what}"
        );
        assert_eq!(notices().await, 0, "{what}: nothing recorded");
        assert_eq!(api.events_of_type("PayoutAccountVerified").await, 0);
    }

    // A valid notice sent three times: applied once, the repeats answered 2xx.
    for attempt in 0..3 {
        let answer = api.notice_at(&body, now).await;
        assert_eq!(answer.status, StatusCode::OK, "{:?}", answer.json());
        assert_eq!(
            answer.json()["duplicate"],
            attempt > 0,
            "{:?}",
            answer.json()
        );
        assert_eq!(answer.json()["outcome"], "applied");
    }
    assert_eq!(api.events_of_type("PayoutAccountVerified").await, 1);
    assert_eq!(notices().await, 1);

    // An unknown type is recorded and ignored.
    let unknown = api
        .notice(&json!({ "id": "evt_test_2", "type": "balance.available", "data": {} }))
        .await;
    assert_eq!(unknown.status, StatusCode::OK);
    assert!(unknown.json()["outcome"]
        .as_str()
        .is_some_and(|o| o.starts_with("ignored")));
    assert_eq!(notices().await, 2);
    // A notice id with a control character (it would end up in headers) is refused.
    let controlled = api
        .notice(&json!({ "id": "evt\nbad", "type": "balance.available", "data": {} }))
        .await;
    assert_eq!(controlled.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(controlled.error_fields(), vec!["id"]);
    assert_eq!(notices().await, 2);
    // An oversized notice is refused before anything is read into it.
    let mut huge = br#"{"id":"evt_huge","type":"balance.available","data":{"pad":""#.to_vec();
    huge.extend(std::iter::repeat_n(b'x', 300 * 1024));
    huge.extend(br#""}}"#);
    let oversized = api.notice_at(&huge, chrono::Utc::now().timestamp()).await;
    assert_eq!(oversized.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(notices().await, 2);
    // A bearer token is no way in.
    let bearer = api
        .send(
            Method::POST,
            "/v1/webhooks/payments",
            Some(&freelancer.token),
            Some(&notice),
            &[],
        )
        .await;
    assert_eq!(bearer.status, StatusCode::BAD_REQUEST);
    api.stop().await;
}

/// The provider refuses the first card refund, then makes them.
struct RefusesFirstRefund {
    inner: PgSimulatedGateway,
    refunds: AtomicU32,
}

#[async_trait::async_trait]
impl PaymentGateway for RefusesFirstRefund {
    async fn charge(&self, req: ChargeRequest) -> Result<ChargeReceipt, GatewayError> {
        self.inner.charge(req).await
    }

    async fn void(&self, key: &str) -> Result<(), GatewayError> {
        self.inner.void(key).await
    }

    async fn onboard(&self, req: OnboardRequest) -> Result<OnboardReceipt, GatewayError> {
        self.inner.onboard(req).await
    }

    async fn transfer(&self, req: TransferRequest) -> Result<TransferReceipt, GatewayError> {
        self.inner.transfer(req).await
    }

    async fn refund(&self, req: RefundRequest) -> Result<RefundReceipt, GatewayError> {
        if self.refunds.fetch_add(1, Ordering::SeqCst) == 0 {
            return Err(GatewayError::Declined("the card issuer refused".to_owned()));
        }
        self.inner.refund(req).await
    }
}

#[sqlx::test(migrator = "gigledger_projections::MIGRATOR")]
async fn a_card_refund_the_provider_refused_is_tried_again_later_and_reaches_the_card(
    pool: PgPool,
) {
    let clock = Arc::new(gigledger_commands::clock::ManualClock::new(
        chrono::Utc::now(),
    ));
    let gateway = Arc::new(RefusesFirstRefund {
        inner: PgSimulatedGateway::new(pool.clone()),
        refunds: AtomicU32::new(0),
    });
    let api = api_with_clock(&pool, gateway.clone(), clock.clone()).await;
    released_and_refunded(&api).await;
    eventually("the refusal recorded", || async {
        (api.events_of_type("RefundFailed").await == 1).then_some(())
    })
    .await;
    let admin = api.user(&[Role::Admin]);
    let failed = eventually("the admins see it", || async {
        let view = api.get(&admin, "/v1/payouts?status=failed").await.json();
        let refunds = view["refunds"].as_array().cloned().unwrap_or_default();
        (refunds.len() == 1).then(|| refunds[0].clone())
    })
    .await;
    assert!(failed["reason"]
        .as_str()
        .is_some_and(|r| r.contains("refused")));
    assert_eq!(api.events_of_type("RefundIssued").await, 0);
    // An hour later the timer tries again, under the same key: the refund reaches the card.
    clock.advance(chrono::Duration::hours(2));
    eventually("the retried refund issued", || async {
        (api.events_of_type("RefundIssued").await == 1).then_some(())
    })
    .await;
    assert_eq!(gateway.refunds.load(Ordering::SeqCst), 2);
    eventually("nothing failed any more", || async {
        let view = api.get(&admin, "/v1/payouts?status=failed").await.json();
        view["refunds"]
            .as_array()
            .is_some_and(Vec::is_empty)
            .then_some(())
    })
    .await;
    eventually("reconcile clean", || async {
        (reconciled(&api).await["ok"] == true).then_some(())
    })
    .await;
    api.stop().await;
}

#[sqlx::test(migrator = "gigledger_projections::MIGRATOR")]
async fn every_payout_route_refuses_no_token_the_wrong_role_and_bad_input_as_problems(
    pool: PgPool,
) {
    let api = TestApi::start_with(pool.clone(), HttpSettings::default(), false).await;
    let freelancer = api.user(&[Role::Freelancer]);
    let client = api.user(&[Role::Client]);
    let admin = api.user(&[Role::Admin]);
    let account = json!({ "provider": "simulated" });
    let payout = json!({ "amount": usd(5_000) });
    let routes: [(Method, &str, Option<&Value>, &User); 5] = [
        (
            Method::PUT,
            "/v1/me/payout-account",
            Some(&account),
            &client,
        ),
        (Method::GET, "/v1/me/wallet", None, &client),
        (Method::POST, "/v1/me/payouts", Some(&payout), &client),
        (Method::GET, "/v1/me/payouts", None, &client),
        (Method::GET, "/v1/payouts", None, &freelancer),
    ];
    let before = api.events_by_users().await;
    for (method, path, body, wrong) in &routes {
        let anonymous = api.send(method.clone(), path, None, *body, &[]).await;
        assert_eq!(
            anonymous.status,
            StatusCode::UNAUTHORIZED,
            "{method} {path}"
        );
        assert_eq!(anonymous.problem_type(), "/problems/unauthorized");
        let refused = api
            .send(method.clone(), path, Some(&wrong.token), *body, &[])
            .await;
        assert_eq!(refused.status, StatusCode::FORBIDDEN, "{method} {path}");
        assert_eq!(refused.problem_type(), "/problems/forbidden");
    }
    for (method, path, user, body, field) in [
        (
            Method::PUT,
            "/v1/me/payout-account",
            &freelancer,
            Some(json!({ "provider": "paypal" })),
            "provider",
        ),
        (
            Method::POST,
            "/v1/me/payouts",
            &freelancer,
            Some(json!({ "amount": { "amount": 5_000, "currency": "XXX" } })),
            "amount.currency",
        ),
        (
            Method::GET,
            "/v1/me/payouts?limit=0",
            &freelancer,
            None,
            "limit",
        ),
        (
            Method::GET,
            "/v1/payouts?status=lost",
            &admin,
            None,
            "status",
        ),
    ] {
        let bad = api
            .send(method.clone(), path, Some(&user.token), body.as_ref(), &[])
            .await;
        assert!(
            bad.status.is_client_error(),
            "{method} {path}: {}",
            bad.status
        );
        assert_eq!(
            bad.error_fields(),
            vec![field],
            "{method} {path}: {:?}",
            bad.json()
        );
    }
    assert_eq!(api.events_by_users().await, before, "nothing written");
    api.stop().await;
}
