//! Money at the edge of the escrow: charges at the payment provider against the deposits the
//! ledger records, through the command services on the real PostgreSQL. Every test ends on the
//! same invariant: the provider's live charges are exactly the recorded deposits.
#![expect(
    clippy::inconsistent_digit_grouping,
    reason = "amounts in minor units are written units_cents: 100_00 is 100.00 USD"
)]

use std::sync::Arc;

use chrono::{TimeZone, Utc};
use gigledger_commands::clock::{Clock, ManualClock};
use gigledger_commands::services::{RequestContext, ServiceError, Services, ServicesConfig};
use gigledger_domain::{
    Actor, Budget, ContractId, Currency, EscrowCommand, EscrowError, GatewayMode, GigCommand,
    GigId, MilestoneId, MilestoneTerms, Money, ProposalId, Role, SimulatedGateway, UserId,
};
use sqlx::PgPool;

fn usd(amount: i64) -> Money {
    Money::new(amount, Currency::USD)
}

/// One database, one provider, and the people of one contract.
struct World {
    pool: PgPool,
    clock: Arc<ManualClock>,
    gateway: Arc<SimulatedGateway>,
    services: Services,
    client: Actor,
    freelancer: Actor,
}

impl World {
    fn new(pool: PgPool) -> Self {
        let clock = Arc::new(ManualClock::new(
            Utc.with_ymd_and_hms(2026, 11, 2, 9, 0, 0).unwrap(),
        ));
        let gateway = Arc::new(SimulatedGateway::new());
        let services = Self::process(&pool, &gateway, &clock);
        Self {
            pool,
            clock,
            gateway,
            services,
            client: Actor::new(UserId::new(), vec![Role::Client]),
            freelancer: Actor::new(UserId::new(), vec![Role::Freelancer]),
        }
    }

    /// Another process on the same database and the same provider, with a cache of its own.
    fn other_process(&self) -> Services {
        Self::process(&self.pool, &self.gateway, &self.clock)
    }

    fn process(
        pool: &PgPool,
        gateway: &Arc<SimulatedGateway>,
        clock: &Arc<ManualClock>,
    ) -> Services {
        Services::new(
            pool.clone(),
            ServicesConfig {
                gateway_timeout: std::time::Duration::from_millis(200),
                ..ServicesConfig::default()
            },
            gateway.clone(),
            clock.clone(),
        )
    }

