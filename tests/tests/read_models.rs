//! The read models against the real PostgreSQL, with every state set up by sending commands
//! through the command services: each read model rebuilt from zero equals the one built while
//! events arrived, the ledger agrees with the escrow aggregates, the read functions tell each
//! party what happened, and the gig board ranks, filters and pages exactly.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use chrono::{DateTime, Duration, NaiveDate, TimeZone, Utc};
use gigledger_commands::clock::ManualClock;
use gigledger_commands::services::{RequestContext, Services, ServicesConfig};
use gigledger_domain::{
    Actor, Budget, ContractCommand, ContractId, ContractStatus, Currency, DisputeId, EscrowCommand,
    GigCommand, GigId, GigStatus, MilestoneId, MilestoneStatus, MilestoneTerms, Money, ProposalId,
    ProposalStatus, Role, SimulatedGateway, UserId,
};
use gigledger_projections::log::{read_after, Checkpoint, RecordedEvent};
use gigledger_projections::read::gig_board::{self, GigCard, GigQuery, GigSort};
use gigledger_projections::read::proposals::ProposalViewStatus;
use gigledger_projections::read::{
    self, analytics, contracts, ledger, notifications, proposals, user_stats, ReadError,
};
use gigledger_projections::runtime::{catch_up, Target};
use sqlx::PgPool;

// ------------------------------------------------------------------------------------------------
// Sending commands
// ------------------------------------------------------------------------------------------------

/// The command services over a test database, with a clock that moves only when told.
struct World {
    pool: PgPool,
    services: Services,
    clock: Arc<ManualClock>,
    ctx: RequestContext,
}

fn day() -> NaiveDate {
    NaiveDate::from_ymd_opt(2026, 11, 21).expect("a date")
}

fn usd(amount: i64) -> Money {
    Money::new(amount, Currency::USD)
}

fn eur(amount: i64) -> Money {
    Money::new(amount, Currency::EUR)
}

fn person(role: Role) -> Actor {
    Actor::new(UserId::new(), vec![role])
}

impl World {
    fn new(pool: PgPool) -> Self {
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
            pool,
            services,
            clock,
            ctx: RequestContext::new(),
        }
    }

    fn now(&self) -> DateTime<Utc> {
        self.services.now()
    }

    /// Moves the clock on, so each step has its own time.
    fn tick(&self) {
        self.clock.advance(Duration::minutes(1));
    }

    async fn gig(&self, gig: GigId, command: GigCommand) {
        self.tick();
        if let Err(e) = self.services.gig(gig, command, &self.ctx).await {
            panic!("the gig command failed: {e}");
        }
    }

    async fn contract(&self, contract: ContractId, command: ContractCommand) {
        self.tick();
        if let Err(e) = self.services.contract(contract, command, &self.ctx).await {
            panic!("the contract command failed: {e}");
        }
    }

    async fn post(
        &self,
        client: &Actor,
        title: &str,
        description: &str,
        skills: &[&str],
        budget: Budget,
    ) -> GigId {
        let gig = GigId::new();
        self.gig(
            gig,
            GigCommand::PostGig {
                gig_id: gig,
                title: title.to_owned(),
                description: description.to_owned(),
                skills: skills.iter().map(|s| (*s).to_owned()).collect(),
                budget,
                deadline: None,
                actor: client.clone(),
                at: self.now(),
            },
        )
        .await;
        gig
    }

    async fn propose(
        &self,
        gig: GigId,
        freelancer: &Actor,
        amounts: &[Money],
    ) -> (ProposalId, Vec<MilestoneId>) {
        let proposal = ProposalId::new();
        let milestones: Vec<MilestoneTerms> = amounts
            .iter()
            .enumerate()
            .map(|(i, amount)| MilestoneTerms {
                milestone_id: MilestoneId::new(),
                title: format!("Part {}", i + 1),
                amount: *amount,
                due_date: None,
            })
            .collect();
        let ids = milestones.iter().map(|m| m.milestone_id).collect();
        self.gig(
            gig,
            GigCommand::SubmitProposal {
                proposal_id: proposal,
                cover_letter: "I have done this before.".into(),
                milestones,
                actor: freelancer.clone(),
                at: self.now(),
            },
        )
        .await;
        (proposal, ids)
    }

    async fn accept(&self, gig: GigId, client: &Actor, proposal: ProposalId) -> ContractId {
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
                at: self.now(),
            },
        )
        .await;
        contract
    }

    async fn fund(&self, contract: ContractId, client: &Actor, milestone: MilestoneId) {
        self.tick();
        let command = EscrowCommand::Deposit {
            milestone_id: milestone,
            idempotency_key: format!("{contract}:{milestone}"),
            actor: client.clone(),
            at: self.now(),
        };
        if let Err(e) = self.services.escrow(contract, command, &self.ctx).await {
            panic!("the deposit failed: {e}");
        }
    }

    async fn submit(&self, contract: ContractId, freelancer: &Actor, milestone: MilestoneId) {
        self.contract(
            contract,
            ContractCommand::SubmitMilestone {
                milestone_id: milestone,
                note: "Delivered.".into(),
                links: vec!["https://example.com/work".into()],
                actor: freelancer.clone(),
                at: self.now(),
            },
        )
        .await;
    }

    async fn approve(&self, contract: ContractId, client: &Actor, milestone: MilestoneId) {
        self.contract(
            contract,
            ContractCommand::ApproveMilestone {
                milestone_id: milestone,
                actor: client.clone(),
                at: self.now(),
            },
        )
        .await;
    }

    async fn dispute(&self, contract: ContractId, by: &Actor, milestone: MilestoneId) -> DisputeId {
        let dispute = DisputeId::new();
        self.contract(
            contract,
            ContractCommand::OpenDispute {
                dispute_id: dispute,
                milestone_id: milestone,
                reason: "Not what we agreed.".into(),
                actor: by.clone(),
                at: self.now(),
            },
        )
        .await;
        dispute
    }

    async fn review(&self, contract: ContractId, by: &Actor, rating: u8) {
        self.contract(
            contract,
            ContractCommand::LeaveReview {
                rating,
                text: format!("{rating} stars."),
                actor: by.clone(),
                at: self.now(),
            },
        )
        .await;
    }

    /// Brings every read model up to date, in small batches (so batch boundaries fall
    /// everywhere).
    async fn catch_up_all(&self) {
        for handler in read::all() {
            let target = Target::live(handler.name());
            if let Err(e) = catch_up(&self.pool, handler.as_ref(), &target, 7).await {
                panic!("{} failed to catch up: {e}", handler.name());
            }
        }
    }
}

// ------------------------------------------------------------------------------------------------
// A scenario that touches every event type
// ------------------------------------------------------------------------------------------------

struct Scenario {
    client1: Actor,
    client2: Actor,
    freelancer1: Actor,
    freelancer2: Actor,
    freelancer3: Actor,
    gig1: GigId,
    /// Completed: one milestone approved after a change request, one disputed and split, one
    /// approved; both reviews revealed.
    contract1: ContractId,
    contract1_milestones: Vec<MilestoneId>,
    /// Cancelled with its funded milestone refunded.
    contract2: ContractId,
    /// Its only milestone funded and under an open dispute (frozen, held).
    contract3: ContractId,
}

