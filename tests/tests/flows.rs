//! Whole flows through the command services and the running process managers, against the real
//! PostgreSQL (no HTTP). Each ends with asserted balances.
#![expect(
    clippy::inconsistent_digit_grouping,
    reason = "amounts in minor units are written units_cents: 100_00 is 100.00 USD"
)]

use std::sync::Arc;

use chrono::{Duration, TimeZone, Utc};
use gigledger_commands::clock::{Clock, ManualClock};
use gigledger_commands::process::{ProcessManager, TimerRunner};
use gigledger_commands::services::{
    Outcome, RequestContext, ServiceError, Services, ServicesConfig,
};
use gigledger_domain::{
    Actor, Budget, ContractCommand, ContractError, ContractId, ContractStatus, Currency, DisputeId,
    EscrowCommand, GatewayMode, GigCommand, GigError, GigId, GigStatus, MilestoneId,
    MilestoneStatus, MilestoneTerms, Money, ProposalId, Role, SimulatedGateway, UserId,
};
use gigledger_projections::runtime::{catch_up, Target};
use sqlx::PgPool;

struct World {
    pool: PgPool,
    services: Arc<Services>,
    clock: Arc<ManualClock>,
    gateway: Arc<SimulatedGateway>,
    client: Actor,
    freelancer: Actor,
    other_freelancer: Actor,
    admin: Actor,
}

fn usd(amount: i64) -> Money {
    Money::new(amount, Currency::USD)
}

impl World {
    fn new(pool: PgPool) -> Self {
        Self::with_config(pool, ServicesConfig::default())
    }

    fn with_config(pool: PgPool, config: ServicesConfig) -> Self {
        let clock = Arc::new(ManualClock::new(
            Utc.with_ymd_and_hms(2026, 11, 2, 9, 0, 0).unwrap(),
        ));
        let gateway = Arc::new(SimulatedGateway::new());
        let services = Arc::new(Services::new(
            pool.clone(),
            config,
            gateway.clone(),
            clock.clone(),
        ));
        Self {
            pool,
            services,
            clock,
            gateway,
            client: Actor::new(UserId::new(), vec![Role::Client]),
            freelancer: Actor::new(UserId::new(), vec![Role::Freelancer]),
            other_freelancer: Actor::new(UserId::new(), vec![Role::Freelancer]),
            admin: Actor::new(UserId::new(), vec![Role::Admin]),
        }
    }

    fn now(&self) -> chrono::DateTime<Utc> {
        self.clock.now()
    }

    /// Runs every process manager until it has applied everything written so far.
    async fn run_process_managers(&self) -> usize {
        let mut handled = 0;
        for pm in ProcessManager::all(&self.services) {
            handled += catch_up(&self.pool, pm.as_ref(), &Target::live(pm.name()), 100)
                .await
                .unwrap();
        }
        handled
    }

    async fn event_count(&self) -> i64 {
        sqlx::query_scalar("select count(*) from events")
            .fetch_one(&self.pool)
            .await
            .unwrap()
    }

    async fn post_gig(&self) -> GigId {
        let gig = GigId::new();
        self.services
            .gig(
                gig,
                GigCommand::PostGig {
                    gig_id: gig,
                    title: "Build a landing page".into(),
                    description: "Responsive, fast, accessible.".into(),
                    skills: vec!["html".into(), "css".into()],
                    budget: Budget::Fixed {
                        amount: usd(300_00),
                    },
                    deadline: None,
                    actor: self.client.clone(),
                    at: self.now(),
                },
                &RequestContext::new(),
            )
            .await
            .unwrap();
        gig
    }

    async fn propose(
        &self,
        gig: GigId,
        who: &Actor,
        amounts: &[i64],
    ) -> (ProposalId, Vec<MilestoneId>) {
        let proposal = ProposalId::new();
        let milestones: Vec<MilestoneTerms> = amounts
            .iter()
            .enumerate()
            .map(|(i, amount)| MilestoneTerms {
                milestone_id: MilestoneId::new(),
                title: format!("Part {}", i + 1),
                amount: usd(*amount),
                due_date: None,
            })
            .collect();
        let ids = milestones.iter().map(|m| m.milestone_id).collect();
        self.services
            .gig(
                gig,
                GigCommand::SubmitProposal {
                    proposal_id: proposal,
                    cover_letter: "I have done this many times.".into(),
                    milestones,
                    actor: who.clone(),
                    at: self.now(),
                },
                &RequestContext::new(),
            )
            .await
            .unwrap();
        (proposal, ids)
    }

