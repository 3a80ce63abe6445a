//! Authentication and authorisation over HTTP: which tokens are let in, and who may do what
//! (API.md's "who" column), with a problem body each time.

use std::path::PathBuf;
use std::sync::Arc;

use gigledger_api::auth::Authenticator;
use gigledger_api::settings::{AuthSettings, HttpSettings};
use gigledger_api::state::AppState;
use gigledger_commands::clock::{Clock, SystemClock};
use gigledger_domain::{Role, UserId};
use gigledger_tests::http::{auth_settings, gig_body, proposal_body, TestApi, User, SECRET};
use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use sqlx::PgPool;

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

fn hs256(claims: &Value, secret: &str) -> String {
    encode(
        &Header::new(Algorithm::HS256),
        claims,
        &EncodingKey::from_secret(secret.as_bytes()),
    )
    .expect("signed")
}

fn claims(extra: Value) -> Value {
    let mut base = json!({
        "sub": UserId::new().to_string(),
        "roles": ["client"],
        "exp": now() + 600,
    });
    if let (Value::Object(base), Value::Object(extra)) = (&mut base, extra) {
        base.extend(extra);
    }
    base
}

async fn me_with(api: &TestApi, token: &str) -> gigledger_tests::http::Answer {
    api.send(Method::GET, "/v1/me", Some(token), None, &[])
        .await
}

#[sqlx::test(migrator = "gigledger_projections::MIGRATOR")]
async fn bad_tokens_are_401_problems_and_a_good_one_is_the_caller(pool: PgPool) {
    let api = TestApi::start_with(pool, HttpSettings::default(), false).await;
    let good = hs256(&claims(json!({})), SECRET);
    let me = me_with(&api, &good).await;
    assert_eq!(me.status, StatusCode::OK);
    assert_eq!(me.json()["roles"], json!(["client"]));

    let header = |alg: &str| {
        use base64::Engine as _;
        base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(json!({ "alg": alg, "typ": "JWT" }).to_string())
    };
    let payload = {
        use base64::Engine as _;
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(claims(json!({})).to_string())
    };
    let refused = [
        (
            "expired",
            hs256(&claims(json!({ "exp": now() - 3600 })), SECRET),
        ),
        (
            "not yet valid",
            hs256(&claims(json!({ "nbf": now() + 3600 })), SECRET),
        ),
        (
            "no exp",
            hs256(
                &json!({ "sub": UserId::new().to_string(), "roles": ["client"] }),
                SECRET,
            ),
        ),
        (
            "wrong signature",
            hs256(
                &claims(json!({})),
                "another-secret-of-at-least-thirty-two-bytes",
            ),
        ),
        ("alg none", format!("{}.{payload}.", header("none"))),
        ("garbage", "not-a-token".to_owned()),
    ];
    for (why, token) in refused {
        let answer = me_with(&api, &token).await;
        assert_eq!(answer.status, StatusCode::UNAUTHORIZED, "{why}");
        assert_eq!(answer.problem_type(), "/problems/unauthorized", "{why}");
        assert!(answer.header("www-authenticate").is_some(), "{why}");
    }
    let none = api.send(Method::GET, "/v1/me", None, None, &[]).await;
    assert_eq!(none.status, StatusCode::UNAUTHORIZED);
    assert_eq!(none.problem_type(), "/problems/unauthorized");
    api.stop().await;
}

#[sqlx::test(migrator = "gigledger_projections::MIGRATOR")]
async fn with_an_issuer_configured_a_token_from_another_issuer_is_401(pool: PgPool) {
    let auth = AuthSettings {
        jwt_issuer: Some("https://id.example.com".to_owned()),
        ..auth_settings()
    };
    let api = serve(pool, auth).await;
    let ours = hs256(&claims(json!({ "iss": "https://id.example.com" })), SECRET);
    assert_eq!(me_with(&api, &ours).await.status, StatusCode::OK);
    let theirs = hs256(
        &claims(json!({ "iss": "https://evil.example.com" })),
        SECRET,
    );
    let answer = me_with(&api, &theirs).await;
    assert_eq!(answer.status, StatusCode::UNAUTHORIZED);
    assert_eq!(answer.problem_type(), "/problems/unauthorized");
    api.stop().await;
}

