//! The auditor's routes: the global log followed page by page (a late commit is served once, in
//! its place), with filters, one stream's history, the hash-chain check finding an edited payload, and
//! reconciliation; nobody but auditors and admins reads them.

use std::collections::HashSet;

use gigledger_domain::Role;
use gigledger_tests::http::{TestApi, User};
use reqwest::StatusCode;
use serde_json::{json, Value};
use sqlx::{Connection, PgConnection, PgPool};

/// Follows the feed from `cursor` with pages of `limit` until it has served `want` events and says
/// it caught up. (The horizon is cluster-wide: another test's open transaction can hold back what
/// this one committed for a moment, so "caught up" alone may come before the last events.)
async fn follow(
    api: &TestApi,
    auditor: &User,
    cursor: &mut Option<String>,
    limit: u32,
    want: usize,
) -> Vec<Value> {
    follow_filtered(api, auditor, cursor, limit, "", want).await
}

/// The same with a filter (`&type=…` and so on).
async fn follow_filtered(
    api: &TestApi,
    auditor: &User,
    cursor: &mut Option<String>,
    limit: u32,
    filter: &str,
    want: usize,
) -> Vec<Value> {
    let mut seen = Vec::new();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let path = match cursor {
            Some(c) => format!("/v1/audit/events?limit={limit}&cursor={c}{filter}"),
            None => format!("/v1/audit/events?limit={limit}{filter}"),
        };
        let page = api.get(auditor, &path).await;
        assert_eq!(page.status, StatusCode::OK, "{:?}", page.json());
        let body = page.json();
        let items = body["items"].as_array().expect("items").clone();
        *cursor = body["next_cursor"].as_str().map(str::to_owned);
        assert!(cursor.is_some(), "the feed always says where to go on");
        let caught_up = body["caught_up"].as_bool().expect("caught_up");
        assert!(
            caught_up || !items.is_empty() || path.contains("type="),
            "only a filtered page is short before the end"
        );
        seen.extend(items);
        if caught_up && seen.len() >= want {
            return seen;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "served {} of {want}",
            seen.len()
        );
        if caught_up {
            // Pacing between polls of a caught-up feed (no assertion waits on it).
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }
}

#[sqlx::test(migrator = "gigledger_projections::MIGRATOR")]
async fn the_feed_serves_every_event_once_in_log_order_and_a_late_commit_in_its_place(
    pool: PgPool,
) {
    let api = TestApi::start(pool.clone()).await;
    let hired = api.hire(&[20_000, 10_000]).await;
    api.post(
        &hired.client,
        &format!("{}/fund", hired.milestone_path(0)),
        &json!({}),
    )
    .await;
    let auditor = api.user(&[Role::Auditor]);
    for limit in [1, 3, 100] {
        let expected: Vec<i64> =
            sqlx::query_scalar("select position from events order by transaction_id, position")
                .fetch_all(&pool)
                .await
                .expect("the log");
        let mut cursor = None;
        let seen = follow(&api, &auditor, &mut cursor, limit, expected.len()).await;
        let positions: Vec<i64> = seen
            .iter()
            .map(|e| e["position"].as_i64().expect("position"))
            .collect();
        assert_eq!(positions, expected, "limit {limit}");
        assert!(seen
            .iter()
            .all(|e| e["hash"].as_str().is_some_and(|h| h.len() == 64)));
    }

    // A transaction that began earlier and is still open holds the feed back: what committed
    // after it began is not served until it ends, so nothing it writes can be skipped.
    let mut cursor = None;
    let everything: i64 = sqlx::query_scalar("select count(*) from events")
        .fetch_one(&pool)
        .await
        .expect("counted");
    follow(
        &api,
        &auditor,
        &mut cursor,
        100,
        usize::try_from(everything).expect("a count"),
    )
    .await;
    let mut open = PgConnection::connect_with(&pool.connect_options())
        .await
        .expect("a connection");
    sqlx::query("begin")
        .execute(&mut open)
        .await
        .expect("begin");
    sqlx::query("select pg_current_xact_id()")
        .execute(&mut open)
        .await
        .expect("an xid");
    let funded = api
        .post(
            &hired.client,
            &format!("{}/fund", hired.milestone_path(1)),
            &json!({}),
        )
        .await;
    assert_eq!(funded.status, StatusCode::OK);
    let held = follow(&api, &auditor, &mut cursor, 100, 0).await;
    assert!(held.is_empty(), "served past an open transaction: {held:?}");
    sqlx::query("commit")
        .execute(&mut open)
        .await
        .expect("commit");
    let deposits = api.events_of_type("FundsDeposited").await;
    assert_eq!(deposits, 2);
    let later = follow(&api, &auditor, &mut cursor, 100, 1).await;
    assert!(
        later.iter().any(|e| e["type"] == "FundsDeposited"),
        "{later:?}"
    );
    let unique: HashSet<i64> = later
        .iter()
        .map(|e| e["position"].as_i64().expect("p"))
        .collect();
    assert_eq!(unique.len(), later.len());
    api.stop().await;
}

