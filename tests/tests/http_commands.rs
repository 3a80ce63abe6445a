//! Command semantics over HTTP: `Idempotency-Key` replays, `If-Match`, and the rate limit.

use gigledger_api::settings::HttpSettings;
use gigledger_domain::Role;
use gigledger_tests::http::{gig_body, TestApi};
use reqwest::{Method, StatusCode};
use serde_json::json;
use sqlx::PgPool;

#[sqlx::test(migrator = "gigledger_projections::MIGRATOR")]
async fn a_repeated_fund_with_one_key_charges_once_and_replays_the_first_answer(pool: PgPool) {
    let api = TestApi::start(pool).await;
    let hired = api.hire(&[40_000, 10_000]).await;
    let fund = format!("{}/fund", hired.milestone_path(0));
    let send = |path: String, key: &'static str| {
        let api = &api;
        let token = hired.client.token.clone();
        async move {
            api.send(
                Method::POST,
                &path,
                Some(&token),
                Some(&json!({})),
                &[("idempotency-key", key)],
            )
            .await
        }
    };
    let first = send(fund.clone(), "fund-once").await;
    assert_eq!(first.status, StatusCode::OK, "{:?}", first.json());
    assert_eq!(first.header("idempotent-replayed"), None);
    let events = api.events_by_users().await;
    let second = send(fund.clone(), "fund-once").await;
    assert_eq!(second.status, StatusCode::OK);
    assert_eq!(second.header("idempotent-replayed"), Some("true"));
    assert_eq!(second.bytes, first.bytes, "byte for byte");
    assert_eq!(
        api.events_by_users().await,
        events,
        "a replay writes nothing"
    );
    assert_eq!(api.charges().await, 1);
    assert_eq!(api.events_of_type("FundsDeposited").await, 1);

    // The same key for another request (another milestone's path) is refused.
    let other = send(format!("{}/fund", hired.milestone_path(1)), "fund-once").await;
    assert_eq!(other.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(other.problem_type(), "/problems/idempotency-key-reused");
    assert_eq!(api.events_by_users().await, events);

    // Another caller's key of the same name is theirs: independent.
    let stranger = api.user(&[Role::Client]);
    let theirs = api
        .send(
            Method::POST,
            "/v1/gigs",
            Some(&stranger.token),
            Some(&gig_body("Mine", 5_000)),
            &[("idempotency-key", "fund-once")],
        )
        .await;
    assert_eq!(theirs.status, StatusCode::CREATED, "{:?}", theirs.json());
    api.stop().await;
}

#[sqlx::test(migrator = "gigledger_projections::MIGRATOR")]
async fn two_concurrent_requests_with_one_key_run_once(pool: PgPool) {
    let api = TestApi::start(pool).await;
    let hired = api.hire(&[40_000]).await;
    let fund = format!("{}/fund", hired.milestone_path(0));
    let body = json!({});
    let attempt = || {
        api.send(
            Method::POST,
            &fund,
            Some(&hired.client.token),
            Some(&body),
            &[("idempotency-key", "together")],
        )
    };
    let (a, b) = tokio::join!(attempt(), attempt());
    let statuses = [a.status, b.status];
    assert!(statuses.contains(&StatusCode::OK), "{statuses:?}");
    for answer in [&a, &b] {
        match answer.status {
            StatusCode::OK => {}
            StatusCode::CONFLICT => {
                assert_eq!(answer.problem_type(), "/problems/idempotency-key-in-flight");
                assert!(answer.header("retry-after").is_some());
            }
            other => panic!("unexpected {other}: {:?}", answer.json()),
        }
    }
    // Exactly one of them ran, whatever the other saw.
    let first_run = [&a, &b]
        .iter()
        .filter(|x| x.status == StatusCode::OK && x.header("idempotent-replayed").is_none())
        .count();
    assert_eq!(first_run, 1);
    assert_eq!(api.charges().await, 1);
    assert_eq!(api.events_of_type("FundsDeposited").await, 1);
    api.stop().await;
}

