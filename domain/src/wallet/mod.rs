//! The wallet aggregate: a freelancer's earnings and payouts (stream id = the freelancer's user
//! id).
//!
//! Money released to a freelancer is owed to them until it is paid out to an account they hold at
//! the payment provider. Per currency the wallet keeps `available`, `pending` (requested, not yet
//! paid) and `paid_out`, and what was ever credited; `credited = available + pending + paid_out`
//! always, and no balance is ever negative. These invariants are checked in `handle` against
//! every event before it is written (on a copy, so a refusal writes nothing), and sums are
//! checked arithmetic: a credit that would overflow is refused, never wrapped. `apply` then only
//! records and cannot fail.
//!
//! Nothing here calls the provider: the service onboards the account before
//! `RegisterPayoutAccount`, and a process manager makes the transfer after `PayoutRequested`
//! (under the payout's own key, [`crate::gateway::transfer_key`]) and sends `MarkPayoutPaid` or
//! `MarkPayoutFailed` ([`crate::process`]).
//!
//! A wallet has no opening event: the first `PayoutAccountRegistered` or `EarningsCredited`
//! opens it, and both name the freelancer, so the wallet always knows whose it is.

mod commands;
mod errors;
mod events;

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};
use cqrs_es::event_sink::EventSink;
use cqrs_es::Aggregate;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

pub use commands::WalletCommand;
pub use errors::WalletError;
pub use events::WalletEvent;

use crate::actor::{ActingAs, Actor, Authorise, Role};
use crate::gateway::{AccountStatus, Provider};
use crate::ids::{ContractId, MilestoneId, PayoutId, UserId};
use crate::money::{Currency, Money, MAX_AMOUNT};
use crate::snapshot::SnapshotSchema;
use crate::validate::trimmed_within;

/// Longest payout account id or transfer id accepted, in characters.
pub const MAX_PROVIDER_ID_CHARS: usize = 255;
/// Longest reason for a failed payout, in characters.
pub const MAX_PAYOUT_FAILURE_CHARS: usize = 1_000;

/// The smallest payout in `currency`: 10 of its major units (10.00 USD = 1 000 cents, 10 JPY,
/// 10.000 KWD = 10 000 fils).
#[must_use]
pub fn minimum_payout(currency: Currency) -> Money {
    let minor = 10_i64
        .checked_pow(u32::from(currency.exponent()).saturating_add(1))
        .unwrap_or(MAX_AMOUNT);
    Money::new(minor, currency)
}

/// A payout account, as the wallet knows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct PayoutAccount {
    /// Where the account is held.
    pub provider: Provider,
    /// The provider's id of the account.
    pub account_id: String,
    /// Whether payouts can go to it yet.
    pub status: AccountStatus,
}

/// One currency's balances.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct WalletBalance {
    /// The currency of every amount here.
    pub currency: Currency,
    /// Everything ever credited: `available + pending + paid_out`.
    pub credited: Money,
    /// What can be paid out now.
    pub available: Money,
    /// Requested, not yet paid.
    pub pending: Money,
    /// Paid to the payout account.
    pub paid_out: Money,
}

/// Where a payout stands.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum PayoutStatus {
    /// Requested; the transfer is not confirmed yet.
    Pending,
    /// The provider transferred it.
    Paid {
        /// The provider's id of the transfer.
        transfer_id: String,
    },
    /// The transfer was refused or failed later; the money is available again.
    Failed {
        /// Why, as the provider said.
        reason: String,
        /// Whether it had been paid before it failed.
        was_paid: bool,
    },
}

/// One payout, as the wallet knows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Payout {
    /// The payout.
    pub payout_id: PayoutId,
    /// How much.
    pub amount: Money,
    /// Where it goes: the provider's id of the account.
    pub account_id: String,
    /// Where the account is held.
    pub provider: Provider,
    /// Where it stands.
    pub status: PayoutStatus,
}

/// A freelancer's earnings and payouts. `Default` is the wallet before its first event.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Wallet {
    state: Option<WalletState>,
}

/// Bump on any change to the shape or meaning of `WalletState` (or what it holds).
impl SnapshotSchema for Wallet {
    const SNAPSHOT_VERSION: i32 = 1;
}

#[derive(Clone, Debug, Serialize, Deserialize)]
struct WalletState {
    freelancer_id: UserId,
    /// One per provider, in the order first registered.
    accounts: Vec<PayoutAccount>,
    /// The provider of the account registered last: where payouts go.
    current: Option<Provider>,
    /// Account ids since replaced by another of their provider.
    replaced: BTreeSet<String>,
    balances: BTreeMap<Currency, Balance>,
    /// The `FundsReleased` event ids credited so far.
    credited: BTreeSet<Uuid>,
    payouts: BTreeMap<PayoutId, PayoutRecord>,
}

/// One currency's balances in its minor units.
#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize)]
struct Balance {
    credited: i64,
    available: i64,
    pending: i64,
    paid_out: i64,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
struct PayoutRecord {
    amount: Money,
    account_id: String,
    provider: Provider,
    status: PayoutStatus,
}

/// The facts `CreditEarnings` carries, gathered.
struct Credit {
    freelancer_id: UserId,
    release_event_id: Uuid,
    contract_id: ContractId,
    milestone_id: MilestoneId,
    net: Money,
}

impl Aggregate for Wallet {
    const TYPE: &'static str = "wallet";
    type Command = WalletCommand;
    type Event = WalletEvent;
    type Error = WalletError;
    type Services = ();

    async fn handle(
        &mut self,
        command: Self::Command,
        _services: &Self::Services,
        sink: &EventSink<Self>,
    ) -> Result<(), Self::Error> {
        self.authorise(&command)?;
        let event = match command {
            WalletCommand::RegisterPayoutAccount {
                provider,
                account_id,
                actor,
                at,
            } => self.register(provider, &account_id, &actor, at)?,
            WalletCommand::VerifyPayoutAccount { account_id, at, .. } => {
                self.verify(&account_id, at)?
            }
            WalletCommand::CreditEarnings {
                freelancer_id,
                release_event_id,
                contract_id,
                milestone_id,
                net,
                at,
                ..
            } => {
                let credit = Credit {
                    freelancer_id,
                    release_event_id,
                    contract_id,
                    milestone_id,
                    net,
                };
                self.credit(credit, at)?
            }
            WalletCommand::RequestPayout {
                payout_id,
                amount,
                at,
                ..
            } => self.request(payout_id, amount, at)?,
            WalletCommand::MarkPayoutPaid {
                payout_id,
                transfer_id,
                at,
                ..
            } => self.mark_paid(payout_id, &transfer_id, at)?,
            WalletCommand::MarkPayoutFailed {
                payout_id,
                reason,
                at,
                ..
            } => self.mark_failed(payout_id, &reason, at)?,
        };
        let events: Vec<WalletEvent> = event.into_iter().collect();
        self.check_invariants(&events)?;
        for event in events {
            sink.write(event, self).await;
        }
        Ok(())
    }

