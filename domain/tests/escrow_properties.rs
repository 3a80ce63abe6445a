//! Property tests of the escrow's money rules, through the public API only: any sequence of
//! commands keeps every balance invariant, every release splits exactly, every journal entry
//! balances, a refund reaches the card at most once and for exactly its amount, and a refused
//! command writes nothing.

use std::collections::HashMap;
use std::sync::Arc;

use chrono::{DateTime, TimeZone, Utc};
use cqrs_es::event_sink::EventSink;
use cqrs_es::Aggregate;
use gigledger_domain::{
    Actor, ContractId, Currency, Escrow, EscrowCloseReason, EscrowCommand, EscrowError,
    EscrowEvent, EscrowServices, GatewayMode, MilestoneId, Money, Role, ScheduledMilestone,
    SimulatedGateway, UserId, MAX_AMOUNT,
};
use proptest::prelude::*;
use uuid::Uuid;

const CURRENCY: Currency = Currency::EUR;

fn at() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2025, 3, 1, 12, 0, 0).unwrap()
}

fn contract_id() -> ContractId {
    ContractId(Uuid::from_u128(300))
}

fn client() -> Actor {
    Actor::new(UserId(Uuid::from_u128(1)), vec![Role::Client])
}

fn freelancer_id() -> UserId {
    UserId(Uuid::from_u128(2))
}

fn milestone(index: usize) -> MilestoneId {
    MilestoneId(Uuid::from_u128(400 + index as u128))
}

/// A step a random scenario may take. Milestone indexes are reduced modulo the schedule size.
#[derive(Clone, Debug)]
enum Step {
    Deposit {
        index: usize,
        gateway_fails: bool,
    },
    Release {
        index: usize,
    },
    Freeze {
        index: usize,
    },
    /// A settlement that adds up: `pick` chooses the release part of what is held.
    SettleExactly {
        index: usize,
        pick: i64,
    },
    /// A settlement with arbitrary parts, which must be refused unless they happen to add up.
    SettleAnyhow {
        index: usize,
        release: i64,
        refund: i64,
    },
    RefundUnreleased,
    /// The provider's answer to a card refund: issued (for the refunded amount, or off by
    /// `skew`) under one of two refund ids, or failed.
    CardRefund {
        index: usize,
        refund: u8,
        skew: i64,
        failed: bool,
    },
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        3 => (any::<usize>(), proptest::bool::weighted(0.2))
            .prop_map(|(index, gateway_fails)| Step::Deposit { index, gateway_fails }),
        2 => any::<usize>().prop_map(|index| Step::Release { index }),
        2 => any::<usize>().prop_map(|index| Step::Freeze { index }),
        2 => (any::<usize>(), any::<i64>())
            .prop_map(|(index, pick)| Step::SettleExactly { index, pick }),
        1 => (any::<usize>(), any::<i64>(), any::<i64>())
            .prop_map(|(index, release, refund)| Step::SettleAnyhow { index, release, refund }),
        1 => Just(Step::RefundUnreleased),
        2 => (any::<usize>(), 0_u8..2, prop_oneof![3 => Just(0_i64), 1 => -2..=2_i64], proptest::bool::weighted(0.3))
            .prop_map(|(index, refund, skew, failed)| Step::CardRefund { index, refund, skew, failed }),
    ]
}

/// Scheduled amounts the domain accepts: small ones, any up to the maximum, and the maximum
/// itself (larger ones are refused when the escrow opens).
fn amount() -> impl Strategy<Value = i64> {
    prop_oneof![1..=1_000_000_i64, 1..=MAX_AMOUNT, Just(MAX_AMOUNT)]
}

struct Scenario {
    escrow: Escrow,
    services: EscrowServices,
    gateway: Arc<SimulatedGateway>,
    runtime: tokio::runtime::Runtime,
    written: Vec<EscrowEvent>,
    fee_bps: u32,
    schedule: Vec<i64>,
}

impl Scenario {
    fn new(schedule: Vec<i64>, fee_bps: u32) -> Self {
        let gateway = Arc::new(SimulatedGateway::new());
        let mut scenario = Self {
            escrow: Escrow::default(),
            services: EscrowServices::new(gateway.clone()),
            gateway,
            runtime: tokio::runtime::Builder::new_current_thread()
                .build()
                .unwrap(),
            written: Vec::new(),
            fee_bps,
            schedule,
        };
        let milestones = scenario
            .schedule
            .iter()
            .enumerate()
            .map(|(index, amount)| ScheduledMilestone {
                milestone_id: milestone(index),
                amount: Money::new(*amount, CURRENCY),
            })
            .collect();
        let opened = scenario.run(EscrowCommand::OpenEscrow {
            contract_id: contract_id(),
            client_id: client().user_id,
            freelancer_id: freelancer_id(),
            currency: CURRENCY,
            milestones,
            fee_bps,
            actor: Actor::system(),
            at: at(),
        });
        assert!(opened.is_ok(), "opening failed: {opened:?}");
        scenario
    }

