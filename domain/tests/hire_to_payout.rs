//! The three aggregates together, the way the command service chains them: a hire starts the
//! contract and escrow, a deposit funds the milestone, an approval releases the money, and a
//! dispute and a cancellation settle and refund it. Follow-up commands are built by the
//! domain's process table (`gigledger_domain::process`), so this also checks that they fit each
//! other.

use chrono::{DateTime, NaiveDate, TimeZone, Utc};
use cqrs_es::event_sink::EventSink;
use cqrs_es::Aggregate;
use gigledger_domain::process::{follow_ups, Cause, FollowUp};
use gigledger_domain::{
    Actor, AnyEvent, Budget, Contract, ContractCommand, ContractEvent, ContractId, ContractStatus,
    Currency, DisputeId, Escrow, EscrowCommand, EscrowEvent, EscrowServices, Gig, GigCommand,
    GigEvent, GigId, GigStatus, MilestoneId, MilestoneStatus, MilestoneTerms, Money, ProposalId,
    Role, UserId,
};
use uuid::Uuid;

fn at() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2025, 3, 1, 12, 0, 0).unwrap()
}

fn run<A: Aggregate + Clone>(
    aggregate: &mut A,
    command: A::Command,
    services: &A::Services,
) -> Result<Vec<A::Event>, A::Error> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    // Like the framework: a refused command leaves the aggregate as it was.
    let mut attempt = aggregate.clone();
    let sink = EventSink::<A>::default();
    runtime.block_on(attempt.handle(command, services, &sink))?;
    *aggregate = attempt;
    Ok(runtime.block_on(sink.collect()))
}

struct World {
    client: Actor,
    freelancer: Actor,
    admin: Actor,
    gig: Gig,
    contract: Contract,
    escrow: Escrow,
    services: EscrowServices,
    contract_id: ContractId,
    milestones: [MilestoneId; 2],
}

fn hired() -> World {
    let client = Actor::new(UserId(Uuid::from_u128(1)), vec![Role::Client]);
    let freelancer = Actor::new(UserId(Uuid::from_u128(2)), vec![Role::Freelancer]);
    let admin = Actor::new(UserId(Uuid::from_u128(9)), vec![Role::Admin]);
    let milestones = [MilestoneId::new(), MilestoneId::new()];
    let contract_id = ContractId::new();
    let proposal_id = ProposalId::new();
    let gig_id = GigId::new();
    let mut gig = Gig::default();

    let posted = run(
        &mut gig,
        GigCommand::PostGig {
            gig_id,
            title: "Logo".to_owned(),
            description: "A logo for our shop.".to_owned(),
            skills: vec!["Design".to_owned()],
            budget: Budget::Fixed {
                amount: Money::new(50_000, Currency::INR),
            },
            deadline: NaiveDate::from_ymd_opt(2025, 6, 1),
            actor: client.clone(),
            at: at(),
        },
        &(),
    );
    assert!(posted.is_ok());
    let proposed = run(
        &mut gig,
        GigCommand::SubmitProposal {
            proposal_id,
            cover_letter: "Happy to help.".to_owned(),
            milestones: vec![
                MilestoneTerms {
                    milestone_id: milestones[0],
                    title: "Sketches".to_owned(),
                    amount: Money::new(20_000, Currency::INR),
                    due_date: None,
                },
                MilestoneTerms {
                    milestone_id: milestones[1],
                    title: "Final files".to_owned(),
                    amount: Money::new(30_001, Currency::INR),
                    due_date: None,
                },
            ],
            actor: freelancer.clone(),
            at: at(),
        },
        &(),
    );
    assert!(proposed.is_ok());
    let accepted = run(
        &mut gig,
        GigCommand::AcceptProposal {
            proposal_id,
            contract_id,
            fee_bps: 1_000,
            review_window_days: 14,
            max_revisions: 2,
            actor: client.clone(),
            at: at(),
        },
        &(),
    )
    .unwrap();
    assert_eq!(gig.status(), Some(GigStatus::Hired));
    let [accepted @ GigEvent::ProposalAccepted { .. }] = accepted.as_slice() else {
        panic!("expected ProposalAccepted, got {accepted:?}");
    };

    let mut contract = Contract::default();
    let accepted = AnyEvent::Gig(accepted.clone());
    let steps = follow_ups(
        &Cause::new(&gig_id.to_string(), Uuid::now_v7(), &accepted),
        at(),
    )
    .unwrap();
    let [FollowUp::Contract(_, start), FollowUp::Escrow(_, open)] = steps.as_slice() else {
        panic!("ProposalAccepted calls for StartContract and OpenEscrow, got {steps:?}");
    };
    let (start, open) = (start.clone(), open.clone());
    assert_eq!(
        run(&mut contract, start.clone(), &()).map(|e| e.len()),
        Ok(1)
    );
    // A redelivered ProposalAccepted changes nothing.
    assert_eq!(run(&mut contract, start, &()), Ok(vec![]));

    let (services, _gateway) = EscrowServices::simulated();
    let mut escrow = Escrow::default();
    assert_eq!(
        run(&mut escrow, open.clone(), &services).map(|e| e.len()),
        Ok(1)
    );
    assert_eq!(run(&mut escrow, open, &services), Ok(vec![]));

    World {
        client,
        freelancer,
        admin,
        gig,
        contract,
        escrow,
        services,
        contract_id,
        milestones,
    }
}

