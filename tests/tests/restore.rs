//! A dump of a live database restored into another cluster (whose transaction counter is far
//! behind the dumped log's) keeps working: new events reach every worker, nothing old is applied
//! twice. Two throwaway clusters of the test's own, never the shared server.
#![expect(
    clippy::inconsistent_digit_grouping,
    reason = "amounts in minor units are written units_cents: 100_00 is 100.00 USD"
)]

use std::sync::Arc;

use chrono::Utc;
use gigledger_api::settings::DatabaseSettings;
use gigledger_commands::clock::SystemClock;
use gigledger_commands::services::{RequestContext, Services, ServicesConfig};
use gigledger_domain::{
    Actor, Budget, ContractId, Currency, GigCommand, GigId, MilestoneId, MilestoneTerms, Money,
    ProposalId, Role, SimulatedGateway, UserId,
};
use gigledger_projections::runtime::{catch_up, statuses, Target};
use gigledger_tests::cluster::ThrowawayCluster;
use sqlx::PgPool;

fn usd(amount: i64) -> Money {
    Money::new(amount, Currency::USD)
}

fn services(pool: &PgPool) -> Arc<Services> {
    Arc::new(Services::new(
        pool.clone(),
        ServicesConfig::default(),
        Arc::new(SimulatedGateway::new()),
        Arc::new(SystemClock),
    ))
}

async fn prepare(url: String) -> PgPool {
    gigledger_api::db::prepare(&DatabaseSettings {
        database_url: url,
        max_connections: 8,
    })
    .await
    .expect("the database is ready")
}

async fn post_gig(services: &Services, client: &Actor) -> GigId {
    let gig = GigId::new();
    services
        .gig(
            gig,
            GigCommand::PostGig {
                gig_id: gig,
                title: "Port a billing service".into(),
                description: "From a monolith to a service of its own.".into(),
                skills: vec!["rust".into()],
                budget: Budget::Fixed {
                    amount: usd(900_00),
                },
                deadline: None,
                actor: client.clone(),
                at: Utc::now(),
            },
            &RequestContext::new(),
        )
        .await
        .expect("the gig is posted");
    gig
}

async fn propose(services: &Services, gig: GigId, freelancer: &Actor) -> ProposalId {
    let proposal = ProposalId::new();
    services
        .gig(
            gig,
            GigCommand::SubmitProposal {
                proposal_id: proposal,
                cover_letter: "Done it twice before.".into(),
                milestones: vec![MilestoneTerms {
                    milestone_id: MilestoneId::new(),
                    title: "All of it".into(),
                    amount: usd(800_00),
                    due_date: None,
                }],
                actor: freelancer.clone(),
                at: Utc::now(),
            },
            &RequestContext::new(),
        )
        .await
        .expect("the proposal is submitted");
    proposal
}

async fn accept(services: &Services, gig: GigId, proposal: ProposalId, client: &Actor) {
    let config = services.config();
    services
        .gig(
            gig,
            GigCommand::AcceptProposal {
                proposal_id: proposal,
                contract_id: ContractId::new(),
                fee_bps: config.fee_bps,
                review_window_days: config.review_window_days,
                max_revisions: config.max_revisions,
                actor: client.clone(),
                at: Utc::now(),
            },
            &RequestContext::new(),
        )
        .await
        .expect("the proposal is accepted");
}

/// Runs every worker of the service (read models and process managers) to the end of the log.
async fn catch_up_all(pool: &PgPool, services: &Arc<Services>) {
    for handler in gigledger_api::workers::handlers(services) {
        catch_up(pool, handler.as_ref(), &Target::live(handler.name()), 50)
            .await
            .expect("the worker catches up");
    }
}

async fn event_count(pool: &PgPool) -> i64 {
    sqlx::query_scalar("select count(*) from events")
        .fetch_one(pool)
        .await
        .unwrap()
}

