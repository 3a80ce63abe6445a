//! The projection workers as separate processes of the real binary: killed at random points, and
//! two of them running side by side.

use std::collections::HashSet;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use gigledger_commands::clock::SystemClock;
use gigledger_commands::services::{RequestContext, Services, ServicesConfig};
use gigledger_domain::{
    Actor, Budget, ContractCommand, ContractId, Currency, EscrowCommand, GigCommand, GigId,
    MilestoneId, MilestoneTerms, Money, ProposalId, Role, SimulatedGateway, UserId,
};
use gigledger_projections::runtime::{catch_up, wait_for_position, Target};
use gigledger_tests::{KillOnDrop, TestDatabase};
use rand::Rng;
use sqlx::PgPool;

const BIN: &str = env!("CARGO_BIN_EXE_gigledger-under-test");

fn workers(db: &TestDatabase) -> KillOnDrop {
    KillOnDrop::spawn(
        Command::new(BIN)
            .args(["projections", "run"])
            .env("DATABASE_URL", &db.url)
            .env("GIGLEDGER_PROJECTION_BATCH_SIZE", "25")
            .env("GIGLEDGER_POLL_INTERVAL_MS", "50")
            .env("RUST_LOG", "error")
            .stdout(Stdio::null())
            .stderr(Stdio::null()),
    )
}

async fn migrated(db: &TestDatabase) -> PgPool {
    let status = Command::new(BIN)
        .arg("migrate")
        .env("DATABASE_URL", &db.url)
        .env("RUST_LOG", "error")
        .status()
        .unwrap();
    assert!(status.success());
    PgPool::connect(&db.url).await.unwrap()
}

fn services(pool: &PgPool) -> Arc<Services> {
    Arc::new(Services::new(
        pool.clone(),
        ServicesConfig::default(),
        Arc::new(SimulatedGateway::new()),
        Arc::new(SystemClock),
    ))
}

/// One gig's whole life: posted, three proposals, one hired, both milestones funded, the first
/// approved and paid, the second disputed and split. About twenty events.
async fn one_gig(services: &Services, n: usize) {
    let ctx = RequestContext::new();
    let client = Actor::new(UserId::new(), vec![Role::Client]);
    let freelancers: Vec<Actor> = (0..3)
        .map(|_| Actor::new(UserId::new(), vec![Role::Freelancer]))
        .collect();
    let admin = Actor::new(UserId::new(), vec![Role::Admin]);
    let usd = |a| Money::new(a, Currency::USD);
    let gig = GigId::new();
    services
        .gig(
            gig,
            GigCommand::PostGig {
                gig_id: gig,
                title: format!("Job number {n}"),
                description: "Work that needs doing.".into(),
                skills: vec!["rust".into(), format!("skill{}", n % 7)],
                budget: Budget::Fixed {
                    amount: usd(1_000 + i64::try_from(n).unwrap()),
                },
                deadline: None,
                actor: client.clone(),
                at: services.now(),
            },
            &ctx,
        )
        .await
        .unwrap();
    let mut hired = None;
    for (i, freelancer) in freelancers.iter().enumerate() {
        let proposal = ProposalId::new();
        let milestones = vec![
            MilestoneTerms {
                milestone_id: MilestoneId::new(),
                title: "First half".into(),
                amount: usd(300 + i64::try_from(i).unwrap()),
                due_date: None,
            },
            MilestoneTerms {
                milestone_id: MilestoneId::new(),
                title: "Second half".into(),
                amount: usd(701),
                due_date: None,
            },
        ];
        if i == 0 {
            hired = Some((
                proposal,
                milestones
                    .iter()
                    .map(|m| m.milestone_id)
                    .collect::<Vec<_>>(),
            ));
        }
        services
            .gig(
                gig,
                GigCommand::SubmitProposal {
                    proposal_id: proposal,
                    cover_letter: "Pick me.".into(),
                    milestones,
                    actor: freelancer.clone(),
                    at: services.now(),
                },
                &ctx,
            )
            .await
            .unwrap();
    }
    let (proposal, milestones) = hired.unwrap();
    let contract = ContractId::new();
    services
        .gig(
            gig,
            GigCommand::AcceptProposal {
                proposal_id: proposal,
                contract_id: contract,
                fee_bps: 1_000,
                review_window_days: 14,
                max_revisions: 2,
                actor: client.clone(),
                at: services.now(),
            },
            &ctx,
        )
        .await
        .unwrap();
    for m in &milestones {
        services
            .escrow(
                contract,
                EscrowCommand::Deposit {
                    milestone_id: *m,
                    idempotency_key: format!("{contract}-{m}"),
                    actor: client.clone(),
                    at: services.now(),
                },
                &ctx,
            )
            .await
            .unwrap();
    }
    let send = |command| services.contract(contract, command, &ctx);
    send(ContractCommand::SubmitMilestone {
        milestone_id: milestones[0],
        note: "Here it is.".into(),
        links: vec![],
        actor: freelancers[0].clone(),
        at: services.now(),
    })
    .await
    .unwrap();
    send(ContractCommand::ApproveMilestone {
        milestone_id: milestones[0],
        actor: client.clone(),
        at: services.now(),
    })
    .await
    .unwrap();
    let dispute = gigledger_domain::DisputeId::new();
    send(ContractCommand::OpenDispute {
        dispute_id: dispute,
        milestone_id: milestones[1],
        reason: "Unfinished.".into(),
        actor: client.clone(),
        at: services.now(),
    })
    .await
    .unwrap();
    send(ContractCommand::ResolveDispute {
        dispute_id: dispute,
        release: usd(401),
        refund: usd(300),
        actor: admin,
        at: services.now(),
    })
    .await
    .unwrap();
}

