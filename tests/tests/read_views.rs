//! What the routes of API.md need from the read models beyond what `read_models.rs` covers
//! (issue 8, items 4–7): a client's gigs, the admin dispute queue, notifications newest first with
//! read marks that survive a rebuild, the aggregate version each view reflects (for `ETag`), and
//! what became of proposals that were never decided. Every state is set up by sending commands.

use chrono::{TimeZone, Utc};
use gigledger_commands::services::Outcome;
use gigledger_domain::{
    Actor, Budget, ContractCommand, ContractId, DisputeId, EscrowCommand, GigCommand, GigId,
    GigStatus, MilestoneId, MilestoneTerms, Money, ProposalId, Role,
};
use gigledger_projections::read::contracts::{self, DisputeStatus};
use gigledger_projections::read::proposals::{self, ProposalViewStatus};
use gigledger_projections::read::{self, gig_board, notifications, ReadError};
use gigledger_projections::rebuild::rebuild;
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

    async fn close(&self, gig: GigId, client: &Actor) -> Outcome {
        self.gig(
            gig,
            GigCommand::CloseGig {
                actor: client.clone(),
                at: self.now(),
            },
        )
        .await
    }

    async fn cancel(&self, gig: GigId, client: &Actor) -> Outcome {
        self.gig(
            gig,
            GigCommand::CancelGig {
                actor: client.clone(),
                at: self.now(),
            },
        )
        .await
    }

    async fn post(&self, client: &Actor, title: &str) -> GigId {
        let gig = GigId::new();
        self.gig(
            gig,
            GigCommand::PostGig {
                gig_id: gig,
                title: title.to_owned(),
                description: format!("{title}, done well."),
                skills: vec!["rust".into()],
                budget: Budget::Fixed {
                    amount: usd(10_000),
                },
                deadline: None,
                actor: client.clone(),
                at: self.now(),
            },
        )
        .await;
        gig
    }

    async fn propose(&self, gig: GigId, freelancer: &Actor) -> (ProposalId, MilestoneId) {
        let proposal = ProposalId::new();
        let milestone = MilestoneId::new();
        self.gig(
            gig,
            GigCommand::SubmitProposal {
                proposal_id: proposal,
                cover_letter: "I have done this before.".into(),
                milestones: vec![MilestoneTerms {
                    milestone_id: milestone,
                    title: "All of it".into(),
                    amount: usd(10_000),
                    due_date: None,
                }],
                actor: freelancer.clone(),
                at: self.now(),
            },
        )
        .await;
        (proposal, milestone)
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

    async fn fund(&self, contract: ContractId, client: &Actor, milestone: MilestoneId) -> Outcome {
        let command = EscrowCommand::Deposit {
            milestone_id: milestone,
            idempotency_key: format!("{contract}:{milestone}"),
            actor: client.clone(),
            at: self.now(),
        };
        self.escrow(contract, command).await
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

    /// Brings every read model up to date.
    async fn catch_up_all(&self) {
        for handler in read::all() {
            let target = Target::live(handler.name());
            if let Err(e) = catch_up(&self.pool, handler.as_ref(), &target, 7).await {
                panic!("{} failed to catch up: {e}", handler.name());
            }
        }
    }

    /// `gigledger projections rebuild <name>`.
    async fn rebuild(&self, name: &str) {
        let handler = read::all()
            .into_iter()
            .find(|h| h.name() == name)
            .expect("a read model of that name");
        let tables = read::tables_of(name).expect("its tables");
        rebuild(&self.pool, handler.as_ref(), tables, 500)
            .await
            .expect("the rebuild swaps in");
    }
}

// ------------------------------------------------------------------------------------------------
// Item 4: what the routes list
// ------------------------------------------------------------------------------------------------

#[sqlx::test(migrator = "gigledger_projections::MIGRATOR")]
async fn a_clients_gigs_are_listed_newest_first_in_any_or_one_status_and_paged(pool: PgPool) {
    let world = World::new(pool.clone());
    let client = person(Role::Client);
    let someone_else = person(Role::Client);
    let first = world.post(&client, "First").await;
    world.post(&someone_else, "Not mine").await;
    let second = world.post(&client, "Second").await;
    let third = world.post(&client, "Third").await;
    world.propose(third, &person(Role::Freelancer)).await;
    world.cancel(second, &client).await;
    world.catch_up_all().await;

    let all = gig_board::gigs_of_client(&pool, client.user_id, None, None, None)
        .await
        .expect("reads");
    let ids: Vec<GigId> = all.items.iter().map(|g| g.gig_id).collect();
    assert_eq!(
        ids,
        [third, second, first],
        "newest first, only the caller's"
    );
    assert_eq!(all.items[0].proposals_count, 1);
    assert_eq!(all.next_cursor, None);

    let cancelled = gig_board::gigs_of_client(
        &pool,
        client.user_id,
        Some(GigStatus::Cancelled),
        None,
        None,
    )
    .await
    .expect("reads");
    let ids: Vec<GigId> = cancelled.items.iter().map(|g| g.gig_id).collect();
    assert_eq!(ids, [second]);

    let mut paged = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let page =
            gig_board::gigs_of_client(&pool, client.user_id, None, cursor.as_deref(), Some(1))
                .await
                .expect("reads");
        paged.extend(page.items.iter().map(|g| g.gig_id));
        match page.next_cursor {
            Some(next) => cursor = Some(next),
            None => break,
        }
    }
    assert_eq!(paged, [third, second, first], "every gig once, in order");
    let open =
        gig_board::gigs_of_client(&pool, client.user_id, Some(GigStatus::Open), None, Some(1))
            .await
            .expect("reads");
    assert_eq!(open.items[0].gig_id, third);
    let rest = gig_board::gigs_of_client(
        &pool,
        client.user_id,
        Some(GigStatus::Open),
        open.next_cursor.as_deref(),
        Some(1),
    )
    .await
    .expect("reads");
    let ids: Vec<GigId> = rest.items.iter().map(|g| g.gig_id).collect();
    assert_eq!(ids, [first]);
    assert_eq!(rest.next_cursor, None);
    assert!(matches!(
        gig_board::gigs_of_client(&pool, client.user_id, None, Some("p.12"), None).await,
        Err(ReadError::InvalidCursor)
    ));
}

