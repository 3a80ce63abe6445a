//! Why a gig command was refused: one variant per rule, with a message a frontend can show.

use crate::error::{impl_domain_error, ErrorKind};
use crate::money::{Currency, MAX_AMOUNT};

/// A refused gig command.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GigError {
    /// The gig does not exist.
    #[error("the gig does not exist")]
    GigNotFound,
    /// PostGig for a gig id that is already used.
    #[error("a gig with this id already exists")]
    AlreadyPosted,
    /// Posting needs the client role.
    #[error("only clients can post gigs")]
    NotAClient,
    /// Proposing needs the freelancer role.
    #[error("only freelancers can submit proposals")]
    NotAFreelancer,
    /// An owner-only command sent by someone else.
    #[error("only the gig's owner can do this")]
    NotOwner,
    /// The owner proposing on their own gig.
    #[error("you cannot propose on your own gig")]
    OwnerCannotPropose,
    /// Only the proposing freelancer may withdraw a proposal.
    #[error("only the freelancer who submitted the proposal can withdraw it")]
    NotProposalAuthor,
    /// Title length.
    #[error("the title must be 1 to 200 characters")]
    InvalidTitle,
    /// Description length.
    #[error("the description must be 1 to 20000 characters")]
    InvalidDescription,
    /// Number of distinct skills.
    #[error("a gig needs 1 to 20 distinct skills")]
    InvalidSkillCount,
    /// A skill's length.
    #[error("each skill must be 1 to 50 characters")]
    InvalidSkill,
    /// A zero or negative budget amount.
    #[error("budget amounts must be greater than zero")]
    BudgetNotPositive,
    /// A budget amount above [`MAX_AMOUNT`].
    #[error("budget amounts must be at most {max} minor units", max = MAX_AMOUNT)]
    BudgetTooLarge,
    /// Hourly minimum above maximum.
    #[error("the hourly minimum must not exceed the maximum")]
    HourlyRangeInverted,
    /// Hourly minimum and maximum in different currencies.
    #[error("the hourly minimum and maximum must be in the same currency")]
    BudgetCurrencyMismatch,
    /// A deadline on or before the command's date.
    #[error("the deadline must be a date in the future")]
    DeadlineNotInFuture,
    /// ReviseGig with no field to change.
    #[error("nothing to revise: give at least one field")]
    NothingToRevise,
    /// Changing the budget's currency after proposals in the old one arrived.
    #[error("the budget's currency cannot change once proposals have been received")]
    CurrencyLocked,
    /// ReviseGig on a gig that is not open.
    #[error("only an open gig can be revised")]
    NotOpenForRevision,
    /// SubmitProposal on a gig that is not open.
    #[error("the gig is not open for proposals")]
    NotOpenForProposals,
    /// CloseGig on a gig that is not open.
    #[error("only an open gig can be closed")]
    NotOpenForClosing,
    /// Someone was already hired.
    #[error("someone has already been hired for this gig")]
    AlreadyHired,
    /// The gig was cancelled.
    #[error("the gig has been cancelled")]
    AlreadyCancelled,
    /// A proposal id that is already used on this gig.
    #[error("a proposal with this id already exists")]
    ProposalIdTaken,
    /// The freelancer already has a pending proposal on the gig.
    #[error("you already have a pending proposal on this gig")]
    DuplicatePendingProposal,
    /// The gig holds its 500 live (pending) proposals.
    #[error("the gig already has 500 pending proposals")]
    TooManyProposals,
    /// The gig has taken its 2 000 submissions in all.
    #[error("the gig has reached its limit of 2000 proposals in all")]
    TooManySubmissions,
    /// Cover letter length.
    #[error("the cover letter must be 1 to 10000 characters")]
    InvalidCoverLetter,
    /// Number of milestones.
    #[error("a proposal needs 1 to 20 milestones")]
    InvalidMilestoneCount,
    /// A milestone title's length.
    #[error("each milestone title must be 1 to 200 characters")]
    InvalidMilestoneTitle,
    /// A zero or negative milestone amount.
    #[error("milestone amounts must be greater than zero")]
    MilestoneAmountNotPositive,
    /// A milestone amount above [`MAX_AMOUNT`].
    #[error("milestone amounts must be at most {max} minor units", max = MAX_AMOUNT)]
    MilestoneAmountTooLarge,
    /// A milestone in another currency than the gig's.
    #[error("milestone amounts must be in the gig's currency {expected}")]
    MilestoneCurrencyMismatch {
        /// The gig's currency.
        expected: Currency,
    },
    /// A milestone due date before the command's date.
    #[error("a milestone's due date cannot be in the past")]
    MilestoneDueDateInPast,
    /// Two milestones with the same id.
    #[error("each milestone needs its own id")]
    DuplicateMilestoneId,
    /// Milestones whose sum does not fit in an amount.
    #[error("the milestones add up to more than an amount can hold")]
    BidTooLarge,
    /// The proposal is not on this gig.
    #[error("the proposal does not exist")]
    ProposalNotFound,
    /// The proposal was already withdrawn, rejected or accepted.
    #[error("the proposal is no longer pending")]
    ProposalNotPending,
    /// A fee rate above 100 %.
    #[error("the fee rate must be 0 to 10000 basis points")]
    InvalidFeeRate,
    /// A review window of 0 or more than 365 days.
    #[error("the review window must be 1 to 365 days")]
    InvalidReviewWindow,
}

