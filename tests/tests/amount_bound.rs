//! Amounts at the domain's bound (10^13 minor units) through every read model: no worker stops,
//! and the sums come back exact however large they grow (issue 7, Money 5).
//!
//! Overflowing a `bigint` with amounts at the bound takes about 922 000 releases in one day or to
//! one freelancer, far too many to send in a test. So the test sends a few dozen events at the
//! bound through the command services, and first seeds the two running sums that collect them
//! (the day's volumes, the freelancer's earnings) one short of `i64::MAX`, standing for the
//! releases that came before. With `bigint` sums the first release stopped the analytics and
//! user-stats workers ("bigint out of range"); with `numeric` they go on, exactly.

use std::sync::Arc;

use chrono::{Duration, TimeZone, Utc};
use gigledger_commands::clock::ManualClock;
use gigledger_commands::services::{RequestContext, Services, ServicesConfig};
use gigledger_domain::{
    Actor, Budget, ContractCommand, ContractId, Currency, EscrowCommand, GigCommand, GigId,
    MilestoneId, MilestoneTerms, Money, ProposalId, Role, SimulatedGateway, UserId, MAX_AMOUNT,
};
use gigledger_projections::read::{self, analytics, ledger, user_stats};
use gigledger_projections::runtime::{catch_up, Target};
use sqlx::PgPool;

/// Milestones per proposal: the most the domain allows, each at the bound.
const MILESTONES: usize = 20;

fn usd(amount: i64) -> Money {
    Money::new(amount, Currency::USD)
}

struct World {
    services: Services,
    clock: Arc<ManualClock>,
    ctx: RequestContext,
}

impl World {
    fn new(pool: &PgPool) -> Self {
        let start = Utc
            .with_ymd_and_hms(2026, 11, 21, 8, 0, 0)
            .single()
            .expect("a time");
        let clock = Arc::new(ManualClock::new(start));
        let services = Services::new(
            pool.clone(),
            ServicesConfig::default(),
            Arc::new(SimulatedGateway::new()),
            clock.clone(),
        );
        Self {
            services,
            clock,
            ctx: RequestContext::new(),
        }
    }

    async fn gig(&self, gig: GigId, command: GigCommand) {
        self.clock.advance(Duration::seconds(1));
        if let Err(e) = self.services.gig(gig, command, &self.ctx).await {
            panic!("the gig command failed: {e}");
        }
    }

    async fn contract(&self, contract: ContractId, command: ContractCommand) {
        self.clock.advance(Duration::seconds(1));
        if let Err(e) = self.services.contract(contract, command, &self.ctx).await {
            panic!("the contract command failed: {e}");
        }
    }

    /// A gig at the bound, a proposal of 20 milestones at the bound, hired and every milestone
    /// funded: 20 deposits of 10^13.
    async fn funded_contract(
        &self,
        client: &Actor,
        freelancer: &Actor,
    ) -> (ContractId, Vec<MilestoneId>) {
        let gig = GigId::new();
        let now = self.services.now();
        self.gig(
            gig,
            GigCommand::PostGig {
                gig_id: gig,
                title: "A very large job".into(),
                description: "Priced at the most an amount may be.".into(),
                skills: vec!["rust".into()],
                budget: Budget::Fixed {
                    amount: usd(MAX_AMOUNT),
                },
                deadline: None,
                actor: client.clone(),
                at: now,
            },
        )
        .await;
        let proposal = ProposalId::new();
        let milestones: Vec<MilestoneTerms> = (0..MILESTONES)
            .map(|i| MilestoneTerms {
                milestone_id: MilestoneId::new(),
                title: format!("Part {i}"),
                amount: usd(MAX_AMOUNT),
                due_date: None,
            })
            .collect();
        let ids: Vec<MilestoneId> = milestones.iter().map(|m| m.milestone_id).collect();
        self.gig(
            gig,
            GigCommand::SubmitProposal {
                proposal_id: proposal,
                cover_letter: "At the bound.".into(),
                milestones,
                actor: freelancer.clone(),
                at: now,
            },
        )
        .await;
        let contract = ContractId::new();
        self.gig(
            gig,
            GigCommand::AcceptProposal {
                proposal_id: proposal,
                contract_id: contract,
                fee_bps: 1_000,
                review_window_days: 14,
                max_revisions: 2,
                actor: client.clone(),
                at: now,
            },
        )
        .await;
        for milestone in &ids {
            self.clock.advance(Duration::seconds(1));
            let deposit = EscrowCommand::Deposit {
                milestone_id: *milestone,
                idempotency_key: format!("{contract}:{milestone}"),
                actor: client.clone(),
                at: self.services.now(),
            };
            if let Err(e) = self.services.escrow(contract, deposit, &self.ctx).await {
                panic!("the deposit failed: {e}");
            }
        }
        (contract, ids)
    }
}

async fn catch_up_all(pool: &PgPool) {
    for handler in read::all() {
        let target = Target::live(handler.name());
        if let Err(e) = catch_up(pool, handler.as_ref(), &target, 50).await {
            panic!("the read model {} stopped: {e}", handler.name());
        }
    }
}

