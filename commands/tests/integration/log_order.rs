//! The log's order at scale and under hostile writers: every log query reads through its index,
//! store-assigned columns cannot be forged, a stream never appears out of order, and the chain
//! check says what it cannot prove.

use gigledger_commands::store::{NewEvent, PgEventRepository};
use gigledger_projections::log::{
    self, read_after, verify_chain, Checkpoint, CHECKPOINT_OF, LAST_EVENT, PENDING_AFTER,
    READ_AFTER, STREAM_EVENTS,
};
use serde_json::{json, Value};
use sqlx::PgPool;
use uuid::Uuid;

use crate::common::added;

/// Fills `events` with `n` rows the way a long-lived store looks (many streams, many
/// transactions), bypassing the triggers so that it takes a moment, then analyses it.
async fn fill(pool: &PgPool, n: i64) {
    let mut conn = pool.acquire().await.unwrap();
    sqlx::query("set session_replication_role = replica")
        .execute(&mut *conn)
        .await
        .unwrap();
    sqlx::query(
        "insert into events (aggregate_type, aggregate_id, sequence, event_type, event_version,
                             payload, metadata, position, transaction_id, recorded_at, event_id,
                             hash)
         overriding system value
         select 'filler', 'stream-' || (i / 10), i % 10 + 1, 'Filled', '1', '{}', '{}', i,
                (i / 100 + 1)::text::xid8, now(), gen_random_uuid(), '\\x'::bytea
           from generate_series(1, $1) as i",
    )
    .bind(n)
    .execute(&mut *conn)
    .await
    .unwrap();
    sqlx::query("set session_replication_role = origin")
        .execute(&mut *conn)
        .await
        .unwrap();
    sqlx::query("analyze events")
        .execute(&mut *conn)
        .await
        .unwrap();
}

/// Every node of an `explain (format json)` plan.
fn nodes(plan: &Value, out: &mut Vec<Value>) {
    out.push(plan.clone());
    if let Some(children) = plan.get("Plans").and_then(Value::as_array) {
        for child in children {
            nodes(child, out);
        }
    }
}

/// The plan PostgreSQL picks for `sql` executed with `args` (SQL literals), generic or custom.
async fn plan_of(pool: &PgPool, sql: &str, args: &str, generic: bool) -> Vec<Value> {
    let mut conn = pool.acquire().await.unwrap();
    let mode = if generic {
        "force_generic_plan"
    } else {
        "force_custom_plan"
    };
    sqlx::query(&format!("set plan_cache_mode = {mode}"))
        .execute(&mut *conn)
        .await
        .unwrap();
    sqlx::query(&format!("prepare planned as {sql}"))
        .execute(&mut *conn)
        .await
        .unwrap();
    let execute = if args.is_empty() {
        "execute planned".to_owned()
    } else {
        format!("execute planned({args})")
    };
    let explained: Value = sqlx::query_scalar(&format!("explain (format json) {execute}"))
        .fetch_one(&mut *conn)
        .await
        .unwrap();
    sqlx::query("deallocate planned")
        .execute(&mut *conn)
        .await
        .unwrap();
    let mut all = Vec::new();
    nodes(&explained[0]["Plan"], &mut all);
    all
}

fn describe(plan: &[Value]) -> String {
    plan.iter()
        .map(|n| {
            format!(
                "{} {} {}",
                n["Node Type"].as_str().unwrap_or(""),
                n["Relation Name"].as_str().unwrap_or(""),
                n["Index Name"].as_str().unwrap_or("")
            )
        })
        .collect::<Vec<_>>()
        .join(" / ")
}

