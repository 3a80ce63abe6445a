//! Rules no other test pinned down (issue 7, items 20 and 21), through the command services,
//! the process managers and the timer runner against the real PostgreSQL:
//!
//! - each stored event's `actor_role` is the one role its command was authorised under, even for
//!   people who hold several roles, and `system` for process steps;
//! - a process step's causation id is the id of the event that triggered it, its actor `system`,
//!   its correlation the triggering request's;
//! - reviews are double-blind in every read model until `ReviewsRevealed`, which the reveal
//!   timer sends through `TimerRunner` on the injected clock once the review period is over.

use std::sync::Arc;

use chrono::{Duration, TimeZone, Utc};
use gigledger_commands::clock::{Clock, ManualClock};
use gigledger_commands::process::{ProcessManager, TimerRunner};
use gigledger_commands::services::{RequestContext, Services, ServicesConfig};
use gigledger_domain::contract::REVIEW_PERIOD_DAYS;
use gigledger_domain::{
    Actor, Budget, ContractCommand, ContractId, Currency, DisputeId, EscrowCommand, GigCommand,
    GigId, MilestoneId, MilestoneTerms, Money, ProposalId, Role, SimulatedGateway, UserId,
};
use gigledger_projections::read::{self, analytics, contracts, notifications, user_stats};
use gigledger_projections::runtime::{catch_up, Target};
use sqlx::PgPool;
use uuid::Uuid;

struct World {
    pool: PgPool,
    services: Arc<Services>,
    clock: Arc<ManualClock>,
    /// Holds the freelancer role too: posting, hiring and funding are still `client`.
    client: Actor,
    /// Holds the client role too: proposing and delivering are still `freelancer`.
    freelancer: Actor,
    /// Holds the client role too: resolving is still `admin`.
    admin: Actor,
}

fn usd(amount: i64) -> Money {
    Money::new(amount, Currency::USD)
}

fn request(id: &str) -> RequestContext {
    RequestContext {
        correlation_id: Some(id.to_owned()),
        expected_version: None,
    }
}

impl World {
    fn new(pool: PgPool, config: ServicesConfig) -> Self {
        let clock = Arc::new(ManualClock::new(
            Utc.with_ymd_and_hms(2026, 11, 2, 9, 0, 0).unwrap(),
        ));
        let services = Arc::new(Services::new(
            pool.clone(),
            config,
            Arc::new(SimulatedGateway::new()),
            clock.clone(),
        ));
        Self {
            pool,
            services,
            clock,
            client: Actor::new(UserId::new(), vec![Role::Freelancer, Role::Client]),
            freelancer: Actor::new(UserId::new(), vec![Role::Client, Role::Freelancer]),
            admin: Actor::new(UserId::new(), vec![Role::Client, Role::Admin]),
        }
    }

    fn tick(&self) {
        self.clock.advance(Duration::minutes(1));
    }

    async fn gig(&self, gig: GigId, command: GigCommand, ctx: &RequestContext) {
        self.services.gig(gig, command, ctx).await.unwrap();
    }

    async fn contract(&self, contract: ContractId, command: ContractCommand, ctx: &RequestContext) {
        self.services
            .contract(contract, command, ctx)
            .await
            .unwrap();
    }

    async fn fund(&self, contract: ContractId, milestone: MilestoneId, ctx: &RequestContext) {
        self.tick();
        let deposit = EscrowCommand::Deposit {
            milestone_id: milestone,
            idempotency_key: format!("{contract}:{milestone}"),
            actor: self.client.clone(),
            at: self.clock.now(),
        };
        self.services.escrow(contract, deposit, ctx).await.unwrap();
    }