#[sqlx::test(migrator = "gigledger_projections::MIGRATOR")]
async fn a_streams_history_a_chain_check_that_finds_an_edit_and_reconciliation(pool: PgPool) {
    let api = TestApi::start(pool.clone()).await;
    let hired = api.hire(&[20_000]).await;
    api.post(
        &hired.client,
        &format!("{}/fund", hired.milestone_path(0)),
        &json!({}),
    )
    .await;
    let auditor = api.user(&[Role::Auditor]);

    let history = api
        .get(
            &auditor,
            &format!("/v1/audit/streams/contract/{}/events", hired.contract),
        )
        .await;
    assert_eq!(history.status, StatusCode::OK, "{:?}", history.json());
    let events = history.json().as_array().expect("events").clone();
    let sequences: Vec<i64> = events
        .iter()
        .map(|e| e["sequence"].as_i64().expect("seq"))
        .collect();
    assert_eq!(
        sequences,
        (1..=i64::try_from(sequences.len()).expect("few")).collect::<Vec<_>>()
    );
    assert_eq!(events[0]["type"], "ContractStarted");

    let verified = api.get(&auditor, "/v1/audit/verify").await;
    assert_eq!(verified.status, StatusCode::OK, "{:?}", verified.json());
    assert_eq!(verified.json()["ok"], true);
    assert_eq!(
        verified.json()["checked"].as_i64(),
        Some(api.event_count().await)
    );
    assert_eq!(verified.json()["proves_completeness"], false);

    let reconciled = api.get(&auditor, "/v1/audit/reconcile").await;
    assert_eq!(reconciled.status, StatusCode::OK);
    assert_eq!(reconciled.json()["ok"], true, "{:?}", reconciled.json());
    assert!(reconciled.json()["checked"]
        .as_u64()
        .is_some_and(|n| n >= 1));

    // A superuser edits one payload behind the store's back: the check names it.
    let edited: i64 =
        sqlx::query_scalar("select position from events where event_type = 'FundsDeposited'")
            .fetch_one(&pool)
            .await
            .expect("the deposit");
    let mut admin = PgConnection::connect_with(&pool.connect_options())
        .await
        .expect("a connection");
    sqlx::query("set session_replication_role = replica")
        .execute(&mut admin)
        .await
        .expect("triggers off");
    sqlx::query("update events set payload = jsonb_set(payload, '{FundsDeposited,amount,amount}', '1') where position = $1")
        .bind(edited)
        .execute(&mut admin)
        .await
        .expect("edited");
    let verified = api.get(&auditor, "/v1/audit/verify").await;
    assert_eq!(verified.json()["ok"], false, "{:?}", verified.json());
    assert_eq!(
        verified.json()["first_broken"]["position"].as_i64(),
        Some(edited)
    );

    // Bad ranges and cursors are problems; other roles are refused.
    let wide = api
        .get(&auditor, "/v1/audit/verify?from=1&to=1000000")
        .await;
    assert_eq!(wide.status, StatusCode::BAD_REQUEST);
    assert_eq!(wide.error_fields(), vec!["to"]);
    let forged = api.get(&auditor, "/v1/audit/events?cursor=forged").await;
    assert_eq!(forged.status, StatusCode::BAD_REQUEST);
    assert_eq!(forged.error_fields(), vec!["cursor"]);
    for role in [Role::Client, Role::Freelancer, Role::Analyst] {
        let user = api.user(&[role]);
        for path in [
            "/v1/audit/events",
            "/v1/audit/verify",
            "/v1/audit/reconcile",
        ] {
            let answer = api.get(&user, path).await;
            assert_eq!(answer.status, StatusCode::FORBIDDEN, "{role:?} {path}");
            assert_eq!(answer.problem_type(), "/problems/forbidden");
        }
    }
    let admin_user = api.user(&[Role::Admin]);
    assert_eq!(
        api.get(&admin_user, "/v1/audit/reconcile").await.status,
        StatusCode::OK
    );
    api.stop().await;
}

