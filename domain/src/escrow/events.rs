//! Everything that can happen to an escrow, and the double-entry journal each event stands for.
//!
//! Stored names: the variant names are the event types and must never change; a change of shape
//! bumps `event_version` and adds an upcaster.

use chrono::{DateTime, Utc};
use cqrs_es::DomainEvent;
use serde::{Deserialize, Serialize};

use crate::ids::{ContractId, MilestoneId, UserId};
use crate::money::{Currency, Money};

/// One milestone of the escrow's schedule: what will be deposited for it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScheduledMilestone {
    /// The milestone.
    pub milestone_id: MilestoneId,
    /// The amount the client deposits, exactly.
    pub amount: Money,
}

/// Why an escrow closed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EscrowCloseReason {
    /// The contract was cancelled; unreleased funds went back to the client.
    ContractCancelled,
}

/// Something that happened to an escrow.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum EscrowEvent {
    /// The escrow for a contract opened with its milestone schedule; nothing is held yet.
    EscrowOpened {
        /// The contract (also this stream's id).
        contract_id: ContractId,
        /// Who deposits.
        client_id: UserId,
        /// Who is paid.
        freelancer_id: UserId,
        /// The currency of every amount.
        currency: Currency,
        /// What each milestone will hold.
        milestones: Vec<ScheduledMilestone>,
        /// Platform fee in basis points, taken on release.
        fee_bps: u32,
        /// When.
        opened_at: DateTime<Utc>,
    },
    /// The client was charged for a milestone and the amount is now held.
    FundsDeposited {
        /// The milestone.
        milestone_id: MilestoneId,
        /// The milestone's amount.
        amount: Money,
        /// The payment gateway's charge id, for reconciliation.
        charge_id: String,
        /// When.
        deposited_at: DateTime<Utc>,
    },
    /// Held funds were paid out: `net` to the freelancer and `fee` to the platform;
    /// `fee + net = gross` exactly.
    FundsReleased {
        /// The milestone.
        milestone_id: MilestoneId,
        /// The amount leaving escrow.
        gross: Money,
        /// The platform's share, `floor(gross × bps / 10 000)`.
        fee: Money,
        /// The freelancer's share.
        net: Money,
        /// When.
        released_at: DateTime<Utc>,
    },
    /// A dispute froze a milestone's funds: they move only by settlement.
    FundsFrozen {
        /// The milestone.
        milestone_id: MilestoneId,
        /// The amount frozen (all that is held for it).
        amount: Money,
        /// When.
        frozen_at: DateTime<Utc>,
    },
    /// Held funds went back to the client (cancellation, or a dispute's refund part).
    FundsRefunded {
        /// The milestone.
        milestone_id: MilestoneId,
        /// The amount refunded.
        amount: Money,
        /// When.
        refunded_at: DateTime<Utc>,
    },
    /// The escrow takes no more deposits.
    EscrowClosed {
        /// Why.
        reason: EscrowCloseReason,
        /// When.
        closed_at: DateTime<Utc>,
    },
    /// The provider refunded a milestone's refunded amount to the card its deposit was charged
    /// to: the client's money is back where it came from.
    RefundIssued {
        /// The milestone.
        milestone_id: MilestoneId,
        /// The provider's id of the refund, for reconciliation.
        refund_id: String,
        /// The amount refunded to the card: exactly the milestone's `FundsRefunded` amount.
        amount: Money,
        /// When.
        issued_at: DateTime<Utc>,
    },
    /// The provider refused to refund a milestone's refunded amount to the card. Nothing moves:
    /// the money is still owed to the client (`client_refund`), and a later attempt may issue it.
    RefundFailed {
        /// The milestone.
        milestone_id: MilestoneId,
        /// Why, as the provider said.
        reason: String,
        /// When.
        failed_at: DateTime<Utc>,
    },
    /// The milestone's charge under `charge_key` is voided at the provider: no deposit records
    /// it (the deposit was refused or failed after charging). Nothing was held, so no money moves
    /// here; the milestone's next deposit charges under the next key.
    ChargeVoided {
        /// The milestone.
        milestone_id: MilestoneId,
        /// The provider-side idempotency key of the voided charge.
        charge_key: String,
        /// When.
        voided_at: DateTime<Utc>,
    },
}

