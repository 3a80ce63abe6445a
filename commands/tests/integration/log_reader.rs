//! The global log: ordered, gap-safe, and tamper-evident.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use gigledger_commands::store::PgEventRepository;
use gigledger_projections::log::{read_after, verify_chain, Checkpoint, RecordedEvent};
use rand::Rng;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::PgPool;

use crate::common::added;

/// Reads everything settled after `from`, returning the events and the new checkpoint.
async fn drain(pool: &PgPool, mut from: Checkpoint) -> (Vec<RecordedEvent>, Checkpoint) {
    let mut seen = Vec::new();
    loop {
        let batch = read_after(pool, from, 3).await.unwrap();
        let Some(last) = batch.last() else {
            return (seen, from);
        };
        from = last.checkpoint();
        seen.extend(batch);
    }
}

/// Reads until `count` events have arrived after `from` (bounded). The settled bound is the
/// oldest open writer of the whole cluster, so a writer in another test's database can hold a
/// reader back for a moment: correct, only conservative.
async fn drain_until(
    pool: &PgPool,
    from: Checkpoint,
    count: usize,
) -> (Vec<RecordedEvent>, Checkpoint) {
    let mut seen = Vec::new();
    let mut checkpoint = from;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while seen.len() < count && tokio::time::Instant::now() < deadline {
        let (more, next) = drain(pool, checkpoint).await;
        checkpoint = next;
        if more.is_empty() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        seen.extend(more);
    }
    (seen, checkpoint)
}

fn streams(events: &[RecordedEvent]) -> Vec<(String, i64)> {
    events
        .iter()
        .map(|e| (e.aggregate_id.clone(), e.sequence))
        .collect()
}

#[sqlx::test(migrator = "gigledger_projections::MIGRATOR")]
async fn a_reader_never_passes_an_open_writer_and_then_returns_both_in_order_once(pool: PgPool) {
    let repo = PgEventRepository::new(pool.clone());
    // A takes the lower position and stays open.
    let mut a = pool.begin().await.unwrap();
    let a_pos = PgEventRepository::append_with(&mut *a, "tally", "a", 0, &[added(1)], None)
        .await
        .unwrap()[0]
        .position;
    // B takes a higher position and commits.
    let b_pos = repo
        .append("tally", "b", 0, &[added(2)], None)
        .await
        .unwrap()[0]
        .position;
    assert!(a_pos < b_pos);

    let (seen, checkpoint) = drain(&pool, Checkpoint::START).await;
    assert!(
        seen.is_empty(),
        "B must not be returned before A: {:?}",
        streams(&seen)
    );

    a.commit().await.unwrap();
    let (seen, checkpoint) = drain_until(&pool, checkpoint, 2).await;
    assert_eq!(
        seen.iter().map(|e| e.position).collect::<Vec<_>>(),
        vec![a_pos, b_pos]
    );
    let (again, _) = drain(&pool, checkpoint).await;
    assert!(again.is_empty(), "each event is returned exactly once");
}

#[sqlx::test(migrator = "gigledger_projections::MIGRATOR")]
async fn a_rolled_back_append_leaves_a_hole_that_the_reader_passes_over(pool: PgPool) {
    let repo = PgEventRepository::new(pool.clone());
    repo.append("tally", "a", 0, &[added(1)], None)
        .await
        .unwrap();
    let mut doomed = pool.begin().await.unwrap();
    let hole = PgEventRepository::append_with(&mut *doomed, "tally", "b", 0, &[added(2)], None)
        .await
        .unwrap()[0]
        .position;
    doomed.rollback().await.unwrap();
    repo.append("tally", "c", 0, &[added(3)], None)
        .await
        .unwrap();
    repo.append("tally", "a", 1, &[added(4)], None)
        .await
        .unwrap();

    let (seen, _) = drain_until(&pool, Checkpoint::START, 3).await;
    let positions: Vec<i64> = seen.iter().map(|e| e.position).collect();
    assert!(!positions.contains(&hole));
    assert_eq!(
        streams(&seen),
        vec![("a".into(), 1), ("c".into(), 1), ("a".into(), 2)]
    );
}

