//! Property tests of the wallet's money rules, through the public API only: for any sequence of
//! commands, per currency everything credited is exactly `available + pending + paid_out`, no
//! balance is ever negative, a payout is paid at most once and fails at most once (and is never
//! paid after failing), every journal entry balances and agrees with the balances, and a refused
//! command writes nothing.

use std::collections::HashMap;

use chrono::{DateTime, TimeZone, Utc};
use cqrs_es::event_sink::EventSink;
use cqrs_es::Aggregate;
use gigledger_domain::{
    minimum_payout, Actor, ContractId, Currency, MilestoneId, Money, PayoutId, Provider, Role,
    UserId, Wallet, WalletCommand, WalletError, WalletEvent, MAX_AMOUNT,
};
use proptest::prelude::*;
use uuid::Uuid;

const CURRENCIES: [Currency; 3] = [Currency::USD, Currency::JPY, Currency::KWD];
const PROVIDERS: [Provider; 2] = [Provider::Simulated, Provider::Stripe];

fn at() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2025, 3, 1, 12, 0, 0).unwrap()
}

fn freelancer() -> Actor {
    Actor::new(UserId(Uuid::from_u128(2)), vec![Role::Freelancer])
}

fn account(index: u8) -> String {
    format!("acct_{}", index % 2)
}

fn payout_id(index: u8) -> PayoutId {
    PayoutId(Uuid::from_u128(600 + u128::from(index % 4)))
}

/// A step a random scenario may take. Small index ranges make repeats (the same release, payout
/// or account again) common.
#[derive(Clone, Debug)]
enum Step {
    Register {
        provider: usize,
        account: u8,
    },
    Verify {
        account: u8,
    },
    Credit {
        release: u8,
        currency: usize,
        net: i64,
    },
    Request {
        payout: u8,
        currency: usize,
        amount: i64,
    },
    MarkPaid {
        payout: u8,
        transfer: u8,
    },
    MarkFailed {
        payout: u8,
    },
}

/// Credits the domain accepts and a few it refuses.
fn net() -> impl Strategy<Value = i64> {
    prop_oneof![
        4 => 1..=1_000_000_i64,
        1 => 1..=MAX_AMOUNT,
        1 => Just(MAX_AMOUNT),
        1 => any::<i64>(),
    ]
}

/// Payout amounts around the minimums and the balances, and any at all.
fn amount() -> impl Strategy<Value = i64> {
    prop_oneof![
        4 => 0..=500_000_i64,
        1 => 9..=10_001_i64,
        1 => any::<i64>(),
    ]
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        1 => (0..PROVIDERS.len(), any::<u8>())
            .prop_map(|(provider, account)| Step::Register { provider, account }),
        2 => any::<u8>().prop_map(|account| Step::Verify { account }),
        3 => (0_u8..6, 0..CURRENCIES.len(), net())
            .prop_map(|(release, currency, net)| Step::Credit { release, currency, net }),
        4 => (any::<u8>(), 0..CURRENCIES.len(), amount())
            .prop_map(|(payout, currency, amount)| Step::Request { payout, currency, amount }),
        2 => (any::<u8>(), 0_u8..2)
            .prop_map(|(payout, transfer)| Step::MarkPaid { payout, transfer }),
        2 => any::<u8>().prop_map(|payout| Step::MarkFailed { payout }),
    ]
}

struct Scenario {
    wallet: Wallet,
    runtime: tokio::runtime::Runtime,
    written: Vec<WalletEvent>,
}

impl Scenario {
    fn new() -> Self {
        Self {
            wallet: Wallet::default(),
            runtime: tokio::runtime::Builder::new_current_thread()
                .build()
                .unwrap(),
            written: Vec::new(),
        }
    }

    /// Runs a command the way the framework does: a refusal discards the attempt entirely.
    fn run(&mut self, command: WalletCommand) -> Result<Vec<WalletEvent>, WalletError> {
        let mut attempt = self.wallet.clone();
        let sink = EventSink::<Wallet>::default();
        let result = self.runtime.block_on(attempt.handle(command, &(), &sink));
        let events = self.runtime.block_on(sink.collect());
        match result {
            Ok(()) => {
                self.wallet = attempt;
                self.written.extend(events.iter().cloned());
                Ok(events)
            }
            Err(error) => {
                assert!(events.is_empty(), "a refused command wrote {events:?}");
                Err(error)
            }
        }
    }

