//! Money at the edge of the escrow: charges at the payment provider against the deposits the
//! ledger records, through the command services on the real PostgreSQL. Every test ends on the
//! same invariant: the provider's live charges are exactly the recorded deposits. Amounts are in
//! minor units: 70_00 is 70.00 USD.

use std::sync::Arc;

use chrono::{TimeZone, Utc};
use gigledger_commands::clock::{Clock, ManualClock};
use gigledger_commands::provider::PgSimulatedGateway;
use gigledger_commands::services::{RequestContext, ServiceError, Services, ServicesConfig};
use gigledger_domain::{
    Actor, Budget, ChargeReference, ChargeRequest, ContractId, Currency, EscrowCommand,
    EscrowError, GatewayMode, GigCommand, GigId, MilestoneId, MilestoneTerms, Money,
    PaymentGateway, ProposalId, Role, SimulatedGateway, UserId,
};
use sqlx::PgPool;

/// The provider the services charge through: the domain's in-memory simulation (one per test,
/// shared by the test's "processes"), or the PostgreSQL-backed one `serve` uses (one instance per
/// process, sharing the database's `provider` schema).
enum Provider {
    Memory(Arc<SimulatedGateway>),
    Pg(Arc<PgSimulatedGateway>),
}

impl Provider {
    /// The gateway a (new) process charges through.
    fn for_process(&self, pool: &PgPool) -> Arc<dyn PaymentGateway> {
        match self {
            Self::Memory(g) => g.clone(),
            Self::Pg(_) => Arc::new(PgSimulatedGateway::new(pool.clone())),
        }
    }

    fn set_mode(&self, mode: GatewayMode) {
        match self {
            Self::Memory(g) => g.set_mode(mode),
            Self::Pg(g) => g.set_mode(mode),
        }
    }

    /// (charge ids voided, live charges' amounts).
    async fn state(&self) -> (Vec<String>, Vec<i64>) {
        match self {
            Self::Memory(g) => {
                let total = i64::try_from(g.charged_total(Currency::USD)).unwrap();
                // The in-memory simulation sums; one entry per live charge is enough here.
                let mut live = vec![0; g.charge_count()];
                if let Some(first) = live.first_mut() {
                    *first = total;
                }
                (g.voided(), live)
            }
            Self::Pg(g) => (
                g.voided().await.unwrap(),
                g.live_charges()
                    .await
                    .unwrap()
                    .iter()
                    .map(|c| c.amount.amount)
                    .collect(),
            ),
        }
    }
}

fn usd(amount: i64) -> Money {
    Money::new(amount, Currency::USD)
}

/// One database, one provider, and the people of one contract.
struct World {
    pool: PgPool,
    clock: Arc<ManualClock>,
    gateway: Provider,
    services: Services,
    client: Actor,
    freelancer: Actor,
}

impl World {
    fn new(pool: PgPool) -> Self {
        Self::with(pool, Provider::Memory(Arc::new(SimulatedGateway::new())))
    }

    /// Charging through the PostgreSQL-backed provider, as `serve` does.
    fn with_pg_provider(pool: PgPool) -> Self {
        let provider = Arc::new(PgSimulatedGateway::new(pool.clone()));
        Self::with(pool, Provider::Pg(provider))
    }

    fn with(pool: PgPool, gateway: Provider) -> Self {
        let clock = Arc::new(ManualClock::new(
            Utc.with_ymd_and_hms(2026, 11, 2, 9, 0, 0).unwrap(),
        ));
        let services = match &gateway {
            Provider::Pg(g) => Self::process(&pool, g.clone(), &clock),
            Provider::Memory(g) => Self::process(&pool, g.clone(), &clock),
        };
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
        Self::process(
            &self.pool,
            self.gateway.for_process(&self.pool),
            &self.clock,
        )
    }