impl GigError {
    /// What kind of refusal this is.
    #[must_use]
    pub const fn kind(&self) -> ErrorKind {
        match self {
            Self::GigNotFound | Self::ProposalNotFound => ErrorKind::NotFound,
            Self::NotAClient
            | Self::NotAFreelancer
            | Self::NotOwner
            | Self::OwnerCannotPropose
            | Self::NotProposalAuthor => ErrorKind::Forbidden,
            Self::AlreadyPosted
            | Self::CurrencyLocked
            | Self::NotOpenForRevision
            | Self::NotOpenForProposals
            | Self::NotOpenForClosing
            | Self::AlreadyHired
            | Self::AlreadyCancelled
            | Self::ProposalIdTaken
            | Self::DuplicatePendingProposal
            | Self::TooManyProposals
            | Self::TooManySubmissions
            | Self::ProposalNotPending => ErrorKind::Conflict,
            Self::InvalidTitle
            | Self::InvalidDescription
            | Self::InvalidSkillCount
            | Self::InvalidSkill
            | Self::BudgetNotPositive
            | Self::BudgetTooLarge
            | Self::HourlyRangeInverted
            | Self::BudgetCurrencyMismatch
            | Self::DeadlineNotInFuture
            | Self::NothingToRevise
            | Self::InvalidCoverLetter
            | Self::InvalidMilestoneCount
            | Self::InvalidMilestoneTitle
            | Self::MilestoneAmountNotPositive
            | Self::MilestoneAmountTooLarge
            | Self::MilestoneCurrencyMismatch { .. }
            | Self::MilestoneDueDateInPast
            | Self::DuplicateMilestoneId
            | Self::BidTooLarge
            | Self::InvalidFeeRate
            | Self::InvalidReviewWindow => ErrorKind::Validation,
        }
    }

    /// For validation errors, the input field at fault.
    #[must_use]
    pub const fn field(&self) -> Option<&'static str> {
        match self {
            Self::InvalidTitle => Some("title"),
            Self::InvalidDescription => Some("description"),
            Self::InvalidSkillCount | Self::InvalidSkill => Some("skills"),
            Self::BudgetNotPositive
            | Self::BudgetTooLarge
            | Self::HourlyRangeInverted
            | Self::BudgetCurrencyMismatch => Some("budget"),
            Self::DeadlineNotInFuture => Some("deadline"),
            Self::InvalidCoverLetter => Some("cover_letter"),
            Self::InvalidMilestoneCount
            | Self::InvalidMilestoneTitle
            | Self::MilestoneAmountNotPositive
            | Self::MilestoneAmountTooLarge
            | Self::MilestoneCurrencyMismatch { .. }
            | Self::MilestoneDueDateInPast
            | Self::DuplicateMilestoneId
            | Self::BidTooLarge => Some("milestones"),
            Self::InvalidFeeRate => Some("fee_bps"),
            Self::InvalidReviewWindow => Some("review_window_days"),
            _ => None,
        }
    }
}

impl_domain_error!(GigError);
