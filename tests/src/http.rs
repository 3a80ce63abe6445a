//! The real router served on a loopback port, over a test database, with the workers running: the
//! fixture of the HTTP black-box tests. Requests go through a real TCP connection, as a frontend's
//! would.

use std::sync::Arc;
use std::time::Duration;

use gigledger_api::auth::{mint, Authenticator};
use gigledger_api::settings::{AuthSettings, HttpSettings, Secret, WorkerSettings};
use gigledger_api::state::AppState;
use gigledger_api::workers::Workers;
use gigledger_commands::clock::{Clock, SystemClock};
use gigledger_domain::{Actor, Role, UserId};
use reqwest::header::HeaderMap;
use reqwest::{Method, StatusCode};
use serde_json::Value;
use sqlx::PgPool;
use tokio::task::JoinHandle;

/// The HS256 secret the test servers sign and verify with.
pub const SECRET: &str = "a-test-secret-of-at-least-thirty-two-bytes!";

/// How long a test waits for a condition (a worker catching up) before it fails.
pub const PATIENCE: Duration = Duration::from_secs(30);

/// A running API.
pub struct TestApi {
    pub base: String,
    pub pool: PgPool,
    pub http: reqwest::Client,
    pub auth: AuthSettings,
    server: JoinHandle<()>,
    workers: Option<Workers>,
    deliveries: Option<JoinHandle<()>>,
}

/// The secret the tests' payment provider signs its notices with.
pub const WEBHOOK_SECRET: &str = "whsec_gigledger_tests_0123456789abcdef";

/// An answer, read whole.
#[derive(Debug)]
pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub bytes: Vec<u8>,
}