    async fn accept(
        &self,
        gig: GigId,
        proposal: ProposalId,
    ) -> Result<(ContractId, Outcome), ServiceError> {
        let contract = ContractId::new();
        let config = self.services.config();
        let outcome = self
            .services
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
            .await?;
        Ok((contract, outcome))
    }

    async fn fund(
        &self,
        contract: ContractId,
        milestone: MilestoneId,
        key: &str,
    ) -> Result<Outcome, ServiceError> {
        self.services
            .escrow(
                contract,
                EscrowCommand::Deposit {
                    milestone_id: milestone,
                    idempotency_key: key.to_owned(),
                    actor: self.client.clone(),
                    at: self.now(),
                },
                &RequestContext::new(),
            )
            .await
    }

    async fn contract_command(
        &self,
        contract: ContractId,
        command: ContractCommand,
    ) -> Result<Outcome, ServiceError> {
        self.services
            .contract(contract, command, &RequestContext::new())
            .await
    }

    async fn submit(&self, contract: ContractId, milestone: MilestoneId) {
        self.contract_command(
            contract,
            ContractCommand::SubmitMilestone {
                milestone_id: milestone,
                note: "Done, see the link.".into(),
                links: vec!["https://example.com/work".into()],
                actor: self.freelancer.clone(),
                at: self.now(),
            },
        )
        .await
        .unwrap();
    }

    async fn approve(
        &self,
        contract: ContractId,
        milestone: MilestoneId,
    ) -> Result<Outcome, ServiceError> {
        self.contract_command(
            contract,
            ContractCommand::ApproveMilestone {
                milestone_id: milestone,
                actor: self.client.clone(),
                at: self.now(),
            },
        )
        .await
    }

    /// (deposited, released gross, refunded, held) of one milestone, from the escrow aggregate.
    async fn balance(&self, contract: ContractId, milestone: MilestoneId) -> (i64, i64, i64, i64) {
        let (escrow, _) = self.services.load_escrow(contract).await.unwrap();
        let b = escrow.milestone_balance(milestone).unwrap();
        (
            b.deposited.amount,
            b.released.amount,
            b.refunded.amount,
            b.held().amount,
        )
    }

    async fn released_split(
        &self,
        contract: ContractId,
        milestone: MilestoneId,
    ) -> (i64, i64, i64) {
        let (gross, fee, net): (i64, i64, i64) = sqlx::query_as(
            "select (payload->'FundsReleased'->'gross'->>'amount')::bigint,
                    (payload->'FundsReleased'->'fee'->>'amount')::bigint,
                    (payload->'FundsReleased'->'net'->>'amount')::bigint
               from events
              where aggregate_type = 'escrow' and aggregate_id = $1 and event_type = 'FundsReleased'
                and payload->'FundsReleased'->>'milestone_id' = $2",
        )
        .bind(contract.to_string())
        .bind(milestone.to_string())
        .fetch_one(&self.pool)
        .await
        .unwrap();
        (gross, fee, net)
    }

    /// A hired contract with funded milestones of the given amounts.
    async fn funded_contract(&self, amounts: &[i64]) -> (ContractId, Vec<MilestoneId>) {
        let gig = self.post_gig().await;
        let (proposal, milestones) = self.propose(gig, &self.freelancer, amounts).await;
        let (contract, _) = self.accept(gig, proposal).await.unwrap();
        for (i, m) in milestones.iter().enumerate() {
            self.fund(contract, *m, &format!("fund-{contract}-{i}"))
                .await
                .unwrap();
        }
        (contract, milestones)
    }
}

