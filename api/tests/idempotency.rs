//! The `Idempotency-Key` store against the real PostgreSQL: replay, mismatch, in flight, one
//! winner among concurrent begins, callers independent, purge, a crashed reservation.

use std::sync::Arc;

use axum::http::header::{CONTENT_TYPE, ETAG, LOCATION};
use axum::http::{HeaderName, HeaderValue, Method, StatusCode};
use axum::response::IntoResponse;
use bytes::Bytes;
use chrono::{Duration, TimeZone, Utc};
use gigledger_api::idempotency::{
    Begin, Fingerprint, IdempotencyConfig, IdempotencyKey, IdempotencyStore, Reservation,
    StoredResponse, IDEMPOTENT_REPLAYED,
};
use gigledger_commands::clock::ManualClock;
use sqlx::PgPool;
use uuid::Uuid;

struct Fixture {
    store: IdempotencyStore,
    clock: Arc<ManualClock>,
    pool: PgPool,
}

fn fixture(pool: PgPool) -> Fixture {
    let clock = Arc::new(ManualClock::new(
        Utc.with_ymd_and_hms(2026, 12, 1, 9, 0, 0).unwrap(),
    ));
    let store = IdempotencyStore::new(pool.clone(), clock.clone(), IdempotencyConfig::default());
    Fixture { store, clock, pool }
}

fn key(text: &str) -> IdempotencyKey {
    IdempotencyKey::parse(text).expect("a valid key")
}

fn fund_request(body: &str) -> Fingerprint {
    Fingerprint::of(
        &Method::POST,
        "/v1/contracts/c/milestones/m/fund",
        body.as_bytes(),
    )
}

/// A response with headers a replay must keep, a repeated header, and bytes that are not UTF-8.
fn created() -> StoredResponse {
    let mut body = br#"{"id":"g","version":1,"position":7}"#.to_vec();
    body.extend_from_slice(&[0xff, 0x00, 0xfe]);
    StoredResponse {
        status: StatusCode::CREATED,
        headers: vec![
            (CONTENT_TYPE, HeaderValue::from_static("application/json")),
            (LOCATION, HeaderValue::from_static("/v1/gigs/g")),
            (ETAG, HeaderValue::from_static("\"1\"")),
            (
                HeaderName::from_static("x-note"),
                HeaderValue::from_static("one"),
            ),
            (
                HeaderName::from_static("x-note"),
                HeaderValue::from_bytes(b"two \xe9").unwrap(),
            ),
        ],
        body: Bytes::from(body),
    }
}

async fn fresh(store: &IdempotencyStore, caller: Uuid, k: &str, f: &Fingerprint) -> Reservation {
    match store.begin(caller, &key(k), f).await.expect("begin") {
        Begin::Fresh(reservation) => reservation,
        other => panic!("expected Fresh, got {other:?}"),
    }
}

async fn rows(pool: &PgPool) -> i64 {
    sqlx::query_scalar("select count(*) from public.idempotency_keys")
        .fetch_one(pool)
        .await
        .unwrap()
}

#[sqlx::test(migrator = "gigledger_projections::MIGRATOR")]
async fn a_completed_request_is_replayed_byte_for_byte(pool: PgPool) {
    let f = fixture(pool);
    let caller = Uuid::now_v7();
    let request = fund_request("{}");
    let reservation = fresh(&f.store, caller, "k-1", &request).await;
    assert!(!reservation.taken_over);
    assert!(f.store.complete(&reservation, &created()).await.unwrap());

    let Begin::Replay(stored) = f.store.begin(caller, &key("k-1"), &request).await.unwrap() else {
        panic!("expected a replay");
    };
    assert_eq!(stored, created());

    let response = stored.into_replay();
    assert_eq!(response.status(), StatusCode::CREATED);
    assert_eq!(response.headers()[IDEMPOTENT_REPLAYED], "true");
    assert_eq!(response.headers()[LOCATION], "/v1/gigs/g");
    assert_eq!(response.headers()[CONTENT_TYPE], "application/json");
    let notes: Vec<_> = response.headers().get_all("x-note").iter().collect();
    assert_eq!(notes.len(), 2);
    assert_eq!(notes[0].as_bytes(), b"one");
    assert_eq!(notes[1].as_bytes(), b"two \xe9");
    let body = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .unwrap();
    assert_eq!(body, created().body);
    assert_eq!(rows(&f.pool).await, 1);
}

