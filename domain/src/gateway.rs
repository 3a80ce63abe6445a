//! The payment gateway the escrow charges clients through, and a deterministic simulation of it.
//!
//! A real provider (Stripe Connect, Razorpay) implements [`PaymentGateway`] outside the domain;
//! [`SimulatedGateway`] is the in-memory simulation the domain's unit tests use (the service runs
//! the PostgreSQL-backed one of `gigledger-commands`, which several processes share). Providers
//! must honour the idempotency key: a retried charge with the same key returns the first receipt
//! and never charges twice; once the key is voided, no charge is ever made under it.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::sync::{Mutex, MutexGuard, PoisonError};

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::ids::{ContractId, MilestoneId, UserId};
use crate::money::{Currency, Money};

/// What a charge pays for; providers show or store it as the payment's description.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ChargeReference {
    /// The contract whose escrow receives the funds.
    pub contract_id: ContractId,
    /// The milestone being funded.
    pub milestone_id: MilestoneId,
}

impl fmt::Display for ChargeReference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "contract/{}/milestone/{}",
            self.contract_id, self.milestone_id
        )
    }
}

/// A request to take money from a payer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChargeRequest {
    /// Retries with the same key must not charge again. The escrow derives it from the milestone
    /// and its attempt (`deposit:{contract}:{milestone}:{attempt}`).
    pub idempotency_key: String,
    /// How much to charge.
    pub amount: Money,
    /// Who pays (the contract's client).
    pub payer: UserId,
    /// What the charge is for.
    pub reference: ChargeReference,
}

/// Proof that a charge was taken.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChargeReceipt {
    /// The provider's id for the charge, kept in `FundsDeposited` for reconciliation.
    pub charge_id: String,
}

/// Why a charge was not taken, or not confirmed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GatewayError {
    /// The provider refused the charge (card declined, key reused for a different charge, key
    /// voided, …): nothing was charged, and retrying the same request will not help.
    #[error("the payment was declined: {0}")]
    Declined(String),
    /// The provider could not be reached or failed; retrying later may work. A real provider may
    /// have charged before failing: a retry under the same key meets that charge, and
    /// reconciliation reports one that no retry came for.
    #[error("the payment provider is unavailable: {0}")]
    Unavailable(String),
    /// The provider did not answer in time (raised by the caller's timeout). The charge may still
    /// be made, as for `Unavailable`.
    #[error("the payment provider did not answer in time")]
    Timeout,
    /// The key was voided: nothing is charged under it again. The escrow records the void and
    /// charges the milestone's next attempt under a new key.
    #[error("the charge under this idempotency key was voided; try again")]
    Voided,
}

/// Takes payments. Implementations must be idempotent per `idempotency_key`.
#[async_trait]
pub trait PaymentGateway: Send + Sync {
    /// Charges the payer, or explains why not.
    async fn charge(&self, req: ChargeRequest) -> Result<ChargeReceipt, GatewayError>;

    /// Cancels the charge made under `idempotency_key`, for a charge whose deposit is certainly not
    /// recorded (the escrow recorded `ChargeVoided` for the key first), and refuses every later
    /// charge under the key (`Voided`), so a void that overtakes a slow charge still wins.
    /// Voiding a key with no charge only does the latter; voiding twice changes nothing.
    async fn void(&self, idempotency_key: &str) -> Result<(), GatewayError>;
}

/// How the simulated gateway behaves for the next charges.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GatewayMode {
    /// Charges succeed (and are recorded under their idempotency key).
    #[default]
    Succeed,
    /// Charges fail with `Unavailable` and nothing is recorded.
    Fail,
    /// Charges never answer, so the caller's timeout fires.
    Hang,
}

/// The parts of a request that must match when an idempotency key is reused.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Fingerprint {
    amount: Money,
    payer: UserId,
    reference: ChargeReference,
}

#[derive(Debug, Default)]
struct Ledger {
    mode: GatewayMode,
    /// Live charges by idempotency key.
    charges: HashMap<String, (Fingerprint, ChargeReceipt)>,
    /// Keys voided: never charged again.
    voided_keys: HashSet<String>,
    /// Charge ids handed out so far (ids are never reused, voids included).
    issued: usize,
    /// Charges voided, by id.
    voided: Vec<String>,
}

