//! Rebuilding a read model and swapping it in; the analyst role's reach (details in
//! `read_privacy.rs`).

use std::sync::Arc;

use gigledger_commands::clock::SystemClock;
use gigledger_commands::services::{RequestContext, Services, ServicesConfig};
use gigledger_domain::{
    Actor, Budget, Currency, GigCommand, GigId, Money, Role, SimulatedGateway, UserId,
};
use gigledger_projections::runtime::{catch_up, load_checkpoint, Target};
use sqlx::PgPool;

async fn post_gigs(pool: &PgPool, count: usize) {
    let services = Services::new(
        pool.clone(),
        ServicesConfig::default(),
        Arc::new(SimulatedGateway::new()),
        Arc::new(SystemClock),
    );
    let client = Actor::new(UserId::new(), vec![Role::Client]);
    for n in 0..count {
        let gig = GigId::new();
        services
            .gig(
                gig,
                GigCommand::PostGig {
                    gig_id: gig,
                    title: format!("Gig {n}"),
                    description: "Something to do.".into(),
                    skills: vec!["writing".into()],
                    budget: Budget::Fixed {
                        amount: Money::new(10_000, Currency::EUR),
                    },
                    deadline: None,
                    actor: client.clone(),
                    at: services.now(),
                },
                &RequestContext::new(),
            )
            .await
            .unwrap();
    }
}

fn gig_board() -> Arc<dyn gigledger_projections::runtime::Handler> {
    gigledger_projections::read::all()
        .into_iter()
        .find(|h| h.name() == "gig_board")
        .unwrap()
}

async fn board_rows(pool: &PgPool) -> Vec<String> {
    sqlx::query_scalar("select to_jsonb(t)::text from read.gig_board t order by 1")
        .fetch_all(pool)
        .await
        .unwrap()
}

#[sqlx::test(migrator = "gigledger_projections::MIGRATOR")]
async fn a_rebuild_replays_from_zero_and_swaps_in_an_identical_read_model(pool: PgPool) {
    post_gigs(&pool, 30).await;
    let handler = gig_board();
    catch_up(&pool, handler.as_ref(), &Target::live("gig_board"), 7)
        .await
        .unwrap();
    let before = board_rows(&pool).await;
    assert_eq!(before.len(), 30);

    // A stray row that only a rebuild from the events would drop: proof the tables were replaced.
    sqlx::query("update read.gig_board set title = 'tampered' where title = 'Gig 0'")
        .execute(&pool)
        .await
        .unwrap();
    let tables = gigledger_projections::read::tables_of("gig_board").unwrap();
    let applied = gigledger_projections::rebuild::rebuild(&pool, handler.as_ref(), tables, 10)
        .await
        .unwrap();
    assert!(applied >= 30);
    assert_eq!(board_rows(&pool).await, before);

    // The live worker goes on from the swapped-in checkpoint: new events land once.
    post_gigs(&pool, 2).await;
    catch_up(&pool, handler.as_ref(), &Target::live("gig_board"), 7)
        .await
        .unwrap();
    assert_eq!(board_rows(&pool).await.len(), 32);
    let live = load_checkpoint(&pool, "gig_board").await.unwrap();
    let last: i64 = sqlx::query_scalar("select max(position) from events")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(live.position, last);
    let leftover: i64 = sqlx::query_scalar(
        "select count(*) from projection_checkpoints where name = 'gig_board#rebuild'",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(leftover, 0);
}

#[sqlx::test(migrator = "gigledger_projections::MIGRATOR")]
async fn a_rebuild_swaps_in_tables_that_have_planner_statistics(pool: PgPool) {
    post_gigs(&pool, 40).await;
    let handler = gig_board();
    let tables = gigledger_projections::read::tables_of("gig_board").unwrap();
    gigledger_projections::rebuild::rebuild(&pool, handler.as_ref(), tables, 10)
        .await
        .unwrap();

    // `last_analyze` is set by an explicit ANALYZE only (autovacuum sets `last_autoanalyze`), and
    // a table created by the rebuild starts without statistics: without the rebuild's ANALYZE the
    // planner would plan the board's filters on guesses until autovacuum came by.
    for table in tables {
        let analysed: Option<bool> = sqlx::query_scalar(
            "select last_analyze is not null from pg_stat_user_tables
              where schemaname = 'read' and relname = $1",
        )
        .bind(table)
        .fetch_optional(&pool)
        .await
        .unwrap();
        assert_eq!(analysed, Some(true), "read.{table} was analysed");
        let with_stats: i64 = sqlx::query_scalar(
            "select count(*) from pg_stats where schemaname = 'read' and tablename = $1",
        )
        .bind(table)
        .fetch_one(&pool)
        .await
        .unwrap();
        assert!(with_stats > 0, "read.{table} has column statistics");
    }
}

#[sqlx::test(migrator = "gigledger_projections::MIGRATOR")]
async fn the_analyst_role_reads_the_analytics_views_and_nothing_else(pool: PgPool) {
    post_gigs(&pool, 1).await;
    let analytics = gigledger_projections::read::all()
        .into_iter()
        .find(|h| h.name() == "analytics")
        .unwrap();
    catch_up(&pool, analytics.as_ref(), &Target::live("analytics"), 10)
        .await
        .unwrap();
    let mut tx = pool.begin().await.unwrap();
    sqlx::query("set local role gigledger_analyst")
        .execute(&mut *tx)
        .await
        .unwrap();
    let gigs: i64 = sqlx::query_scalar("select count(*) from analytics.gigs")
        .fetch_one(&mut *tx)
        .await
        .unwrap();
    assert_eq!(gigs, 1);
    tx.rollback().await.unwrap();

    for forbidden in [
        "select count(*) from events",
        "select count(*) from snapshots",
        "select count(*) from projection_checkpoints",
        "select count(*) from due_timers",
        "select count(*) from read.gig_board",
        "delete from read.gig_board",
    ] {
        let mut tx = pool.begin().await.unwrap();
        sqlx::query("set local role gigledger_analyst")
            .execute(&mut *tx)
            .await
            .unwrap();
        let err = sqlx::query(forbidden).execute(&mut *tx).await.unwrap_err();
        assert!(
            err.to_string().contains("permission denied"),
            "{forbidden}: {err}"
        );
        tx.rollback().await.unwrap();
    }
}
