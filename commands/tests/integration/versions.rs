//! The write side reads each stored event at its `event_version`: through the upcasters to the
//! version the code writes, and never a version they do not lead from as if it were the current
//! one.

use crate::common::{added, bus, meta, TallyCommand};
use gigledger_commands::bus::CommandError;
use gigledger_commands::store::{PgEventRepository, StoreConfig};
use sqlx::PgPool;

const NO_CACHE: StoreConfig = StoreConfig {
    snapshot_every: None,
    cache_capacity: 0,
};

#[sqlx::test(migrator = "gigledger_projections::MIGRATOR")]
async fn an_event_stored_at_a_version_this_code_does_not_write_is_refused_not_misread(
    pool: PgPool,
) {
    let repo = PgEventRepository::new(pool.clone());
    // A newer build's `Added`, whose version 2 might mean anything: its payload even decodes as
    // this build's version 1.
    let mut newer = added(5);
    newer.event_version = "2".to_owned();
    repo.append("tally", "t1", 0, &[added(1), newer], None)
        .await
        .unwrap();

    let tally = bus(&pool, NO_CACHE);
    let loaded = tally.load("t1").await;
    assert!(
        matches!(&loaded, Err(CommandError::Store(e)) if e.contains("version 2")),
        "{loaded:?}"
    );
    let sent = tally
        .execute("t1", TallyCommand::Add(1), &meta(), None)
        .await;
    assert!(matches!(sent, Err(CommandError::Store(_))), "{sent:?}");
    let events: i64 = sqlx::query_scalar("select count(*) from events")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(events, 2, "nothing was decided on a misread state");
}