/// A deterministic in-memory gateway: charge ids are `sim_ch_000001`, `sim_ch_000002`, … in the
/// order charges are first made. It never touches a clock or a runtime.
#[derive(Debug, Default)]
pub struct SimulatedGateway {
    ledger: Mutex<Ledger>,
}

enum Outcome {
    Answer(Result<ChargeReceipt, GatewayError>),
    Hang,
}

impl SimulatedGateway {
    /// A gateway whose charges succeed.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// A gateway in the given mode.
    #[must_use]
    pub fn with_mode(mode: GatewayMode) -> Self {
        let gateway = Self::default();
        gateway.set_mode(mode);
        gateway
    }

    /// Changes how later charges behave.
    pub fn set_mode(&self, mode: GatewayMode) {
        self.ledger().mode = mode;
    }

    /// The current mode.
    #[must_use]
    pub fn mode(&self) -> GatewayMode {
        self.ledger().mode
    }

    /// The ids of the charges voided so far.
    #[must_use]
    pub fn voided(&self) -> Vec<String> {
        self.ledger().voided.clone()
    }

    /// How many distinct charges stand (retries under the same key are not counted, voided
    /// charges are not either).
    #[must_use]
    pub fn charge_count(&self) -> usize {
        self.ledger().charges.len()
    }

    /// The sum of all distinct charges in `currency`, in minor units (`i128`, so no number of
    /// `i64` charges can overflow it).
    #[must_use]
    pub fn charged_total(&self, currency: Currency) -> i128 {
        self.ledger()
            .charges
            .values()
            .filter(|(fingerprint, _)| fingerprint.amount.currency == currency)
            .map(|(fingerprint, _)| i128::from(fingerprint.amount.amount))
            .sum()
    }

    fn ledger(&self) -> MutexGuard<'_, Ledger> {
        // The lock is never held across a panic point, so a poisoned ledger is still consistent.
        self.ledger.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn decide(&self, req: ChargeRequest) -> Outcome {
        let mut ledger = self.ledger();
        match ledger.mode {
            GatewayMode::Hang => Outcome::Hang,
            GatewayMode::Fail => Outcome::Answer(Err(GatewayError::Unavailable(
                "the simulated gateway is set to fail".to_owned(),
            ))),
            GatewayMode::Succeed => {
                let fingerprint = Fingerprint {
                    amount: req.amount,
                    payer: req.payer,
                    reference: req.reference,
                };
                if ledger.voided_keys.contains(&req.idempotency_key) {
                    return Outcome::Answer(Err(GatewayError::Voided));
                }
                if let Some((first, receipt)) = ledger.charges.get(&req.idempotency_key) {
                    return Outcome::Answer(if *first == fingerprint {
                        Ok(receipt.clone())
                    } else {
                        Err(GatewayError::Declined(
                            "the idempotency key was already used for a different charge"
                                .to_owned(),
                        ))
                    });
                }
                ledger.issued = ledger.issued.saturating_add(1);
                let receipt = ChargeReceipt {
                    charge_id: format!("sim_ch_{:06}", ledger.issued),
                };
                ledger
                    .charges
                    .insert(req.idempotency_key, (fingerprint, receipt.clone()));
                Outcome::Answer(Ok(receipt))
            }
        }
    }
}

#[async_trait]
impl PaymentGateway for SimulatedGateway {
    async fn charge(&self, req: ChargeRequest) -> Result<ChargeReceipt, GatewayError> {
        // Decide synchronously so the lock is released before any await.
        match self.decide(req) {
            Outcome::Answer(answer) => answer,
            Outcome::Hang => std::future::pending().await,
        }
    }

