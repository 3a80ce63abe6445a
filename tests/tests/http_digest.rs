//! The ledger digest and the export, black-box: a digest an auditor keeps verifies while the log
//! grows; a superuser's tampering that every per-stream chain still accepts — the last event of a
//! stream removed, a whole stream removed, an event inserted back-dated with a valid chain hash,
//! two events' order swapped — is found by the digest, which says where history first differs;
//! an export verifies offline (the CLI, no database) and a changed byte is named by its line.

use std::process::{Command, Output};

use gigledger_domain::Role;
use gigledger_tests::http::{Hired, TestApi, User};
use reqwest::StatusCode;
use serde_json::{json, Value};
use sqlx::{Connection, PgConnection, PgPool};

const BIN: &str = env!("CARGO_BIN_EXE_gigledger-under-test");

/// Some history: two contracts, one funded, one funded, submitted and approved.
async fn activity(api: &TestApi) -> (Hired, Hired) {
    let a = api.hire(&[20_000, 10_000]).await;
    let funded = api
        .post(
            &a.client,
            &format!("{}/fund", a.milestone_path(0)),
            &json!({}),
        )
        .await;
    assert_eq!(funded.status, StatusCode::OK, "{:?}", funded.json());
    let b = api.hire(&[5_000]).await;
    for (user, step, body) in [
        (&b.client, "fund", json!({})),
        (&b.freelancer, "submit", json!({ "note": "done" })),
        (&b.client, "approve", json!({})),
    ] {
        let answer = api
            .post(user, &format!("{}/{step}", b.milestone_path(0)), &body)
            .await;
        assert_eq!(answer.status, StatusCode::OK, "{step}: {:?}", answer.json());
    }
    (a, b)
}

async fn last_position(pool: &PgPool) -> i64 {
    sqlx::query_scalar("select max(position) from events")
        .fetch_one(pool)
        .await
        .expect("the log")
}

/// The digest once the worker has folded everything up to `position`.
async fn kept_digest(api: &TestApi, auditor: &User, position: i64) -> Value {
    let answer = api.get_at(auditor, "/v1/audit/digest", position).await;
    assert_eq!(answer.status, StatusCode::OK, "{:?}", answer.json());
    answer.json()
}

async fn verify_digest(api: &TestApi, auditor: &User, kept: &Value) -> Value {
    let answer = api
        .get(
            auditor,
            &format!(
                "/v1/audit/digest/verify?position={}&digest={}",
                kept["position"],
                kept["digest"].as_str().expect("a digest")
            ),
        )
        .await;
    assert_eq!(answer.status, StatusCode::OK, "{:?}", answer.json());
    answer.json()
}

/// Runs `sql` as a superuser with the store's triggers off (what an insider could do).
async fn tamper(pool: &PgPool, sql: &str) {
    let mut admin = PgConnection::connect_with(&pool.connect_options())
        .await
        .expect("a connection");
    sqlx::query("set session_replication_role = replica")
        .execute(&mut admin)
        .await
        .expect("triggers off");
    sqlx::query(sql)
        .execute(&mut admin)
        .await
        .expect("tampered");
}

/// The log order of the event at `position`, from what the digest worker recorded or the log.
async fn key_of(pool: &PgPool, position: i64) -> (i64, i64) {
    let tx: i64 = sqlx::query_scalar(
        "select coalesce(
             (select transaction_id from ledger_digests where position = $1),
             (select transaction_id::text::bigint from events where position = $1))",
    )
    .bind(position)
    .fetch_one(pool)
    .await
    .expect("a key");
    (tx, position)
}

/// Asserts the digest check failed and located the change around `changed` (a log key): the
/// last checkpoint that agrees comes before it, the first that does not at or after it.
async fn assert_found_at(pool: &PgPool, check: &Value, changed: (i64, i64)) {
    assert_eq!(check["ok"], false, "{check:?}");
    let first = &check["first_difference"];
    let differs_by = first["differs_by"]
        .as_i64()
        .unwrap_or_else(|| panic!("where history differs: {check:?}"));
    assert!(
        key_of(pool, differs_by).await >= changed,
        "the first differing checkpoint is at or after the change: {check:?}"
    );
    if let Some(agrees) = first["agrees_up_to"].as_i64() {
        assert!(
            key_of(pool, agrees).await < changed,
            "the last agreeing checkpoint is before the change: {check:?}"
        );
    }
}

