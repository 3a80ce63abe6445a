//! A stored event of an older version is read in its current shape by every reader: the
//! aggregate (the write side's store), a projection and a process manager (the read side), all
//! through the domain's one upcaster chain. The event is `ProposalAccepted` at version 1 (the
//! contract's terms as four loose fields), appended as an older build wrote it.

use std::sync::Arc;

use chrono::{DateTime, TimeZone, Utc};
use cqrs_es::EventStore;
use gigledger_commands::bus::CommandBus;
use gigledger_commands::clock::ManualClock;
use gigledger_commands::metadata::CommandMetadata;
use gigledger_commands::process::{Process, ProcessManager};
use gigledger_commands::services::{RequestContext, Services, ServicesConfig};
use gigledger_commands::store::{NewEvent, PgEventRepository, StoreConfig};
use gigledger_domain::{
    Actor, Budget, ContractId, ContractTerms, Currency, Gig, GigCommand, GigEvent, GigId,
    GigStatus, MilestoneId, MilestoneTerms, Money, ProposalId, Role, SimulatedGateway, UserId,
};
use gigledger_projections::read;
use gigledger_projections::runtime::{catch_up, Target};
use serde_json::json;
use sqlx::PgPool;

struct Hire {
    gig: GigId,
    contract: ContractId,
    /// What the hire means, in the current shape.
    accepted: GigEvent,
}

fn at() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 21, 8, 0, 0)
        .single()
        .expect("a time")
}

fn services(pool: &PgPool) -> Arc<Services> {
    Arc::new(Services::new(
        pool.clone(),
        ServicesConfig::default(),
        Arc::new(SimulatedGateway::new()),
        Arc::new(ManualClock::new(at())),
    ))
}

/// A gig and a proposal through the services, then the hire appended as version 1 of
/// `ProposalAccepted`, the way a build before version 2 stored it.
async fn a_hire_stored_at_version_1(pool: &PgPool, services: &Services) -> Hire {
    let client = Actor::new(UserId::new(), vec![Role::Client]);
    let freelancer = Actor::new(UserId::new(), vec![Role::Freelancer]);
    let ctx = RequestContext::new();
    let gig = GigId::new();
    let usd = |amount| Money::new(amount, Currency::USD);
    services
        .gig(
            gig,
            GigCommand::PostGig {
                gig_id: gig,
                title: "A landing page".to_owned(),
                description: "One page, responsive.".to_owned(),
                skills: vec!["html".to_owned()],
                budget: Budget::Fixed {
                    amount: usd(80_000),
                },
                deadline: None,
                actor: client.clone(),
                at: at(),
            },
            &ctx,
        )
        .await
        .expect("posted");
    let proposal = ProposalId::new();
    let milestones = vec![MilestoneTerms {
        milestone_id: MilestoneId::new(),
        title: "The page".to_owned(),
        amount: usd(60_000),
        due_date: None,
    }];
    services
        .gig(
            gig,
            GigCommand::SubmitProposal {
                proposal_id: proposal,
                cover_letter: "I have built many.".to_owned(),
                milestones: milestones.clone(),
                actor: freelancer.clone(),
                at: at(),
            },
            &ctx,
        )
        .await
        .expect("proposed");

    let contract = ContractId::new();
    let v1 = json!({ "ProposalAccepted": {
        "gig_id": gig,
        "proposal_id": proposal,
        "contract_id": contract,
        "client_id": client.user_id,
        "freelancer_id": freelancer.user_id,
        "currency": "USD",
        "milestones": milestones,
        "fee_bps": 750,
        "review_window_days": 10,
        "max_revisions": 3,
        "accepted_at": at(),
        "posted_at": at(),
    }});
    let metadata =
        CommandMetadata::for_user("an-old-request", client.user_id.to_string(), "client", at());
    PgEventRepository::new(pool.clone())
        .append(
            "gig",
            &gig.to_string(),
            2,
            &[NewEvent {
                event_id: uuid::Uuid::now_v7(),
                event_type: "ProposalAccepted".to_owned(),
                event_version: "1".to_owned(),
                payload: v1,
                metadata: serde_json::to_value(metadata.to_map()).expect("metadata"),
            }],
            None,
        )
        .await
        .expect("the old event is appended");

    let accepted = GigEvent::ProposalAccepted {
        gig_id: gig,
        proposal_id: proposal,
        contract_id: contract,
        client_id: client.user_id,
        freelancer_id: freelancer.user_id,
        milestones,
        terms: ContractTerms {
            currency: Currency::USD,
            fee_bps: 750,
            review_window_days: 10,
            max_revisions: 3,
        },
        accepted_at: at(),
        posted_at: at(),
    };
    Hire {
        gig,
        contract,
        accepted,
    }
}