#[sqlx::test(migrator = "gigledger_projections::MIGRATOR")]
async fn the_happy_path_from_posting_to_reviews_pays_out_exactly(pool: PgPool) {
    let w = World::new(pool);
    let gig = w.post_gig().await;
    let (chosen, milestones) = w.propose(gig, &w.freelancer, &[100_00, 200_00]).await;
    let (other, _) = w.propose(gig, &w.other_freelancer, &[250_00]).await;

    let (contract, _) = w.accept(gig, chosen).await.unwrap();
    let (gig_state, _) = w.services.load_gig(gig).await.unwrap();
    assert_eq!(gig_state.status(), Some(GigStatus::Hired));
    assert_eq!(
        gig_state.proposal_status(other),
        Some(gigledger_domain::ProposalStatus::Pending),
        "the other proposal stays pending"
    );
    let (contract_state, _) = w.services.load_contract(contract).await.unwrap();
    assert_eq!(contract_state.status(), Some(ContractStatus::Active));
    let (escrow, _) = w.services.load_escrow(contract).await.unwrap();
    assert_eq!(escrow.balances().len(), 2);

    for (i, m) in milestones.iter().enumerate() {
        w.fund(contract, *m, &format!("k{i}")).await.unwrap();
    }
    w.submit(contract, milestones[0]).await;
    w.contract_command(
        contract,
        ContractCommand::RequestChanges {
            milestone_id: milestones[0],
            reason: "The header is misaligned.".into(),
            actor: w.client.clone(),
            at: w.now(),
        },
    )
    .await
    .unwrap();
    w.submit(contract, milestones[0]).await;
    w.approve(contract, milestones[0]).await.unwrap();

    assert_eq!(
        w.released_split(contract, milestones[0]).await,
        (100_00, 10_00, 90_00)
    );
    assert_eq!(
        w.balance(contract, milestones[0]).await,
        (100_00, 100_00, 0, 0)
    );

    w.submit(contract, milestones[1]).await;
    w.approve(contract, milestones[1]).await.unwrap();
    let (gross, fee, net) = w.released_split(contract, milestones[1]).await;
    assert_eq!(fee + net, gross);
    let (contract_state, _) = w.services.load_contract(contract).await.unwrap();
    assert_eq!(contract_state.status(), Some(ContractStatus::Completed));

    for reviewer in [&w.client, &w.freelancer] {
        w.contract_command(
            contract,
            ContractCommand::LeaveReview {
                rating: 5,
                text: "Great to work with.".into(),
                actor: reviewer.clone(),
                at: w.now(),
            },
        )
        .await
        .unwrap();
    }
    let (contract_state, _) = w.services.load_contract(contract).await.unwrap();
    assert!(contract_state.reviews_revealed());
    assert_eq!(w.gateway.charged_total(Currency::USD), 300_00);

    // The process managers find all the work done.
    let before = w.event_count().await;
    w.run_process_managers().await;
    assert_eq!(w.event_count().await, before);
}

#[sqlx::test(migrator = "gigledger_projections::MIGRATOR")]
async fn a_dispute_resolved_seventy_thirty_releases_and_refunds_exactly_the_amount(pool: PgPool) {
    let w = World::new(pool);
    let (contract, milestones) = w.funded_contract(&[1_000_01]).await;
    w.submit(contract, milestones[0]).await;
    let dispute = DisputeId::new();
    w.contract_command(
        contract,
        ContractCommand::OpenDispute {
            dispute_id: dispute,
            milestone_id: milestones[0],
            reason: "Half of it does not work.".into(),
            actor: w.client.clone(),
            at: w.now(),
        },
    )
    .await
    .unwrap();
    let (escrow, _) = w.services.load_escrow(contract).await.unwrap();
    assert!(escrow.milestone_balance(milestones[0]).unwrap().frozen);

    let release = 70_000;
    let refund = 1_000_01 - release;
    w.contract_command(
        contract,
        ContractCommand::ResolveDispute {
            dispute_id: dispute,
            release: usd(release),
            refund: usd(refund),
            actor: w.admin.clone(),
            at: w.now(),
        },
    )
    .await
    .unwrap();
    let (deposited, released, refunded, held) = w.balance(contract, milestones[0]).await;
    assert_eq!((released, refunded, held), (release, refund, 0));
    assert_eq!(released + refunded, deposited);
    let (gross, fee, net) = w.released_split(contract, milestones[0]).await;
    assert_eq!((gross, fee + net), (release, release));
}