    fn process(
        pool: &PgPool,
        gateway: Arc<dyn PaymentGateway>,
        clock: &Arc<ManualClock>,
    ) -> Services {
        Services::new(
            pool.clone(),
            ServicesConfig {
                gateway_timeout: std::time::Duration::from_millis(200),
                ..ServicesConfig::default()
            },
            gateway,
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
        let (voided, live) = self.gateway.state().await;
        for (milestone, charge, _) in &deposits {
            assert!(
                !voided.contains(charge),
                "the recorded deposit of milestone {milestone} lost its charge {charge} (voided: {voided:?})"
            );
        }
        let recorded: i64 = deposits.iter().map(|(_, _, amount)| amount).sum();
        assert_eq!(
            live.iter().sum::<i64>(),
            recorded,
            "live charges at the provider ({} of them) against recorded deposits {deposits:?}",
            live.len()
        );
        assert_eq!(live.len(), deposits.len());
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

// The same guarantees through the PostgreSQL-backed provider `serve` uses: each process has its
// own client of it, and they share its records (item 4).

#[sqlx::test(migrator = "gigledger_projections::MIGRATOR")]
async fn two_processes_with_their_own_provider_clients_charge_one_milestone_once(pool: PgPool) {
    let w = World::with_pg_provider(pool);
    let (contract, m) = w.contract(&[70_00]).await;
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
async fn through_the_shared_provider_a_refused_append_is_voided_and_a_later_deposit_charges_anew(
    pool: PgPool,
) {
    let w = World::with_pg_provider(pool.clone());
    let (contract, m) = w.contract(&[70_00, 30_00]).await;
    w.fund(contract, m[0], "k").await.unwrap();
    refuse_deposits(&pool).await;

    let failed = w.fund(contract, m[1], "k").await.unwrap_err();
    assert!(matches!(failed, ServiceError::NotRecorded(_)), "{failed:?}");
    w.assert_charges_match_deposits().await;

    allow_deposits(&pool).await;
    w.fund(contract, m[1], "k").await.unwrap();
    w.assert_charges_match_deposits().await;
    let (voided, _) = w.gateway.state().await;
    assert_eq!(voided.len(), 1, "the first attempt's charge, and only it");
}

// Store failures are told apart at the depth they happen (item 3).

#[sqlx::test(migrator = "gigledger_projections::MIGRATOR")]
async fn store_failures_that_cannot_have_committed_are_told_from_those_that_may_have(pool: PgPool) {
    use gigledger_commands::store::{classify, WriteOutcome};
    use sqlx::postgres::PgPoolOptions;
    use sqlx::Connection;

    let options = (*pool.connect_options()).clone();
    // No connection to be had: the statement never left.
    let tiny = PgPoolOptions::new()
        .max_connections(1)
        .acquire_timeout(std::time::Duration::from_millis(50))
        .connect_with(options.clone())
        .await
        .unwrap();
    let held = tiny.acquire().await.unwrap();
    let starved = sqlx::query("select 1").execute(&tiny).await.unwrap_err();
    assert!(matches!(starved, sqlx::Error::PoolTimedOut), "{starved:?}");
    assert_eq!(classify(&starved), WriteOutcome::NotCommitted);
    drop(held);

    let mut conn = sqlx::PgConnection::connect_with(&options).await.unwrap();
    // A statement timeout is an ERROR: the statement's transaction rolled back.
    sqlx::query("set statement_timeout = '20ms'")
        .execute(&mut conn)
        .await
        .unwrap();
    let timed_out = sqlx::query("select pg_sleep(5)")
        .execute(&mut conn)
        .await
        .unwrap_err();
    assert_eq!(
        classify(&timed_out),
        WriteOutcome::NotCommitted,
        "{timed_out:?}"
    );
    // A constraint other than the events' primary key, and a trigger's refusal.
    let constraint = sqlx::query("insert into provider.charges (idempotency_key) values ('x')")
        .execute(&mut conn)
        .await
        .unwrap_err();
    assert_eq!(
        classify(&constraint),
        WriteOutcome::NotCommitted,
        "{constraint:?}"
    );
    let refused = sqlx::query("do $$ begin raise exception 'refused'; end $$")
        .execute(&mut conn)
        .await
        .unwrap_err();
    assert_eq!(
        classify(&refused),
        WriteOutcome::NotCommitted,
        "{refused:?}"
    );

    // The server ends the session under the statement: it may have committed.
    let pid: i32 = sqlx::query_scalar("select pg_backend_pid()")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    sqlx::query("select pg_terminate_backend($1)")
        .bind(pid)
        .execute(&pool)
        .await
        .unwrap();
    let ended = sqlx::query("select 1")
        .execute(&mut conn)
        .await
        .unwrap_err();
    assert_eq!(classify(&ended), WriteOutcome::Unknown, "{ended:?}");
}

// `gigledger audit reconcile`, the real binary (item 4).

const BIN: &str = env!("CARGO_BIN_EXE_gigledger-under-test");

async fn reconcile(pool: &PgPool) -> std::process::Output {
    let name: String = sqlx::query_scalar("select current_database()")
        .fetch_one(pool)
        .await
        .unwrap();
    let mut url = url::Url::parse(&gigledger_tests::admin_url()).unwrap();
    url.set_path(&name);
    std::process::Command::new(BIN)
        .args(["audit", "reconcile"])
        .env("DATABASE_URL", url.as_str())
        .env("RUST_LOG", "error")
        .output()
        .unwrap()
}

#[sqlx::test(migrator = "gigledger_projections::MIGRATOR")]
async fn reconcile_passes_when_every_charge_has_its_one_deposit(pool: PgPool) {
    let w = World::with_pg_provider(pool.clone());
    let (contract, m) = w.contract(&[70_00, 30_00]).await;
    w.fund(contract, m[0], "k").await.unwrap();
    // A voided charge and its ChargeVoided are in agreement too.
    refuse_deposits(&pool).await;
    w.fund(contract, m[1], "k").await.unwrap_err();
    allow_deposits(&pool).await;
    w.fund(contract, m[1], "k").await.unwrap();

    let out = reconcile(&pool).await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("ok: 3 charges and deposits checked"),
        "{stdout}"
    );
}

#[sqlx::test(migrator = "gigledger_projections::MIGRATOR")]
async fn reconcile_names_a_charge_without_deposit_and_a_deposit_whose_charge_was_voided(
    pool: PgPool,
) {
    let w = World::with_pg_provider(pool.clone());
    let (contract, m) = w.contract(&[70_00, 30_00]).await;
    w.fund(contract, m[0], "k").await.unwrap();
    let (escrow, _) = w.services.load_escrow(contract).await.unwrap();
    let provider = PgSimulatedGateway::new(pool.clone());
    // A process charged milestone 2 and died before appending its deposit.
    let orphan = provider
        .charge(ChargeRequest {
            idempotency_key: escrow.charge_key(m[1]).unwrap(),
            amount: usd(30_00),
            payer: w.client.user_id,
            reference: ChargeReference {
                contract_id: contract,
                milestone_id: m[1],
            },
        })
        .await
        .unwrap();
    // Milestone 1's recorded charge was voided at the provider behind the ledger's back.
    provider
        .void(&escrow.charge_key(m[0]).unwrap())
        .await
        .unwrap();
    let recorded = &w.deposits().await[0].1;

    let out = reconcile(&pool).await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains(&format!("charge {}", orphan.charge_id))
            && stdout.contains("no deposit records it"),
        "{stdout}"
    );
    assert!(
        stdout.contains(&format!(
            "names charge {recorded}, which the provider voided"
        )),
        "{stdout}"
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("2 mismatches"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // The client's retry meets the orphaned charge under the milestone's key and records it.
    w.fund(contract, m[1], "retry").await.unwrap();
    assert_eq!(w.deposits().await[1].1, orphan.charge_id);
    let out = reconcile(&pool).await;
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("1 mismatches"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

#[sqlx::test(migrator = "gigledger_projections::MIGRATOR")]
async fn a_milestone_whose_charge_was_voided_at_the_provider_directly_can_still_be_funded(
    pool: PgPool,
) {
    let w = World::with_pg_provider(pool.clone());
    let (contract, m) = w.contract(&[70_00]).await;
    let (escrow, _) = w.services.load_escrow(contract).await.unwrap();
    // Someone voided the milestone's key at the provider, behind the ledger's back.
    PgSimulatedGateway::new(pool.clone())
        .void(&escrow.charge_key(m[0]).unwrap())
        .await
        .unwrap();

    let refused = w.fund(contract, m[0], "k").await.unwrap_err();
    assert!(
        matches!(
            refused,
            ServiceError::Escrow(EscrowError::Gateway(gigledger_domain::GatewayError::Voided))
        ),
        "{refused:?}"
    );
    // The escrow now knows the key is spent; the retry charges under the next one.
    w.fund(contract, m[0], "k").await.unwrap();
    w.assert_charges_match_deposits().await;
}

/// The provider, except that every void fails (it is down by the time the void is sent).
struct VoidsFail(Arc<PgSimulatedGateway>);

#[async_trait::async_trait]
impl PaymentGateway for VoidsFail {
    async fn charge(
        &self,
        req: ChargeRequest,
    ) -> Result<gigledger_domain::ChargeReceipt, gigledger_domain::GatewayError> {
        self.0.charge(req).await
    }

    async fn void(&self, _key: &str) -> Result<(), gigledger_domain::GatewayError> {
        Err(gigledger_domain::GatewayError::Unavailable(
            "down for the test".to_owned(),
        ))
    }

    async fn onboard(
        &self,
        req: gigledger_domain::gateway::OnboardRequest,
    ) -> Result<gigledger_domain::gateway::OnboardReceipt, gigledger_domain::GatewayError> {
        self.0.onboard(req).await
    }

    async fn transfer(
        &self,
        req: gigledger_domain::gateway::TransferRequest,
    ) -> Result<gigledger_domain::gateway::TransferReceipt, gigledger_domain::GatewayError> {
        self.0.transfer(req).await
    }

    async fn refund(
        &self,
        req: gigledger_domain::gateway::RefundRequest,
    ) -> Result<gigledger_domain::gateway::RefundReceipt, gigledger_domain::GatewayError> {
        self.0.refund(req).await
    }
}

#[sqlx::test(migrator = "gigledger_projections::MIGRATOR")]
async fn reconcile_tells_a_void_that_never_reached_the_provider(pool: PgPool) {
    let mut w = World::with_pg_provider(pool.clone());
    w.services = World::process(
        &pool,
        Arc::new(VoidsFail(Arc::new(PgSimulatedGateway::new(pool.clone())))),
        &w.clock,
    );
    let (contract, m) = w.contract(&[70_00]).await;
    refuse_deposits(&pool).await;
    w.fund(contract, m[0], "k").await.unwrap_err();

    let out = reconcile(&pool).await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains("the escrow voided its key, so void it at the provider"),
        "{stdout}"
    );
}

#[sqlx::test(migrator = "gigledger_projections::MIGRATOR")]
async fn a_void_that_never_reached_the_provider_is_finished_by_the_process_manager(pool: PgPool) {
    // The process records ChargeVoided, then cannot reach the provider (or dies) before voiding.
    let mut w = World::with_pg_provider(pool.clone());
    w.services = World::process(
        &pool,
        Arc::new(VoidsFail(Arc::new(PgSimulatedGateway::new(pool.clone())))),
        &w.clock,
    );
    let (contract, m) = w.contract(&[70_00]).await;
    refuse_deposits(&pool).await;
    w.fund(contract, m[0], "k").await.unwrap_err();
    let before = gigledger_commands::reconcile::reconcile(&pool)
        .await
        .unwrap();
    assert!(
        !before.ok(),
        "the charge was voided at once: nothing to finish"
    );

    // Another process's managers, with the provider reachable, finish the void from the log.
    let restarted = Arc::new(World::process(
        &pool,
        Arc::new(PgSimulatedGateway::new(pool.clone())),
        &w.clock,
    ));
    for manager in gigledger_commands::process::ProcessManager::all(&restarted) {
        gigledger_projections::runtime::catch_up(
            &pool,
            manager.as_ref(),
            &gigledger_projections::runtime::Target::live(manager.name()),
            100,
        )
        .await
        .unwrap();
    }
    let after = gigledger_commands::reconcile::reconcile(&pool)
        .await
        .unwrap();
    assert!(after.ok(), "{:?}", after.mismatches);
    // Handling the event again (a replay after a crash) changes nothing.
    sqlx::query("delete from projection_checkpoints where name = 'pm_void_charge'")
        .execute(&pool)
        .await
        .unwrap();
    for manager in gigledger_commands::process::ProcessManager::all(&restarted) {
        gigledger_projections::runtime::catch_up(
            &pool,
            manager.as_ref(),
            &gigledger_projections::runtime::Target::live(manager.name()),
            100,
        )
        .await
        .unwrap();
    }
    assert!(gigledger_commands::reconcile::reconcile(&pool)
        .await
        .unwrap()
        .ok());
    // The milestone can still be funded, under its next key.
    allow_deposits(&pool).await;
    w.services = World::process(
        &pool,
        Arc::new(PgSimulatedGateway::new(pool.clone())),
        &w.clock,
    );
    w.fund(contract, m[0], "k2").await.unwrap();
    w.assert_charges_match_deposits().await;
}

// Found by review: a charge whose answer is lost, a refusal that never reached the gateway, and
// an audit that ran on the wrong database.

/// The provider takes the charge, then its answer is lost (slower than the caller's timeout).
struct AnswerLost(Arc<PgSimulatedGateway>);

#[async_trait::async_trait]
impl PaymentGateway for AnswerLost {
    async fn charge(
        &self,
        req: ChargeRequest,
    ) -> Result<gigledger_domain::ChargeReceipt, gigledger_domain::GatewayError> {
        let _charged = self.0.charge(req).await;
        std::future::pending().await
    }

    async fn void(&self, key: &str) -> Result<(), gigledger_domain::GatewayError> {
        self.0.void(key).await
    }

    async fn onboard(
        &self,
        req: gigledger_domain::gateway::OnboardRequest,
    ) -> Result<gigledger_domain::gateway::OnboardReceipt, gigledger_domain::GatewayError> {
        self.0.onboard(req).await
    }

    async fn transfer(
        &self,
        req: gigledger_domain::gateway::TransferRequest,
    ) -> Result<gigledger_domain::gateway::TransferReceipt, gigledger_domain::GatewayError> {
        self.0.transfer(req).await
    }

    async fn refund(
        &self,
        req: gigledger_domain::gateway::RefundRequest,
    ) -> Result<gigledger_domain::gateway::RefundReceipt, gigledger_domain::GatewayError> {
        self.0.refund(req).await
    }
}

#[sqlx::test(migrator = "gigledger_projections::MIGRATOR")]
async fn a_charge_whose_answer_was_lost_is_voided_and_the_retry_charges_once(pool: PgPool) {
    let mut w = World::with_pg_provider(pool.clone());
    let (contract, m) = w.contract(&[70_00]).await;
    let real = w.services;
    w.services = World::process(
        &pool,
        Arc::new(AnswerLost(Arc::new(PgSimulatedGateway::new(pool.clone())))),
        &w.clock,
    );
    let timed_out = w.fund(contract, m[0], "k").await.unwrap_err();
    assert!(
        matches!(
            timed_out,
            ServiceError::Escrow(EscrowError::Gateway(
                gigledger_domain::GatewayError::Timeout
            ))
        ),
        "{timed_out:?}"
    );
    let found = gigledger_commands::reconcile::reconcile(&pool)
        .await
        .unwrap();
    assert!(
        found.ok(),
        "a charge the client cannot see was left standing: {:?}",
        found.mismatches
    );
    w.services = real;
    w.fund(contract, m[0], "k").await.unwrap();
    w.assert_charges_match_deposits().await;
}

async fn voids_recorded(pool: &PgPool) -> i64 {
    sqlx::query_scalar("select count(*) from events where event_type = 'ChargeVoided'")
        .fetch_one(pool)
        .await
        .unwrap()
}

#[sqlx::test(migrator = "gigledger_projections::MIGRATOR")]
async fn a_deposit_refused_before_any_charge_writes_no_void(pool: PgPool) {
    let w = World::with_pg_provider(pool.clone());
    let (contract, m) = w.contract(&[70_00]).await;
    // A stale If-Match is refused before the gateway is asked.
    let stale = w
        .services
        .escrow(
            contract,
            EscrowCommand::Deposit {
                milestone_id: m[0],
                idempotency_key: "k".to_owned(),
                actor: w.client.clone(),
                at: w.clock.now(),
            },
            &RequestContext {
                expected_version: Some(99),
                ..RequestContext::new()
            },
        )
        .await
        .unwrap_err();
    assert!(matches!(stale, ServiceError::Conflict { .. }), "{stale:?}");
    assert_eq!(
        voids_recorded(&pool).await,
        0,
        "refused input wrote to the log"
    );
    w.fund(contract, m[0], "k").await.unwrap();
    w.assert_charges_match_deposits().await;
}

#[tokio::test]
async fn reconcile_on_a_database_that_does_not_exist_fails_and_creates_nothing() {
    let db = gigledger_tests::TestDatabase::fresh("reconcile_missing");
    let out = std::process::Command::new(BIN)
        .args(["audit", "reconcile"])
        .env("DATABASE_URL", &db.url)
        .env("RUST_LOG", "error")
        .output()
        .unwrap();
    let created: bool = {
        let admin = PgPool::connect(&gigledger_tests::admin_url())
            .await
            .unwrap();
        sqlx::query_scalar("select exists (select 1 from pg_database where datname = $1)")
            .bind(&db.name)
            .fetch_one(&admin)
            .await
            .unwrap()
    };
    db.drop_now().await;
    assert!(!out.status.success(), "an audit of nothing passed");
    assert!(!created, "the audit created the database it was auditing");
}

#[sqlx::test(migrator = "gigledger_projections::MIGRATOR")]
async fn reconcile_finds_a_deposit_that_names_another_milestones_charge(pool: PgPool) {
    let w = World::with_pg_provider(pool.clone());
    let (contract, m) = w.contract(&[70_00, 70_00]).await;
    w.fund(contract, m[0], "k").await.unwrap();
    // An outside writer records m2's deposit with m1's charge (same amount, same currency).
    let (charge_id, version): (String, i64) = sqlx::query_as(
        "select (select payload->'FundsDeposited'->>'charge_id' from events
                  where aggregate_id = $1 and event_type = 'FundsDeposited'),
                (select max(sequence) from events where aggregate_type = 'escrow'
                    and aggregate_id = $1)",
    )
    .bind(contract.to_string())
    .fetch_one(&pool)
    .await
    .unwrap();
    let forged = gigledger_commands::store::NewEvent {
        event_id: uuid::Uuid::now_v7(),
        event_type: "FundsDeposited".to_owned(),
        event_version: "1".to_owned(),
        payload: serde_json::json!({"FundsDeposited": {
            "milestone_id": m[1].to_string(),
            "amount": {"amount": 70_00, "currency": "USD"},
            "charge_id": charge_id,
        }}),
        metadata: serde_json::json!({}),
    };
    gigledger_commands::store::PgEventRepository::new(pool.clone())
        .append("escrow", &contract.to_string(), version, &[forged], None)
        .await
        .unwrap();
    let found = gigledger_commands::reconcile::reconcile(&pool)
        .await
        .unwrap();
    assert!(
        found.mismatches.iter().any(|m| matches!(
            m,
            gigledger_commands::reconcile::Mismatch::ChargeOfAnotherMilestone { .. }
        )),
        "{:?}",
        found.mismatches
    );
}