async fn chain_is_intact(api: &TestApi, auditor: &User) {
    let chain = api.get(auditor, "/v1/audit/verify").await;
    assert_eq!(
        chain.json()["ok"],
        true,
        "every remaining link is intact: the chain alone cannot see this: {:?}",
        chain.json()
    );
}

fn url_of_test_database(pool: &PgPool) -> String {
    let options = pool.connect_options();
    let mut url = url::Url::parse(&gigledger_tests::admin_url()).expect("a URL");
    url.set_path(options.get_database().expect("a database name"));
    url.to_string()
}

fn gigledger(args: &[&str], database_url: Option<&str>) -> Output {
    let mut command = Command::new(BIN);
    command.args(args).env("RUST_LOG", "warn");
    match database_url {
        Some(url) => command.env("DATABASE_URL", url),
        None => command.env_remove("DATABASE_URL"),
    };
    command.output().expect("the binary runs")
}

#[sqlx::test(migrator = "gigledger_projections::MIGRATOR")]
async fn a_kept_digest_verifies_while_the_log_grows_and_no_other_digest_does(pool: PgPool) {
    let api = TestApi::start(pool.clone()).await;
    activity(&api).await;
    let auditor = api.user(&[Role::Auditor]);
    let kept = kept_digest(&api, &auditor, last_position(&pool).await).await;
    let kept_key = key_of(&pool, kept["position"].as_i64().expect("a position")).await;
    let covered: i64 = sqlx::query_scalar(
        "select count(*) from events where (transaction_id, position) <= ($1::bigint::text::xid8, $2)",
    )
    .bind(kept_key.0)
    .bind(kept_key.1)
    .fetch_one(&pool)
    .await
    .expect("counted");
    assert_eq!(kept["events"].as_i64(), Some(covered), "{kept:?}");

    let check = verify_digest(&api, &auditor, &kept).await;
    assert_eq!(check["ok"], true, "{check:?}");
    assert_eq!(check["recomputed"]["digest"], kept["digest"]);

    // History goes on: what the digest proved still holds.
    activity(&api).await;
    let later = kept_digest(&api, &auditor, last_position(&pool).await).await;
    assert_ne!(later["digest"], kept["digest"]);
    assert_eq!(verify_digest(&api, &auditor, &kept).await["ok"], true);
    assert_eq!(verify_digest(&api, &auditor, &later).await["ok"], true);

    // Any other digest at that position is refuted, and since the log is intact every recorded
    // checkpoint agrees: nothing to locate.
    let mut forged = kept.clone();
    let digest = kept["digest"].as_str().expect("hex");
    let flipped = if digest.ends_with('0') { "1" } else { "0" };
    forged["digest"] = json!(format!("{}{flipped}", &digest[..63]));
    let refuted = verify_digest(&api, &auditor, &forged).await;
    assert_eq!(refuted["ok"], false, "{refuted:?}");
    assert_eq!(refuted["recomputed"]["digest"], kept["digest"]);
    assert!(refuted["first_difference"].is_null(), "{refuted:?}");

    // A position no event has.
    let mut nowhere = kept.clone();
    nowhere["position"] = json!(1_000_000);
    let missing = verify_digest(&api, &auditor, &nowhere).await;
    assert_eq!(missing["ok"], false);
    assert!(missing["recomputed"].is_null(), "{missing:?}");

    // Bad input is a problem naming the parameter; only auditors and admins may ask.
    for (query, field) in [
        ("position=1&digest=xyz", "digest"),
        ("position=1&digest=00", "digest"),
        (&*format!("digest={digest}"), "position"),
        (&*format!("position=-3&digest={digest}"), "position"),
    ] {
        let bad = api
            .get(&auditor, &format!("/v1/audit/digest/verify?{query}"))
            .await;
        assert_eq!(bad.status, StatusCode::BAD_REQUEST, "{query}");
        assert_eq!(bad.error_fields(), vec![field], "{query}");
    }
    for role in [Role::Client, Role::Freelancer, Role::Analyst] {
        let user = api.user(&[role]);
        for path in [
            "/v1/audit/digest".to_owned(),
            format!("/v1/audit/digest/verify?position=1&digest={digest}"),
            "/v1/audit/export".to_owned(),
        ] {
            assert_eq!(
                api.get(&user, &path).await.status,
                StatusCode::FORBIDDEN,
                "{role:?} {path}"
            );
        }
    }

    // The CLI says the same from the database.
    let url = url_of_test_database(&pool);
    let position = kept["position"].to_string();
    let ok = gigledger(
        &[
            "audit",
            "verify",
            "--position",
            &position,
            "--digest",
            digest,
        ],
        Some(&url),
    );
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    assert!(String::from_utf8_lossy(&ok.stdout).contains("is exactly what the kept digest proves"));
    api.stop().await;
}