/// Four gigs (one revised, one closed then hired, one cancelled), five proposals (one withdrawn,
/// one rejected, three accepted), three contracts; read models caught up after every phase.
async fn rich_scenario(world: &World) -> Scenario {
    let client1 = person(Role::Client);
    let client2 = person(Role::Client);
    let freelancer1 = person(Role::Freelancer);
    let freelancer2 = person(Role::Freelancer);
    let freelancer3 = person(Role::Freelancer);
    let admin = person(Role::Admin);

    // Phase 1: gigs and proposals.
    let gig1 = GigId::new();
    world
        .gig(
            gig1,
            GigCommand::PostGig {
                gig_id: gig1,
                title: "Invoice API".into(),
                description: "An HTTP API that issues invoices.".into(),
                skills: vec!["Rust".into(), "postgres".into()],
                budget: Budget::Fixed {
                    amount: usd(35_000),
                },
                deadline: NaiveDate::from_ymd_opt(2026, 12, 31),
                actor: client1.clone(),
                at: world.now(),
            },
        )
        .await;
    world
        .gig(
            gig1,
            GigCommand::ReviseGig {
                title: Some("Invoice API in Rust".into()),
                description: None,
                skills: Some(vec!["rust".into(), "postgres".into(), "api".into()]),
                budget: None,
                deadline: None,
                actor: client1.clone(),
                at: world.now(),
            },
        )
        .await;
    let gig2 = world
        .post(
            &client2,
            "Landing page",
            "A landing page for our product launch.",
            &["react", "figma"],
            Budget::Hourly {
                min: eur(4_000),
                max: eur(9_000),
            },
        )
        .await;
    let gig3 = world
        .post(
            &client2,
            "Data migration",
            "Move our records to a new database.",
            &["sql"],
            Budget::Fixed { amount: usd(7_000) },
        )
        .await;
    let gig4 = world
        .post(
            &client1,
            "Logo",
            "A logo for the invoicing product.",
            &["design"],
            Budget::Fixed { amount: usd(2_000) },
        )
        .await;
    let (proposal1, milestones1) = world
        .propose(gig1, &freelancer1, &[usd(10_000), usd(20_000), usd(5_000)])
        .await;
    let (proposal2, _) = world.propose(gig1, &freelancer2, &[usd(30_000)]).await;
    let (proposal3, _) = world.propose(gig1, &freelancer3, &[usd(25_000)]).await;
    world.catch_up_all().await;

    // Phase 2: decisions.
    world
        .gig(
            gig1,
            GigCommand::WithdrawProposal {
                proposal_id: proposal3,
                actor: freelancer3.clone(),
                at: world.now(),
            },
        )
        .await;
    world
        .gig(
            gig1,
            GigCommand::RejectProposal {
                proposal_id: proposal2,
                actor: client1.clone(),
                at: world.now(),
            },
        )
        .await;
    let contract1 = world.accept(gig1, &client1, proposal1).await;
    let (proposal4, milestones2) = world
        .propose(gig2, &freelancer2, &[eur(30_000), eur(15_000)])
        .await;
    let contract2 = world.accept(gig2, &client2, proposal4).await;
    let (proposal5, milestones3) = world.propose(gig3, &freelancer3, &[usd(7_000)]).await;
    world
        .gig(
            gig3,
            GigCommand::CloseGig {
                actor: client2.clone(),
                at: world.now(),
            },
        )
        .await;
    let contract3 = world.accept(gig3, &client2, proposal5).await;
    world
        .gig(
            gig4,
            GigCommand::CancelGig {
                actor: client1.clone(),
                at: world.now(),
            },
        )
        .await;
    world.catch_up_all().await;

    // Phase 3: contract 1's first milestone, sent back once, then approved and paid.
    let [m1, m2, m3] = milestones1[..] else {
        panic!("three milestones")
    };
    world.fund(contract1, &client1, m1).await;
    world.submit(contract1, &freelancer1, m1).await;
    world
        .contract(
            contract1,
            ContractCommand::RequestChanges {
                milestone_id: m1,
                reason: "Add totals.".into(),
                actor: client1.clone(),
                at: world.now(),
            },
        )
        .await;
    world.submit(contract1, &freelancer1, m1).await;
    world.approve(contract1, &client1, m1).await;
    world.catch_up_all().await;

    // Phase 4: the second disputed by the freelancer and split 12 000 / 8 000; the third
    // approved, which completes the contract; both review, which reveals both reviews.
    world.fund(contract1, &client1, m2).await;
    world.submit(contract1, &freelancer1, m2).await;
    let dispute = world.dispute(contract1, &freelancer1, m2).await;
    world
        .contract(
            contract1,
            ContractCommand::ResolveDispute {
                dispute_id: dispute,
                release: usd(12_000),
                refund: usd(8_000),
                actor: admin.clone(),
                at: world.now(),
            },
        )
        .await;
    world.catch_up_all().await;
    world.fund(contract1, &client1, m3).await;
    world.submit(contract1, &freelancer1, m3).await;
    world.approve(contract1, &client1, m3).await;
    world.review(contract1, &client1, 5).await;
    world.catch_up_all().await;
    world.review(contract1, &freelancer1, 4).await;

    // Phase 5: contract 2 cancelled after one deposit (refunded); contract 3 disputed and left
    // open.
    world.fund(contract2, &client2, milestones2[0]).await;
    world
        .contract(
            contract2,
            ContractCommand::CancelContract {
                reason: "Plans changed.".into(),
                actor: client2.clone(),
                at: world.now(),
            },
        )
        .await;
    world.fund(contract3, &client2, milestones3[0]).await;
    world.dispute(contract3, &client2, milestones3[0]).await;
    world.catch_up_all().await;

    Scenario {
        client1,
        client2,
        freelancer1,
        freelancer2,
        freelancer3,
        gig1,
        contract1,
        contract1_milestones: vec![m1, m2, m3],
        contract2,
        contract3,
    }
}

/// The rich scenario, then money leaves: freelancer 1 (credited by contract 1's releases)
/// registers a payout account, which the provider verifies; one payout is paid, one paid and then
/// reported failed, one refused by the provider. The first refund booked reaches the card; the
/// others fail at the provider first. (Its own phase, so the tests of the rich scenario's exact
/// figures keep theirs.)
async fn scenario_with_money_out(world: &World) -> Scenario {
    let scenario = rich_scenario(world).await;
    money_leaves(world, &scenario.freelancer1).await;
    world.catch_up_all().await;
    scenario
}