#[sqlx::test(migrator = "gigledger_projections::MIGRATOR")]
async fn a_captured_response_is_stored_without_its_per_exchange_headers(pool: PgPool) {
    let f = fixture(pool);
    let caller = Uuid::now_v7();
    let request = fund_request("{}");
    let response = (
        StatusCode::OK,
        [("x-request-id", "req-1"), ("location", "/v1/x")],
        "body bytes",
    )
        .into_response();
    let (stored, sent) = StoredResponse::capture(response, 1024).await.unwrap();
    assert_eq!(sent.headers()["x-request-id"], "req-1");
    assert!(stored.headers.iter().all(|(n, _)| n != "x-request-id"));

    let reservation = fresh(&f.store, caller, "k-cap", &request).await;
    assert!(f.store.complete(&reservation, &stored).await.unwrap());
    let Begin::Replay(replayed) = f
        .store
        .begin(caller, &key("k-cap"), &request)
        .await
        .unwrap()
    else {
        panic!("expected a replay");
    };
    let response = replayed.into_replay();
    assert!(response.headers().get("x-request-id").is_none());
    assert_eq!(response.headers()["location"], "/v1/x");
    let body = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .unwrap();
    assert_eq!(body.as_ref(), b"body bytes");
}

#[sqlx::test(migrator = "gigledger_projections::MIGRATOR")]
async fn the_same_key_with_a_different_request_is_a_mismatch(pool: PgPool) {
    let f = fixture(pool);
    let caller = Uuid::now_v7();
    let reservation = fresh(&f.store, caller, "k-2", &fund_request("{}")).await;
    // While the first is in flight, and after it completed.
    let other_body = fund_request(r#"{"note":"x"}"#);
    assert_eq!(
        f.store
            .begin(caller, &key("k-2"), &other_body)
            .await
            .unwrap(),
        Begin::Mismatch
    );
    assert!(f.store.complete(&reservation, &created()).await.unwrap());
    assert_eq!(
        f.store
            .begin(caller, &key("k-2"), &other_body)
            .await
            .unwrap(),
        Begin::Mismatch
    );
    let other_path = Fingerprint::of(&Method::POST, "/v1/contracts/c/cancel", b"{}");
    assert_eq!(
        f.store
            .begin(caller, &key("k-2"), &other_path)
            .await
            .unwrap(),
        Begin::Mismatch
    );
    let other_method = Fingerprint::of(&Method::PATCH, "/v1/contracts/c/milestones/m/fund", b"{}");
    assert_eq!(
        f.store
            .begin(caller, &key("k-2"), &other_method)
            .await
            .unwrap(),
        Begin::Mismatch
    );
}

#[sqlx::test(migrator = "gigledger_projections::MIGRATOR")]
async fn a_request_whose_key_is_still_running_is_in_flight(pool: PgPool) {
    let f = fixture(pool);
    let caller = Uuid::now_v7();
    let request = fund_request("{}");
    let reservation = fresh(&f.store, caller, "k-3", &request).await;
    f.clock.advance(Duration::seconds(59));
    assert_eq!(
        f.store.begin(caller, &key("k-3"), &request).await.unwrap(),
        Begin::InFlight
    );
    assert!(f.store.complete(&reservation, &created()).await.unwrap());
    assert!(matches!(
        f.store.begin(caller, &key("k-3"), &request).await.unwrap(),
        Begin::Replay(_)
    ));
}

#[sqlx::test(migrator = "gigledger_projections::MIGRATOR")]
async fn of_concurrent_begins_with_one_key_exactly_one_is_fresh(pool: PgPool) {
    let f = fixture(pool);
    let caller = Uuid::now_v7();
    let request = fund_request("{}");
    for round in 0..20 {
        let k = key(&format!("race-{round}"));
        let begins = (0..4).map(|_| f.store.begin(caller, &k, &request));
        let answers = futures::future::try_join_all(begins).await.unwrap();
        let fresh = answers
            .iter()
            .filter(|a| matches!(a, Begin::Fresh(_)))
            .count();
        assert_eq!(fresh, 1, "round {round}: {answers:?}");
        assert!(answers
            .iter()
            .all(|a| matches!(a, Begin::Fresh(_) | Begin::InFlight)));
    }
}

#[sqlx::test(migrator = "gigledger_projections::MIGRATOR")]
async fn another_callers_same_key_is_independent(pool: PgPool) {
    let f = fixture(pool);
    let (alice, bob) = (Uuid::now_v7(), Uuid::now_v7());
    let reservation = fresh(&f.store, alice, "shared", &fund_request("{}")).await;
    // Bob's, with another body, while Alice's is in flight and after.
    let bobs = fresh(&f.store, bob, "shared", &fund_request(r#"{"b":1}"#)).await;
    assert!(f.store.complete(&reservation, &created()).await.unwrap());
    let mut other = created();
    other.status = StatusCode::OK;
    assert!(f.store.complete(&bobs, &other).await.unwrap());
    let Begin::Replay(alices) = f
        .store
        .begin(alice, &key("shared"), &fund_request("{}"))
        .await
        .unwrap()
    else {
        panic!("expected Alice's replay");
    };
    assert_eq!(alices.status, StatusCode::CREATED);
    let Begin::Replay(bobs) = f
        .store
        .begin(bob, &key("shared"), &fund_request(r#"{"b":1}"#))
        .await
        .unwrap()
    else {
        panic!("expected Bob's replay");
    };
    assert_eq!(bobs.status, StatusCode::OK);
}

#[sqlx::test(migrator = "gigledger_projections::MIGRATOR")]
async fn records_are_kept_24_hours_and_purged_after(pool: PgPool) {
    let f = fixture(pool);
    let caller = Uuid::now_v7();
    let request = fund_request("{}");
    let reservation = fresh(&f.store, caller, "old", &request).await;
    assert!(f.store.complete(&reservation, &created()).await.unwrap());
    f.clock.advance(Duration::hours(23));
    let newer = fresh(&f.store, caller, "newer", &request).await;
    assert!(f.store.complete(&newer, &created()).await.unwrap());

    assert_eq!(f.store.purge().await.unwrap(), 0);
    assert!(matches!(
        f.store.begin(caller, &key("old"), &request).await.unwrap(),
        Begin::Replay(_)
    ));

    f.clock.advance(Duration::hours(1));
    assert_eq!(f.store.purge().await.unwrap(), 1);
    assert_eq!(rows(&f.pool).await, 1);
    assert!(matches!(
        f.store
            .begin(caller, &key("newer"), &request)
            .await
            .unwrap(),
        Begin::Replay(_)
    ));
    // The purged key is free again, for any request.
    let again = fresh(&f.store, caller, "old", &fund_request(r#"{"new":1}"#)).await;
    assert!(!again.taken_over);
}

#[sqlx::test(migrator = "gigledger_projections::MIGRATOR")]
async fn an_expired_record_not_yet_purged_counts_as_gone(pool: PgPool) {
    let f = fixture(pool);
    let caller = Uuid::now_v7();
    let reservation = fresh(&f.store, caller, "stale", &fund_request("{}")).await;
    assert!(f.store.complete(&reservation, &created()).await.unwrap());
    f.clock.advance(Duration::hours(24));
    let reused = fresh(&f.store, caller, "stale", &fund_request(r#"{"x":2}"#)).await;
    assert!(reused.taken_over);
    assert_eq!(rows(&f.pool).await, 1);
}

#[sqlx::test(migrator = "gigledger_projections::MIGRATOR")]
async fn a_reservation_left_by_a_crashed_process_is_taken_over_after_its_lease(pool: PgPool) {
    let f = fixture(pool);
    let caller = Uuid::now_v7();
    let request = fund_request("{}");
    // The first attempt reserves, then its process dies: it never completes.
    let crashed = fresh(&f.store, caller, "crash", &request).await;
    assert_eq!(
        f.store
            .begin(caller, &key("crash"), &request)
            .await
            .unwrap(),
        Begin::InFlight
    );

    f.clock.advance(IdempotencyConfig::default().lease);
    // Another request with this key still is not this request: it does not take over.
    assert_eq!(
        f.store
            .begin(caller, &key("crash"), &fund_request(r#"{"x":1}"#))
            .await
            .unwrap(),
        Begin::Mismatch
    );
    let retry = fresh(&f.store, caller, "crash", &request).await;
    assert!(retry.taken_over);
    // A re-run derives the same resource ids as the first run.
    assert_eq!(retry.derived_id("gig"), crashed.derived_id("gig"));
    assert_ne!(retry.derived_id("gig"), retry.derived_id("milestone:0"));

    // The first attempt, had it been only slow, can neither complete nor abandon the key now.
    assert!(!f.store.complete(&crashed, &created()).await.unwrap());
    assert!(!f.store.abandon(&crashed).await.unwrap());
    let mut answer = created();
    answer.status = StatusCode::OK;
    assert!(f.store.complete(&retry, &answer).await.unwrap());
    let Begin::Replay(stored) = f
        .store
        .begin(caller, &key("crash"), &request)
        .await
        .unwrap()
    else {
        panic!("expected the retry's answer");
    };
    assert_eq!(stored.status, StatusCode::OK);
}

#[sqlx::test(migrator = "gigledger_projections::MIGRATOR")]
async fn an_abandoned_key_can_be_used_again(pool: PgPool) {
    let f = fixture(pool);
    let caller = Uuid::now_v7();
    let reservation = fresh(&f.store, caller, "k-4", &fund_request(r#"{"bad":1}"#)).await;
    assert!(f.store.abandon(&reservation).await.unwrap());
    let again = fresh(&f.store, caller, "k-4", &fund_request("{}")).await;
    assert!(!again.taken_over);
}

#[test]
fn keys_are_1_to_255_printable_characters() {
    assert!(IdempotencyKey::parse("a").is_ok());
    assert!(IdempotencyKey::parse(&"k".repeat(255)).is_ok());
    assert!(IdempotencyKey::parse("with space ~").is_ok());
    for bad in [String::new(), "k".repeat(256), "tab\t".into(), "é".into()] {
        assert!(IdempotencyKey::parse(&bad).is_err(), "{bad:?}");
    }
}