#[sqlx::test(migrator = "gigledger_projections::MIGRATOR")]
async fn an_rs256_token_from_the_configured_jwks_file_is_accepted(pool: PgPool) {
    let fixtures = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../api/tests/fixtures");
    let auth = AuthSettings {
        jwt_secret: None,
        jwt_jwks_file: Some(fixtures.join("jwks.json")),
        jwt_issuer: Some("https://id.example.com".to_owned()),
        jwt_audience: Some("gigledger".to_owned()),
        ..AuthSettings::default()
    };
    let api = serve(pool, auth).await;
    let sign = |pem: &str| {
        let key = std::fs::read(fixtures.join(pem)).expect("a fixture key");
        let mut header = Header::new(Algorithm::RS256);
        header.kid = Some("test-rsa".to_owned());
        encode(
            &header,
            &claims(json!({ "iss": "https://id.example.com", "aud": "gigledger" })),
            &EncodingKey::from_rsa_pem(&key).expect("an RSA key"),
        )
        .expect("signed")
    };
    let accepted = me_with(&api, &sign("rs256-private.pem")).await;
    assert_eq!(accepted.status, StatusCode::OK, "{:?}", accepted.json());
    let unknown_key = me_with(&api, &sign("rs256-other-private.pem")).await;
    assert_eq!(unknown_key.status, StatusCode::UNAUTHORIZED);
    // With a JWKS configured, an HS256 token (signed with anything) is another algorithm: 401.
    let hs = me_with(
        &api,
        &hs256(
            &claims(json!({ "iss": "https://id.example.com", "aud": "gigledger" })),
            SECRET,
        ),
    )
    .await;
    assert_eq!(hs.status, StatusCode::UNAUTHORIZED);
    api.stop().await;
}

async fn serve(pool: PgPool, auth: AuthSettings) -> TestApi {
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let state = AppState::new(
        pool.clone(),
        clock.clone(),
        Authenticator::from_settings(&auth).expect("valid settings"),
        &HttpSettings::default(),
    );
    TestApi::serve(pool, state, auth, clock, false).await
}

/// Asserts a refusal: its status and problem type, and that nothing was written.
async fn refused(
    api: &TestApi,
    answer: gigledger_tests::http::Answer,
    status: StatusCode,
    events: i64,
) {
    assert_eq!(answer.status, status, "{:?}", answer.json());
    let expected = match status {
        StatusCode::FORBIDDEN => "/problems/forbidden",
        StatusCode::NOT_FOUND => "/problems/not-found",
        _ => unreachable!("only refusals here"),
    };
    assert_eq!(answer.problem_type(), expected);
    assert_eq!(
        api.events_by_users().await,
        events,
        "a refusal writes nothing"
    );
}