    /// A hired contract whose milestones have the given amounts, none funded yet.
    async fn contract(&self, amounts: &[i64]) -> (ContractId, Vec<MilestoneId>) {
        let ctx = RequestContext::new();
        let at = self.clock.now();
        let gig = GigId::new();
        self.services
            .gig(
                gig,
                GigCommand::PostGig {
                    gig_id: gig,
                    title: "Build a landing page".into(),
                    description: "Responsive, fast, accessible.".into(),
                    skills: vec!["html".into()],
                    budget: Budget::Fixed {
                        amount: usd(amounts.iter().sum()),
                    },
                    deadline: None,
                    actor: self.client.clone(),
                    at,
                },
                &ctx,
            )
            .await
            .unwrap();
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
        let proposal = ProposalId::new();
        self.services
            .gig(
                gig,
                GigCommand::SubmitProposal {
                    proposal_id: proposal,
                    cover_letter: "I have done this many times.".into(),
                    milestones,
                    actor: self.freelancer.clone(),
                    at,
                },
                &ctx,
            )
            .await
            .unwrap();
        let contract = ContractId::new();
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
                    at,
                },
                &ctx,
            )
            .await
            .unwrap();
        (contract, ids)
    }

    async fn fund_as(
        &self,
        services: &Services,
        who: &Actor,
        contract: ContractId,
        milestone: MilestoneId,
        key: &str,
    ) -> Result<(), ServiceError> {
        services
            .escrow(
                contract,
                EscrowCommand::Deposit {
                    milestone_id: milestone,
                    idempotency_key: key.to_owned(),
                    actor: who.clone(),
                    at: self.clock.now(),
                },
                &RequestContext::new(),
            )
            .await
            .map(|_| ())
    }

    async fn fund(
        &self,
        contract: ContractId,
        milestone: MilestoneId,
        key: &str,
    ) -> Result<(), ServiceError> {
        self.fund_as(&self.services, &self.client, contract, milestone, key)
            .await
    }

    /// Every recorded deposit: (milestone, charge id, amount), read from the events.
    async fn deposits(&self) -> Vec<(String, String, i64)> {
        sqlx::query_as(
            "select payload->'FundsDeposited'->>'milestone_id',
                    payload->'FundsDeposited'->>'charge_id',
                    (payload->'FundsDeposited'->'amount'->>'amount')::bigint
               from events
              where aggregate_type = 'escrow' and event_type = 'FundsDeposited'
              order by position",
        )
        .fetch_all(&self.pool)
        .await
        .unwrap()
    }

    /// The provider holds exactly one live charge per recorded deposit, and nothing else.
    async fn assert_charges_match_deposits(&self) {
        let deposits = self.deposits().await;
        let voided = self.gateway.voided();
        for (milestone, charge, _) in &deposits {
            assert!(
                !voided.contains(charge),
                "the recorded deposit of milestone {milestone} lost its charge {charge} (voided: {voided:?})"
            );
        }
        let recorded: i64 = deposits.iter().map(|(_, _, amount)| amount).sum();
        assert_eq!(
            self.gateway.charged_total(Currency::USD),
            i128::from(recorded),
            "live charges at the provider ({} of them) against recorded deposits {deposits:?}",
            self.gateway.charge_count()
        );
        assert_eq!(self.gateway.charge_count(), deposits.len());
    }
}

// Item 1: a refused deposit must never void another, recorded deposit's charge.

#[sqlx::test(migrator = "gigledger_projections::MIGRATOR")]
async fn funding_a_second_milestone_with_the_first_ones_key_never_voids_the_first_charge(
    pool: PgPool,
) {
    let w = World::new(pool);
    let (contract, m) = w.contract(&[70_00, 30_00]).await;
    w.fund(contract, m[0], "k").await.unwrap();

    // The client's key is reused for another milestone (a client bug, or a replayed request).
    let _ = w.fund(contract, m[1], "k").await;

    w.assert_charges_match_deposits().await;
    assert!(w
        .deposits()
        .await
        .iter()
        .any(|(id, _, _)| *id == m[0].to_string()));
}

#[sqlx::test(migrator = "gigledger_projections::MIGRATOR")]
async fn a_key_reused_on_another_contract_never_voids_the_first_contracts_charge(pool: PgPool) {
    let w = World::new(pool);
    let (first, m1) = w.contract(&[70_00]).await;
    let (second, m2) = w.contract(&[30_00]).await;
    w.fund(first, m1[0], "k").await.unwrap();

    let _ = w.fund(second, m2[0], "k").await;

    w.assert_charges_match_deposits().await;
}

#[sqlx::test(migrator = "gigledger_projections::MIGRATOR")]
async fn a_deposit_refused_before_the_gateway_never_voids_a_recorded_charge(pool: PgPool) {
    let w = World::new(pool);
    let (contract, m) = w.contract(&[70_00, 30_00]).await;
    w.fund(contract, m[0], "k").await.unwrap();

    // The freelancer may not fund; the refusal never reaches the gateway.
    let refused = w
        .fund_as(&w.services, &w.freelancer, contract, m[1], "k")
        .await
        .unwrap_err();
    assert!(
        matches!(refused, ServiceError::Escrow(EscrowError::NotTheClient)),
        "{refused:?}"
    );

    w.assert_charges_match_deposits().await;
}