#[sqlx::test(migrator = "gigledger_projections::MIGRATOR")]
async fn every_query_that_reads_the_log_uses_its_index_and_never_scans_or_sorts(pool: PgPool) {
    const ROWS: i64 = 60_000;
    fill(&pool, ROWS).await;
    let start = "0, 0";
    let middle = format!("{}, {}", ROWS / 200, ROWS / 2);
    let end = format!("{}, {}", ROWS / 100 + 1, ROWS);
    let cases: Vec<(&str, &str, String, &str)> = vec![
        (
            "read_after from the start",
            READ_AFTER,
            format!("{start}, 500"),
            "events_global_order",
        ),
        (
            "read_after from the middle",
            READ_AFTER,
            format!("{middle}, 500"),
            "events_global_order",
        ),
        (
            "read_after at the end",
            READ_AFTER,
            format!("{end}, 500"),
            "events_global_order",
        ),
        (
            "pending after the start",
            PENDING_AFTER,
            start.to_owned(),
            "events_global_order",
        ),
        (
            "pending at the end",
            PENDING_AFTER,
            end.clone(),
            "events_global_order",
        ),
        (
            "the last event",
            LAST_EVENT,
            String::new(),
            "events_global_order",
        ),
        (
            "checkpoint of a position",
            CHECKPOINT_OF,
            "30000".to_owned(),
            "events_position_key",
        ),
        (
            "one stream",
            STREAM_EVENTS,
            "'filler', 'stream-42', 0, 100".to_owned(),
            "events_pkey",
        ),
    ];
    for (name, sql, args, index) in cases {
        for generic in [false, true] {
            let plan = plan_of(&pool, sql, &args, generic).await;
            let shown = describe(&plan);
            let kind = if generic { "generic" } else { "custom" };
            assert!(
                !plan
                    .iter()
                    .any(|n| n["Node Type"] == "Seq Scan" && n["Relation Name"] == "events"),
                "{name} ({kind} plan) scans the log: {shown}"
            );
            assert!(
                !plan
                    .iter()
                    .any(|n| matches!(n["Node Type"].as_str(), Some("Sort" | "Incremental Sort"))),
                "{name} ({kind} plan) sorts instead of reading in index order: {shown}"
            );
            assert!(
                plan.iter().any(|n| n["Index Name"] == index),
                "{name} ({kind} plan) does not use {index}: {shown}"
            );
        }
    }
}

fn forged_event() -> NewEvent {
    NewEvent {
        event_id: Uuid::now_v7(),
        event_type: "Added".to_owned(),
        event_version: "1".to_owned(),
        payload: json!({"Added": {"n": 1}}),
        metadata: json!({}),
    }
}

#[sqlx::test(migrator = "gigledger_projections::MIGRATOR")]
async fn the_app_role_cannot_name_a_store_assigned_column(pool: PgPool) {
    let columns = [
        ("transaction_id", "'5'::xid8"),
        ("position", "7"),
        ("recorded_at", "'2001-01-01T00:00:00Z'"),
        ("hash", "'\\x00'::bytea"),
    ];
    for (column, value) in columns {
        let mut tx = pool.begin().await.unwrap();
        sqlx::query("set local role gigledger_app")
            .execute(&mut *tx)
            .await
            .unwrap();
        let forged = sqlx::query(&format!(
            "insert into events (aggregate_type, aggregate_id, sequence, event_type,
                                 event_version, payload, metadata, event_id, {column})
             overriding system value
             values ('tally', 'forged', 1, 'Added', '1', '{{}}', '{{}}', gen_random_uuid(),
                     {value})"
        ))
        .execute(&mut *tx)
        .await;
        let error = forged.expect_err(&format!("the app role stored a forged {column}"));
        let code = error
            .as_database_error()
            .and_then(|e| e.code())
            .map(|c| c.into_owned());
        assert_eq!(
            code.as_deref(),
            Some("42501"),
            "{column}: expected a permission refusal, got {error}"
        );
    }
    // The columns it may name still work.
    let mut tx = pool.begin().await.unwrap();
    sqlx::query("set local role gigledger_app")
        .execute(&mut *tx)
        .await
        .unwrap();
    PgEventRepository::append_with(&mut *tx, "tally", "allowed", 0, &[forged_event()], None)
        .await
        .expect("the app role appends through the store's own statement");
    tx.commit().await.unwrap();
}