#[sqlx::test(migrator = "gigledger_projections::MIGRATOR")]
async fn a_resolution_that_does_not_add_up_is_refused_and_writes_nothing(pool: PgPool) {
    let w = World::new(pool);
    let (contract, milestones) = w.funded_contract(&[500]).await;
    let dispute = DisputeId::new();
    w.contract_command(
        contract,
        ContractCommand::OpenDispute {
            dispute_id: dispute,
            milestone_id: milestones[0],
            reason: "Not started.".into(),
            actor: w.freelancer.clone(),
            at: w.now(),
        },
    )
    .await
    .unwrap();
    let before = w.event_count().await;
    let err = w
        .contract_command(
            contract,
            ContractCommand::ResolveDispute {
                dispute_id: dispute,
                release: usd(300),
                refund: usd(300),
                actor: w.admin.clone(),
                at: w.now(),
            },
        )
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            ServiceError::Contract(ContractError::SettlementDoesNotMatchAmount { .. })
        ),
        "{err:?}"
    );
    assert_eq!(w.event_count().await, before);
}

#[sqlx::test(migrator = "gigledger_projections::MIGRATOR")]
async fn cancelling_refunds_the_funded_milestone_and_leaves_the_paid_one_alone(pool: PgPool) {
    let w = World::new(pool);
    let gig = w.post_gig().await;
    let (proposal, m) = w.propose(gig, &w.freelancer, &[100_00, 50_00, 25_00]).await;
    let (contract, _) = w.accept(gig, proposal).await.unwrap();
    w.fund(contract, m[0], "a").await.unwrap();
    w.fund(contract, m[1], "b").await.unwrap();
    w.submit(contract, m[0]).await;
    w.approve(contract, m[0]).await.unwrap();

    w.contract_command(
        contract,
        ContractCommand::CancelContract {
            reason: "Plans changed.".into(),
            actor: w.client.clone(),
            at: w.now(),
        },
    )
    .await
    .unwrap();

    assert_eq!(
        w.balance(contract, m[0]).await,
        (100_00, 100_00, 0, 0),
        "paid one untouched"
    );
    assert_eq!(
        w.balance(contract, m[1]).await,
        (50_00, 0, 50_00, 0),
        "funded one refunded"
    );
    assert_eq!(
        w.balance(contract, m[2]).await,
        (0, 0, 0, 0),
        "unfunded one: nothing moved"
    );
    let (contract_state, _) = w.services.load_contract(contract).await.unwrap();
    assert_eq!(contract_state.status(), Some(ContractStatus::Cancelled));
    assert_eq!(
        contract_state.milestone_status(m[2]),
        Some(MilestoneStatus::Cancelled)
    );
    // A closed escrow takes no more money.
    assert!(w.fund(contract, m[2], "c").await.is_err());
}

#[sqlx::test(migrator = "gigledger_projections::MIGRATOR")]
async fn a_submitted_milestone_is_released_without_the_client_once_the_review_window_passes(
    pool: PgPool,
) {
    let w = World::new(pool.clone());
    let (contract, m) = w.funded_contract(&[80_00]).await;
    w.submit(contract, m[0]).await;
    w.run_process_managers().await;
    let timers = TimerRunner::new(pool, w.services.clone(), w.clock.clone());

    w.clock.advance(Duration::days(13));
    assert_eq!(timers.fire_due().await.unwrap(), 0, "not due yet");
    assert_eq!(w.balance(contract, m[0]).await.1, 0);

    w.clock.advance(Duration::days(1) + Duration::seconds(1));
    assert_eq!(timers.fire_due().await.unwrap(), 1);
    assert_eq!(w.balance(contract, m[0]).await, (80_00, 80_00, 0, 0));
    let (contract_state, _) = w.services.load_contract(contract).await.unwrap();
    assert_eq!(
        contract_state.milestone_status(m[0]),
        Some(MilestoneStatus::Approved)
    );
    assert_eq!(timers.fire_due().await.unwrap(), 0, "a timer fires once");
}

#[sqlx::test(migrator = "gigledger_projections::MIGRATOR")]
async fn a_failing_gateway_writes_nothing_and_the_retry_with_the_same_key_charges_once(
    pool: PgPool,
) {
    let w = World::new(pool);
    let gig = w.post_gig().await;
    let (proposal, m) = w.propose(gig, &w.freelancer, &[40_00]).await;
    let (contract, _) = w.accept(gig, proposal).await.unwrap();

    w.gateway.set_mode(GatewayMode::Fail);
    let before = w.event_count().await;
    let err = w.fund(contract, m[0], "fund-once").await.unwrap_err();
    assert_eq!(err.kind(), Some(gigledger_domain::ErrorKind::Unavailable));
    assert_eq!(w.event_count().await, before);
    assert_eq!(w.gateway.charge_count(), 0);

    w.gateway.set_mode(GatewayMode::Succeed);
    w.fund(contract, m[0], "fund-once").await.unwrap();
    assert_eq!(w.gateway.charge_count(), 1);
    assert_eq!(w.balance(contract, m[0]).await.0, 40_00);
}

