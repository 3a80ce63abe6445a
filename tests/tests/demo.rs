//! `gigledger serve --demo`, run as a newcomer runs it: on an empty database it seeds the demo
//! and prints tokens and curl lines that work as printed; on a seeded one it seeds nothing and
//! still prints working lines; with no database at all it starts a PostgreSQL of its own from
//! this machine's server programs, and stops it on exit.

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use gigledger_tests::{KillOnDrop, TestDatabase};
use sqlx::{Connection, PgConnection};

const BIN: &str = env!("CARGO_BIN_EXE_gigledger-under-test");

/// The most a demo may take to print its guide (seeding, migrating, the read models catching
/// up) on a loaded machine. A bound, not a pause: the test goes on as soon as the line is there.
const READY_WITHIN: Duration = Duration::from_secs(240);

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `serve --demo` with no token secret configured, listening on `port`.
fn demo(port: u16) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.args(["serve", "--demo"])
        .env("GIGLEDGER_LISTEN", format!("127.0.0.1:{port}"))
        .env("GIGLEDGER_POLL_INTERVAL_MS", "50")
        .env("RUST_LOG", "warn")
        .env_remove("GIGLEDGER_JWT_SECRET")
        .env_remove("GIGLEDGER_JWT_JWKS_FILE")
        .env_remove("RUST_BACKTRACE")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    cmd
}

/// A running demo and what it printed up to its guide's last line.
struct Demo {
    server: KillOnDrop,
    stdout: String,
    stderr: Arc<Mutex<String>>,
}

