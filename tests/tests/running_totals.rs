//! No running total of a read model can overflow (issue 8, item 14). Issue 7 made the sums of
//! money numeric (tests/tests/amount_bound.rs); the last bigint accumulator that grows by more
//! than one per event was a user's rating sum (up to 5 per revealed review). Reaching bigint's
//! limit takes about 1.8 · 10^18 reviews, so the test seeds the freelancer's rating sum at the
//! most five-star reviews a bigint holds, standing for the reviews before, then reveals one more
//! review: with a bigint sum that stopped the user-stats worker ("bigint out of range").

use std::sync::Arc;

use chrono::{Duration, TimeZone, Utc};
use gigledger_commands::clock::ManualClock;
use gigledger_commands::services::{RequestContext, Services, ServicesConfig};
use gigledger_domain::{
    Actor, Budget, ContractCommand, ContractId, Currency, EscrowCommand, GigCommand, GigId,
    MilestoneId, MilestoneTerms, Money, ProposalId, Role, SimulatedGateway, UserId,
};
use gigledger_projections::read::{self, user_stats};
use gigledger_projections::runtime::{catch_up, Target};
use sqlx::PgPool;

async fn catch_up_all(pool: &PgPool) {
    for handler in read::all() {
        let target = Target::live(handler.name());
        if let Err(e) = catch_up(pool, handler.as_ref(), &target, 50).await {
            panic!("{} failed to catch up: {e}", handler.name());
        }
    }
}

#[sqlx::test(migrator = "gigledger_projections::MIGRATOR")]
async fn a_rating_sum_past_bigint_stops_no_worker_and_stays_exact(pool: PgPool) {
    let clock = Arc::new(ManualClock::new(
        Utc.with_ymd_and_hms(2026, 11, 21, 8, 0, 0)
            .single()
            .expect("a time"),
    ));
    let services = Services::new(
        pool.clone(),
        ServicesConfig::default(),
        Arc::new(SimulatedGateway::new()),
        clock.clone(),
    );
    let ctx = RequestContext::new();
    let now = || {
        clock.advance(Duration::minutes(1));
        services.now()
    };
    let client = Actor::new(UserId::new(), vec![Role::Client]);
    let freelancer = Actor::new(UserId::new(), vec![Role::Freelancer]);
    let usd = Money::new(10_000, Currency::USD);

    // A contract, paid and completed.
    let (gig, proposal, milestone, contract) = (
        GigId::new(),
        ProposalId::new(),
        MilestoneId::new(),
        ContractId::new(),
    );
    for command in [
        GigCommand::PostGig {
            gig_id: gig,
            title: "A gig".into(),
            description: "Something to do.".into(),
            skills: vec!["rust".into()],
            budget: Budget::Fixed { amount: usd },
            deadline: None,
            actor: client.clone(),
            at: now(),
        },
        GigCommand::SubmitProposal {
            proposal_id: proposal,
            cover_letter: "I can do it.".into(),
            milestones: vec![MilestoneTerms {
                milestone_id: milestone,
                title: "All of it".into(),
                amount: usd,
                due_date: None,
            }],
            actor: freelancer.clone(),
            at: now(),
        },
        GigCommand::AcceptProposal {
            proposal_id: proposal,
            contract_id: contract,
            fee_bps: 1_000,
            review_window_days: 14,
            max_revisions: 2,
            actor: client.clone(),
            at: now(),
        },
    ] {
        services
            .gig(gig, command, &ctx)
            .await
            .expect("the gig command");
    }
    let deposit = EscrowCommand::Deposit {
        milestone_id: milestone,
        idempotency_key: format!("{contract}:{milestone}"),
        actor: client.clone(),
        at: now(),
    };
    services
        .escrow(contract, deposit, &ctx)
        .await
        .expect("the deposit");
    for command in [
        ContractCommand::SubmitMilestone {
            milestone_id: milestone,
            note: "Delivered.".into(),
            links: vec![],
            actor: freelancer.clone(),
            at: now(),
        },
        ContractCommand::ApproveMilestone {
            milestone_id: milestone,
            actor: client.clone(),
            at: now(),
        },
    ] {
        services
            .contract(contract, command, &ctx)
            .await
            .expect("the contract command");
    }
    catch_up_all(&pool).await;

    // The freelancer's earlier reviews: as many five-star ones as a bigint sum holds.
    let earlier = i64::MAX / 5;
    sqlx::query(
        "insert into read.user_stats (user_id, rating_sum, rating_count) values ($1, $2, $3)
         on conflict (user_id) do update
            set rating_sum = excluded.rating_sum, rating_count = excluded.rating_count",
    )
    .bind(freelancer.user_id.0)
    .bind(earlier * 5)
    .bind(earlier)
    .execute(&pool)
    .await
    .expect("seeds");

    // Both review, which reveals both reviews: the freelancer gets a 4.
    for (by, rating) in [(&client, 4), (&freelancer, 5)] {
        let review = ContractCommand::LeaveReview {
            rating,
            text: "Fine.".into(),
            actor: by.clone(),
            at: now(),
        };
        services
            .contract(contract, review, &ctx)
            .await
            .expect("the review");
    }
    catch_up_all(&pool).await;

    let profile = user_stats::profile(&pool, freelancer.user_id)
        .await
        .expect("reads");
    let rating = profile.rating.expect("rated");
    assert_eq!(rating.sum, i128::from(earlier) * 5 + 4);
    assert!(rating.sum > i128::from(i64::MAX));
    assert_eq!(rating.count, earlier + 1);
    assert_eq!(rating.average, "5.00");
    let client_profile = user_stats::profile(&pool, client.user_id)
        .await
        .expect("reads");
    assert_eq!(
        client_profile.rating.map(|r| (r.sum, r.count)),
        Some((5, 1))
    );
}