    /// Posted, proposed (milestones of the given amounts) and accepted, all in request `ctx`.
    async fn hired(&self, amounts: &[i64], ctx: &RequestContext) -> (ContractId, Vec<MilestoneId>) {
        let gig = GigId::new();
        self.gig(
            gig,
            GigCommand::PostGig {
                gig_id: gig,
                title: "Build a landing page".into(),
                description: "Responsive, fast, accessible.".into(),
                skills: vec!["html".into()],
                budget: Budget::Fixed {
                    amount: usd(30_000),
                },
                deadline: None,
                actor: self.client.clone(),
                at: self.clock.now(),
            },
            ctx,
        )
        .await;
        let proposal = ProposalId::new();
        let milestones: Vec<MilestoneTerms> = amounts
            .iter()
            .map(|amount| MilestoneTerms {
                milestone_id: MilestoneId::new(),
                title: "Part".into(),
                amount: usd(*amount),
                due_date: None,
            })
            .collect();
        let ids = milestones.iter().map(|m| m.milestone_id).collect();
        self.gig(
            gig,
            GigCommand::SubmitProposal {
                proposal_id: proposal,
                cover_letter: "I have done this many times.".into(),
                milestones,
                actor: self.freelancer.clone(),
                at: self.clock.now(),
            },
            ctx,
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
                actor: self.client.clone(),
                at: self.clock.now(),
            },
            ctx,
        )
        .await;
        (contract, ids)
    }

    async fn run_process_managers(&self) {
        for pm in ProcessManager::all(&self.services) {
            catch_up(&self.pool, pm.as_ref(), &Target::live(pm.name()), 100)
                .await
                .unwrap();
        }
    }

    async fn catch_up_read_models(&self) {
        for handler in read::all() {
            catch_up(
                &self.pool,
                handler.as_ref(),
                &Target::live(handler.name()),
                100,
            )
            .await
            .unwrap();
        }
    }

    /// The stored events of one type, oldest first.
    async fn stored(&self, event_type: &str) -> Vec<Stored> {
        sqlx::query_as(
            "select event_id, metadata->>'actor_id' as actor_id,
                    metadata->>'actor_role' as actor_role,
                    metadata->>'causation_id' as causation_id,
                    metadata->>'correlation_id' as correlation_id
               from events where event_type = $1 order by position",
        )
        .bind(event_type)
        .fetch_all(&self.pool)
        .await
        .unwrap()
    }

    /// The one stored event of a type.
    async fn the(&self, event_type: &str) -> Stored {
        let mut events = self.stored(event_type).await;
        assert_eq!(events.len(), 1, "exactly one {event_type}");
        events.remove(0)
    }
}

/// What an event's metadata says about who caused it.
#[derive(Debug, sqlx::FromRow)]
struct Stored {
    event_id: Uuid,
    actor_id: String,
    actor_role: String,
    causation_id: String,
    correlation_id: String,
}

impl Stored {
    fn by(&self, actor: &Actor, role: &str) {
        assert_eq!(
            (self.actor_id.as_str(), self.actor_role.as_str()),
            (actor.user_id.to_string().as_str(), role)
        );
    }

    /// A process step: the system, caused by `cause`, in the request that caused `cause`.
    fn caused_by(&self, cause: &Stored) {
        assert_eq!(
            (
                self.actor_id.as_str(),
                self.actor_role.as_str(),
                self.causation_id.as_str(),
                self.correlation_id.as_str()
            ),
            (
                "system",
                "system",
                cause.event_id.to_string().as_str(),
                cause.correlation_id.as_str()
            ),
            "a process step is the system's, caused by the triggering event"
        );
    }
}

// ---- item 20: actor_role ------------------------------------------------------------------