#[sqlx::test(migrator = "gigledger_projections::MIGRATOR")]
async fn removing_the_last_event_of_a_stream_leaves_every_chain_intact_but_not_the_digest(
    pool: PgPool,
) {
    let api = TestApi::start(pool.clone()).await;
    let (a, _) = activity(&api).await;
    let auditor = api.user(&[Role::Auditor]);
    let kept = kept_digest(&api, &auditor, last_position(&pool).await).await;
    let removed: i64 = sqlx::query_scalar(
        "select position from events where aggregate_type = 'gig' and aggregate_id = $1
          order by sequence desc limit 1",
    )
    .bind(&a.gig)
    .fetch_one(&pool)
    .await
    .expect("the gig's last event");
    let removed_key = key_of(&pool, removed).await;
    tamper(
        &pool,
        &format!("delete from events where position = {removed}"),
    )
    .await;

    chain_is_intact(&api, &auditor).await;
    let check = verify_digest(&api, &auditor, &kept).await;
    assert_found_at(&pool, &check, removed_key).await;

    let url = url_of_test_database(&pool);
    let cli = gigledger(
        &[
            "audit",
            "verify",
            "--position",
            &kept["position"].to_string(),
            "--digest",
            kept["digest"].as_str().expect("hex"),
        ],
        Some(&url),
    );
    assert!(!cli.status.success());
    let said = String::from_utf8_lossy(&cli.stdout);
    assert!(said.contains("digest differs"), "{said}");
    assert!(said.contains("history first differs"), "{said}");
    api.stop().await;
}

#[sqlx::test(migrator = "gigledger_projections::MIGRATOR")]
async fn removing_a_whole_stream_is_found(pool: PgPool) {
    let api = TestApi::start(pool.clone()).await;
    let (_, b) = activity(&api).await;
    let auditor = api.user(&[Role::Auditor]);
    let kept = kept_digest(&api, &auditor, last_position(&pool).await).await;
    let first: i64 = sqlx::query_scalar(
        "select position from events where aggregate_type = 'gig' and aggregate_id = $1
          and sequence = 1",
    )
    .bind(&b.gig)
    .fetch_one(&pool)
    .await
    .expect("the gig's first event");
    let first_key = key_of(&pool, first).await;
    tamper(
        &pool,
        &format!(
            "delete from events where aggregate_type = 'gig' and aggregate_id = '{}'",
            b.gig
        ),
    )
    .await;

    chain_is_intact(&api, &auditor).await;
    let check = verify_digest(&api, &auditor, &kept).await;
    assert_found_at(&pool, &check, first_key).await;
    api.stop().await;
}

