//! `GET /v1/me/stream`, as a frontend's `EventSource` uses it, over the real listener with the
//! workers running: a connected client receives the notifications of commands as they are
//! projected; a reconnect with `Last-Event-ID` receives exactly the ones it missed, once each and
//! in order, then live ones; another user's stream receives none of them; `?access_token=` works
//! on this route only and only with a short-lived token; a stream ends when the server begins to
//! shut down. Every wait is bounded by a deadline on a condition (an event arriving, a body
//! ending), never a sleep standing in for an assertion. The body is read as it arrives
//! (`bytes_stream`) and parsed by the small SSE parser below.

use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::{Stream, StreamExt as _};
use gigledger_api::auth::{mint, Authenticator};
use gigledger_api::settings::HttpSettings;
use gigledger_api::state::AppState;
use gigledger_commands::clock::{Clock, SystemClock};
use gigledger_domain::Role;
use gigledger_tests::http::{auth_settings, gig_body, proposal_body, TestApi, User, PATIENCE};
use gigledger_tests::{KillOnDrop, TestDatabase};
use reqwest::StatusCode;
use serde_json::Value;
use sqlx::PgPool;

// ------------------------------------------------------------------------------------------------
// A Server-Sent Events reader (the WHATWG "event stream" interpretation, as much as this route
// uses: `id`, `event`, `data` over several lines, comments, LF or CRLF line ends).

/// One dispatched event.
#[derive(Clone, Debug, Default, PartialEq)]
struct SseEvent {
    id: Option<String>,
    event: Option<String>,
    data: String,
}

impl SseEvent {
    fn json(&self) -> Value {
        serde_json::from_str(&self.data)
            .unwrap_or_else(|e| panic!("data is JSON ({e}): {:?}", self.data))
    }
}

/// What the body ended with.
#[derive(Debug, PartialEq)]
enum End {
    /// The server finished the response.
    Clean,
    /// The connection broke off mid-body.
    Broken(String),
}

type Body = Pin<Box<dyn Stream<Item = reqwest::Result<Vec<u8>>> + Send>>;

struct EventStream {
    body: Body,
    /// Bytes received and not yet split into lines.
    pending: Vec<u8>,
    /// The event being read.
    building: SseEvent,
    /// Whether a `data` line has been read for it (an event without data is not dispatched).
    has_data: bool,
    /// Comment lines seen (heartbeats).
    comments: usize,
    /// The last `id` received, dispatched or not: what a browser sends back as `Last-Event-ID`.
    last_id: Option<String>,
}

impl EventStream {
    fn of(response: reqwest::Response) -> Self {
        assert_eq!(response.status(), StatusCode::OK);
        let content_type = response
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        assert!(
            content_type.starts_with("text/event-stream"),
            "content type {content_type:?}"
        );
        Self {
            body: Box::pin(response.bytes_stream().map(|r| r.map(|b| b.to_vec()))),
            pending: Vec::new(),
            building: SseEvent::default(),
            has_data: false,
            comments: 0,
            last_id: None,
        }
    }

    /// The next line received, without its end; `Err` when the body ended first.
    async fn line(&mut self) -> Result<String, End> {
        loop {
            if let Some(at) = self.pending.iter().position(|b| *b == b'\n') {
                let mut line: Vec<u8> = self.pending.drain(..=at).collect();
                line.pop();
                if line.last() == Some(&b'\r') {
                    line.pop();
                }
                return Ok(String::from_utf8(line).expect("the stream is UTF-8"));
            }
            match self.body.next().await {
                Some(Ok(bytes)) => self.pending.extend_from_slice(&bytes),
                Some(Err(e)) => return Err(End::Broken(e.to_string())),
                None => return Err(End::Clean),
            }
        }
    }

