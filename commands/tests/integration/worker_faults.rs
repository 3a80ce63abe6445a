//! How the worker runtime behaves when things go wrong (issue 7): narrowing after a failed batch,
//! a worker stuck retrying one event, two rebuilds of one model, a lease session gone half-open,
//! and the status of workers that never ran or that no process holds.

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use gigledger_commands::store::PgEventRepository;
use gigledger_projections::log::RecordedEvent;
use gigledger_projections::rebuild::{rebuild, RebuildError};
use gigledger_projections::runtime::{
    retry_later, run_worker, statuses, wait_for_position, Handler, HandlerError, Leases,
    LogNotifier, Target, WorkerConfig, WorkerStatus,
};
use sqlx::postgres::PgPoolOptions;
use sqlx::{PgConnection, PgPool};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use crate::common::added;

async fn append_many(pool: &PgPool, stream: &str, from: i64, count: i64) {
    let repo = PgEventRepository::new(pool.clone());
    for i in from..from + count {
        repo.append("tally", stream, i, &[added(i)], None)
            .await
            .unwrap();
    }
}

async fn last_position(pool: &PgPool) -> i64 {
    sqlx::query_scalar("select max(position) from events")
        .fetch_one(pool)
        .await
        .unwrap()
}

async fn position_of(pool: &PgPool, n: i64) -> i64 {
    sqlx::query_scalar("select position from events where (payload->'Added'->>'n')::bigint = $1")
        .bind(n)
        .fetch_one(pool)
        .await
        .unwrap()
}

fn n_of(event: &RecordedEvent) -> i64 {
    event.payload["Added"]["n"].as_i64().unwrap()
}

fn config() -> WorkerConfig {
    WorkerConfig {
        batch_size: 7,
        poll_interval: Duration::from_millis(20),
        lease_retry: Duration::from_millis(50),
        max_attempts: 3,
        stall_after: Duration::from_secs(3600),
    }
}

