//! The NATS JetStream relay against a real NATS and a real PostgreSQL: what a consumer reading
//! the stream sees after a full flow, after the relay was killed mid-batch, after the bus was
//! down, and that no personal text is ever published. Each test has its own stream and subject
//! prefix on the shared server (127.0.0.1:4222), or a throwaway `nats-server` of its own.

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_nats::jetstream;
use gigledger_api::settings::{RelaySettings, WorkerSettings};
use gigledger_domain::Role;
use gigledger_projections::integration::{envelope_of, Envelope};
use gigledger_projections::log::{read_after, Checkpoint};
use gigledger_projections::relay::{NatsRelay, RelayConfig, CAUSATION_HEADER, CORRELATION_HEADER};
use gigledger_projections::runtime::{run_worker, Leases, LogNotifier, Target, WorkerConfig};
use gigledger_tests::http::{gig_body, proposal_body, test_worker_settings, Hired, TestApi, User};
use gigledger_tests::KillOnDrop;
use rand::Rng;
use reqwest::StatusCode;
use serde_json::{json, Value};
use sqlx::PgPool;

const SHARED_NATS: &str = "nats://127.0.0.1:4222";
const PATIENCE: Duration = Duration::from_secs(60);

/// A stream name and subject prefix no other test uses.
fn own_stream(url: &str) -> RelaySettings {
    let tag = uuid::Uuid::now_v7().simple().to_string();
    RelaySettings {
        nats_url: Some(url.to_owned()),
        stream: format!("T_{tag}"),
        subject_prefix: format!("t{tag}"),
        duplicate_window_secs: 120,
        ack_timeout_ms: 1_000,
        ..RelaySettings::default()
    }
}

fn with_relay(relay: RelaySettings) -> WorkerSettings {
    WorkerSettings {
        relay,
        ..test_worker_settings()
    }
}

/// One stored message as a consumer reads it.
#[derive(Debug)]
struct Received {
    subject: String,
    msg_id: Option<String>,
    correlation: Option<String>,
    causation: Option<String>,
    envelope: Envelope,
    body: String,
}

async fn jetstream_at(url: &str) -> jetstream::Context {
    let client = async_nats::connect(url).await.expect("NATS answers");
    jetstream::new(client)
}

/// Every message of the stream, in stream order (empty while it does not exist or NATS is down).
async fn read_stream(js: &jetstream::Context, stream: &str) -> Vec<Received> {
    let Ok(mut handle) = js.get_stream(stream).await else {
        return Vec::new();
    };
    let Ok(info) = handle.info().await else {
        return Vec::new();
    };
    let (first, last) = (info.state.first_sequence, info.state.last_sequence);
    let mut all = Vec::new();
    if info.state.messages == 0 {
        return all;
    }
    for sequence in first..=last {
        let message = handle
            .get_raw_message(sequence)
            .await
            .expect("a stored message");
        let header = |name: &str| message.headers.get(name).map(|v| v.as_str().to_owned());
        let body = String::from_utf8(message.payload.to_vec()).expect("utf-8");
        all.push(Received {
            subject: message.subject.to_string(),
            msg_id: header("Nats-Msg-Id"),
            correlation: header(CORRELATION_HEADER),
            causation: header(CAUSATION_HEADER),
            envelope: serde_json::from_str(&body).expect("an envelope"),
            body,
        });
    }
    all
}

/// An event's columns as the store holds them: id, position, aggregate type and id, sequence,
/// type, recorded time, correlation and causation ids.
type StoredRow = (
    uuid::Uuid,
    i64,
    String,
    String,
    i64,
    String,
    chrono::DateTime<chrono::Utc>,
    Option<String>,
    Option<String>,
);

/// The store's events as envelopes, in log order.
async fn store_envelopes(pool: &PgPool) -> Vec<Envelope> {
    let mut after = Checkpoint::START;
    let mut all = Vec::new();
    loop {
        let batch = read_after(pool, after, 1_000).await.expect("the log reads");
        let Some(last) = batch.last() else {
            return all;
        };
        after = last.checkpoint();
        all.extend(
            batch
                .iter()
                .filter_map(|e| envelope_of(e).expect("every event decodes")),
        );
    }
}