#[sqlx::test(migrator = "gigledger_projections::MIGRATOR")]
async fn an_event_inserted_back_dated_with_a_valid_chain_hash_is_found(pool: PgPool) {
    let api = TestApi::start(pool.clone()).await;
    let (a, _) = activity(&api).await;
    let auditor = api.user(&[Role::Auditor]);
    let kept = kept_digest(&api, &auditor, last_position(&pool).await).await;
    // The insider appends to a's gig stream, chained to its real last event, and places the row
    // early in the log (the transaction id of the log's first event).
    let (placed_tx, last_seq): (i64, i64) = sqlx::query_as(
        "select (select min(transaction_id)::text::bigint from events),
                (select max(sequence) from events where aggregate_type = 'gig' and aggregate_id = $1)",
    )
    .bind(&a.gig)
    .fetch_one(&pool)
    .await
    .expect("where to insert");
    tamper(
        &pool,
        &format!(
            "insert into events (aggregate_type, aggregate_id, sequence, event_type, event_version,
                                 payload, metadata, position, transaction_id, recorded_at,
                                 event_id, hash)
             overriding system value
             select p.aggregate_type, p.aggregate_id, p.sequence + 1, p.event_type, p.event_version,
                    p.payload, p.metadata, 1000000, '{placed_tx}'::xid8, p.recorded_at,
                    '00000000-0000-7000-8000-000000000001',
                    event_hash(p.hash, 1000000, p.aggregate_type, p.aggregate_id, p.sequence + 1,
                               '00000000-0000-7000-8000-000000000001', p.event_type,
                               p.event_version, p.payload, p.metadata, p.recorded_at)
               from events p
              where p.aggregate_type = 'gig' and p.aggregate_id = '{}' and p.sequence = {last_seq}",
            a.gig
        ),
    )
    .await;
    let chain = api
        .get(&auditor, "/v1/audit/verify?from=1&to=1000000")
        .await;
    assert_eq!(chain.status, StatusCode::BAD_REQUEST, "a span too wide");
    let chain = api
        .get(&auditor, "/v1/audit/verify?from=950000&to=1000000")
        .await;
    assert_eq!(
        chain.json()["ok"],
        true,
        "the inserted event's chain hash is valid: {:?}",
        chain.json()
    );
    assert_eq!(chain.json()["checked"], 1);
    let check = verify_digest(&api, &auditor, &kept).await;
    assert_found_at(&pool, &check, (placed_tx, 1_000_000)).await;
    api.stop().await;
}

#[sqlx::test(migrator = "gigledger_projections::MIGRATOR")]
async fn two_events_of_different_streams_swapped_in_the_order_are_found(pool: PgPool) {
    let api = TestApi::start(pool.clone()).await;
    let (a, b) = activity(&api).await;
    let auditor = api.user(&[Role::Auditor]);
    let kept = kept_digest(&api, &auditor, last_position(&pool).await).await;
    let (first, second): (i64, i64) = sqlx::query_as(
        "select (select position from events where aggregate_type = 'gig' and aggregate_id = $1 and sequence = 1),
                (select position from events where aggregate_type = 'gig' and aggregate_id = $2 and sequence = 1)",
    )
    .bind(&a.gig)
    .bind(&b.gig)
    .fetch_one(&pool)
    .await
    .expect("two streams' first events");
    let first_key = key_of(&pool, first).await;
    let second_key = key_of(&pool, second).await;
    tamper(
        &pool,
        &format!(
            "update events set transaction_id = case position
                 when {first} then '{}'::xid8 else '{}'::xid8 end
              where position in ({first}, {second})",
            second_key.0, first_key.0
        ),
    )
    .await;

    chain_is_intact(&api, &auditor).await;
    let check = verify_digest(&api, &auditor, &kept).await;
    assert_found_at(&pool, &check, first_key.min(second_key)).await;
    api.stop().await;
}