/// A hired gig whose one milestone of `amount` is funded and disputed by the client.
async fn disputed(world: &World, amount: i64) -> (ContractId, MilestoneId, DisputeId) {
    let client = person(Role::Client);
    let freelancer = person(Role::Freelancer);
    let gig = world.post(&client, "Disputed").await;
    let proposal = ProposalId::new();
    let milestone = MilestoneId::new();
    world
        .gig(
            gig,
            GigCommand::SubmitProposal {
                proposal_id: proposal,
                cover_letter: "Trust me.".into(),
                milestones: vec![MilestoneTerms {
                    milestone_id: milestone,
                    title: format!("Worth {amount}"),
                    amount: usd(amount),
                    due_date: None,
                }],
                actor: freelancer.clone(),
                at: world.now(),
            },
        )
        .await;
    let contract = world.accept(gig, &client, proposal).await;
    world.fund(contract, &client, milestone).await;
    let dispute = world.dispute(contract, &client, milestone).await;
    (contract, milestone, dispute)
}

#[sqlx::test(migrator = "gigledger_projections::MIGRATOR")]
async fn the_dispute_queue_lists_disputes_in_opened_order_with_the_amount_frozen(pool: PgPool) {
    let world = World::new(pool.clone());
    let (contract1, milestone1, dispute1) = disputed(&world, 4_000).await;
    let (_, _, dispute2) = disputed(&world, 6_000).await;
    let (_, _, dispute3) = disputed(&world, 9_000).await;
    world
        .contract(
            contract1,
            ContractCommand::ResolveDispute {
                dispute_id: dispute1,
                release: usd(1_000),
                refund: usd(3_000),
                actor: person(Role::Admin),
                at: world.now(),
            },
        )
        .await;
    world.catch_up_all().await;

    let open = contracts::dispute_queue(&pool, Some(DisputeStatus::Open), None, None)
        .await
        .expect("reads");
    let listed: Vec<(DisputeId, Option<Money>)> = open
        .items
        .iter()
        .map(|d| (d.dispute_id, d.amount_frozen))
        .collect();
    assert_eq!(
        listed,
        [(dispute2, Some(usd(6_000))), (dispute3, Some(usd(9_000)))],
        "open disputes in the order they were opened, each with what its escrow froze"
    );
    assert_eq!(open.items[0].reason, "Not what we agreed.");
    assert_eq!(open.items[0].milestone_title.as_deref(), Some("Worth 6000"));

    let resolved = contracts::dispute_queue(&pool, Some(DisputeStatus::Resolved), None, None)
        .await
        .expect("reads");
    assert_eq!(resolved.items.len(), 1);
    let settled = &resolved.items[0];
    assert_eq!(
        (
            settled.dispute_id,
            settled.contract_id,
            settled.milestone_id,
            settled.status,
            settled.amount_frozen
        ),
        (
            dispute1,
            contract1,
            milestone1,
            DisputeStatus::Resolved,
            Some(usd(4_000))
        ),
        "a settled dispute still says what was frozen"
    );
    assert!(settled.resolved_at.is_some());

    let first = contracts::dispute_queue(&pool, None, None, Some(2))
        .await
        .expect("reads");
    let rest = contracts::dispute_queue(&pool, None, first.next_cursor.as_deref(), Some(2))
        .await
        .expect("reads");
    let all: Vec<DisputeId> = first
        .items
        .iter()
        .chain(&rest.items)
        .map(|d| d.dispute_id)
        .collect();
    assert_eq!(all, [dispute1, dispute2, dispute3]);
    assert_eq!(rest.next_cursor, None);
}