#[sqlx::test(migrator = "gigledger_projections::MIGRATOR")]
async fn a_deposit_that_times_out_never_voids_a_recorded_charge(pool: PgPool) {
    let w = World::new(pool);
    let (contract, m) = w.contract(&[70_00, 30_00]).await;
    w.fund(contract, m[0], "k").await.unwrap();

    w.gateway.set_mode(GatewayMode::Hang);
    let timed_out = w.fund(contract, m[1], "k").await.unwrap_err();
    assert_eq!(
        timed_out.kind(),
        Some(gigledger_domain::ErrorKind::Unavailable)
    );
    w.gateway.set_mode(GatewayMode::Succeed);

    w.assert_charges_match_deposits().await;
    // The milestone can still be funded once the provider answers again.
    w.fund(contract, m[1], "k2").await.unwrap();
    w.assert_charges_match_deposits().await;
}

// Item 2: two processes (or a stale cache) never charge one milestone twice.

#[sqlx::test(migrator = "gigledger_projections::MIGRATOR")]
async fn two_processes_funding_one_milestone_with_different_keys_charge_it_once(pool: PgPool) {
    let w = World::new(pool);
    let (contract, m) = w.contract(&[70_00]).await;
    // Process B has the escrow cached from before A's deposit.
    let b = w.other_process();
    b.load_escrow(contract).await.unwrap();

    w.fund(contract, m[0], "k1").await.unwrap();
    let second = w
        .fund_as(&b, &w.client, contract, m[0], "k2")
        .await
        .unwrap_err();
    assert!(
        matches!(second, ServiceError::Escrow(EscrowError::AlreadyDeposited)),
        "{second:?}"
    );

    w.assert_charges_match_deposits().await;
    assert_eq!(w.deposits().await.len(), 1);
}

#[sqlx::test(migrator = "gigledger_projections::MIGRATOR")]
async fn concurrent_fund_requests_from_two_processes_record_one_deposit_and_one_charge(
    pool: PgPool,
) {
    let w = World::new(pool);
    let (contract, m) = w.contract(&[70_00]).await;
    let b = w.other_process();
    b.load_escrow(contract).await.unwrap();
    w.services.load_escrow(contract).await.unwrap();

    let (first, second) = tokio::join!(
        w.fund(contract, m[0], "first"),
        w.fund_as(&b, &w.client, contract, m[0], "second"),
    );
    assert!(
        first.is_ok() || second.is_ok(),
        "one of them funds: {first:?} {second:?}"
    );

    w.assert_charges_match_deposits().await;
    assert_eq!(w.deposits().await.len(), 1);
}

// Item 3: a charge followed by a store failure that certainly did not commit is voided.

/// Makes the database refuse every deposit, as a trigger refusal (or a constraint) would.
async fn refuse_deposits(pool: &PgPool) {
    sqlx::query(
        "create function test_refuse_deposits() returns trigger language plpgsql as $$
         begin
           if new.event_type = 'FundsDeposited' then
             raise exception 'deposits are refused by this test';
           end if;
           return new;
         end $$",
    )
    .execute(pool)
    .await
    .unwrap();
    sqlx::query(
        "create trigger test_refuse_deposits before insert on events
         for each row execute function test_refuse_deposits()",
    )
    .execute(pool)
    .await
    .unwrap();
}

async fn allow_deposits(pool: &PgPool) {
    sqlx::query("drop trigger test_refuse_deposits on events")
        .execute(pool)
        .await
        .unwrap();
}

#[sqlx::test(migrator = "gigledger_projections::MIGRATOR")]
async fn a_charge_whose_append_is_refused_by_the_database_is_voided(pool: PgPool) {
    let w = World::new(pool.clone());
    let (contract, m) = w.contract(&[70_00]).await;
    refuse_deposits(&pool).await;

    let failed = w.fund(contract, m[0], "k").await.unwrap_err();
    assert_eq!(failed.kind(), None, "a storage failure: {failed:?}");
    assert!(w.deposits().await.is_empty());
    w.assert_charges_match_deposits().await;

    // Once the database takes deposits again, the milestone is funded and charged once.
    allow_deposits(&pool).await;
    w.fund(contract, m[0], "k").await.unwrap();
    w.assert_charges_match_deposits().await;
    assert_eq!(w.deposits().await.len(), 1);
}