    /// The next event, or how the body ended.
    async fn next(&mut self) -> Result<SseEvent, End> {
        loop {
            let line = self.line().await?;
            if line.is_empty() {
                if self.has_data {
                    self.has_data = false;
                    let mut event = std::mem::take(&mut self.building);
                    if event.data.ends_with('\n') {
                        event.data.pop();
                    }
                    return Ok(event);
                }
                self.building = SseEvent::default();
                continue;
            }
            if line.starts_with(':') {
                self.comments += 1;
                continue;
            }
            let (field, value) = match line.split_once(':') {
                Some((field, value)) => (field, value.strip_prefix(' ').unwrap_or(value)),
                None => (line.as_str(), ""),
            };
            match field {
                "id" => {
                    self.building.id = Some(value.to_owned());
                    self.last_id = Some(value.to_owned());
                }
                "event" => self.building.event = Some(value.to_owned()),
                "data" => {
                    self.building.data.push_str(value);
                    self.building.data.push('\n');
                    self.has_data = true;
                }
                _ => {} // `retry` and unknown fields
            }
        }
    }

    /// The id the stream starts from (sent first, with no data), within the test's patience.
    async fn resume_point(&mut self) -> String {
        let deadline = tokio::time::Instant::now() + PATIENCE;
        while self.last_id.is_none() {
            match tokio::time::timeout_at(deadline, self.line()).await {
                Ok(Ok(line)) => {
                    if let Some(id) = line.strip_prefix("id:") {
                        self.last_id = Some(id.trim_start().to_owned());
                    }
                }
                Ok(Err(end)) => panic!("the stream ended before its resume point: {end:?}"),
                Err(_) => panic!("no resume point within {PATIENCE:?}"),
            }
        }
        self.last_id.clone().unwrap_or_default()
    }

    /// The next event, within the test's patience.
    async fn expect_event(&mut self) -> SseEvent {
        match tokio::time::timeout(PATIENCE, self.next()).await {
            Ok(Ok(event)) => event,
            Ok(Err(end)) => panic!("the stream ended before an event: {end:?}"),
            Err(_) => panic!("no event within {PATIENCE:?}"),
        }
    }

    /// The next notification event, checked for its shape: `event: notification`, `id:` the
    /// notification's position.
    async fn expect_notification(&mut self) -> (String, Value) {
        let event = self.expect_event().await;
        assert_eq!(event.event.as_deref(), Some("notification"), "{event:?}");
        let id = event.id.clone().expect("every event has an id");
        let data = event.json();
        assert_eq!(
            data["position"].as_i64().map(|p| p.to_string()),
            Some(id.clone()),
            "id is the notification's position: {event:?}"
        );
        (id, data)
    }

    /// How the body ends, within the test's patience (after at most a few events).
    async fn expect_end(&mut self) -> End {
        let deadline = tokio::time::Instant::now() + PATIENCE;
        loop {
            match tokio::time::timeout_at(deadline, self.next()).await {
                Ok(Ok(_)) => {}
                Ok(Err(end)) => return end,
                Err(_) => panic!("the stream did not end within {PATIENCE:?}"),
            }
        }
    }
}

// ------------------------------------------------------------------------------------------------
// Connecting and acting.