#[sqlx::test(migrator = "gigledger_projections::MIGRATOR")]
async fn an_export_verifies_offline_and_a_changed_byte_is_named_by_its_line(pool: PgPool) {
    let api = TestApi::start(pool.clone()).await;
    activity(&api).await;
    let auditor = api.user(&[Role::Auditor]);
    kept_digest(&api, &auditor, last_position(&pool).await).await;

    let export = api.get(&auditor, "/v1/audit/export").await;
    assert_eq!(export.status, StatusCode::OK);
    assert_eq!(export.header("content-type"), Some("application/jsonl"));
    let text = String::from_utf8(export.bytes.clone()).expect("UTF-8");
    let lines: Vec<&str> = text.lines().collect();
    let settled: i64 = sqlx::query_scalar("select count(*) from events")
        .fetch_one(&pool)
        .await
        .expect("counted");
    let exported = i64::try_from(lines.len()).expect("a count") - 2;
    assert!(
        exported >= 1 && exported <= settled,
        "{exported} of {settled}"
    );
    let end: Value = serde_json::from_str(lines.last().expect("a last line")).expect("JSON");
    let end = &end["end"];
    assert_eq!(end["events"].as_i64(), Some(exported));

    let dir = std::env::temp_dir().join(format!("gigledger-export-{}", uuid::Uuid::now_v7()));
    std::fs::create_dir_all(&dir).expect("a directory");
    let whole = dir.join("whole.jsonl");
    std::fs::write(&whole, &text).expect("written");
    let verified = gigledger(
        &["audit", "verify-export", whole.to_str().expect("a path")],
        None,
    );
    assert!(
        verified.status.success(),
        "{}",
        String::from_utf8_lossy(&verified.stderr)
    );
    let said = String::from_utf8_lossy(&verified.stdout);
    let end_digest = end["digest"].as_str().expect("hex");
    assert!(said.contains(end_digest), "{said}");
    // The file's end digest is one the service can prove.
    assert_eq!(verify_digest(&api, &auditor, end).await["ok"], true);

    // One byte changed in an amount of one event line: that line is named.
    let (number, line) = lines
        .iter()
        .enumerate()
        .find(|(_, l)| l.contains("\"FundsDeposited\""))
        .expect("a deposit line");
    let at = line
        .match_indices("\"amount\": ")
        .map(|(i, m)| i + m.len())
        .find(|&i| line.as_bytes()[i].is_ascii_digit())
        .expect("an amount");
    let mut bytes = text.clone().into_bytes();
    let offset = text
        .lines()
        .take(number)
        .map(|l| l.len() + 1)
        .sum::<usize>()
        + at;
    bytes[offset] = if bytes[offset] == b'9' { b'8' } else { b'9' };
    let changed = dir.join("changed.jsonl");
    std::fs::write(&changed, &bytes).expect("written");
    let refused = gigledger(
        &["audit", "verify-export", changed.to_str().expect("a path")],
        None,
    );
    assert!(!refused.status.success());
    let said = String::from_utf8_lossy(&refused.stderr);
    assert!(said.contains(&format!("line {}:", number + 1)), "{said}");

    // A removed event line: the file no longer adds up to its digest line.
    let mut without: Vec<&str> = lines.clone();
    without.remove(lines.len() - 2);
    let cut = dir.join("cut.jsonl");
    std::fs::write(&cut, without.join("\n") + "\n").expect("written");
    let refused = gigledger(
        &["audit", "verify-export", cut.to_str().expect("a path")],
        None,
    );
    assert!(!refused.status.success());
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains(&format!("line {}:", lines.len() - 1))
    );

    // Other spellings of the same content are refused too: nothing in the file is free.
    let header: Value = serde_json::from_str(lines[0]).expect("JSON");
    let first_event: Value = serde_json::from_str(lines[1]).expect("JSON");
    let hash = first_event["hash"].as_str().expect("a hash").to_owned();
    let recorded = first_event["recorded_at"]
        .as_str()
        .expect("a time")
        .to_owned();
    let forged_start = {
        let mut h = header.clone();
        h["start"] = json!({ "position": first_event["position"], "events": 1, "digest": hash });
        serde_json::to_string(&h).expect("JSON")
    };
    let variants: Vec<(&str, String, usize)> = vec![
        (
            "an uppercase hash",
            text.replacen(&hash, &hash.to_uppercase(), 1),
            2,
        ),
        (
            "another spelling of a time",
            text.replacen(&recorded, &recorded.replace('Z', "+00:00"), 1),
            2,
        ),
        ("CRLF line ends", text.replace('\n', "\r\n"), 1),
        (
            "the first event cut with a start digest to match",
            std::iter::once(forged_start.as_str())
                .chain(lines[2..].iter().copied())
                .collect::<Vec<_>>()
                .join("\n")
                + "\n",
            1,
        ),
    ];
    for (what, variant, line) in variants {
        let file = dir.join("variant.jsonl");
        std::fs::write(&file, &variant).expect("written");
        let refused = gigledger(
            &["audit", "verify-export", file.to_str().expect("a path")],
            None,
        );
        assert!(!refused.status.success(), "{what} verified");
        let said = String::from_utf8_lossy(&refused.stderr);
        assert!(said.contains(&format!("line {line}:")), "{what}: {said}");
    }

    // A part of the log: the CLI and the route write the same bytes, and the part verifies,
    // starting from the digest at its first position.
    let first: Value = serde_json::from_str(lines[1]).expect("JSON");
    let last: Value = serde_json::from_str(lines[lines.len() - 2]).expect("JSON");
    let (after, before) = (first["position"].to_string(), last["position"].to_string());
    let part = api
        .get(
            &auditor,
            &format!("/v1/audit/export?after={after}&before={before}"),
        )
        .await;
    assert_eq!(part.status, StatusCode::OK);
    let url = url_of_test_database(&pool);
    let cli = gigledger(
        &["audit", "export", "--after", &after, "--before", &before],
        Some(&url),
    );
    assert!(
        cli.status.success(),
        "{}",
        String::from_utf8_lossy(&cli.stderr)
    );
    assert_eq!(cli.stdout, part.bytes, "the CLI and the route export alike");
    let part_file = dir.join("part.jsonl");
    std::fs::write(&part_file, &part.bytes).expect("written");
    let verified = gigledger(
        &[
            "audit",
            "verify-export",
            part_file.to_str().expect("a path"),
        ],
        None,
    );
    assert!(
        verified.status.success(),
        "{}",
        String::from_utf8_lossy(&verified.stderr)
    );
    let header: Value = serde_json::from_str(
        String::from_utf8_lossy(&part.bytes)
            .lines()
            .next()
            .expect("a header"),
    )
    .expect("JSON");
    assert_eq!(header["start"]["events"], 1, "{header:?}");
    assert_eq!(
        i64::try_from(String::from_utf8_lossy(&part.bytes).lines().count()).expect("a count"),
        (exported - 2) + 2,
        "every event strictly between the two"
    );

    let bad = api.get(&auditor, "/v1/audit/export?after=1000000").await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    assert_eq!(bad.error_fields(), vec!["after"]);
    std::fs::remove_dir_all(&dir).expect("cleaned up");
    api.stop().await;
}

