//! Everything that can happen to a wallet, and the journal lines each event stands for.
//!
//! Stored names: the variant names are the event types and must never change; a change of shape
//! bumps `event_version` and adds an upcaster.

use chrono::{DateTime, Utc};
use cqrs_es::DomainEvent;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::escrow::{freelancer_payable_account, JournalLine, PAYOUTS_SENT_ACCOUNT};
use crate::gateway::Provider;
use crate::ids::{ContractId, MilestoneId, PayoutId, UserId};
use crate::money::Money;

/// Something that happened to a freelancer's wallet.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum WalletEvent {
    /// The freelancer registered a payout account at a provider, and payouts now go to it. A new
    /// id replaces that provider's earlier account and is pending until the provider verifies it;
    /// the provider's current id again (after another provider's) keeps its status.
    PayoutAccountRegistered {
        /// The wallet's freelancer (also this stream's id).
        freelancer_id: UserId,
        /// Where the account is held.
        provider: Provider,
        /// The provider's id of the account.
        account_id: String,
        /// When.
        registered_at: DateTime<Utc>,
    },
    /// The provider verified the account: payouts can go to it.
    PayoutAccountVerified {
        /// Where the account is held.
        provider: Provider,
        /// The provider's id of the account.
        account_id: String,
        /// When.
        verified_at: DateTime<Utc>,
    },
    /// A release's net amount became available to the freelancer.
    EarningsCredited {
        /// The wallet's freelancer (also this stream's id).
        freelancer_id: UserId,
        /// The `FundsReleased` event credited: each is credited once.
        release_event_id: Uuid,
        /// The contract whose escrow released it.
        contract_id: ContractId,
        /// The milestone released.
        milestone_id: MilestoneId,
        /// The amount credited, > 0.
        net: Money,
        /// When.
        credited_at: DateTime<Utc>,
    },
    /// The freelancer asked for a payout: `amount` moved from available to pending, to be sent
    /// to the account named here.
    PayoutRequested {
        /// The payout.
        payout_id: PayoutId,
        /// How much.
        amount: Money,
        /// The provider's id of the receiving account.
        account_id: String,
        /// Where the account is held.
        provider: Provider,
        /// When.
        requested_at: DateTime<Utc>,
    },
    /// The provider transferred the payout: `amount` moved from pending to paid out.
    PayoutPaid {
        /// The payout.
        payout_id: PayoutId,
        /// How much (the payout's amount).
        amount: Money,
        /// The provider's id of the transfer, for reconciliation.
        transfer_id: String,
        /// When.
        paid_at: DateTime<Utc>,
    },
    /// The transfer was refused, or the provider reported it failed after paying: `amount` is
    /// available again (out of pending, or out of paid out when `was_paid`).
    PayoutFailed {
        /// The payout.
        payout_id: PayoutId,
        /// How much (the payout's amount).
        amount: Money,
        /// Why, as the provider said.
        reason: String,
        /// Whether it had been paid (`PayoutPaid`) before it failed.
        was_paid: bool,
        /// When.
        failed_at: DateTime<Utc>,
    },
}

impl DomainEvent for WalletEvent {
    fn event_type(&self) -> String {
        let name = match self {
            Self::PayoutAccountRegistered { .. } => "PayoutAccountRegistered",
            Self::PayoutAccountVerified { .. } => "PayoutAccountVerified",
            Self::EarningsCredited { .. } => "EarningsCredited",
            Self::PayoutRequested { .. } => "PayoutRequested",
            Self::PayoutPaid { .. } => "PayoutPaid",
            Self::PayoutFailed { .. } => "PayoutFailed",
        };
        name.to_owned()
    }

    fn event_version(&self) -> String {
        crate::upcast::current_version(
            <super::Wallet as cqrs_es::Aggregate>::TYPE,
            &self.event_type(),
        )
        .to_owned()
    }
}

impl WalletEvent {
    /// The journal entry this event stands for in the same ledger as the escrow's (empty for
    /// events that move no money). The release already credited `freelancer_payable:{user}`, so
    /// credits and requests move nothing; a paid payout leaves it for `payouts_sent`, and a
    /// payout that fails after being paid comes back. Every entry sums to zero per currency.
    #[must_use]
    pub fn journal_lines(&self, freelancer: UserId) -> Vec<JournalLine> {
        let payable = freelancer_payable_account(freelancer);
        match self {
            Self::PayoutPaid { amount, .. } => vec![
                JournalLine::new(payable, amount.amount.saturating_neg(), amount.currency),
                JournalLine::new(PAYOUTS_SENT_ACCOUNT, amount.amount, amount.currency),
            ],
            Self::PayoutFailed {
                amount,
                was_paid: true,
                ..
            } => vec![
                JournalLine::new(
                    PAYOUTS_SENT_ACCOUNT,
                    amount.amount.saturating_neg(),
                    amount.currency,
                ),
                JournalLine::new(payable, amount.amount, amount.currency),
            ],
            Self::PayoutAccountRegistered { .. }
            | Self::PayoutAccountVerified { .. }
            | Self::EarningsCredited { .. }
            | Self::PayoutRequested { .. }
            | Self::PayoutFailed {
                was_paid: false, ..
            } => Vec::new(),
        }
    }
}