#[sqlx::test(migrator = "gigledger_projections::MIGRATOR")]
async fn a_contracts_state_as_of_every_version_and_time_is_the_fold_of_its_first_events(
    pool: PgPool,
) {
    use cqrs_es::Aggregate as _;
    let api = TestApi::start(pool).await;
    let hired = api.hire(&[20_000, 5_000]).await;
    api.post(
        &hired.client,
        &format!("{}/fund", hired.milestone_path(0)),
        &json!({}),
    )
    .await;
    api.post(
        &hired.freelancer,
        &format!("{}/submit", hired.milestone_path(0)),
        &json!({ "note": "done" }),
    )
    .await;
    api.post(
        &hired.client,
        &format!("{}/approve", hired.milestone_path(0)),
        &json!({}),
    )
    .await;
    let auditor = api.user(&[Role::Auditor]);
    let base = format!("/v1/audit/streams/contract/{}", hired.contract);
    let history = api.get(&auditor, &format!("{base}/events")).await.json();
    let events = history.as_array().expect("events").clone();
    assert!(events.len() >= 4, "{events:?}");
    let mut folded = gigledger_domain::Contract::default();
    for (i, event) in events.iter().enumerate() {
        let decoded: gigledger_domain::ContractEvent =
            serde_json::from_value(event["payload"].clone()).expect("a contract event");
        folded.apply(decoded);
        let n = i + 1;
        let at_version = api
            .get(&auditor, &format!("{base}/state?version={n}"))
            .await;
        assert_eq!(at_version.status, StatusCode::OK, "{:?}", at_version.json());
        assert_eq!(
            at_version.json()["version"].as_u64(),
            Some(u64::try_from(n).expect("n"))
        );
        assert_eq!(
            at_version.json()["state"],
            serde_json::to_value(&folded).expect("state"),
            "version {n}"
        );
        // `at` the time version n was recorded: the last event recorded then (a later event of
        // the same instant would be included too; each step here is its own command).
        let at = event["recorded_at"].as_str().expect("a time");
        let at_time = api
            .get(
                &auditor,
                &format!("{base}/state?at={}", at.replace('+', "%2B")),
            )
            .await;
        assert_eq!(at_time.status, StatusCode::OK, "{:?}", at_time.json());
        assert!(at_time.json()["version"].as_u64() >= Some(u64::try_from(n).expect("n")));
    }
    let beyond = api
        .get(
            &auditor,
            &format!("{base}/state?version={}", events.len() + 1),
        )
        .await;
    assert_eq!(beyond.status, StatusCode::NOT_FOUND);
    let before = api
        .get(&auditor, &format!("{base}/state?at=2000-01-01T00:00:00Z"))
        .await;
    assert_eq!(before.status, StatusCode::NOT_FOUND);
    let both = api
        .get(
            &auditor,
            &format!("{base}/state?version=1&at=2000-01-01T00:00:00Z"),
        )
        .await;
    assert_eq!(both.status, StatusCode::BAD_REQUEST);
    let client = api.user(&[Role::Client]);
    assert_eq!(
        api.get(&client, &format!("{base}/state")).await.status,
        StatusCode::FORBIDDEN
    );
    api.stop().await;
}

#[sqlx::test(migrator = "gigledger_projections::MIGRATOR")]
async fn the_feed_filters_by_type_aggregate_type_and_correlation_id_in_log_order(pool: PgPool) {
    let api = TestApi::start(pool.clone()).await;
    let first = api.hire(&[20_000, 10_000]).await;
    let second = api.hire(&[5_000]).await;
    let mut funded = Vec::new();
    for (hired, i) in [(&first, 0), (&first, 1), (&second, 0)] {
        let answer = api
            .send(
                reqwest::Method::POST,
                &format!("{}/fund", hired.milestone_path(i)),
                Some(&hired.client.token),
                Some(&json!({})),
                &[("x-request-id", &format!("fund-{}-{i}", hired.contract))],
            )
            .await;
        assert_eq!(answer.status, StatusCode::OK, "{:?}", answer.json());
        funded.push(format!("fund-{}-{i}", hired.contract));
    }
    let auditor = api.user(&[Role::Auditor]);
    let expected = |sql: &'static str, value: String| {
        let pool = pool.clone();
        async move {
            sqlx::query_scalar::<_, i64>(sql)
                .bind(value)
                .fetch_all(&pool)
                .await
                .expect("the log")
        }
    };
    let cases = [
        (
            "&type=FundsDeposited".to_owned(),
            expected(
                "select position from events where event_type = $1 order by transaction_id, position",
                "FundsDeposited".to_owned(),
            )
            .await,
        ),
        (
            "&aggregate_type=escrow".to_owned(),
            expected(
                "select position from events where aggregate_type = $1 order by transaction_id, position",
                "escrow".to_owned(),
            )
            .await,
        ),
        (
            format!("&correlation_id={}", funded[1]),
            expected(
                "select position from events where metadata->>'correlation_id' = $1 order by transaction_id, position",
                funded[1].clone(),
            )
            .await,
        ),
        (
            format!("&correlation_id={}&type=FundsDeposited", funded[2]),
            expected(
                "select position from events where metadata->>'correlation_id' = $1 and event_type = 'FundsDeposited' order by transaction_id, position",
                funded[2].clone(),
            )
            .await,
        ),
        (
            "&type=NoSuchEvent".to_owned(),
            Vec::new(),
        ),
    ];
    for (filter, positions) in cases {
        assert!(
            filter.contains("NoSuch") || !positions.is_empty(),
            "{filter} matches something"
        );
        for limit in [1, 2, 100] {
            let mut cursor = None;
            let seen =
                follow_filtered(&api, &auditor, &mut cursor, limit, &filter, positions.len()).await;
            let got: Vec<i64> = seen
                .iter()
                .map(|e| e["position"].as_i64().expect("a position"))
                .collect();
            assert_eq!(got, positions, "{filter} limit {limit}");
        }
    }
    for (query, field) in [
        ("type=", "type"),
        ("aggregate_type=", "aggregate_type"),
        (
            &*format!("correlation_id={}", "x".repeat(201)),
            "correlation_id",
        ),
    ] {
        let bad = api
            .get(&auditor, &format!("/v1/audit/events?{query}"))
            .await;
        assert_eq!(bad.status, StatusCode::BAD_REQUEST, "{query}");
        assert_eq!(bad.error_fields(), vec![field], "{query}");
    }
}