#[sqlx::test(migrator = "gigledger_projections::MIGRATOR")]
async fn a_hanging_gateway_times_out_moves_no_money_and_voids_the_unanswered_charge(pool: PgPool) {
    let config = ServicesConfig {
        gateway_timeout: std::time::Duration::from_millis(100),
        ..ServicesConfig::default()
    };
    let w = World::with_config(pool, config);
    let gig = w.post_gig().await;
    let (proposal, m) = w.propose(gig, &w.freelancer, &[40_00]).await;
    let (contract, _) = w.accept(gig, proposal).await.unwrap();
    w.gateway.set_mode(GatewayMode::Hang);
    let before = w.event_count().await;
    let err = w.fund(contract, m[0], "k").await.unwrap_err();
    assert_eq!(err.kind(), Some(gigledger_domain::ErrorKind::Unavailable));
    // An unanswered charge may stand at the provider: the one event written is its void (no
    // money moves), so that the client's retry charges under the milestone's next key.
    let written: Vec<String> =
        sqlx::query_scalar("select event_type from events order by position offset $1")
            .bind(before)
            .fetch_all(&w.pool)
            .await
            .unwrap();
    assert_eq!(written, vec!["ChargeVoided".to_owned()]);
    assert_eq!(w.balance(contract, m[0]).await.0, 0);
    w.gateway.set_mode(GatewayMode::Succeed);
    w.fund(contract, m[0], "k").await.unwrap();
    assert_eq!(w.gateway.charge_count(), 1);
    assert_eq!(w.balance(contract, m[0]).await.0, 40_00);
}

#[sqlx::test(migrator = "gigledger_projections::MIGRATOR")]
async fn process_managers_run_again_from_zero_write_nothing_new(pool: PgPool) {
    let w = World::new(pool.clone());
    let (contract, m) = w.funded_contract(&[10_00, 20_00]).await;
    w.submit(contract, m[0]).await;
    w.approve(contract, m[0]).await.unwrap();
    w.run_process_managers().await;
    let before = w.event_count().await;

    sqlx::query(
        "update projection_checkpoints set transaction_id = 0, position = 0 where name like 'pm_%'",
    )
    .execute(&pool)
    .await
    .unwrap();
    let handled = w.run_process_managers().await;
    assert!(handled > 0, "the managers really went over the log again");
    assert_eq!(w.event_count().await, before);
}

#[sqlx::test(migrator = "gigledger_projections::MIGRATOR")]
async fn right_after_accept_the_first_milestone_can_be_funded_and_after_approve_escrow_shows_the_release(
    pool: PgPool,
) {
    let w = World::new(pool);
    let gig = w.post_gig().await;
    let (proposal, m) = w.propose(gig, &w.freelancer, &[60_00]).await;
    let (contract, accepted) = w.accept(gig, proposal).await.unwrap();
    let last: i64 = sqlx::query_scalar("select max(position) from events")
        .fetch_one(&w.pool)
        .await
        .unwrap();
    assert_eq!(
        accepted.position,
        Some(last),
        "the answer's position covers the follow-ups"
    );

    w.fund(contract, m[0], "now").await.unwrap();
    w.submit(contract, m[0]).await;
    w.approve(contract, m[0]).await.unwrap();
    assert_eq!(w.balance(contract, m[0]).await, (60_00, 60_00, 0, 0));
}

