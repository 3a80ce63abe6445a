//! Demo data for a first look at a fresh database: a client with three gigs, two freelancers
//! with proposals, and one contract with a funded, submitted milestone. Sent as ordinary commands,
//! so everything downstream (read models, process managers) sees real events.

use gigledger_commands::services::{RequestContext, Services};
use gigledger_domain::{
    Actor, Budget, ContractCommand, ContractId, Currency, EscrowCommand, GigCommand, GigId,
    MilestoneId, MilestoneTerms, Money, ProposalId, Role, UserId,
};
use sqlx::PgPool;

/// Seeds the demo when the event store is empty; does nothing otherwise.
pub async fn seed_if_empty(pool: &PgPool, services: &Services) -> Result<(), String> {
    let events: i64 = sqlx::query_scalar("select count(*) from events")
        .fetch_one(pool)
        .await
        .map_err(|e| e.to_string())?;
    if events > 0 {
        return Ok(());
    }
    seed(services).await.map_err(|e| e.to_string())?;
    tracing::info!("seeded demo data");
    Ok(())
}

async fn seed(services: &Services) -> Result<(), gigledger_commands::services::ServiceError> {
    let ctx = RequestContext::new();
    let client = Actor::new(UserId::new(), vec![Role::Client]);
    let ada = Actor::new(UserId::new(), vec![Role::Freelancer]);
    let linus = Actor::new(UserId::new(), vec![Role::Freelancer]);
    let usd = |amount| Money::new(amount, Currency::USD);

    let gigs = [
        (
            "Landing page for a bakery",
            "A fast, accessible one-page site with a menu and a map.",
            vec!["html", "css"],
            usd(60_000),
        ),
        (
            "Postgres performance review",
            "Find and fix our slowest queries; explain what you changed.",
            vec!["postgresql", "sql"],
            usd(150_000),
        ),
        (
            "Logo for a cycling club",
            "A simple, bold logo that works in one colour.",
            vec!["design", "branding"],
            usd(30_000),
        ),
    ];
    let mut gig_ids = Vec::new();
    for (title, description, skills, amount) in gigs {
        let gig = GigId::new();
        services
            .gig(
                gig,
                GigCommand::PostGig {
                    gig_id: gig,
                    title: title.into(),
                    description: description.into(),
                    skills: skills.into_iter().map(str::to_owned).collect(),
                    budget: Budget::Fixed { amount },
                    deadline: None,
                    actor: client.clone(),
                    at: services.now(),
                },
                &ctx,
            )
            .await?;
        gig_ids.push(gig);
    }

    let plan = |amounts: &[i64]| -> Vec<MilestoneTerms> {
        amounts
            .iter()
            .enumerate()
            .map(|(i, amount)| MilestoneTerms {
                milestone_id: MilestoneId::new(),
                title: format!("Milestone {}", i + 1),
                amount: usd(*amount),
                due_date: None,
            })
            .collect()
    };
    let proposal = ProposalId::new();
    let milestones = plan(&[50_000, 100_000]);
    let proposals = [
        (
            proposal,
            &ada,
            "I tune PostgreSQL for a living.",
            milestones.clone(),
        ),
        (
            ProposalId::new(),
            &linus,
            "Happy to help.",
            plan(&[140_000]),
        ),
    ];
    for (proposal_id, who, cover_letter, milestones) in proposals {
        services
            .gig(
                gig_ids[1],
                GigCommand::SubmitProposal {
                    proposal_id,
                    cover_letter: cover_letter.into(),
                    milestones,
                    actor: who.clone(),
                    at: services.now(),
                },
                &ctx,
            )
            .await?;
    }

    let contract = ContractId::new();
    let terms = services.config();
    services
        .gig(
            gig_ids[1],
            GigCommand::AcceptProposal {
                proposal_id: proposal,
                contract_id: contract,
                fee_bps: terms.fee_bps,
                review_window_days: terms.review_window_days,
                max_revisions: terms.max_revisions,
                actor: client.clone(),
                at: services.now(),
            },
            &ctx,
        )
        .await?;
    let first = milestones[0].milestone_id;
    services
        .escrow(
            contract,
            EscrowCommand::Deposit {
                milestone_id: first,
                idempotency_key: format!("demo-{contract}-{first}"),
                actor: client.clone(),
                at: services.now(),
            },
            &ctx,
        )
        .await?;
    services
        .contract(
            contract,
            ContractCommand::SubmitMilestone {
                milestone_id: first,
                note: "Indexes added; the report is attached.".into(),
                links: vec!["https://example.com/report".into()],
                actor: ada,
                at: services.now(),
            },
            &ctx,
        )
        .await?;
    Ok(())
}