async fn money_leaves(world: &World, freelancer: &Actor) {
    use gigledger_domain::gateway::Provider;
    use gigledger_domain::{PayoutId, WalletCommand};
    let system = Actor::system();
    let (_, receipt) = world
        .services
        .register_payout_account(freelancer.clone(), Provider::Simulated, &world.ctx)
        .await
        .expect("registered");
    let wallet = |command| async {
        world
            .services
            .wallet(freelancer.user_id, command, &world.ctx)
            .await
            .expect("a wallet command")
    };
    wallet(WalletCommand::VerifyPayoutAccount {
        account_id: receipt.account_id.clone(),
        actor: system.clone(),
        at: world.now(),
    })
    .await;
    let payouts = [PayoutId::new(), PayoutId::new(), PayoutId::new()];
    for payout_id in payouts {
        wallet(WalletCommand::RequestPayout {
            payout_id,
            amount: usd(1_000),
            actor: freelancer.clone(),
            at: world.now(),
        })
        .await;
    }
    for (i, payout_id) in payouts.into_iter().take(2).enumerate() {
        wallet(WalletCommand::MarkPayoutPaid {
            payout_id,
            transfer_id: format!("tr_{i}"),
            actor: system.clone(),
            at: world.now(),
        })
        .await;
    }
    for payout_id in payouts.into_iter().skip(1) {
        wallet(WalletCommand::MarkPayoutFailed {
            payout_id,
            reason: "the receiving bank returned it".into(),
            actor: system.clone(),
            at: world.now(),
        })
        .await;
    }
    // Every refund booked so far: the first reaches the card, the others fail at first.
    let refunded: Vec<(String, String, i64)> = sqlx::query_as(
        "select aggregate_id, payload->'FundsRefunded'->>'milestone_id',
                (payload->'FundsRefunded'->'amount'->>'amount')::bigint
           from events where event_type = 'FundsRefunded' order by position",
    )
    .fetch_all(&world.pool)
    .await
    .expect("the refunds");
    assert!(refunded.len() >= 2, "{refunded:?}");
    for (i, (contract, milestone, amount)) in refunded.iter().enumerate() {
        let contract = ContractId(contract.parse().expect("a contract id"));
        let milestone_id = MilestoneId(milestone.parse().expect("a milestone id"));
        let command = if i == 0 {
            EscrowCommand::RecordRefundIssued {
                milestone_id,
                refund_id: "re_1".into(),
                amount: usd(*amount),
                actor: system.clone(),
                at: world.now(),
            }
        } else {
            EscrowCommand::RecordRefundFailed {
                milestone_id,
                reason: "the card was closed".into(),
                actor: system.clone(),
                at: world.now(),
            }
        };
        world
            .services
            .escrow(contract, command, &world.ctx)
            .await
            .expect("a card refund recorded");
    }
}

/// Every row of a table, as JSON, in a fixed order.
async fn rows_of(pool: &PgPool, schema: &str, table: &str) -> serde_json::Value {
    sqlx::query_scalar(&format!(
        "select coalesce(jsonb_agg(to_jsonb(t) order by to_jsonb(t)::text), '[]'::jsonb)
           from {schema}.{table} t"
    ))
    .fetch_one(pool)
    .await
    .expect("the table reads")
}

// ------------------------------------------------------------------------------------------------
// Rebuild
// ------------------------------------------------------------------------------------------------

#[sqlx::test(migrator = "gigledger_projections::MIGRATOR")]
async fn every_read_model_rebuilt_from_zero_equals_the_one_built_as_events_arrived(pool: PgPool) {
    let world = World::new(pool.clone());
    scenario_with_money_out(&world).await;

    let event_types: BTreeSet<String> =
        sqlx::query_scalar("select distinct event_type from events")
            .fetch_all(&pool)
            .await
            .expect("the log reads")
            .into_iter()
            .collect();
    let every_type: BTreeSet<String> = [
        "GigPosted",
        "GigRevised",
        "ProposalSubmitted",
        "ProposalWithdrawn",
        "ProposalRejected",
        "ProposalAccepted",
        "GigClosed",
        "GigCancelled",
        "ContractStarted",
        "MilestoneFunded",
        "MilestoneSubmitted",
        "MilestoneChangesRequested",
        "MilestoneApproved",
        "ContractCompleted",
        "ContractCancelled",
        "DisputeOpened",
        "DisputeResolved",
        "ReviewLeft",
        "ReviewsRevealed",
        "EscrowOpened",
        "FundsDeposited",
        "FundsReleased",
        "FundsFrozen",
        "FundsRefunded",
        "EscrowClosed",
        "RefundIssued",
        "RefundFailed",
        "EarningsCredited",
        "PayoutAccountRegistered",
        "PayoutAccountVerified",
        "PayoutRequested",
        "PayoutPaid",
        "PayoutFailed",
    ]
    .into_iter()
    .map(str::to_owned)
    .collect();
    assert_eq!(
        event_types, every_type,
        "the scenario writes every event type"
    );

    let handlers = read::all();
    assert_eq!(handlers.len(), 8);
    for handler in &handlers {
        let name = handler.name();
        let tables = read::tables_of(name).expect("every handler has its tables");
        for table in tables {
            sqlx::query(&format!(
                "create table read_rebuild.{table} (like read.{table} including all)"
            ))
            .execute(&pool)
            .await
            .expect("the rebuild table is created");
        }
        let applied = catch_up(&pool, handler.as_ref(), &Target::rebuild(name), 500)
            .await
            .expect("the rebuild catches up");
        assert!(applied > 0, "{name} replayed the log");
        for table in tables {
            let live = rows_of(&pool, "read", table).await;
            let rebuilt = rows_of(&pool, "read_rebuild", table).await;
            assert!(
                live.as_array().is_some_and(|rows| !rows.is_empty()),
                "{name}: the scenario fills {table}"
            );
            assert_eq!(live, rebuilt, "{name}: {table} rebuilt from zero differs");
        }
    }
}

/// Every table of every read model, as JSON.
async fn all_read_rows(pool: &PgPool) -> BTreeMap<String, serde_json::Value> {
    let mut rows = BTreeMap::new();
    for handler in read::all() {
        for table in read::tables_of(handler.name()).expect("known") {
            rows.insert((*table).to_owned(), rows_of(pool, "read", table).await);
        }
    }
    rows
}

#[sqlx::test(migrator = "gigledger_projections::MIGRATOR")]
async fn applying_every_event_a_second_time_changes_no_read_model(pool: PgPool) {
    let world = World::new(pool.clone());
    scenario_with_money_out(&world).await;
    let before = all_read_rows(&pool).await;

    let events = read_after(&pool, Checkpoint::START, 100_000)
        .await
        .expect("the log reads");
    assert!(events.len() > 50);
    for handler in read::all() {
        let mut tx = pool.begin().await.expect("a transaction");
        sqlx::query("select set_config('search_path', 'read, public', true)")
            .execute(&mut *tx)
            .await
            .expect("the search path is set");
        if let Err(e) = handler.handle(&mut tx, &events).await {
            panic!("{} failed on a repeated batch: {e}", handler.name());
        }
        tx.commit().await.expect("the batch commits");
    }

    assert_eq!(all_read_rows(&pool).await, before);
}

fn foreign_event(aggregate_type: &str, payload: serde_json::Value) -> RecordedEvent {
    RecordedEvent {
        position: 1,
        transaction_id: 1,
        aggregate_type: aggregate_type.to_owned(),
        aggregate_id: uuid::Uuid::now_v7().to_string(),
        sequence: 1,
        event_type: "Something".to_owned(),
        event_version: "1".to_owned(),
        payload,
        metadata: serde_json::json!({}),
        event_id: uuid::Uuid::now_v7(),
        recorded_at: Utc::now(),
        hash: Vec::new(),
    }
}

#[sqlx::test(migrator = "gigledger_projections::MIGRATOR")]
async fn an_unknown_aggregate_type_is_skipped_but_an_undecodable_known_event_is_an_error(
    pool: PgPool,
) {
    let unknown = [foreign_event(
        "invoice",
        serde_json::json!({ "InvoiceSent": { "total": 1 } }),
    )];
    let garbled = |aggregate_type: &str| {
        [foreign_event(
            aggregate_type,
            serde_json::json!({ "GigPainted": { "colour": "blue" } }),
        )]
    };
    for handler in read::all() {
        let mut tx = pool.begin().await.expect("a transaction");
        sqlx::query("select set_config('search_path', 'read, public', true)")
            .execute(&mut *tx)
            .await
            .expect("the search path is set");
        assert!(
            handler.handle(&mut tx, &unknown).await.is_ok(),
            "{} skips an unknown aggregate type",
            handler.name()
        );
        for aggregate_type in ["gig", "contract", "escrow"] {
            assert!(
                handler
                    .handle(&mut tx, &garbled(aggregate_type))
                    .await
                    .is_err(),
                "{} refuses an undecodable {aggregate_type} event",
                handler.name()
            );
        }
        tx.rollback().await.expect("rolled back");
    }
    assert!(all_read_rows(&pool)
        .await
        .values()
        .all(|rows| rows.as_array().is_some_and(Vec::is_empty)));
}