#[sqlx::test(migrator = "gigledger_projections::MIGRATOR")]
async fn a_follower_with_any_page_size_sees_every_event_once_while_writers_commit_late(
    pool: PgPool,
) {
    use rand::Rng as _;
    let api = TestApi::start_with(
        pool.clone(),
        gigledger_api::settings::HttpSettings::default(),
        false,
    )
    .await;
    let auditor = api.user(&[Role::Auditor]);
    // Eight writers of their own streams; every third append holds its transaction open for a
    // second after writing, so later transactions commit before it.
    let mut writers = Vec::new();
    for w in 0..8 {
        let pool = pool.clone();
        writers.push(tokio::spawn(async move {
            for sequence in 1..=15_i64 {
                let mut tx = pool.begin().await.expect("a transaction");
                sqlx::query(
                    "insert into events (aggregate_type, aggregate_id, sequence, event_type,
                                         event_version, payload, metadata)
                     values ('loadtest', $1, $2, 'Tick', '1', '{}', '{}')",
                )
                .bind(format!("writer-{w}"))
                .bind(sequence)
                .execute(&mut *tx)
                .await
                .expect("appended");
                if (sequence + w) % 3 == 0 {
                    sqlx::query("select pg_sleep(1)")
                        .execute(&mut *tx)
                        .await
                        .expect("held open");
                }
                tx.commit().await.expect("committed");
            }
        }));
    }
    let mut seen: Vec<i64> = Vec::new();
    let mut cursor: Option<String> = None;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    loop {
        let done = writers.iter().all(tokio::task::JoinHandle::is_finished);
        let limit = rand::thread_rng().gen_range(1..=100);
        let path = match &cursor {
            Some(c) => format!("/v1/audit/events?limit={limit}&cursor={c}"),
            None => format!("/v1/audit/events?limit={limit}"),
        };
        let page = api.get(&auditor, &path).await;
        assert_eq!(page.status, StatusCode::OK, "{:?}", page.json());
        let body = page.json();
        cursor = body["next_cursor"].as_str().map(str::to_owned);
        seen.extend(
            body["items"]
                .as_array()
                .expect("items")
                .iter()
                .map(|e| e["position"].as_i64().expect("a position")),
        );
        let caught_up = body["caught_up"].as_bool().expect("caught_up");
        // Caught up with what is settled: other sessions of the cluster may still hold the
        // horizon below the writers' last commits for a moment, so go on until all are served.
        if done && caught_up && seen.len() >= 8 * 15 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "the feed kept up");
        if caught_up {
            // Pacing between polls of a caught-up feed (no assertion waits on it).
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }
    for writer in writers {
        writer.await.expect("a writer");
    }
    let expected: Vec<i64> =
        sqlx::query_scalar("select position from events order by transaction_id, position")
            .fetch_all(&pool)
            .await
            .expect("the log");
    assert_eq!(expected.len(), 8 * 15);
    assert_eq!(
        seen, expected,
        "every event once, in log order, none skipped"
    );
    api.stop().await;
}
