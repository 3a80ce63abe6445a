//! Everything that can happen to a contract, and the value types its events carry.
//!
//! Stored names: the variant names are the event types and must never change; a change of shape
//! bumps `event_version` and adds an upcaster.

use chrono::{DateTime, Utc};
use cqrs_es::DomainEvent;
use serde::{Deserialize, Serialize};

pub use crate::gig::ContractTerms;
use crate::gig::MilestoneTerms;
use crate::ids::{ContractId, DisputeId, GigId, MilestoneId, ProposalId, UserId};
use crate::money::Money;

/// A side of the contract.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Party {
    /// The hiring client.
    Client,
    /// The hired freelancer.
    Freelancer,
}

/// Something that happened to a contract.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ContractEvent {
    /// The contract started from an accepted proposal; every milestone awaits funds.
    ContractStarted {
        /// The contract.
        contract_id: ContractId,
        /// The gig it was hired from.
        gig_id: GigId,
        /// The accepted proposal.
        proposal_id: ProposalId,
        /// The hiring client.
        client_id: UserId,
        /// The hired freelancer.
        freelancer_id: UserId,
        /// The agreed milestones.
        milestones: Vec<MilestoneTerms>,
        /// The terms, fixed for the contract's life.
        terms: ContractTerms,
        /// When it started.
        started_at: DateTime<Utc>,
    },
    /// The milestone's amount is held in escrow; the freelancer can start work.
    MilestoneFunded {
        /// The milestone.
        milestone_id: MilestoneId,
        /// When the funding was recorded.
        funded_at: DateTime<Utc>,
    },
    /// The freelancer delivered work; the client's review window runs until `review_due_at`.
    MilestoneSubmitted {
        /// The milestone.
        milestone_id: MilestoneId,
        /// What was delivered (1–5 000 characters).
        note: String,
        /// Up to 10 http(s) links to the work.
        links: Vec<String>,
        /// When it was submitted.
        submitted_at: DateTime<Utc>,
        /// When it is approved automatically if the client has not acted.
        review_due_at: DateTime<Utc>,
    },
    /// The client sent the work back; the review window stops.
    MilestoneChangesRequested {
        /// The milestone.
        milestone_id: MilestoneId,
        /// What to change (1–2 000 characters).
        reason: String,
        /// Which request this is for the milestone, from 1.
        revision: u32,
        /// When.
        requested_at: DateTime<Utc>,
    },
    /// The work was accepted (by the client, or by the timer when `auto`); its funds are
    /// released.
    MilestoneApproved {
        /// The milestone.
        milestone_id: MilestoneId,
        /// The milestone's amount, released from escrow.
        amount: Money,
        /// Whether the review window ran out rather than the client approving.
        auto: bool,
        /// When.
        approved_at: DateTime<Utc>,
    },
    /// Every milestone is approved, resolved or cancelled and at least one was paid; the
    /// 14-day review period starts.
    ContractCompleted {
        /// When.
        completed_at: DateTime<Utc>,
    },
    /// A party cancelled the contract; the listed milestones (never submitted) are cancelled and
    /// any funds held for them are refunded.
    ContractCancelled {
        /// Why (1–2 000 characters).
        reason: String,
        /// Who cancelled.
        cancelled_by: UserId,
        /// The milestones that were awaiting funds or funded.
        cancelled_milestones: Vec<MilestoneId>,
        /// When.
        cancelled_at: DateTime<Utc>,
    },
    /// A party disputed a milestone; its funds freeze until an admin resolves it.
    DisputeOpened {
        /// The dispute.
        dispute_id: DisputeId,
        /// The disputed milestone.
        milestone_id: MilestoneId,
        /// Who opened it.
        opened_by: UserId,
        /// Why (1–5 000 characters).
        reason: String,
        /// When.
        opened_at: DateTime<Utc>,
    },
    /// An admin split the disputed milestone's amount: `release` to the freelancer (less the
    /// fee), `refund` to the client; they add up to the milestone amount exactly.
    DisputeResolved {
        /// The dispute.
        dispute_id: DisputeId,
        /// The disputed milestone.
        milestone_id: MilestoneId,
        /// Released to the freelancer, before the platform fee.
        release: Money,
        /// Refunded to the client.
        refund: Money,
        /// The admin who resolved it.
        resolved_by: UserId,
        /// When.
        resolved_at: DateTime<Utc>,
    },
    /// A party reviewed the other; hidden until `ReviewsRevealed`.
    ReviewLeft {
        /// Who wrote it.
        reviewer_id: UserId,
        /// Who it is about.
        reviewee_id: UserId,
        /// The reviewer's side.
        reviewer: Party,
        /// 1–5.
        rating: u8,
        /// At most 5 000 characters.
        text: String,
        /// When.
        reviewed_at: DateTime<Utc>,
    },
    /// Both reviews are in or the review period ended: reviews become public.
    ReviewsRevealed {
        /// When.
        revealed_at: DateTime<Utc>,
    },
}

impl DomainEvent for ContractEvent {
    fn event_type(&self) -> String {
        let name = match self {
            Self::ContractStarted { .. } => "ContractStarted",
            Self::MilestoneFunded { .. } => "MilestoneFunded",
            Self::MilestoneSubmitted { .. } => "MilestoneSubmitted",
            Self::MilestoneChangesRequested { .. } => "MilestoneChangesRequested",
            Self::MilestoneApproved { .. } => "MilestoneApproved",
            Self::ContractCompleted { .. } => "ContractCompleted",
            Self::ContractCancelled { .. } => "ContractCancelled",
            Self::DisputeOpened { .. } => "DisputeOpened",
            Self::DisputeResolved { .. } => "DisputeResolved",
            Self::ReviewLeft { .. } => "ReviewLeft",
            Self::ReviewsRevealed { .. } => "ReviewsRevealed",
        };
        name.to_owned()
    }

    fn event_version(&self) -> String {
        crate::upcast::current_version(
            <super::Contract as cqrs_es::Aggregate>::TYPE,
            &self.event_type(),
        )
        .to_owned()
    }
}
