//! What is private stays private (issue 8, items 8 and 9): the analyst role reads the analytics
//! and nothing personal, before and after rebuilds; the public gig board carries no contract id,
//! which only the contract's parties can learn.

use chrono::{TimeZone, Utc};
use gigledger_domain::{
    Actor, Budget, ContractCommand, ContractId, DisputeId, EscrowCommand, GigCommand, GigId,
    GigStatus, MilestoneId, MilestoneTerms, ProposalId, Role, UserId,
};
use gigledger_projections::read::{self, gig_board};
use gigledger_projections::runtime::{catch_up, Target};
use gigledger_tests::world::{person, usd, CommandWorld};
use sqlx::PgPool;

/// The shared command fixture, with this file's steps on top.
struct World(CommandWorld);

impl std::ops::Deref for World {
    type Target = CommandWorld;
    fn deref(&self) -> &CommandWorld {
        &self.0
    }
}

impl World {
    fn new(pool: PgPool) -> Self {
        let start = Utc
            .with_ymd_and_hms(2026, 11, 21, 8, 0, 0)
            .single()
            .expect("a time");
        Self(CommandWorld::starting_at(pool, start))
    }

    /// A gig of `client`'s with one proposal of `freelancer`'s (one milestone of `amount`),
    /// accepted: the contract and its milestone.
    async fn hire(
        &self,
        client: &Actor,
        freelancer: &Actor,
        amount: i64,
    ) -> (GigId, ContractId, MilestoneId) {
        let gig = GigId::new();
        self.gig(
            gig,
            GigCommand::PostGig {
                gig_id: gig,
                title: "Invoice API".into(),
                description: "An HTTP API that issues invoices.".into(),
                skills: vec!["rust".into()],
                budget: Budget::Fixed {
                    amount: usd(amount),
                },
                deadline: None,
                actor: client.clone(),
                at: self.now(),
            },
        )
        .await;
        let proposal = ProposalId::new();
        let milestone = MilestoneId::new();
        self.gig(
            gig,
            GigCommand::SubmitProposal {
                proposal_id: proposal,
                cover_letter: "SECRET cover letter: my rate is negotiable.".into(),
                milestones: vec![MilestoneTerms {
                    milestone_id: milestone,
                    title: "All of it".into(),
                    amount: usd(amount),
                    due_date: None,
                }],
                actor: freelancer.clone(),
                at: self.now(),
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
                at: self.now(),
            },
        )
        .await;
        (gig, contract, milestone)
    }

    async fn fund(&self, contract: ContractId, client: &Actor, milestone: MilestoneId) {
        let command = EscrowCommand::Deposit {
            milestone_id: milestone,
            idempotency_key: format!("{contract}:{milestone}"),
            actor: client.clone(),
            at: self.now(),
        };
        self.escrow(contract, command).await;
    }

    async fn submit(&self, contract: ContractId, freelancer: &Actor, milestone: MilestoneId) {
        self.contract(
            contract,
            ContractCommand::SubmitMilestone {
                milestone_id: milestone,
                note: "Delivered.".into(),
                links: vec![],
                actor: freelancer.clone(),
                at: self.now(),
            },
        )
        .await;
    }

    async fn catch_up_all(&self) {
        for handler in read::all() {
            let target = Target::live(handler.name());
            if let Err(e) = catch_up(&self.pool, handler.as_ref(), &target, 50).await {
                panic!("{} failed to catch up: {e}", handler.name());
            }
        }
    }
}

/// Every kind of private data in the read models: a contract completed after a change request
/// (earnings, a review left and not yet revealed), one under an open dispute, one cancelled;
/// cover letters and bids; notifications carrying each reason.
async fn private_scenario(world: &World) -> (Actor, Actor, GigId, ContractId) {
    let client = person(Role::Client);
    let freelancer = person(Role::Freelancer);

    let (gig, paid, m) = world.hire(&client, &freelancer, 50_000).await;
    world.fund(paid, &client, m).await;
    world.submit(paid, &freelancer, m).await;
    world
        .contract(
            paid,
            ContractCommand::RequestChanges {
                milestone_id: m,
                reason: "SECRET change request reason".into(),
                actor: client.clone(),
                at: world.now(),
            },
        )
        .await;
    world.submit(paid, &freelancer, m).await;
    world
        .contract(
            paid,
            ContractCommand::ApproveMilestone {
                milestone_id: m,
                actor: client.clone(),
                at: world.now(),
            },
        )
        .await;
    world
        .contract(
            paid,
            ContractCommand::LeaveReview {
                rating: 2,
                text: "SECRET unrevealed review".into(),
                actor: client.clone(),
                at: world.now(),
            },
        )
        .await;

    let (_, disputed, m) = world.hire(&client, &freelancer, 30_000).await;
    world.fund(disputed, &client, m).await;
    world
        .contract(
            disputed,
            ContractCommand::OpenDispute {
                dispute_id: DisputeId::new(),
                milestone_id: m,
                reason: "SECRET dispute reason".into(),
                actor: client.clone(),
                at: world.now(),
            },
        )
        .await;

    let (_, cancelled, _) = world.hire(&client, &freelancer, 10_000).await;
    world
        .contract(
            cancelled,
            ContractCommand::CancelContract {
                reason: "SECRET cancellation reason".into(),
                actor: freelancer.clone(),
                at: world.now(),
            },
        )
        .await;
    world.catch_up_all().await;
    (client, freelancer, gig, paid)
}