#[sqlx::test(migrator = "gigledger_projections::MIGRATOR")]
async fn each_event_records_the_one_role_its_command_was_authorised_under(pool: PgPool) {
    let w = World::new(pool, ServicesConfig::default());
    let ctx = request("req-1");
    let (contract, m) = w.hired(&[10_000, 5_000], &ctx).await;
    w.fund(contract, m[0], &ctx).await;
    let dispute = DisputeId::new();
    w.contract(
        contract,
        ContractCommand::OpenDispute {
            dispute_id: dispute,
            milestone_id: m[0],
            reason: "Not what we agreed.".into(),
            actor: w.freelancer.clone(),
            at: w.clock.now(),
        },
        &ctx,
    )
    .await;
    w.contract(
        contract,
        ContractCommand::ResolveDispute {
            dispute_id: dispute,
            release: usd(6_000),
            refund: usd(4_000),
            actor: w.admin.clone(),
            at: w.clock.now(),
        },
        &ctx,
    )
    .await;
    // The other contract is cancelled by its freelancer, who also holds the client role.
    let (other, _) = w.hired(&[1_000], &ctx).await;
    w.contract(
        other,
        ContractCommand::CancelContract {
            reason: "Plans changed.".into(),
            actor: w.freelancer.clone(),
            at: w.clock.now(),
        },
        &ctx,
    )
    .await;

    for posted in w.stored("GigPosted").await {
        posted.by(&w.client, "client");
    }
    for submitted in w.stored("ProposalSubmitted").await {
        submitted.by(&w.freelancer, "freelancer");
    }
    for accepted in w.stored("ProposalAccepted").await {
        accepted.by(&w.client, "client");
    }
    w.the("FundsDeposited").await.by(&w.client, "client");
    w.the("DisputeOpened").await.by(&w.freelancer, "freelancer");
    w.the("DisputeResolved").await.by(&w.admin, "admin");
    w.the("ContractCancelled")
        .await
        .by(&w.freelancer, "freelancer");

    // The steps the service ran at once are the system's, each caused by its event.
    let accepted = w.stored("ProposalAccepted").await;
    let started = w.stored("ContractStarted").await;
    let opened = w.stored("EscrowOpened").await;
    for ((accepted, started), opened) in accepted.iter().zip(&started).zip(&opened) {
        started.caused_by(accepted);
        opened.caused_by(accepted);
    }
    w.the("MilestoneFunded")
        .await
        .caused_by(&w.the("FundsDeposited").await);
    w.the("FundsFrozen")
        .await
        .caused_by(&w.the("DisputeOpened").await);
    for settled in [w.the("FundsReleased").await, w.the("EscrowClosed").await] {
        assert_eq!(settled.actor_role, "system");
    }
}

// ---- item 21: process managers' causation and actor ----------------------------------------

#[sqlx::test(migrator = "gigledger_projections::MIGRATOR")]
async fn a_process_managers_command_is_caused_by_its_triggering_event_and_sent_by_the_system(
    pool: PgPool,
) {
    // The service leaves every follow-up to the process managers.
    let w = World::new(
        pool,
        ServicesConfig {
            run_follow_ups: false,
            ..ServicesConfig::default()
        },
    );
    let (contract, m) = w.hired(&[10_000], &request("req-hire")).await;
    assert!(w.stored("ContractStarted").await.is_empty());
    w.run_process_managers().await;
    let accepted = w.the("ProposalAccepted").await;
    assert_eq!(accepted.correlation_id, "req-hire");
    w.the("ContractStarted").await.caused_by(&accepted);
    w.the("EscrowOpened").await.caused_by(&accepted);

    w.fund(contract, m[0], &request("req-fund")).await;
    w.run_process_managers().await;
    let deposited = w.the("FundsDeposited").await;
    deposited.by(&w.client, "client");
    assert_eq!(deposited.correlation_id, "req-fund");
    w.the("MilestoneFunded").await.caused_by(&deposited);

    // Running the managers again sends nothing new.
    let before: i64 = sqlx::query_scalar("select count(*) from events")
        .fetch_one(&w.pool)
        .await
        .unwrap();
    w.run_process_managers().await;
    let after: i64 = sqlx::query_scalar("select count(*) from events")
        .fetch_one(&w.pool)
        .await
        .unwrap();
    assert_eq!(before, after);
}

// ---- item 21: double-blind reviews and the reveal timer ------------------------------------

/// Everything any read model serves that could carry a review, for both parties.
async fn what_the_read_models_show(w: &World, contract: ContractId) -> String {
    let day = w.clock.now().date_naive();
    let mut shown = Vec::new();
    let view = contracts::get_contract(&w.pool, contract)
        .await
        .unwrap()
        .unwrap();
    shown.push(format!("{:?} {:?}", view.reviews, view.reviews_revealed_at));
    for party in [&w.client, &w.freelancer] {
        let page = contracts::contracts_of_user(&w.pool, party.user_id, None, None)
            .await
            .unwrap();
        for view in page.items {
            shown.push(format!("{:?} {:?}", view.reviews, view.reviews_revealed_at));
        }
        let profile = user_stats::profile(&w.pool, party.user_id).await.unwrap();
        shown.push(format!("{profile:?}"));
        let notes = notifications::notifications_of(&w.pool, party.user_id, None, Some(100))
            .await
            .unwrap();
        shown.extend(
            notes
                .items
                .iter()
                .map(|n| format!("{} {} {}", n.kind, n.data, n.position)),
        );
    }
    shown.push(format!(
        "{:?}",
        analytics::daily_volumes(&w.pool, day - Duration::days(30), day)
            .await
            .unwrap()
    ));
    shown.join("\n")
}

