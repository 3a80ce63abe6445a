//! The event store's guarantees, against the real PostgreSQL: append-only, optimistic concurrency,
//! snapshots, metadata.

use crate::common::{added, bus, meta, Tally, TallyCommand};
use cqrs_es::persist::PersistenceError;
use gigledger_commands::bus::CommandError;
use gigledger_commands::store::{PgEventRepository, SnapshotUpdate, StoreConfig};
use gigledger_domain::SnapshotSchema;
use sqlx::PgPool;

const NO_CACHE: StoreConfig = StoreConfig {
    snapshot_every: None,
    cache_capacity: 0,
};

#[sqlx::test(migrator = "gigledger_projections::MIGRATOR")]
async fn update_delete_and_truncate_on_events_are_refused_even_for_the_table_owner(pool: PgPool) {
    let tally = bus(&pool, NO_CACHE);
    tally
        .execute("t1", TallyCommand::Add(5), &meta(), None)
        .await
        .unwrap();
    let owner: bool = sqlx::query_scalar(
        "select pg_get_userbyid(relowner) = current_user from pg_class where relname = 'events'",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert!(owner, "the test connects as the table's owner");

    for statement in [
        "update events set payload = '{}'",
        "delete from events",
        "truncate events",
    ] {
        let err = sqlx::query(statement).execute(&pool).await.unwrap_err();
        assert!(
            err.to_string().contains("append-only"),
            "{statement} should be refused, got {err}"
        );
    }
    let count: i64 = sqlx::query_scalar("select count(*) from events")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(count, 1);
}

#[sqlx::test(migrator = "gigledger_projections::MIGRATOR")]
async fn the_application_role_may_only_read_and_append_events(pool: PgPool) {
    // INSERT is granted on the columns a writer decides only (see log_order.rs for the rest).
    let may_insert: bool =
        sqlx::query_scalar("select has_any_column_privilege('gigledger_app', 'events', 'INSERT')")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert!(may_insert, "gigledger_app may not append");
    for (privilege, granted) in [
        ("SELECT", true),
        ("INSERT", false),
        ("UPDATE", false),
        ("DELETE", false),
        ("TRUNCATE", false),
    ] {
        let has: bool =
            sqlx::query_scalar("select has_table_privilege('gigledger_app', 'events', $1)")
                .bind(privilege)
                .fetch_one(&pool)
                .await
                .unwrap();
        assert_eq!(has, granted, "gigledger_app {privilege} on events");
    }
}

#[sqlx::test(migrator = "gigledger_projections::MIGRATOR")]
async fn two_writers_at_the_same_version_exactly_one_commits_and_the_other_gets_a_conflict(
    pool: PgPool,
) {
    let repo = PgEventRepository::new(pool.clone());
    repo.append("tally", "t1", 0, &[added(1)], None)
        .await
        .unwrap();

    // Writer A appends version 2 and holds its transaction open; writer B tries the same version.
    let mut a = pool.begin().await.unwrap();
    PgEventRepository::append_with(&mut *a, "tally", "t1", 1, &[added(2)], None)
        .await
        .unwrap();
    let b = tokio::spawn({
        let repo = repo.clone();
        async move { repo.append("tally", "t1", 1, &[added(3)], None).await }
    });
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    assert!(!b.is_finished(), "B waits for A's uncommitted row");
    a.commit().await.unwrap();

    let b = b.await.unwrap();
    assert!(
        matches!(b, Err(PersistenceError::OptimisticLockError)),
        "B gets the typed conflict, got {b:?}"
    );
    let payloads: Vec<serde_json::Value> = sqlx::query_scalar(
        "select payload from events where aggregate_id = 't1' order by sequence",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(payloads.len(), 2);
    assert_eq!(payloads[1], serde_json::json!({ "Added": { "n": 2 } }));
}

#[sqlx::test(migrator = "gigledger_projections::MIGRATOR")]
async fn a_command_with_a_stale_expected_version_is_a_conflict_and_writes_nothing(pool: PgPool) {
    let tally = bus(&pool, StoreConfig::default());
    let first = tally
        .execute("t1", TallyCommand::Add(1), &meta(), Some(0))
        .await
        .unwrap()
        .receipt;
    assert_eq!(first.version, 1);
    tally
        .execute("t1", TallyCommand::Add(1), &meta(), Some(1))
        .await
        .unwrap();

    let stale = tally
        .execute("t1", TallyCommand::Add(100), &meta(), Some(1))
        .await;
    assert!(
        matches!(
            stale,
            Err(CommandError::Conflict {
                aggregate_type: "tally"
            })
        ),
        "{stale:?}"
    );
    let (state, version) = tally.load("t1").await.unwrap();
    assert_eq!((state.total, version), (2, 2));
}

#[sqlx::test(migrator = "gigledger_projections::MIGRATOR")]
async fn two_processes_with_warm_caches_race_and_both_land_through_retries(pool: PgPool) {
    // Two buses are two processes: each has its own cache, both warm at version 1.
    let one = bus(&pool, StoreConfig::default());
    let two = bus(&pool, StoreConfig::default());
    one.execute("t1", TallyCommand::Add(1), &meta(), None)
        .await
        .unwrap();
    two.load("t1").await.unwrap();

    one.execute("t1", TallyCommand::Add(10), &meta(), None)
        .await
        .unwrap();
    // `two` still believes version 1: its append loses, it reloads and retries on fresh state.
    let receipt = two
        .execute("t1", TallyCommand::Add(100), &meta(), None)
        .await
        .unwrap()
        .receipt;
    assert_eq!(receipt.version, 3);

    // With an expected version there is no retry: the stale writer is told.
    let three = bus(&pool, StoreConfig::default());
    three.load("t1").await.unwrap();
    one.execute("t1", TallyCommand::Add(1000), &meta(), None)
        .await
        .unwrap();
    let stale = three
        .execute("t1", TallyCommand::Add(1), &meta(), Some(3))
        .await;
    assert!(
        matches!(stale, Err(CommandError::Conflict { .. })),
        "{stale:?}"
    );

    let (state, version) = bus(&pool, NO_CACHE).load("t1").await.unwrap();
    assert_eq!((state.total, version), (1111, 4));
}

#[sqlx::test(migrator = "gigledger_projections::MIGRATOR")]
async fn a_rejected_command_writes_nothing_and_returns_the_domain_error(pool: PgPool) {
    let tally = bus(&pool, StoreConfig::default());
    let err = tally
        .execute("t1", TallyCommand::AddMany(vec![1, -1]), &meta(), None)
        .await
        .unwrap_err();
    assert_eq!(err.rejection(), Some(&crate::common::Negative::Negative));
    let count: i64 = sqlx::query_scalar("select count(*) from events")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(count, 0);
}

#[sqlx::test(migrator = "gigledger_projections::MIGRATOR")]
async fn a_receipt_gives_the_new_version_and_the_position_of_the_last_event(pool: PgPool) {
    let tally = bus(&pool, StoreConfig::default());
    let receipt = tally
        .execute("t1", TallyCommand::AddMany(vec![1, 2, 3]), &meta(), None)
        .await
        .unwrap()
        .receipt;
    assert_eq!(receipt.version, 3);
    assert_eq!(receipt.event_ids.len(), 3);
    let last: i64 = sqlx::query_scalar("select max(position) from events")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(receipt.position, Some(last));

    let nothing = tally
        .execute("t1", TallyCommand::Nothing, &meta(), None)
        .await
        .unwrap()
        .receipt;
    assert_eq!((nothing.version, nothing.position), (3, None));
}

#[sqlx::test(migrator = "gigledger_projections::MIGRATOR")]
async fn a_command_on_a_snapshotted_stream_loads_the_snapshot_and_only_the_newer_events(
    pool: PgPool,
) {
    let config = StoreConfig {
        snapshot_every: Some(3),
        cache_capacity: 0,
    };
    let tally = bus(&pool, config);
    for n in 1..=7 {
        tally
            .execute("t1", TallyCommand::Add(n), &meta(), None)
            .await
            .unwrap();
    }
    let (last_sequence, snapshot_total): (i64, i64) = sqlx::query_as(
        "select last_sequence, (payload->>'total')::bigint from snapshots where aggregate_id = 't1'",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!((last_sequence, snapshot_total), (6, 21));

    // Mark the snapshot: if the load used it, the marker shows in the state; events 1..=6 (which
    // sum to 21) were then not replayed.
    sqlx::query("update snapshots set payload = jsonb_set(payload, '{total}', '1000')")
        .execute(&pool)
        .await
        .unwrap();
    let stream = tally
        .store()
        .repository()
        .load("tally", "t1", Some(Tally::SNAPSHOT_VERSION))
        .await
        .unwrap();
    assert_eq!(
        stream.events.len(),
        1,
        "only event 7 is read beside the snapshot"
    );
    let (state, version) = tally.load("t1").await.unwrap();
    assert_eq!((state.total, version), (1007, 7));
}

#[sqlx::test(migrator = "gigledger_projections::MIGRATOR")]
async fn a_conflicting_append_writes_neither_events_nor_snapshot(pool: PgPool) {
    let repo = PgEventRepository::new(pool.clone());
    repo.append("tally", "t1", 0, &[added(1), added(2)], None)
        .await
        .unwrap();
    // A stale writer thinks the stream is at 1 and would snapshot version 2.
    let stale = SnapshotUpdate {
        last_sequence: 2,
        schema_version: Tally::SNAPSHOT_VERSION,
        payload: serde_json::json!({ "total": -1, "additions": 0 }),
    };
    let err = repo
        .append("tally", "t1", 1, &[added(5)], Some(&stale))
        .await
        .unwrap_err();
    assert!(
        matches!(err, PersistenceError::OptimisticLockError),
        "{err:?}"
    );
    let snapshots: i64 = sqlx::query_scalar("select count(*) from snapshots")
        .fetch_one(&pool)
        .await
        .unwrap();
    let events: i64 = sqlx::query_scalar("select count(*) from events")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!((snapshots, events), (0, 2));
}

#[sqlx::test(migrator = "gigledger_projections::MIGRATOR")]
async fn a_newer_snapshot_row_never_fails_a_command_nor_goes_backwards(pool: PgPool) {
    let repo = PgEventRepository::new(pool.clone());
    repo.append("tally", "t1", 0, &[added(1)], None)
        .await
        .unwrap();
    sqlx::query(
        "insert into snapshots values ('tally', 't1', 50, 7, '{\"total\": 99, \"additions\": 50}')",
    )
    .execute(&pool)
    .await
    .unwrap();
    let older = SnapshotUpdate {
        last_sequence: 2,
        schema_version: Tally::SNAPSHOT_VERSION,
        payload: serde_json::json!({ "total": 3, "additions": 2 }),
    };
    let appended = repo
        .append("tally", "t1", 1, &[added(2)], Some(&older))
        .await
        .unwrap();
    assert_eq!(appended.len(), 1);
    let (last_sequence, count): (i64, i64) =
        sqlx::query_as("select last_sequence, current_snapshot from snapshots")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!((last_sequence, count), (50, 7));
}

#[sqlx::test(migrator = "gigledger_projections::MIGRATOR")]
async fn every_appended_event_carries_event_id_correlation_causation_actor_and_time(pool: PgPool) {
    let tally = bus(&pool, StoreConfig::default());
    let metadata = meta();
    let receipt = tally
        .execute("t1", TallyCommand::Add(1), &metadata, None)
        .await
        .unwrap()
        .receipt;

    let (event_id, correlation, causation, stored): (
        uuid::Uuid,
        String,
        String,
        serde_json::Value,
    ) = sqlx::query_as("select event_id, correlation_id, causation_id, metadata from events")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(receipt.event_ids, vec![event_id]);
    assert_eq!(correlation, metadata.correlation_id);
    assert_eq!(causation, metadata.causation_id);
    assert_eq!(stored["actor_id"], metadata.actor_id.as_str());
    assert_eq!(stored["actor_role"], "client");
    let time = stored["command_time"].as_str().unwrap();
    let parsed = chrono::DateTime::parse_from_rfc3339(time).unwrap();
    assert_eq!(
        parsed,
        metadata
            .at
            .with_timezone(&parsed.timezone())
            .trunc_subsecs_micros()
    );
}

trait TruncMicros {
    fn trunc_subsecs_micros(self) -> Self;
}

impl<Tz: chrono::TimeZone> TruncMicros for chrono::DateTime<Tz> {
    fn trunc_subsecs_micros(self) -> Self {
        chrono::SubsecRound::trunc_subsecs(self, 6)
    }
}

#[sqlx::test(migrator = "gigledger_projections::MIGRATOR")]
async fn the_state_survives_a_restart(pool: PgPool) {
    let tally = bus(&pool, StoreConfig::default());
    tally
        .execute("t1", TallyCommand::AddMany(vec![2, 3]), &meta(), None)
        .await
        .unwrap();
    let fresh = bus(&pool, StoreConfig::default());
    assert_eq!(
        fresh.load("t1").await.unwrap(),
        (
            Tally {
                total: 5,
                additions: 2
            },
            2
        )
    );
}

#[sqlx::test(migrator = "gigledger_projections::MIGRATOR")]
async fn a_refusal_decided_on_a_stale_cache_is_decided_again_on_the_database(pool: PgPool) {
    let stale = bus(&pool, StoreConfig::default());
    let other_process = bus(&pool, StoreConfig::default());
    stale
        .execute("t1", TallyCommand::Add(1), &meta(), None)
        .await
        .unwrap();
    other_process
        .execute("t1", TallyCommand::Add(10), &meta(), None)
        .await
        .unwrap();

    // `stale` still believes the total is 1; the database says 11.
    let receipt = stale
        .execute(
            "t1",
            TallyCommand::AddIfAtLeast { threshold: 5, n: 1 },
            &meta(),
            None,
        )
        .await
        .unwrap()
        .receipt;
    assert_eq!(receipt.version, 3);
}

#[sqlx::test(migrator = "gigledger_projections::MIGRATOR")]
async fn a_no_op_decided_on_a_stale_cache_is_decided_again_on_the_database(pool: PgPool) {
    let stale = bus(&pool, StoreConfig::default());
    let other_process = bus(&pool, StoreConfig::default());
    stale
        .execute("t1", TallyCommand::Add(11), &meta(), None)
        .await
        .unwrap();
    other_process
        .execute("t1", TallyCommand::Add(5), &meta(), None)
        .await
        .unwrap();

    // On its cache the total is already 11 (nothing to write); on the database it is 16.
    stale
        .execute("t1", TallyCommand::SetTo(11), &meta(), None)
        .await
        .unwrap();
    let (state, version) = bus(&pool, NO_CACHE).load("t1").await.unwrap();
    assert_eq!((state.total, version), (11, 3));
}