// ------------------------------------------------------------------------------------------------
// Ledger
// ------------------------------------------------------------------------------------------------

#[sqlx::test(migrator = "gigledger_projections::MIGRATOR")]
async fn the_ledger_balances_every_escrow_and_agrees_with_the_escrow_aggregates(pool: PgPool) {
    let world = World::new(pool.clone());
    let s = rich_scenario(&world).await;

    let mut expected_by_currency: BTreeMap<String, [i128; 6]> = BTreeMap::new();
    for contract in [s.contract1, s.contract2, s.contract3] {
        let (escrow, _) = world
            .services
            .load_escrow(contract)
            .await
            .expect("the escrow loads");
        let bps = escrow.fee_bps().expect("the escrow is open");
        let balances = escrow.balances();
        let sum = |f: &dyn Fn(&gigledger_domain::MilestoneBalance) -> i64| -> i128 {
            balances.iter().map(f).map(i128::from).sum()
        };
        let fee = sum(&|b| {
            b.released
                .split_fee(bps)
                .expect("a valid fee rate")
                .fee
                .amount
        });
        let expected = ledger::EscrowTotals {
            contract_id: Some(contract),
            currency: escrow.currency().expect("open").code().to_owned(),
            deposited: sum(&|b| b.deposited.amount),
            released_gross: sum(&|b| b.released.amount),
            fee,
            net: sum(&|b| b.released.amount) - fee,
            refunded: sum(&|b| b.refunded.amount),
            held: sum(&|b| b.held().amount),
        };
        let totals = ledger::contract_totals(&pool, contract)
            .await
            .expect("the totals read")
            .expect("the escrow is in the ledger");
        assert_eq!(totals, expected, "the ledger and the aggregate agree");
        assert_eq!(
            totals.deposited,
            totals.released_gross + totals.refunded + totals.held
        );
        assert_eq!(totals.released_gross, totals.net + totals.fee);

        let entry = expected_by_currency
            .entry(totals.currency.clone())
            .or_default();
        for (slot, value) in entry.iter_mut().zip([
            totals.deposited,
            totals.released_gross,
            totals.fee,
            totals.net,
            totals.refunded,
            totals.held,
        ]) {
            *slot += value;
        }

        let trial = ledger::trial_balance(&pool, Some(contract))
            .await
            .expect("the trial balance reads");
        assert!(!trial.is_empty());
        let mut per_currency: BTreeMap<String, i128> = BTreeMap::new();
        for line in &trial {
            *per_currency.entry(line.currency.clone()).or_default() += line.balance;
        }
        assert!(
            per_currency.values().all(|total| *total == 0),
            "the trial balance of {contract} sums to zero: {trial:?}"
        );

        // The contracts read model shows the same balances per milestone.
        let view = contracts::get_contract(&pool, contract)
            .await
            .expect("the contract reads")
            .expect("the contract exists");
        for milestone in &view.milestones {
            let aggregate = escrow
                .milestone_balance(milestone.milestone_id)
                .expect("the escrow knows the milestone");
            let shown = milestone.escrow.expect("the escrow is projected");
            assert_eq!(
                (
                    shown.deposited,
                    shown.released_gross,
                    shown.refunded,
                    shown.held,
                    shown.frozen
                ),
                (
                    aggregate.deposited.amount,
                    aggregate.released.amount,
                    aggregate.refunded.amount,
                    aggregate.held().amount,
                    aggregate.frozen
                )
            );
        }
    }

    // Contract 1 in numbers: 35 000 deposited; 10 000 + 12 000 + 5 000 released at 10 %;
    // 8 000 refunded.
    let totals1 = ledger::contract_totals(&pool, s.contract1)
        .await
        .expect("reads")
        .expect("exists");
    assert_eq!(
        (
            totals1.deposited,
            totals1.released_gross,
            totals1.fee,
            totals1.net,
            totals1.refunded,
            totals1.held
        ),
        (35_000, 27_000, 2_700, 24_300, 8_000, 0)
    );

    // In total, per currency.
    let all = ledger::totals_by_currency(&pool).await.expect("reads");
    let all: BTreeMap<String, [i128; 6]> = all
        .into_iter()
        .map(|t| {
            (
                t.currency,
                [
                    t.deposited,
                    t.released_gross,
                    t.fee,
                    t.net,
                    t.refunded,
                    t.held,
                ],
            )
        })
        .collect();
    assert_eq!(all, expected_by_currency);
    let trial = ledger::trial_balance(&pool, None).await.expect("reads");
    let mut per_currency: BTreeMap<String, i128> = BTreeMap::new();
    for line in &trial {
        *per_currency.entry(line.currency.clone()).or_default() += line.balance;
    }
    assert_eq!(
        per_currency,
        BTreeMap::from([("EUR".to_owned(), 0), ("USD".to_owned(), 0)])
    );

    // The entries page in log order without gaps.
    let mut seen = Vec::new();
    let mut cursor = None;
    loop {
        let page = ledger::entries_of_contract(&pool, s.contract1, cursor.as_deref(), Some(4))
            .await
            .expect("reads");
        seen.extend(page.items.iter().map(|e| (e.position, e.line)));
        match page.next_cursor {
            Some(next) => cursor = Some(next),
            None => break,
        }
    }
    // 3 deposits × 2 lines, 3 releases × 3 lines, 1 refund × 2 lines.
    assert_eq!(seen.len(), 17);
    assert!(seen.windows(2).all(|w| w[0] < w[1]));
}

// ------------------------------------------------------------------------------------------------
// What the read functions tell each party
// ------------------------------------------------------------------------------------------------

async fn kinds_of(pool: &PgPool, user: &Actor) -> Vec<String> {
    let mut kinds = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let page = notifications::notifications_of(pool, user.user_id, cursor.as_deref(), Some(5))
            .await
            .expect("the notifications read");
        assert!(page.items.len() <= 5);
        kinds.extend(page.items.into_iter().map(|n| n.kind));
        match page.next_cursor {
            Some(next) => cursor = Some(next),
            None => return kinds,
        }
    }
}