/// Waits (bounded) until the stream holds exactly the store's events, in log order, and
/// returns what it holds.
async fn wait_until_stream_is_log(
    js: &jetstream::Context,
    pool: &PgPool,
    relay: &RelaySettings,
) -> Vec<Received> {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let expected = store_envelopes(pool).await;
        let received = read_stream(js, &relay.stream).await;
        let seen: Vec<&Envelope> = received.iter().map(|r| &r.envelope).collect();
        let wanted: Vec<&Envelope> = expected.iter().collect();
        if !expected.is_empty() && seen == wanted {
            // Quiet for a moment (process managers may still append): the same again?
            tokio::time::sleep(Duration::from_millis(300)).await;
            if store_envelopes(pool).await.len() == expected.len()
                && read_stream(js, &relay.stream).await.len() == received.len()
            {
                return received;
            }
            continue;
        }
        if Instant::now() >= deadline {
            let ids = |list: &[&Envelope]| list.iter().map(|e| e.position).collect::<Vec<_>>();
            panic!(
                "the stream never became the log: {} stored, {} published\nstore positions: {:?}\nstream positions: {:?}",
                wanted.len(),
                seen.len(),
                ids(&wanted),
                ids(&seen)
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn assert_once_each_in_log_order(received: &[Received], relay: &RelaySettings) {
    let mut ids = std::collections::HashSet::new();
    for r in received {
        assert!(
            ids.insert(r.envelope.event_id),
            "event {} twice",
            r.envelope.event_id
        );
        assert_eq!(
            r.msg_id.as_deref(),
            Some(r.envelope.event_id.to_string().as_str())
        );
        assert_eq!(
            r.subject,
            format!(
                "{}.{}.{}",
                relay.subject_prefix, r.envelope.aggregate_type, r.envelope.event_type
            )
        );
        assert_eq!(r.correlation, r.envelope.correlation_id);
        assert_eq!(r.causation, r.envelope.causation_id);
    }
}

async fn cleanup(js: &jetstream::Context, relay: &RelaySettings) {
    let _ = js.delete_stream(&relay.stream).await;
}

async fn ok(answer: gigledger_tests::http::Answer) -> Value {
    assert!(
        answer.status.is_success(),
        "{} {:?}",
        answer.status,
        answer.json()
    );
    answer.json()
}

/// Fund, submit and approve every milestone of a hire.
async fn complete(api: &TestApi, hired: &Hired) {
    for i in 0..hired.milestones.len() {
        let path = hired.milestone_path(i);
        ok(api
            .post(&hired.client, &format!("{path}/fund"), &json!({}))
            .await)
        .await;
        ok(api
            .post(
                &hired.freelancer,
                &format!("{path}/submit"),
                &json!({ "note": "done" }),
            )
            .await)
        .await;
        ok(api
            .post(&hired.client, &format!("{path}/approve"), &json!({}))
            .await)
        .await;
    }
}

#[sqlx::test(migrator = "gigledger_projections::MIGRATOR")]
async fn a_consumer_sees_every_event_of_a_full_flow_once_in_log_order(pool: PgPool) {
    let relay = own_stream(SHARED_NATS);
    let js = jetstream_at(SHARED_NATS).await;
    let api = TestApi::start_with_workers(pool.clone(), with_relay(relay.clone())).await;

    let hired = api.hire(&[30_000, 20_000]).await;
    complete(&api, &hired).await;

    let received = wait_until_stream_is_log(&js, &pool, &relay).await;
    assert_once_each_in_log_order(&received, &relay);
    // The envelope's fields are the store's own columns (read here with SQL, not through the
    // relay's mapping).
    let rows: Vec<StoredRow> = sqlx::query_as(
        "select event_id, position, aggregate_type, aggregate_id, sequence, event_type,
                    recorded_at, correlation_id, causation_id
               from events order by transaction_id, position",
    )
    .fetch_all(&pool)
    .await
    .expect("the log");
    assert_eq!(rows.len(), received.len());
    for (row, got) in rows.iter().zip(&received) {
        let e = &got.envelope;
        assert_eq!(
            (
                e.event_id,
                e.position,
                e.aggregate_type.as_str(),
                e.aggregate_id.as_str(),
                e.sequence,
                e.recorded_at,
                e.correlation_id.as_deref(),
                e.causation_id.as_deref(),
            ),
            (
                row.0,
                row.1,
                row.2.as_str(),
                row.3.as_str(),
                row.4,
                row.6,
                row.7.as_deref(),
                row.8.as_deref(),
            ),
            "{}",
            row.5
        );
        // The type is the stored one in snake case.
        let snake: String = row
            .5
            .chars()
            .enumerate()
            .fold(String::new(), |mut out, (i, c)| {
                if c.is_uppercase() {
                    if i > 0 {
                        out.push('_');
                    }
                    out.extend(c.to_lowercase());
                } else {
                    out.push(c);
                }
                out
            });
        assert_eq!(e.event_type, snake);
    }
    let types: Vec<&str> = received
        .iter()
        .map(|r| r.envelope.event_type.as_str())
        .collect();
    for expected in [
        "gig_posted",
        "proposal_submitted",
        "proposal_accepted",
        "contract_started",
        "escrow_opened",
        "funds_deposited",
        "milestone_funded",
        "milestone_submitted",
        "milestone_approved",
        "funds_released",
        "earnings_credited",
        "contract_completed",
    ] {
        assert!(types.contains(&expected), "no {expected} in {types:?}");
    }
    api.stop().await;
    cleanup(&js, &relay).await;
}

/// Commands from several users, until told to stop.
fn keep_commanding(
    api: Arc<TestApi>,
    stop: tokio::sync::watch::Receiver<bool>,
) -> tokio::task::JoinHandle<usize> {
    tokio::spawn(async move {
        let mut rounds = 0;
        while !*stop.borrow() {
            let hired = api.hire(&[10_000]).await;
            let path = hired.milestone_path(0);
            ok(api
                .post(&hired.client, &format!("{path}/fund"), &json!({}))
                .await)
            .await;
            rounds += 1;
        }
        rounds
    })
}

async fn relay_worker(
    pool: &PgPool,
    config: RelayConfig,
    stop: tokio::sync::watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()> {
    let relay = NatsRelay::connect(config)
        .await
        .expect("the relay connects");
    let worker = WorkerConfig {
        batch_size: 4,
        poll_interval: Duration::from_millis(20),
        lease_retry: Duration::from_millis(50),
        ..WorkerConfig::default()
    };
    tokio::spawn(run_worker(
        pool.clone(),
        Arc::new(relay),
        Target::live(gigledger_projections::relay::NAME),
        worker,
        Leases::new(pool),
        LogNotifier::polling(),
        stop,
    ))
}

#[sqlx::test(migrator = "gigledger_projections::MIGRATOR")]
async fn a_relay_killed_mid_batch_five_times_still_publishes_each_event_once_in_order(
    pool: PgPool,
) {
    let relay = own_stream(SHARED_NATS);
    let config = relay.config().expect("a relay is configured");
    let js = jetstream_at(SHARED_NATS).await;
    // The API and its workers without a relay: the test runs (and kills) the relay itself.
    let api = Arc::new(TestApi::start(pool.clone()).await);
    let (stop_load, load_stopped) = tokio::sync::watch::channel(false);
    let load = keep_commanding(api.clone(), load_stopped);
    let (_never, running) = tokio::sync::watch::channel(false);

    for _ in 0..5 {
        let worker = relay_worker(&pool, config.clone(), running.clone()).await;
        let alive = rand::thread_rng().gen_range(150..700);
        tokio::time::sleep(Duration::from_millis(alive)).await;
        worker.abort(); // wherever it is: between a publish and its ack, before the checkpoint
        let _ = worker.await;
    }
    let _ = stop_load.send(true);
    let rounds = load.await.expect("the load ran");
    assert!(rounds > 0);

    let last = relay_worker(&pool, config, running.clone()).await;
    let received = wait_until_stream_is_log(&js, &pool, &relay).await;
    assert_once_each_in_log_order(&received, &relay);
    last.abort();
    if let Ok(api) = Arc::try_unwrap(api) {
        api.stop().await;
    }
    cleanup(&js, &relay).await;
}

/// A `nats-server -js` of the test's own, on a free port, with its store in a directory that
/// outlives a restart.
struct ThrowawayNats {
    port: u16,
    dir: std::path::PathBuf,
    process: Option<KillOnDrop>,
}

impl ThrowawayNats {
    fn start() -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let dir = std::env::temp_dir().join(format!("gigledger-nats-{}", uuid::Uuid::now_v7()));
        std::fs::create_dir_all(&dir).expect("a store directory");
        let mut nats = Self {
            port,
            dir,
            process: None,
        };
        nats.resume();
        nats
    }

    fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    fn resume(&mut self) {
        let program = if std::path::Path::new("/usr/sbin/nats-server").exists() {
            "/usr/sbin/nats-server"
        } else {
            "nats-server"
        };
        self.process = Some(KillOnDrop::spawn(
            std::process::Command::new(program)
                .args([
                    "-js",
                    "-a",
                    "127.0.0.1",
                    "-p",
                    &self.port.to_string(),
                    "-sd",
                ])
                .arg(&self.dir)
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null()),
        ));
    }

    fn stop(&mut self) {
        if let Some(mut process) = self.process.take() {
            process.kill();
        }
    }

    async fn wait_until_it_answers(&self) -> jetstream::Context {
        let deadline = Instant::now() + PATIENCE;
        loop {
            if let Ok(client) = async_nats::connect(self.url()).await {
                return jetstream::new(client);
            }
            assert!(
                Instant::now() < deadline,
                "the throwaway nats-server never answered"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for ThrowawayNats {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

async fn relay_report(api: &TestApi) -> (StatusCode, Value) {
    let answer = api
        .http
        .get(format!("{}/readyz", api.base))
        .send()
        .await
        .expect("readyz answers");
    let status = answer.status();
    (status, answer.json().await.unwrap_or(Value::Null))
}

#[sqlx::test(migrator = "gigledger_projections::MIGRATOR")]
async fn commands_succeed_while_nats_is_down_and_everything_arrives_once_after_it_returns(
    pool: PgPool,
) {
    let mut nats = ThrowawayNats::start();
    let js = nats.wait_until_it_answers().await;
    let relay = own_stream(&nats.url());
    let api = TestApi::start_with_workers(pool.clone(), with_relay(relay.clone())).await;
    let first = api.hire(&[10_000]).await;
    complete(&api, &first).await;
    wait_until_stream_is_log(&js, &pool, &relay).await;

    nats.stop();
    let down_since = Instant::now();
    let mut lag_seen = 0;
    let deadline = Instant::now() + PATIENCE;
    while down_since.elapsed() < Duration::from_secs(3) || lag_seen == 0 {
        let hired = api.hire(&[10_000, 5_000]).await; // asserts every command succeeded
        complete(&api, &hired).await;
        let (status, body) = relay_report(&api).await;
        assert_eq!(
            status,
            StatusCode::OK,
            "the bus being down never makes us unready: {body}"
        );
        assert_eq!(body["checks"]["database"], "ok");
        if body["checks"]["relay"]["status"] == "degraded" {
            lag_seen = body["checks"]["relay"]["lag_events"].as_i64().unwrap_or(0);
        }
        assert!(
            Instant::now() < deadline,
            "the relay never reported its lag: {body}"
        );
    }
    assert!(lag_seen > 0);
    let status = gigledger_projections::runtime::statuses(&pool, &[])
        .await
        .expect("statuses")
        .into_iter()
        .find(|s| s.name == gigledger_projections::relay::NAME)
        .expect("the relay has a status row");
    assert!(status.lag_events > 0, "{status:?}");
    assert!(status.last_error.is_some(), "{status:?}");

    nats.resume();
    let js = nats.wait_until_it_answers().await;
    let received = wait_until_stream_is_log(&js, &pool, &relay).await;
    assert_once_each_in_log_order(&received, &relay);
    let deadline = Instant::now() + PATIENCE;
    loop {
        let (_, body) = relay_report(&api).await;
        if body["checks"]["relay"]["status"] == "ok" {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the relay never recovered: {body}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    api.stop().await;
}

const MARKER: &str = "PERSONAL-TEXT-7f3a";

async fn post_json(api: &TestApi, user: &User, path: &str, body: Value) -> Value {
    ok(api.post(user, path, &body).await).await
}

#[sqlx::test(migrator = "gigledger_projections::MIGRATOR")]
async fn no_published_data_carries_a_cover_letter_review_text_or_dispute_reason(pool: PgPool) {
    let relay = own_stream(SHARED_NATS);
    let js = jetstream_at(SHARED_NATS).await;
    let api = TestApi::start_with_workers(pool.clone(), with_relay(relay.clone())).await;
    let client = api.user(&[Role::Client]);
    let freelancer = api.user(&[Role::Freelancer]);
    let admin = api.user(&[Role::Admin]);

    let mut gig = gig_body(&format!("{MARKER} title"), 30_000);
    gig["description"] = json!(format!("{MARKER} description"));
    let gig = post_json(&api, &client, "/v1/gigs", gig).await["id"]
        .as_str()
        .expect("a gig")
        .to_owned();
    let mut proposal = proposal_body(&[20_000, 10_000]);
    proposal["cover_letter"] = json!(format!("{MARKER} cover letter"));
    proposal["milestones"][0]["title"] = json!(format!("{MARKER} milestone"));
    let proposal = post_json(
        &api,
        &freelancer,
        &format!("/v1/gigs/{gig}/proposals"),
        proposal,
    )
    .await["id"]
        .as_str()
        .expect("a proposal")
        .to_owned();
    let accepted = post_json(
        &api,
        &client,
        &format!("/v1/gigs/{gig}/proposals/{proposal}/accept"),
        json!({}),
    )
    .await;
    let contract = accepted["contract_id"]
        .as_str()
        .expect("a contract")
        .to_owned();
    let milestones: Vec<String> = accepted["milestone_ids"]
        .as_array()
        .expect("milestones")
        .iter()
        .map(|m| m.as_str().expect("an id").to_owned())
        .collect();
    let m = |i: usize| format!("/v1/contracts/{contract}/milestones/{}", milestones[i]);

    post_json(&api, &client, &format!("{}/fund", m(0)), json!({})).await;
    let note = json!({ "note": format!("{MARKER} note"), "links": [format!("https://example.com/{MARKER}")] });
    post_json(&api, &freelancer, &format!("{}/submit", m(0)), note.clone()).await;
    post_json(
        &api,
        &client,
        &format!("{}/request-changes", m(0)),
        json!({ "reason": format!("{MARKER} changes") }),
    )
    .await;
    post_json(&api, &freelancer, &format!("{}/submit", m(0)), note).await;
    post_json(&api, &client, &format!("{}/approve", m(0)), json!({})).await;
    post_json(&api, &client, &format!("{}/fund", m(1)), json!({})).await;
    let dispute = post_json(
        &api,
        &client,
        &format!("/v1/contracts/{contract}/disputes"),
        json!({ "milestone_id": milestones[1], "reason": format!("{MARKER} dispute") }),
    )
    .await;
    let dispute = dispute["dispute_id"]
        .as_str()
        .expect("a dispute")
        .to_owned();
    post_json(
        &api,
        &admin,
        &format!("/v1/contracts/{contract}/disputes/{dispute}/resolve"),
        json!({ "release": 4_000, "refund": 6_000 }),
    )
    .await;
    for reviewer in [&client, &freelancer] {
        post_json(
            &api,
            reviewer,
            &format!("/v1/contracts/{contract}/reviews"),
            json!({ "rating": 4, "text": format!("{MARKER} review") }),
        )
        .await;
    }

    let received = wait_until_stream_is_log(&js, &pool, &relay).await;
    let stored: i64 = sqlx::query_scalar("select count(*) from events where payload::text like $1")
        .bind(format!("%{MARKER}%"))
        .fetch_one(&pool)
        .await
        .expect("counted");
    assert!(stored >= 8, "the store keeps the texts ({stored} events)");
    let types: Vec<&str> = received
        .iter()
        .map(|r| r.envelope.event_type.as_str())
        .collect();
    for expected in [
        "proposal_submitted",
        "dispute_opened",
        "review_left",
        "milestone_changes_requested",
    ] {
        assert!(types.contains(&expected), "no {expected} in {types:?}");
    }
    for r in &received {
        assert!(
            !r.body.contains(MARKER),
            "published personal text on {}: {}",
            r.subject,
            r.body
        );
    }
    api.stop().await;
    cleanup(&js, &relay).await;
}

#[tokio::test]
async fn a_cluster_is_a_comma_separated_list_and_a_bad_url_is_refused_at_start() {
    let cluster = RelayConfig::new("nats://127.0.0.1:4222, nats://127.0.0.1:4222");
    assert!(
        NatsRelay::connect(cluster).await.is_ok(),
        "a list of servers connects"
    );
    let bad = NatsRelay::connect(RelayConfig::new("nats://127.0.0.1:notaport")).await;
    let Err(error) = bad else {
        panic!("a URL without a port number is refused");
    };
    assert!(error.to_string().contains("GIGLEDGER_NATS_URL"), "{error}");
}

#[sqlx::test(migrator = "gigledger_projections::MIGRATOR")]
async fn a_batch_stored_but_not_checkpointed_is_not_stored_again_past_the_duplicate_window(
    pool: PgPool,
) {
    let relay = RelaySettings {
        duplicate_window_secs: 1,
        ..own_stream(SHARED_NATS)
    };
    let js = jetstream_at(SHARED_NATS).await;
    let api = TestApi::start_with_workers(pool.clone(), with_relay(relay.clone())).await;
    api.hire(&[30_000]).await;
    wait_until_stream_is_log(&js, &pool, &relay).await;
    api.stop().await;
    let keys: Vec<(i64, i64)> = sqlx::query_as(
        "select transaction_id::text::bigint, position from events
          order by transaction_id, position",
    )
    .fetch_all(&pool)
    .await
    .expect("the log");
    assert_eq!(read_stream(&js, &relay.stream).await.len(), keys.len());
    // The last two events were stored, but the batch's commit was lost: the checkpoint is two
    // events short.
    let back = keys[keys.len() - 3];
    sqlx::query(
        "update projection_checkpoints set transaction_id = $1, position = $2
          where name = 'relay_nats'",
    )
    .bind(back.0)
    .bind(back.1)
    .execute(&pool)
    .await
    .expect("moved back");
    // Past the duplicate window (1 s) JetStream would store a republish again: let it pass.
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    let api = TestApi::start_with_workers(pool.clone(), with_relay(relay.clone())).await;
    let last = keys.last().expect("events").1;
    assert!(
        gigledger_projections::runtime::wait_for_position(&pool, "relay_nats", last, PATIENCE)
            .await
            .expect("the checkpoint reads"),
        "the relay caught up again"
    );
    let received = read_stream(&js, &relay.stream).await;
    assert_once_each_in_log_order(&received, &relay);
    assert_eq!(received.len(), keys.len(), "nothing stored twice");
    api.stop().await;
    cleanup(&js, &relay).await;
}
