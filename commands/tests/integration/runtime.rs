//! The worker runtime: exactly-once application, one active runner, failures that stop, waiting
//! for a position.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use gigledger_commands::store::PgEventRepository;
use gigledger_projections::log::RecordedEvent;
use gigledger_projections::runtime::{
    catch_up, run_worker, statuses, wait_for_position, Handler, HandlerError, Leases, LogNotifier,
    Target, WorkerConfig,
};
use sqlx::{PgConnection, PgPool};
use tokio::sync::watch;

use crate::common::added;

/// Counts how often each event was applied, in `read.applied`.
struct CountApplications {
    name: &'static str,
    /// Fail on events whose payload n equals this.
    poison: Option<i64>,
    /// Slow every batch down, to widen race windows.
    pause: Duration,
}

#[async_trait::async_trait]
impl Handler for CountApplications {
    fn name(&self) -> &str {
        self.name
    }

    async fn handle(
        &self,
        tx: &mut PgConnection,
        events: &[RecordedEvent],
    ) -> Result<(), HandlerError> {
        for event in events {
            if self.poison.is_some() && event.payload["Added"]["n"].as_i64() == self.poison {
                return Err(format!("cannot apply n = {:?}", self.poison).into());
            }
            sqlx::query(
                "insert into applied (position, times) values ($1, 1)
                 on conflict (position) do update set times = applied.times + 1",
            )
            .bind(event.position)
            .execute(&mut *tx)
            .await?;
        }
        tokio::time::sleep(self.pause).await;
        Ok(())
    }
}

async fn setup(pool: &PgPool) {
    sqlx::query("create table read.applied (position bigint primary key, times int not null)")
        .execute(pool)
        .await
        .unwrap();
}

async fn applications(pool: &PgPool) -> Vec<(i64, i32)> {
    sqlx::query_as("select position, times from read.applied order by position")
        .fetch_all(pool)
        .await
        .unwrap()
}

async fn append_many(pool: &PgPool, stream: &str, count: i64) {
    let repo = PgEventRepository::new(pool.clone());
    for i in 0..count {
        repo.append("tally", stream, i, &[added(i)], None)
            .await
            .unwrap();
    }
}

fn fast() -> WorkerConfig {
    WorkerConfig {
        batch_size: 7,
        poll_interval: Duration::from_millis(20),
        lease_retry: Duration::from_millis(50),
        max_attempts: 3,
        ..WorkerConfig::default()
    }
}

#[sqlx::test(migrator = "gigledger_projections::MIGRATOR")]
async fn catching_up_applies_every_event_once_and_again_applies_nothing(pool: PgPool) {
    setup(&pool).await;
    append_many(&pool, "a", 20).await;
    let handler = CountApplications {
        name: "count",
        poison: None,
        pause: Duration::ZERO,
    };
    let target = Target::live("count");
    assert_eq!(catch_up(&pool, &handler, &target, 6).await.unwrap(), 20);
    assert_eq!(catch_up(&pool, &handler, &target, 6).await.unwrap(), 0);
    let applied = applications(&pool).await;
    assert_eq!(applied.len(), 20);
    assert!(applied.iter().all(|(_, times)| *times == 1));
}

#[sqlx::test(migrator = "gigledger_projections::MIGRATOR")]
async fn two_runners_of_one_projection_apply_each_event_exactly_once(pool: PgPool) {
    setup(&pool).await;
    let (stop, stopped) = watch::channel(false);
    let handler: Arc<dyn Handler> = Arc::new(CountApplications {
        name: "count",
        poison: None,
        pause: Duration::from_millis(5),
    });
    let runners: Vec<_> = (0..2)
        .map(|_| {
            tokio::spawn(run_worker(
                pool.clone(),
                handler.clone(),
                Target::live("count"),
                fast(),
                Leases::new(&pool), // each runner its own session: two processes
                LogNotifier::polling(),
                stopped.clone(),
            ))
        })
        .collect();
    // Write while both run.
    append_many(&pool, "a", 60).await;
    let last: i64 = sqlx::query_scalar("select max(position) from events")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert!(
        wait_for_position(&pool, "count", last, Duration::from_secs(20))
            .await
            .unwrap()
    );
    stop.send(true).unwrap();
    for r in runners {
        r.await.unwrap();
    }
    let applied = applications(&pool).await;
    assert_eq!(applied.len(), 60);
    assert!(applied.iter().all(|(_, times)| *times == 1), "{applied:?}");
}

