//! The payment gateway: what the platform asks of the payment provider (charge a client, void a
//! charge, onboard a freelancer's payout account, transfer a payout to it, refund a charge), and a
//! deterministic simulation of it.
//!
//! A real provider (Stripe Connect, Razorpay) implements [`PaymentGateway`] outside the domain;
//! [`SimulatedGateway`] is the in-memory simulation the domain's unit tests use (the service runs
//! the PostgreSQL-backed one of `gigledger-commands`, which several processes share). Providers
//! must honour the idempotency key of every money-moving call: a retried charge, transfer or
//! refund with the same key returns the first receipt and never moves money twice; the same key
//! with a different request is declined; once a charge key is voided, no charge is ever made
//! under it. The keys are derived by the platform ([`crate::escrow::charge_key`],
//! [`transfer_key`], [`refund_key`]), never taken from a client's request.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::sync::{Mutex, MutexGuard, PoisonError};

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::ids::{ContractId, MilestoneId, PayoutId, UserId};
use crate::money::{Currency, Money};

/// The provider-side idempotency key of a payout's transfer: `payout:{payout_id}`. One payout,
/// one key, so no retry, second process or crash between the transfer and its event transfers
/// twice.
#[must_use]
pub fn transfer_key(payout_id: PayoutId) -> String {
    format!("payout:{payout_id}")
}

/// The provider-side idempotency key of the card refund for one `FundsRefunded` event:
/// `refund:{event_id}` (the stored event's id).
#[must_use]
pub fn refund_key(funds_refunded_event_id: uuid::Uuid) -> String {
    format!("refund:{funds_refunded_event_id}")
}

/// A payment provider a freelancer can hold a payout account at.
#[derive(
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Serialize,
    Deserialize,
    utoipa::ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Provider {
    /// The simulated provider, which issues and verifies account ids itself.
    Simulated,
    /// Stripe Connect (a connected account).
    Stripe,
    /// Razorpay Route (a linked account).
    Razorpay,
}

impl Provider {
    /// The wire name (`simulated`, `stripe`, `razorpay`).
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Simulated => "simulated",
            Self::Stripe => "stripe",
            Self::Razorpay => "razorpay",
        }
    }
}

impl fmt::Display for Provider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Whether the provider lets an account receive transfers yet.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum AccountStatus {
    /// Registered; the provider has not verified it yet (onboarding not finished).
    #[default]
    Pending,
    /// The provider verified it: payouts can go to it.
    Verified,
}

/// A request to create (or find again) a freelancer's payout account at a provider.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OnboardRequest {
    /// The freelancer.
    pub user: UserId,
    /// Where the account is held.
    pub provider: Provider,
}

/// The provider's answer to onboarding.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OnboardReceipt {
    /// The provider's id for the account; the same on every onboarding of the same user at the
    /// same provider.
    pub account_id: String,
    /// Whether it can receive transfers yet.
    pub status: AccountStatus,
    /// Where the freelancer finishes onboarding, for a real provider (`None` for the simulated
    /// one, which needs no onboarding step from the person).
    pub onboarding_url: Option<String>,
}

/// What a transfer pays out; providers show or store it as the transfer's description.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct TransferReference {
    /// The freelancer whose wallet pays.
    pub user_id: UserId,
    /// The payout.
    pub payout_id: PayoutId,
}

impl fmt::Display for TransferReference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "user/{}/payout/{}", self.user_id, self.payout_id)
    }
}

/// A request to send money from the platform to a payout account.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TransferRequest {
    /// Retries with the same key must not transfer again: [`transfer_key`] of the payout.
    pub idempotency_key: String,
    /// The provider's id of the receiving account.
    pub account_id: String,
    /// How much to send; greater than zero.
    pub amount: Money,
    /// What the transfer pays out.
    pub reference: TransferReference,
}

/// Proof that a transfer was made.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TransferReceipt {
    /// The provider's id for the transfer, kept in `PayoutPaid` for reconciliation.
    pub transfer_id: String,
}

/// A request to give (part of) a charge back to the card it came from.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefundRequest {
    /// Retries with the same key must not refund again: [`refund_key`] of the `FundsRefunded`
    /// event.
    pub idempotency_key: String,
    /// The provider's id of the charge to refund (the deposit's `charge_id`).
    pub charge_id: String,
    /// How much to refund; greater than zero, in the charge's currency. Partial refunds are
    /// allowed; all refunds of a charge together never exceed it.
    pub amount: Money,
}

