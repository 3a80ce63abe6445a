//! What can be asked of a contract. Every command carries the actor who sends it and `at`, the
//! command's time stamped by the command service; process commands are sent as
//! [`Actor::system`] and refuse anyone else.
//!
//! The constructors at the bottom turn the events that trigger a contract step into the
//! command, so the command service's follow-ups and the process managers build them one way.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::actor::Actor;
use crate::escrow::EscrowEvent;
use crate::gig::{GigEvent, MilestoneTerms};
use crate::ids::{ContractId, DisputeId, GigId, MilestoneId, ProposalId, UserId};
use crate::money::{Currency, Money};

/// A request to change a contract.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ContractCommand {
    /// Process (on `ProposalAccepted`): start the contract from the accepted proposal's facts.
    /// Repeating it for the same proposal is a no-op.
    StartContract {
        /// The contract, as chosen at acceptance.
        contract_id: ContractId,
        /// The gig.
        gig_id: GigId,
        /// The accepted proposal.
        proposal_id: ProposalId,
        /// The hiring client.
        client_id: UserId,
        /// The hired freelancer.
        freelancer_id: UserId,
        /// The contract's currency.
        currency: Currency,
        /// The agreed milestones.
        milestones: Vec<MilestoneTerms>,
        /// Platform fee in basis points.
        fee_bps: u32,
        /// Review window in days.
        review_window_days: u32,
        /// Change requests allowed per milestone.
        max_revisions: u32,
        /// Must be the system.
        actor: Actor,
        /// The command's time.
        at: DateTime<Utc>,
    },
    /// Process (on `FundsDeposited`): the milestone's funds are in escrow.
    MarkMilestoneFunded {
        /// The milestone.
        milestone_id: MilestoneId,
        /// Must be the system.
        actor: Actor,
        /// The command's time.
        at: DateTime<Utc>,
    },
    /// The freelancer delivers work on a funded milestone.
    SubmitMilestone {
        /// The milestone.
        milestone_id: MilestoneId,
        /// 1–5 000 characters after trimming.
        note: String,
        /// Up to 10 http(s) URLs of at most 2 000 characters.
        links: Vec<String>,
        /// The contract's freelancer.
        actor: Actor,
        /// The command's time; the review window starts here.
        at: DateTime<Utc>,
    },
    /// The client sends submitted work back.
    RequestChanges {
        /// The milestone.
        milestone_id: MilestoneId,
        /// 1–2 000 characters after trimming.
        reason: String,
        /// The contract's client.
        actor: Actor,
        /// The command's time.
        at: DateTime<Utc>,
    },
    /// The client accepts submitted work.
    ApproveMilestone {
        /// The milestone.
        milestone_id: MilestoneId,
        /// The contract's client.
        actor: Actor,
        /// The command's time.
        at: DateTime<Utc>,
    },
    /// Process (timer): approve work the client left unreviewed past its review window. A
    /// no-op if the client acted first or the window has not ended.
    AutoApproveMilestone {
        /// The milestone.
        milestone_id: MilestoneId,
        /// Must be the system.
        actor: Actor,
        /// The command's time, compared with the review deadline.
        at: DateTime<Utc>,
    },
    /// Either party cancels an active contract with no delivered work pending.
    CancelContract {
        /// 1–2 000 characters after trimming.
        reason: String,
        /// The client or the freelancer.
        actor: Actor,
        /// The command's time.
        at: DateTime<Utc>,
    },
    /// Either party disputes a funded milestone.
    OpenDispute {
        /// The new dispute's id, chosen by the caller.
        dispute_id: DisputeId,
        /// The milestone.
        milestone_id: MilestoneId,
        /// 1–5 000 characters after trimming.
        reason: String,
        /// The client or the freelancer.
        actor: Actor,
        /// The command's time.
        at: DateTime<Utc>,
    },
    /// An admin splits a disputed milestone's amount between the parties.
    ResolveDispute {
        /// The dispute.
        dispute_id: DisputeId,
        /// To the freelancer (before the fee); ≥ 0, in the contract's currency.
        release: Money,
        /// To the client; ≥ 0; `release + refund` must equal the milestone amount.
        refund: Money,
        /// An admin.
        actor: Actor,
        /// The command's time.
        at: DateTime<Utc>,
    },
    /// A party reviews the other after completion.
    LeaveReview {
        /// 1–5.
        rating: u8,
        /// At most 5 000 characters (trimmed; may be empty).
        text: String,
        /// The client or the freelancer.
        actor: Actor,
        /// The command's time; must be within 14 days of completion.
        at: DateTime<Utc>,
    },
    /// Process (timer): reveal reviews once the review period is over. A no-op if already
    /// revealed or not yet due.
    RevealReviews {
        /// Must be the system.
        actor: Actor,
        /// The command's time, compared with the end of the review period.
        at: DateTime<Utc>,
    },
}

impl ContractCommand {
    /// Who sends the command (the system for process steps).
    #[must_use]
    pub fn actor(&self) -> &Actor {
        match self {
            Self::StartContract { actor, .. }
            | Self::MarkMilestoneFunded { actor, .. }
            | Self::SubmitMilestone { actor, .. }
            | Self::RequestChanges { actor, .. }
            | Self::ApproveMilestone { actor, .. }
            | Self::AutoApproveMilestone { actor, .. }
            | Self::CancelContract { actor, .. }
            | Self::OpenDispute { actor, .. }
            | Self::ResolveDispute { actor, .. }
            | Self::LeaveReview { actor, .. }
            | Self::RevealReviews { actor, .. } => actor,
        }
    }

    /// `StartContract` for a `ProposalAccepted` event (the contract's id is its
    /// `contract_id`); `None` for any other gig event.
    #[must_use]
    pub fn start_from_acceptance(event: &GigEvent, at: DateTime<Utc>) -> Option<Self> {
        match event {
            GigEvent::ProposalAccepted {
                gig_id,
                proposal_id,
                contract_id,
                client_id,
                freelancer_id,
                milestones,
                terms,
                ..
            } => Some(Self::StartContract {
                contract_id: *contract_id,
                gig_id: *gig_id,
                proposal_id: *proposal_id,
                client_id: *client_id,
                freelancer_id: *freelancer_id,
                currency: terms.currency,
                milestones: milestones.clone(),
                fee_bps: terms.fee_bps,
                review_window_days: terms.review_window_days,
                max_revisions: terms.max_revisions,
                actor: Actor::system(),
                at,
            }),
            _ => None,
        }
    }

    /// The contract step an escrow event triggers (on the contract with the escrow's id):
    /// `FundsDeposited` → `MarkMilestoneFunded`; `None` for the others.
    #[must_use]
    pub fn follow_up_to_escrow(event: &EscrowEvent, at: DateTime<Utc>) -> Option<Self> {
        match event {
            EscrowEvent::FundsDeposited { milestone_id, .. } => Some(Self::MarkMilestoneFunded {
                milestone_id: *milestone_id,
                actor: Actor::system(),
                at,
            }),
            _ => None,
        }
    }
}