#[sqlx::test(migrator = "gigledger_projections::MIGRATOR")]
async fn the_cli_replays_an_aggregate_as_of_a_version(pool: PgPool) {
    let api = TestApi::start(pool.clone()).await;
    let (a, _) = activity(&api).await;
    let url = url_of_test_database(&pool);
    let replayed = gigledger(
        &["audit", "replay", "contract", &a.contract, "--version", "1"],
        Some(&url),
    );
    assert!(
        replayed.status.success(),
        "{}",
        String::from_utf8_lossy(&replayed.stderr)
    );
    let state: Value = serde_json::from_slice(&replayed.stdout).expect("JSON");
    assert_eq!(state["version"], 1);
    assert_eq!(state["aggregate_id"], a.contract.as_str());
    let auditor = api.user(&[Role::Auditor]);
    let served = api
        .get(
            &auditor,
            &format!("/v1/audit/streams/contract/{}/state?version=1", a.contract),
        )
        .await;
    assert_eq!(served.json()["state"], state["state"]);
    let missing = gigledger(
        &[
            "audit",
            "replay",
            "contract",
            &a.contract,
            "--version",
            "999",
        ],
        Some(&url),
    );
    assert!(!missing.status.success());
    api.stop().await;
}

#[sqlx::test(migrator = "gigledger_projections::MIGRATOR")]
async fn an_event_edited_with_its_hash_left_alone_is_found_by_the_digest_too(pool: PgPool) {
    let api = TestApi::start(pool.clone()).await;
    activity(&api).await;
    let auditor = api.user(&[Role::Auditor]);
    let kept = kept_digest(&api, &auditor, last_position(&pool).await).await;
    let edited: i64 =
        sqlx::query_scalar("select min(position) from events where event_type = 'FundsDeposited'")
            .fetch_one(&pool)
            .await
            .expect("a deposit");
    tamper(
        &pool,
        &format!(
            "update events set payload = jsonb_set(payload, '{{FundsDeposited,amount,amount}}', '1')
              where position = {edited}"
        ),
    )
    .await;
    let check = verify_digest(&api, &auditor, &kept).await;
    assert_eq!(check["ok"], false, "{check:?}");
    assert_eq!(check["edited_at"].as_i64(), Some(edited), "{check:?}");
    api.stop().await;
}
