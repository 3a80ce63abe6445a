//! The four aggregates together, the way the command service chains them: a hire starts the
//! contract and escrow, a deposit funds the milestone, an approval releases the money into the
//! freelancer's wallet, a payout is transferred to their account, and a dispute and a
//! cancellation settle and refund it back to the card. Follow-up steps are built by the domain's
//! process table (`gigledger_domain::process`), and provider steps run against the simulated
//! gateway, so this also checks that they fit each other.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

use chrono::{DateTime, NaiveDate, TimeZone, Utc};
use cqrs_es::event_sink::EventSink;
use cqrs_es::Aggregate;
use gigledger_domain::process::{after_refund, after_transfer, follow_ups, Cause, FollowUp};
use gigledger_domain::{
    AccountStatus, Actor, AnyEvent, Budget, CardRefundStatus, Contract, ContractCommand,
    ContractEvent, ContractId, ContractStatus, Currency, DisputeId, Escrow, EscrowCommand,
    EscrowEvent, EscrowServices, GatewayMode, Gig, GigCommand, GigEvent, GigId, GigStatus,
    JournalLine, MilestoneId, MilestoneStatus, MilestoneTerms, Money, OnboardRequest,
    PaymentGateway, PayoutId, PayoutStatus, ProposalId, Provider, Role, SimulatedGateway, UserId,
    Wallet, WalletCommand, WalletEvent,
};
use uuid::Uuid;

fn block_on<F: std::future::Future>(future: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap()
        .block_on(future)
}

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

/// A stored event as the process managers see it: its stream, its id and what it says.
type Logged = (String, Uuid, AnyEvent);

struct World {
    client: Actor,
    freelancer: Actor,
    admin: Actor,
    gig: Gig,
    contract: Contract,
    escrow: Escrow,
    wallet: Wallet,
    services: EscrowServices,
    gateway: Arc<SimulatedGateway>,
    contract_id: ContractId,
    milestones: [MilestoneId; 2],
    /// Every event followed, in order.
    log: Vec<Logged>,
    /// The journal lines of every escrow and wallet event followed.
    journal: Vec<JournalLine>,
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

    let (services, gateway) = EscrowServices::simulated();
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
        wallet: Wallet::default(),
        services,
        gateway,
        contract_id,
        milestones,
        log: Vec::new(),
        journal: Vec::new(),
    }
}

impl World {
    /// Journals what an aggregate wrote and runs the steps it calls for, as the command service
    /// does, until none is left.
    fn follow(&mut self, written: Vec<(String, AnyEvent)>) {
        let mut queue: VecDeque<Logged> = written
            .into_iter()
            .map(|(stream, event)| (stream, Uuid::now_v7(), event))
            .collect();
        while let Some(logged) = queue.pop_front() {
            match &logged.2 {
                AnyEvent::Escrow(e) => self
                    .journal
                    .extend(e.journal_lines(self.contract_id, self.freelancer.user_id)),
                AnyEvent::Wallet(e) => self
                    .journal
                    .extend(e.journal_lines(self.freelancer.user_id)),
                AnyEvent::Gig(_) | AnyEvent::Contract(_) => {}
            }
            let written = self.steps_of(&logged);
            queue.extend(
                written
                    .into_iter()
                    .map(|(stream, event)| (stream, Uuid::now_v7(), event)),
            );
            self.log.push(logged);
        }
    }

    /// Runs the steps of one stored event and answers what they wrote.
    fn steps_of(&mut self, (stream, event_id, event): &Logged) -> Vec<(String, AnyEvent)> {
        let cause = Cause::new(stream, *event_id, event).with_escrow(&self.escrow);
        let steps = follow_ups(&cause, at()).unwrap();
        steps
            .into_iter()
            .flat_map(|step| self.run_step(step))
            .collect()
    }

    /// A process manager handling a stored event again (a retry, or a redelivery after a
    /// crash): how many events its steps wrote, all followed.
    fn redeliver(&mut self, logged: &Logged) -> usize {
        let written = self.steps_of(logged);
        let count = written.len();
        self.follow(written);
        count
    }

