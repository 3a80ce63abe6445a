//! `gigledger token`, run as a developer runs it: the token it prints is one the service's
//! extractor accepts, over a real listener.

use std::process::{Command, Output};
use std::sync::Arc;

use axum::routing::get;
use axum::{Json, Router};
use gigledger_api::auth::{Authenticator, Caller};
use gigledger_api::settings::AuthSettings;
use serde_json::{json, Value};
use uuid::Uuid;

const BIN: &str = env!("CARGO_BIN_EXE_gigledger-under-test");
const SECRET: &str = "the black-box tests' secret, long enough for HS256";

fn gigledger(args: &[&str], secret: Option<&str>) -> Output {
    let mut cmd = Command::new(BIN);
    cmd.args(args)
        .env("RUST_LOG", "warn")
        .env_remove("RUST_BACKTRACE")
        .env_remove("GIGLEDGER_JWT_SECRET")
        .env_remove("GIGLEDGER_JWT_JWKS_FILE")
        .env_remove("GIGLEDGER_JWT_ISSUER")
        .env_remove("GIGLEDGER_JWT_AUDIENCE");
    if let Some(secret) = secret {
        cmd.env("GIGLEDGER_JWT_SECRET", secret);
    }
    cmd.output().unwrap()
}

async fn whoami(Caller(actor): Caller) -> Json<Value> {
    Json(json!({ "sub": actor.user_id.0, "roles": actor.roles }))
}

/// Serves a one-route app behind the extractor on a free port; the address to call.
async fn serve_with_secret(secret: &str) -> String {
    let settings = AuthSettings {
        jwt_secret: Some(secret.parse().unwrap()),
        ..AuthSettings::default()
    };
    let auth = Arc::new(Authenticator::from_settings(&settings).unwrap());
    let app = Router::new().route("/whoami", get(whoami)).with_state(auth);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{addr}/whoami")
}

#[tokio::test]
async fn a_minted_token_is_accepted_by_the_extractor_with_its_subject_and_roles() {
    let sub = Uuid::now_v7();
    let out = gigledger(
        &[
            "token",
            "--sub",
            &sub.to_string(),
            "--role",
            "client",
            "freelancer",
            "--ttl-secs",
            "120",
        ],
        Some(SECRET),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    let token = stdout.trim_end();
    assert_eq!(token.lines().count(), 1, "the token alone: {stdout:?}");

    let url = serve_with_secret(SECRET).await;
    let client = reqwest::Client::new();
    let response = client.get(&url).bearer_auth(token).send().await.unwrap();
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(
        body,
        json!({ "sub": sub.to_string(), "roles": ["client", "freelancer"] })
    );

    // Without it, or under another secret, the same route is a 401 problem.
    let response = client.get(&url).send().await.unwrap();
    assert_eq!(response.status(), 401);
    let other = serve_with_secret("another secret, as long as the first one is").await;
    let response = client.get(&other).bearer_auth(token).send().await.unwrap();
    assert_eq!(response.status(), 401);
    assert_eq!(
        response.headers()["content-type"],
        "application/problem+json"
    );
    let problem: Value = response.json().await.unwrap();
    assert_eq!(problem["type"], gigledger_api::auth::UNAUTHENTICATED_TYPE);
    assert_eq!(problem["status"], 401);
    assert_eq!(problem["detail"], "the token's signature does not verify");
}

#[tokio::test]
async fn token_without_a_secret_says_which_setting_to_set() {
    let out = gigledger(
        &[
            "token",
            "--sub",
            &Uuid::now_v7().to_string(),
            "--role",
            "admin",
        ],
        None,
    );
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("GIGLEDGER_JWT_SECRET"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(out.stdout.is_empty());

    let short = gigledger(
        &[
            "token",
            "--sub",
            &Uuid::now_v7().to_string(),
            "--role",
            "admin",
        ],
        Some("short"),
    );
    assert_eq!(short.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&short.stderr).contains("at least 32"));
}

#[tokio::test]
async fn token_refuses_an_unknown_role_a_bad_sub_and_the_nil_sub() {
    let sub = Uuid::now_v7().to_string();
    let role = gigledger(&["token", "--sub", &sub, "--role", "owner"], Some(SECRET));
    assert_eq!(role.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&role.stderr);
    assert!(
        stderr.contains("client, freelancer, auditor, analyst, admin"),
        "{stderr}"
    );

    let bad = gigledger(
        &["token", "--sub", "alice", "--role", "client"],
        Some(SECRET),
    );
    assert_eq!(bad.status.code(), Some(2));

    let nil = Uuid::nil().to_string();
    let nil = gigledger(&["token", "--sub", &nil, "--role", "client"], Some(SECRET));
    assert_eq!(nil.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&nil.stderr).contains("nil"));
    assert!(nil.stdout.is_empty());
}

#[tokio::test]
async fn the_secret_is_never_shown_in_help() {
    let help = gigledger(&["token", "--help"], Some(SECRET));
    assert!(help.status.success());
    let text = String::from_utf8_lossy(&help.stdout);
    assert!(text.contains("GIGLEDGER_JWT_SECRET"), "{text}");
    assert!(!text.contains(SECRET), "{text}");
}