impl World {
    fn fund(&mut self, milestone_id: MilestoneId) {
        let deposited = run(
            &mut self.escrow,
            EscrowCommand::Deposit {
                milestone_id,
                idempotency_key: format!("deposit:{}:{milestone_id}", self.contract_id),
                actor: self.client.clone(),
                at: at(),
            },
            &self.services,
        )
        .unwrap();
        let id = self.contract_id.to_string();
        for event in deposited {
            let event = AnyEvent::Escrow(event);
            let cause = Cause::new(&id, Uuid::now_v7(), &event).with_escrow(&self.escrow);
            for step in follow_ups(&cause, at()).unwrap() {
                let FollowUp::Contract(_, command) = step else {
                    panic!("an escrow event calls for contract steps only");
                };
                assert!(run(&mut self.contract, command, &()).is_ok());
            }
        }
    }

    fn contract_step(&mut self, command: ContractCommand) -> Vec<ContractEvent> {
        let events = run(&mut self.contract, command, &()).unwrap();
        let id = self.contract_id.to_string();
        for event in &events {
            let event = AnyEvent::Contract(event.clone());
            for step in follow_ups(&Cause::new(&id, Uuid::now_v7(), &event), at()).unwrap() {
                let FollowUp::Escrow(_, command) = step else {
                    panic!("a contract event calls for escrow steps only");
                };
                assert!(run(&mut self.escrow, command, &self.services).is_ok());
            }
        }
        events
    }

    fn submit(&mut self, milestone_id: MilestoneId) {
        self.contract_step(ContractCommand::SubmitMilestone {
            milestone_id,
            note: "Done.".to_owned(),
            links: vec![],
            actor: self.freelancer.clone(),
            at: at(),
        });
    }
}

#[test]
fn a_hire_is_funded_delivered_approved_and_paid_out_less_the_fee() {
    let mut world = hired();
    assert!(world.gig.hired_proposal().is_some());
    let [first, second] = world.milestones;
    for milestone in [first, second] {
        world.fund(milestone);
        assert_eq!(
            world.contract.milestone_status(milestone),
            Some(MilestoneStatus::Funded)
        );
        world.submit(milestone);
        world.contract_step(ContractCommand::ApproveMilestone {
            milestone_id: milestone,
            actor: world.client.clone(),
            at: at(),
        });
    }
    assert_eq!(world.contract.status(), Some(ContractStatus::Completed));
    let second_balance = world.escrow.milestone_balance(second).unwrap();
    assert_eq!(second_balance.released, Money::new(30_001, Currency::INR));
    assert_eq!(second_balance.held(), Money::new(0, Currency::INR));
}

#[test]
fn a_dispute_freezes_the_funds_and_its_resolution_settles_them() {
    let mut world = hired();
    let [first, _] = world.milestones;
    world.fund(first);
    world.submit(first);
    let dispute_id = DisputeId::new();
    world.contract_step(ContractCommand::OpenDispute {
        dispute_id,
        milestone_id: first,
        reason: "Not what we agreed.".to_owned(),
        actor: world.client.clone(),
        at: at(),
    });
    assert!(world.escrow.milestone_balance(first).unwrap().frozen);
    let events = world.contract_step(ContractCommand::ResolveDispute {
        dispute_id,
        release: Money::new(12_345, Currency::INR),
        refund: Money::new(7_655, Currency::INR),
        actor: world.admin.clone(),
        at: at(),
    });
    assert_eq!(events.len(), 1);
    let balance = world.escrow.milestone_balance(first).unwrap();
    assert!(!balance.frozen);
    assert_eq!(balance.released.amount, 12_345);
    assert_eq!(balance.refunded.amount, 7_655);
    assert_eq!(balance.held().amount, 0);
}

#[test]
fn a_cancellation_refunds_what_was_never_delivered_and_closes_the_escrow() {
    let mut world = hired();
    let [first, second] = world.milestones;
    world.fund(first);
    world.contract_step(ContractCommand::CancelContract {
        reason: "Budget cut.".to_owned(),
        actor: world.freelancer.clone(),
        at: at(),
    });
    assert_eq!(world.contract.status(), Some(ContractStatus::Cancelled));
    assert_eq!(
        world.contract.milestone_status(second),
        Some(MilestoneStatus::Cancelled)
    );
    assert_eq!(
        world
            .escrow
            .milestone_balance(first)
            .unwrap()
            .refunded
            .amount,
        20_000
    );
    assert!(world.escrow.is_closed());
    let late_deposit = run(
        &mut world.escrow,
        EscrowCommand::Deposit {
            milestone_id: second,
            idempotency_key: "late".to_owned(),
            actor: world.client.clone(),
            at: at(),
        },
        &world.services,
    );
    assert!(late_deposit.is_err());
    let journal_total: i128 = [
        EscrowEvent::FundsDeposited {
            milestone_id: first,
            amount: Money::new(20_000, Currency::INR),
            charge_id: String::new(),
            deposited_at: at(),
        },
        EscrowEvent::FundsRefunded {
            milestone_id: first,
            amount: Money::new(20_000, Currency::INR),
            refunded_at: at(),
        },
    ]
    .iter()
    .flat_map(|event| event.journal_lines(world.contract_id, world.freelancer.user_id))
    .map(|line| i128::from(line.amount))
    .sum();
    assert_eq!(journal_total, 0);
}
