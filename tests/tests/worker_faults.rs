//! Process managers, timers and worker states when things go wrong (issue 7): a timer moved while
//! its old claim fires, a step no retry can change, and what `gigledger projections status`,
//! `/readyz` and `/metrics` say about workers that never ran, that no process holds, or that are
//! stuck on one event.

use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use chrono::{TimeZone, Utc};
use gigledger_commands::clock::{Clock, ManualClock, SystemClock};
use gigledger_commands::process::{Process, ProcessManager, TimerRunner};
use gigledger_commands::services::{RequestContext, ServiceError, Services, ServicesConfig};
use gigledger_domain::{
    Actor, Budget, ContractCommand, ContractError, ContractId, Currency, EscrowCommand, GigCommand,
    GigId, MilestoneId, MilestoneStatus, MilestoneTerms, Money, ProposalId, Role,
    ScheduledMilestone, SimulatedGateway, UserId,
};
use gigledger_projections::runtime::{
    catch_up, run_worker, statuses, Leases, LogNotifier, Target, WorkerConfig,
};
use gigledger_tests::{KillOnDrop, TestDatabase};
use sqlx::{Connection, PgPool};
use uuid::Uuid;

const BIN: &str = env!("CARGO_BIN_EXE_gigledger-under-test");

fn usd(amount: i64) -> Money {
    Money::new(amount, Currency::USD)
}

struct World {
    pool: PgPool,
    services: Arc<Services>,
    clock: Arc<ManualClock>,
    client: Actor,
    freelancer: Actor,
}

impl World {
    fn new(pool: PgPool, clock: Arc<ManualClock>) -> Self {
        Self {
            services: services(&pool, clock.clone()),
            pool,
            clock,
            client: Actor::new(UserId::new(), vec![Role::Client]),
            freelancer: Actor::new(UserId::new(), vec![Role::Freelancer]),
        }
    }

    fn now(&self) -> chrono::DateTime<Utc> {
        self.clock.now()
    }

    /// A gig with one proposal of one milestone; the proposal and its milestone.
    async fn gig_with_proposal(&self, amount: i64) -> (GigId, ProposalId, MilestoneId) {
        let gig = GigId::new();
        self.services
            .gig(
                gig,
                GigCommand::PostGig {
                    gig_id: gig,
                    title: "Write the user guide".into(),
                    description: "Twenty pages, with screenshots.".into(),
                    skills: vec!["writing".into()],
                    budget: Budget::Fixed {
                        amount: usd(amount),
                    },
                    deadline: None,
                    actor: self.client.clone(),
                    at: self.now(),
                },
                &RequestContext::new(),
            )
            .await
            .unwrap();
        let proposal = ProposalId::new();
        let milestone = MilestoneId::new();
        self.services
            .gig(
                gig,
                GigCommand::SubmitProposal {
                    proposal_id: proposal,
                    cover_letter: "I write guides for a living.".into(),
                    milestones: vec![MilestoneTerms {
                        milestone_id: milestone,
                        title: "The guide".into(),
                        amount: usd(amount),
                        due_date: None,
                    }],
                    actor: self.freelancer.clone(),
                    at: self.now(),
                },
                &RequestContext::new(),
            )
            .await
            .unwrap();
        (gig, proposal, milestone)
    }

    async fn accept(
        &self,
        gig: GigId,
        proposal: ProposalId,
        contract: ContractId,
    ) -> Result<(), ServiceError> {
        let config = self.services.config();
        self.services
            .gig(
                gig,
                GigCommand::AcceptProposal {
                    proposal_id: proposal,
                    contract_id: contract,
                    fee_bps: config.fee_bps,
                    review_window_days: config.review_window_days,
                    max_revisions: config.max_revisions,
                    actor: self.client.clone(),
                    at: self.now(),
                },
                &RequestContext::new(),
            )
            .await
            .map(|_| ())
    }

    async fn contract(&self, contract: ContractId, command: ContractCommand) {
        self.services
            .contract(contract, command, &RequestContext::new())
            .await
            .unwrap();
    }

    async fn submit(&self, contract: ContractId, milestone: MilestoneId) {
        self.contract(
            contract,
            ContractCommand::SubmitMilestone {
                milestone_id: milestone,
                note: "The guide, as agreed.".into(),
                links: vec![],
                actor: self.freelancer.clone(),
                at: self.now(),
            },
        )
        .await;
    }

    async fn run_timer_manager(&self) {
        let pm = ProcessManager::new(Process::AutoApproveTimer, self.services.clone());
        catch_up(
            &self.pool,
            &pm,
            &Target::live(Process::AutoApproveTimer.name()),
            100,
        )
        .await
        .unwrap();
    }
}