impl DomainEvent for EscrowEvent {
    fn event_type(&self) -> String {
        let name = match self {
            Self::EscrowOpened { .. } => "EscrowOpened",
            Self::FundsDeposited { .. } => "FundsDeposited",
            Self::FundsReleased { .. } => "FundsReleased",
            Self::FundsFrozen { .. } => "FundsFrozen",
            Self::FundsRefunded { .. } => "FundsRefunded",
            Self::EscrowClosed { .. } => "EscrowClosed",
            Self::ChargeVoided { .. } => "ChargeVoided",
            Self::RefundIssued { .. } => "RefundIssued",
            Self::RefundFailed { .. } => "RefundFailed",
        };
        name.to_owned()
    }

    fn event_version(&self) -> String {
        crate::upcast::current_version(
            <super::Escrow as cqrs_es::Aggregate>::TYPE,
            &self.event_type(),
        )
        .to_owned()
    }
}

/// The account money leaves when a client funds a milestone.
pub const CLIENT_FUNDING_ACCOUNT: &str = "client_funding";
/// The account fees are paid into.
pub const PLATFORM_REVENUE_ACCOUNT: &str = "platform_revenue";
/// The account refunds are paid into, until the provider has refunded the card.
pub const CLIENT_REFUND_ACCOUNT: &str = "client_refund";
/// The account payouts to freelancers' payout accounts are paid into.
pub const PAYOUTS_SENT_ACCOUNT: &str = "payouts_sent";

/// The account holding one contract's escrowed funds: `escrow:{contract}`.
#[must_use]
pub fn escrow_account(contract: ContractId) -> String {
    format!("escrow:{contract}")
}

/// The account of what is owed to a freelancer: `freelancer_payable:{user}`.
#[must_use]
pub fn freelancer_payable_account(freelancer: UserId) -> String {
    format!("freelancer_payable:{freelancer}")
}

/// One line of a double-entry journal entry; the lines of an entry sum to zero per currency.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct JournalLine {
    /// The account, e.g. `escrow:{contract}`.
    pub account: String,
    /// Signed minor units: positive flows into the account, negative out of it.
    pub amount: i64,
    /// The currency.
    pub currency: Currency,
}

impl JournalLine {
    pub(crate) fn new(account: impl Into<String>, amount: i64, currency: Currency) -> Self {
        Self {
            account: account.into(),
            amount,
            currency,
        }
    }
}

impl EscrowEvent {
    /// The journal entry this event stands for (empty for events that move no money). Every
    /// entry sums to zero per currency, so a trial balance over all lines is always zero.
    #[must_use]
    pub fn journal_lines(&self, contract: ContractId, freelancer: UserId) -> Vec<JournalLine> {
        match self {
            Self::FundsDeposited { amount, .. } => vec![
                JournalLine::new(
                    CLIENT_FUNDING_ACCOUNT,
                    amount.amount.saturating_neg(),
                    amount.currency,
                ),
                JournalLine::new(escrow_account(contract), amount.amount, amount.currency),
            ],
            Self::FundsReleased {
                gross, fee, net, ..
            } => vec![
                JournalLine::new(
                    escrow_account(contract),
                    gross.amount.saturating_neg(),
                    gross.currency,
                ),
                JournalLine::new(
                    freelancer_payable_account(freelancer),
                    net.amount,
                    net.currency,
                ),
                JournalLine::new(PLATFORM_REVENUE_ACCOUNT, fee.amount, fee.currency),
            ],
            Self::FundsRefunded { amount, .. } => vec![
                JournalLine::new(
                    escrow_account(contract),
                    amount.amount.saturating_neg(),
                    amount.currency,
                ),
                JournalLine::new(CLIENT_REFUND_ACCOUNT, amount.amount, amount.currency),
            ],
            // The card refund settles what the refund owed the client.
            Self::RefundIssued { amount, .. } => vec![
                JournalLine::new(
                    CLIENT_REFUND_ACCOUNT,
                    amount.amount.saturating_neg(),
                    amount.currency,
                ),
                JournalLine::new(CLIENT_FUNDING_ACCOUNT, amount.amount, amount.currency),
            ],
            Self::EscrowOpened { .. }
            | Self::FundsFrozen { .. }
            | Self::EscrowClosed { .. }
            | Self::ChargeVoided { .. }
            | Self::RefundFailed { .. } => Vec::new(),
        }
    }
}