impl Demo {
    /// Starts `command` and waits (bounded) for the guide.
    fn start(command: &mut Command) -> Self {
        let mut server = KillOnDrop::spawn(command);
        let stderr = Arc::new(Mutex::new(String::new()));
        let mut err = server.0.stderr.take().unwrap();
        let sink = stderr.clone();
        std::thread::spawn(move || {
            let mut text = String::new();
            let _ = err.read_to_string(&mut text);
            sink.lock().unwrap().push_str(&text);
        });
        let out = server.0.stdout.take().unwrap();
        let (lines, received) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines() {
                let Ok(line) = line else { break };
                if lines.send(line).is_err() {
                    break;
                }
            }
        });
        let deadline = Instant::now() + READY_WITHIN;
        let mut stdout = String::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match received.recv_timeout(left) {
                Ok(line) => {
                    stdout.push_str(&line);
                    stdout.push('\n');
                    if line.starts_with("Stop with Ctrl-C") {
                        break;
                    }
                }
                Err(e) => panic!(
                    "no guide ({e:?}); stdout:\n{stdout}\nstderr:\n{}",
                    stderr.lock().unwrap()
                ),
            }
        }
        Self {
            server,
            stdout,
            stderr,
        }
    }

    /// The token printed for `role`.
    fn token(&self, role: &str) -> String {
        self.stdout
            .lines()
            .map(str::split_whitespace)
            .find_map(|mut words| {
                (words.next() == Some(role))
                    .then(|| words.next())
                    .flatten()
                    .filter(|token| token.starts_with("eyJ"))
                    .map(str::to_owned)
            })
            .unwrap_or_else(|| panic!("a {role} token in:\n{}", self.stdout))
    }

    fn curl_lines(&self) -> Vec<Curl> {
        self.stdout
            .lines()
            .map(str::trim)
            .filter(|l| l.starts_with("curl "))
            .map(Curl::parse)
            .collect()
    }

    /// SIGTERM, as a service manager (or Ctrl-C) stops it; true when it exited cleanly.
    fn terminate(mut self) -> bool {
        let pid = self.server.id().to_string();
        let sent = Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        assert!(sent.success());
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            if let Some(status) = self.server.0.try_wait().unwrap() {
                return status.success();
            }
            assert!(
                Instant::now() < deadline,
                "the demo did not stop on SIGTERM; stderr:\n{}",
                self.stderr.lock().unwrap()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// A printed curl line, read as a shell reads it (single quotes only, as printed).
#[derive(Debug)]
struct Curl {
    method: reqwest::Method,
    url: String,
    headers: Vec<(String, String)>,
    body: Option<String>,
}

impl Curl {
    fn parse(line: &str) -> Self {
        let words = shell_words(line);
        assert_eq!(words[0], "curl", "{line}");
        let mut curl = Self {
            method: reqwest::Method::GET,
            url: String::new(),
            headers: Vec::new(),
            body: None,
        };
        let mut words = words.into_iter().skip(1);
        while let Some(word) = words.next() {
            match word.as_str() {
                "-sS" | "-s" | "-S" => {}
                "-X" => curl.method = words.next().unwrap().parse().unwrap(),
                "-H" => {
                    let header = words.next().unwrap();
                    let (name, value) = header.split_once(": ").unwrap();
                    curl.headers.push((name.to_owned(), value.to_owned()));
                }
                "-d" => curl.body = words.next(),
                url if url.starts_with("http://") => curl.url = url.to_owned(),
                other => panic!("an unexpected curl argument {other:?} in {line}"),
            }
        }
        assert!(!curl.url.is_empty(), "{line}");
        curl
    }

    async fn send(&self, client: &reqwest::Client) -> reqwest::Response {
        let mut request = client.request(self.method.clone(), &self.url);
        for (name, value) in &self.headers {
            request = request.header(name, value);
        }
        if let Some(body) = &self.body {
            request = request.body(body.clone());
        }
        request.send().await.unwrap()
    }
}

fn shell_words(line: &str) -> Vec<String> {
    let (mut words, mut word, mut quoted, mut started) = (Vec::new(), String::new(), false, false);
    for c in line.chars() {
        match c {
            '\'' => {
                quoted = !quoted;
                started = true;
            }
            c if c.is_whitespace() && !quoted => {
                if started {
                    words.push(std::mem::take(&mut word));
                    started = false;
                }
            }
            c => {
                word.push(c);
                started = true;
            }
        }
    }
    assert!(!quoted, "balanced quotes in {line}");
    if started {
        words.push(word);
    }
    words
}

/// Runs every printed curl line and asserts each answers 2xx with a body; answers the bodies.
async fn run_the_curl_lines(demo: &Demo) -> Vec<serde_json::Value> {
    let lines = demo.curl_lines();
    assert!(lines.len() >= 3, "three curl lines:\n{}", demo.stdout);
    assert!(lines[0].url.contains("/v1/gigs?q="), "{:?}", lines[0]);
    assert!(lines[1].url.contains("/v1/contracts/"), "{:?}", lines[1]);
    let approve = lines.last().unwrap();
    assert!(approve.url.ends_with("/approve"), "{approve:?}");
    assert!(approve
        .headers
        .iter()
        .any(|(name, _)| name == "Idempotency-Key"));
    let client = reqwest::Client::new();
    let mut bodies = Vec::new();
    for line in &lines {
        let response = line.send(&client).await;
        let status = response.status();
        let text = response.text().await.unwrap();
        assert!(status.is_success(), "{line:?}: {status} {text}");
        let body: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert!(
            body.as_object().is_some_and(|o| !o.is_empty()),
            "{line:?}: {text}"
        );
        bodies.push(body);
    }
    // The gig board found something, and the contract is the client's, with milestones.
    assert!(
        bodies[0]["items"].as_array().is_some_and(|a| !a.is_empty()),
        "{}",
        bodies[0]
    );
    assert!(
        bodies[1]["milestones"]
            .as_array()
            .is_some_and(|a| !a.is_empty()),
        "{}",
        bodies[1]
    );
    // Run twice, the approve line replays its first answer.
    let again = approve.send(&client).await;
    assert!(again.status().is_success(), "{}", again.status());
    assert_eq!(
        again
            .headers()
            .get("idempotent-replayed")
            .map(|v| v.to_str().unwrap().to_owned()),
        Some("true".to_owned())
    );
    let replayed: serde_json::Value = again.json().await.unwrap();
    assert_eq!(&replayed, bodies.last().unwrap());
    bodies
}

/// Waits until the demo's money has left: payouts paid, the one to a suspended account failed,
/// every refund back on its card; then the ledger and the provider agree.
async fn money_leaves(url: &str) {
    let mut conn = PgConnection::connect(url).await.unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let (paid, failed, refunded, to_card): (i64, i64, i64, i64) = sqlx::query_as(
            "select count(*) filter (where event_type = 'PayoutPaid'),
                    count(*) filter (where event_type = 'PayoutFailed'),
                    count(*) filter (where event_type = 'FundsRefunded'),
                    count(*) filter (where event_type = 'RefundIssued')
               from events",
        )
        .fetch_one(&mut conn)
        .await
        .unwrap();
        if paid >= 1 && failed == 1 && refunded >= 1 && to_card == refunded {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "paid {paid}, failed {failed}, refunded {refunded}, to the card {to_card}"
        );
        // Pacing between polls; the condition above is the assertion.
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let pool = sqlx::PgPool::connect(url).await.unwrap();
    let report = gigledger_commands::reconcile::reconcile(&pool)
        .await
        .unwrap();
    assert!(report.ok(), "{:?}", report.mismatches);
    pool.close().await;
}

async fn event_count(url: &str) -> i64 {
    let mut conn = PgConnection::connect(url).await.unwrap();
    sqlx::query_scalar("select count(*) from events")
        .fetch_one(&mut conn)
        .await
        .unwrap()
}

#[tokio::test]
async fn the_demo_seeds_an_empty_database_and_its_printed_curl_lines_work_then_and_on_a_rerun() {
    let db = TestDatabase::fresh("demo");

    let first = Demo::start(demo(free_port()).env("DATABASE_URL", &db.url));
    assert!(first.stdout.contains("seeded just now"), "{}", first.stdout);
    assert!(
        first.stdout.contains("random secret"),
        "says the secret was made up:\n{}",
        first.stdout
    );
    for role in ["client", "freelancer", "admin", "auditor", "analyst"] {
        first.token(role);
    }
    let seeded = event_count(&db.url).await;
    assert!(
        seeded > 1_000,
        "a marketplace worth looking at: {seeded} events"
    );
    run_the_curl_lines(&first).await;
    money_leaves(&db.url).await;
    let first_approved = first.curl_lines().last().unwrap().url.clone();
    assert!(first.terminate(), "a clean exit on SIGTERM");

    // Seeded already: nothing is written, and the lines still work (on the next milestone
    // awaiting approval, the first one being approved now).
    let before = event_count(&db.url).await;
    let second = Demo::start(demo(free_port()).env("DATABASE_URL", &db.url));
    assert!(
        second.stdout.contains("seeded by an earlier run"),
        "{}",
        second.stdout
    );
    assert_eq!(event_count(&db.url).await, before, "a re-run seeds nothing");
    assert_ne!(
        second.curl_lines().last().unwrap().url,
        first_approved,
        "the approve line points at a milestone still awaiting approval"
    );
    run_the_curl_lines(&second).await;
    drop(second);

    db.drop_now().await;
}

/// A data directory of the test's own; on drop, any PostgreSQL still running in it is stopped
/// (immediately) and the directory removed, however the test ends.
struct DataDir(PathBuf);

impl DataDir {
    fn new() -> Self {
        let dir = std::env::temp_dir().join(format!("gigledger-demo-{}", uuid::Uuid::now_v7()));
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }

    /// The clusters' data directories under `pg/`.
    fn clusters(&self) -> Vec<PathBuf> {
        std::fs::read_dir(self.0.join("pg"))
            .map(|entries| {
                entries
                    .filter_map(Result::ok)
                    .map(|e| e.path().join("data"))
                    .filter(|d| d.join("PG_VERSION").exists())
                    .collect()
            })
            .unwrap_or_default()
    }
}

fn postmaster_running(data: &Path) -> bool {
    data.join("postmaster.pid").exists()
}

impl Drop for DataDir {
    fn drop(&mut self) {
        for data in self.clusters() {
            let pid = std::fs::read_to_string(data.join("postmaster.pid")).ok();
            if let Some(pid) = pid.as_deref().and_then(|text| text.lines().next()) {
                // SIGQUIT: PostgreSQL's immediate shutdown.
                let _ = Command::new("kill").args(["-QUIT", pid.trim()]).status();
            }
        }
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[tokio::test]
async fn without_a_usable_database_the_demo_starts_a_private_postgresql_reuses_it_and_stops_it_on_exit(
) {
    let data = DataDir::new();
    // The "default address": a port nothing listens on.
    let nowhere = format!("postgres://postgres@127.0.0.1:{}/gigledger", free_port());
    let private = |port: u16| {
        let mut cmd = demo(port);
        cmd.env_remove("DATABASE_URL")
            .env("GIGLEDGER_DEMO_DATABASE_URL", &nowhere)
            .env("GIGLEDGER_DATA_DIR", &data.0);
        cmd
    };

    let first = Demo::start(&mut private(free_port()));
    assert!(
        first.stdout.contains("started a private PostgreSQL"),
        "{}",
        first.stdout
    );
    assert!(
        first.stdout.contains(&data.0.display().to_string()),
        "says where: {}",
        first.stdout
    );
    assert!(first.stdout.contains("seeded just now"), "{}", first.stdout);
    let clusters = data.clusters();
    assert_eq!(clusters.len(), 1, "one cluster under pg/");
    assert!(postmaster_running(&clusters[0]));
    let client = reqwest::Client::new();
    let board = first.curl_lines()[0].send(&client).await;
    assert!(board.status().is_success(), "{}", board.status());
    assert!(first.terminate(), "a clean exit on SIGTERM");
    assert!(
        !postmaster_running(&clusters[0]),
        "the private PostgreSQL stopped with the demo"
    );

    // The next run reuses the cluster and its data. This time a server answers at the default
    // address but refuses its user (as a distribution's PostgreSQL refuses `postgres` without a
    // password): a private one all the same.
    let mut refusing = url::Url::parse(&gigledger_tests::admin_url()).unwrap();
    refusing.set_username("gigledger_no_such_role").unwrap();
    let second =
        Demo::start(private(free_port()).env("GIGLEDGER_DEMO_DATABASE_URL", refusing.as_str()));
    assert!(
        second.stdout.contains("refuses the user"),
        "{}",
        second.stdout
    );
    assert!(
        second.stdout.contains("seeded by an earlier run"),
        "{}",
        second.stdout
    );
    assert_eq!(data.clusters(), clusters);
    run_the_curl_lines(&second).await;
    assert!(second.terminate());
    assert!(!postmaster_running(&clusters[0]));
}