impl Answer {
    /// The body as JSON (`Value::Null` when it is not JSON).
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.bytes).unwrap_or(Value::Null)
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The `position` a command answered.
    pub fn position(&self) -> i64 {
        self.json()["position"]
            .as_i64()
            .unwrap_or_else(|| panic!("no position in {:?}", self.json()))
    }

    /// The problem `type` of an error answer, after checking it is a problem document.
    pub fn problem_type(&self) -> String {
        assert_eq!(
            self.header("content-type"),
            Some("application/problem+json"),
            "not a problem: {} {}",
            self.status,
            String::from_utf8_lossy(&self.bytes)
        );
        let body = self.json();
        assert_eq!(
            body["status"].as_u64(),
            Some(u64::from(self.status.as_u16()))
        );
        assert!(body["title"].is_string(), "a problem has a title: {body}");
        body["type"].as_str().unwrap_or_default().to_owned()
    }

    /// The fields an error answer's `errors` name.
    pub fn error_fields(&self) -> Vec<String> {
        self.json()["errors"]
            .as_array()
            .map(|errors| {
                errors
                    .iter()
                    .filter_map(|e| e["field"].as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default()
    }
}

/// The worker settings of the test servers: quick polling.
pub fn test_worker_settings() -> WorkerSettings {
    WorkerSettings {
        poll_interval_ms: 50,
        ..WorkerSettings::default()
    }
}

/// The auth settings of the test servers.
pub fn auth_settings() -> AuthSettings {
    AuthSettings {
        jwt_secret: Some(SECRET.parse::<Secret>().expect("a secret")),
        ..AuthSettings::default()
    }
}

impl TestApi {
    /// The API with the default limits and its workers.
    pub async fn start(pool: PgPool) -> Self {
        Self::start_with(pool, HttpSettings::default(), true).await
    }

    /// The API with these limits, with or without workers.
    pub async fn start_with(pool: PgPool, mut http: HttpSettings, workers: bool) -> Self {
        if http.payments_webhook_secret.is_none() {
            http.payments_webhook_secret = Some(WEBHOOK_SECRET.to_owned());
        }
        let auth = auth_settings();
        let clock: Arc<dyn Clock> = Arc::new(SystemClock);
        let state = AppState::new(
            pool.clone(),
            clock.clone(),
            Authenticator::from_settings(&auth).expect("valid auth settings"),
            &http,
        );
        Self::serve(pool, state, auth, clock, workers).await
    }

    /// The API over a state the test built (another gateway, say).
    pub async fn serve(
        pool: PgPool,
        state: AppState,
        auth: AuthSettings,
        clock: Arc<dyn Clock>,
        workers: bool,
    ) -> Self {
        let settings = workers.then(test_worker_settings);
        Self::serve_with_workers(pool, state, auth, clock, settings).await
    }

    /// The API with the default limits and workers run with these settings (a relay, say).
    pub async fn start_with_workers(pool: PgPool, settings: WorkerSettings) -> Self {
        let http = HttpSettings {
            payments_webhook_secret: Some(WEBHOOK_SECRET.to_owned()),
            ..HttpSettings::default()
        };
        let auth = auth_settings();
        let clock: Arc<dyn Clock> = Arc::new(SystemClock);
        let state = AppState::new(
            pool.clone(),
            clock.clone(),
            Authenticator::from_settings(&auth).expect("valid auth settings"),
            &http,
        );
        Self::serve_with_workers(pool, state, auth, clock, Some(settings)).await
    }

    /// The API over a state the test built, with workers run with `settings` when given.
    pub async fn serve_with_workers(
        pool: PgPool,
        state: AppState,
        auth: AuthSettings,
        clock: Arc<dyn Clock>,
        settings: Option<WorkerSettings>,
    ) -> Self {
        let workers = if let Some(settings) = settings {
            Some(
                Workers::start(&pool, &state.services, clock, &settings)
                    .await
                    .expect("workers start"),
            )
        } else {
            None
        };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("a loopback port");
        let base = format!("http://{}", listener.local_addr().expect("an address"));
        // The simulated provider's notices, delivered as `serve` delivers them (with the workers:
        // a test without workers drives every step itself).
        let deliveries = if workers.is_some() {
            gigledger_api::notices::spawn_simulated_deliveries(state.clone())
        } else {
            None
        };
        let app = gigledger_api::app::app(state);
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self {
            base,
            pool,
            http: reqwest::Client::new(),
            auth,
            server,
            workers,
            deliveries,
        }
    }

    /// Stops the server and the workers.
    pub async fn stop(mut self) {
        self.server.abort();
        if let Some(deliveries) = self.deliveries.take() {
            deliveries.abort();
        }
        if let Some(workers) = self.workers.take() {
            workers.stop().await;
        }
    }

    /// A token for `actor`, valid for an hour.
    pub fn token(&self, actor: &Actor) -> String {
        let now = u64::try_from(chrono::Utc::now().timestamp()).expect("after 1970");
        mint(&self.auth, actor.user_id.0, &actor.roles, 3600, now).expect("a token")
    }

    /// A new user with these roles, and their token.
    pub fn user(&self, roles: &[Role]) -> User {
        let actor = Actor::new(UserId::new(), roles.to_vec());
        User {
            token: self.token(&actor),
            actor,
        }
    }

    /// Sends a request: `token` as bearer when given, `body` as JSON when given, extra headers.
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<&Value>,
        headers: &[(&str, &str)],
    ) -> Answer {
        let mut request = self.http.request(method, format!("{}{path}", self.base));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(body);
        }
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let response = request.send().await.expect("the server answers");
        Answer {
            status: response.status(),
            headers: response.headers().clone(),
            bytes: response.bytes().await.expect("a body").to_vec(),
        }
    }

    /// Sends raw bytes with a content type.
    pub async fn send_raw(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        content_type: &str,
        body: Vec<u8>,
    ) -> Answer {
        let mut request = self
            .http
            .request(method, format!("{}{path}", self.base))
            .header("content-type", content_type)
            .body(body);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let response = request.send().await.expect("the server answers");
        Answer {
            status: response.status(),
            headers: response.headers().clone(),
            bytes: response.bytes().await.expect("a body").to_vec(),
        }
    }

    pub async fn post(&self, user: &User, path: &str, body: &Value) -> Answer {
        self.send(Method::POST, path, Some(&user.token), Some(body), &[])
            .await
    }

    /// A GET that waits (server side) for the read models to reach `min_position`.
    pub async fn get_at(&self, user: &User, path: &str, min_position: i64) -> Answer {
        let position = min_position.to_string();
        self.send(
            Method::GET,
            path,
            Some(&user.token),
            None,
            &[("x-min-position", position.as_str())],
        )
        .await
    }

    pub async fn get(&self, user: &User, path: &str) -> Answer {
        self.send(Method::GET, path, Some(&user.token), None, &[])
            .await
    }

    /// Posts a provider notice signed with [`WEBHOOK_SECRET`] at `timestamp` (unix seconds).
    pub async fn notice_at(&self, body: &[u8], timestamp: i64) -> Answer {
        let signature =
            gigledger_commands::notice::sign(WEBHOOK_SECRET.as_bytes(), timestamp, body);
        let response = self
            .http
            .post(format!("{}/v1/webhooks/payments", self.base))
            .header("content-type", "application/json")
            .header(gigledger_commands::notice::SIGNATURE_HEADER, signature)
            .body(body.to_vec())
            .send()
            .await
            .expect("the server answers");
        Answer {
            status: response.status(),
            headers: response.headers().clone(),
            bytes: response.bytes().await.expect("a body").to_vec(),
        }
    }

    /// Posts a provider notice signed now.
    pub async fn notice(&self, body: &Value) -> Answer {
        let bytes = serde_json::to_vec(body).expect("JSON");
        self.notice_at(&bytes, chrono::Utc::now().timestamp()).await
    }

    /// How many events users' commands wrote (not the platform's own: process managers run in
    /// the background, a card refund after a cancellation, say, and would make "nothing was
    /// written" checks of a refused request race them).
    pub async fn events_by_users(&self) -> i64 {
        sqlx::query_scalar("select count(*) from events where metadata->>'actor_role' <> 'system'")
            .fetch_one(&self.pool)
            .await
            .expect("events counted")
    }

    /// How many events the store holds.
    pub async fn event_count(&self) -> i64 {
        sqlx::query_scalar("select count(*) from events")
            .fetch_one(&self.pool)
            .await
            .expect("events counted")
    }
}