    async fn void(&self, idempotency_key: &str) -> Result<(), GatewayError> {
        let mut ledger = self.ledger();
        ledger.voided_keys.insert(idempotency_key.to_owned());
        if let Some((_, receipt)) = ledger.charges.remove(idempotency_key) {
            ledger.voided.push(receipt.charge_id);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn request(key: &str, amount: i64) -> ChargeRequest {
        ChargeRequest {
            idempotency_key: key.to_owned(),
            amount: Money::new(amount, Currency::USD),
            payer: UserId(uuid::Uuid::from_u128(1)),
            reference: ChargeReference {
                contract_id: ContractId(uuid::Uuid::from_u128(2)),
                milestone_id: MilestoneId(uuid::Uuid::from_u128(3)),
            },
        }
    }

    #[tokio::test]
    async fn the_same_idempotency_key_never_charges_twice() {
        let gateway = SimulatedGateway::new();
        let first = gateway.charge(request("key-1", 500)).await;
        let retry = gateway.charge(request("key-1", 500)).await;
        assert_eq!(
            first,
            Ok(ChargeReceipt {
                charge_id: "sim_ch_000001".to_owned()
            })
        );
        assert_eq!(retry, first);
        assert_eq!(gateway.charge_count(), 1);
        assert_eq!(gateway.charged_total(Currency::USD), 500);
    }

    #[tokio::test]
    async fn distinct_keys_are_distinct_charges_with_deterministic_ids() {
        let gateway = SimulatedGateway::new();
        let first = gateway.charge(request("a", 100)).await;
        let second = gateway.charge(request("b", 250)).await;
        assert_eq!(first.map(|r| r.charge_id), Ok("sim_ch_000001".to_owned()));
        assert_eq!(second.map(|r| r.charge_id), Ok("sim_ch_000002".to_owned()));
        assert_eq!(gateway.charge_count(), 2);
        assert_eq!(gateway.charged_total(Currency::USD), 350);
        assert_eq!(gateway.charged_total(Currency::EUR), 0);
    }

    #[tokio::test]
    async fn reusing_a_key_for_a_different_amount_is_declined() {
        let gateway = SimulatedGateway::new();
        let _ = gateway.charge(request("key-1", 500)).await;
        let reused = gateway.charge(request("key-1", 501)).await;
        assert!(matches!(reused, Err(GatewayError::Declined(_))));
        assert_eq!(gateway.charge_count(), 1);
    }

    #[tokio::test]
    async fn a_failing_gateway_charges_nothing_and_a_later_retry_with_the_key_succeeds_once() {
        let gateway = SimulatedGateway::with_mode(GatewayMode::Fail);
        let failed = gateway.charge(request("key-1", 500)).await;
        assert!(matches!(failed, Err(GatewayError::Unavailable(_))));
        assert_eq!(gateway.charge_count(), 0);

        gateway.set_mode(GatewayMode::Succeed);
        assert!(gateway.charge(request("key-1", 500)).await.is_ok());
        assert!(gateway.charge(request("key-1", 500)).await.is_ok());
        assert_eq!(gateway.charge_count(), 1);
    }

    #[tokio::test]
    async fn a_voided_key_is_never_charged_again_even_when_the_void_came_first() {
        let gateway = SimulatedGateway::new();
        let charged = gateway.charge(request("a", 100)).await.unwrap();
        gateway.void("a").await.unwrap();
        gateway.void("a").await.unwrap();
        assert_eq!(gateway.voided(), vec![charged.charge_id]);
        assert_eq!(
            gateway.charge(request("a", 100)).await,
            Err(GatewayError::Voided)
        );
        // A void that overtakes its charge (a timed-out request) still wins.
        gateway.void("b").await.unwrap();
        assert_eq!(
            gateway.charge(request("b", 100)).await,
            Err(GatewayError::Voided)
        );
        assert_eq!(gateway.charge_count(), 0);
        assert_eq!(gateway.charged_total(Currency::USD), 0);
    }

    #[tokio::test]
    async fn a_hanging_gateway_never_answers_so_the_callers_timeout_fires() {
        let gateway = SimulatedGateway::with_mode(GatewayMode::Hang);
        assert_eq!(gateway.mode(), GatewayMode::Hang);
        let answer =
            tokio::time::timeout(Duration::from_millis(20), gateway.charge(request("k", 1))).await;
        assert!(answer.is_err(), "the charge answered: {answer:?}");
        assert_eq!(gateway.charge_count(), 0);
    }
}