#[sqlx::test(migrator = "gigledger_projections::MIGRATOR")]
async fn the_aggregate_reads_a_stored_v1_event_as_v2(pool: PgPool) {
    let services = services(&pool);
    let hire = a_hire_stored_at_version_1(&pool, &services).await;

    let (gig, version) = services.load_gig(hire.gig).await.expect("the gig loads");
    assert_eq!((gig.status(), version), (Some(GigStatus::Hired), 3));

    let bus = CommandBus::<Gig>::new(
        PgEventRepository::new(pool.clone()),
        StoreConfig::default(),
        (),
    );
    let events = bus
        .store()
        .load_events(&hire.gig.to_string())
        .await
        .expect("the events load");
    assert_eq!(events.last().map(|e| &e.payload), Some(&hire.accepted));
}

#[sqlx::test(migrator = "gigledger_projections::MIGRATOR")]
async fn a_projection_reads_a_stored_v1_event_as_v2(pool: PgPool) {
    let services = services(&pool);
    let hire = a_hire_stored_at_version_1(&pool, &services).await;

    for handler in read::all() {
        catch_up(&pool, handler.as_ref(), &Target::live(handler.name()), 100)
            .await
            .unwrap_or_else(|e| panic!("{} failed: {e}", handler.name()));
    }

    let (status, hired): (String, Option<uuid::Uuid>) =
        sqlx::query_as("select status, hired_contract_id from read.gig_board where gig_id = $1")
            .bind(hire.gig.0)
            .fetch_one(&pool)
            .await
            .expect("the gig is on the board");
    assert_eq!((status.as_str(), hired), ("hired", Some(hire.contract.0)));
    let currency: String =
        sqlx::query_scalar("select currency from read.analytics_hires where contract_id = $1")
            .bind(hire.contract.0)
            .fetch_one(&pool)
            .await
            .expect("the hire is counted");
    assert_eq!(currency, "USD", "read from the v2 terms");
}

#[sqlx::test(migrator = "gigledger_projections::MIGRATOR")]
async fn a_process_manager_reads_a_stored_v1_event_as_v2(pool: PgPool) {
    let services = services(&pool);
    let hire = a_hire_stored_at_version_1(&pool, &services).await;
    let manager = ProcessManager::new(Process::StartContract, Arc::clone(&services));

    catch_up(
        &pool,
        &manager,
        &Target::live(Process::StartContract.name()),
        100,
    )
    .await
    .expect("the manager catches up");

    let (contract, _) = services
        .load_contract(hire.contract)
        .await
        .expect("the contract loads");
    let GigEvent::ProposalAccepted { terms, .. } = hire.accepted else {
        unreachable!("the hire is a ProposalAccepted")
    };
    assert_eq!(
        contract.terms(),
        Some(terms),
        "started with the v1 event's terms"
    );
    let (escrow, version) = services
        .load_escrow(hire.contract)
        .await
        .expect("the escrow loads");
    assert_eq!(version, 1, "the escrow was opened: {escrow:?}");
}