#[sqlx::test(migrator = "gigledger_projections::MIGRATOR")]
async fn concurrent_writers_with_random_delays_are_all_read_once_in_stream_order(
    pool_options: PgPoolOptions,
    connect_options: PgConnectOptions,
) {
    const WRITERS: usize = 8;
    // One connection per writer plus the reader's.
    let pool = pool_options
        .max_connections(12)
        .connect_with(connect_options)
        .await
        .unwrap();
    const STREAMS: usize = 5;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(3);
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));

    let mut writers = Vec::new();
    for w in 0..WRITERS {
        let pool = pool.clone();
        writers.push(tokio::spawn(async move {
            let mut committed: Vec<(String, i64)> = Vec::new();
            while tokio::time::Instant::now() < deadline {
                let (stream, delay_before, delay_after, roll_back) = {
                    let mut rng = rand::thread_rng();
                    (
                        format!("s{}", rng.gen_range(0..STREAMS)),
                        rng.gen_range(0..15),
                        rng.gen_range(0..15),
                        rng.gen_ratio(1, 10),
                    )
                };
                let mut tx = pool.begin().await.unwrap();
                tokio::time::sleep(Duration::from_millis(delay_before)).await;
                // A read takes no transaction id; the append below is the first write.
                let version: i64 = sqlx::query_scalar(
                    "select coalesce(max(sequence), 0) from events where aggregate_id = $1",
                )
                .bind(&stream)
                .fetch_one(&mut *tx)
                .await
                .unwrap();
                let result = PgEventRepository::append_with(
                    &mut *tx,
                    "tally",
                    &stream,
                    version,
                    &[added(i64::try_from(w).unwrap()), added(1)],
                    None,
                )
                .await;
                tokio::time::sleep(Duration::from_millis(delay_after)).await;
                match result {
                    Ok(rows) if !roll_back => {
                        tx.commit().await.unwrap();
                        committed.extend(rows.iter().map(|r| (stream.clone(), r.sequence)));
                    }
                    // Lost a race (the typed conflict) or chose to roll back: nothing committed.
                    _ => tx.rollback().await.unwrap(),
                }
            }
            committed
        }));
    }

    let reader = tokio::spawn({
        let pool = pool.clone();
        let done = done.clone();
        async move {
            let mut seen = Vec::new();
            let mut checkpoint = Checkpoint::START;
            loop {
                // Once the writers are done, the end is the last committed event in log order;
                // an empty read before it only means an older transaction elsewhere in the
                // cluster is still open.
                let end = if done.load(std::sync::atomic::Ordering::SeqCst) {
                    let (transaction_id, position): (i64, i64) = sqlx::query_as(
                        "select transaction_id::text::bigint, position from events
                          order by transaction_id desc, position desc limit 1",
                    )
                    .fetch_one(&pool)
                    .await
                    .unwrap();
                    Some(Checkpoint {
                        transaction_id,
                        position,
                    })
                } else {
                    None
                };
                let batch = read_after(&pool, checkpoint, 50).await.unwrap();
                if let Some(last) = batch.last() {
                    checkpoint = last.checkpoint();
                    seen.extend(batch);
                } else if end.is_some_and(|end| checkpoint >= end) {
                    return seen;
                } else {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            }
        }
    });

    let mut committed = HashSet::new();
    for w in writers {
        committed.extend(w.await.unwrap());
    }
    done.store(true, std::sync::atomic::Ordering::SeqCst);
    let seen = reader.await.unwrap();

    let seen_keys: Vec<(String, i64)> = streams(&seen);
    let unique: HashSet<(String, i64)> = seen_keys.iter().cloned().collect();
    assert_eq!(unique.len(), seen_keys.len(), "no event is read twice");
    assert_eq!(unique, committed, "every committed event is read");
    assert!(
        committed.len() > 20,
        "the run wrote enough to mean something: {}",
        committed.len()
    );
    let mut last_in_stream: HashMap<String, i64> = HashMap::new();
    for (stream, sequence) in seen_keys {
        let previous = last_in_stream.insert(stream.clone(), sequence).unwrap_or(0);
        assert_eq!(
            sequence,
            previous + 1,
            "stream {stream} is read in sequence order"
        );
    }
}