/// How a connection authenticates.
enum Auth<'a> {
    Bearer(&'a str),
    Query(&'a str),
    None,
}

async fn connect(
    http: &reqwest::Client,
    base: &str,
    path: &str,
    auth: Auth<'_>,
    last_event_id: Option<&str>,
) -> reqwest::Response {
    let mut request = match auth {
        Auth::Query(token) => http
            .get(format!("{base}{path}"))
            .query(&[("access_token", token)]),
        _ => http.get(format!("{base}{path}")),
    };
    if let Auth::Bearer(token) = auth {
        request = request.bearer_auth(token);
    }
    if let Some(id) = last_event_id {
        request = request.header("last-event-id", id);
    }
    request = request.header("accept", "text/event-stream");
    tokio::time::timeout(PATIENCE, request.send())
        .await
        .expect("the answer's head comes at once")
        .expect("the server answers")
}

async fn open(api: &TestApi, user: &User, last_event_id: Option<&str>) -> EventStream {
    EventStream::of(
        connect(
            &api.http,
            &api.base,
            "/v1/me/stream",
            Auth::Bearer(&user.token),
            last_event_id,
        )
        .await,
    )
}

/// The body of a refused request: status, problem type, the fields its `errors` name, detail.
async fn refusal(response: reqwest::Response) -> (StatusCode, String, Vec<String>, String) {
    let status = response.status();
    assert_eq!(
        response
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok()),
        Some("application/problem+json"),
        "{status}"
    );
    let body: Value = response.json().await.expect("a problem document");
    let fields = body["errors"]
        .as_array()
        .map(|errors| {
            errors
                .iter()
                .filter_map(|e| e["field"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    (
        status,
        body["type"].as_str().unwrap_or_default().to_owned(),
        fields,
        body["detail"].as_str().unwrap_or_default().to_owned(),
    )
}

/// A client with a gig of their own.
async fn client_with_gig(api: &TestApi) -> (User, String) {
    let client = api.user(&[Role::Client]);
    let posted = api
        .post(&client, "/v1/gigs", &gig_body("Stream me", 50_000))
        .await;
    assert_eq!(posted.status, StatusCode::CREATED, "{:?}", posted.json());
    let gig = posted.json()["id"].as_str().expect("gig id").to_owned();
    (client, gig)
}

/// A new freelancer proposes on `gig`: its owner is notified (`proposal_received`). Returns the
/// proposal's id and the command's position.
async fn propose(api: &TestApi, gig: &str) -> (String, i64) {
    let freelancer = api.user(&[Role::Freelancer]);
    let proposed = api
        .post(
            &freelancer,
            &format!("/v1/gigs/{gig}/proposals"),
            &proposal_body(&[50_000]),
        )
        .await;
    assert_eq!(
        proposed.status,
        StatusCode::CREATED,
        "{:?}",
        proposed.json()
    );
    let id = proposed.json()["id"]
        .as_str()
        .expect("proposal id")
        .to_owned();
    (id, proposed.position())
}

/// `user`'s notifications once the projection has reached `position`, oldest first.
async fn listed(api: &TestApi, user: &User, position: i64) -> Vec<Value> {
    let answer = api
        .get_at(user, "/v1/me/notifications?limit=100", position)
        .await;
    assert_eq!(answer.status, StatusCode::OK, "{:?}", answer.json());
    let mut items = answer.json()["items"].as_array().expect("items").clone();
    items.reverse();
    items
}

fn now() -> u64 {
    u64::try_from(chrono::Utc::now().timestamp()).expect("after 1970")
}

// ------------------------------------------------------------------------------------------------

#[sqlx::test(migrator = "gigledger_projections::MIGRATOR")]
async fn a_connected_client_receives_the_notification_of_a_command(pool: PgPool) {
    let api = TestApi::start(pool).await;
    let (client, gig) = client_with_gig(&api).await;
    let mut stream = open(&api, &client, None).await;

    let (proposal, position) = propose(&api, &gig).await;
    let (id, data) = stream.expect_notification().await;
    assert_eq!(data["kind"], "proposal_received", "{data}");
    assert_eq!(data["proposal_id"], proposal.as_str());
    assert_eq!(data["user_id"], client.id());
    // The data is the notification exactly as the list gives it.
    let items = listed(&api, &client, position).await;
    assert_eq!(items.len(), 1, "{items:?}");
    assert_eq!(items[0], data);
    assert_eq!(
        items[0]["position"].as_i64().map(|p| p.to_string()),
        Some(id)
    );
    api.stop().await;
}

#[sqlx::test(migrator = "gigledger_projections::MIGRATOR")]
async fn a_reconnect_with_last_event_id_receives_exactly_the_missed_ones_once_in_order_then_live_ones(
    pool: PgPool,
) {
    let api = TestApi::start(pool).await;
    let (client, gig) = client_with_gig(&api).await;
    let mut stream = open(&api, &client, None).await;
    let (first, _) = propose(&api, &gig).await;
    let (last_seen, data) = stream.expect_notification().await;
    assert_eq!(data["proposal_id"], first.as_str());
    drop(stream);

    // Missed while disconnected, and already in the table when the client comes back.
    let mut missed = Vec::new();
    let mut position = 0;
    for _ in 0..3 {
        let (proposal, at) = propose(&api, &gig).await;
        missed.push(proposal);
        position = at;
    }
    assert_eq!(listed(&api, &client, position).await.len(), 4);

    let mut stream = open(&api, &client, Some(&last_seen)).await;
    let mut got = Vec::new();
    let mut ids = vec![last_seen.clone()];
    for _ in 0..missed.len() {
        let (id, data) = stream.expect_notification().await;
        ids.push(id);
        got.push(data["proposal_id"].as_str().expect("a proposal").to_owned());
    }
    assert_eq!(got, missed, "exactly the missed ones, in order");
    // Then a live one, and it is the next event: nothing was sent twice in between.
    let (live, _) = propose(&api, &gig).await;
    let (id, data) = stream.expect_notification().await;
    assert_eq!(data["proposal_id"], live.as_str());
    ids.push(id);
    let unique: std::collections::BTreeSet<&String> = ids.iter().collect();
    assert_eq!(unique.len(), ids.len(), "no id twice: {ids:?}");
    api.stop().await;
}

#[sqlx::test(migrator = "gigledger_projections::MIGRATOR")]
async fn a_client_far_behind_gets_every_missed_notification_page_by_page(pool: PgPool) {
    let api = TestApi::start(pool).await;
    let (client, gig) = client_with_gig(&api).await;
    let count = usize::try_from(gigledger_api::live::PAGE).expect("small") + 20;
    let mut proposals = Vec::new();
    let mut position = 0;
    for _ in 0..count {
        let (proposal, at) = propose(&api, &gig).await;
        proposals.push(proposal);
        position = at;
    }
    assert_eq!(listed(&api, &client, position).await.len(), 100);

    // From the very start of the log (`Last-Event-ID: 0`): more than a page, then live.
    let mut stream = open(&api, &client, Some("0")).await;
    let mut got = Vec::new();
    for _ in 0..count {
        let (_, data) = stream.expect_notification().await;
        got.push(data["proposal_id"].as_str().expect("a proposal").to_owned());
    }
    assert_eq!(got, proposals);
    let (live, _) = propose(&api, &gig).await;
    let (_, data) = stream.expect_notification().await;
    assert_eq!(data["proposal_id"], live.as_str());
    api.stop().await;
}

#[sqlx::test(migrator = "gigledger_projections::MIGRATOR")]
async fn a_client_of_another_user_connected_at_the_same_time_receives_none_of_them(pool: PgPool) {
    let api = TestApi::start(pool).await;
    let (alice, alices_gig) = client_with_gig(&api).await;
    let (bob, bobs_gig) = client_with_gig(&api).await;
    let mut alices = open(&api, &alice, None).await;
    let mut bobs = open(&api, &bob, None).await;

    let mut proposals = Vec::new();
    for _ in 0..3 {
        proposals.push(propose(&api, &alices_gig).await.0);
    }
    for proposal in &proposals {
        let (_, data) = alices.expect_notification().await;
        assert_eq!(data["proposal_id"], proposal.as_str());
        assert_eq!(data["user_id"], alice.id());
    }
    // A notification of Bob's own, written after all of Alice's: a stream sends in the order the
    // projection writes, so had Bob's stream carried any of hers, it would come first.
    let (marker, _) = propose(&api, &bobs_gig).await;
    let (_, data) = bobs.expect_notification().await;
    assert_eq!(
        data["proposal_id"],
        marker.as_str(),
        "Bob's first event: {data}"
    );
    assert_eq!(data["user_id"], bob.id());
    api.stop().await;
}

#[sqlx::test(migrator = "gigledger_projections::MIGRATOR")]
async fn a_short_lived_query_token_opens_the_stream_a_long_lived_one_does_not_nor_on_other_routes(
    pool: PgPool,
) {
    let api = TestApi::start(pool).await;
    let (client, gig) = client_with_gig(&api).await;
    let roles = &client.actor.roles;
    let sub = client.actor.user_id.0;
    let short = mint(&api.auth, sub, roles, 120, now()).expect("a token");
    let long = mint(&api.auth, sub, roles, 3600, now()).expect("a token");
    let (http, base) = (&api.http, api.base.as_str());

    // Short-lived: the stream is the token's user's.
    let mut stream =
        EventStream::of(connect(http, base, "/v1/me/stream", Auth::Query(&short), None).await);
    let (proposal, _) = propose(&api, &gig).await;
    let (_, data) = stream.expect_notification().await;
    assert_eq!(data["proposal_id"], proposal.as_str());
    assert_eq!(data["user_id"], client.id());

    // Long-lived (an hour): refused, saying why.
    let refused = connect(http, base, "/v1/me/stream", Auth::Query(&long), None).await;
    let (status, kind, _, detail) = refusal(refused).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(kind, "/problems/unauthorized");
    assert!(detail.contains("access_token"), "{detail}");
    // Just past the bound (5 minutes and a minute): refused too.
    let over = mint(&api.auth, sub, roles, 360, now()).expect("a token");
    let refused = connect(http, base, "/v1/me/stream", Auth::Query(&over), None).await;
    assert_eq!(refused.status(), StatusCode::UNAUTHORIZED);
    // Expired, and garbage: refused.
    let expired = mint(&api.auth, sub, roles, 60, now() - 3600).expect("a token");
    for token in [expired.as_str(), "not-a-token"] {
        let refused = connect(http, base, "/v1/me/stream", Auth::Query(token), None).await;
        assert_eq!(refused.status(), StatusCode::UNAUTHORIZED, "{token}");
    }

    // Every other route keeps reading the header alone.
    for path in ["/v1/me", "/v1/me/notifications"] {
        let refused = connect(http, base, path, Auth::Query(&short), None).await;
        let (status, kind, _, _) = refusal(refused).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{path}");
        assert_eq!(kind, "/problems/unauthorized", "{path}");
    }
    api.stop().await;
}

#[sqlx::test(migrator = "gigledger_projections::MIGRATOR")]
async fn no_token_is_a_401_problem_and_a_bad_last_event_id_a_400_naming_it(pool: PgPool) {
    let api = TestApi::start_with(pool, HttpSettings::default(), false).await;
    let user = api.user(&[Role::Freelancer]);
    let (http, base) = (&api.http, api.base.as_str());

    let refused = connect(http, base, "/v1/me/stream", Auth::None, None).await;
    let challenge = refused
        .headers()
        .get("www-authenticate")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let (status, kind, _, _) = refusal(refused).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(kind, "/problems/unauthorized");
    assert_eq!(challenge.as_deref(), Some("Bearer"));

    // Not a whole number 0 or more, or no event's position.
    for bad in ["abc", "-1", "1.5", "", "99999999999999999999", "123456789"] {
        let refused = connect(
            http,
            base,
            "/v1/me/stream",
            Auth::Bearer(&user.token),
            Some(bad),
        )
        .await;
        let (status, kind, fields, _) = refusal(refused).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad:?}");
        assert_eq!(kind, "/problems/bad-request", "{bad:?}");
        assert_eq!(fields, ["Last-Event-ID"], "{bad:?}");
    }

    // The document says what the route answers and the query token's rule.
    let doc = api
        .send(reqwest::Method::GET, "/openapi.json", None, None, &[])
        .await
        .json();
    let operation = &doc["paths"]["/v1/me/stream"]["get"];
    assert!(
        operation["responses"]["200"]["content"]
            .get("text/event-stream")
            .is_some(),
        "{operation}"
    );
    let description = operation["description"].as_str().unwrap_or_default();
    assert!(
        description.contains("access_token") && description.contains("5 minutes"),
        "{description}"
    );
    api.stop().await;
}

#[sqlx::test(migrator = "gigledger_projections::MIGRATOR")]
async fn open_streams_end_when_shutdown_begins(pool: PgPool) {
    let auth = auth_settings();
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let state = AppState::new(
        pool.clone(),
        clock.clone(),
        Authenticator::from_settings(&auth).expect("valid auth settings"),
        &HttpSettings::default(),
    );
    let live = state.live.clone();
    let api = TestApi::serve(pool, state, auth, clock, true).await;
    let (client, gig) = client_with_gig(&api).await;
    let mut stream = open(&api, &client, None).await;
    let (proposal, _) = propose(&api, &gig).await;
    let (_, data) = stream.expect_notification().await;
    assert_eq!(data["proposal_id"], proposal.as_str());

    live.close();
    assert_eq!(stream.expect_end().await, End::Clean);
    // One opened after that ends at once too.
    let mut late = open(&api, &client, None).await;
    assert_eq!(late.expect_end().await, End::Clean);
    api.stop().await;
}

/// The real binary: SIGTERM while a stream is open ends the stream (cleanly) and the process,
/// long before the drain bound that graceful shutdown would otherwise wait out for the open
/// response (here a minute: a request time limit of 60 s, plus 2 s).
#[tokio::test]
async fn sigterm_ends_open_streams_and_the_server_exits_without_waiting_for_them() {
    const BIN: &str = env!("CARGO_BIN_EXE_gigledger-under-test");
    let db = TestDatabase::fresh("sse");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let mut server = KillOnDrop::spawn(
        std::process::Command::new(BIN)
            .arg("serve")
            .env("DATABASE_URL", &db.url)
            .env("GIGLEDGER_LISTEN", format!("127.0.0.1:{port}"))
            .env("GIGLEDGER_JWT_SECRET", gigledger_tests::http::SECRET)
            .env("GIGLEDGER_REQUEST_TIMEOUT_MS", "60000")
            .env("GIGLEDGER_POLL_INTERVAL_MS", "50")
            .env("RUST_LOG", "warn")
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null()),
    );
    let base = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::new();
    let deadline = Instant::now() + PATIENCE;
    loop {
        let up = http.get(format!("{base}/healthz")).send().await;
        if up.is_ok_and(|r| r.status().is_success()) {
            break;
        }
        assert!(Instant::now() < deadline, "the server did not come up");
        assert!(
            server.0.try_wait().expect("a status").is_none(),
            "the server exited"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let auth = auth_settings();
    let actor = gigledger_domain::Actor::new(gigledger_domain::UserId::new(), vec![Role::Client]);
    let token = mint(&auth, actor.user_id.0, &actor.roles, 600, now()).expect("a token");
    let mut stream =
        EventStream::of(connect(&http, &base, "/v1/me/stream", Auth::Bearer(&token), None).await);

    let stopping = Instant::now();
    let sent = std::process::Command::new("kill")
        .args(["-TERM", &server.id().to_string()])
        .status()
        .expect("kill runs");
    assert!(sent.success());
    assert_eq!(stream.expect_end().await, End::Clean);
    let exited = loop {
        if let Some(status) = server.0.try_wait().expect("a status") {
            break status;
        }
        assert!(
            stopping.elapsed() < PATIENCE,
            "the server did not exit on SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(exited.success(), "{exited:?}");
    assert!(
        stopping.elapsed() < Duration::from_secs(20),
        "it waited {:?}",
        stopping.elapsed()
    );
    db.drop_now().await;
}

#[sqlx::test(migrator = "gigledger_projections::MIGRATOR")]
async fn a_client_that_reconnects_before_its_first_notification_misses_nothing(pool: PgPool) {
    let api = TestApi::start(pool).await;
    let (client, gig) = client_with_gig(&api).await;
    let mut stream = open(&api, &client, None).await;
    // The stream says where it starts before any notification (an EventSource keeps that id).
    let start = stream.resume_point().await;
    drop(stream);
    // Written while the client was away, before it had received any notification.
    let (proposal, _) = propose(&api, &gig).await;
    let mut stream = open(&api, &client, Some(&start)).await;
    let (_, data) = stream.expect_notification().await;
    assert_eq!(data["proposal_id"], proposal.as_str());
    api.stop().await;
}