#[sqlx::test(migrator = "gigledger_projections::MIGRATOR")]
async fn the_database_replaces_forged_store_assigned_values_whoever_writes(pool: PgPool) {
    // The owner (here a superuser) can name every column: the trigger assigns them anyway.
    let row: (i64, i64, chrono::DateTime<chrono::Utc>, i64) = sqlx::query_as(
        "with forged as (
             insert into events (aggregate_type, aggregate_id, sequence, event_type,
                                 event_version, payload, metadata, event_id, position,
                                 transaction_id, recorded_at, hash)
             overriding system value
             values ('tally', 'forged', 1, 'Added', '1', '{}', '{}', gen_random_uuid(),
                     999999, '5'::xid8, '2001-01-01T00:00:00Z', '\\x00'::bytea)
             returning position, transaction_id, recorded_at
         )
         select position, transaction_id::text::bigint, recorded_at,
                pg_current_xact_id()::text::bigint
           from forged",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    let (position, transaction_id, recorded_at, writer) = row;
    assert_ne!(position, 999_999, "the forged position was kept");
    assert_eq!(
        transaction_id, writer,
        "the stored transaction id is not the writer's"
    );
    assert!(
        recorded_at > chrono::Utc::now() - chrono::Duration::hours(1),
        "the forged record time was kept: {recorded_at}"
    );
    let intact = verify_chain(&pool, 0, i64::MAX).await.unwrap();
    assert!(
        intact.is_intact(),
        "the hash does not cover the stored values"
    );
    // A reader sees it as the next event of the log (once every older transaction of the
    // cluster, another test's included, has ended).
    let mut read = Vec::new();
    for _ in 0..6000 {
        read = read_after(&pool, Checkpoint::START, 10).await.unwrap();
        if !read.is_empty() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(read.len(), 1);
    assert_eq!(read[0].transaction_id, writer);
}

#[sqlx::test(migrator = "gigledger_projections::MIGRATOR")]
async fn an_append_whose_predecessor_was_written_by_a_later_transaction_is_refused(pool: PgPool) {
    // T1 takes its transaction id by writing stream X first.
    let mut t1 = pool.begin().await.unwrap();
    PgEventRepository::append_with(&mut *t1, "tally", "x", 0, &[forged_event()], None)
        .await
        .unwrap();
    // T2 appends Y#1 and commits.
    let repo = PgEventRepository::new(pool.clone());
    repo.append("tally", "y", 0, &[forged_event()], None)
        .await
        .unwrap();
    // T1 now appends Y#2: in (transaction_id, position) order it would come before Y#1.
    let refused =
        PgEventRepository::append_with(&mut *t1, "tally", "y", 1, &[forged_event()], None).await;
    assert!(
        refused.is_err(),
        "an append that would put Y#2 before Y#1 in the global log was accepted"
    );
    drop(t1);
    // In a transaction of its own the same append is fine, and the log reads Y in order.
    repo.append("tally", "y", 1, &[forged_event()], None)
        .await
        .unwrap();
    let mut from = Checkpoint::START;
    let mut y = Vec::new();
    // Bounded: the settled horizon is the cluster's, so another test's long transaction can hold
    // the reader back for a while.
    for _ in 0..6000 {
        let batch = read_after(&pool, from, 100).await.unwrap();
        if let Some(last) = batch.last() {
            from = last.checkpoint();
        }
        y.extend(
            batch
                .into_iter()
                .filter(|e| e.aggregate_id == "y")
                .map(|e| e.sequence),
        );
        if y.len() == 2 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(y, vec![1, 2]);
}

#[sqlx::test(migrator = "gigledger_projections::MIGRATOR")]
async fn the_chain_check_says_it_cannot_see_a_removed_stream_tail(pool: PgPool) {
    let repo = PgEventRepository::new(pool.clone());
    for seq in 0..3 {
        repo.append("tally", "t", seq, &[added(1)], None)
            .await
            .unwrap();
    }
    let before = verify_chain(&pool, 0, i64::MAX).await.unwrap();
    assert!(before.is_intact());
    assert_eq!(before.checked, 3);
    // A superuser removes the stream's last event behind the triggers' back.
    let mut conn = pool.acquire().await.unwrap();
    sqlx::query("set session_replication_role = replica")
        .execute(&mut *conn)
        .await
        .unwrap();
    sqlx::query("delete from events where aggregate_id = 't' and sequence = 3")
        .execute(&mut *conn)
        .await
        .unwrap();
    drop(conn);
    let after = verify_chain(&pool, 0, i64::MAX).await.unwrap();
    // The chain alone cannot find it, and the report says so instead of claiming completeness.
    assert!(after.is_intact());
    assert_eq!(after.checked, 2);
    assert!(!after.proves_completeness);
    assert!(
        after
            .cannot_detect
            .iter()
            .any(|limit| limit.contains("last events")),
        "the report does not say what it cannot see: {:?}",
        after.cannot_detect
    );
    assert_eq!(after.cannot_detect, log::ChainReport::LIMITS.to_vec());
}

#[sqlx::test(migrator = "gigledger_projections::MIGRATOR")]
async fn temporary_objects_cannot_stand_in_for_the_stores_own(pool: PgPool) {
    // A session's temp tables and sequences come first in its search path; the trigger must not
    // take the epoch offset, the position or the predecessor from them.
    let mut conn = pool.acquire().await.unwrap();
    sqlx::raw_sql(
        "create temp table log_epochs as
             select epoch, system_identifier, 0::bigint as xid_offset from public.log_epochs;
         create temp sequence events_log_position start 1000000;
         create temp table events (like public.events);",
    )
    .execute(&mut *conn)
    .await
    .unwrap();
    let mut tx = sqlx::Connection::begin(&mut *conn).await.unwrap();
    sqlx::query(
        "update pg_temp.log_epochs set xid_offset = 5 - pg_current_xact_id()::text::bigint",
    )
    .execute(&mut *tx)
    .await
    .unwrap();
    let (position, transaction_id, writer): (i64, i64, i64) = sqlx::query_as(
        "with put as (
             insert into public.events (aggregate_type, aggregate_id, sequence, event_type,
                                        event_version, payload, metadata, event_id)
             values ('tally', 'shadowed', 1, 'Added', '1', '{}', '{}', gen_random_uuid())
             returning position, transaction_id
         )
         select position, transaction_id::text::bigint, pg_current_xact_id()::text::bigint
           from put",
    )
    .fetch_one(&mut *tx)
    .await
    .unwrap();
    tx.commit().await.unwrap();
    assert_eq!(
        transaction_id, writer,
        "the epoch offset came from a temp table"
    );
    assert!(
        position < 1_000_000,
        "the position came from a temp sequence"
    );
    let temp_allowed: bool = sqlx::query_scalar(
        "select has_database_privilege('gigledger_app', current_database(), 'TEMPORARY')",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert!(!temp_allowed, "the app role may create temporary objects");
}

#[sqlx::test(migrator = "gigledger_projections::MIGRATOR")]
async fn a_writer_older_than_a_new_epoch_still_appends_after_every_restored_event(pool: PgPool) {
    // Pretend the log was restored from a cluster far ahead: its last event has a transaction id
    // this server has not reached, and its epoch names another cluster.
    let mut conn = pool.acquire().await.unwrap();
    sqlx::raw_sql(
        "set session_replication_role = replica;
         insert into events (aggregate_type, aggregate_id, sequence, event_type, event_version,
                             payload, metadata, position, transaction_id, recorded_at, event_id,
                             hash)
         values ('tally', 'restored', 1, 'Added', '1', '{}', '{}', 1,
                 (pg_current_xact_id()::text::bigint + 100000)::text::xid8, now(),
                 gen_random_uuid(), '\\x'::bytea);
         select setval('events_log_position', 2, false);
         update log_epochs set system_identifier = 1;
         set session_replication_role = origin;",
    )
    .execute(&mut *conn)
    .await
    .unwrap();
    drop(conn);
    let top: i64 = sqlx::query_scalar(
        "select transaction_id::text::bigint from events where aggregate_id = 'restored'",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    // An outside writer takes its transaction id before the epoch begins...
    let mut older = pool.begin().await.unwrap();
    sqlx::query("select pg_current_xact_id()")
        .execute(&mut *older)
        .await
        .unwrap();
    for _ in 0..3 {
        sqlx::query("select pg_current_xact_id()")
            .execute(&pool)
            .await
            .unwrap();
    }
    let begun: bool = sqlx::query_scalar("select begin_log_epoch_if_moved()")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert!(begun);
    // ...and appends after it: it must still sort after every restored event.
    let appended =
        PgEventRepository::append_with(&mut *older, "tally", "late", 0, &[forged_event()], None)
            .await
            .unwrap();
    older.commit().await.unwrap();
    let stored: i64 =
        sqlx::query_scalar("select transaction_id::text::bigint from events where position = $1")
            .bind(appended[0].position)
            .fetch_one(&pool)
            .await
            .unwrap();
    assert!(
        stored > top,
        "an event appended after the epoch began sorts at {stored}, before the restored {top}"
    );
}