/// Runs `sql` as `gigledger_analyst` in a transaction of its own (rolled back): its rows as JSON
/// text, or the error.
async fn as_analyst(pool: &PgPool, sql: &str) -> Result<Vec<String>, sqlx::Error> {
    let mut tx = pool.begin().await.expect("a transaction");
    sqlx::query("set local role gigledger_analyst")
        .execute(&mut *tx)
        .await
        .expect("the role exists");
    let wrapped = format!("select to_jsonb(t)::text from ({sql}) t");
    let rows = sqlx::query_scalar(&wrapped).fetch_all(&mut *tx).await;
    tx.rollback().await.expect("rolls back");
    rows
}

fn denied(result: &Result<Vec<String>, sqlx::Error>) -> bool {
    matches!(result, Err(e) if e.to_string().contains("permission denied"))
}

/// What the analyst is refused and what they read: every table of `read` and `read_rebuild` is
/// refused (each private column named first, so a failure says which), and the analytics views
/// hold the scenario's figures.
async fn analyst_reads_only_the_analytics(pool: &PgPool) {
    for private in [
        "select text, rating from read.contract_reviews where revealed_at is null",
        "select rating from read.notification_reviews",
        "select rating from read.user_stats_reviews where not revealed",
        "select user_id, net from read.user_stats_earnings",
        "select account, amount from read.ledger_entries",
        "select cover_letter, bid_amount, milestones from read.proposals",
        "select data from read.notifications where data ? 'reason'",
        "select reason from read.contract_disputes",
        "select cancel_reason from read.contracts",
        "select client_id, title from read.gig_board",
    ] {
        let result = as_analyst(pool, private).await;
        assert!(denied(&result), "the analyst read {private:?}: {result:?}");
    }
    let tables: Vec<(String, String)> = sqlx::query_as(
        "select schemaname::text, tablename::text from pg_tables
          where schemaname in ('read', 'read_rebuild') order by 1, 2",
    )
    .fetch_all(pool)
    .await
    .expect("lists tables");
    assert!(tables.len() >= 20, "{tables:?}");
    for (schema, table) in tables {
        let result = as_analyst(pool, &format!("select * from {schema}.{table}")).await;
        assert!(
            denied(&result),
            "the analyst read {schema}.{table}: {result:?}"
        );
    }

    // The analytics: three gigs posted, three proposals, three hires in USD; 50 000 released
    // and 10 000 refunded (the cancelled contract was never funded).
    let daily = as_analyst(
        pool,
        "select currency, gigs_posted, proposals, hires, gmv_released::text as gmv,
                fees::text as fees, refunds::text as refunds
           from analytics.daily",
    )
    .await
    .expect("the analyst reads the daily volumes");
    assert_eq!(
        daily,
        [
            r#"{"gmv": "50000", "fees": "5000", "hires": 3, "refunds": "0", "currency": "USD", "proposals": 3, "gigs_posted": 3}"#
        ]
    );
    let skills = as_analyst(
        pool,
        "select skill, gigs, proposals from analytics.skills_daily",
    )
    .await
    .expect("the analyst reads the skills");
    assert_eq!(skills, [r#"{"gigs": 3, "skill": "rust", "proposals": 3}"#]);
    let gigs = as_analyst(
        pool,
        "select count(*) filter (where hours_to_hire is not null) as hired,
                count(*) filter (where hours_to_completion is not null) as completed
           from analytics.gigs",
    )
    .await
    .expect("the analyst reads the gigs");
    assert_eq!(gigs, [r#"{"hired": 3, "completed": 1}"#]);
    let hires = as_analyst(pool, "select count(*) as n from analytics.hires")
        .await
        .expect("the analyst reads the hires");
    assert_eq!(hires, [r#"{"n": 3}"#]);
    let disputes = as_analyst(pool, "select currency, resolved_on from analytics.disputes")
        .await
        .expect("the analyst reads the disputes");
    assert_eq!(disputes, [r#"{"currency": "USD", "resolved_on": null}"#]);
    // No exact time either: an exact posting time joins to the public board and names the gig.
    let exact_times: Vec<(String, String)> = sqlx::query_as(
        "select table_name::text, column_name::text from information_schema.columns
          where table_schema = 'analytics'
            and data_type in ('timestamp with time zone', 'timestamp without time zone')",
    )
    .fetch_all(pool)
    .await
    .expect("lists columns");
    assert!(
        exact_times.is_empty(),
        "analysts see exact times: {exact_times:?}"
    );

    // Nothing in the analyst's schema names a person or a record, or holds free text.
    let columns: Vec<(String, String)> = sqlx::query_as(
        "select table_name::text, column_name::text from information_schema.columns
          where table_schema = 'analytics' order by 1, 2",
    )
    .fetch_all(pool)
    .await
    .expect("lists columns");
    assert!(!columns.is_empty());
    for (table, column) in &columns {
        let personal = column.ends_with("_id")
            || [
                "text",
                "rating",
                "reason",
                "cover_letter",
                "bid_amount",
                "data",
                "net",
                "title",
                "description",
                "milestones",
                "account",
            ]
            .contains(&column.as_str());
        assert!(!personal, "analytics.{table}.{column}");
    }
    // Analysts cannot write, nor reach the event store.
    for forbidden in [
        "select * from events",
        "select * from projection_checkpoints",
    ] {
        assert!(denied(&as_analyst(pool, forbidden).await), "{forbidden}");
    }
}

#[sqlx::test(migrator = "gigledger_projections::MIGRATOR")]
async fn the_analyst_role_reads_the_analytics_and_nothing_personal(pool: PgPool) {
    let world = World::new(pool.clone());
    private_scenario(&world).await;
    // The private data is there (the owner sees it), so each refusal below means something.
    let reasons: i64 = sqlx::query_scalar(
        "select count(*) from read.notifications where data::text like '%SECRET%'",
    )
    .fetch_one(&pool)
    .await
    .expect("counts");
    assert!(reasons >= 3, "{reasons}");
    let unrevealed: i64 =
        sqlx::query_scalar("select count(*) from read.contract_reviews where revealed_at is null")
            .fetch_one(&pool)
            .await
            .expect("counts");
    assert_eq!(unrevealed, 1);

    analyst_reads_only_the_analytics(&pool).await;
}

#[sqlx::test(migrator = "gigledger_projections::MIGRATOR")]
async fn a_rebuild_gives_the_analyst_back_neither_the_read_models_nor_less_than_the_analytics(
    pool: PgPool,
) {
    let world = World::new(pool.clone());
    private_scenario(&world).await;
    // Every model rebuilt: analytics (whose tables the views read) and the private ones.
    for handler in read::all() {
        let tables = read::tables_of(handler.name()).expect("a read model");
        gigledger_projections::rebuild::rebuild(&pool, handler.as_ref(), tables, 50)
            .await
            .unwrap_or_else(|e| panic!("{} rebuilds: {e}", handler.name()));
    }
    analyst_reads_only_the_analytics(&pool).await;
}

#[sqlx::test(migrator = "gigledger_projections::MIGRATOR")]
async fn the_public_gig_board_carries_no_contract_id_which_only_the_parties_learn(pool: PgPool) {
    let world = World::new(pool.clone());
    let client = person(Role::Client);
    let freelancer = person(Role::Freelancer);
    let (gig, contract, _) = world.hire(&client, &freelancer, 20_000).await;
    world.catch_up_all().await;
    let contract_text = contract.0.to_string();

    // Anyone signed in reads the board and the gig: hired, and no trace of the contract.
    let card = gig_board::get_gig(&pool, gig)
        .await
        .expect("reads")
        .expect("the gig");
    let board = gig_board::search_gigs(&pool, &gig_board::GigQuery::default())
        .await
        .expect("reads");
    assert_eq!(board.items.len(), 1);
    assert_eq!(card.status, GigStatus::Hired);
    for shown in [
        serde_json::to_string(&card).expect("serialises"),
        serde_json::to_string(&board).expect("serialises"),
    ] {
        assert!(
            !shown.contains(&contract_text),
            "a contract id on the board: {shown}"
        );
        assert!(
            !shown.contains("contract"),
            "a contract field on the board: {shown}"
        );
    }

    // The parties learn it; nobody else does.
    assert_eq!(
        gig_board::hired_contract(&pool, gig, client.user_id)
            .await
            .expect("reads"),
        Some(contract)
    );
    assert_eq!(
        gig_board::hired_contract(&pool, gig, freelancer.user_id)
            .await
            .expect("reads"),
        Some(contract)
    );
    assert_eq!(
        gig_board::hired_contract(&pool, gig, UserId::new())
            .await
            .expect("reads"),
        None
    );
}
