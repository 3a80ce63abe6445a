//! Why a wallet command was refused: one variant per rule, with a message a frontend can show.
//!
//! A person who is not the wallet's freelancer gets `WalletNotFound`, exactly as if it did not
//! exist.

use crate::error::{impl_domain_error, ErrorKind};
use crate::money::{Currency, Money, MAX_AMOUNT};

/// A refused wallet command.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WalletError {
    /// The wallet has no history yet (for a process step), or the caller is not its freelancer.
    #[error("the wallet does not exist")]
    WalletNotFound,
    /// A process-only command sent by a person.
    #[error("only the platform itself can do this")]
    NotSystem,
    /// A person without the freelancer role acting on a wallet.
    #[error("only freelancers have wallets")]
    NotAFreelancer,
    /// A missing or overlong payout account id.
    #[error("a payout account id of 1 to 255 characters is required")]
    InvalidAccountId,
    /// A provider notice verifying an account this wallet never registered.
    #[error("no payout account with this id is registered")]
    UnknownPayoutAccount,
    /// CreditEarnings addressed to a wallet that belongs to someone else.
    #[error("this wallet belongs to another freelancer")]
    WalletOfAnotherFreelancer,
    /// Earnings that are negative or above the most a command may carry.
    #[error(
        "earnings must not be negative and at most {max} minor units",
        max = MAX_AMOUNT
    )]
    InvalidEarnings,
    /// A credit whose sum with the earnings so far would not fit the wallet's balance.
    #[error("the wallet's {currency} balance would be too large")]
    BalanceOverflow {
        /// The currency of the balance.
        currency: Currency,
    },
    /// A payout id already used for a different payout.
    #[error("another payout already uses this payout id")]
    PayoutIdTaken,
    /// A payout without a verified payout account to send it to.
    #[error("register a payout account and wait for the provider to verify it first")]
    NoVerifiedPayoutAccount,
    /// A payout amount above the most a command may carry.
    #[error("a payout may be at most {max} minor units", max = MAX_AMOUNT)]
    InvalidPayoutAmount,
    /// A payout below the currency's minimum payout.
    #[error("a payout must be at least {minimum}")]
    BelowMinimumPayout {
        /// The smallest payout in the requested currency.
        minimum: Money,
    },
    /// A payout in a currency the wallet was never credited in.
    #[error("there are no earnings in {currency} to pay out")]
    NoEarningsInCurrency {
        /// The requested currency.
        currency: Currency,
    },
    /// A payout above what is available.
    #[error("only {available} is available to pay out")]
    InsufficientFunds {
        /// What is available in the requested currency.
        available: Money,
    },
    /// MarkPayoutPaid or MarkPayoutFailed for a payout this wallet never requested.
    #[error("the payout does not exist")]
    PayoutNotFound,
    /// MarkPayoutPaid for a payout already paid under another transfer id.
    #[error("the payout was already paid by another transfer")]
    PayoutAlreadyPaid,
    /// MarkPayoutPaid for a payout that failed (its money is available again).
    #[error("the payout failed and its money is available again; request a new payout")]
    PayoutAlreadyFailed,
    /// A missing or overlong transfer id.
    #[error("a transfer id of 1 to 255 characters is required")]
    InvalidTransferId,
    /// A missing or overlong failure reason.
    #[error("a reason of 1 to 1000 characters is required")]
    InvalidReason,
    /// A movement that would break a balance invariant; refused, never written.
    #[error("the wallet refused a movement that would break its balances: {0}")]
    InvariantViolated(&'static str),
}

impl WalletError {
    /// What kind of refusal this is.
    #[must_use]
    pub const fn kind(&self) -> ErrorKind {
        match self {
            Self::WalletNotFound | Self::UnknownPayoutAccount | Self::PayoutNotFound => {
                ErrorKind::NotFound
            }
            Self::NotSystem | Self::NotAFreelancer => ErrorKind::Forbidden,
            Self::WalletOfAnotherFreelancer
            | Self::BalanceOverflow { .. }
            | Self::PayoutIdTaken
            | Self::NoVerifiedPayoutAccount
            | Self::NoEarningsInCurrency { .. }
            | Self::InsufficientFunds { .. }
            | Self::PayoutAlreadyPaid
            | Self::PayoutAlreadyFailed
            | Self::InvariantViolated(_) => ErrorKind::Conflict,
            Self::InvalidAccountId
            | Self::InvalidEarnings
            | Self::InvalidPayoutAmount
            | Self::BelowMinimumPayout { .. }
            | Self::InvalidTransferId
            | Self::InvalidReason => ErrorKind::Validation,
        }
    }

    /// For validation errors, the input field at fault.
    #[must_use]
    pub const fn field(&self) -> Option<&'static str> {
        match self {
            Self::InvalidAccountId => Some("account_id"),
            Self::InvalidEarnings => Some("net"),
            Self::InvalidPayoutAmount | Self::BelowMinimumPayout { .. } => Some("amount"),
            Self::InvalidTransferId => Some("transfer_id"),
            Self::InvalidReason => Some("reason"),
            _ => None,
        }
    }
}

impl_domain_error!(WalletError);