#[sqlx::test(migrator = "gigledger_projections::MIGRATOR")]
async fn notifications_are_listed_newest_first_all_or_unread_and_marked_read_up_to_one(
    pool: PgPool,
) {
    let world = World::new(pool.clone());
    let client = person(Role::Client);
    let gig = world.post(&client, "Four proposals").await;
    for _ in 0..4 {
        world.propose(gig, &person(Role::Freelancer)).await;
    }
    world.catch_up_all().await;
    let oldest_first = notifications::notifications_of(&pool, client.user_id, None, None)
        .await
        .expect("reads");
    let ids: Vec<String> = oldest_first.items.iter().map(|n| n.id.clone()).collect();
    assert_eq!(ids.len(), 4);

    let mut newest_first = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let page = notifications::notifications_newest_first(
            &pool,
            client.user_id,
            false,
            cursor.as_deref(),
            Some(3),
        )
        .await
        .expect("reads");
        newest_first.extend(page.items.iter().map(|n| n.id.clone()));
        match page.next_cursor {
            Some(next) => cursor = Some(next),
            None => break,
        }
    }
    let reversed: Vec<String> = ids.iter().rev().cloned().collect();
    assert_eq!(newest_first, reversed, "the log's order, reversed");

    let marked = notifications::mark_read_up_to(&pool, client.user_id, &ids[1])
        .await
        .expect("marks");
    assert_eq!(marked, 2, "the two oldest become read");
    assert_eq!(
        notifications::unread_count(&pool, client.user_id)
            .await
            .expect("counts"),
        2
    );
    let unread = notifications::notifications_newest_first(&pool, client.user_id, true, None, None)
        .await
        .expect("reads");
    let unread_ids: Vec<String> = unread.items.iter().map(|n| n.id.clone()).collect();
    assert_eq!(unread_ids, [ids[3].clone(), ids[2].clone()]);
    assert!(unread.items.iter().all(|n| !n.read));
    let all = notifications::notifications_newest_first(&pool, client.user_id, false, None, None)
        .await
        .expect("reads");
    let flags: Vec<bool> = all.items.iter().map(|n| n.read).collect();
    assert_eq!(flags, [false, false, true, true]);

    let back = notifications::mark_read_up_to(&pool, client.user_id, &ids[0])
        .await
        .expect("marks");
    assert_eq!(back, 0, "a mark never moves back");
    assert_eq!(
        notifications::unread_count(&pool, client.user_id)
            .await
            .expect("counts"),
        2
    );
    let stranger = person(Role::Client);
    assert!(matches!(
        notifications::mark_read_up_to(&pool, stranger.user_id, &ids[3]).await,
        Err(ReadError::InvalidArgument(_))
    ));
    assert!(matches!(
        notifications::mark_read_up_to(&pool, client.user_id, "1-2-nonsense").await,
        Err(ReadError::InvalidArgument(_))
    ));
    assert_eq!(
        notifications::unread_count(&pool, stranger.user_id)
            .await
            .expect("counts"),
        0
    );
}

// ------------------------------------------------------------------------------------------------
// Item 5: the version each view reflects
// ------------------------------------------------------------------------------------------------