    fn run_step(&mut self, step: FollowUp) -> Vec<(String, AnyEvent)> {
        match step {
            FollowUp::Contract(id, command) => run(&mut self.contract, command, &())
                .unwrap()
                .into_iter()
                .map(|e| (id.to_string(), AnyEvent::Contract(e)))
                .collect(),
            FollowUp::Escrow(id, command) => run(&mut self.escrow, command, &self.services)
                .unwrap()
                .into_iter()
                .map(|e| (id.to_string(), AnyEvent::Escrow(e)))
                .collect(),
            FollowUp::Wallet(user, command) => run(&mut self.wallet, command, &())
                .unwrap()
                .into_iter()
                .map(|e| (user.to_string(), AnyEvent::Wallet(e)))
                .collect(),
            FollowUp::Transfer(_, request) => {
                let answer = block_on(self.gateway.transfer(request.clone()));
                after_transfer(&request, &answer, at())
                    .map(|next| self.run_step(next))
                    .unwrap_or_default()
            }
            FollowUp::Refund {
                contract_id,
                milestone_id,
                request,
            } => {
                let answer = block_on(self.gateway.refund(request.clone()));
                after_refund(contract_id, milestone_id, &request, &answer, at())
                    .map(|next| self.run_step(next))
                    .unwrap_or_default()
            }
        }
    }

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
        self.follow(
            deposited
                .into_iter()
                .map(|e| (id.clone(), AnyEvent::Escrow(e)))
                .collect(),
        );
    }

    fn contract_step(&mut self, command: ContractCommand) -> Vec<ContractEvent> {
        let events = run(&mut self.contract, command, &()).unwrap();
        let id = self.contract_id.to_string();
        self.follow(
            events
                .iter()
                .map(|e| (id.clone(), AnyEvent::Contract(e.clone())))
                .collect(),
        );
        events
    }

    fn wallet_step(&mut self, command: WalletCommand) {
        let events = run(&mut self.wallet, command, &()).unwrap();
        let id = self.freelancer.user_id.to_string();
        self.follow(
            events
                .into_iter()
                .map(|e| (id.clone(), AnyEvent::Wallet(e)))
                .collect(),
        );
    }

    /// The last followed event this matches, to redeliver it.
    fn logged(&self, matches: impl Fn(&AnyEvent) -> bool) -> Logged {
        self.log
            .iter()
            .rev()
            .find(|(_, _, event)| matches(event))
            .cloned()
            .unwrap()
    }

    /// The sum of the journal per account (one currency in these tests).
    fn trial_balance(&self) -> BTreeMap<String, i128> {
        let mut totals = BTreeMap::new();
        for line in &self.journal {
            assert_eq!(line.currency, Currency::INR);
            *totals.entry(line.account.clone()).or_default() += i128::from(line.amount);
        }
        totals
    }

    fn approve(&mut self, milestone_id: MilestoneId) {
        self.fund(milestone_id);
        self.submit(milestone_id);
        self.contract_step(ContractCommand::ApproveMilestone {
            milestone_id,
            actor: self.client.clone(),
            at: at(),
        });
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

fn inr(amount: i64) -> Money {
    Money::new(amount, Currency::INR)
}

#[test]
fn released_earnings_reach_the_freelancers_payout_account_once_and_the_ledger_agrees() {
    let mut world = hired();
    let [first, second] = world.milestones;
    world.approve(first);
    world.approve(second);
    // 20 000 and 30 001 gross at 10 %: 18 000 and 27 001 net.
    let balance = world.wallet.balance(Currency::INR);
    assert_eq!(
        (balance.credited, balance.available),
        (inr(45_001), inr(45_001))
    );
    // A redelivered release credits nothing more.
    let release =
        world.logged(|e| matches!(e, AnyEvent::Escrow(EscrowEvent::FundsReleased { .. })));
    assert_eq!(world.redeliver(&release), 0);
    assert_eq!(world.wallet.balance(Currency::INR).available, inr(45_001));

    // The freelancer onboards at the provider, registers the account, and the provider's notice
    // verifies it.
    let onboarding = OnboardRequest {
        user: world.freelancer.user_id,
        provider: Provider::Simulated,
    };
    let account = block_on(world.gateway.onboard(onboarding)).unwrap();
    assert_eq!(account.status, AccountStatus::Pending);
    world.wallet_step(WalletCommand::RegisterPayoutAccount {
        provider: Provider::Simulated,
        account_id: account.account_id.clone(),
        actor: world.freelancer.clone(),
        at: at(),
    });
    assert!(world.gateway.verify_account(&account.account_id));
    world.wallet_step(WalletCommand::VerifyPayoutAccount {
        account_id: account.account_id.clone(),
        actor: Actor::system(),
        at: at(),
    });

    // A payout of part of it is transferred at once and ends paid.
    let payout_id = PayoutId::new();
    world.wallet_step(WalletCommand::RequestPayout {
        payout_id,
        amount: inr(20_000),
        actor: world.freelancer.clone(),
        at: at(),
    });
    let payout = world.wallet.payout(payout_id).unwrap();
    assert!(matches!(payout.status, PayoutStatus::Paid { .. }));
    let balance = world.wallet.balance(Currency::INR);
    assert_eq!(
        (balance.available, balance.pending, balance.paid_out),
        (inr(25_001), inr(0), inr(20_000))
    );
    // The process redelivering PayoutRequested (a crash after the transfer) meets the same
    // transfer: one at the provider, the payout paid once.
    let requested =
        world.logged(|e| matches!(e, AnyEvent::Wallet(WalletEvent::PayoutRequested { .. })));
    assert_eq!(world.redeliver(&requested), 0);
    assert_eq!(world.gateway.transfer_count(), 1);
    assert_eq!(world.gateway.transferred_total(Currency::INR), 20_000);

    let totals = world.trial_balance();
    assert_eq!(totals.values().sum::<i128>(), 0, "{totals:?}");
    let payable = format!("freelancer_payable:{}", world.freelancer.user_id);
    assert_eq!(totals.get(&payable), Some(&25_001));
    assert_eq!(totals.get("payouts_sent"), Some(&20_000));
}

#[test]
fn a_transfer_the_provider_refuses_gives_the_money_back_to_the_wallet() {
    let mut world = hired();
    let [first, _] = world.milestones;
    world.approve(first);
    // Registered and verified in the wallet, but the provider never verified it: it refuses.
    world.wallet_step(WalletCommand::RegisterPayoutAccount {
        provider: Provider::Simulated,
        account_id: "sim_acct_unknown".to_owned(),
        actor: world.freelancer.clone(),
        at: at(),
    });
    world.wallet_step(WalletCommand::VerifyPayoutAccount {
        account_id: "sim_acct_unknown".to_owned(),
        actor: Actor::system(),
        at: at(),
    });
    let payout_id = PayoutId::new();
    world.wallet_step(WalletCommand::RequestPayout {
        payout_id,
        amount: inr(10_000),
        actor: world.freelancer.clone(),
        at: at(),
    });
    assert!(matches!(
        world.wallet.payout(payout_id).map(|p| p.status),
        Some(PayoutStatus::Failed {
            was_paid: false,
            ..
        })
    ));
    assert_eq!(world.wallet.balance(Currency::INR).available, inr(18_000));
    assert_eq!(world.gateway.transfer_count(), 0);
    assert_eq!(world.trial_balance().values().sum::<i128>(), 0);
}

#[test]
fn a_cancelled_milestones_deposit_goes_back_to_the_card_once_even_when_the_provider_was_down() {
    let mut world = hired();
    let [first, _] = world.milestones;
    world.fund(first);
    world.gateway.set_mode(GatewayMode::Fail);
    world.contract_step(ContractCommand::CancelContract {
        reason: "Budget cut.".to_owned(),
        actor: world.client.clone(),
        at: at(),
    });
    // The provider was down: nothing is recorded, the refund is still owed.
    assert_eq!(
        world.escrow.card_refund(first).map(|r| r.status),
        Some(CardRefundStatus::Pending)
    );
    assert_eq!(world.trial_balance().get("client_refund"), Some(&20_000));

    // The process manager retries the FundsRefunded under the same key.
    world.gateway.set_mode(GatewayMode::Succeed);
    let refunded =
        world.logged(|e| matches!(e, AnyEvent::Escrow(EscrowEvent::FundsRefunded { .. })));
    assert_eq!(world.redeliver(&refunded), 1);
    assert!(matches!(
        world.escrow.card_refund(first).map(|r| r.status),
        Some(CardRefundStatus::Issued { .. })
    ));
    // Again (a redelivery): the provider answers the same refund and the escrow changes nothing.
    assert_eq!(world.redeliver(&refunded), 0);
    assert_eq!(world.gateway.refund_count(), 1);
    assert_eq!(world.gateway.refunded_total(Currency::INR), 20_000);

    let totals = world.trial_balance();
    assert!(totals.values().all(|total| *total == 0), "{totals:?}");
}