#[sqlx::test(migrator = "gigledger_projections::MIGRATOR")]
async fn a_key_whose_request_was_refused_before_writing_can_be_used_again(pool: PgPool) {
    let api = TestApi::start(pool).await;
    let client = api.user(&[Role::Client]);
    let bad = api
        .send(
            Method::POST,
            "/v1/gigs",
            Some(&client.token),
            Some(&json!({ "title": "", "description": "x", "skills": ["a"],
                          "budget": { "kind": "fixed", "amount": { "amount": 100, "currency": "USD" } } })),
            &[("idempotency-key", "retry-me")],
        )
        .await;
    assert_eq!(
        bad.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{:?}",
        bad.json()
    );
    let good = api
        .send(
            Method::POST,
            "/v1/gigs",
            Some(&client.token),
            Some(&gig_body("Fixed now", 100)),
            &[("idempotency-key", "retry-me")],
        )
        .await;
    assert_eq!(good.status, StatusCode::CREATED, "{:?}", good.json());
    assert_eq!(good.header("idempotent-replayed"), None);
    api.stop().await;
}

#[sqlx::test(migrator = "gigledger_projections::MIGRATOR")]
async fn a_stale_if_match_is_412_and_writes_nothing_and_a_fresh_etag_works(pool: PgPool) {
    let api = TestApi::start(pool).await;
    let client = api.user(&[Role::Client]);
    let posted = api
        .post(&client, "/v1/gigs", &gig_body("Versioned", 10_000))
        .await;
    let gig = posted.json()["id"].as_str().expect("id").to_owned();
    let path = format!("/v1/gigs/{gig}");
    let seen = api.get_at(&client, &path, posted.position()).await;
    let etag = seen.header("etag").expect("an ETag").to_owned();
    let revise = |title: &'static str, tag: String| {
        let api = &api;
        let token = client.token.clone();
        let path = path.clone();
        async move {
            api.send(
                Method::PATCH,
                &path,
                Some(&token),
                Some(&json!({ "title": title })),
                &[("if-match", tag.as_str())],
            )
            .await
        }
    };
    let revised = revise("Versioned, revised", etag.clone()).await;
    assert_eq!(revised.status, StatusCode::OK, "{:?}", revised.json());
    let events = api.events_by_users().await;
    let stale = revise("Lost update", etag).await;
    assert_eq!(
        stale.status,
        StatusCode::PRECONDITION_FAILED,
        "{:?}",
        stale.json()
    );
    assert_eq!(stale.problem_type(), "/problems/precondition-failed");
    assert_eq!(api.events_by_users().await, events, "nothing written");
    let seen = api.get_at(&client, &path, revised.position()).await;
    assert_eq!(seen.json()["title"], "Versioned, revised");
    let fresh = seen.header("etag").expect("an ETag").to_owned();
    let again = revise("Third", fresh).await;
    assert_eq!(again.status, StatusCode::OK, "{:?}", again.json());
    let garbage = revise("Bad tag", "soon".to_owned()).await;
    assert_eq!(garbage.status, StatusCode::BAD_REQUEST);
    assert_eq!(garbage.error_fields(), vec!["If-Match"]);
    api.stop().await;
}

#[sqlx::test(migrator = "gigledger_projections::MIGRATOR")]
async fn past_the_callers_command_allowance_commands_are_429_with_retry_after(pool: PgPool) {
    let http = HttpSettings {
        commands_per_minute: 2,
        ..HttpSettings::default()
    };
    let api = TestApi::start_with(pool, http, false).await;
    let client = api.user(&[Role::Client]);
    for _ in 0..2 {
        let ok = api
            .post(&client, "/v1/gigs", &gig_body("Allowed", 1_000))
            .await;
        assert_eq!(ok.status, StatusCode::CREATED);
    }
    let events = api.events_by_users().await;
    let limited = api
        .post(&client, "/v1/gigs", &gig_body("One too many", 1_000))
        .await;
    assert_eq!(limited.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(limited.problem_type(), "/problems/too-many-requests");
    assert!(limited
        .header("retry-after")
        .and_then(|s| s.parse::<u32>().ok())
        .is_some());
    assert_eq!(api.events_by_users().await, events);
    // Another caller has an allowance of their own; queries are not limited.
    let other = api.user(&[Role::Client]);
    assert_eq!(
        api.post(&other, "/v1/gigs", &gig_body("Mine", 1_000))
            .await
            .status,
        StatusCode::CREATED
    );
    assert_eq!(api.get(&client, "/v1/me").await.status, StatusCode::OK);
    api.stop().await;
}