/// Writes `gigs` gig lives, a few at a time.
async fn write_load(services: Arc<Services>, gigs: usize) {
    let mut n = 0;
    while n < gigs {
        let batch: Vec<_> = (n..(n + 4).min(gigs))
            .map(|i| {
                let services = services.clone();
                tokio::spawn(async move { one_gig(&services, i).await })
            })
            .collect();
        for task in batch {
            task.await.unwrap();
        }
        n += 4;
    }
}

/// Waits until every read model has applied everything in the log.
/// Waits until every worker (read models and process managers) has reached the end of the log,
/// and the log no longer grows: process managers append (a card refund after a cancellation),
/// and what they append must be projected too before the read models are compared.
async fn wait_until_caught_up(pool: &PgPool) {
    let last_position = || async {
        sqlx::query_scalar::<_, i64>("select coalesce(max(position), 0) from events")
            .fetch_one(pool)
            .await
            .unwrap()
    };
    let mut last = last_position().await;
    loop {
        for name in gigledger_api::workers::known_names() {
            assert!(
                wait_for_position(pool, &name, last, Duration::from_secs(180))
                    .await
                    .unwrap(),
                "{name} caught up"
            );
        }
        let now = last_position().await;
        if now == last {
            return;
        }
        last = now;
    }
}

/// Rebuilds every read model from zero into `read_rebuild` (no swap) and asserts each table equals
/// its live twin row for row.
async fn assert_live_equals_fresh_rebuild(pool: &PgPool) {
    for handler in gigledger_projections::read::all() {
        let name = handler.name().to_owned();
        let tables = gigledger_projections::read::tables_of(&name).unwrap();
        for table in tables {
            sqlx::query(&format!("drop table if exists read_rebuild.{table}"))
                .execute(pool)
                .await
                .unwrap();
            sqlx::query(&format!(
                "create table read_rebuild.{table} (like read.{table} including all)"
            ))
            .execute(pool)
            .await
            .unwrap();
        }
        sqlx::query("delete from projection_checkpoints where name = $1")
            .bind(format!("{name}#rebuild"))
            .execute(pool)
            .await
            .unwrap();
        catch_up(pool, handler.as_ref(), &Target::rebuild(&name), 500)
            .await
            .unwrap();
        for table in tables {
            let rows = |schema: &str| {
                format!("select to_jsonb(t)::text from {schema}.{table} t order by 1")
            };
            let live: Vec<String> = sqlx::query_scalar(&rows("read"))
                .fetch_all(pool)
                .await
                .unwrap();
            let fresh: Vec<String> = sqlx::query_scalar(&rows("read_rebuild"))
                .fetch_all(pool)
                .await
                .unwrap();
            assert_eq!(live.len(), fresh.len(), "{name}: {table} row count");
            assert!(
                live == fresh,
                "{name}: {table} differs from a fresh rebuild"
            );
        }
    }
}