/// Proof that a refund was made.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefundReceipt {
    /// The provider's id for the refund, kept in `RefundIssued` for reconciliation.
    pub refund_id: String,
}

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

/// Why a charge, transfer, refund or onboarding was not made, or not confirmed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GatewayError {
    /// The provider refused the request (card declined, key reused for a different request,
    /// unknown or unverified account, refund above what is left of the charge, …): nothing was
    /// moved, and retrying the same request will not help.
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

/// Takes payments, pays out and refunds. Implementations must be idempotent per
/// `idempotency_key` (and `onboard` per user and provider).
#[async_trait]
pub trait PaymentGateway: Send + Sync {
    /// Charges the payer, or explains why not.
    async fn charge(&self, req: ChargeRequest) -> Result<ChargeReceipt, GatewayError>;

    /// Cancels the charge made under `idempotency_key`, for a charge whose deposit is certainly not
    /// recorded (the escrow recorded `ChargeVoided` for the key first), and refuses every later
    /// charge under the key (`Voided`), so a void that overtakes a slow charge still wins.
    /// Voiding a key with no charge only does the latter; voiding twice changes nothing.
    async fn void(&self, idempotency_key: &str) -> Result<(), GatewayError>;

    /// Creates the user's payout account at the provider, or answers the one made before (same
    /// account id, current status): onboarding is idempotent per user and provider.
    async fn onboard(&self, req: OnboardRequest) -> Result<OnboardReceipt, GatewayError>;

    /// Sends money to a payout account. The same key answers the first receipt and never
    /// transfers again; the same key with a different account, amount or reference is
    /// `Declined`.
    async fn transfer(&self, req: TransferRequest) -> Result<TransferReceipt, GatewayError>;

    /// Refunds (part of) a charge to its card. The same key answers the first receipt and never
    /// refunds again; the same key with a different charge or amount, an unknown or voided
    /// charge, another currency, or more than is left of the charge is `Declined`.
    async fn refund(&self, req: RefundRequest) -> Result<RefundReceipt, GatewayError>;
}

/// How the simulated gateway behaves for the next charges, onboardings, transfers and refunds
/// (voids always succeed).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GatewayMode {
    /// Calls succeed (and are recorded under their idempotency key), unless declined.
    #[default]
    Succeed,
    /// Calls fail with `Unavailable` and nothing is recorded.
    Fail,
    /// Calls never answer, so the caller's timeout fires.
    Hang,
}

/// The parts of a request that must match when an idempotency key is reused.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Fingerprint {
    amount: Money,
    payer: UserId,
    reference: ChargeReference,
}

/// One payout account the simulation issued.
#[derive(Clone, Debug)]
struct SimAccount {
    user: UserId,
    provider: Provider,
    status: AccountStatus,
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
    /// Payout accounts by id.
    accounts: HashMap<String, SimAccount>,
    /// Transfers by idempotency key.
    transfers: HashMap<String, (TransferRequest, TransferReceipt)>,
    /// Refunds by idempotency key.
    refunds: HashMap<String, (RefundRequest, RefundReceipt)>,
}

/// A deterministic in-memory gateway: charge ids are `sim_ch_000001`, `sim_ch_000002`, … in the
/// order charges are first made; accounts are `sim_acct_…`, transfers `sim_tr_…` and refunds
/// `sim_re_…`, numbered the same way. Accounts start pending and are verified by
/// [`SimulatedGateway::verify_account`] (what a provider's notice would report); transfers go
/// only to verified accounts it issued. It never touches a clock or a runtime.
#[derive(Debug, Default)]
pub struct SimulatedGateway {
    ledger: Mutex<Ledger>,
}

enum Outcome<T> {
    Answer(Result<T, GatewayError>),
    Hang,
}

impl<T> Outcome<T> {
    async fn answer(self) -> Result<T, GatewayError> {
        match self {
            Self::Answer(answer) => answer,
            Self::Hang => std::future::pending().await,
        }
    }
}

