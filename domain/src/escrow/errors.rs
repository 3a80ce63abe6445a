//! Why an escrow command was refused: one variant per rule, with a message a frontend can show.
//!
//! A person who is not a party gets `EscrowNotFound`, exactly as if it did not exist.

use crate::error::{impl_domain_error, ErrorKind};
use crate::gateway::GatewayError;
use crate::money::{Currency, Money, MAX_AMOUNT};

/// A refused escrow command.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EscrowError {
    /// The escrow does not exist, or the caller is not a party.
    #[error("the escrow does not exist")]
    EscrowNotFound,
    /// A process-only command sent by a person.
    #[error("only the platform itself can do this")]
    NotSystem,
    /// OpenEscrow for an existing escrow with different facts.
    #[error("another escrow already uses this contract id")]
    EscrowIdTaken,
    /// OpenEscrow without milestones.
    #[error("an escrow needs at least one milestone")]
    NoMilestones,
    /// A zero, negative, too large or foreign-currency scheduled amount.
    #[error(
        "milestone amounts must be greater than zero, at most {max} minor units and in the \
         escrow's currency",
        max = MAX_AMOUNT
    )]
    InvalidMilestoneAmount,
    /// Two scheduled milestones with the same id.
    #[error("each milestone needs its own id")]
    DuplicateMilestoneId,
    /// A fee rate above 100 %.
    #[error("the fee rate must be 0 to 10000 basis points")]
    InvalidFeeRate,
    /// Someone other than the client funding a milestone.
    #[error("only the contract's client can fund its milestones")]
    NotTheClient,
    /// A deposit into a closed escrow.
    #[error("the escrow is closed and takes no more deposits")]
    EscrowClosed,
    /// The milestone is not in the schedule.
    #[error("the milestone is not part of this escrow")]
    MilestoneNotFound,
    /// A second deposit for a milestone.
    #[error("the milestone has already been funded")]
    AlreadyDeposited,
    /// A missing or overlong idempotency key.
    #[error("an idempotency key of 1 to 255 characters is required")]
    InvalidIdempotencyKey,
    /// The payment gateway did not take the charge; nothing was charged or written.
    #[error("the payment could not be taken: {0}")]
    Gateway(GatewayError),
    /// Moving funds of a milestone that was never funded.
    #[error("the milestone has not been funded")]
    NotDeposited,
    /// Moving funds of a milestone whose funds already left.
    #[error("no funds are held for this milestone")]
    NothingHeld,
    /// Releasing frozen funds other than by settlement.
    #[error("the milestone's funds are frozen by a dispute and move only by settlement")]
    MilestoneFrozen,
    /// Settling funds that are not frozen.
    #[error("the milestone's funds are not frozen by a dispute")]
    NotFrozen,
    /// A negative release.
    #[error("the amount released cannot be negative")]
    NegativeRelease,
    /// A negative refund.
    #[error("the amount refunded cannot be negative")]
    NegativeRefund,
    /// Release or refund in another currency.
    #[error("release and refund must be in the escrow's currency {expected}")]
    SettlementCurrencyMismatch {
        /// The escrow's currency.
        expected: Currency,
    },
    /// Release and refund not adding up to what is held.
    #[error("release and refund must add up to the held amount {held}")]
    SettlementDoesNotMatchHeld {
        /// What is held for the milestone.
        held: Money,
    },
    /// A card refund recorded for a milestone nothing was refunded for.
    #[error("nothing was refunded for this milestone")]
    NothingRefunded,
    /// A card refund recorded again under another refund id, or a failure after it was issued.
    #[error("the refund was already issued to the card")]
    RefundAlreadyIssued,
    /// A card refund of another amount than the milestone's refund.
    #[error("the card refund must be exactly the amount refunded, {refunded}")]
    RefundAmountMismatch {
        /// What was refunded for the milestone.
        refunded: Money,
    },
    /// A missing or overlong refund id.
    #[error("a refund id of 1 to 255 characters is required")]
    InvalidRefundId,
    /// A missing or overlong failure reason.
    #[error("a reason of 1 to 1000 characters is required")]
    InvalidReason,
    /// A movement that would break a balance invariant; refused, never written.
    #[error("the escrow refused a movement that would break its balances: {0}")]
    InvariantViolated(&'static str),
}

impl EscrowError {
    /// What kind of refusal this is. A declined charge is a conflict (retrying will not help);
    /// an unreachable or slow gateway is `Unavailable`.
    #[must_use]
    pub const fn kind(&self) -> ErrorKind {
        match self {
            Self::EscrowNotFound | Self::MilestoneNotFound => ErrorKind::NotFound,
            Self::NotSystem | Self::NotTheClient => ErrorKind::Forbidden,
            Self::Gateway(GatewayError::Declined(_) | GatewayError::Voided) => ErrorKind::Conflict,
            Self::Gateway(GatewayError::Unavailable(_) | GatewayError::Timeout) => {
                ErrorKind::Unavailable
            }
            Self::EscrowIdTaken
            | Self::EscrowClosed
            | Self::AlreadyDeposited
            | Self::NotDeposited
            | Self::NothingHeld
            | Self::MilestoneFrozen
            | Self::NotFrozen
            | Self::NothingRefunded
            | Self::RefundAlreadyIssued
            | Self::InvariantViolated(_) => ErrorKind::Conflict,
            Self::NoMilestones
            | Self::InvalidMilestoneAmount
            | Self::DuplicateMilestoneId
            | Self::InvalidFeeRate
            | Self::InvalidIdempotencyKey
            | Self::NegativeRelease
            | Self::NegativeRefund
            | Self::SettlementCurrencyMismatch { .. }
            | Self::SettlementDoesNotMatchHeld { .. }
            | Self::RefundAmountMismatch { .. }
            | Self::InvalidRefundId
            | Self::InvalidReason => ErrorKind::Validation,
        }
    }

    /// For validation errors, the input field at fault.
    #[must_use]
    pub const fn field(&self) -> Option<&'static str> {
        match self {
            Self::NoMilestones | Self::InvalidMilestoneAmount | Self::DuplicateMilestoneId => {
                Some("milestones")
            }
            Self::InvalidFeeRate => Some("fee_bps"),
            Self::InvalidIdempotencyKey => Some("idempotency_key"),
            Self::NegativeRelease
            | Self::SettlementCurrencyMismatch { .. }
            | Self::SettlementDoesNotMatchHeld { .. } => Some("release"),
            Self::NegativeRefund => Some("refund"),
            Self::RefundAmountMismatch { .. } => Some("amount"),
            Self::InvalidRefundId => Some("refund_id"),
            Self::InvalidReason => Some("reason"),
            _ => None,
        }
    }
}

impl From<GatewayError> for EscrowError {
    fn from(error: GatewayError) -> Self {
        Self::Gateway(error)
    }
}

impl_domain_error!(EscrowError);
