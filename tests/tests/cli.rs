//! The `gigledger` binary, started as a user starts it, against the real PostgreSQL.

use std::process::{Command, Output, Stdio};
use std::time::Duration;

use gigledger_tests::{admin_url, KillOnDrop, TestDatabase};
use sqlx::{Connection, PgConnection};

const BIN: &str = env!("CARGO_BIN_EXE_gigledger-under-test");

/// A token secret for the tests that serve (`serve` without one refuses to start).
const SECRET: &str = "a-test-secret-of-at-least-thirty-two-bytes";

fn gigledger(args: &[&str], database_url: &str) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.args(args)
        .env("DATABASE_URL", database_url)
        .env("GIGLEDGER_JWT_SECRET", SECRET)
        .env("RUST_LOG", "warn")
        .env_remove("RUST_BACKTRACE");
    cmd
}

fn run(args: &[&str], database_url: &str) -> Output {
    gigledger(args, database_url).output().unwrap()
}

async fn applied_migrations(url: &str) -> Vec<(i64, String)> {
    let mut conn = PgConnection::connect(url).await.unwrap();
    sqlx::query_as("select version, installed_on::text from _sqlx_migrations order by version")
        .fetch_all(&mut conn)
        .await
        .unwrap()
}

#[tokio::test]
async fn migrate_creates_the_database_and_a_second_run_changes_nothing() {
    let db = TestDatabase::fresh("cli");
    let url = db.url.clone();

    let first = run(&["migrate"], &url);
    assert!(
        first.status.success(),
        "{}",
        String::from_utf8_lossy(&first.stderr)
    );
    let after_first = applied_migrations(&url).await;
    assert!(!after_first.is_empty());

    let second = run(&["migrate"], &url);
    assert!(
        second.status.success(),
        "{}",
        String::from_utf8_lossy(&second.stderr)
    );
    assert_eq!(
        applied_migrations(&url).await,
        after_first,
        "nothing re-applied"
    );

    db.drop_now().await;
}