#[tokio::test]
async fn a_worker_killed_at_random_points_ends_equal_to_a_fresh_rebuild() {
    let db = TestDatabase::fresh("crash");
    let pool = migrated(&db).await;
    let services = services(&pool);

    let writing = Arc::new(AtomicBool::new(true));
    let writer = tokio::spawn({
        let services = services.clone();
        let writing = writing.clone();
        async move {
            write_load(services, 120).await;
            writing.store(false, Ordering::SeqCst);
        }
    });

    let mut worker = workers(&db);
    let mut kills = 0;
    while writing.load(Ordering::SeqCst) || kills < 12 {
        let pause = rand::thread_rng().gen_range(50..300);
        tokio::time::sleep(Duration::from_millis(pause)).await;
        worker.kill();
        kills += 1;
        worker = workers(&db);
    }
    writer.await.unwrap();
    let events: i64 = sqlx::query_scalar("select count(*) from events")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert!(events > 2_000, "a run of thousands of events: {events}");

    wait_until_caught_up(&pool).await;
    drop(worker);
    assert_live_equals_fresh_rebuild(&pool).await;
    pool.close().await;
    db.drop_now().await;
}

/// The process (by OS pid, from its sessions' application names) holding worker leases.
async fn lease_holders(pool: &PgPool) -> HashSet<u32> {
    let names: Vec<String> = sqlx::query_scalar(
        "select distinct a.application_name
           from pg_locks l join pg_stat_activity a on a.pid = l.pid
          where l.locktype = 'advisory' and l.granted and a.datname = current_database()",
    )
    .fetch_all(pool)
    .await
    .unwrap();
    names
        .iter()
        .filter_map(|n| n.strip_prefix("gigledger:")?.parse().ok())
        .collect()
}

/// Every read model has counted exactly the events in the log: a batch applied by two runners
/// would count twice.
async fn assert_each_event_applied_once(pool: &PgPool) {
    let events: i64 = sqlx::query_scalar("select count(*) from events")
        .fetch_one(pool)
        .await
        .unwrap();
    for handler in gigledger_projections::read::all() {
        let applied: i64 =
            sqlx::query_scalar("select events_applied from projection_checkpoints where name = $1")
                .bind(handler.name())
                .fetch_one(pool)
                .await
                .unwrap();
        assert_eq!(
            applied,
            events,
            "{} applied each event once",
            handler.name()
        );
    }
}

#[tokio::test]
async fn two_processes_apply_each_event_once_and_the_standby_takes_over_when_the_active_dies() {
    let db = TestDatabase::fresh("standby");
    let pool = migrated(&db).await;
    let services = services(&pool);
    let mut first = workers(&db);
    let mut second = workers(&db);

    write_load(services.clone(), 20).await;
    wait_until_caught_up(&pool).await;
    assert_each_event_applied_once(&pool).await;

    let holders = lease_holders(&pool).await;
    assert!(!holders.is_empty(), "someone holds the leases");
    let (active, standby) = if holders.contains(&first.id()) {
        (&mut first, second.id())
    } else {
        (&mut second, first.id())
    };
    active.kill();

    write_load(services.clone(), 8).await;
    wait_until_caught_up(&pool).await;
    assert_eq!(
        lease_holders(&pool).await,
        HashSet::from([standby]),
        "the standby took over"
    );
    assert_each_event_applied_once(&pool).await;
    assert_live_equals_fresh_rebuild(&pool).await;

    drop(first);
    drop(second);
    pool.close().await;
    db.drop_now().await;
}