fn services(pool: &PgPool, clock: Arc<dyn Clock>) -> Arc<Services> {
    Arc::new(Services::new(
        pool.clone(),
        ServicesConfig::default(),
        Arc::new(SimulatedGateway::new()),
        clock,
    ))
}

fn start_clock() -> Arc<ManualClock> {
    Arc::new(ManualClock::new(
        Utc.with_ymd_and_hms(2026, 11, 2, 9, 0, 0).unwrap(),
    ))
}

/// A due timer's schedule (its cause), when it fired, until when it is claimed, its last error.
type TimerRow = (
    Uuid,
    Option<chrono::DateTime<Utc>>,
    Option<chrono::DateTime<Utc>>,
    Option<String>,
);

/// How the old claim's command ends, once the timer has been moved under it.
#[derive(Clone, Copy)]
enum OldClaim {
    /// It runs (a no-op: the milestone was resubmitted, its window is not over).
    Succeeds,
    /// Its database session is killed mid-command.
    Fails,
}

/// Submits a milestone, lets the manager set its timer, then resubmits it a day later. The runner
/// claims the first schedule's timer when it comes due; while that claim's command is held at
/// its first read, the manager moves the timer to the resubmission; then the command ends as
/// `old_claim` says. The moved timer must still fire, on its own time.
async fn a_moved_timer_outlives_its_old_claim(pool: PgPool, old_claim: OldClaim) {
    let w = World::new(pool.clone(), start_clock());
    let (gig, proposal, m) = w.gig_with_proposal(80_00).await;
    let contract = ContractId::new();
    w.accept(gig, proposal, contract).await.unwrap();
    w.services
        .escrow(
            contract,
            EscrowCommand::Deposit {
                milestone_id: m,
                idempotency_key: "guide".into(),
                actor: w.client.clone(),
                at: w.now(),
            },
            &RequestContext::new(),
        )
        .await
        .unwrap();
    w.submit(contract, m).await;
    w.run_timer_manager().await;
    w.contract(
        contract,
        ContractCommand::RequestChanges {
            milestone_id: m,
            reason: "Add a chapter on backups.".into(),
            actor: w.client.clone(),
            at: w.now(),
        },
    )
    .await;
    w.clock.advance(chrono::Duration::days(1));
    w.submit(contract, m).await;
    let resubmitted: Uuid = sqlx::query_scalar(
        "select event_id from events where event_type = 'MilestoneSubmitted'
          order by position desc limit 1",
    )
    .fetch_one(&pool)
    .await
    .unwrap();

    // The first window is over, the second is not.
    w.clock
        .advance(chrono::Duration::days(13) + chrono::Duration::seconds(1));
    // Its own services: nothing cached, so its command reads the contract from the database
    // (snapshot and events in one statement), where the test holds it.
    let runner = TimerRunner::new(
        pool.clone(),
        services(&pool, w.clock.clone()),
        w.clock.clone(),
    );
    let mut holder = pool.acquire().await.unwrap().detach();
    let mut hold = holder.begin().await.unwrap();
    sqlx::query("lock table snapshots in access exclusive mode")
        .execute(&mut *hold)
        .await
        .unwrap();
    let firing = tokio::spawn(async move { runner.fire_due().await.map_err(|e| e.to_string()) });
    let waiting_pid = loop {
        let pid: Option<i32> = sqlx::query_scalar(
            "select pid from pg_stat_activity
              where datname = current_database() and wait_event_type = 'Lock'",
        )
        .fetch_optional(&pool)
        .await
        .unwrap();
        if let Some(pid) = pid {
            break pid;
        }
        assert!(
            !firing.is_finished(),
            "the runner is held at its first read"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };

    w.run_timer_manager().await;
    match old_claim {
        OldClaim::Succeeds => hold.commit().await.unwrap(),
        OldClaim::Fails => {
            sqlx::query("select pg_terminate_backend($1)")
                .bind(waiting_pid)
                .execute(&pool)
                .await
                .unwrap();
            hold.rollback().await.unwrap();
        }
    }
    let _ = firing.await.unwrap();

    let (causation, fired, claimed, error): TimerRow = sqlx::query_as(
        "select causation_id, fired_at, claimed_until, last_error from due_timers
          where kind = 'auto_approve'",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(causation, resubmitted, "the timer follows the resubmission");
    assert_eq!(
        fired, None,
        "the old claim did not mark the new schedule fired"
    );
    assert_eq!(
        (claimed, error),
        (None, None),
        "nor left its claim or error on it"
    );

    w.clock.advance(chrono::Duration::days(1));
    let runner = TimerRunner::new(pool.clone(), w.services.clone(), w.clock.clone());
    assert_eq!(runner.fire_due().await.unwrap(), 1, "the moved timer fires");
    let (state, _) = w.services.load_contract(contract).await.unwrap();
    assert_eq!(state.milestone_status(m), Some(MilestoneStatus::Approved));
}

#[sqlx::test(migrator = "gigledger_projections::MIGRATOR")]
async fn a_timer_moved_while_its_old_claim_fires_is_not_marked_fired(pool: PgPool) {
    a_moved_timer_outlives_its_old_claim(pool, OldClaim::Succeeds).await;
}

#[sqlx::test(migrator = "gigledger_projections::MIGRATOR")]
async fn a_timer_moved_while_its_old_claim_fails_keeps_no_trace_of_that_failure(pool: PgPool) {
    a_moved_timer_outlives_its_old_claim(pool, OldClaim::Fails).await;
}

#[sqlx::test(migrator = "gigledger_projections::MIGRATOR")]
async fn a_process_manager_stops_on_a_step_no_retry_can_change_and_says_where(pool: PgPool) {
    let w = World::new(pool.clone(), start_clock());
    let contract = ContractId::new();
    let (first_gig, first_proposal, _) = w.gig_with_proposal(50_00).await;
    w.accept(first_gig, first_proposal, contract).await.unwrap();
    // A second acceptance reusing the contract id: the gig records it, the contract refuses it.
    let (second_gig, second_proposal, _) = w.gig_with_proposal(60_00).await;
    let refused = w.accept(second_gig, second_proposal, contract).await;
    assert!(
        matches!(refused, Err(ServiceError::Incomplete { .. })),
        "{refused:?}"
    );
    let taken_at: i64 = sqlx::query_scalar(
        "select position from events where event_type = 'ProposalAccepted' and aggregate_id = $1",
    )
    .bind(second_gig.to_string())
    .fetch_one(&pool)
    .await
    .unwrap();

    let (_stop, stopped) = tokio::sync::watch::channel(false);
    let worker = tokio::spawn(run_worker(
        pool.clone(),
        Arc::new(ProcessManager::new(
            Process::StartContract,
            w.services.clone(),
        )),
        Target::live(Process::StartContract.name()),
        WorkerConfig {
            batch_size: 100,
            poll_interval: Duration::from_millis(20),
            lease_retry: Duration::from_millis(50),
            max_attempts: 2,
            ..WorkerConfig::default()
        },
        Leases::new(&pool),
        LogNotifier::polling(),
        stopped,
    ));
    tokio::time::timeout(Duration::from_secs(60), worker)
        .await
        .expect("the manager stopped instead of retrying forever")
        .unwrap();

    let name = Process::StartContract.name().to_owned();
    let status = statuses(&pool, std::slice::from_ref(&name))
        .await
        .unwrap()
        .into_iter()
        .find(|s| s.name == name)
        .unwrap();
    assert_eq!(status.status, "failed");
    assert_eq!(status.failed_position, Some(taken_at));
    let error = status.last_error.unwrap();
    assert!(
        error.contains(&ContractError::ContractIdTaken.to_string()),
        "{error}"
    );
    assert!(!error.contains("will retry"), "{error}");
}

fn gigledger(args: &[&str], db: &TestDatabase) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.args(args)
        .env("DATABASE_URL", &db.url)
        .env("RUST_LOG", "error")
        .env_remove("RUST_BACKTRACE");
    cmd
}

async fn migrated(db: &TestDatabase) -> PgPool {
    let out = gigledger(&["migrate"], db).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    PgPool::connect(&db.url).await.unwrap()
}

/// `gigledger projections status`, one line per worker (the header dropped).
fn status_lines(db: &TestDatabase) -> Vec<String> {
    let out = gigledger(&["projections", "status"], db).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .skip(1)
        .map(str::to_owned)
        .collect()
}

fn line_of<'a>(lines: &'a [String], name: &str) -> &'a str {
    lines
        .iter()
        .find(|l| l.split_whitespace().next() == Some(name))
        .unwrap_or_else(|| panic!("{name} is listed: {lines:#?}"))
}