#[sqlx::test(migrator = "gigledger_projections::MIGRATOR")]
async fn amounts_at_the_bound_never_stop_a_read_model_and_sums_stay_exact(pool: PgPool) {
    let world = World::new(&pool);
    let client = Actor::new(UserId::new(), vec![Role::Client]);
    let freelancer = Actor::new(UserId::new(), vec![Role::Freelancer]);
    let day = world.services.now().date_naive();

    // The running sums one short of i64::MAX: what ~922 000 earlier releases at the bound left.
    let seed = i64::MAX - 1;
    sqlx::query(
        "insert into read.analytics_daily (day, currency, gmv_released, fees, refunds)
         values ($1, 'USD', $2, $2, $2)",
    )
    .bind(day)
    .bind(seed)
    .execute(&pool)
    .await
    .expect("seeds the day's volumes");
    sqlx::query(
        "insert into read.user_stats_earnings (user_id, currency, net) values ($1, 'USD', $2)",
    )
    .bind(freelancer.user_id.0)
    .bind(seed)
    .execute(&pool)
    .await
    .expect("seeds the freelancer's earnings");

    // Contract 1: 20 milestones at the bound, each submitted and approved (20 releases).
    let (paid, milestones) = world.funded_contract(&client, &freelancer).await;
    for milestone in &milestones {
        let now = world.services.now();
        world
            .contract(
                paid,
                ContractCommand::SubmitMilestone {
                    milestone_id: *milestone,
                    note: "Delivered.".into(),
                    links: vec![],
                    actor: freelancer.clone(),
                    at: now,
                },
            )
            .await;
        world
            .contract(
                paid,
                ContractCommand::ApproveMilestone {
                    milestone_id: *milestone,
                    actor: client.clone(),
                    at: now,
                },
            )
            .await;
    }
    // Contract 2: 20 milestones at the bound, funded, then cancelled (20 refunds).
    let (refunded, _) = world.funded_contract(&client, &freelancer).await;
    world
        .contract(
            refunded,
            ContractCommand::CancelContract {
                reason: "Plans changed.".into(),
                actor: client.clone(),
                at: world.services.now(),
            },
        )
        .await;

    catch_up_all(&pool).await;

    let count = i128::try_from(MILESTONES).expect("a count");
    let gross = count * i128::from(MAX_AMOUNT);
    let fee = gross / 10;
    let net = gross - fee;
    let seed = i128::from(seed);

    let volumes = analytics::daily_volumes(&pool, day, day)
        .await
        .expect("reads the day's volumes");
    let usd_day = volumes
        .iter()
        .find(|v| v.currency == "USD")
        .expect("a USD row");
    assert_eq!(
        (usd_day.gmv_released, usd_day.fees, usd_day.refunds),
        (seed + gross, seed + fee, seed + gross),
        "the day's sums are exact beyond i64::MAX"
    );
    assert!(usd_day.gmv_released > i128::from(i64::MAX));
    assert_eq!(usd_day.hires, 2);
    let periods = analytics::gmv(&pool, day, day, analytics::Interval::Day, Some("usd"))
        .await
        .expect("reads the GMV");
    assert_eq!(
        periods
            .iter()
            .flat_map(|p| &p.totals)
            .map(|t| (t.gmv_released, t.fees, t.refunds))
            .collect::<Vec<_>>(),
        vec![(seed + gross, seed + fee, seed + gross)]
    );

    let (earned,): (String,) = sqlx::query_as(
        "select net::text from read.user_stats_earnings where user_id = $1 and currency = 'USD'",
    )
    .bind(freelancer.user_id.0)
    .fetch_one(&pool)
    .await
    .expect("reads the earnings");
    assert_eq!(earned.parse::<i128>().ok(), Some(seed + net));
    let profile = user_stats::profile(&pool, freelancer.user_id)
        .await
        .expect("reads the profile");
    assert_eq!(profile.earnings.len(), 1);
    assert_eq!(profile.earnings[0].band, "10k+");
    assert_eq!(profile.completed_as_freelancer, 1);

    // The ledger sums its lines on read: exact too, per contract and over all of them.
    let totals = ledger::contract_totals(&pool, paid)
        .await
        .expect("reads the totals")
        .expect("the escrow is in the ledger");
    assert_eq!(
        (
            totals.deposited,
            totals.released_gross,
            totals.fee,
            totals.net,
            totals.held
        ),
        (gross, gross, fee, net, 0)
    );
    let all = ledger::totals_by_currency(&pool)
        .await
        .expect("reads the totals");
    assert_eq!(all.len(), 1);
    assert_eq!(
        (
            all[0].deposited,
            all[0].released_gross,
            all[0].refunded,
            all[0].held
        ),
        (2 * gross, gross, gross, 0)
    );
    let trial = ledger::trial_balance(&pool, None)
        .await
        .expect("reads the trial balance");
    assert_eq!(trial.iter().map(|line| line.balance).sum::<i128>(), 0);

    // Every read model is still running: none recorded a failure.
    let failed: Vec<(String, Option<String>)> = sqlx::query_as(
        "select name, last_error from projection_checkpoints
          where status <> 'running' or last_error is not null",
    )
    .fetch_all(&pool)
    .await
    .expect("reads the checkpoints");
    assert_eq!(failed, vec![]);
}