    /// Runs a command the way the framework does: a refusal discards the attempt entirely.
    fn run(&mut self, command: EscrowCommand) -> Result<Vec<EscrowEvent>, EscrowError> {
        let mut attempt = self.escrow.clone();
        let sink = EventSink::<Escrow>::default();
        let result = self
            .runtime
            .block_on(attempt.handle(command, &self.services, &sink));
        let events = self.runtime.block_on(sink.collect());
        match result {
            Ok(()) => {
                self.escrow = attempt;
                self.written.extend(events.iter().cloned());
                Ok(events)
            }
            Err(error) => {
                assert!(events.is_empty(), "a refused command wrote {events:?}");
                Err(error)
            }
        }
    }

    fn held(&self, index: usize) -> i64 {
        self.escrow
            .milestone_balance(milestone(index))
            .map_or(0, |balance| balance.held().amount)
    }

    fn take(&mut self, step: Step) -> Result<(), TestCaseError> {
        let count = self.schedule.len();
        let system = Actor::system;
        match step {
            Step::Deposit {
                index,
                gateway_fails,
            } => {
                let index = index % count;
                let charges_before = self.gateway.charge_count();
                self.gateway.set_mode(if gateway_fails {
                    GatewayMode::Fail
                } else {
                    GatewayMode::Succeed
                });
                let result = self.run(EscrowCommand::Deposit {
                    milestone_id: milestone(index),
                    idempotency_key: format!("deposit:{}", milestone(index)),
                    actor: client(),
                    at: at(),
                });
                self.gateway.set_mode(GatewayMode::Succeed);
                if gateway_fails {
                    prop_assert!(result.is_err());
                    prop_assert_eq!(self.gateway.charge_count(), charges_before);
                }
            }
            Step::Release { index } => {
                let _ = self.run(EscrowCommand::Release {
                    milestone_id: milestone(index % count),
                    actor: system(),
                    at: at(),
                });
            }
            Step::Freeze { index } => {
                let _ = self.run(EscrowCommand::Freeze {
                    milestone_id: milestone(index % count),
                    actor: system(),
                    at: at(),
                });
            }
            Step::SettleExactly { index, pick } => {
                let index = index % count;
                let held = self.held(index);
                let release = if held > 0 { pick.rem_euclid(held) } else { 0 };
                let _ = self.run(EscrowCommand::Settle {
                    milestone_id: milestone(index),
                    release: Money::new(release, CURRENCY),
                    refund: Money::new(held - release, CURRENCY),
                    actor: system(),
                    at: at(),
                });
            }
            Step::SettleAnyhow {
                index,
                release,
                refund,
            } => {
                let index = index % count;
                let held = self.held(index);
                let frozen = self
                    .escrow
                    .milestone_balance(milestone(index))
                    .is_some_and(|balance| balance.frozen);
                let result = self.run(EscrowCommand::Settle {
                    milestone_id: milestone(index),
                    release: Money::new(release, CURRENCY),
                    refund: Money::new(refund, CURRENCY),
                    actor: system(),
                    at: at(),
                });
                let adds_up = i128::from(release) + i128::from(refund) == i128::from(held);
                if frozen && !(adds_up && release >= 0 && refund >= 0) {
                    prop_assert!(
                        result.is_err(),
                        "a settlement that does not add up was accepted"
                    );
                }
            }
            Step::RefundUnreleased => {
                let milestones = self
                    .escrow
                    .balances()
                    .iter()
                    .map(|b| b.milestone_id)
                    .collect();
                let _ = self.run(EscrowCommand::RefundUnreleased {
                    milestones,
                    reason: EscrowCloseReason::ContractCancelled,
                    actor: system(),
                    at: at(),
                });
            }
            Step::CardRefund {
                index,
                refund,
                skew,
                failed,
            } => {
                let index = index % count;
                let refunded = self
                    .escrow
                    .milestone_balance(milestone(index))
                    .map_or(0, |balance| balance.refunded.amount);
                let command = if failed {
                    EscrowCommand::RecordRefundFailed {
                        milestone_id: milestone(index),
                        reason: "card expired".to_owned(),
                        actor: system(),
                        at: at(),
                    }
                } else {
                    EscrowCommand::RecordRefundIssued {
                        milestone_id: milestone(index),
                        refund_id: format!("sim_re_{refund}"),
                        amount: Money::new(refunded.saturating_add(skew), CURRENCY),
                        actor: system(),
                        at: at(),
                    }
                };
                let result = self.run(command);
                if refunded == 0 || (!failed && skew != 0) {
                    prop_assert!(result.is_err(), "a card refund of the wrong amount");
                }
            }
        }
        self.check_invariants()
    }