#[sqlx::test(migrator = "gigledger_projections::MIGRATOR")]
async fn the_read_functions_tell_each_party_what_happened(pool: PgPool) {
    let world = World::new(pool.clone());
    let s = rich_scenario(&world).await;

    // The gig board.
    let gig1 = gig_board::get_gig(&pool, s.gig1)
        .await
        .expect("reads")
        .expect("exists");
    assert_eq!(gig1.title, "Invoice API in Rust");
    assert_eq!(gig1.skills, ["rust", "postgres", "api"]);
    assert_eq!(gig1.status, GigStatus::Hired);
    assert_eq!(gig1.proposals_count, 3);
    assert_eq!(
        gig_board::hired_contract(&pool, s.gig1, s.client1.user_id)
            .await
            .expect("reads"),
        Some(s.contract1)
    );
    assert_eq!(gig1.deadline, NaiveDate::from_ymd_opt(2026, 12, 31));

    // Proposals: the owner's view of the gig, in arrival order; a freelancer's, newest first.
    let on_gig1 = proposals::proposals_of_gig(&pool, s.gig1, None, None)
        .await
        .expect("reads");
    let summary: Vec<(UserId, ProposalViewStatus)> = on_gig1
        .items
        .iter()
        .map(|p| (p.freelancer_id, p.status))
        .collect();
    assert_eq!(
        summary,
        [
            (s.freelancer1.user_id, ProposalViewStatus::Accepted),
            (s.freelancer2.user_id, ProposalViewStatus::Rejected),
            (s.freelancer3.user_id, ProposalViewStatus::Withdrawn),
        ]
    );
    assert_eq!(on_gig1.items[0].contract_id, Some(s.contract1));
    assert_eq!(on_gig1.items[0].bid, usd(35_000));
    assert_eq!(on_gig1.items[0].milestones.len(), 3);
    let of_freelancer2 =
        proposals::proposals_of_freelancer(&pool, s.freelancer2.user_id, None, Some(1))
            .await
            .expect("reads");
    assert_eq!(of_freelancer2.items.len(), 1);
    assert_eq!(of_freelancer2.items[0].status, ProposalStatus::Accepted);
    let rest = proposals::proposals_of_freelancer(
        &pool,
        s.freelancer2.user_id,
        of_freelancer2.next_cursor.as_deref(),
        Some(1),
    )
    .await
    .expect("reads");
    assert_eq!(rest.items.len(), 1);
    assert_eq!(rest.items[0].status, ProposalStatus::Rejected);
    assert_eq!(rest.next_cursor, None);

    // Contracts.
    let contract1 = contracts::get_contract(&pool, s.contract1)
        .await
        .expect("reads")
        .expect("exists");
    assert_eq!(contract1.status, ContractStatus::Completed);
    let states: Vec<(MilestoneId, MilestoneStatus, i64)> = contract1
        .milestones
        .iter()
        .map(|m| (m.milestone_id, m.status, m.revision_count))
        .collect();
    let [m1, m2, m3] = s.contract1_milestones[..] else {
        panic!("three milestones")
    };
    assert_eq!(
        states,
        [
            (m1, MilestoneStatus::Approved, 1),
            (m2, MilestoneStatus::Resolved, 0),
            (m3, MilestoneStatus::Approved, 0),
        ]
    );
    assert_eq!(contract1.disputes.len(), 1);
    assert_eq!(contract1.disputes[0].status, "resolved");
    assert_eq!(contract1.disputes[0].release, Some(usd(12_000)));
    assert_eq!(contract1.disputes[0].refund, Some(usd(8_000)));
    let ratings: BTreeSet<(UserId, i16)> = contract1
        .reviews
        .iter()
        .map(|r| (r.reviewee_id, r.rating))
        .collect();
    assert_eq!(
        ratings,
        BTreeSet::from([(s.freelancer1.user_id, 5), (s.client1.user_id, 4)])
    );

    let contract2 = contracts::get_contract(&pool, s.contract2)
        .await
        .expect("reads")
        .expect("exists");
    assert_eq!(contract2.status, ContractStatus::Cancelled);
    assert_eq!(contract2.cancelled_by, Some(s.client2.user_id));
    assert!(contract2
        .milestones
        .iter()
        .all(|m| m.status == MilestoneStatus::Cancelled));
    assert_eq!(
        contract2.milestones[0].escrow.map(|e| (e.refunded, e.held)),
        Some((30_000, 0))
    );

    let contract3 = contracts::get_contract(&pool, s.contract3)
        .await
        .expect("reads")
        .expect("exists");
    assert_eq!(contract3.milestones[0].status, MilestoneStatus::Disputed);
    assert_eq!(
        contract3.milestones[0].escrow.map(|e| (e.held, e.frozen)),
        Some((7_000, true))
    );
    assert!(contract3.reviews.is_empty());

    let of_client2 = contracts::contracts_of_user(&pool, s.client2.user_id, None, Some(1))
        .await
        .expect("reads");
    assert_eq!(of_client2.items[0].contract_id, s.contract3, "newest first");
    let more = contracts::contracts_of_user(
        &pool,
        s.client2.user_id,
        of_client2.next_cursor.as_deref(),
        Some(1),
    )
    .await
    .expect("reads");
    assert_eq!(more.items[0].contract_id, s.contract2);
    assert_eq!(more.next_cursor, None);
    let of_freelancer1 = contracts::contracts_of_user(&pool, s.freelancer1.user_id, None, None)
        .await
        .expect("reads");
    assert_eq!(of_freelancer1.items.len(), 1);
    assert_eq!(of_freelancer1.items[0].milestones.len(), 3);

    // Notifications, paged five at a time.
    assert_eq!(
        kinds_of(&pool, &s.freelancer1).await,
        [
            "proposal_accepted",
            "milestone_funded",
            "changes_requested",
            "milestone_approved",
            "payment_released",
            "milestone_funded",
            "dispute_opened",
            "dispute_resolved",
            "payment_released",
            "milestone_funded",
            "milestone_approved",
            "payment_released",
            "review_received",
        ]
    );
    assert_eq!(
        kinds_of(&pool, &s.client1).await,
        [
            "proposal_received",
            "proposal_received",
            "proposal_received",
            "milestone_submitted",
            "milestone_submitted",
            "milestone_submitted",
            "dispute_opened",
            "dispute_resolved",
            "funds_refunded",
            "milestone_submitted",
            "review_received",
        ]
    );
    assert_eq!(
        kinds_of(&pool, &s.freelancer2).await,
        [
            "proposal_rejected",
            "proposal_accepted",
            "milestone_funded",
            "contract_cancelled",
        ]
    );
    assert_eq!(
        kinds_of(&pool, &s.client2).await,
        [
            "proposal_received",
            "proposal_received",
            "funds_refunded",
            "dispute_opened",
        ]
    );
    let unread = notifications::unread_count(&pool, s.freelancer2.user_id)
        .await
        .expect("reads");
    assert_eq!(unread, 4);
    let first = notifications::notifications_of(&pool, s.freelancer2.user_id, None, Some(1))
        .await
        .expect("reads");
    let marked = notifications::mark_read_up_to(&pool, s.freelancer2.user_id, &first.items[0].id)
        .await
        .expect("writes");
    assert_eq!(marked, 1);
    assert_eq!(
        notifications::unread_count(&pool, s.freelancer2.user_id)
            .await
            .expect("reads"),
        3
    );

    // Profiles: revealed ratings, completed contracts, earnings (24 300 cents net: under 1k).
    let freelancer1 = user_stats::profile(&pool, s.freelancer1.user_id)
        .await
        .expect("reads");
    assert_eq!(
        freelancer1.rating.as_ref().map(|r| r.average.as_str()),
        Some("5.00")
    );
    assert_eq!(freelancer1.review_count, 1);
    assert_eq!(freelancer1.completed_as_freelancer, 1);
    assert_eq!(freelancer1.earnings.len(), 1);
    assert_eq!(
        (
            freelancer1.earnings[0].currency.as_str(),
            freelancer1.earnings[0].band
        ),
        ("USD", "<1k")
    );
    let client1 = user_stats::profile(&pool, s.client1.user_id)
        .await
        .expect("reads");
    assert_eq!(
        client1.rating.as_ref().map(|r| r.average.as_str()),
        Some("4.00")
    );
    assert_eq!(client1.completed_as_client, 1);
    assert!(client1.earnings.is_empty());
    let newcomer = user_stats::profile(&pool, UserId::new())
        .await
        .expect("reads");
    assert_eq!(newcomer.rating, None);
    assert_eq!(newcomer.review_count, 0);

    // Analytics: everything happened on one UTC day.
    let funnel = analytics::funnel(&pool, day(), day()).await.expect("reads");
    assert_eq!(
        (
            funnel.posted,
            funnel.with_proposals,
            funnel.hired,
            funnel.completed
        ),
        (4, 3, 3, 1)
    );
    let volumes = analytics::daily_volumes(&pool, day(), day())
        .await
        .expect("reads");
    let usd_day = volumes
        .iter()
        .find(|v| v.currency == "USD")
        .expect("USD activity");
    assert_eq!(
        (
            usd_day.gigs_posted,
            usd_day.proposals,
            usd_day.hires,
            usd_day.gmv_released,
            usd_day.fees,
            usd_day.refunds
        ),
        (3, 4, 2, 27_000, 2_700, 8_000)
    );
    let gmv = analytics::gmv(&pool, day(), day(), analytics::Interval::Month, None)
        .await
        .expect("reads");
    assert_eq!(
        gmv.iter()
            .flat_map(|g| g.totals.iter().map(move |t| (g.start, g.end, t)))
            .map(|(start, end, t)| (start, end, t.currency.as_str(), t.gmv_released, t.refunds))
            .collect::<Vec<_>>(),
        [
            (day(), day(), "EUR", 0, 30_000),
            (day(), day(), "USD", 27_000, 8_000)
        ]
    );
    let hires = analytics::time_to_hire(&pool, day(), day())
        .await
        .expect("reads");
    assert_eq!(hires.hires, 3);
    let (p50, p90, p99) = (
        hires.p50_seconds.expect("p50"),
        hires.p90_seconds.expect("p90"),
        hires.p99_seconds.expect("p99"),
    );
    assert!(0 < p50 && p50 <= p90 && p90 <= p99);
    let disputes = analytics::disputes(&pool, day(), day())
        .await
        .expect("reads");
    assert_eq!((disputes.opened, disputes.resolved), (2, 1));
    assert_eq!(
        disputes.refund_share,
        [analytics::RefundShare {
            currency: "USD".into(),
            refunded: 8_000,
            settled: 20_000
        }]
    );
    let skills = analytics::skills(&pool, day(), day()).await.expect("reads");
    let rust = skills
        .iter()
        .find(|s| s.skill == "rust")
        .expect("rust is in demand");
    assert_eq!((rust.gigs, rust.proposals), (1, 3));
    let backwards = analytics::funnel(&pool, day(), day().pred_opt().expect("a date")).await;
    assert!(matches!(backwards, Err(ReadError::InvalidArgument(_))));
}

