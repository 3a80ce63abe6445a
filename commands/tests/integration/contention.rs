//! Contention alone never fails a command that gave no expected version: commands on one
//! aggregate queue inside a process, and the conflicts that remain (with other processes) are
//! retried with backoff.

use std::sync::Arc;

use crate::common::{bus, meta, Tally, TallyCommand};
use gigledger_commands::bus::CommandBus;
use gigledger_commands::store::StoreConfig;
use sqlx::PgPool;

const COMMANDS: usize = 32;

/// Sends `COMMANDS` commands at once to aggregate `t1`, spread over `buses` in turn, and returns
/// each one's result.
async fn send_at_once(buses: &[Arc<CommandBus<Tally>>]) -> Vec<Result<u64, String>> {
    let tasks: Vec<_> = (0..COMMANDS)
        .map(|i| {
            let bus = Arc::clone(&buses[i % buses.len()]);
            tokio::spawn(async move {
                bus.execute("t1", TallyCommand::Add(1), &meta(), None)
                    .await
                    .map(|committed| committed.receipt.version)
                    .map_err(|e| e.to_string())
            })
        })
        .collect();
    let mut results = Vec::with_capacity(COMMANDS);
    for task in tasks {
        results.push(task.await.unwrap());
    }
    results
}

fn assert_all_landed(results: &[Result<u64, String>]) {
    let failed: Vec<_> = results.iter().filter_map(|r| r.as_ref().err()).collect();
    assert!(failed.is_empty(), "{} failed: {failed:?}", failed.len());
    let mut versions: Vec<u64> = results.iter().filter_map(|r| r.clone().ok()).collect();
    versions.sort_unstable();
    let every_version: Vec<u64> = (1..=u64::try_from(COMMANDS).unwrap()).collect();
    assert_eq!(versions, every_version, "each command made one version");
}

#[sqlx::test(migrator = "gigledger_projections::MIGRATOR")]
async fn thirty_two_concurrent_commands_on_one_aggregate_in_one_process_all_succeed(pool: PgPool) {
    let one = Arc::new(bus(&pool, StoreConfig::default()));

    let results = send_at_once(&[one]).await;

    assert_all_landed(&results);
    let (state, version) = bus(&pool, StoreConfig::default()).load("t1").await.unwrap();
    assert_eq!(
        (state.total, version),
        (
            i64::try_from(COMMANDS).unwrap(),
            u64::try_from(COMMANDS).unwrap()
        )
    );
}

#[sqlx::test(migrator = "gigledger_projections::MIGRATOR")]
async fn thirty_two_concurrent_commands_on_one_aggregate_from_two_processes_all_succeed(
    pool: PgPool,
) {
    // Two buses are two processes: each has its own cache and its own queue.
    let one = Arc::new(bus(&pool, StoreConfig::default()));
    let two = Arc::new(bus(&pool, StoreConfig::default()));

    let results = send_at_once(&[one, two]).await;

    assert_all_landed(&results);
    let (state, version) = bus(&pool, StoreConfig::default()).load("t1").await.unwrap();
    assert_eq!(
        (state.total, version),
        (
            i64::try_from(COMMANDS).unwrap(),
            u64::try_from(COMMANDS).unwrap()
        )
    );
}