    fn apply(&mut self, event: Self::Event) {
        let opener = match &event {
            WalletEvent::PayoutAccountRegistered { freelancer_id, .. }
            | WalletEvent::EarningsCredited { freelancer_id, .. } => Some(*freelancer_id),
            _ => None,
        };
        if let (None, Some(freelancer_id)) = (&self.state, opener) {
            self.state = Some(WalletState {
                freelancer_id,
                accounts: Vec::new(),
                current: None,
                replaced: BTreeSet::new(),
                balances: BTreeMap::new(),
                credited: BTreeSet::new(),
                payouts: BTreeMap::new(),
            });
        }
        let Some(state) = self.state.as_mut() else {
            return;
        };
        match event {
            WalletEvent::PayoutAccountRegistered {
                provider,
                account_id,
                ..
            } => {
                state.replaced.remove(&account_id);
                let account = PayoutAccount {
                    provider,
                    account_id,
                    status: AccountStatus::Pending,
                };
                match state.accounts.iter_mut().find(|a| a.provider == provider) {
                    // The same account again: it only becomes the current one, verified or not.
                    Some(existing) if existing.account_id == account.account_id => {}
                    Some(existing) => {
                        let old = std::mem::replace(existing, account);
                        state.replaced.insert(old.account_id);
                    }
                    None => state.accounts.push(account),
                }
                state.current = Some(provider);
            }
            WalletEvent::PayoutAccountVerified {
                provider,
                account_id,
                ..
            } => {
                if let Some(account) = state
                    .accounts
                    .iter_mut()
                    .find(|a| a.provider == provider && a.account_id == account_id)
                {
                    account.status = AccountStatus::Verified;
                }
            }
            WalletEvent::EarningsCredited {
                release_event_id,
                net,
                ..
            } => {
                state.credited.insert(release_event_id);
                let balance = state.balances.entry(net.currency).or_default();
                balance.credited = balance.credited.saturating_add(net.amount);
                balance.available = balance.available.saturating_add(net.amount);
            }
            WalletEvent::PayoutRequested {
                payout_id,
                amount,
                account_id,
                provider,
                ..
            } => {
                let balance = state.balances.entry(amount.currency).or_default();
                balance.available = balance.available.saturating_sub(amount.amount);
                balance.pending = balance.pending.saturating_add(amount.amount);
                state.payouts.insert(
                    payout_id,
                    PayoutRecord {
                        amount,
                        account_id,
                        provider,
                        status: PayoutStatus::Pending,
                    },
                );
            }
            WalletEvent::PayoutPaid {
                payout_id,
                amount,
                transfer_id,
                ..
            } => {
                let balance = state.balances.entry(amount.currency).or_default();
                balance.pending = balance.pending.saturating_sub(amount.amount);
                balance.paid_out = balance.paid_out.saturating_add(amount.amount);
                if let Some(payout) = state.payouts.get_mut(&payout_id) {
                    payout.status = PayoutStatus::Paid { transfer_id };
                }
            }
            WalletEvent::PayoutFailed {
                payout_id,
                amount,
                reason,
                was_paid,
                ..
            } => {
                let balance = state.balances.entry(amount.currency).or_default();
                if was_paid {
                    balance.paid_out = balance.paid_out.saturating_sub(amount.amount);
                } else {
                    balance.pending = balance.pending.saturating_sub(amount.amount);
                }
                balance.available = balance.available.saturating_add(amount.amount);
                if let Some(payout) = state.payouts.get_mut(&payout_id) {
                    payout.status = PayoutStatus::Failed { reason, was_paid };
                }
            }
        }
    }
}

impl Balance {
    fn view(self, currency: Currency) -> WalletBalance {
        WalletBalance {
            currency,
            credited: Money::new(self.credited, currency),
            available: Money::new(self.available, currency),
            pending: Money::new(self.pending, currency),
            paid_out: Money::new(self.paid_out, currency),
        }
    }

    /// `credited = available + pending + paid_out` and none negative, in `i128` so that even
    /// corrupt balances cannot overflow here.
    fn holds(&self) -> bool {
        self.available >= 0
            && self.pending >= 0
            && self.paid_out >= 0
            && i128::from(self.credited)
                == i128::from(self.available) + i128::from(self.pending) + i128::from(self.paid_out)
    }
}

impl PayoutRecord {
    fn view(&self, payout_id: PayoutId) -> Payout {
        Payout {
            payout_id,
            amount: self.amount,
            account_id: self.account_id.clone(),
            provider: self.provider,
            status: self.status.clone(),
        }
    }
}

impl WalletState {
    /// The account payouts go to: the one registered last.
    fn current_account(&self) -> Option<&PayoutAccount> {
        let provider = self.current?;
        self.accounts.iter().find(|a| a.provider == provider)
    }

    fn balance(&self, currency: Currency) -> Balance {
        self.balances.get(&currency).copied().unwrap_or_default()
    }
}

impl Wallet {
    /// Whose wallet this is, once it has any history.
    #[must_use]
    pub fn freelancer_id(&self) -> Option<UserId> {
        self.state.as_ref().map(|state| state.freelancer_id)
    }

    /// The balances of every currency the wallet was credited in, by currency code.
    #[must_use]
    pub fn balances(&self) -> Vec<WalletBalance> {
        self.state.as_ref().map_or_else(Vec::new, |state| {
            state
                .balances
                .iter()
                .map(|(currency, balance)| balance.view(*currency))
                .collect()
        })
    }

    /// One currency's balances (all zero if it was never credited).
    #[must_use]
    pub fn balance(&self, currency: Currency) -> WalletBalance {
        self.state
            .as_ref()
            .map_or_else(Balance::default, |state| state.balance(currency))
            .view(currency)
    }

    /// The account payouts go to (the one registered last), if any.
    #[must_use]
    pub fn account(&self) -> Option<PayoutAccount> {
        self.state.as_ref()?.current_account().cloned()
    }

    /// Every provider's account, in the order the providers were first registered.
    #[must_use]
    pub fn accounts(&self) -> Vec<PayoutAccount> {
        self.state
            .as_ref()
            .map_or_else(Vec::new, |state| state.accounts.clone())
    }

    /// One payout.
    #[must_use]
    pub fn payout(&self, payout_id: PayoutId) -> Option<Payout> {
        let state = self.state.as_ref()?;
        state
            .payouts
            .get(&payout_id)
            .map(|payout| payout.view(payout_id))
    }

    /// Every payout, by payout id (UUID v7, so in the order they were requested).
    #[must_use]
    pub fn payouts(&self) -> Vec<Payout> {
        self.state.as_ref().map_or_else(Vec::new, |state| {
            state
                .payouts
                .iter()
                .map(|(id, payout)| payout.view(*id))
                .collect()
        })
    }

    /// Whether the release event with this id was credited.
    #[must_use]
    pub fn has_credited(&self, release_event_id: Uuid) -> bool {
        self.state
            .as_ref()
            .is_some_and(|state| state.credited.contains(&release_event_id))
    }

    fn existing(&self) -> Result<&WalletState, WalletError> {
        self.state.as_ref().ok_or(WalletError::WalletNotFound)
    }

    /// The capacity of the wallet's freelancer. Before the wallet has history anyone with the
    /// freelancer role may act as its owner: the service addresses the stream by the caller's
    /// own id, and the first event records them.
    fn as_owner(&self, actor: &Actor) -> Result<ActingAs, WalletError> {
        if let Some(state) = &self.state {
            if actor.user_id != state.freelancer_id {
                return Err(WalletError::WalletNotFound);
            }
        }
        if actor.has_role(Role::Freelancer) {
            Ok(ActingAs::Role(Role::Freelancer))
        } else {
            Err(WalletError::NotAFreelancer)
        }
    }