// ------------------------------------------------------------------------------------------------
// Search
// ------------------------------------------------------------------------------------------------

const ADJECTIVES: [&str; 6] = ["fast", "modern", "secure", "simple", "custom", "scalable"];
const NOUNS: [&str; 12] = [
    "dashboard",
    "pipeline",
    "website",
    "chatbot",
    "invoice",
    "scraper",
    "game",
    "podcast",
    "logo",
    "newsletter",
    "migration",
    "plugin",
];
const TEAMS: [&str; 5] = ["marketing", "sales", "finance", "support", "research"];
const SKILLS: [&str; 8] = [
    "rust", "python", "sql", "react", "figma", "docker", "golang", "swift",
];
const CURRENCIES: [Currency; 4] = [Currency::USD, Currency::EUR, Currency::GBP, Currency::JPY];

/// What was posted, to compute expectations from.
#[derive(Clone, Debug)]
struct Posted {
    id: GigId,
    title: String,
    description: String,
    skills: Vec<String>,
    currency: Currency,
    /// (min, max): a fixed budget is (amount, amount).
    range: (i64, i64),
    posted_at: DateTime<Utc>,
    status: GigStatus,
}

impl Posted {
    fn mentions(&self, word: &str) -> bool {
        let words = |text: &str| {
            text.split(|c: char| !c.is_alphanumeric())
                .any(|w| w.eq_ignore_ascii_case(word))
        };
        words(&self.title) || words(&self.description) || self.skills.iter().any(|s| s == word)
    }
}

fn index(i: usize) -> i64 {
    i64::try_from(i).expect("small")
}

/// Posts `n` varied gigs through commands: several share a posting time (the clock moves one
/// second every four gigs), every tenth-plus-three is closed and every tenth-plus-seven
/// cancelled.
async fn post_many(world: &World, n: usize) -> Vec<Posted> {
    let client = person(Role::Client);
    let mut posted = Vec::with_capacity(n);
    for i in 0..n {
        if i % 4 == 0 {
            world.clock.advance(Duration::seconds(1));
        }
        let title = format!(
            "{} {} project {i}",
            ADJECTIVES[i % ADJECTIVES.len()],
            NOUNS[(i * 7) % NOUNS.len()]
        );
        let description = format!(
            "We need help with a {} for our {} team.",
            NOUNS[(i * 5 + 3) % NOUNS.len()],
            TEAMS[i % TEAMS.len()]
        );
        let first = i % SKILLS.len();
        let second = (first + 1 + i % 3) % SKILLS.len();
        let skills = vec![SKILLS[first].to_owned(), SKILLS[second].to_owned()];
        let currency = CURRENCIES[(i / 3) % CURRENCIES.len()];
        let (budget, range) = if i % 5 == 0 {
            let min = 1_000 + (index(i) * 37 % 50) * 100;
            let max = min + (index(i) % 7) * 1_000;
            (
                Budget::Hourly {
                    min: Money::new(min, currency),
                    max: Money::new(max, currency),
                },
                (min, max),
            )
        } else {
            let amount = 5_000 + (index(i) * 7_919 % 300) * 1_000;
            (
                Budget::Fixed {
                    amount: Money::new(amount, currency),
                },
                (amount, amount),
            )
        };
        let id = GigId::new();
        let posted_at = world.now();
        world
            .services
            .gig(
                id,
                GigCommand::PostGig {
                    gig_id: id,
                    title: title.clone(),
                    description: description.clone(),
                    skills: skills.clone(),
                    budget,
                    deadline: None,
                    actor: client.clone(),
                    at: posted_at,
                },
                &world.ctx,
            )
            .await
            .expect("the gig is posted");
        let status = match i % 10 {
            3 => GigStatus::Closed,
            7 => GigStatus::Cancelled,
            _ => GigStatus::Open,
        };
        let follow_up = match status {
            GigStatus::Closed => Some(GigCommand::CloseGig {
                actor: client.clone(),
                at: posted_at,
            }),
            GigStatus::Cancelled => Some(GigCommand::CancelGig {
                actor: client.clone(),
                at: posted_at,
            }),
            GigStatus::Open | GigStatus::Hired => None,
        };
        if let Some(command) = follow_up {
            world
                .services
                .gig(id, command, &world.ctx)
                .await
                .expect("the gig's status changes");
        }
        posted.push(Posted {
            id,
            title,
            description,
            skills,
            currency,
            range,
            posted_at,
            status,
        });
    }
    posted
}

async fn catch_up_board(pool: &PgPool) {
    catch_up(
        pool,
        &gig_board::GigBoard,
        &Target::live(gig_board::NAME),
        500,
    )
    .await
    .expect("the gig board catches up");
}