#[sqlx::test(migrator = "gigledger_projections::MIGRATOR")]
async fn views_carry_the_version_of_the_aggregate_they_reflect(pool: PgPool) {
    let world = World::new(pool.clone());
    let client = person(Role::Client);
    let freelancer = person(Role::Freelancer);
    let gig = world.post(&client, "Versioned").await;
    let (withdrawn, _) = world.propose(gig, &person(Role::Freelancer)).await;
    let (chosen, milestone) = world.propose(gig, &freelancer).await;
    world.catch_up_all().await;
    let before = gig_board::get_gig(&pool, gig)
        .await
        .expect("reads")
        .expect("exists");
    assert_eq!(before.version, 3);

    // A withdrawal changes nothing else on the board's row, but it is a new version of the gig.
    let outcome = world
        .gig(
            gig,
            GigCommand::WithdrawProposal {
                proposal_id: withdrawn,
                actor: Actor::new(
                    proposals::get_proposal(&pool, withdrawn)
                        .await
                        .expect("reads")
                        .expect("exists")
                        .freelancer_id,
                    vec![Role::Freelancer],
                ),
                at: world.now(),
            },
        )
        .await;
    world.catch_up_all().await;
    let card = gig_board::get_gig(&pool, gig)
        .await
        .expect("reads")
        .expect("exists");
    assert_eq!(card.version, 4);
    assert_eq!(u64::try_from(card.version).ok(), Some(outcome.version));
    assert_eq!(card.proposals_count, before.proposals_count);

    let contract = world.accept(gig, &client, chosen).await;
    world.fund(contract, &client, milestone).await;
    world
        .contract(
            contract,
            ContractCommand::SubmitMilestone {
                milestone_id: milestone,
                note: "Done.".into(),
                links: Vec::new(),
                actor: freelancer.clone(),
                at: world.now(),
            },
        )
        .await;
    world.catch_up_all().await;

    let (_, gig_version) = world.services.load_gig(gig).await.expect("loads");
    let card = gig_board::get_gig(&pool, gig)
        .await
        .expect("reads")
        .expect("exists");
    assert_eq!(u64::try_from(card.version).ok(), Some(gig_version));

    let (_, contract_version) = world.services.load_contract(contract).await.expect("loads");
    let (_, escrow_version) = world.services.load_escrow(contract).await.expect("loads");
    assert!(
        contract_version >= 3,
        "started, funded and submitted: {contract_version}"
    );
    let view = contracts::get_contract(&pool, contract)
        .await
        .expect("reads")
        .expect("exists");
    assert_eq!(
        u64::try_from(view.version).ok(),
        Some(contract_version),
        "milestone events are versions of the contract too"
    );
    assert_eq!(
        view.escrow_version.and_then(|v| u64::try_from(v).ok()),
        Some(escrow_version)
    );
    let listed = contracts::contracts_of_user(&pool, client.user_id, None, None)
        .await
        .expect("reads");
    assert_eq!(listed.items[0].version, view.version);
    assert_eq!(listed.items[0].escrow_version, view.escrow_version);

    // A rebuild from zero arrives at the same versions.
    world.rebuild(gig_board::NAME).await;
    world.rebuild(contracts::NAME).await;
    let rebuilt = gig_board::get_gig(&pool, gig)
        .await
        .expect("reads")
        .expect("exists");
    assert_eq!(rebuilt.version, card.version);
    let rebuilt = contracts::get_contract(&pool, contract)
        .await
        .expect("reads")
        .expect("exists");
    assert_eq!(
        (rebuilt.version, rebuilt.escrow_version),
        (view.version, view.escrow_version)
    );
}

// ------------------------------------------------------------------------------------------------
// Item 6: what became of proposals nobody decided
// ------------------------------------------------------------------------------------------------