    fn register(
        &self,
        provider: Provider,
        account_id: &str,
        actor: &Actor,
        at: DateTime<Utc>,
    ) -> Result<Option<WalletEvent>, WalletError> {
        let account_id = trimmed_within(account_id, 1, MAX_PROVIDER_ID_CHARS)
            .ok_or(WalletError::InvalidAccountId)?;
        let freelancer_id = match &self.state {
            Some(state) => {
                let same = state
                    .accounts
                    .iter()
                    .any(|a| a.provider == provider && a.account_id == account_id);
                // The same account again (a repeated onboarding answers the same id): keep it,
                // and its verification, but make it the one payouts go to.
                if same && state.current == Some(provider) {
                    return Ok(None);
                }
                state.freelancer_id
            }
            None => actor.user_id,
        };
        Ok(Some(WalletEvent::PayoutAccountRegistered {
            freelancer_id,
            provider,
            account_id,
            registered_at: at,
        }))
    }

    fn verify(
        &self,
        account_id: &str,
        at: DateTime<Utc>,
    ) -> Result<Option<WalletEvent>, WalletError> {
        let state = self.existing()?;
        let account_id = account_id.trim();
        match state.accounts.iter().find(|a| a.account_id == account_id) {
            Some(account) if account.status == AccountStatus::Verified => Ok(None),
            Some(account) => Ok(Some(WalletEvent::PayoutAccountVerified {
                provider: account.provider,
                account_id: account.account_id.clone(),
                verified_at: at,
            })),
            // A late notice for an account the freelancer replaced since: nothing to do.
            None if state.replaced.contains(account_id) => Ok(None),
            None => Err(WalletError::UnknownPayoutAccount),
        }
    }

    fn credit(
        &self,
        credit: Credit,
        at: DateTime<Utc>,
    ) -> Result<Option<WalletEvent>, WalletError> {
        if let Some(state) = &self.state {
            if state.freelancer_id != credit.freelancer_id {
                return Err(WalletError::WalletOfAnotherFreelancer);
            }
            if state.credited.contains(&credit.release_event_id) {
                return Ok(None);
            }
        }
        let net = credit.net;
        if net.is_negative() || net.exceeds_maximum() {
            return Err(WalletError::InvalidEarnings);
        }
        // A release whose fee took everything owes the freelancer nothing.
        if !net.is_positive() {
            return Ok(None);
        }
        let credited = self
            .state
            .as_ref()
            .map_or(0, |state| state.balance(net.currency).credited);
        if credited.checked_add(net.amount).is_none() {
            return Err(WalletError::BalanceOverflow {
                currency: net.currency,
            });
        }
        Ok(Some(WalletEvent::EarningsCredited {
            freelancer_id: credit.freelancer_id,
            release_event_id: credit.release_event_id,
            contract_id: credit.contract_id,
            milestone_id: credit.milestone_id,
            net,
            credited_at: at,
        }))
    }

    fn request(
        &self,
        payout_id: PayoutId,
        amount: Money,
        at: DateTime<Utc>,
    ) -> Result<Option<WalletEvent>, WalletError> {
        let state = self
            .state
            .as_ref()
            .ok_or(WalletError::NoVerifiedPayoutAccount)?;
        if let Some(payout) = state.payouts.get(&payout_id) {
            return if payout.amount == amount {
                Ok(None)
            } else {
                Err(WalletError::PayoutIdTaken)
            };
        }
        let account = state
            .current_account()
            .filter(|account| account.status == AccountStatus::Verified)
            .ok_or(WalletError::NoVerifiedPayoutAccount)?;
        if amount.exceeds_maximum() {
            return Err(WalletError::InvalidPayoutAmount);
        }
        let minimum = minimum_payout(amount.currency);
        if amount.amount < minimum.amount {
            return Err(WalletError::BelowMinimumPayout { minimum });
        }
        let balance = state.balance(amount.currency);
        if balance.credited <= 0 {
            return Err(WalletError::NoEarningsInCurrency {
                currency: amount.currency,
            });
        }
        if amount.amount > balance.available {
            return Err(WalletError::InsufficientFunds {
                available: Money::new(balance.available, amount.currency),
            });
        }
        Ok(Some(WalletEvent::PayoutRequested {
            payout_id,
            amount,
            account_id: account.account_id.clone(),
            provider: account.provider,
            requested_at: at,
        }))
    }

    fn payout_record(&self, payout_id: PayoutId) -> Result<&PayoutRecord, WalletError> {
        self.existing()?
            .payouts
            .get(&payout_id)
            .ok_or(WalletError::PayoutNotFound)
    }

    fn mark_paid(
        &self,
        payout_id: PayoutId,
        transfer_id: &str,
        at: DateTime<Utc>,
    ) -> Result<Option<WalletEvent>, WalletError> {
        let payout = self.payout_record(payout_id)?;
        let transfer_id = trimmed_within(transfer_id, 1, MAX_PROVIDER_ID_CHARS)
            .ok_or(WalletError::InvalidTransferId)?;
        match &payout.status {
            PayoutStatus::Pending => Ok(Some(WalletEvent::PayoutPaid {
                payout_id,
                amount: payout.amount,
                transfer_id,
                paid_at: at,
            })),
            PayoutStatus::Paid { transfer_id: paid } if *paid == transfer_id => Ok(None),
            PayoutStatus::Paid { .. } => Err(WalletError::PayoutAlreadyPaid),
            PayoutStatus::Failed { .. } => Err(WalletError::PayoutAlreadyFailed),
        }
    }

    fn mark_failed(
        &self,
        payout_id: PayoutId,
        reason: &str,
        at: DateTime<Utc>,
    ) -> Result<Option<WalletEvent>, WalletError> {
        let payout = self.payout_record(payout_id)?;
        let was_paid = match payout.status {
            PayoutStatus::Failed { .. } => return Ok(None),
            PayoutStatus::Pending => false,
            PayoutStatus::Paid { .. } => true,
        };
        let reason = trimmed_within(reason, 1, MAX_PAYOUT_FAILURE_CHARS)
            .ok_or(WalletError::InvalidReason)?;
        Ok(Some(WalletEvent::PayoutFailed {
            payout_id,
            amount: payout.amount,
            reason,
            was_paid,
            failed_at: at,
        }))
    }

    /// Refuses any event that would break a balance invariant, trying them in order on a copy
    /// so that a refusal leaves `self` untouched and nothing is written.
    fn check_invariants(&self, events: &[WalletEvent]) -> Result<(), WalletError> {
        let mut probe = self.clone();
        for event in events {
            probe.check_invariant(event)?;
            probe.apply(event.clone());
            let balanced = probe
                .state
                .as_ref()
                .is_some_and(|state| state.balances.values().all(Balance::holds));
            if !balanced {
                return Err(WalletError::InvariantViolated(
                    "credited = available + pending + paid out, none negative",
                ));
            }
        }
        Ok(())
    }