#[tokio::test]
async fn an_unreachable_database_is_reported_with_the_url_tried_and_how_to_change_it() {
    let url = "postgres://postgres:secret@127.0.0.1:1/nowhere";
    let out = run(&["migrate"], url);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("127.0.0.1:1/nowhere"), "{stderr}");
    assert!(stderr.contains("DATABASE_URL"), "{stderr}");
    assert!(
        !stderr.contains("secret"),
        "the password is not printed: {stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[test]
fn help_says_what_gigledger_is() {
    let out = Command::new(BIN).arg("--help").output().unwrap();
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    assert!(
        help.starts_with("gigledger: an event-sourced backend for freelance marketplaces"),
        "{help}"
    );
    assert!(
        !help.contains("HTTP server, auth, OpenAPI"),
        "not the crate's description: {help}"
    );
    let short = Command::new(BIN).arg("-h").output().unwrap();
    assert!(String::from_utf8_lossy(&short.stdout)
        .starts_with("gigledger: an event-sourced backend for freelance marketplaces"));
}

#[test]
fn a_malformed_database_url_is_reported_as_malformed_with_the_reason() {
    for (url, reason) in [
        ("postgres//x", "scheme"),
        ("http://x/db", "\"http\""),
        ("postgres://u:secret@127.0.0.1:99999/db", "port"),
        ("postgres://u@127.0.0.1:port/db", "port"),
    ] {
        let out = run(&["migrate"], url);
        assert_eq!(out.status.code(), Some(1), "{url}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains("is malformed"), "{url}: {stderr}");
        assert!(stderr.contains(reason), "{url}: {stderr}");
        assert!(!stderr.contains("Is it running"), "{url}: {stderr}");
        assert!(!stderr.contains("secret"), "{url}: {stderr}");
        assert!(!stderr.contains("panicked"), "{url}: {stderr}");
    }
}

#[test]
fn serve_without_a_token_secret_stops_at_once_and_says_which_setting_is_missing() {
    // Checked before the database: this one is unreachable, and not what is reported.
    let out = gigledger(&["serve"], "postgres://postgres@127.0.0.1:1/nowhere")
        .env_remove("GIGLEDGER_JWT_SECRET")
        .env_remove("GIGLEDGER_JWT_JWKS_FILE")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("GIGLEDGER_JWT_SECRET"), "{stderr}");
    assert!(stderr.contains("--demo"), "{stderr}");
    assert!(!stderr.contains("cannot reach"), "{stderr}");
}

#[test]
fn the_demo_without_postgresql_server_programs_names_the_package_to_install() {
    let data = std::env::temp_dir().join(format!("gigledger-cli-{}", uuid::Uuid::now_v7()));
    let out = Command::new(BIN)
        .args(["serve", "--demo"])
        .env_remove("DATABASE_URL")
        .env(
            "GIGLEDGER_DEMO_DATABASE_URL",
            format!("postgres://postgres@127.0.0.1:{}/gigledger", free_port()),
        )
        .env("GIGLEDGER_PG_BIN", "/nonexistent/postgresql/bin")
        .env("GIGLEDGER_DATA_DIR", &data)
        .env("RUST_LOG", "warn")
        .output()
        .unwrap();
    let _ = std::fs::remove_dir_all(&data);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("apt-get install postgresql"),
        "names the package: {stderr}"
    );
    assert!(stderr.contains("brew install postgresql@16"), "{stderr}");
    assert!(stderr.contains("/nonexistent/postgresql/bin"), "{stderr}");
    assert!(stderr.contains("DATABASE_URL"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[tokio::test]
async fn serve_prepares_its_database_and_answers_health_and_readiness() {
    let db = TestDatabase::fresh("cli");
    let url = db.url.clone();
    let port = free_port();
    let server = KillOnDrop::spawn(
        gigledger(&["serve"], &url)
            .env("GIGLEDGER_LISTEN", format!("127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null()),
    );

    let client = reqwest::Client::new();
    let base = format!("http://127.0.0.1:{port}");
    let mut health = None;
    for _ in 0..1200 {
        if let Ok(response) = client.get(format!("{base}/healthz")).send().await {
            health = Some(response);
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let health = health.expect("the server came up");
    assert_eq!(health.status(), 200);

    let ready = client.get(format!("{base}/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), 200);
    let body: serde_json::Value = ready.json().await.unwrap();
    assert_eq!(body["checks"]["migrations"], "ok");

    drop(server);
    db.drop_now().await;
}

#[tokio::test]
async fn projections_rebuild_and_status_work_from_the_command_line() {
    let db = TestDatabase::fresh("cli");
    let url = db.url.clone();
    let migrated = run(&["migrate"], &url);
    assert!(
        migrated.status.success(),
        "{}",
        String::from_utf8_lossy(&migrated.stderr)
    );

    let rebuilt = run(&["projections", "rebuild", "gig_board"], &url);
    assert!(
        rebuilt.status.success(),
        "{}",
        String::from_utf8_lossy(&rebuilt.stderr)
    );
    assert!(String::from_utf8_lossy(&rebuilt.stdout).contains("rebuilt gig_board"));

    let status = run(&["projections", "status"], &url);
    assert!(
        status.status.success(),
        "{}",
        String::from_utf8_lossy(&status.stderr)
    );
    let table = String::from_utf8_lossy(&status.stdout);
    let row = table
        .lines()
        .find(|l| l.starts_with("gig_board"))
        .unwrap_or_else(|| panic!("gig_board listed: {table}"));
    // Rebuilt and not failed, but no process runs its worker (issue 7, item 22).
    assert!(row.ends_with("free  idle"), "{row}");

    let unknown = run(&["projections", "rebuild", "no_such_model"], &url);
    assert_eq!(unknown.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&unknown.stderr);
    assert!(
        stderr.contains("no read model named") && stderr.contains("ledger"),
        "{stderr}"
    );

    db.drop_now().await;
}

/// A login role in `gigledger_app`, as production runs the service (roles are cluster-wide, so
/// creating it tolerates another test having done so).
async fn service_role() -> String {
    let role = "gigledger_test_service";
    let mut admin = PgConnection::connect(&admin_url()).await.unwrap();
    sqlx::query(&format!(
        "do $$ begin create role {role} login in role gigledger_app;
           exception when duplicate_object or unique_violation then null; end $$"
    ))
    .execute(&mut admin)
    .await
    .unwrap();
    role.to_owned()
}

#[tokio::test]
async fn the_service_runs_as_a_member_of_gigledger_app_once_the_owner_has_migrated() {
    let db = TestDatabase::fresh("cli");
    let owner_url = db.url.clone();
    let migrated = run(&["migrate"], &owner_url);
    assert!(
        migrated.status.success(),
        "{}",
        String::from_utf8_lossy(&migrated.stderr)
    );
    let mut url = url::Url::parse(&owner_url).unwrap();
    url.set_username(&service_role().await).unwrap();
    let service_url = url.to_string();

    // The workers and the HTTP server start and are ready.
    let port = free_port();
    let server = KillOnDrop::spawn(
        gigledger(&["serve", "--demo"], &service_url)
            .env("GIGLEDGER_LISTEN", format!("127.0.0.1:{port}"))
            .env("GIGLEDGER_POLL_INTERVAL_MS", "50")
            .stdout(Stdio::null())
            .stderr(Stdio::null()),
    );
    let client = reqwest::Client::new();
    let mut ready = None;
    for _ in 0..1200 {
        if let Ok(r) = client
            .get(format!("http://127.0.0.1:{port}/readyz"))
            .send()
            .await
        {
            ready = Some(r);
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let ready = ready.expect("the server came up as the service role");
    assert_eq!(ready.status(), 200, "{:?}", ready.text().await);

    // The demo's commands were appended and every read model and process manager applied them.
    let mut owner = PgConnection::connect(&owner_url).await.unwrap();
    let events: i64 = sqlx::query_scalar("select count(*) from events")
        .fetch_one(&mut owner)
        .await
        .unwrap();
    assert!(
        events > 10,
        "demo events written as the service role: {events}"
    );
    let mut caught_up = false;
    // Bounded (two minutes), not timed: on a loaded machine the workers take a while.
    for _ in 0..2400 {
        let behind: i64 = sqlx::query_scalar(
            "select count(*) from projection_checkpoints
              where events_applied < (select count(*) from events) or status <> 'running'",
        )
        .fetch_one(&mut owner)
        .await
        .unwrap();
        let workers: i64 = sqlx::query_scalar("select count(*) from projection_checkpoints")
            .fetch_one(&mut owner)
            .await
            .unwrap();
        if workers >= 15 && behind == 0 {
            caught_up = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        caught_up,
        "every worker applied the demo's events as the service role"
    );

    // And the role still cannot rewrite history.
    let mut service = PgConnection::connect(&service_url).await.unwrap();
    let err = sqlx::query("update events set payload = '{}'")
        .execute(&mut service)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("permission denied"), "{err}");

    drop(server);
    drop(service);
    drop(owner);
    db.drop_now().await;
}