#[sqlx::test(migrator = "gigledger_projections::MIGRATOR")]
async fn proposals_left_undecided_say_what_became_of_them(pool: PgPool) {
    let world = World::new(pool.clone());
    let client = person(Role::Client);
    let hired = person(Role::Freelancer);
    let passed_over = person(Role::Freelancer);

    let hiring = world.post(&client, "Hiring").await;
    let (chosen, _) = world.propose(hiring, &hired).await;
    let (not_selected, _) = world.propose(hiring, &passed_over).await;
    world.accept(hiring, &client, chosen).await;

    let cancelled = world.post(&client, "Cancelled").await;
    let (on_cancelled, _) = world.propose(cancelled, &passed_over).await;
    world.cancel(cancelled, &client).await;

    let closed = world.post(&client, "Closed, then hired").await;
    let (hired_after_close, _) = world.propose(closed, &hired).await;
    let (lost_after_close, _) = world.propose(closed, &passed_over).await;
    world.close(closed, &client).await;

    let closed_then_cancelled = world.post(&client, "Closed, then cancelled").await;
    let (on_closed_then_cancelled, _) = world.propose(closed_then_cancelled, &passed_over).await;
    world.close(closed_then_cancelled, &client).await;
    world.catch_up_all().await;

    let status = |proposal: ProposalId| {
        let pool = pool.clone();
        async move {
            proposals::get_proposal(&pool, proposal)
                .await
                .expect("reads")
                .expect("exists")
        }
    };
    assert_eq!(
        status(lost_after_close).await.status,
        ProposalViewStatus::GigClosed,
        "a closed gig's proposal waits for the owner's decision"
    );
    assert_eq!(status(lost_after_close).await.decided_at, None);

    world.accept(closed, &client, hired_after_close).await;
    world.cancel(closed_then_cancelled, &client).await;
    world.catch_up_all().await;

    let passed = status(not_selected).await;
    assert_eq!(passed.status, ProposalViewStatus::NotSelected);
    let accepted = status(chosen).await;
    assert_eq!(accepted.status, ProposalViewStatus::Accepted);
    assert_eq!(
        passed.decided_at, accepted.decided_at,
        "decided when the other was accepted"
    );
    assert_eq!(
        status(on_cancelled).await.status,
        ProposalViewStatus::GigCancelled
    );
    assert!(status(on_cancelled).await.decided_at.is_some());
    assert_eq!(
        status(hired_after_close).await.status,
        ProposalViewStatus::Accepted,
        "closed is not final: the owner may still hire"
    );
    assert_eq!(
        status(lost_after_close).await.status,
        ProposalViewStatus::NotSelected
    );
    assert_eq!(
        status(on_closed_then_cancelled).await.status,
        ProposalViewStatus::GigCancelled
    );

    let mine = proposals::proposals_of_freelancer(&pool, passed_over.user_id, None, None)
        .await
        .expect("reads");
    assert_eq!(mine.items.len(), 4);
    assert!(
        mine.items
            .iter()
            .all(|p| p.status != ProposalViewStatus::Pending),
        "nothing on a hired or cancelled gig reads pending"
    );

    // What a rebuild from zero shows is what was shown.
    let before: Vec<(ProposalId, ProposalViewStatus)> = mine
        .items
        .iter()
        .map(|p| (p.proposal_id, p.status))
        .collect();
    world.rebuild(proposals::NAME).await;
    let after: Vec<(ProposalId, ProposalViewStatus)> =
        proposals::proposals_of_freelancer(&pool, passed_over.user_id, None, None)
            .await
            .expect("reads")
            .items
            .iter()
            .map(|p| (p.proposal_id, p.status))
            .collect();
    assert_eq!(after, before);
}

// ------------------------------------------------------------------------------------------------
// Item 7: read marks survive a rebuild
// ------------------------------------------------------------------------------------------------

#[sqlx::test(migrator = "gigledger_projections::MIGRATOR")]
async fn read_marks_survive_a_rebuild_of_notifications(pool: PgPool) {
    let world = World::new(pool.clone());
    let client = person(Role::Client);
    let gig = world.post(&client, "Three proposals").await;
    for _ in 0..3 {
        world.propose(gig, &person(Role::Freelancer)).await;
    }
    world.catch_up_all().await;
    let listed = notifications::notifications_of(&pool, client.user_id, None, None)
        .await
        .expect("reads");
    assert_eq!(listed.items.len(), 3);
    notifications::mark_read_up_to(&pool, client.user_id, &listed.items[1].id)
        .await
        .expect("marks");
    assert_eq!(
        notifications::unread_count(&pool, client.user_id)
            .await
            .expect("counts"),
        1
    );

    world.rebuild(notifications::NAME).await;

    assert_eq!(
        notifications::unread_count(&pool, client.user_id)
            .await
            .expect("counts"),
        1,
        "the marks are the user's, not the rebuilt tables'"
    );
    let flags: Vec<(String, bool)> =
        notifications::notifications_of(&pool, client.user_id, None, None)
            .await
            .expect("reads")
            .items
            .iter()
            .map(|n| (n.id.clone(), n.read))
            .collect();
    let expected: Vec<(String, bool)> = listed
        .items
        .iter()
        .zip([true, true, false])
        .map(|(n, read)| (n.id.clone(), read))
        .collect();
    assert_eq!(flags, expected);

    // What arrives after the rebuild starts unread.
    world.propose(gig, &person(Role::Freelancer)).await;
    world.catch_up_all().await;
    assert_eq!(
        notifications::unread_count(&pool, client.user_id)
            .await
            .expect("counts"),
        2
    );
}