    fn check_invariant(&self, event: &WalletEvent) -> Result<(), WalletError> {
        use WalletError::InvariantViolated as Violated;
        let state = match (&self.state, event) {
            (None, WalletEvent::PayoutAccountRegistered { .. })
            | (None, WalletEvent::EarningsCredited { .. }) => None,
            (None, _) => return Err(Violated("the wallet has no history")),
            (Some(state), _) => Some(state),
        };
        let owner_is =
            |freelancer_id: UserId| state.is_none_or(|s| s.freelancer_id == freelancer_id);
        match event {
            WalletEvent::PayoutAccountRegistered {
                freelancer_id,
                account_id,
                ..
            } => {
                if !owner_is(*freelancer_id) {
                    Err(Violated("a wallet belongs to one freelancer"))
                } else if account_id.trim().is_empty() {
                    Err(Violated("an account has an id"))
                } else {
                    Ok(())
                }
            }
            WalletEvent::PayoutAccountVerified {
                provider,
                account_id,
                ..
            } => {
                let pending = state.is_some_and(|s| {
                    s.accounts.iter().any(|a| {
                        a.provider == *provider
                            && a.account_id == *account_id
                            && a.status == AccountStatus::Pending
                    })
                });
                if pending {
                    Ok(())
                } else {
                    Err(Violated("only a registered pending account is verified"))
                }
            }
            WalletEvent::EarningsCredited {
                freelancer_id,
                release_event_id,
                net,
                ..
            } => {
                let credited_before = state.map_or(0, |s| s.balance(net.currency).credited);
                if !owner_is(*freelancer_id) {
                    Err(Violated("a wallet belongs to one freelancer"))
                } else if state.is_some_and(|s| s.credited.contains(release_event_id)) {
                    Err(Violated("a release is credited once"))
                } else if !net.is_positive() {
                    Err(Violated("a credit is positive"))
                } else if credited_before.checked_add(net.amount).is_none() {
                    Err(Violated("a balance never overflows"))
                } else {
                    Ok(())
                }
            }
            WalletEvent::PayoutRequested {
                payout_id,
                amount,
                account_id,
                provider,
                ..
            } => {
                let Some(state) = state else {
                    return Err(Violated("the wallet has no history"));
                };
                let to_current = state.current_account().is_some_and(|a| {
                    a.provider == *provider
                        && a.account_id == *account_id
                        && a.status == AccountStatus::Verified
                });
                if state.payouts.contains_key(payout_id) {
                    Err(Violated("a payout id is used once"))
                } else if !amount.is_positive() {
                    Err(Violated("a payout is positive"))
                } else if amount.amount > state.balance(amount.currency).available {
                    Err(Violated("a payout never exceeds what is available"))
                } else if !to_current {
                    Err(Violated("a payout goes to the verified current account"))
                } else {
                    Ok(())
                }
            }
            WalletEvent::PayoutPaid {
                payout_id, amount, ..
            } => {
                let payout = state.and_then(|s| s.payouts.get(payout_id));
                match payout {
                    Some(p) if p.status == PayoutStatus::Pending && p.amount == *amount => Ok(()),
                    Some(p) if p.amount != *amount => Err(Violated("a payout is paid in full")),
                    _ => Err(Violated("only a pending payout is paid, once")),
                }
            }
            WalletEvent::PayoutFailed {
                payout_id,
                amount,
                was_paid,
                ..
            } => {
                let payout = state.and_then(|s| s.payouts.get(payout_id));
                let Some(payout) = payout else {
                    return Err(Violated("only a requested payout fails"));
                };
                let paid = match payout.status {
                    PayoutStatus::Pending => false,
                    PayoutStatus::Paid { .. } => true,
                    PayoutStatus::Failed { .. } => {
                        return Err(Violated("a payout fails at most once"))
                    }
                };
                if payout.amount != *amount {
                    Err(Violated("a failure gives back the payout's amount"))
                } else if paid != *was_paid {
                    Err(Violated("a failure says whether the payout was paid"))
                } else {
                    Ok(())
                }
            }
        }
    }
}

impl Authorise for Wallet {
    /// Registering an account and requesting a payout are the freelancer's own; every other
    /// step is the system's.
    fn authorise(&self, command: &WalletCommand) -> Result<ActingAs, WalletError> {
        match command {
            WalletCommand::RegisterPayoutAccount { actor, .. }
            | WalletCommand::RequestPayout { actor, .. } => self.as_owner(actor),
            WalletCommand::VerifyPayoutAccount { actor, .. }
            | WalletCommand::CreditEarnings { actor, .. }
            | WalletCommand::MarkPayoutPaid { actor, .. }
            | WalletCommand::MarkPayoutFailed { actor, .. } => {
                if actor.is_system() {
                    Ok(ActingAs::System)
                } else {
                    Err(WalletError::NotSystem)
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use cqrs_es::test::TestFramework;
    use cqrs_es::DomainEvent;

    use super::*;
    use crate::error::ErrorKind;
    use crate::escrow::JournalLine;
    use crate::test_support::*;

    type WalletTest = TestFramework<Wallet>;

    fn owner() -> UserId {
        freelancer().user_id
    }

    fn other_freelancer() -> Actor {
        Actor::new(user(3), vec![Role::Freelancer])
    }

    fn payout_id(n: u128) -> PayoutId {
        PayoutId(Uuid::from_u128(600 + n))
    }

    fn release_id(n: u128) -> Uuid {
        Uuid::from_u128(700 + n)
    }

    fn m1() -> MilestoneId {
        MilestoneId(Uuid::from_u128(401))
    }

    fn jpy(amount: i64) -> Money {
        Money::new(amount, Currency::JPY)
    }

    // ---- events ----

    fn registered_at(provider: Provider, account_id: &str) -> WalletEvent {
        WalletEvent::PayoutAccountRegistered {
            freelancer_id: owner(),
            provider,
            account_id: account_id.to_owned(),
            registered_at: now(),
        }
    }

    fn registered(account_id: &str) -> WalletEvent {
        registered_at(Provider::Simulated, account_id)
    }

    fn verified_at(provider: Provider, account_id: &str) -> WalletEvent {
        WalletEvent::PayoutAccountVerified {
            provider,
            account_id: account_id.to_owned(),
            verified_at: now(),
        }
    }

    fn verified(account_id: &str) -> WalletEvent {
        verified_at(Provider::Simulated, account_id)
    }

    fn credited(n: u128, net: Money) -> WalletEvent {
        WalletEvent::EarningsCredited {
            freelancer_id: owner(),
            release_event_id: release_id(n),
            contract_id: contract_id(),
            milestone_id: m1(),
            net,
            credited_at: now(),
        }
    }

    fn requested(n: u128, amount: Money) -> WalletEvent {
        WalletEvent::PayoutRequested {
            payout_id: payout_id(n),
            amount,
            account_id: "acct_1".to_owned(),
            provider: Provider::Simulated,
            requested_at: now(),
        }
    }

    fn paid(n: u128, amount: Money, transfer_id: &str) -> WalletEvent {
        WalletEvent::PayoutPaid {
            payout_id: payout_id(n),
            amount,
            transfer_id: transfer_id.to_owned(),
            paid_at: now(),
        }
    }

    fn failed(n: u128, amount: Money, was_paid: bool) -> WalletEvent {
        WalletEvent::PayoutFailed {
            payout_id: payout_id(n),
            amount,
            reason: "account closed".to_owned(),
            was_paid,
            failed_at: now(),
        }
    }

    /// A verified account and 500.00 USD of earnings.
    fn ready() -> Vec<WalletEvent> {
        vec![
            registered("acct_1"),
            verified("acct_1"),
            credited(1, usd(50_000)),
        ]
    }

    fn ready_with(more: impl IntoIterator<Item = WalletEvent>) -> Vec<WalletEvent> {
        let mut history = ready();
        history.extend(more);
        history
    }

    fn rebuilt(events: Vec<WalletEvent>) -> Wallet {
        let mut wallet = Wallet::default();
        for event in events {
            wallet.apply(event);
        }
        wallet
    }

    // ---- commands ----

    fn register_as(provider: Provider, account_id: &str, actor: Actor) -> WalletCommand {
        WalletCommand::RegisterPayoutAccount {
            provider,
            account_id: account_id.to_owned(),
            actor,
            at: now(),
        }
    }

    fn register(account_id: &str) -> WalletCommand {
        register_as(Provider::Simulated, account_id, freelancer())
    }

    fn verify(account_id: &str) -> WalletCommand {
        WalletCommand::VerifyPayoutAccount {
            account_id: account_id.to_owned(),
            actor: system(),
            at: now(),
        }
    }

    fn credit_for(freelancer_id: UserId, n: u128, net: Money) -> WalletCommand {
        WalletCommand::CreditEarnings {
            freelancer_id,
            release_event_id: release_id(n),
            contract_id: contract_id(),
            milestone_id: m1(),
            net,
            actor: system(),
            at: now(),
        }
    }

    fn credit(n: u128, net: Money) -> WalletCommand {
        credit_for(owner(), n, net)
    }

    fn request_as(n: u128, amount: Money, actor: Actor) -> WalletCommand {
        WalletCommand::RequestPayout {
            payout_id: payout_id(n),
            amount,
            actor,
            at: now(),
        }
    }

    fn request(n: u128, amount: Money) -> WalletCommand {
        request_as(n, amount, freelancer())
    }

    fn mark_paid(n: u128, transfer_id: &str) -> WalletCommand {
        WalletCommand::MarkPayoutPaid {
            payout_id: payout_id(n),
            transfer_id: transfer_id.to_owned(),
            actor: system(),
            at: now(),
        }
    }

    fn mark_failed(n: u128, reason: &str) -> WalletCommand {
        WalletCommand::MarkPayoutFailed {
            payout_id: payout_id(n),
            reason: reason.to_owned(),
            actor: system(),
            at: now(),
        }
    }

    fn balance_of(events: Vec<WalletEvent>) -> (i64, i64, i64) {
        let balance = rebuilt(events).balance(Currency::USD);
        (
            balance.available.amount,
            balance.pending.amount,
            balance.paid_out.amount,
        )
    }

    // ---- RegisterPayoutAccount ----

    #[test]
    fn a_freelancer_registers_a_payout_account_which_is_pending_until_verified() {
        WalletTest::with(())
            .given_no_previous_events()
            .when(register(" acct_1 "))
            .then_expect_events(vec![registered("acct_1")]);
        let wallet = rebuilt(vec![registered("acct_1")]);
        assert_eq!(wallet.freelancer_id(), Some(owner()));
        assert_eq!(
            wallet.account(),
            Some(PayoutAccount {
                provider: Provider::Simulated,
                account_id: "acct_1".to_owned(),
                status: AccountStatus::Pending,
            })
        );
        assert_eq!(wallet.balances(), vec![]);
    }

    #[test]
    fn registering_the_same_account_again_changes_nothing_and_keeps_it_verified() {
        WalletTest::with(())
            .given(vec![registered("acct_1"), verified("acct_1")])
            .when(register("acct_1"))
            .then_expect_events(vec![]);
    }

    #[test]
    fn a_new_account_at_the_same_provider_replaces_the_old_one_and_is_pending_again() {
        WalletTest::with(())
            .given(vec![registered("acct_1"), verified("acct_1")])
            .when(register("acct_2"))
            .then_expect_events(vec![registered("acct_2")]);
        let wallet = rebuilt(vec![
            registered("acct_1"),
            verified("acct_1"),
            registered("acct_2"),
        ]);
        assert_eq!(wallet.accounts().len(), 1);
        assert_eq!(
            wallet.account().map(|a| (a.account_id, a.status)),
            Some(("acct_2".to_owned(), AccountStatus::Pending))
        );
    }

    #[test]
    fn payouts_go_to_the_account_registered_last_and_an_earlier_one_can_be_chosen_again() {
        let stripe = register_as(Provider::Stripe, "acct_s", freelancer());
        WalletTest::with(())
            .given(vec![registered("acct_1"), verified("acct_1")])
            .when(stripe)
            .then_expect_events(vec![registered_at(Provider::Stripe, "acct_s")]);
        let both = vec![
            registered("acct_1"),
            verified("acct_1"),
            registered_at(Provider::Stripe, "acct_s"),
        ];
        assert_eq!(
            rebuilt(both.clone()).account().map(|a| a.provider),
            Some(Provider::Stripe)
        );
        // The simulated account again: it is where payouts go, still verified.
        WalletTest::with(())
            .given(both.clone())
            .when(register("acct_1"))
            .then_expect_events(vec![registered("acct_1")]);
        let mut back = both;
        back.push(registered("acct_1"));
        let wallet = rebuilt(back);
        assert_eq!(
            wallet.account().map(|a| (a.provider, a.status)),
            Some((Provider::Simulated, AccountStatus::Verified))
        );
        assert_eq!(wallet.accounts().len(), 2);
    }

    #[test]
    fn an_account_id_must_be_1_to_255_characters() {
        for bad in ["  ".to_owned(), "a".repeat(256)] {
            WalletTest::with(())
                .given_no_previous_events()
                .when(register(&bad))
                .then_expect_error(WalletError::InvalidAccountId);
        }
    }

    #[test]
    fn only_a_freelancer_has_a_wallet_and_only_their_own() {
        WalletTest::with(())
            .given_no_previous_events()
            .when(register_as(Provider::Simulated, "acct_1", client()))
            .then_expect_error(WalletError::NotAFreelancer);
        WalletTest::with(())
            .given(vec![registered("acct_1")])
            .when(register_as(
                Provider::Simulated,
                "acct_9",
                other_freelancer(),
            ))
            .then_expect_error(WalletError::WalletNotFound);
        WalletTest::with(())
            .given(ready())
            .when(request_as(1, usd(1_000), other_freelancer()))
            .then_expect_error(WalletError::WalletNotFound);
        // The owner's token without the freelancer role.
        let owner_as_client = Actor::new(owner(), vec![Role::Client]);
        WalletTest::with(())
            .given(ready())
            .when(request_as(1, usd(1_000), owner_as_client))
            .then_expect_error(WalletError::NotAFreelancer);
    }

    // ---- VerifyPayoutAccount ----

    #[test]
    fn a_provider_notice_verifies_the_pending_account() {
        WalletTest::with(())
            .given(vec![registered("acct_1")])
            .when(verify("acct_1"))
            .then_expect_events(vec![verified("acct_1")]);
        assert_eq!(
            rebuilt(vec![registered("acct_1"), verified("acct_1")])
                .account()
                .map(|a| a.status),
            Some(AccountStatus::Verified)
        );
    }

    #[test]
    fn verifying_again_or_verifying_a_replaced_account_changes_nothing() {
        WalletTest::with(())
            .given(vec![registered("acct_1"), verified("acct_1")])
            .when(verify("acct_1"))
            .then_expect_events(vec![]);
        WalletTest::with(())
            .given(vec![registered("acct_1"), registered("acct_2")])
            .when(verify("acct_1"))
            .then_expect_events(vec![]);
    }

    #[test]
    fn an_account_the_wallet_never_registered_cannot_be_verified() {
        WalletTest::with(())
            .given(vec![registered("acct_1")])
            .when(verify("acct_9"))
            .then_expect_error(WalletError::UnknownPayoutAccount);
        WalletTest::with(())
            .given_no_previous_events()
            .when(verify("acct_1"))
            .then_expect_error(WalletError::WalletNotFound);
    }

    #[test]
    fn only_the_platform_verifies_credits_and_records_transfers() {
        let by_people = [
            WalletCommand::VerifyPayoutAccount {
                account_id: "acct_1".to_owned(),
                actor: freelancer(),
                at: now(),
            },
            WalletCommand::CreditEarnings {
                freelancer_id: owner(),
                release_event_id: release_id(2),
                contract_id: contract_id(),
                milestone_id: m1(),
                net: usd(1),
                actor: admin(),
                at: now(),
            },
            WalletCommand::MarkPayoutPaid {
                payout_id: payout_id(1),
                transfer_id: "tr_1".to_owned(),
                actor: freelancer(),
                at: now(),
            },
            WalletCommand::MarkPayoutFailed {
                payout_id: payout_id(1),
                reason: "no".to_owned(),
                actor: admin(),
                at: now(),
            },
        ];
        for command in by_people {
            WalletTest::with(())
                .given(ready_with([requested(1, usd(1_000))]))
                .when(command)
                .then_expect_error(WalletError::NotSystem);
        }
    }

    // ---- CreditEarnings ----

    #[test]
    fn a_release_credits_its_net_amount_and_opens_the_wallet() {
        WalletTest::with(())
            .given_no_previous_events()
            .when(credit(1, usd(18_000)))
            .then_expect_events(vec![credited(1, usd(18_000))]);
        let wallet = rebuilt(vec![credited(1, usd(18_000)), credited(2, jpy(500))]);
        assert_eq!(wallet.freelancer_id(), Some(owner()));
        assert!(wallet.has_credited(release_id(1)));
        assert!(!wallet.has_credited(release_id(3)));
        assert_eq!(
            wallet.balances(),
            vec![
                WalletBalance {
                    currency: Currency::JPY,
                    credited: jpy(500),
                    available: jpy(500),
                    pending: jpy(0),
                    paid_out: jpy(0),
                },
                WalletBalance {
                    currency: Currency::USD,
                    credited: usd(18_000),
                    available: usd(18_000),
                    pending: usd(0),
                    paid_out: usd(0),
                },
            ]
        );
        assert_eq!(wallet.balance(Currency::EUR).available.amount, 0);
    }

    #[test]
    fn a_release_is_credited_once_so_a_repeat_changes_nothing() {
        WalletTest::with(())
            .given(vec![credited(1, usd(18_000))])
            .when(credit(1, usd(18_000)))
            .then_expect_events(vec![]);
        WalletTest::with(())
            .given(vec![credited(1, usd(18_000))])
            .when(credit(2, usd(18_000)))
            .then_expect_events(vec![credited(2, usd(18_000))]);
    }

    #[test]
    fn a_release_whose_fee_took_everything_credits_nothing() {
        WalletTest::with(())
            .given_no_previous_events()
            .when(credit(1, usd(0)))
            .then_expect_events(vec![]);
    }

    #[test]
    fn earnings_cannot_be_negative_or_above_the_maximum() {
        for net in [usd(-1), usd(MAX_AMOUNT + 1)] {
            WalletTest::with(())
                .given_no_previous_events()
                .when(credit(1, net))
                .then_expect_error(WalletError::InvalidEarnings);
        }
        WalletTest::with(())
            .given_no_previous_events()
            .when(credit(1, usd(MAX_AMOUNT)))
            .then_expect_events(vec![credited(1, usd(MAX_AMOUNT))]);
    }

    #[test]
    fn earnings_of_another_freelancer_are_refused() {
        WalletTest::with(())
            .given(vec![credited(1, usd(100))])
            .when(credit_for(user(3), 2, usd(100)))
            .then_expect_error(WalletError::WalletOfAnotherFreelancer);
    }

    #[test]
    fn a_credit_that_would_overflow_the_balance_is_refused_not_wrapped() {
        WalletTest::with(())
            .given(vec![credited(1, usd(i64::MAX - 5))])
            .when(credit(2, usd(6)))
            .then_expect_error(WalletError::BalanceOverflow {
                currency: Currency::USD,
            });
        WalletTest::with(())
            .given(vec![credited(1, usd(i64::MAX - 5))])
            .when(credit(2, usd(5)))
            .then_expect_events(vec![credited(2, usd(5))]);
    }

    // ---- RequestPayout ----

    #[test]
    fn a_freelancer_requests_part_of_the_available_earnings_to_their_verified_account() {
        WalletTest::with(())
            .given(ready())
            .when(request(1, usd(20_000)))
            .then_expect_events(vec![requested(1, usd(20_000))]);
        let wallet = rebuilt(ready_with([requested(1, usd(20_000))]));
        assert_eq!(
            balance_of(ready_with([requested(1, usd(20_000))])),
            (30_000, 20_000, 0)
        );
        assert_eq!(
            wallet.payout(payout_id(1)),
            Some(Payout {
                payout_id: payout_id(1),
                amount: usd(20_000),
                account_id: "acct_1".to_owned(),
                provider: Provider::Simulated,
                status: PayoutStatus::Pending,
            })
        );
        assert_eq!(wallet.payouts().len(), 1);
        assert_eq!(wallet.payout(payout_id(2)), None);
    }

    #[test]
    fn the_whole_available_balance_can_be_paid_out() {
        WalletTest::with(())
            .given(ready())
            .when(request(1, usd(50_000)))
            .then_expect_events(vec![requested(1, usd(50_000))]);
    }

    #[test]
    fn a_payout_needs_a_verified_account() {
        let histories = [
            vec![],
            vec![credited(1, usd(50_000))],
            vec![registered("acct_1"), credited(1, usd(50_000))],
            // The verified account was replaced by one not verified yet.
            ready_with([registered("acct_2")]),
        ];
        for history in histories {
            WalletTest::with(())
                .given(history)
                .when(request(1, usd(1_000)))
                .then_expect_error(WalletError::NoVerifiedPayoutAccount);
        }
    }

    #[test]
    fn a_payout_must_be_at_least_ten_major_units_of_its_currency() {
        assert_eq!(minimum_payout(Currency::USD), usd(1_000));
        assert_eq!(minimum_payout(Currency::JPY), jpy(10));
        assert_eq!(minimum_payout(Currency::KWD).amount, 10_000);
        let kwd = |amount| Money::new(amount, Currency::KWD);
        let history = ready_with([credited(2, jpy(5_000)), credited(3, kwd(50_000))]);
        for (below, minimum) in [
            (usd(999), usd(1_000)),
            (jpy(9), jpy(10)),
            (kwd(9_999), kwd(10_000)),
        ] {
            for amount in [
                below,
                Money::new(0, below.currency),
                Money::new(-1, below.currency),
            ] {
                WalletTest::with(())
                    .given(history.clone())
                    .when(request(1, amount))
                    .then_expect_error(WalletError::BelowMinimumPayout { minimum });
            }
            WalletTest::with(())
                .given(history.clone())
                .when(request(1, minimum))
                .then_expect_events(vec![requested(1, minimum)]);
        }
    }

    #[test]
    fn a_payout_in_a_currency_without_earnings_is_refused() {
        WalletTest::with(())
            .given(ready())
            .when(request(1, Money::new(1_000, Currency::EUR)))
            .then_expect_error(WalletError::NoEarningsInCurrency {
                currency: Currency::EUR,
            });
    }

    #[test]
    fn a_payout_above_the_available_balance_is_refused() {
        WalletTest::with(())
            .given(ready())
            .when(request(1, usd(50_001)))
            .then_expect_error(WalletError::InsufficientFunds {
                available: usd(50_000),
            });
        // Pending and paid-out money is not available.
        WalletTest::with(())
            .given(ready_with([
                requested(1, usd(20_000)),
                requested(2, usd(10_000)),
                paid(2, usd(10_000), "tr_2"),
            ]))
            .when(request(3, usd(20_001)))
            .then_expect_error(WalletError::InsufficientFunds {
                available: usd(20_000),
            });
        // Everything was paid out.
        WalletTest::with(())
            .given(ready_with([
                requested(1, usd(50_000)),
                paid(1, usd(50_000), "tr_1"),
            ]))
            .when(request(2, usd(1_000)))
            .then_expect_error(WalletError::InsufficientFunds { available: usd(0) });
    }

    #[test]
    fn a_payout_above_the_maximum_amount_is_refused() {
        WalletTest::with(())
            .given(ready())
            .when(request(1, usd(MAX_AMOUNT + 1)))
            .then_expect_error(WalletError::InvalidPayoutAmount);
    }

    #[test]
    fn a_repeated_payout_request_changes_nothing_and_a_reused_payout_id_is_refused() {
        let history = ready_with([requested(1, usd(20_000))]);
        WalletTest::with(())
            .given(history.clone())
            .when(request(1, usd(20_000)))
            .then_expect_events(vec![]);
        // Even once the money is no longer available or the payout has moved on.
        WalletTest::with(())
            .given(ready_with([
                requested(1, usd(50_000)),
                paid(1, usd(50_000), "tr_1"),
            ]))
            .when(request(1, usd(50_000)))
            .then_expect_events(vec![]);
        WalletTest::with(())
            .given(history)
            .when(request(1, usd(20_001)))
            .then_expect_error(WalletError::PayoutIdTaken);
    }

    // ---- MarkPayoutPaid ----

    #[test]
    fn a_transfer_pays_the_pending_payout() {
        let history = ready_with([requested(1, usd(20_000))]);
        WalletTest::with(())
            .given(history.clone())
            .when(mark_paid(1, "tr_1"))
            .then_expect_events(vec![paid(1, usd(20_000), "tr_1")]);
        let mut after = history;
        after.push(paid(1, usd(20_000), "tr_1"));
        assert_eq!(balance_of(after.clone()), (30_000, 0, 20_000));
        assert_eq!(
            rebuilt(after).payout(payout_id(1)).map(|p| p.status),
            Some(PayoutStatus::Paid {
                transfer_id: "tr_1".to_owned()
            })
        );
    }

    #[test]
    fn marking_a_payout_paid_again_changes_nothing_but_another_transfer_is_refused() {
        let history = ready_with([requested(1, usd(20_000)), paid(1, usd(20_000), "tr_1")]);
        WalletTest::with(())
            .given(history.clone())
            .when(mark_paid(1, "tr_1"))
            .then_expect_events(vec![]);
        WalletTest::with(())
            .given(history)
            .when(mark_paid(1, "tr_2"))
            .then_expect_error(WalletError::PayoutAlreadyPaid);
    }

    #[test]
    fn a_failed_payout_cannot_be_paid() {
        WalletTest::with(())
            .given(ready_with([
                requested(1, usd(20_000)),
                failed(1, usd(20_000), false),
            ]))
            .when(mark_paid(1, "tr_1"))
            .then_expect_error(WalletError::PayoutAlreadyFailed);
    }

    #[test]
    fn a_payout_the_wallet_never_requested_cannot_be_paid_or_failed() {
        for command in [mark_paid(9, "tr_9"), mark_failed(9, "no")] {
            WalletTest::with(())
                .given(ready())
                .when(command.clone())
                .then_expect_error(WalletError::PayoutNotFound);
            WalletTest::with(())
                .given_no_previous_events()
                .when(command)
                .then_expect_error(WalletError::WalletNotFound);
        }
    }

    #[test]
    fn a_transfer_id_must_be_1_to_255_characters() {
        for bad in [" ".to_owned(), "t".repeat(256)] {
            WalletTest::with(())
                .given(ready_with([requested(1, usd(20_000))]))
                .when(mark_paid(1, &bad))
                .then_expect_error(WalletError::InvalidTransferId);
        }
    }

    // ---- MarkPayoutFailed ----

    #[test]
    fn a_refused_transfer_makes_the_pending_money_available_again() {
        let history = ready_with([requested(1, usd(20_000))]);
        WalletTest::with(())
            .given(history.clone())
            .when(mark_failed(1, " account closed "))
            .then_expect_events(vec![failed(1, usd(20_000), false)]);
        let mut after = history;
        after.push(failed(1, usd(20_000), false));
        assert_eq!(balance_of(after.clone()), (50_000, 0, 0));
        assert_eq!(
            rebuilt(after).payout(payout_id(1)).map(|p| p.status),
            Some(PayoutStatus::Failed {
                reason: "account closed".to_owned(),
                was_paid: false
            })
        );
    }

    #[test]
    fn a_transfer_the_provider_reports_failed_after_paying_leaves_paid_out() {
        let history = ready_with([requested(1, usd(20_000)), paid(1, usd(20_000), "tr_1")]);
        WalletTest::with(())
            .given(history.clone())
            .when(mark_failed(1, "account closed"))
            .then_expect_events(vec![failed(1, usd(20_000), true)]);
        let mut after = history;
        after.push(failed(1, usd(20_000), true));
        assert_eq!(balance_of(after), (50_000, 0, 0));
    }

    #[test]
    fn a_payout_fails_once_so_a_repeat_changes_nothing() {
        for history in [
            ready_with([requested(1, usd(20_000)), failed(1, usd(20_000), false)]),
            ready_with([
                requested(1, usd(20_000)),
                paid(1, usd(20_000), "tr_1"),
                failed(1, usd(20_000), true),
            ]),
        ] {
            WalletTest::with(())
                .given(history)
                .when(mark_failed(1, "another reason"))
                .then_expect_events(vec![]);
        }
    }

    #[test]
    fn a_failure_needs_a_reason_of_1_to_1000_characters() {
        for bad in ["  ".to_owned(), "r".repeat(1_001)] {
            WalletTest::with(())
                .given(ready_with([requested(1, usd(20_000))]))
                .when(mark_failed(1, &bad))
                .then_expect_error(WalletError::InvalidReason);
        }
    }

    // ---- authorisation, invariants, journal, events ----

    #[test]
    fn the_freelancer_acts_as_freelancer_and_every_other_step_as_the_system() {
        let wallet = rebuilt(ready());
        assert_eq!(
            wallet.authorise(&request(1, usd(1_000))),
            Ok(ActingAs::Role(Role::Freelancer))
        );
        assert_eq!(
            Wallet::default().authorise(&register("acct_1")),
            Ok(ActingAs::Role(Role::Freelancer))
        );
        assert_eq!(wallet.authorise(&verify("acct_1")), Ok(ActingAs::System));
        assert_eq!(
            Wallet::default().authorise(&credit(1, usd(1))),
            Ok(ActingAs::System)
        );
        assert_eq!(wallet.authorise(&mark_paid(1, "tr")), Ok(ActingAs::System));
    }

    #[test]
    fn a_movement_that_would_break_the_balances_is_refused_before_it_is_written() {
        let wallet = rebuilt(ready_with([
            requested(1, usd(20_000)),
            requested(2, usd(10_000)),
            paid(2, usd(10_000), "tr_2"),
        ]));
        let cases = [
            requested(3, usd(30_001)),
            requested(1, usd(1_000)),
            requested(3, usd(0)),
            paid(1, usd(19_999), "tr_1"),
            paid(2, usd(10_000), "tr_2"),
            failed(1, usd(20_000), true),
            failed(2, usd(10_000), false),
            failed(9, usd(1), false),
            credited(1, usd(5)),
            credited(2, usd(0)),
            credited(2, usd(i64::MAX)),
            verified("acct_1"),
            verified("acct_9"),
            WalletEvent::PayoutAccountRegistered {
                freelancer_id: user(3),
                provider: Provider::Simulated,
                account_id: "acct_3".to_owned(),
                registered_at: now(),
            },
            WalletEvent::PayoutRequested {
                payout_id: payout_id(3),
                amount: usd(1_000),
                account_id: "acct_other".to_owned(),
                provider: Provider::Simulated,
                requested_at: now(),
            },
        ];
        for event in cases {
            assert!(
                matches!(
                    wallet.check_invariants(std::slice::from_ref(&event)),
                    Err(WalletError::InvariantViolated(_))
                ),
                "{event:?} was allowed"
            );
        }
        assert!(Wallet::default()
            .check_invariants(&[requested(1, usd(1))])
            .is_err());
        // A sequence is checked as a whole.
        assert!(wallet
            .check_invariants(&[requested(3, usd(20_000)), requested(4, usd(1_000))])
            .is_err());
        assert!(wallet
            .check_invariants(&[failed(2, usd(10_000), true), requested(3, usd(30_000))])
            .is_ok());
    }

    #[test]
    fn apply_is_total_and_ignores_events_that_do_not_fit() {
        let mut wallet = Wallet::default();
        wallet.apply(requested(1, usd(5)));
        wallet.apply(paid(1, usd(5), "tr"));
        assert_eq!(wallet.freelancer_id(), None);
        wallet.apply(credited(1, usd(i64::MAX)));
        wallet.apply(credited(2, usd(i64::MAX)));
        wallet.apply(verified("acct_9"));
        wallet.apply(failed(7, usd(i64::MAX), true));
        assert_eq!(wallet.balances().len(), 1);
        assert_eq!(wallet.payout(payout_id(7)), None);
    }

    #[test]
    fn a_paid_payout_leaves_the_freelancers_payable_for_payouts_sent_and_a_later_failure_returns_it(
    ) {
        let payable = format!("freelancer_payable:{}", owner());
        let line = |account: &str, amount: i64| JournalLine {
            account: account.to_owned(),
            amount,
            currency: Currency::USD,
        };
        assert_eq!(
            paid(1, usd(20_000), "tr_1").journal_lines(owner()),
            vec![line(&payable, -20_000), line("payouts_sent", 20_000)]
        );
        assert_eq!(
            failed(1, usd(20_000), true).journal_lines(owner()),
            vec![line("payouts_sent", -20_000), line(&payable, 20_000)]
        );
        for event in [
            registered("acct_1"),
            verified("acct_1"),
            credited(1, usd(1)),
            requested(1, usd(1)),
            failed(1, usd(1), false),
        ] {
            assert!(event.journal_lines(owner()).is_empty(), "{event:?}");
        }
        for event in [paid(1, usd(i64::MAX), "t"), failed(1, usd(i64::MAX), true)] {
            let sum: i128 = event
                .journal_lines(owner())
                .iter()
                .map(|l| i128::from(l.amount))
                .sum();
            assert_eq!(sum, 0, "{event:?} is unbalanced");
        }
    }

    #[test]
    fn every_event_is_stored_under_its_variant_name_at_version_1() {
        let events = vec![
            registered("acct_1"),
            verified("acct_1"),
            credited(1, usd(1)),
            requested(1, usd(1)),
            paid(1, usd(1), "tr"),
            failed(1, usd(1), true),
        ];
        for event in events {
            let json = serde_json::to_value(&event).unwrap();
            let tag = json.as_object().and_then(|o| o.keys().next().cloned());
            assert_eq!(tag, Some(event.event_type()));
            assert_eq!(event.event_version(), "1");
            let back: WalletEvent = serde_json::from_value(json.clone()).unwrap();
            assert_eq!(back, event);
            let any = crate::AnyEvent::decode("wallet", &event.event_type(), "1", &json);
            assert_eq!(any.ok().flatten(), Some(crate::AnyEvent::Wallet(event)));
        }
    }

    #[test]
    fn a_wallet_survives_a_snapshot_round_trip() {
        let wallet = rebuilt(ready_with([
            registered_at(Provider::Stripe, "acct_s"),
            registered_at(Provider::Stripe, "acct_t"),
            credited(2, jpy(700)),
            requested(1, usd(20_000)),
            paid(1, usd(20_000), "tr_1"),
        ]));
        let snapshot = serde_json::to_value(&wallet).unwrap();
        let restored: Wallet = serde_json::from_value(snapshot).unwrap();
        assert_eq!(restored.balances(), wallet.balances());
        assert_eq!(restored.payouts(), wallet.payouts());
        assert_eq!(restored.accounts(), wallet.accounts());
        assert_eq!(format!("{restored:?}"), format!("{wallet:?}"));
        // The replaced account is remembered: its late verification is a no-op.
        WalletTest::with(())
            .given(ready_with([
                registered_at(Provider::Stripe, "acct_s"),
                registered_at(Provider::Stripe, "acct_t"),
            ]))
            .when(verify("acct_s"))
            .then_expect_events(vec![]);
    }

    #[test]
    fn refusals_say_what_kind_they_are_and_which_field_is_at_fault() {
        assert_eq!(WalletError::WalletNotFound.kind(), ErrorKind::NotFound);
        assert_eq!(
            WalletError::UnknownPayoutAccount.kind(),
            ErrorKind::NotFound
        );
        assert_eq!(WalletError::PayoutNotFound.kind(), ErrorKind::NotFound);
        assert_eq!(WalletError::NotSystem.kind(), ErrorKind::Forbidden);
        assert_eq!(WalletError::NotAFreelancer.kind(), ErrorKind::Forbidden);
        assert_eq!(
            WalletError::InsufficientFunds { available: usd(1) }.kind(),
            ErrorKind::Conflict
        );
        assert_eq!(
            WalletError::NoEarningsInCurrency {
                currency: Currency::EUR
            }
            .kind(),
            ErrorKind::Conflict
        );
        assert_eq!(
            WalletError::NoVerifiedPayoutAccount.kind(),
            ErrorKind::Conflict
        );
        assert_eq!(WalletError::PayoutIdTaken.kind(), ErrorKind::Conflict);
        let minimum = WalletError::BelowMinimumPayout {
            minimum: usd(1_000),
        };
        assert_eq!(minimum.kind(), ErrorKind::Validation);
        assert_eq!(minimum.field(), Some("amount"));
        assert_eq!(minimum.to_string(), "a payout must be at least 10.00 USD");
        assert_eq!(WalletError::InvalidAccountId.field(), Some("account_id"));
        assert_eq!(WalletError::InvalidReason.field(), Some("reason"));
        assert_eq!(WalletError::InvalidTransferId.field(), Some("transfer_id"));
        assert_eq!(WalletError::InvalidEarnings.field(), Some("net"));
        assert_eq!(WalletError::PayoutNotFound.field(), None);
    }
}