/// Every page of a query, following the cursors.
async fn all_pages(pool: &PgPool, query: &GigQuery) -> Vec<GigCard> {
    let mut cards = Vec::new();
    let mut query = query.clone();
    let limit = usize::try_from(query.limit.unwrap_or(20)).expect("small");
    loop {
        let page = gig_board::search_gigs(pool, &query)
            .await
            .expect("the board reads");
        assert!(page.items.len() <= limit);
        cards.extend(page.items);
        match page.next_cursor {
            Some(next) => query.cursor = Some(next),
            None => return cards,
        }
    }
}

fn ids(cards: &[GigCard]) -> Vec<GigId> {
    cards.iter().map(|c| c.gig_id).collect()
}

fn sorted(mut ids: Vec<GigId>) -> Vec<GigId> {
    ids.sort();
    ids
}

#[sqlx::test(migrator = "gigledger_projections::MIGRATOR")]
async fn a_gig_matching_the_query_in_its_title_ranks_above_one_matching_only_in_its_description(
    pool: PgPool,
) {
    let world = World::new(pool.clone());
    post_many(&world, 60).await;
    let client = person(Role::Client);
    let in_title = world
        .post(
            &client,
            "Kubernetes cluster upgrade",
            "Routine maintenance of our servers.",
            &["devops"],
            Budget::Fixed {
                amount: usd(90_000),
            },
        )
        .await;
    // Posted later, so newest-first would list it first.
    let in_description = world
        .post(
            &client,
            "Routine maintenance",
            "Upgrade the Kubernetes cluster of our servers.",
            &["devops"],
            Budget::Fixed {
                amount: usd(90_000),
            },
        )
        .await;
    let in_skills = world
        .post(
            &client,
            "Server upgrade",
            "Routine maintenance of our servers.",
            &["kubernetes"],
            Budget::Fixed {
                amount: usd(90_000),
            },
        )
        .await;
    catch_up_board(&pool).await;

    let query = GigQuery {
        q: Some("kubernetes".into()),
        ..GigQuery::default()
    };
    let page = gig_board::search_gigs(&pool, &query)
        .await
        .expect("the board reads");
    assert_eq!(ids(&page.items), [in_title, in_description, in_skills]);
    assert!(page.items[0].rank > page.items[1].rank);
    assert!(page.items[1].rank > page.items[2].rank);
    assert_eq!(page.next_cursor, None);

    let newest = GigQuery {
        sort: GigSort::Newest,
        ..query
    };
    let page = gig_board::search_gigs(&pool, &newest)
        .await
        .expect("the board reads");
    assert_eq!(ids(&page.items), [in_skills, in_description, in_title]);

    // A word form matches its stem; a word nobody used matches nothing.
    let stemmed = GigQuery {
        q: Some("upgrades".into()),
        ..GigQuery::default()
    };
    let found = all_pages(&pool, &stemmed).await;
    assert_eq!(
        sorted(ids(&found)),
        sorted(vec![in_title, in_description, in_skills])
    );
    let none = GigQuery {
        q: Some("blockchain".into()),
        ..GigQuery::default()
    };
    assert!(all_pages(&pool, &none).await.is_empty());
}

#[sqlx::test(migrator = "gigledger_projections::MIGRATOR")]
async fn filters_by_text_skill_currency_budget_and_status_return_exactly_the_matching_gigs(
    pool: PgPool,
) {
    let world = World::new(pool.clone());
    let posted = post_many(&world, 300).await;
    catch_up_board(&pool).await;

    type Expect = Box<dyn Fn(&Posted) -> bool>;
    let overlaps = |p: &Posted, min: i64, max: i64| p.range.1 >= min && p.range.0 <= max;
    let cases: Vec<(GigQuery, Expect)> = vec![
        (
            GigQuery {
                skills: vec!["rust".into(), "SQL".into()],
                ..GigQuery::default()
            },
            Box::new(|p: &Posted| p.skills.iter().any(|s| s == "rust" || s == "sql")),
        ),
        (
            GigQuery {
                currency: Some("eur".into()),
                ..GigQuery::default()
            },
            Box::new(|p: &Posted| p.currency == Currency::EUR),
        ),
        (
            GigQuery {
                currency: Some("USD".into()),
                min_budget: Some(3_000),
                max_budget: Some(150_000),
                ..GigQuery::default()
            },
            Box::new(move |p: &Posted| p.currency == Currency::USD && overlaps(p, 3_000, 150_000)),
        ),
        (
            GigQuery {
                currency: Some("EUR".into()),
                min_budget: Some(200_000),
                ..GigQuery::default()
            },
            Box::new(move |p: &Posted| {
                p.currency == Currency::EUR && overlaps(p, 200_000, i64::MAX)
            }),
        ),
        (
            GigQuery {
                currency: Some("GBP".into()),
                max_budget: Some(4_000),
                ..GigQuery::default()
            },
            Box::new(move |p: &Posted| p.currency == Currency::GBP && overlaps(p, i64::MIN, 4_000)),
        ),
        (
            GigQuery {
                skills: vec!["rust".into()],
                currency: Some("USD".into()),
                status: Some(GigStatus::Open),
                ..GigQuery::default()
            },
            Box::new(|p: &Posted| {
                p.skills.iter().any(|s| s == "rust")
                    && p.currency == Currency::USD
                    && p.status == GigStatus::Open
            }),
        ),
        (
            GigQuery {
                q: Some("dashboard".into()),
                sort: GigSort::Newest,
                currency: Some("USD".into()),
                min_budget: Some(100_000),
                ..GigQuery::default()
            },
            Box::new(|p: &Posted| {
                p.mentions("dashboard") && p.currency == Currency::USD && p.range.1 >= 100_000
            }),
        ),
        (
            GigQuery {
                status: Some(GigStatus::Open),
                ..GigQuery::default()
            },
            Box::new(|p: &Posted| p.status == GigStatus::Open),
        ),
        (
            GigQuery {
                status: Some(GigStatus::Cancelled),
                ..GigQuery::default()
            },
            Box::new(|p: &Posted| p.status == GigStatus::Cancelled),
        ),
        (
            GigQuery {
                q: Some("dashboard".into()),
                ..GigQuery::default()
            },
            Box::new(|p: &Posted| p.mentions("dashboard")),
        ),
        (
            GigQuery {
                q: Some("pipeline".into()),
                skills: vec!["docker".into(), "python".into()],
                currency: Some("GBP".into()),
                status: Some(GigStatus::Open),
                ..GigQuery::default()
            },
            Box::new(|p: &Posted| {
                p.mentions("pipeline")
                    && p.skills.iter().any(|s| s == "docker" || s == "python")
                    && p.currency == Currency::GBP
                    && p.status == GigStatus::Open
            }),
        ),
    ];
    for (query, expect) in cases {
        let query = GigQuery {
            limit: Some(100),
            ..query
        };
        let found = sorted(ids(&all_pages(&pool, &query).await));
        let expected = sorted(posted.iter().filter(|p| expect(p)).map(|p| p.id).collect());
        assert!(!expected.is_empty(), "{query:?} should match some gigs");
        assert!(expected.len() < posted.len(), "{query:?} should filter");
        assert_eq!(found, expected, "{query:?}");
    }
}