#[sqlx::test(migrator = "gigledger_projections::MIGRATOR")]
async fn each_role_may_do_only_what_api_md_gives_it(pool: PgPool) {
    let api = TestApi::start(pool).await;
    let hired = api.hire(&[30_000, 20_000]).await;
    let funded = api
        .post(
            &hired.client,
            &format!("{}/fund", hired.milestone_path(0)),
            &json!({}),
        )
        .await;
    assert_eq!(funded.status, StatusCode::OK);
    let submitted = api
        .post(
            &hired.freelancer,
            &format!("{}/submit", hired.milestone_path(0)),
            &json!({ "note": "done" }),
        )
        .await;
    assert_eq!(submitted.status, StatusCode::OK);
    let events = api.events_by_users().await;
    let freelancer = &hired.freelancer;
    let contract = hired.contract_path();

    // A freelancer cannot post, accept, fund, approve or resolve.
    let other_gig = api
        .post(&hired.client, "/v1/gigs", &gig_body("Open", 5_000))
        .await;
    let other_gig = other_gig.json()["id"].as_str().expect("id").to_owned();
    let proposal = api
        .post(
            &api.user(&[Role::Freelancer]),
            &format!("/v1/gigs/{other_gig}/proposals"),
            &proposal_body(&[5_000]),
        )
        .await;
    let proposal = proposal.json()["id"].as_str().expect("id").to_owned();
    let events = events + 2;
    refused(
        &api,
        api.post(freelancer, "/v1/gigs", &gig_body("No", 1_000))
            .await,
        StatusCode::FORBIDDEN,
        events,
    )
    .await;
    refused(
        &api,
        api.post(
            freelancer,
            &format!("/v1/gigs/{other_gig}/proposals/{proposal}/accept"),
            &json!({}),
        )
        .await,
        StatusCode::FORBIDDEN,
        events,
    )
    .await;
    refused(
        &api,
        api.post(
            freelancer,
            &format!("{}/fund", hired.milestone_path(1)),
            &json!({}),
        )
        .await,
        StatusCode::FORBIDDEN,
        events,
    )
    .await;
    refused(
        &api,
        api.post(
            freelancer,
            &format!("{}/approve", hired.milestone_path(0)),
            &json!({}),
        )
        .await,
        StatusCode::FORBIDDEN,
        events,
    )
    .await;
    refused(
        &api,
        api.post(
            freelancer,
            &format!("{contract}/disputes/{}/resolve", uuid::Uuid::now_v7()),
            &json!({ "release": 1, "refund": 0 }),
        )
        .await,
        StatusCode::FORBIDDEN,
        events,
    )
    .await;

    // Another client can neither act on nor read this contract: it does not exist for them.
    let stranger = api.user(&[Role::Client]);
    refused(
        &api,
        api.post(
            &stranger,
            &format!("{}/approve", hired.milestone_path(0)),
            &json!({}),
        )
        .await,
        StatusCode::NOT_FOUND,
        events,
    )
    .await;
    refused(
        &api,
        api.post(
            &stranger,
            &format!("{}/fund", hired.milestone_path(1)),
            &json!({}),
        )
        .await,
        StatusCode::NOT_FOUND,
        events,
    )
    .await;
    refused(
        &api,
        api.get_at(&stranger, &contract, submitted.position()).await,
        StatusCode::NOT_FOUND,
        events,
    )
    .await;
    refused(
        &api,
        api.get_at(
            &stranger,
            &format!("{contract}/ledger"),
            submitted.position(),
        )
        .await,
        StatusCode::NOT_FOUND,
        events,
    )
    .await;
    // ... and it is the same answer as for a contract that does not exist at all.
    let nowhere = api
        .get(
            &stranger,
            &format!("/v1/contracts/{}", uuid::Uuid::now_v7()),
        )
        .await;
    assert_eq!(nowhere.status, StatusCode::NOT_FOUND);
    // A client who is not the owner cannot read a gig's proposals.
    refused(
        &api,
        api.get_at(
            &stranger,
            &format!("/v1/gigs/{}/proposals", hired.gig),
            hired.position,
        )
        .await,
        StatusCode::FORBIDDEN,
        events,
    )
    .await;

    // An auditor's and an analyst's commands are 403, whatever the command.
    for role in [Role::Auditor, Role::Analyst] {
        let user: User = api.user(&[role]);
        refused(
            &api,
            api.post(&user, "/v1/gigs", &gig_body("No", 1_000)).await,
            StatusCode::FORBIDDEN,
            events,
        )
        .await;
        refused(
            &api,
            api.post(
                &user,
                &format!("{}/approve", hired.milestone_path(0)),
                &json!({}),
            )
            .await,
            StatusCode::FORBIDDEN,
            events,
        )
        .await;
        refused(
            &api,
            api.post(
                &user,
                &format!("{contract}/cancel"),
                &json!({ "reason": "no" }),
            )
            .await,
            StatusCode::FORBIDDEN,
            events,
        )
        .await;
        refused(
            &api,
            api.post(
                &user,
                &format!("{contract}/disputes"),
                &json!({ "milestone_id": hired.milestones[0], "reason": "no" }),
            )
            .await,
            StatusCode::FORBIDDEN,
            events,
        )
        .await;
    }
    // An auditor reads any contract's ledger, not the contract.
    let auditor = api.user(&[Role::Auditor]);
    assert_eq!(
        api.get_at(
            &auditor,
            &format!("{contract}/ledger"),
            submitted.position()
        )
        .await
        .status,
        StatusCode::OK
    );
    refused(
        &api,
        api.get(&auditor, &contract).await,
        StatusCode::NOT_FOUND,
        events,
    )
    .await;

    // An admin who is a party cannot resolve a dispute on their own contract.
    let admin_client = api.user(&[Role::Client, Role::Admin]);
    let posted = api
        .post(&admin_client, "/v1/gigs", &gig_body("Admin's own", 10_000))
        .await;
    let gig = posted.json()["id"].as_str().expect("id").to_owned();
    let worker = api.user(&[Role::Freelancer]);
    let proposed = api
        .post(
            &worker,
            &format!("/v1/gigs/{gig}/proposals"),
            &proposal_body(&[10_000]),
        )
        .await;
    let proposal = proposed.json()["id"].as_str().expect("id").to_owned();
    let accepted = api
        .post(
            &admin_client,
            &format!("/v1/gigs/{gig}/proposals/{proposal}/accept"),
            &json!({}),
        )
        .await;
    let own = accepted.json()["contract_id"]
        .as_str()
        .expect("contract")
        .to_owned();
    let milestone = accepted.json()["milestone_ids"][0]
        .as_str()
        .expect("milestone")
        .to_owned();
    assert_eq!(
        api.post(
            &admin_client,
            &format!("/v1/contracts/{own}/milestones/{milestone}/fund"),
            &json!({})
        )
        .await
        .status,
        StatusCode::OK
    );
    let disputed = api
        .post(
            &worker,
            &format!("/v1/contracts/{own}/disputes"),
            &json!({ "milestone_id": milestone, "reason": "stuck" }),
        )
        .await;
    assert_eq!(
        disputed.status,
        StatusCode::CREATED,
        "{:?}",
        disputed.json()
    );
    let dispute = disputed.json()["dispute_id"]
        .as_str()
        .expect("dispute")
        .to_owned();
    let events = api.events_by_users().await;
    refused(
        &api,
        api.post(
            &admin_client,
            &format!("/v1/contracts/{own}/disputes/{dispute}/resolve"),
            &json!({ "release": 5_000, "refund": 5_000 }),
        )
        .await,
        StatusCode::FORBIDDEN,
        events,
    )
    .await;
    // Another admin may, and the dispute queue is admins' only.
    let judge = api.user(&[Role::Admin]);
    let resolved = api
        .post(
            &judge,
            &format!("/v1/contracts/{own}/disputes/{dispute}/resolve"),
            &json!({ "release": 5_000, "refund": 5_000 }),
        )
        .await;
    assert_eq!(resolved.status, StatusCode::OK, "{:?}", resolved.json());
    refused(
        &api,
        api.get(&hired.client, "/v1/disputes").await,
        StatusCode::FORBIDDEN,
        api.events_by_users().await,
    )
    .await;
    api.stop().await;
}