async fn on_board(pool: &PgPool, gig: GigId) -> bool {
    sqlx::query_scalar("select exists (select 1 from read.gig_board where gig_id = $1)")
        .bind(gig.0)
        .fetch_one(pool)
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_dump_restored_into_another_cluster_new_events_reach_every_worker_once() {
    let source = ThrowawayCluster::start();
    let target = ThrowawayCluster::start();
    let client = Actor::new(UserId::new(), vec![Role::Client]);
    let freelancer = Actor::new(UserId::new(), vec![Role::Freelancer]);

    // The source has lived for a while: its transaction counter is well ahead of a new cluster's.
    let pool = prepare(source.url("gigledger")).await;
    sqlx::raw_sql(
        "do $$ begin for i in 1..3000 loop perform pg_current_xact_id(); commit; end loop; end $$",
    )
    .execute(&pool)
    .await
    .expect("transaction ids burnt");
    let live = services(&pool);
    let first = post_gig(&live, &client).await;
    let proposal = propose(&live, first, &freelancer).await;
    accept(&live, first, proposal, &client).await;
    let second = post_gig(&live, &client).await;
    catch_up_all(&pool, &live).await;
    assert!(on_board(&pool, second).await);
    let before = event_count(&pool).await;
    pool.close().await;

    let dump = std::env::temp_dir().join(format!("gigledger-{}.dump", uuid::Uuid::now_v7()));
    let dump_path = dump.to_str().unwrap().to_owned();
    source.client(
        "pg_dump",
        &["-Fc", "-d", &source.url("gigledger"), "-f", &dump_path],
    );
    // The procedure README gives: roles first (they are the cluster's, not the database's),
    // then the database.
    let roles = source.client(
        "pg_dumpall",
        &["--roles-only", "-d", &source.url("postgres")],
    );
    let roles_path = format!("{dump_path}.roles.sql");
    std::fs::write(&roles_path, &roles.stdout).unwrap();
    target.client(
        "psql",
        &["-q", "-d", &target.url("postgres"), "-f", &roles_path],
    );
    target.client(
        "psql",
        &[
            "-q",
            "-d",
            &target.url("postgres"),
            "-c",
            "create database gigledger",
        ],
    );
    target.client(
        "pg_restore",
        &[
            "--exit-on-error",
            "-d",
            &target.url("gigledger"),
            &dump_path,
        ],
    );
    let _ = std::fs::remove_file(&dump);
    let _ = std::fs::remove_file(&roles_path);

    // The service starts on the restored database and goes on writing.
    let pool = prepare(target.url("gigledger")).await;
    let restored = services(&pool);
    let epochs: i64 = sqlx::query_scalar("select count(*) from log_epochs")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(epochs, 2, "no log epoch was begun on the restored database");
    let third = post_gig(&restored, &client).await;
    let late = propose(&restored, second, &freelancer).await;
    catch_up_all(&pool, &restored).await;

    assert!(
        on_board(&pool, third).await,
        "a gig posted after the restore never reached the gig board"
    );
    let proposals: i64 = sqlx::query_scalar(
        "select count(*) from read.proposals where proposal_id = $1 and status = 'pending'",
    )
    .bind(late.0)
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(
        proposals, 1,
        "a proposal submitted after the restore is missing"
    );
    // Every worker has seen every event exactly once, the restored ones and the new ones.
    let total = event_count(&pool).await;
    assert!(total > before);
    for status in statuses(&pool, &gigledger_api::workers::known_names())
        .await
        .unwrap()
    {
        assert_eq!(
            status.events_applied, total,
            "{} applied {} of {total} events",
            status.name, status.events_applied
        );
        assert_eq!(status.lag_events, 0, "{} lags", status.name);
    }
    // The restored history is still intact, and the new events chain onto it.
    let chain = gigledger_projections::log::verify_chain(&pool, 0, i64::MAX)
        .await
        .unwrap();
    assert!(chain.is_intact(), "{chain:?}");
    assert_eq!(chain.checked, total);
    pool.close().await;
}