#[sqlx::test(migrator = "gigledger_projections::MIGRATOR")]
async fn reviews_stay_hidden_in_every_read_model_until_the_reveal_timer_fires_on_the_clock(
    pool: PgPool,
) {
    let w = World::new(pool.clone(), ServicesConfig::default());
    let ctx = request("req-work");
    let (contract, m) = w.hired(&[10_000], &ctx).await;
    w.fund(contract, m[0], &ctx).await;
    w.contract(
        contract,
        ContractCommand::SubmitMilestone {
            milestone_id: m[0],
            note: "Done.".into(),
            links: vec![],
            actor: w.freelancer.clone(),
            at: w.clock.now(),
        },
        &ctx,
    )
    .await;
    // Approved a minute after the submission, so its auto-approval timer falls due a minute
    // before the end of the review period.
    w.tick();
    w.contract(
        contract,
        ContractCommand::ApproveMilestone {
            milestone_id: m[0],
            actor: w.client.clone(),
            at: w.clock.now(),
        },
        &ctx,
    )
    .await;
    let completed_at = w.clock.now();
    w.run_process_managers().await;
    w.catch_up_read_models().await;
    let before_review = what_the_read_models_show(&w, contract).await;

    // One review, by the client: the period is open, so it stays hidden.
    w.tick();
    w.contract(
        contract,
        ContractCommand::LeaveReview {
            rating: 4,
            text: "Good work, a little late.".into(),
            actor: w.client.clone(),
            at: w.clock.now(),
        },
        &request("req-review"),
    )
    .await;
    w.the("ReviewLeft").await.by(&w.client, "client");
    w.run_process_managers().await;
    w.catch_up_read_models().await;
    assert_eq!(
        what_the_read_models_show(&w, contract).await,
        before_review,
        "no read model shows anything of a review before ReviewsRevealed"
    );

    let timers = TimerRunner::new(pool.clone(), w.services.clone(), w.clock.clone());
    let reveal_at = completed_at + Duration::days(i64::try_from(REVIEW_PERIOD_DAYS).unwrap());
    // Just before the end of the period (the auto-approval timer of the approved milestone
    // falls due earlier and fires as a no-op): nothing is revealed.
    w.clock
        .advance(reveal_at - w.clock.now() - Duration::seconds(1));
    timers.fire_due().await.unwrap();
    assert!(w.stored("ReviewsRevealed").await.is_empty());
    w.catch_up_read_models().await;
    assert_eq!(what_the_read_models_show(&w, contract).await, before_review);

    // At the end of the period the timer reveals the review.
    w.clock.advance(Duration::seconds(1));
    assert_eq!(
        timers.fire_due().await.unwrap(),
        1,
        "the reveal timer fired"
    );
    let revealed = w.the("ReviewsRevealed").await;
    revealed.caused_by(&w.the("ContractCompleted").await);
    assert_eq!(revealed.correlation_id, "req-work");
    assert_eq!(timers.fire_due().await.unwrap(), 0, "a timer fires once");

    w.catch_up_read_models().await;
    let view = contracts::get_contract(&w.pool, contract)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(view.reviews.len(), 1);
    assert_eq!(view.reviews[0].rating, 4);
    assert_eq!(view.reviews_revealed_at, Some(reveal_at));
    let profile = user_stats::profile(&w.pool, w.freelancer.user_id)
        .await
        .unwrap();
    assert_eq!(profile.review_count, 1);
    assert!(profile.rating.is_some());
    let notes = notifications::notifications_of(&w.pool, w.freelancer.user_id, None, Some(100))
        .await
        .unwrap();
    assert_eq!(
        notes
            .items
            .iter()
            .filter(|n| n.kind == "review_received")
            .count(),
        1
    );
}