/// Polls `check` (every 20 ms, at most `within`) until it answers true.
async fn eventually<F, Fut>(within: Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + within;
    loop {
        if check().await {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn status_of(pool: &PgPool, name: &str) -> WorkerStatus {
    statuses(pool, &[name.to_owned()])
        .await
        .unwrap()
        .into_iter()
        .find(|s| s.name == name)
        .unwrap()
}

/// Counts how often each event (by its n) was handed to it, and fails (as retryable) on the
/// poisoned n the first `poison_failures` times it is handed over.
struct CountOffers {
    poison: i64,
    poison_failures: u32,
    failed: AtomicU32,
    offers: Mutex<HashMap<i64, u32>>,
}

#[async_trait::async_trait]
impl Handler for CountOffers {
    fn name(&self) -> &str {
        "offers"
    }

    async fn handle(
        &self,
        _tx: &mut PgConnection,
        events: &[RecordedEvent],
    ) -> Result<(), HandlerError> {
        let mut offers = self.offers.lock().unwrap();
        for event in events {
            *offers.entry(n_of(event)).or_default() += 1;
        }
        drop(offers);
        if events.iter().any(|e| n_of(e) == self.poison)
            && self.failed.load(Ordering::SeqCst) < self.poison_failures
        {
            self.failed.fetch_add(1, Ordering::SeqCst);
            return Err(retry_later("not yet"));
        }
        Ok(())
    }
}

#[sqlx::test(migrator = "gigledger_projections::MIGRATOR")]
async fn after_a_failed_batch_the_events_before_the_failing_one_are_not_offered_again_and_again(
    pool: PgPool,
) {
    append_many(&pool, "a", 0, 20).await;
    let handler = Arc::new(CountOffers {
        poison: 5,
        poison_failures: 3,
        failed: AtomicU32::new(0),
        offers: Mutex::new(HashMap::new()),
    });
    let (stop, stopped) = watch::channel(false);
    let worker = tokio::spawn(run_worker(
        pool.clone(),
        handler.clone(),
        Target::live("offers"),
        config(),
        Leases::new(&pool),
        LogNotifier::polling(),
        stopped,
    ));
    let last = last_position(&pool).await;
    assert!(
        wait_for_position(&pool, "offers", last, Duration::from_secs(30))
            .await
            .unwrap()
    );
    stop.send(true).unwrap();
    worker.await.unwrap();

    // Each event around the failing one is offered in the failed batch and once alone; before the
    // fix, narrowing ended after the batch's first event and every event before the failing one
    // went through one more full batch per failure.
    let offers = handler.offers.lock().unwrap().clone();
    assert_eq!(offers.len(), 20, "every event was applied");
    let repeated: Vec<_> = offers
        .iter()
        .filter(|(n, times)| **n != 5 && **times > 2)
        .collect();
    assert!(repeated.is_empty(), "offered more than twice: {repeated:?}");
}

/// Fails on the poisoned n (as retryable) until healed.
struct UntilHealed {
    poison: i64,
    healed: AtomicBool,
}

#[async_trait::async_trait]
impl Handler for UntilHealed {
    fn name(&self) -> &str {
        "until_healed"
    }

    async fn handle(
        &self,
        _tx: &mut PgConnection,
        events: &[RecordedEvent],
    ) -> Result<(), HandlerError> {
        if !self.healed.load(Ordering::SeqCst) && events.iter().any(|e| n_of(e) == self.poison) {
            return Err(retry_later("the other manager has not done its step"));
        }
        Ok(())
    }
}

#[sqlx::test(migrator = "gigledger_projections::MIGRATOR")]
async fn a_worker_retrying_one_event_longer_than_its_bound_is_stalled_until_it_gets_past(
    pool: PgPool,
) {
    append_many(&pool, "a", 0, 10).await;
    let poison_position = position_of(&pool, 4).await;
    let handler = Arc::new(UntilHealed {
        poison: 4,
        healed: AtomicBool::new(false),
    });
    let (stop, stopped) = watch::channel(false);
    let worker = tokio::spawn(run_worker(
        pool.clone(),
        handler.clone(),
        Target::live("until_healed"),
        WorkerConfig {
            stall_after: Duration::ZERO,
            ..config()
        },
        Leases::new(&pool),
        LogNotifier::polling(),
        stopped,
    ));

    assert!(
        eventually(Duration::from_secs(30), || async {
            status_of(&pool, "until_healed").await.status == "stalled"
        })
        .await,
        "the worker is reported stalled"
    );
    let stalled = status_of(&pool, "until_healed").await;
    assert_eq!(stalled.state(), "stalled");
    assert_eq!(stalled.failed_position, Some(poison_position));
    assert!(stalled
        .last_error
        .unwrap()
        .contains("has not done its step"));
    assert!(stalled.leased, "a stalled worker is still running");
    assert!(!worker.is_finished(), "a stalled worker keeps retrying");

    handler.healed.store(true, Ordering::SeqCst);
    let last = last_position(&pool).await;
    assert!(
        wait_for_position(&pool, "until_healed", last, Duration::from_secs(60))
            .await
            .unwrap()
    );
    assert!(
        eventually(Duration::from_secs(10), || async {
            let s = status_of(&pool, "until_healed").await;
            s.status == "running" && s.last_error.is_none()
        })
        .await,
        "past the event, the worker is running again"
    );
    stop.send(true).unwrap();
    worker.await.unwrap();
}

/// A handler that holds its first batch until let go, to keep a rebuild in flight.
struct Gate {
    entered: tokio::sync::Notify,
    open: watch::Receiver<bool>,
}

#[async_trait::async_trait]
impl Handler for Gate {
    fn name(&self) -> &str {
        "gated"
    }

    async fn handle(
        &self,
        _tx: &mut PgConnection,
        _events: &[RecordedEvent],
    ) -> Result<(), HandlerError> {
        self.entered.notify_one();
        let mut open = self.open.clone();
        open.wait_for(|open| *open).await?;
        Ok(())
    }
}

#[sqlx::test(migrator = "gigledger_projections::MIGRATOR")]
async fn a_second_rebuild_of_one_model_is_refused_while_the_first_runs(pool: PgPool) {
    sqlx::query("create table read.gated (id bigint primary key)")
        .execute(&pool)
        .await
        .unwrap();
    append_many(&pool, "a", 0, 3).await;
    let (open, opened) = watch::channel(false);
    let gate = Arc::new(Gate {
        entered: tokio::sync::Notify::new(),
        open: opened,
    });
    let first = tokio::spawn({
        let pool = pool.clone();
        let gate = gate.clone();
        async move { rebuild(&pool, gate.as_ref(), &["gated"], 100).await }
    });
    gate.entered.notified().await;

    let second = tokio::time::timeout(
        Duration::from_secs(20),
        rebuild(&pool, gate.as_ref(), &["gated"], 100),
    )
    .await
    .expect("the second rebuild answers at once instead of running alongside");
    match second {
        Err(e @ RebuildError::AlreadyRunning(_)) => {
            assert!(e.to_string().contains("already running"), "{e}");
        }
        other => panic!("the second rebuild was not refused: {other:?}"),
    }

    open.send(true).unwrap();
    assert_eq!(first.await.unwrap().unwrap(), 3);
    // Once the first is done, a rebuild may run again.
    assert_eq!(
        rebuild(&pool, gate.as_ref(), &["gated"], 100)
            .await
            .unwrap(),
        3
    );
}

/// A TCP relay to the database that can freeze: it then passes no more bytes either way but
/// keeps every connection open, which is what a half-open connection looks like to both ends
/// (neither sees a close; only silence).
async fn freezable_relay(host: String, port: u16) -> (u16, watch::Sender<bool>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let relay_port = listener.local_addr().unwrap().port();
    let (freeze, frozen) = watch::channel(false);
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            let frozen = frozen.clone();
            let host = host.clone();
            tokio::spawn(async move {
                let Ok(server) = TcpStream::connect((host.as_str(), port)).await else {
                    return;
                };
                let (client_read, client_write) = client.into_split();
                let (server_read, server_write) = server.into_split();
                tokio::join!(
                    pipe(client_read, server_write, frozen.clone()),
                    pipe(server_read, client_write, frozen)
                );
            });
        }
    });
    (relay_port, freeze)
}