    fn take(&mut self, step: Step) -> Result<(), TestCaseError> {
        let system = Actor::system;
        match step {
            Step::Register {
                provider,
                account: a,
            } => {
                let _ = self.run(WalletCommand::RegisterPayoutAccount {
                    provider: PROVIDERS[provider],
                    account_id: account(a),
                    actor: freelancer(),
                    at: at(),
                });
            }
            Step::Verify { account: a } => {
                let _ = self.run(WalletCommand::VerifyPayoutAccount {
                    account_id: account(a),
                    actor: system(),
                    at: at(),
                });
            }
            Step::Credit {
                release,
                currency,
                net,
            } => {
                let _ = self.run(WalletCommand::CreditEarnings {
                    freelancer_id: freelancer().user_id,
                    release_event_id: Uuid::from_u128(700 + u128::from(release)),
                    contract_id: ContractId(Uuid::from_u128(300)),
                    milestone_id: MilestoneId(Uuid::from_u128(400 + u128::from(release))),
                    net: Money::new(net, CURRENCIES[currency]),
                    actor: system(),
                    at: at(),
                });
            }
            Step::Request {
                payout,
                currency,
                amount,
            } => {
                let currency = CURRENCIES[currency];
                let available = self.wallet.balance(currency).available.amount;
                let is_new = self.wallet.payout(payout_id(payout)).is_none();
                let result = self.run(WalletCommand::RequestPayout {
                    payout_id: payout_id(payout),
                    amount: Money::new(amount, currency),
                    actor: freelancer(),
                    at: at(),
                });
                if is_new && amount > available {
                    prop_assert!(result.is_err(), "a payout above the available balance");
                }
                if is_new && amount < minimum_payout(currency).amount {
                    prop_assert!(result.is_err(), "a payout below the minimum");
                }
            }
            Step::MarkPaid { payout, transfer } => {
                let _ = self.run(WalletCommand::MarkPayoutPaid {
                    payout_id: payout_id(payout),
                    transfer_id: format!("tr_{transfer}"),
                    actor: system(),
                    at: at(),
                });
            }
            Step::MarkFailed { payout } => {
                let _ = self.run(WalletCommand::MarkPayoutFailed {
                    payout_id: payout_id(payout),
                    reason: "account closed".to_owned(),
                    actor: system(),
                    at: at(),
                });
            }
        }
        self.check_invariants()
    }

    fn check_invariants(&self) -> Result<(), TestCaseError> {
        let freelancer = freelancer().user_id;
        let payable = format!("freelancer_payable:{freelancer}");
        let mut credits: HashMap<Currency, i128> = HashMap::new();
        let mut paid: HashMap<PayoutId, usize> = HashMap::new();
        let mut failed: HashMap<PayoutId, usize> = HashMap::new();
        let mut ledger: HashMap<(String, Currency), i128> = HashMap::new();
        for event in &self.written {
            let lines = event.journal_lines(freelancer);
            let sum: i128 = lines.iter().map(|line| i128::from(line.amount)).sum();
            prop_assert_eq!(sum, 0, "unbalanced journal entry for {:?}", event);
            for line in lines {
                *ledger.entry((line.account, line.currency)).or_default() +=
                    i128::from(line.amount);
            }
            match event {
                WalletEvent::EarningsCredited { net, .. } => {
                    prop_assert!(net.is_positive());
                    *credits.entry(net.currency).or_default() += i128::from(net.amount);
                }
                WalletEvent::PayoutPaid { payout_id, .. } => {
                    prop_assert!(!failed.contains_key(payout_id), "a failed payout was paid");
                    *paid.entry(*payout_id).or_default() += 1;
                }
                WalletEvent::PayoutFailed { payout_id, .. } => {
                    *failed.entry(*payout_id).or_default() += 1;
                }
                _ => {}
            }
        }
        prop_assert!(paid.values().all(|n| *n == 1), "a payout paid twice");
        prop_assert!(failed.values().all(|n| *n == 1), "a payout failed twice");
        for currency in CURRENCIES {
            let balance = self.wallet.balance(currency);
            let credited = credits.get(&currency).copied().unwrap_or(0);
            let (available, pending, paid_out) = (
                i128::from(balance.available.amount),
                i128::from(balance.pending.amount),
                i128::from(balance.paid_out.amount),
            );
            prop_assert!(
                available >= 0 && pending >= 0 && paid_out >= 0,
                "{:?}",
                balance
            );
            prop_assert_eq!(credited, available + pending + paid_out, "{:?}", balance);
            prop_assert_eq!(credited, i128::from(balance.credited.amount));
            // The journal agrees: what was paid out left the freelancer's payable (which the
            // releases credited) for payouts_sent.
            let sent = ledger
                .get(&("payouts_sent".to_owned(), currency))
                .copied()
                .unwrap_or(0);
            prop_assert_eq!(sent, paid_out);
            let payable_moved = ledger
                .get(&(payable.clone(), currency))
                .copied()
                .unwrap_or(0);
            prop_assert_eq!(credited + payable_moved, available + pending);
        }
        Ok(())
    }
}