#[sqlx::test(migrator = "gigledger_projections::MIGRATOR")]
async fn an_untouched_store_verifies_clean(pool: PgPool) {
    let repo = PgEventRepository::new(pool.clone());
    repo.append("tally", "a", 0, &[added(1), added(2), added(3)], None)
        .await
        .unwrap();
    repo.append("tally", "b", 0, &[added(4)], None)
        .await
        .unwrap();
    let report = verify_chain(&pool, 0, i64::MAX).await.unwrap();
    assert!(report.is_intact(), "{report:?}");
    assert_eq!(report.checked, 4);
}

#[sqlx::test(migrator = "gigledger_projections::MIGRATOR")]
async fn a_payload_changed_behind_the_triggers_is_reported_with_its_stream_and_sequence(
    pool: PgPool,
) {
    let repo = PgEventRepository::new(pool.clone());
    repo.append("tally", "a", 0, &[added(1), added(2), added(3)], None)
        .await
        .unwrap();
    repo.append("tally", "b", 0, &[added(4)], None)
        .await
        .unwrap();

    // A superuser switches triggers off for the session and edits history.
    let mut conn = pool.acquire().await.unwrap();
    sqlx::query("set session_replication_role = replica")
        .execute(&mut *conn)
        .await
        .unwrap();
    sqlx::query(
        "update events set payload = '{\"Added\": {\"n\": 1000}}'
          where aggregate_id = 'a' and sequence = 2",
    )
    .execute(&mut *conn)
    .await
    .unwrap();
    sqlx::query("set session_replication_role = origin")
        .execute(&mut *conn)
        .await
        .unwrap();
    drop(conn);

    let report = verify_chain(&pool, 0, i64::MAX).await.unwrap();
    let broken = report.first_broken.expect("the edit is detected");
    assert_eq!(
        (
            broken.aggregate_type.as_str(),
            broken.aggregate_id.as_str(),
            broken.sequence
        ),
        ("tally", "a", 2)
    );
    assert_eq!(report.checked, 4);
}

#[sqlx::test(migrator = "gigledger_projections::MIGRATOR")]
async fn a_rewritten_hash_is_caught_at_the_next_event_of_the_stream(pool: PgPool) {
    let repo = PgEventRepository::new(pool.clone());
    repo.append("tally", "a", 0, &[added(1), added(2), added(3)], None)
        .await
        .unwrap();
    let mut conn = pool.acquire().await.unwrap();
    sqlx::query("set session_replication_role = replica")
        .execute(&mut *conn)
        .await
        .unwrap();
    // Edit event 2 and recompute its own hash, as a careful forger would.
    sqlx::query(
        "update events e set payload = '{\"Added\": {\"n\": 1000}}',
                hash = event_hash(p.hash, e.position, e.aggregate_type, e.aggregate_id, e.sequence,
                                  e.event_id, e.event_type, e.event_version,
                                  '{\"Added\": {\"n\": 1000}}', e.metadata, e.recorded_at)
           from events p
          where e.aggregate_id = 'a' and e.sequence = 2 and p.aggregate_id = 'a' and p.sequence = 1",
    )
    .execute(&mut *conn)
    .await
    .unwrap();
    sqlx::query("set session_replication_role = origin")
        .execute(&mut *conn)
        .await
        .unwrap();
    drop(conn);

    let broken = verify_chain(&pool, 0, i64::MAX)
        .await
        .unwrap()
        .first_broken
        .unwrap();
    assert_eq!((broken.aggregate_id.as_str(), broken.sequence), ("a", 3));
}

#[sqlx::test(migrator = "gigledger_projections::MIGRATOR")]
async fn a_failed_read_is_an_error_not_an_empty_log(pool: PgPool) {
    PgEventRepository::new(pool.clone())
        .append("tally", "a", 0, &[added(1)], None)
        .await
        .unwrap();
    pool.close().await;
    assert!(read_after(&pool, Checkpoint::START, 10).await.is_err());
}
