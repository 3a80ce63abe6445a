//! What can be asked of a gig. Every command carries the actor who sends it and `at`, the
//! command's time stamped by the command service (the domain never reads a clock).

use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};

use super::events::{Budget, MilestoneTerms};
use crate::actor::Actor;
use crate::ids::{ContractId, GigId, ProposalId};

/// A request to change a gig.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum GigCommand {
    /// A client posts a gig (creates the stream).
    PostGig {
        /// The new gig's id, chosen by the caller.
        gig_id: GigId,
        /// 1–200 characters after trimming.
        title: String,
        /// 1–20 000 characters after trimming.
        description: String,
        /// 1–20 skills, each 1–50 characters; normalised to trimmed lower case, duplicates
        /// dropped.
        skills: Vec<String>,
        /// Amounts greater than zero; an hourly range with `min ≤ max` in one currency.
        budget: Budget,
        /// Strictly after the date of `at`.
        deadline: Option<NaiveDate>,
        /// The posting client (role `client`).
        actor: Actor,
        /// The command's time.
        at: DateTime<Utc>,
    },
    /// The owner revises an open gig; `None` leaves a field as it is, at least one is needed.
    ReviseGig {
        /// A new title.
        title: Option<String>,
        /// A new description.
        description: Option<String>,
        /// New skills.
        skills: Option<Vec<String>>,
        /// A new budget; its currency cannot change once proposals were received.
        budget: Option<Budget>,
        /// A new deadline.
        deadline: Option<NaiveDate>,
        /// The owner.
        actor: Actor,
        /// The command's time.
        at: DateTime<Utc>,
    },
    /// A freelancer proposes to do the gig.
    SubmitProposal {
        /// The new proposal's id, chosen by the caller.
        proposal_id: ProposalId,
        /// 1–10 000 characters after trimming.
        cover_letter: String,
        /// 1–20 milestones, each with its own caller-chosen id; the bid is their sum.
        milestones: Vec<MilestoneTerms>,
        /// The proposing freelancer (role `freelancer`, not the owner).
        actor: Actor,
        /// The command's time.
        at: DateTime<Utc>,
    },
    /// The proposing freelancer withdraws a pending proposal.
    WithdrawProposal {
        /// The proposal.
        proposal_id: ProposalId,
        /// Its freelancer.
        actor: Actor,
        /// The command's time.
        at: DateTime<Utc>,
    },
    /// The owner rejects a pending proposal.
    RejectProposal {
        /// The proposal.
        proposal_id: ProposalId,
        /// The owner.
        actor: Actor,
        /// The command's time.
        at: DateTime<Utc>,
    },
    /// The owner hires the proposal's freelancer on the platform's current terms.
    AcceptProposal {
        /// The proposal.
        proposal_id: ProposalId,
        /// The contract to create, chosen by the caller.
        contract_id: ContractId,
        /// Platform fee, 0–10 000 basis points.
        fee_bps: u32,
        /// Review window, 1–365 days.
        review_window_days: u32,
        /// Change requests allowed per milestone.
        max_revisions: u32,
        /// The owner.
        actor: Actor,
        /// The command's time.
        at: DateTime<Utc>,
    },
    /// The owner stops taking proposals.
    CloseGig {
        /// The owner.
        actor: Actor,
        /// The command's time.
        at: DateTime<Utc>,
    },
    /// The owner cancels a gig nobody was hired for.
    CancelGig {
        /// The owner.
        actor: Actor,
        /// The command's time.
        at: DateTime<Utc>,
    },
}

impl GigCommand {
    /// Who sends the command (the system for process steps).
    #[must_use]
    pub fn actor(&self) -> &Actor {
        match self {
            Self::PostGig { actor, .. }
            | Self::ReviseGig { actor, .. }
            | Self::SubmitProposal { actor, .. }
            | Self::WithdrawProposal { actor, .. }
            | Self::RejectProposal { actor, .. }
            | Self::AcceptProposal { actor, .. }
            | Self::CloseGig { actor, .. }
            | Self::CancelGig { actor, .. } => actor,
        }
    }
}