async fn pipe(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    mut frozen: watch::Receiver<bool>,
) {
    let mut buffer = vec![0u8; 16 * 1024];
    loop {
        let read = tokio::select! {
            read = from.read(&mut buffer) => read,
            _ = frozen.wait_for(|f| *f) => Ok(usize::MAX),
        };
        if *frozen.borrow() {
            // Silence, with both sockets held open.
            std::future::pending::<()>().await;
        }
        match read {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                if to.write_all(&buffer[..n]).await.is_err() {
                    return;
                }
            }
        }
    }
}

/// Which of the two runners' sessions (by application name) holds `name`'s lease.
async fn lease_holder(pool: &PgPool, name: &str) -> Option<String> {
    sqlx::query_scalar(
        "select a.application_name
           from pg_locks l join pg_stat_activity a on a.pid = l.pid
          where l.locktype = 'advisory' and l.granted and l.objsubid = 1
            and l.classid = ((hashtextextended($1, 0) >> 32) & 4294967295)::oid
            and l.objid = (hashtextextended($1, 0) & 4294967295)::oid",
    )
    .bind(format!("gigledger-worker:{name}"))
    .fetch_optional(pool)
    .await
    .unwrap()
}

/// Counts applications per event in `read.applied`.
struct Apply;

#[async_trait::async_trait]
impl Handler for Apply {
    fn name(&self) -> &str {
        "apply"
    }

    async fn handle(
        &self,
        tx: &mut PgConnection,
        events: &[RecordedEvent],
    ) -> Result<(), HandlerError> {
        for event in events {
            sqlx::query(
                "insert into applied (position, times) values ($1, 1)
                 on conflict (position) do update set times = applied.times + 1",
            )
            .bind(event.position)
            .execute(&mut *tx)
            .await?;
        }
        Ok(())
    }
}