fn ready(scenario: &mut Scenario, earnings: &[i64]) -> Result<(), TestCaseError> {
    let registered = scenario.run(WalletCommand::RegisterPayoutAccount {
        provider: Provider::Simulated,
        account_id: "acct_0".to_owned(),
        actor: freelancer(),
        at: at(),
    });
    prop_assert!(registered.is_ok());
    let verified = scenario.run(WalletCommand::VerifyPayoutAccount {
        account_id: "acct_0".to_owned(),
        actor: Actor::system(),
        at: at(),
    });
    prop_assert!(verified.is_ok());
    for (n, net) in earnings.iter().enumerate() {
        let credited = scenario.run(WalletCommand::CreditEarnings {
            freelancer_id: freelancer().user_id,
            release_event_id: Uuid::from_u128(900 + n as u128),
            contract_id: ContractId(Uuid::from_u128(300)),
            milestone_id: MilestoneId(Uuid::from_u128(400)),
            net: Money::new(*net, Currency::USD),
            actor: Actor::system(),
            at: at(),
        });
        prop_assert!(credited.is_ok());
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn any_sequence_of_wallet_commands_keeps_credits_equal_to_the_balances(
        steps in proptest::collection::vec(step(), 0..60),
    ) {
        let mut scenario = Scenario::new();
        for step in steps {
            scenario.take(step)?;
        }
    }

    #[test]
    fn any_sequence_of_payout_requests_never_takes_more_than_was_credited(
        earnings in proptest::collection::vec(1..=100_000_i64, 1..4),
        requests in proptest::collection::vec(1_000..=60_000_i64, 1..20),
    ) {
        let mut scenario = Scenario::new();
        ready(&mut scenario, &earnings)?;
        let credited: i64 = earnings.iter().sum();
        let mut accepted = 0_i64;
        for (n, amount) in requests.iter().enumerate() {
            let result = scenario.run(WalletCommand::RequestPayout {
                payout_id: PayoutId(Uuid::from_u128(600 + n as u128)),
                amount: Money::new(*amount, Currency::USD),
                actor: freelancer(),
                at: at(),
            });
            let fits = accepted + amount <= credited;
            prop_assert_eq!(result.is_ok(), fits, "{} after {} of {}", amount, accepted, credited);
            if fits {
                accepted += amount;
            }
        }
        let balance = scenario.wallet.balance(Currency::USD);
        prop_assert_eq!(balance.pending.amount, accepted);
        prop_assert_eq!(balance.available.amount, credited - accepted);
        scenario.check_invariants()?;
    }

    #[test]
    fn apply_never_panics_whatever_events_it_is_given(
        events in proptest::collection::vec(arbitrary_event(), 0..30),
    ) {
        let mut wallet = Wallet::default();
        for event in events {
            wallet.apply(event);
        }
        let _ = wallet.balances();
        let _ = wallet.payouts();
    }
}

fn arbitrary_event() -> impl Strategy<Value = WalletEvent> {
    let money = (any::<i64>(), 0..CURRENCIES.len())
        .prop_map(|(amount, currency)| Money::new(amount, CURRENCIES[currency]));
    let payout = any::<u8>().prop_map(payout_id);
    prop_oneof![
        (0..PROVIDERS.len(), any::<u8>()).prop_map(|(provider, a)| {
            WalletEvent::PayoutAccountRegistered {
                freelancer_id: freelancer().user_id,
                provider: PROVIDERS[provider],
                account_id: account(a),
                registered_at: at(),
            }
        }),
        (0..PROVIDERS.len(), any::<u8>()).prop_map(|(provider, a)| {
            WalletEvent::PayoutAccountVerified {
                provider: PROVIDERS[provider],
                account_id: account(a),
                verified_at: at(),
            }
        }),
        (any::<u8>(), money.clone()).prop_map(|(release, net)| WalletEvent::EarningsCredited {
            freelancer_id: freelancer().user_id,
            release_event_id: Uuid::from_u128(u128::from(release)),
            contract_id: ContractId(Uuid::from_u128(300)),
            milestone_id: MilestoneId(Uuid::from_u128(400)),
            net,
            credited_at: at(),
        }),
        (payout.clone(), money.clone()).prop_map(|(payout_id, amount)| {
            WalletEvent::PayoutRequested {
                payout_id,
                amount,
                account_id: account(0),
                provider: Provider::Simulated,
                requested_at: at(),
            }
        }),
        (payout.clone(), money.clone()).prop_map(|(payout_id, amount)| WalletEvent::PayoutPaid {
            payout_id,
            amount,
            transfer_id: "tr".to_owned(),
            paid_at: at(),
        }),
        (payout, money, any::<bool>()).prop_map(|(payout_id, amount, was_paid)| {
            WalletEvent::PayoutFailed {
                payout_id,
                amount,
                reason: "r".to_owned(),
                was_paid,
                failed_at: at(),
            }
        }),
    ]
}
