//! Why a contract command was refused: one variant per rule, with a message a frontend can show.
//!
//! A person who is not a party gets `ContractNotFound`, exactly as if the contract did not exist,
//! so a contract's existence never leaks.

use crate::error::{impl_domain_error, ErrorKind};
use crate::money::{Currency, Money, MAX_AMOUNT};

/// A refused contract command.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ContractError {
    /// The contract does not exist, or the caller is not a party.
    #[error("the contract does not exist")]
    ContractNotFound,
    /// A process-only command sent by a person.
    #[error("only the platform itself can do this")]
    NotSystem,
    /// StartContract reusing a contract id for a different proposal.
    #[error("another contract already uses this id")]
    ContractIdTaken,
    /// An admin who is not a party trying a party's action.
    #[error("only the contract's client or freelancer can do this")]
    NotAParty,
    /// A client-only action by the freelancer.
    #[error("only the contract's client can do this")]
    NotTheClient,
    /// A freelancer-only action by the client.
    #[error("only the contract's freelancer can do this")]
    NotTheFreelancer,
    /// ResolveDispute by someone without the admin role.
    #[error("only an administrator can resolve a dispute")]
    NotAnAdmin,
    /// ResolveDispute by an admin who is the contract's client or freelancer.
    #[error("an administrator who is a party to the contract cannot resolve its dispute")]
    PartyCannotResolve,
    /// StartContract without milestones.
    #[error("a contract needs at least one milestone")]
    NoMilestones,
    /// A zero, negative, too large or foreign-currency milestone amount in StartContract.
    #[error(
        "milestone amounts must be greater than zero, at most {max} minor units and in the \
         contract's currency",
        max = MAX_AMOUNT
    )]
    InvalidMilestoneAmount,
    /// Two milestones with the same id in StartContract.
    #[error("each milestone needs its own id")]
    DuplicateMilestoneId,
    /// A fee rate above 100 %.
    #[error("the fee rate must be 0 to 10000 basis points")]
    InvalidFeeRate,
    /// A review window of 0 or more than 365 days.
    #[error("the review window must be 1 to 365 days")]
    InvalidReviewWindow,
    /// The milestone is not part of this contract.
    #[error("the milestone is not part of this contract")]
    MilestoneNotFound,
    /// The contract is completed or cancelled.
    #[error("the contract is no longer active")]
    ContractNotActive,
    /// Work submitted before the milestone was funded.
    #[error("the milestone has not been funded yet")]
    MilestoneNotFunded,
    /// Work submitted on a milestone that is under review or closed.
    #[error("this milestone is not awaiting work: it is under review or already closed")]
    MilestoneNotAwaitingWork,
    /// Note length.
    #[error("the note must be 1 to 5000 characters")]
    InvalidNote,
    /// More than 10 links.
    #[error("at most 10 links can be attached")]
    TooManyLinks,
    /// A link that is not a short enough http(s) URL.
    #[error("each link must be an http or https URL of at most 2000 characters")]
    InvalidLink,
    /// Review of a milestone with no submitted work.
    #[error("the milestone has no submitted work awaiting review")]
    MilestoneNotSubmitted,
    /// Approving twice.
    #[error("the milestone has already been approved")]
    MilestoneAlreadyApproved,
    /// Reason length (the limit depends on the command).
    #[error("the reason must be 1 to {max} characters")]
    InvalidReason {
        /// The command's limit.
        max: usize,
    },
    /// All change requests for the milestone are used up.
    #[error("the milestone has used all {max} change requests; only approval or a dispute remain")]
    RevisionLimitReached {
        /// The contract's limit.
        max: u32,
    },
    /// Cancelling while delivered or disputed work is pending.
    #[error(
        "the contract cannot be cancelled while delivered or disputed work is pending: \
         approve it or resolve the dispute first"
    )]
    DeliveredWorkPending,
    /// A dispute id that is already used.
    #[error("a dispute with this id already exists")]
    DisputeIdTaken,
    /// A second dispute on a milestone.
    #[error("a dispute is already open for this milestone")]
    DisputeAlreadyOpen,
    /// Disputing a milestone that is unfunded or closed.
    #[error("only a funded milestone that is not yet approved can be disputed")]
    MilestoneNotDisputable,
    /// The dispute is not part of this contract.
    #[error("the dispute does not exist")]
    DisputeNotFound,
    /// Resolving twice.
    #[error("the dispute has already been resolved")]
    DisputeAlreadyResolved,
    /// A negative release.
    #[error("the amount released cannot be negative")]
    NegativeRelease,
    /// A negative refund.
    #[error("the amount refunded cannot be negative")]
    NegativeRefund,
    /// Release or refund in another currency.
    #[error("release and refund must be in the contract's currency {expected}")]
    SettlementCurrencyMismatch {
        /// The contract's currency.
        expected: Currency,
    },
    /// Release and refund not adding up to the milestone amount.
    #[error("release and refund must add up to the milestone amount {amount}")]
    SettlementDoesNotMatchAmount {
        /// The milestone's amount.
        amount: Money,
    },
    /// Reviewing before completion.
    #[error("reviews can be left once the contract is completed")]
    ContractNotCompleted,
    /// Reviewing after the 14-day review period.
    #[error("the 14-day review period has ended")]
    ReviewPeriodOver,
    /// Reviewing twice.
    #[error("you have already reviewed this contract")]
    AlreadyReviewed,
    /// A rating outside 1–5.
    #[error("the rating must be 1 to 5")]
    InvalidRating,
    /// Review text too long.
    #[error("the review text must be at most 5000 characters")]
    ReviewTextTooLong,
    /// A deadline computed from `at` falls outside the representable dates.
    #[error("the date is out of range")]
    DateOutOfRange,
}