#[sqlx::test(migrator = "gigledger_projections::MIGRATOR")]
async fn an_rs256_token_is_accepted_against_a_jwks_fetched_from_a_url(pool: PgPool) {
    let fixtures = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../api/tests/fixtures");
    let jwks = std::fs::read_to_string(fixtures.join("jwks.json")).expect("the fixture set");
    // The identity provider: a loopback server answering its key set.
    let provider = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("a port");
    let jwks_url = format!(
        "http://{}/.well-known/jwks.json",
        provider.local_addr().expect("addr")
    );
    let app = axum::Router::new().route(
        "/.well-known/jwks.json",
        axum::routing::get(move || {
            let jwks = jwks.clone();
            async move { ([("content-type", "application/json")], jwks) }
        }),
    );
    let idp = tokio::spawn(async move {
        let _ = axum::serve(provider, app).await;
    });
    let auth = AuthSettings {
        jwt_secret: None,
        jwt_jwks_url: Some(jwks_url.parse().expect("a URL")),
        jwt_issuer: Some("https://id.example.com".to_owned()),
        jwt_audience: Some("gigledger".to_owned()),
        ..AuthSettings::default()
    };
    let authenticator = Authenticator::load(&auth)
        .await
        .expect("the set is fetched");
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let state = AppState::new(
        pool.clone(),
        clock.clone(),
        authenticator,
        &HttpSettings::default(),
    );
    let api = TestApi::serve(pool, state, auth, clock, false).await;
    let key = std::fs::read(fixtures.join("rs256-private.pem")).expect("a fixture key");
    let mut header = Header::new(Algorithm::RS256);
    header.kid = Some("test-rsa".to_owned());
    let token = encode(
        &header,
        &claims(json!({ "iss": "https://id.example.com", "aud": "gigledger" })),
        &EncodingKey::from_rsa_pem(&key).expect("an RSA key"),
    )
    .expect("signed");
    let me = me_with(&api, &token).await;
    assert_eq!(me.status, StatusCode::OK, "{:?}", me.json());
    api.stop().await;
    idp.abort();

    // A URL that does not answer is a clear start-up error, not a service that lets no one in.
    let dead = AuthSettings {
        jwt_jwks_url: Some("http://127.0.0.1:9/jwks.json".parse().expect("a URL")),
        jwt_issuer: Some("https://id.example.com".to_owned()),
        jwt_audience: Some("gigledger".to_owned()),
        ..AuthSettings::default()
    };
    let refused = Authenticator::load(&dead)
        .await
        .expect_err("nothing to verify with");
    assert!(
        refused.to_string().contains("cannot fetch the JWKS"),
        "{refused}"
    );
}