fn declined<T>(why: &str) -> Outcome<T> {
    Outcome::Answer(Err(GatewayError::Declined(why.to_owned())))
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

    fn decide(&self, req: ChargeRequest) -> Outcome<ChargeReceipt> {
        let mut ledger = self.ledger();
        match ledger.mode {
            GatewayMode::Hang => Outcome::Hang,
            GatewayMode::Fail => unavailable(),
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
        self.decide(req).answer().await
    }

    async fn void(&self, idempotency_key: &str) -> Result<(), GatewayError> {
        let mut ledger = self.ledger();
        ledger.voided_keys.insert(idempotency_key.to_owned());
        if let Some((_, receipt)) = ledger.charges.remove(idempotency_key) {
            ledger.voided.push(receipt.charge_id);
        }
        Ok(())
    }

    async fn onboard(&self, req: OnboardRequest) -> Result<OnboardReceipt, GatewayError> {
        self.decide_onboard(req).answer().await
    }

    async fn transfer(&self, req: TransferRequest) -> Result<TransferReceipt, GatewayError> {
        self.decide_transfer(req).answer().await
    }

    async fn refund(&self, req: RefundRequest) -> Result<RefundReceipt, GatewayError> {
        self.decide_refund(req).answer().await
    }
}

fn unavailable<T>() -> Outcome<T> {
    Outcome::Answer(Err(GatewayError::Unavailable(
        "the simulated gateway is set to fail".to_owned(),
    )))
}

/// The id after `issued` others of its kind: `{prefix}_000001`, ….
fn sim_id(prefix: &str, issued: usize) -> String {
    format!("{prefix}_{:06}", issued.saturating_add(1))
}

impl SimulatedGateway {
    /// Marks an account it issued verified, as the provider's "account verified" notice would
    /// report; `false` for an id it never issued.
    pub fn verify_account(&self, account_id: &str) -> bool {
        self.ledger()
            .accounts
            .get_mut(account_id)
            .map(|account| account.status = AccountStatus::Verified)
            .is_some()
    }

    /// An issued account's status.
    #[must_use]
    pub fn account_status(&self, account_id: &str) -> Option<AccountStatus> {
        self.ledger()
            .accounts
            .get(account_id)
            .map(|account| account.status)
    }

    /// How many distinct transfers were made (retries under the same key are not counted).
    #[must_use]
    pub fn transfer_count(&self) -> usize {
        self.ledger().transfers.len()
    }

    /// The sum of all distinct transfers in `currency`, in minor units.
    #[must_use]
    pub fn transferred_total(&self, currency: Currency) -> i128 {
        self.ledger()
            .transfers
            .values()
            .filter(|(req, _)| req.amount.currency == currency)
            .map(|(req, _)| i128::from(req.amount.amount))
            .sum()
    }

    /// How many distinct refunds were made (retries under the same key are not counted).
    #[must_use]
    pub fn refund_count(&self) -> usize {
        self.ledger().refunds.len()
    }

    /// The sum of all distinct refunds in `currency`, in minor units.
    #[must_use]
    pub fn refunded_total(&self, currency: Currency) -> i128 {
        self.ledger()
            .refunds
            .values()
            .filter(|(req, _)| req.amount.currency == currency)
            .map(|(req, _)| i128::from(req.amount.amount))
            .sum()
    }

    fn decide_onboard(&self, req: OnboardRequest) -> Outcome<OnboardReceipt> {
        let mut ledger = self.ledger();
        match ledger.mode {
            GatewayMode::Hang => return Outcome::Hang,
            GatewayMode::Fail => return unavailable(),
            GatewayMode::Succeed => {}
        }
        let existing = ledger
            .accounts
            .iter()
            .find(|(_, account)| account.user == req.user && account.provider == req.provider)
            .map(|(id, account)| (id.clone(), account.status));
        let (account_id, status) = existing.unwrap_or_else(|| {
            // Accounts are never removed, so the count numbers them.
            let id = sim_id("sim_acct", ledger.accounts.len());
            let account = SimAccount {
                user: req.user,
                provider: req.provider,
                status: AccountStatus::Pending,
            };
            ledger.accounts.insert(id.clone(), account);
            (id, AccountStatus::Pending)
        });
        Outcome::Answer(Ok(OnboardReceipt {
            account_id,
            status,
            onboarding_url: None,
        }))
    }

    fn decide_transfer(&self, req: TransferRequest) -> Outcome<TransferReceipt> {
        let mut ledger = self.ledger();
        match ledger.mode {
            GatewayMode::Hang => return Outcome::Hang,
            GatewayMode::Fail => return unavailable(),
            GatewayMode::Succeed => {}
        }
        if let Some((first, receipt)) = ledger.transfers.get(&req.idempotency_key) {
            return if *first == req {
                Outcome::Answer(Ok(receipt.clone()))
            } else {
                declined("the idempotency key was already used for a different transfer")
            };
        }
        if !req.amount.is_positive() {
            return declined("a transfer must be of a positive amount");
        }
        match ledger.accounts.get(&req.account_id) {
            None => return declined("no such payout account"),
            Some(account) if account.status != AccountStatus::Verified => {
                return declined("the payout account is not verified");
            }
            Some(_) => {}
        }
        let receipt = TransferReceipt {
            // Transfers are never removed, so the count numbers them.
            transfer_id: sim_id("sim_tr", ledger.transfers.len()),
        };
        ledger
            .transfers
            .insert(req.idempotency_key.clone(), (req, receipt.clone()));
        Outcome::Answer(Ok(receipt))
    }

    fn decide_refund(&self, req: RefundRequest) -> Outcome<RefundReceipt> {
        let mut ledger = self.ledger();
        match ledger.mode {
            GatewayMode::Hang => return Outcome::Hang,
            GatewayMode::Fail => return unavailable(),
            GatewayMode::Succeed => {}
        }
        if let Some((first, receipt)) = ledger.refunds.get(&req.idempotency_key) {
            return if *first == req {
                Outcome::Answer(Ok(receipt.clone()))
            } else {
                declined("the idempotency key was already used for a different refund")
            };
        }
        // Voided charges are no longer in `charges`, so they cannot be refunded either.
        let Some(charged) = ledger
            .charges
            .values()
            .find(|(_, receipt)| receipt.charge_id == req.charge_id)
            .map(|(fingerprint, _)| fingerprint.amount)
        else {
            return declined("no such charge");
        };
        if req.amount.currency != charged.currency {
            return declined("a refund is in the charge's currency");
        }
        if !req.amount.is_positive() {
            return declined("a refund must be of a positive amount");
        }
        let refunded_before: i128 = ledger
            .refunds
            .values()
            .filter(|(earlier, _)| earlier.charge_id == req.charge_id)
            .map(|(earlier, _)| i128::from(earlier.amount.amount))
            .sum();
        if refunded_before + i128::from(req.amount.amount) > i128::from(charged.amount) {
            return declined("the refunds would exceed the charge");
        }
        let receipt = RefundReceipt {
            refund_id: sim_id("sim_re", ledger.refunds.len()),
        };
        ledger
            .refunds
            .insert(req.idempotency_key.clone(), (req, receipt.clone()));
        Outcome::Answer(Ok(receipt))
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

    fn onboard(user: u128) -> OnboardRequest {
        OnboardRequest {
            user: UserId(uuid::Uuid::from_u128(user)),
            provider: Provider::Simulated,
        }
    }

    fn transfer(key: &str, account_id: &str, amount: i64) -> TransferRequest {
        TransferRequest {
            idempotency_key: key.to_owned(),
            account_id: account_id.to_owned(),
            amount: Money::new(amount, Currency::USD),
            reference: TransferReference {
                user_id: UserId(uuid::Uuid::from_u128(2)),
                payout_id: PayoutId(uuid::Uuid::from_u128(7)),
            },
        }
    }

    fn refund(key: &str, charge_id: &str, amount: i64) -> RefundRequest {
        RefundRequest {
            idempotency_key: key.to_owned(),
            charge_id: charge_id.to_owned(),
            amount: Money::new(amount, Currency::USD),
        }
    }

    /// A gateway with one verified account, `sim_acct_000001`.
    async fn with_verified_account() -> SimulatedGateway {
        let gateway = SimulatedGateway::new();
        let account = gateway.onboard(onboard(2)).await.unwrap();
        assert!(gateway.verify_account(&account.account_id));
        gateway
    }

    #[tokio::test]
    async fn onboarding_is_idempotent_per_user_and_provider_and_starts_pending() {
        let gateway = SimulatedGateway::new();
        let first = gateway.onboard(onboard(2)).await.unwrap();
        assert_eq!(
            first,
            OnboardReceipt {
                account_id: "sim_acct_000001".to_owned(),
                status: AccountStatus::Pending,
                onboarding_url: None,
            }
        );
        assert_eq!(gateway.onboard(onboard(2)).await, Ok(first.clone()));
        let elsewhere = OnboardRequest {
            provider: Provider::Stripe,
            ..onboard(2)
        };
        let other = gateway.onboard(elsewhere).await.unwrap();
        assert_eq!(other.account_id, "sim_acct_000002");
        let someone_else = gateway.onboard(onboard(3)).await.unwrap();
        assert_eq!(someone_else.account_id, "sim_acct_000003");

        assert!(gateway.verify_account(&first.account_id));
        assert!(!gateway.verify_account("sim_acct_999999"));
        let again = gateway.onboard(onboard(2)).await.unwrap();
        assert_eq!(
            (again.account_id, again.status),
            (first.account_id, AccountStatus::Verified)
        );
    }

    #[tokio::test]
    async fn the_same_transfer_key_never_transfers_twice() {
        let gateway = with_verified_account().await;
        let first = gateway
            .transfer(transfer("payout:1", "sim_acct_000001", 1_500))
            .await;
        let retry = gateway
            .transfer(transfer("payout:1", "sim_acct_000001", 1_500))
            .await;
        assert_eq!(
            first,
            Ok(TransferReceipt {
                transfer_id: "sim_tr_000001".to_owned()
            })
        );
        assert_eq!(retry, first);
        let second = gateway
            .transfer(transfer("payout:2", "sim_acct_000001", 500))
            .await;
        assert_eq!(
            second.map(|r| r.transfer_id),
            Ok("sim_tr_000002".to_owned())
        );
        assert_eq!(gateway.transfer_count(), 2);
        assert_eq!(gateway.transferred_total(Currency::USD), 2_000);
        assert_eq!(gateway.transferred_total(Currency::EUR), 0);
    }

    #[tokio::test]
    async fn a_reused_transfer_key_with_another_amount_or_account_is_declined() {
        let gateway = with_verified_account().await;
        let other = gateway.onboard(onboard(3)).await.unwrap();
        gateway.verify_account(&other.account_id);
        assert!(gateway
            .transfer(transfer("payout:1", "sim_acct_000001", 1_500))
            .await
            .is_ok());
        for reused in [
            transfer("payout:1", "sim_acct_000001", 1_501),
            transfer("payout:1", &other.account_id, 1_500),
        ] {
            assert!(matches!(
                gateway.transfer(reused).await,
                Err(GatewayError::Declined(_))
            ));
        }
        assert_eq!(gateway.transfer_count(), 1);
        assert_eq!(gateway.transferred_total(Currency::USD), 1_500);
    }

    #[tokio::test]
    async fn transfers_go_only_to_verified_accounts_it_issued_and_move_a_positive_amount() {
        let gateway = SimulatedGateway::new();
        let pending = gateway.onboard(onboard(2)).await.unwrap();
        for refused in [
            transfer("a", &pending.account_id, 1_000),
            transfer("b", "acct_unknown", 1_000),
        ] {
            assert!(matches!(
                gateway.transfer(refused).await,
                Err(GatewayError::Declined(_))
            ));
        }
        gateway.verify_account(&pending.account_id);
        for amount in [0, -5] {
            assert!(matches!(
                gateway
                    .transfer(transfer("c", &pending.account_id, amount))
                    .await,
                Err(GatewayError::Declined(_))
            ));
        }
        // A declined request records nothing: the key is still free.
        assert!(gateway
            .transfer(transfer("a", &pending.account_id, 1_000))
            .await
            .is_ok());
        assert_eq!(gateway.transfer_count(), 1);
    }

    #[tokio::test]
    async fn a_charge_is_refunded_in_parts_never_beyond_what_was_charged() {
        let gateway = SimulatedGateway::new();
        let charge = gateway.charge(request("deposit", 1_000)).await.unwrap();
        let first = gateway
            .refund(refund("refund:1", &charge.charge_id, 600))
            .await;
        assert_eq!(
            first,
            Ok(RefundReceipt {
                refund_id: "sim_re_000001".to_owned()
            })
        );
        // The same key answers the first refund, even though only 400 are left.
        assert_eq!(
            gateway
                .refund(refund("refund:1", &charge.charge_id, 600))
                .await,
            first
        );
        assert!(matches!(
            gateway
                .refund(refund("refund:2", &charge.charge_id, 401))
                .await,
            Err(GatewayError::Declined(_))
        ));
        let rest = gateway
            .refund(refund("refund:2", &charge.charge_id, 400))
            .await;
        assert_eq!(rest.map(|r| r.refund_id), Ok("sim_re_000002".to_owned()));
        assert!(matches!(
            gateway
                .refund(refund("refund:3", &charge.charge_id, 1))
                .await,
            Err(GatewayError::Declined(_))
        ));
        assert_eq!(gateway.refund_count(), 2);
        assert_eq!(gateway.refunded_total(Currency::USD), 1_000);
        // Charges are unchanged by refunds.
        assert_eq!(gateway.charged_total(Currency::USD), 1_000);
    }

    #[tokio::test]
    async fn a_refund_of_an_unknown_or_voided_charge_another_currency_or_a_reused_key_is_declined()
    {
        let gateway = SimulatedGateway::new();
        let charge = gateway.charge(request("deposit", 1_000)).await.unwrap();
        let voided = gateway.charge(request("voided", 1_000)).await.unwrap();
        gateway.void("voided").await.unwrap();
        assert!(gateway
            .refund(refund("refund:1", &charge.charge_id, 100))
            .await
            .is_ok());
        let in_euros = RefundRequest {
            amount: Money::new(100, Currency::EUR),
            ..refund("refund:2", &charge.charge_id, 100)
        };
        for refused in [
            refund("refund:3", "sim_ch_999999", 100),
            refund("refund:4", &voided.charge_id, 100),
            in_euros,
            refund("refund:5", &charge.charge_id, 0),
            refund("refund:1", &charge.charge_id, 101),
        ] {
            assert!(
                matches!(
                    gateway.refund(refused.clone()).await,
                    Err(GatewayError::Declined(_))
                ),
                "{refused:?} was not declined"
            );
        }
        assert_eq!(gateway.refund_count(), 1);
    }

    #[tokio::test]
    async fn a_failing_gateway_onboards_transfers_and_refunds_nothing() {
        let gateway = with_verified_account().await;
        let charge = gateway.charge(request("deposit", 1_000)).await.unwrap();
        gateway.set_mode(GatewayMode::Fail);
        assert!(matches!(
            gateway.onboard(onboard(5)).await,
            Err(GatewayError::Unavailable(_))
        ));
        assert!(matches!(
            gateway
                .transfer(transfer("payout:1", "sim_acct_000001", 1_000))
                .await,
            Err(GatewayError::Unavailable(_))
        ));
        assert!(matches!(
            gateway
                .refund(refund("refund:1", &charge.charge_id, 1_000))
                .await,
            Err(GatewayError::Unavailable(_))
        ));
        assert_eq!(gateway.transfer_count(), 0);
        assert_eq!(gateway.refund_count(), 0);

        // A retry under the same keys once the provider is back moves the money once.
        gateway.set_mode(GatewayMode::Succeed);
        for _ in 0..2 {
            assert!(gateway
                .transfer(transfer("payout:1", "sim_acct_000001", 1_000))
                .await
                .is_ok());
            assert!(gateway
                .refund(refund("refund:1", &charge.charge_id, 1_000))
                .await
                .is_ok());
        }
        assert_eq!((gateway.transfer_count(), gateway.refund_count()), (1, 1));
        assert_eq!(
            gateway.onboard(onboard(5)).await.map(|r| r.account_id),
            Ok("sim_acct_000002".to_owned())
        );
    }

    #[tokio::test]
    async fn a_hanging_gateway_never_answers_an_onboarding_transfer_or_refund() {
        let gateway = with_verified_account().await;
        let charge = gateway.charge(request("deposit", 1_000)).await.unwrap();
        gateway.set_mode(GatewayMode::Hang);
        let wait = Duration::from_millis(20);
        assert!(tokio::time::timeout(wait, gateway.onboard(onboard(5)))
            .await
            .is_err());
        let sent = gateway.transfer(transfer("payout:1", "sim_acct_000001", 1_000));
        assert!(tokio::time::timeout(wait, sent).await.is_err());
        let refunded = gateway.refund(refund("refund:1", &charge.charge_id, 1_000));
        assert!(tokio::time::timeout(wait, refunded).await.is_err());
        assert_eq!((gateway.transfer_count(), gateway.refund_count()), (0, 0));
        assert_eq!(gateway.account_status("sim_acct_000002"), None);
    }

    #[test]
    fn the_derived_keys_name_the_payout_and_the_refund_event() {
        let payout = PayoutId(uuid::Uuid::from_u128(7));
        assert_eq!(transfer_key(payout), format!("payout:{payout}"));
        let event = uuid::Uuid::from_u128(8);
        assert_eq!(refund_key(event), format!("refund:{event}"));
        let reference = TransferReference {
            user_id: UserId(uuid::Uuid::from_u128(2)),
            payout_id: payout,
        };
        assert_eq!(
            reference.to_string(),
            format!("user/{}/payout/{payout}", reference.user_id)
        );
        assert_eq!(Provider::Razorpay.to_string(), "razorpay");
        assert_eq!(
            serde_json::to_value(Provider::Simulated).ok(),
            Some(serde_json::json!("simulated"))
        );
        assert_eq!(
            serde_json::to_value(AccountStatus::Verified).ok(),
            Some(serde_json::json!("verified"))
        );
    }
}