#[sqlx::test(migrator = "gigledger_projections::MIGRATOR")]
async fn the_checkpoint_never_moves_without_its_batch_when_the_handler_fails(pool: PgPool) {
    setup(&pool).await;
    append_many(&pool, "a", 10).await;
    let poisoned = CountApplications {
        name: "count",
        poison: Some(6),
        pause: Duration::ZERO,
    };
    let poison_position: i64 =
        sqlx::query_scalar("select position from events where payload->'Added'->>'n' = '6'")
            .fetch_one(&pool)
            .await
            .unwrap();
    let err = catch_up(&pool, &poisoned, &Target::live("count"), 4).await;
    assert!(err.is_err());
    // Batches before the poisoned one committed whole; the poisoned batch left nothing. (Where
    // batches begin depends on what was settled when each was read, so assert the invariant.)
    let applied: Vec<i64> = applications(&pool)
        .await
        .into_iter()
        .map(|(p, _)| p)
        .collect();
    assert!(!applied.is_empty());
    assert!(applied.iter().all(|p| *p < poison_position), "{applied:?}");
    let status = &statuses(&pool, &[]).await.unwrap()[0];
    assert_eq!(status.events_applied, i64::try_from(applied.len()).unwrap());
    assert_eq!(
        Some(&status.position),
        applied.last(),
        "the checkpoint is the last row written"
    );
}

#[sqlx::test(migrator = "gigledger_projections::MIGRATOR")]
async fn a_worker_that_keeps_failing_on_one_event_stops_and_reports_it_without_skipping(
    pool: PgPool,
) {
    setup(&pool).await;
    append_many(&pool, "a", 10).await;
    let poison_position: i64 =
        sqlx::query_scalar("select position from events where payload->'Added'->>'n' = '6'")
            .fetch_one(&pool)
            .await
            .unwrap();
    let (_stop, stopped) = watch::channel(false);
    let finished = Arc::new(AtomicBool::new(false));
    let worker = tokio::spawn({
        let pool = pool.clone();
        let finished = finished.clone();
        async move {
            let leases = Leases::new(&pool);
            run_worker(
                pool,
                Arc::new(CountApplications {
                    name: "count",
                    poison: Some(6),
                    pause: Duration::ZERO,
                }),
                Target::live("count"),
                fast(),
                leases,
                LogNotifier::polling(),
                stopped,
            )
            .await;
            finished.store(true, Ordering::SeqCst);
        }
    });
    // Bounded generously: the log is settled cluster-wide, so a long transaction of another test
    // (a bulk fill, say) holds the worker back before it even reaches the poisoned event.
    tokio::time::timeout(Duration::from_secs(90), worker)
        .await
        .unwrap()
        .unwrap();
    assert!(
        finished.load(Ordering::SeqCst),
        "the worker stopped by itself"
    );

    let status = &statuses(&pool, &[]).await.unwrap()[0];
    assert_eq!(status.status, "failed");
    assert_eq!(status.failed_position, Some(poison_position));
    assert!(status
        .last_error
        .as_deref()
        .unwrap()
        .contains("cannot apply"));
    // Everything before the poisoned event is applied, nothing at or after it.
    let applied: Vec<i64> = applications(&pool)
        .await
        .into_iter()
        .map(|(p, _)| p)
        .collect();
    assert_eq!(applied.len(), 6);
    assert!(applied.iter().all(|p| *p < poison_position));
}

#[sqlx::test(migrator = "gigledger_projections::MIGRATOR")]
async fn waiting_for_a_position_returns_once_the_worker_has_applied_it(pool: PgPool) {
    setup(&pool).await;
    append_many(&pool, "a", 3).await;
    let last: i64 = sqlx::query_scalar("select max(position) from events")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert!(
        !wait_for_position(&pool, "count", last, Duration::from_millis(50))
            .await
            .unwrap()
    );
    let handler = CountApplications {
        name: "count",
        poison: None,
        pause: Duration::ZERO,
    };
    catch_up(&pool, &handler, &Target::live("count"), 100)
        .await
        .unwrap();
    assert!(
        wait_for_position(&pool, "count", last, Duration::from_millis(50))
            .await
            .unwrap()
    );
    assert!(
        !wait_for_position(&pool, "count", last + 1000, Duration::from_millis(50))
            .await
            .unwrap(),
        "a position that was never written is never reached"
    );
}