#[sqlx::test(migrator = "gigledger_projections::MIGRATOR")]
async fn a_budget_filter_without_a_currency_is_refused(pool: PgPool) {
    // USD 1 000.00 and JPY 100 000 are both 100 000 minor units: without a currency a budget
    // filter would compare amounts of different currencies.
    let world = World::new(pool.clone());
    let client = person(Role::Client);
    world
        .post(
            &client,
            "Dollar gig",
            "Paid in dollars.",
            &["rust"],
            Budget::Fixed {
                amount: usd(100_000),
            },
        )
        .await;
    world
        .post(
            &client,
            "Yen gig",
            "Paid in yen.",
            &["rust"],
            Budget::Fixed {
                amount: Money::new(100_000, Currency::JPY),
            },
        )
        .await;
    catch_up_board(&pool).await;

    for query in [
        GigQuery {
            min_budget: Some(100_000),
            ..GigQuery::default()
        },
        GigQuery {
            max_budget: Some(100_000),
            q: Some("gig".into()),
            ..GigQuery::default()
        },
    ] {
        let refused = gig_board::search_gigs(&pool, &query).await;
        assert!(
            matches!(refused, Err(ReadError::BudgetWithoutCurrency)),
            "{query:?}: {refused:?}"
        );
    }
    let in_yen = gig_board::search_gigs(
        &pool,
        &GigQuery {
            currency: Some("JPY".into()),
            min_budget: Some(100_000),
            ..GigQuery::default()
        },
    )
    .await
    .expect("the board reads");
    assert_eq!(in_yen.items.len(), 1);
    assert_eq!(in_yen.items[0].title, "Yen gig");
}

#[sqlx::test(migrator = "gigledger_projections::MIGRATOR")]
async fn a_revised_gig_is_found_by_its_new_skills_only(pool: PgPool) {
    let world = World::new(pool.clone());
    post_many(&world, 20).await;
    let client = person(Role::Client);
    let gig = world
        .post(
            &client,
            "Static site",
            "A few pages.",
            &["html"],
            Budget::Fixed {
                amount: usd(50_000),
            },
        )
        .await;
    world
        .gig(
            gig,
            GigCommand::ReviseGig {
                title: None,
                description: None,
                skills: Some(vec!["elixir".into(), "html".into()]),
                budget: None,
                deadline: None,
                actor: client.clone(),
                at: world.now(),
            },
        )
        .await;
    world
        .gig(
            gig,
            GigCommand::ReviseGig {
                title: None,
                description: None,
                skills: Some(vec!["elixir".into()]),
                budget: None,
                deadline: None,
                actor: client.clone(),
                at: world.now(),
            },
        )
        .await;
    catch_up_board(&pool).await;

    let with = |skill: &str| GigQuery {
        skills: vec![skill.to_owned()],
        ..GigQuery::default()
    };
    assert_eq!(ids(&all_pages(&pool, &with("elixir")).await), [gig]);
    assert!(!ids(&all_pages(&pool, &with("html")).await).contains(&gig));

    // The board's guards make a replay of its events change nothing: the posting's skills do
    // not come back.
    sqlx::query(
        "update projection_checkpoints set transaction_id = 0, position = 0 where name = 'gig_board'",
    )
    .execute(&pool)
    .await
    .unwrap();
    catch_up_board(&pool).await;
    assert_eq!(ids(&all_pages(&pool, &with("elixir")).await), [gig]);
    assert!(
        !ids(&all_pages(&pool, &with("html")).await).contains(&gig),
        "a replayed posting brought back a skill the revision removed"
    );
}

#[sqlx::test(migrator = "gigledger_projections::MIGRATOR")]
async fn a_cursor_with_a_time_postgresql_cannot_hold_is_an_invalid_cursor(pool: PgPool) {
    let crafted = GigQuery {
        cursor: Some("gn.-300000000000000000.00000000-0000-0000-0000-000000000000".to_owned()),
        ..GigQuery::default()
    };
    let answer = gig_board::search_gigs(&pool, &crafted).await;
    assert!(
        matches!(answer, Err(ReadError::InvalidCursor)),
        "{answer:?}"
    );
}

#[sqlx::test(migrator = "gigledger_projections::MIGRATOR")]
async fn keyset_paging_with_a_small_limit_yields_every_matching_gig_once_in_order(pool: PgPool) {
    let world = World::new(pool.clone());
    let posted = post_many(&world, 300).await;
    catch_up_board(&pool).await;

    // Newest first: the order is (posted_at, gig_id) descending, with many equal times.
    let mut newest: Vec<&Posted> = posted.iter().collect();
    newest.sort_by_key(|p| std::cmp::Reverse((p.posted_at, p.id)));
    let expected: Vec<GigId> = newest.iter().map(|p| p.id).collect();
    let query = GigQuery {
        limit: Some(7),
        ..GigQuery::default()
    };
    assert_eq!(ids(&all_pages(&pool, &query).await), expected);

    // By relevance: "project" is in every title once, so every rank is equal and the order
    // falls back on (posted_at, gig_id); paging must neither repeat nor skip a gig. Relevance
    // ranks the newest RANK_BOUND matches only.
    let query = GigQuery {
        q: Some("project".into()),
        limit: Some(9),
        ..GigQuery::default()
    };
    let cards = all_pages(&pool, &query).await;
    let keys: Vec<(i64, DateTime<Utc>, GigId)> = cards
        .iter()
        .map(|c| (c.rank, c.posted_at, c.gig_id))
        .collect();
    assert!(keys.windows(2).all(|w| w[0] > w[1]), "strictly descending");
    let ranked = usize::try_from(gig_board::RANK_BOUND).expect("small");
    assert!(expected.len() > ranked, "more matches than are ranked");
    assert_eq!(ids(&cards), expected[..ranked]);

    // Ranks that differ (a word in a title ranks above it in a description), filtered.
    let query = GigQuery {
        q: Some("dashboard or website".into()),
        status: Some(GigStatus::Open),
        limit: Some(3),
        ..GigQuery::default()
    };
    let cards = all_pages(&pool, &query).await;
    let keys: Vec<(i64, DateTime<Utc>, GigId)> = cards
        .iter()
        .map(|c| (c.rank, c.posted_at, c.gig_id))
        .collect();
    assert!(keys.windows(2).all(|w| w[0] > w[1]), "strictly descending");
    let distinct_ranks: BTreeSet<i64> = keys.iter().map(|k| k.0).collect();
    assert!(distinct_ranks.len() > 1);
    let expected: Vec<GigId> = sorted(
        posted
            .iter()
            .filter(|p| {
                p.status == GigStatus::Open && (p.mentions("dashboard") || p.mentions("website"))
            })
            .map(|p| p.id)
            .collect(),
    );
    assert!(!expected.is_empty());
    assert_eq!(sorted(ids(&cards)), expected);

    // The limit defaults to 20 and is capped at 100; a foreign cursor is refused.
    let first = gig_board::search_gigs(&pool, &GigQuery::default())
        .await
        .expect("the board reads");
    assert_eq!(first.items.len(), 20);
    let capped = gig_board::search_gigs(
        &pool,
        &GigQuery {
            limit: Some(1_000),
            ..GigQuery::default()
        },
    )
    .await
    .expect("the board reads");
    assert_eq!(capped.items.len(), 100);
    let relevance_cursor_on_newest = gig_board::search_gigs(
        &pool,
        &GigQuery {
            cursor: cards.first().map(|_| "gr.1.2.3".to_owned()),
            ..GigQuery::default()
        },
    )
    .await;
    assert!(matches!(
        relevance_cursor_on_newest,
        Err(ReadError::InvalidCursor)
    ));
}