impl ContractError {
    /// What kind of refusal this is.
    #[must_use]
    pub const fn kind(&self) -> ErrorKind {
        match self {
            Self::ContractNotFound | Self::MilestoneNotFound | Self::DisputeNotFound => {
                ErrorKind::NotFound
            }
            Self::NotSystem
            | Self::NotAParty
            | Self::NotTheClient
            | Self::NotTheFreelancer
            | Self::NotAnAdmin
            | Self::PartyCannotResolve => ErrorKind::Forbidden,
            Self::ContractIdTaken
            | Self::ContractNotActive
            | Self::MilestoneNotFunded
            | Self::MilestoneNotAwaitingWork
            | Self::MilestoneNotSubmitted
            | Self::MilestoneAlreadyApproved
            | Self::RevisionLimitReached { .. }
            | Self::DeliveredWorkPending
            | Self::DisputeIdTaken
            | Self::DisputeAlreadyOpen
            | Self::MilestoneNotDisputable
            | Self::DisputeAlreadyResolved
            | Self::ContractNotCompleted
            | Self::ReviewPeriodOver
            | Self::AlreadyReviewed => ErrorKind::Conflict,
            Self::NoMilestones
            | Self::InvalidMilestoneAmount
            | Self::DuplicateMilestoneId
            | Self::InvalidFeeRate
            | Self::InvalidReviewWindow
            | Self::InvalidNote
            | Self::TooManyLinks
            | Self::InvalidLink
            | Self::InvalidReason { .. }
            | Self::NegativeRelease
            | Self::NegativeRefund
            | Self::SettlementCurrencyMismatch { .. }
            | Self::SettlementDoesNotMatchAmount { .. }
            | Self::InvalidRating
            | Self::ReviewTextTooLong
            | Self::DateOutOfRange => ErrorKind::Validation,
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
            Self::InvalidReviewWindow => Some("review_window_days"),
            Self::InvalidNote => Some("note"),
            Self::TooManyLinks | Self::InvalidLink => Some("links"),
            Self::InvalidReason { .. } => Some("reason"),
            Self::NegativeRelease
            | Self::SettlementCurrencyMismatch { .. }
            | Self::SettlementDoesNotMatchAmount { .. } => Some("release"),
            Self::NegativeRefund => Some("refund"),
            Self::InvalidRating => Some("rating"),
            Self::ReviewTextTooLong => Some("text"),
            Self::DateOutOfRange => Some("at"),
            _ => None,
        }
    }
}

impl_domain_error!(ContractError);