#[sqlx::test(migrator = "gigledger_projections::MIGRATOR")]
async fn a_standby_takes_over_within_the_lease_timeout_when_the_holders_session_goes_silent(
    pool: PgPool,
) {
    sqlx::query("create table read.applied (position bigint primary key, times int not null)")
        .execute(&pool)
        .await
        .unwrap();
    append_many(&pool, "a", 0, 5).await;
    let options = (*pool.connect_options()).clone();
    let (relay_port, freeze) =
        freezable_relay(options.get_host().to_owned(), options.get_port()).await;
    // Runner A's lease session goes through the relay; its batches, like B's, do not.
    let a_sessions = PgPoolOptions::new().connect_lazy_with(
        options
            .clone()
            .port(relay_port)
            .application_name("runner-a"),
    );
    let b_sessions =
        PgPoolOptions::new().connect_lazy_with(options.clone().application_name("runner-b"));
    let timeout = Duration::from_secs(1);
    let (stop, stopped) = watch::channel(false);
    let runner = |sessions: &PgPool| {
        let leases = Leases::with_timeout(sessions, timeout);
        let keep_alive = tokio::spawn(
            leases
                .clone()
                .keep_alive(Duration::from_millis(100), stopped.clone()),
        );
        let worker = tokio::spawn(run_worker(
            pool.clone(),
            Arc::new(Apply),
            Target::live("apply"),
            config(),
            leases,
            LogNotifier::polling(),
            stopped.clone(),
        ));
        (keep_alive, worker)
    };

    let a = runner(&a_sessions);
    assert!(wait_for_position(
        &pool,
        "apply",
        last_position(&pool).await,
        Duration::from_secs(30)
    )
    .await
    .unwrap());
    assert_eq!(
        lease_holder(&pool, "apply").await.as_deref(),
        Some("runner-a")
    );
    let b = runner(&b_sessions);
    freeze.send(true).unwrap();

    // Nothing closes A's session: only the lease timeout can end it.
    assert!(
        eventually(Duration::from_secs(30), || async {
            lease_holder(&pool, "apply").await.as_deref() == Some("runner-b")
        })
        .await,
        "the standby took the lease over"
    );
    append_many(&pool, "a", 5, 5).await;
    assert!(wait_for_position(
        &pool,
        "apply",
        last_position(&pool).await,
        Duration::from_secs(30)
    )
    .await
    .unwrap());
    let applied: Vec<(i64, i32)> =
        sqlx::query_as("select position, times from read.applied order by position")
            .fetch_all(&pool)
            .await
            .unwrap();
    assert_eq!(applied.len(), 10);
    assert!(applied.iter().all(|(_, times)| *times == 1), "{applied:?}");

    // A, cut off from its session, still stops when asked: nothing waits on the silent session
    // for longer than the lease timeout.
    stop.send(true).unwrap();
    for task in [a.0, a.1, b.0, b.1] {
        tokio::time::timeout(Duration::from_secs(30), task)
            .await
            .expect("the runner stopped")
            .unwrap();
    }
}

#[sqlx::test(migrator = "gigledger_projections::MIGRATOR")]
async fn status_lists_workers_that_never_ran_and_says_whether_a_process_holds_each(pool: PgPool) {
    sqlx::query("create table read.applied (position bigint primary key, times int not null)")
        .execute(&pool)
        .await
        .unwrap();
    append_many(&pool, "a", 0, 3).await;
    let known = vec!["apply".to_owned(), "never_ran".to_owned()];

    let fresh = statuses(&pool, &known).await.unwrap();
    assert_eq!(
        fresh.iter().map(|s| s.name.as_str()).collect::<Vec<_>>(),
        ["apply", "never_ran"]
    );
    for s in &fresh {
        // (Its lag counts settled events only, and a transaction open elsewhere in the cluster
        // holds settling back, so it is not asserted here.)
        assert_eq!((s.position, s.events_applied), (0, 0));
        assert!(!s.leased);
        assert_eq!(s.state(), "idle");
    }

    let (stop, stopped) = watch::channel(false);
    let worker = tokio::spawn(run_worker(
        pool.clone(),
        Arc::new(Apply),
        Target::live("apply"),
        config(),
        Leases::new(&pool),
        LogNotifier::polling(),
        stopped,
    ));
    assert!(wait_for_position(
        &pool,
        "apply",
        last_position(&pool).await,
        Duration::from_secs(30)
    )
    .await
    .unwrap());
    let running = status_of(&pool, "apply").await;
    assert!(running.leased);
    assert_eq!(running.state(), "running");

    stop.send(true).unwrap();
    worker.await.unwrap();
    let stopped = status_of(&pool, "apply").await;
    assert!(!stopped.leased, "no process holds it any more");
    assert_eq!(stopped.state(), "idle");
    assert_eq!(stopped.events_applied, 3);
}