#[sqlx::test(migrator = "gigledger_projections::MIGRATOR")]
async fn a_crash_between_the_steps_is_completed_by_the_process_manager_once(pool: PgPool) {
    // Services that "crash" after their first append: no follow-ups.
    let crashing = World::with_config(
        pool.clone(),
        ServicesConfig {
            run_follow_ups: false,
            ..ServicesConfig::default()
        },
    );
    let gig = crashing.post_gig().await;
    let (proposal, m) = crashing.propose(gig, &crashing.freelancer, &[30_00]).await;
    let (contract, _) = crashing.accept(gig, proposal).await.unwrap();
    let (c, _) = crashing.services.load_contract(contract).await.unwrap();
    assert_eq!(c.status(), None, "the contract was not started");

    crashing.run_process_managers().await;
    crashing.run_process_managers().await;
    let started: i64 = sqlx::query_scalar(
        "select count(*) from events where event_type in ('ContractStarted', 'EscrowOpened')",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(started, 2, "contract and escrow started exactly once");

    crashing.fund(contract, m[0], "k").await.unwrap();
    crashing.run_process_managers().await;
    let (c, _) = crashing.services.load_contract(contract).await.unwrap();
    assert_eq!(c.milestone_status(m[0]), Some(MilestoneStatus::Funded));
}

#[sqlx::test(migrator = "gigledger_projections::MIGRATOR")]
async fn two_concurrent_accepts_of_one_gig_make_exactly_one_contract(pool: PgPool) {
    let w = World::new(pool.clone());
    let gig = w.post_gig().await;
    let (a, _) = w.propose(gig, &w.freelancer, &[100]).await;
    let (b, _) = w.propose(gig, &w.other_freelancer, &[200]).await;
    let w = Arc::new(w);
    let (first, second) = tokio::join!(w.accept(gig, a), w.accept(gig, b));
    let outcomes = [first, second];
    assert_eq!(outcomes.iter().filter(|o| o.is_ok()).count(), 1);
    let refused = outcomes.iter().find_map(|o| o.as_ref().err()).unwrap();
    assert!(
        matches!(refused, ServiceError::Gig(GigError::AlreadyHired)),
        "{refused:?}"
    );
    let contracts: i64 =
        sqlx::query_scalar("select count(*) from events where event_type = 'ContractStarted'")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(contracts, 1);
}

#[sqlx::test(migrator = "gigledger_projections::MIGRATOR")]
async fn fifty_concurrent_approvals_of_one_milestone_release_exactly_once(pool: PgPool) {
    let w = Arc::new(World::new(pool.clone()));
    let (contract, m) = w.funded_contract(&[99_99]).await;
    w.submit(contract, m[0]).await;
    let milestone = m[0];
    let approvals = (0..50).map(|_| {
        let w = w.clone();
        tokio::spawn(async move { w.approve(contract, milestone).await })
    });
    let results = futures::future::join_all(approvals).await;
    let ok = results
        .iter()
        .filter(|r| r.as_ref().unwrap().is_ok())
        .count();
    assert_eq!(ok, 1);
    for r in results {
        if let Err(e) = r.unwrap() {
            assert_eq!(
                e.kind(),
                Some(gigledger_domain::ErrorKind::Conflict),
                "{e:?}"
            );
        }
    }
    let releases: i64 =
        sqlx::query_scalar("select count(*) from events where event_type = 'FundsReleased'")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(releases, 1);
    assert_eq!(w.balance(contract, m[0]).await, (99_99, 99_99, 0, 0));
}

#[sqlx::test(migrator = "gigledger_projections::MIGRATOR")]
async fn a_process_manager_ahead_of_another_retries_instead_of_stopping(pool: PgPool) {
    use gigledger_commands::process::Process;
    use gigledger_projections::runtime::{
        run_worker, statuses, wait_for_position, Leases, LogNotifier, WorkerConfig,
    };

    // No follow-ups run inline: the managers do everything, in whatever order they get to it.
    let w = World::with_config(
        pool.clone(),
        ServicesConfig {
            run_follow_ups: false,
            ..ServicesConfig::default()
        },
    );
    let gig = w.post_gig().await;
    let (proposal, m) = w.propose(gig, &w.freelancer, &[10_00]).await;
    let (contract, _) = w.accept(gig, proposal).await.unwrap();
    let start = ProcessManager::new(Process::StartContract, w.services.clone());
    catch_up(
        &pool,
        &start,
        &Target::live(Process::StartContract.name()),
        100,
    )
    .await
    .unwrap();
    w.fund(contract, m[0], "k").await.unwrap();
    let dispute = DisputeId::new();
    for command in [
        ContractCommand::MarkMilestoneFunded {
            milestone_id: m[0],
            actor: Actor::system(),
            at: w.now(),
        },
        ContractCommand::OpenDispute {
            dispute_id: dispute,
            milestone_id: m[0],
            reason: "Nothing delivered.".into(),
            actor: w.client.clone(),
            at: w.now(),
        },
        ContractCommand::ResolveDispute {
            dispute_id: dispute,
            release: usd(0),
            refund: usd(10_00),
            actor: w.admin.clone(),
            at: w.now(),
        },
    ] {
        w.contract_command(contract, command).await.unwrap();
    }

    // The settle manager reaches DisputeResolved before anyone froze the funds.
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let settle = tokio::spawn(run_worker(
        pool.clone(),
        Arc::new(ProcessManager::new(Process::Settle, w.services.clone())),
        Target::live(Process::Settle.name()),
        WorkerConfig::default(),
        Leases::new(&pool),
        LogNotifier::polling(),
        stopped,
    ));
    let mut retrying = false;
    for _ in 0..100 {
        let all = statuses(&pool, &[]).await.unwrap();
        if let Some(s) = all.iter().find(|s| s.name == Process::Settle.name()) {
            if s.last_error.is_some() {
                assert_eq!(
                    s.status, "running",
                    "a step not possible yet never stops the worker"
                );
                retrying = true;
                break;
            }
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert!(retrying, "the settle manager met the missing freeze");

    let freeze = ProcessManager::new(Process::Freeze, w.services.clone());
    catch_up(&pool, &freeze, &Target::live(Process::Freeze.name()), 100)
        .await
        .unwrap();
    let last: i64 =
        sqlx::query_scalar("select max(position) from events where event_type = 'DisputeResolved'")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert!(wait_for_position(
        &pool,
        Process::Settle.name(),
        last,
        std::time::Duration::from_secs(30)
    )
    .await
    .unwrap());
    stop.send(true).unwrap();
    settle.await.unwrap();
    assert_eq!(w.balance(contract, m[0]).await, (10_00, 0, 10_00, 0));
    let status = statuses(&pool, &[]).await.unwrap();
    let settle = status
        .iter()
        .find(|s| s.name == Process::Settle.name())
        .unwrap();
    assert_eq!(
        (settle.status.as_str(), settle.last_error.as_deref()),
        ("running", None)
    );
}

#[sqlx::test(migrator = "gigledger_projections::MIGRATOR")]
async fn a_timer_that_fails_is_recorded_and_does_not_block_the_next(pool: PgPool) {
    let w = World::new(pool.clone());
    let (contract, m) = w.funded_contract(&[5_00]).await;
    w.submit(contract, m[0]).await;
    w.run_process_managers().await;
    // A timer for a contract that does not exist, due before the real one.
    sqlx::query(
        "insert into due_timers (timer_key, kind, contract_id, milestone_id, due_at, causation_id,
                                 correlation_id)
         values ('auto_approve:ghost', 'auto_approve', gen_random_uuid(), gen_random_uuid(),
                 $1, gen_random_uuid(), 'test')",
    )
    .bind(w.now())
    .execute(&pool)
    .await
    .unwrap();

    w.clock.advance(Duration::days(15));
    let timers = TimerRunner::new(pool.clone(), w.services.clone(), w.clock.clone());
    assert_eq!(timers.fire_due().await.unwrap(), 1, "the real timer fired");
    assert_eq!(w.balance(contract, m[0]).await.1, 5_00);
    let (attempts, error): (i32, Option<String>) = sqlx::query_as(
        "select attempts, last_error from due_timers where timer_key = 'auto_approve:ghost'",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(attempts, 1);
    assert!(error.is_some());
}

#[sqlx::test(migrator = "gigledger_projections::MIGRATOR")]
async fn a_deposit_that_charged_then_lost_to_a_cancellation_has_its_charge_voided(pool: PgPool) {
    let w = World::new(pool.clone());
    let gig = w.post_gig().await;
    let (proposal, m) = w.propose(gig, &w.freelancer, &[70_00]).await;
    let (contract, _) = w.accept(gig, proposal).await.unwrap();
    // This process has the escrow cached, open.
    w.services.load_escrow(contract).await.unwrap();

    // Another process cancels the contract; its follow-up closes the escrow.
    let other = Services::new(
        pool,
        ServicesConfig::default(),
        w.gateway.clone(),
        w.clock.clone(),
    );
    other
        .contract(
            contract,
            ContractCommand::CancelContract {
                reason: "No longer needed.".into(),
                actor: w.client.clone(),
                at: w.now(),
            },
            &RequestContext::new(),
        )
        .await
        .unwrap();

    // On its stale cache the deposit charges, then loses the race and is refused on fresh state.
    let before = w.event_count().await;
    let err = w.fund(contract, m[0], "late-fund").await.unwrap_err();
    assert!(
        matches!(
            err,
            ServiceError::Escrow(gigledger_domain::EscrowError::EscrowClosed)
        ),
        "{err:?}"
    );
    // No deposit is recorded; the void is (ChargeVoided), before the provider is asked.
    let written: Vec<String> = sqlx::query_scalar(
        "select event_type from events where aggregate_type = 'escrow' and aggregate_id = $1
            and position > (select max(position) from events where event_type = 'EscrowClosed'
                               and aggregate_id = $1)",
    )
    .bind(contract.to_string())
    .fetch_all(&w.pool)
    .await
    .unwrap();
    assert_eq!(written, vec!["ChargeVoided".to_owned()]);
    assert_eq!(w.event_count().await, before + 1);
    assert_eq!(
        w.gateway.voided().len(),
        1,
        "the unrecorded charge was voided"
    );
    assert_eq!(w.gateway.charge_count(), 0);
    assert_eq!(w.gateway.charged_total(Currency::USD), 0);
}

#[sqlx::test(migrator = "gigledger_projections::MIGRATOR")]
async fn funding_a_funded_milestone_again_is_refused_and_keeps_the_recorded_charge(pool: PgPool) {
    let w = World::new(pool);
    let gig = w.post_gig().await;
    let (proposal, m) = w.propose(gig, &w.freelancer, &[70_00]).await;
    let (contract, _) = w.accept(gig, proposal).await.unwrap();
    w.fund(contract, m[0], "fund").await.unwrap();

    let again = w.fund(contract, m[0], "fund").await.unwrap_err();
    assert_eq!(again.kind(), Some(gigledger_domain::ErrorKind::Conflict));
    assert!(
        w.gateway.voided().is_empty(),
        "a recorded deposit's charge is never voided"
    );
    assert_eq!(w.gateway.charged_total(Currency::USD), 70_00);
    assert_eq!(w.balance(contract, m[0]).await.0, 70_00);
}

#[sqlx::test(migrator = "gigledger_projections::MIGRATOR")]
async fn cancelling_after_an_approval_whose_release_is_pending_pays_the_freelancer_not_the_client(
    pool: PgPool,
) {
    // Follow-ups off: the approval's Release is left to the process manager.
    let w = World::with_config(
        pool.clone(),
        ServicesConfig {
            run_follow_ups: false,
            ..ServicesConfig::default()
        },
    );
    let gig = w.post_gig().await;
    let (proposal, m) = w.propose(gig, &w.freelancer, &[100_00, 40_00]).await;
    let (contract, _) = w.accept(gig, proposal).await.unwrap();
    w.run_process_managers().await;
    w.fund(contract, m[0], "a").await.unwrap();
    w.fund(contract, m[1], "b").await.unwrap();
    w.run_process_managers().await;
    w.submit(contract, m[0]).await;
    w.approve(contract, m[0]).await.unwrap();
    assert_eq!(
        w.balance(contract, m[0]).await,
        (100_00, 0, 0, 100_00),
        "release pending"
    );

    // The contract is cancelled (by a process that does run follow-ups) before the release runs.
    let other = Services::new(
        pool,
        ServicesConfig::default(),
        w.gateway.clone(),
        w.clock.clone(),
    );
    other
        .contract(
            contract,
            ContractCommand::CancelContract {
                reason: "Enough.".into(),
                actor: w.client.clone(),
                at: w.now(),
            },
            &RequestContext::new(),
        )
        .await
        .unwrap();
    assert_eq!(
        w.balance(contract, m[0]).await,
        (100_00, 0, 0, 100_00),
        "approved work not refunded"
    );
    assert_eq!(
        w.balance(contract, m[1]).await,
        (40_00, 0, 40_00, 0),
        "the cancelled one refunded"
    );

    w.run_process_managers().await;
    assert_eq!(
        w.balance(contract, m[0]).await,
        (100_00, 100_00, 0, 0),
        "released to the freelancer"
    );
    let stuck: i64 = sqlx::query_scalar(
        "select count(*) from projection_checkpoints where last_error is not null",
    )
    .fetch_one(&w.pool)
    .await
    .unwrap();
    assert_eq!(stuck, 0, "no process manager is stuck retrying");
}
