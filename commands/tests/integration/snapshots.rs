//! Snapshots are versioned: a snapshot is used only when it was written with the aggregate's
//! current `SNAPSHOT_VERSION`; any other falls back to replaying the stream.

use crate::common::{bus, meta, Tally, TallyCommand};
use gigledger_commands::store::StoreConfig;
use gigledger_domain::SnapshotSchema;
use sqlx::PgPool;

const SNAPSHOT_EVERY_3: StoreConfig = StoreConfig {
    snapshot_every: Some(3),
    cache_capacity: 0,
};

const NEVER_SNAPSHOT: StoreConfig = StoreConfig {
    snapshot_every: None,
    cache_capacity: 0,
};

async fn add_one_to_six(pool: &PgPool, config: StoreConfig) {
    let tally = bus(pool, config);
    for n in 1..=6 {
        tally
            .execute("t1", TallyCommand::Add(n), &meta(), None)
            .await
            .unwrap();
    }
}

#[sqlx::test(migrator = "gigledger_projections::MIGRATOR")]
async fn a_snapshot_written_without_a_schema_version_is_ignored_and_the_stream_replayed(
    pool: PgPool,
) {
    add_one_to_six(&pool, NEVER_SNAPSHOT).await;
    // A snapshot as written before versions existed (or by postgres-es), holding a state that
    // replay would never give: if it were used, the total would be 1000.
    sqlx::query(
        "insert into snapshots (aggregate_type, aggregate_id, last_sequence, current_snapshot,
                                payload)
         values ('tally', 't1', 6, 1, '{\"total\": 1000, \"additions\": 6}')",
    )
    .execute(&pool)
    .await
    .unwrap();

    let (state, version) = bus(&pool, SNAPSHOT_EVERY_3).load("t1").await.unwrap();

    assert_eq!((state.total, state.additions, version), (21, 6, 6));
}

#[sqlx::test(migrator = "gigledger_projections::MIGRATOR")]
async fn a_snapshot_of_an_older_schema_version_is_ignored_and_the_next_one_has_the_current_version(
    pool: PgPool,
) {
    add_one_to_six(&pool, SNAPSHOT_EVERY_3).await;
    let written: i32 = sqlx::query_scalar("select schema_version from snapshots")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(written, Tally::SNAPSHOT_VERSION);
    // The same snapshot as an older state schema would have written it, with a field whose
    // meaning has changed since: the current code must not believe it.
    sqlx::query(
        "update snapshots
            set schema_version = $1, payload = '{\"total\": 1000, \"additions\": 6}'",
    )
    .bind(Tally::SNAPSHOT_VERSION - 1)
    .execute(&pool)
    .await
    .unwrap();

    let tally = bus(&pool, SNAPSHOT_EVERY_3);
    let (state, version) = tally.load("t1").await.unwrap();
    assert_eq!((state.total, version), (21, 6), "replayed, not read");

    // Commands go on from the replayed state, and the next snapshot is of the current version.
    for n in 7..=9 {
        tally
            .execute("t1", TallyCommand::Add(n), &meta(), None)
            .await
            .unwrap();
    }
    let (last_sequence, schema_version, total): (i64, i32, i64) = sqlx::query_as(
        "select last_sequence, schema_version, (payload->>'total')::bigint from snapshots",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(
        (last_sequence, schema_version, total),
        (9, Tally::SNAPSHOT_VERSION, 45)
    );
    let stream = tally
        .store()
        .repository()
        .load("tally", "t1", Some(Tally::SNAPSHOT_VERSION))
        .await
        .unwrap();
    assert_eq!(stream.snapshot.map(|(_, at, _)| at), Some(9));
    assert!(stream.events.is_empty(), "the new snapshot is used");
}