    fn check_invariants(&self) -> Result<(), TestCaseError> {
        let mut releases: HashMap<MilestoneId, usize> = HashMap::new();
        let mut refunds: HashMap<MilestoneId, usize> = HashMap::new();
        let mut deposits: HashMap<MilestoneId, usize> = HashMap::new();
        let mut card_refunds: HashMap<MilestoneId, usize> = HashMap::new();
        let mut ledger: HashMap<String, i128> = HashMap::new();
        for event in &self.written {
            let lines = event.journal_lines(contract_id(), freelancer_id());
            let sum: i128 = lines.iter().map(|line| i128::from(line.amount)).sum();
            prop_assert_eq!(sum, 0, "unbalanced journal entry for {:?}", event);
            for line in lines {
                prop_assert_eq!(line.currency, CURRENCY);
                *ledger.entry(line.account).or_default() += i128::from(line.amount);
            }
            match event {
                EscrowEvent::FundsDeposited { milestone_id, .. } => {
                    *deposits.entry(*milestone_id).or_default() += 1;
                }
                EscrowEvent::FundsReleased {
                    milestone_id,
                    gross,
                    fee,
                    net,
                    ..
                } => {
                    *releases.entry(*milestone_id).or_default() += 1;
                    prop_assert_eq!(
                        i128::from(fee.amount) + i128::from(net.amount),
                        i128::from(gross.amount)
                    );
                    prop_assert!(fee.amount >= 0 && net.amount >= 0);
                    let expected_fee = i128::from(gross.amount) * i128::from(self.fee_bps) / 10_000;
                    prop_assert_eq!(i128::from(fee.amount), expected_fee);
                }
                EscrowEvent::FundsRefunded { milestone_id, .. } => {
                    *refunds.entry(*milestone_id).or_default() += 1;
                }
                EscrowEvent::RefundIssued {
                    milestone_id,
                    amount,
                    ..
                } => {
                    *card_refunds.entry(*milestone_id).or_default() += 1;
                    let refunded = self
                        .escrow
                        .milestone_balance(*milestone_id)
                        .map(|balance| balance.refunded);
                    prop_assert_eq!(Some(*amount), refunded);
                }
                EscrowEvent::RefundFailed { milestone_id, .. } => {
                    prop_assert!(
                        !card_refunds.contains_key(milestone_id),
                        "an issued card refund failed afterwards"
                    );
                }
                _ => {}
            }
        }
        prop_assert!(
            card_refunds.values().all(|n| *n == 1),
            "a refund reached the card twice"
        );
        let mut total_held = 0_i128;
        let mut owed_to_cards = 0_i128;
        for (index, scheduled) in self.schedule.iter().enumerate() {
            let id = milestone(index);
            let balance = self.escrow.milestone_balance(id);
            prop_assert!(balance.is_some());
            let Some(balance) = balance else {
                continue;
            };
            let held = i128::from(balance.deposited.amount)
                - i128::from(balance.released.amount)
                - i128::from(balance.refunded.amount);
            prop_assert!(held >= 0, "negative held for {:?}: {:?}", id, balance);
            prop_assert_eq!(held, i128::from(balance.held().amount));
            prop_assert!(balance.deposited.amount == 0 || balance.deposited.amount == *scheduled);
            prop_assert!(balance.released.amount >= 0 && balance.refunded.amount >= 0);
            prop_assert!(
                deposits.get(&id).copied().unwrap_or(0) <= 1,
                "deposited twice"
            );
            prop_assert!(
                releases.get(&id).copied().unwrap_or(0) <= 1,
                "released twice"
            );
            prop_assert!(
                refunds.get(&id).copied().unwrap_or(0) <= 1,
                "refunded twice"
            );
            total_held += held;
            if !card_refunds.contains_key(&id) {
                owed_to_cards += i128::from(balance.refunded.amount);
            }
        }
        // What is refunded and not yet back on the card is what `client_refund` holds.
        prop_assert_eq!(
            ledger.get("client_refund").copied().unwrap_or(0),
            owed_to_cards
        );
        // The escrow account of the journal always equals what the balances say is held.
        let escrow_account = format!("escrow:{}", contract_id());
        prop_assert_eq!(
            ledger.get(&escrow_account).copied().unwrap_or(0),
            total_held
        );
        Ok(())
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn any_sequence_of_escrow_commands_keeps_every_balance_invariant(
        schedule in proptest::collection::vec(amount(), 1..=4),
        fee_bps in prop_oneof![0..=10_000_u32, Just(1_000_u32), Just(10_000_u32)],
        steps in proptest::collection::vec(step(), 0..40),
    ) {
        let mut scenario = Scenario::new(schedule, fee_bps);
        for step in steps {
            scenario.take(step)?;
        }
    }

    #[test]
    fn any_settlement_that_does_not_add_up_to_the_held_amount_is_refused(
        held in amount(),
        release in any::<i64>(),
        refund in any::<i64>(),
    ) {
        let mut scenario = Scenario::new(vec![held], 1_000);
        let deposit = scenario.run(EscrowCommand::Deposit {
            milestone_id: milestone(0),
            idempotency_key: "k".to_owned(),
            actor: client(),
            at: at(),
        });
        prop_assert!(deposit.is_ok());
        let freeze = scenario.run(EscrowCommand::Freeze {
            milestone_id: milestone(0),
            actor: Actor::system(),
            at: at(),
        });
        prop_assert!(freeze.is_ok());
        let result = scenario.run(EscrowCommand::Settle {
            milestone_id: milestone(0),
            release: Money::new(release, CURRENCY),
            refund: Money::new(refund, CURRENCY),
            actor: Actor::system(),
            at: at(),
        });
        let valid = release >= 0
            && refund >= 0
            && i128::from(release) + i128::from(refund) == i128::from(held);
        prop_assert_eq!(result.is_ok(), valid);
    }

    #[test]
    fn apply_never_panics_whatever_events_it_is_given(
        events in proptest::collection::vec(arbitrary_event(), 0..30),
    ) {
        let mut escrow = Escrow::default();
        for event in events {
            escrow.apply(event);
        }
        let _ = escrow.balances();
    }
}

fn arbitrary_event() -> impl Strategy<Value = EscrowEvent> {
    let id = (0_usize..5).prop_map(milestone);
    let money = any::<i64>().prop_map(|amount| Money::new(amount, CURRENCY));
    prop_oneof![
        (
            proptest::collection::vec((id.clone(), money.clone()), 0..4),
            0..=20_000_u32
        )
            .prop_map(|(milestones, fee_bps)| EscrowEvent::EscrowOpened {
                contract_id: contract_id(),
                client_id: client().user_id,
                freelancer_id: freelancer_id(),
                currency: CURRENCY,
                milestones: milestones
                    .into_iter()
                    .map(|(milestone_id, amount)| ScheduledMilestone {
                        milestone_id,
                        amount
                    })
                    .collect(),
                fee_bps,
                opened_at: at(),
            }),
        (id.clone(), money.clone()).prop_map(|(milestone_id, amount)| {
            EscrowEvent::FundsDeposited {
                milestone_id,
                amount,
                charge_id: String::new(),
                deposited_at: at(),
            }
        }),
        (id.clone(), money.clone(), money.clone(), money.clone()).prop_map(
            |(milestone_id, gross, fee, net)| EscrowEvent::FundsReleased {
                milestone_id,
                gross,
                fee,
                net,
                released_at: at(),
            }
        ),
        (id.clone(), money.clone()).prop_map(|(milestone_id, amount)| EscrowEvent::FundsFrozen {
            milestone_id,
            amount,
            frozen_at: at(),
        }),
        (id.clone(), money.clone()).prop_map(|(milestone_id, amount)| EscrowEvent::FundsRefunded {
            milestone_id,
            amount,
            refunded_at: at(),
        }),
        Just(EscrowEvent::EscrowClosed {
            reason: EscrowCloseReason::ContractCancelled,
            closed_at: at(),
        }),
        (id.clone(), money.clone()).prop_map(|(milestone_id, amount)| EscrowEvent::RefundIssued {
            milestone_id,
            refund_id: "sim_re_1".to_owned(),
            amount,
            issued_at: at(),
        }),
        id.clone()
            .prop_map(|milestone_id| EscrowEvent::RefundFailed {
                milestone_id,
                reason: "card expired".to_owned(),
                failed_at: at(),
            }),
    ]
}