async fn leases_held(pool: &PgPool) -> usize {
    statuses(pool, &gigledger_api::workers::known_names())
        .await
        .unwrap()
        .iter()
        .filter(|s| s.leased)
        .count()
}

async fn wait_until<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    for _ in 0..1_500 {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(40)).await;
    }
    panic!("timed out waiting until {what}");
}

#[tokio::test]
async fn status_lists_every_worker_from_a_fresh_database_and_whether_a_process_holds_it() {
    let db = TestDatabase::fresh("status");
    let pool = migrated(&db).await;
    let known = gigledger_api::workers::known_names();
    assert!(
        known.iter().any(|n| n == "gig_board") && known.iter().any(|n| n == "pm_release"),
        "read models and process managers: {known:?}"
    );

    let lines = status_lines(&db);
    for name in &known {
        let line = line_of(&lines, name);
        let fields: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(fields[1], "0", "never ran: position 0: {line}");
        assert!(line.ends_with("free  idle"), "nobody runs it: {line}");
    }

    let workers = KillOnDrop::spawn(
        gigledger(&["projections", "run"], &db)
            .env("GIGLEDGER_POLL_INTERVAL_MS", "50")
            .stdout(Stdio::null())
            .stderr(Stdio::null()),
    );
    wait_until("every lease is held", || async {
        leases_held(&pool).await == known.len()
    })
    .await;
    let lines = status_lines(&db);
    for name in &known {
        let line = line_of(&lines, name);
        assert!(line.ends_with("held  running"), "{line}");
    }

    drop(workers); // killed: its lease session ends with it
    wait_until("no lease is held", || async {
        leases_held(&pool).await == 0
    })
    .await;
    let lines = status_lines(&db);
    for name in &known {
        let line = line_of(&lines, name);
        assert!(line.ends_with("free  idle"), "no process runs it: {line}");
    }
    pool.close().await;
    db.drop_now().await;
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[tokio::test]
async fn a_process_manager_stuck_on_one_event_is_reported_stalled_by_status_readyz_and_metrics() {
    let db = TestDatabase::fresh("stalled");
    let pool = migrated(&db).await;
    let services = services(&pool, Arc::new(SystemClock));
    // An escrow whose contract was never started: marking its deposit funded on the contract
    // waits for a contract that never comes (a step that may pass, so it is retried).
    let contract = ContractId::new();
    let client = Actor::new(UserId::new(), vec![Role::Client]);
    let milestone = MilestoneId::new();
    services
        .escrow(
            contract,
            EscrowCommand::OpenEscrow {
                contract_id: contract,
                client_id: client.user_id,
                freelancer_id: UserId::new(),
                currency: Currency::USD,
                milestones: vec![ScheduledMilestone {
                    milestone_id: milestone,
                    amount: usd(20_00),
                }],
                fee_bps: 1_000,
                actor: Actor::system(),
                at: services.now(),
            },
            &RequestContext::new(),
        )
        .await
        .unwrap();
    let deposited = services
        .escrow(
            contract,
            EscrowCommand::Deposit {
                milestone_id: milestone,
                idempotency_key: "orphan".into(),
                actor: client,
                at: services.now(),
            },
            &RequestContext::new(),
        )
        .await;
    assert!(
        matches!(deposited, Err(ServiceError::Incomplete { .. })),
        "{deposited:?}"
    );

    let port = free_port();
    let _server = KillOnDrop::spawn(
        gigledger(&["serve"], &db)
            .env("GIGLEDGER_JWT_SECRET", gigledger_tests::http::SECRET)
            .env("GIGLEDGER_LISTEN", format!("127.0.0.1:{port}"))
            .env("GIGLEDGER_POLL_INTERVAL_MS", "50")
            .env("GIGLEDGER_STALL_AFTER_SECS", "0")
            .stdout(Stdio::null())
            .stderr(Stdio::null()),
    );
    let http = reqwest::Client::new();
    let base = format!("http://127.0.0.1:{port}");
    let stalled_name = Process::MarkFunded.name();

    let readiness = || async {
        let response = http.get(format!("{base}/readyz")).send().await.ok()?;
        let status = response.status().as_u16();
        let body: serde_json::Value = response.json().await.ok()?;
        Some((status, body))
    };
    wait_until("/readyz reports the stalled manager", || async {
        readiness().await.is_some_and(|(_, body)| {
            body["checks"]["projections"]["stalled"]
                .as_array()
                .is_some_and(|s| s.iter().any(|w| w["projection"] == stalled_name))
        })
    })
    .await;
    let (status, body) = readiness().await.unwrap();
    assert_eq!(status, 503, "{body}");
    let stalled = &body["checks"]["projections"]["stalled"][0];
    assert!(
        stalled["error"]
            .as_str()
            .unwrap()
            .contains(&ContractError::ContractNotFound.to_string()),
        "{body}"
    );

    let gauge = format!("gigledger_projection_stalled{{projection=\"{stalled_name}\"}} 1");
    wait_until("the stalled gauge is 1", || async {
        match http.get(format!("{base}/metrics")).send().await {
            Ok(response) => response.text().await.unwrap_or_default().contains(&gauge),
            Err(_) => false,
        }
    })
    .await;

    let lines = status_lines(&db);
    let line = line_of(&lines, stalled_name);
    assert!(line.contains("held  stalled at position"), "{line}");

    pool.close().await;
    db.drop_now().await;
}