/// A user of a test and their bearer token.
#[derive(Clone, Debug)]
pub struct User {
    pub actor: Actor,
    pub token: String,
}

impl User {
    pub fn id(&self) -> String {
        self.actor.user_id.to_string()
    }
}

/// A fixed-budget gig body in USD.
pub fn gig_body(title: &str, amount: i64) -> Value {
    serde_json::json!({
        "title": title,
        "description": format!("{title}: the whole job, described."),
        "skills": ["rust", "postgresql"],
        "budget": { "kind": "fixed", "amount": { "amount": amount, "currency": "USD" } },
    })
}

/// A proposal body with milestones of these USD amounts.
pub fn proposal_body(amounts: &[i64]) -> Value {
    let milestones: Vec<Value> = amounts
        .iter()
        .enumerate()
        .map(|(i, amount)| {
            serde_json::json!({
                "title": format!("Milestone {}", i + 1),
                "amount": { "amount": amount, "currency": "USD" },
            })
        })
        .collect();
    serde_json::json!({ "cover_letter": "I have done this many times.", "milestones": milestones })
}

/// A gig with an accepted proposal, set up over HTTP.
pub struct Hired {
    pub client: User,
    pub freelancer: User,
    pub gig: String,
    pub contract: String,
    pub milestones: Vec<String>,
    /// The position of the acceptance (covering the contract and its escrow).
    pub position: i64,
}

impl Hired {
    pub fn contract_path(&self) -> String {
        format!("/v1/contracts/{}", self.contract)
    }

    pub fn milestone_path(&self, i: usize) -> String {
        format!(
            "/v1/contracts/{}/milestones/{}",
            self.contract, self.milestones[i]
        )
    }
}

impl TestApi {
    /// Posts a gig, has a freelancer propose milestones of these USD amounts, and accepts.
    pub async fn hire(&self, amounts: &[i64]) -> Hired {
        let client = self.user(&[Role::Client]);
        let freelancer = self.user(&[Role::Freelancer]);
        let total = amounts.iter().sum();
        let posted = self
            .post(&client, "/v1/gigs", &gig_body("A gig", total))
            .await;
        assert_eq!(posted.status, StatusCode::CREATED, "{:?}", posted.json());
        let gig = posted.json()["id"].as_str().expect("gig id").to_owned();
        let proposed = self
            .post(
                &freelancer,
                &format!("/v1/gigs/{gig}/proposals"),
                &proposal_body(amounts),
            )
            .await;
        assert_eq!(
            proposed.status,
            StatusCode::CREATED,
            "{:?}",
            proposed.json()
        );
        let proposal = proposed.json()["id"]
            .as_str()
            .expect("proposal id")
            .to_owned();
        let accepted = self
            .post(
                &client,
                &format!("/v1/gigs/{gig}/proposals/{proposal}/accept"),
                &serde_json::json!({}),
            )
            .await;
        assert_eq!(
            accepted.status,
            StatusCode::CREATED,
            "{:?}",
            accepted.json()
        );
        let body = accepted.json();
        Hired {
            client,
            freelancer,
            gig,
            contract: body["contract_id"].as_str().expect("contract").to_owned(),
            milestones: body["milestone_ids"]
                .as_array()
                .expect("milestones")
                .iter()
                .map(|m| m.as_str().expect("id").to_owned())
                .collect(),
            position: accepted.position(),
        }
    }

    /// How many events of this type the store holds.
    pub async fn events_of_type(&self, event_type: &str) -> i64 {
        sqlx::query_scalar("select count(*) from events where event_type = $1")
            .bind(event_type)
            .fetch_one(&self.pool)
            .await
            .expect("events counted")
    }

    /// How many charges the simulated provider holds.
    pub async fn charges(&self) -> i64 {
        sqlx::query_scalar("select count(*) from provider.charges")
            .fetch_one(&self.pool)
            .await
            .expect("charges counted")
    }
}

/// Asserts that every currency's journal lines (the escrows' and the wallets') sum to zero.
pub async fn assert_trial_balance_is_zero(pool: &PgPool) {
    let balances = gigledger_projections::read::ledger::trial_balance(pool, None)
        .await
        .expect("the trial balance");
    let mut per_currency = std::collections::BTreeMap::<String, i128>::new();
    for b in &balances {
        *per_currency.entry(b.currency.clone()).or_default() += b.balance;
    }
    assert!(per_currency.values().all(|sum| *sum == 0), "{balances:?}");
}
