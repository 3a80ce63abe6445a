//! Everything that can happen to a gig, and the value types its events carry.
//!
//! Stored names: the variant names are the event types and must never change; a change of shape
//! bumps `event_version` and adds an upcaster.

use chrono::{DateTime, NaiveDate, Utc};
use cqrs_es::DomainEvent;
use serde::{Deserialize, Serialize};

use crate::ids::{ContractId, GigId, MilestoneId, ProposalId, UserId};
use crate::money::{Currency, Money};

/// What the client is prepared to pay. Serialised with a `kind` tag:
/// `{ "kind": "fixed", "amount": Money }` or `{ "kind": "hourly", "min": Money, "max": Money }`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Budget {
    /// A fixed price for the whole job.
    Fixed {
        /// The price; greater than zero.
        amount: Money,
    },
    /// An hourly rate range.
    Hourly {
        /// The lowest rate; greater than zero.
        min: Money,
        /// The highest rate; at least `min`, same currency.
        max: Money,
    },
}

impl Budget {
    /// The budget's currency, which proposals on the gig must use.
    #[must_use]
    pub const fn currency(&self) -> Currency {
        match self {
            Self::Fixed { amount } => amount.currency,
            Self::Hourly { min, .. } => min.currency,
        }
    }
}

/// One milestone of a proposal, and later of the contract and escrow: the ids chosen at
/// submission are kept all the way through.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct MilestoneTerms {
    /// Chosen by the caller when the proposal is submitted.
    pub milestone_id: MilestoneId,
    /// What will be delivered (1–200 characters, trimmed).
    pub title: String,
    /// The price, greater than zero, in the gig's currency.
    pub amount: Money,
    /// When it should be delivered, if agreed.
    pub due_date: Option<NaiveDate>,
}

/// The terms a hire fixes for the contract it starts, for the contract's whole life.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContractTerms {
    /// The currency of every amount in the contract.
    pub currency: Currency,
    /// Platform fee in basis points, applied when funds are released.
    pub fee_bps: u32,
    /// Days the client has to review a submission before it is approved automatically.
    pub review_window_days: u32,
    /// Change requests allowed per milestone; after that only approval or a dispute remain.
    pub max_revisions: u32,
}

/// Something that happened to a gig.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum GigEvent {
    /// A client posted a gig; it is open for proposals.
    GigPosted {
        /// The gig.
        gig_id: GigId,
        /// The client who owns it.
        client_id: UserId,
        /// Trimmed, 1–200 characters.
        title: String,
        /// Trimmed, 1–20 000 characters.
        description: String,
        /// 1–20 distinct skills, trimmed and lower-case.
        skills: Vec<String>,
        /// The budget; its currency is the gig's currency.
        budget: Budget,
        /// An optional deadline after the posting date.
        deadline: Option<NaiveDate>,
        /// When it was posted.
        posted_at: DateTime<Utc>,
    },
    /// The owner changed some of the gig's details; `None` fields are unchanged.
    GigRevised {
        /// The new title.
        title: Option<String>,
        /// The new description.
        description: Option<String>,
        /// The new skills, normalised.
        skills: Option<Vec<String>>,
        /// The new budget.
        budget: Option<Budget>,
        /// The new deadline.
        deadline: Option<NaiveDate>,
        /// When it was revised.
        revised_at: DateTime<Utc>,
    },
    /// A freelancer proposed to do the gig; the proposal is pending.
    ProposalSubmitted {
        /// The proposal.
        proposal_id: ProposalId,
        /// Who proposed.
        freelancer_id: UserId,
        /// Trimmed, 1–10 000 characters.
        cover_letter: String,
        /// 1–20 milestones in the gig's currency.
        milestones: Vec<MilestoneTerms>,
        /// The sum of the milestones.
        bid: Money,
        /// When it was submitted.
        submitted_at: DateTime<Utc>,
    },
    /// The freelancer withdrew a pending proposal (they may propose again).
    ProposalWithdrawn {
        /// The proposal.
        proposal_id: ProposalId,
        /// Who withdrew it.
        freelancer_id: UserId,
        /// When.
        withdrawn_at: DateTime<Utc>,
    },
    /// The owner rejected a pending proposal (the freelancer may propose again).
    ProposalRejected {
        /// The proposal.
        proposal_id: ProposalId,
        /// Whose proposal it was.
        freelancer_id: UserId,
        /// When.
        rejected_at: DateTime<Utc>,
    },
    /// The owner hired the freelancer: the gig is Hired and a contract and its escrow start from
    /// these facts (so this event alone also gives time-to-hire). Other pending proposals stay
    /// pending. Version 2; version 1 carried the terms as four loose fields (see
    /// `crate::upcast`).
    ProposalAccepted {
        /// The gig.
        gig_id: GigId,
        /// The accepted proposal.
        proposal_id: ProposalId,
        /// The contract (and escrow) stream to start.
        contract_id: ContractId,
        /// The hiring client.
        client_id: UserId,
        /// The hired freelancer.
        freelancer_id: UserId,
        /// The agreed milestones, with the proposal's milestone ids.
        milestones: Vec<MilestoneTerms>,
        /// The contract's terms: the gig's currency and the platform's terms at the hire.
        terms: ContractTerms,
        /// When the proposal was accepted.
        accepted_at: DateTime<Utc>,
        /// When the gig was posted.
        posted_at: DateTime<Utc>,
    },
    /// The owner stopped taking proposals; pending ones may still be accepted.
    GigClosed {
        /// When.
        closed_at: DateTime<Utc>,
    },
    /// The owner cancelled the gig before hiring anyone.
    GigCancelled {
        /// When.
        cancelled_at: DateTime<Utc>,
    },
}

impl DomainEvent for GigEvent {
    fn event_type(&self) -> String {
        let name = match self {
            Self::GigPosted { .. } => "GigPosted",
            Self::GigRevised { .. } => "GigRevised",
            Self::ProposalSubmitted { .. } => "ProposalSubmitted",
            Self::ProposalWithdrawn { .. } => "ProposalWithdrawn",
            Self::ProposalRejected { .. } => "ProposalRejected",
            Self::ProposalAccepted { .. } => "ProposalAccepted",
            Self::GigClosed { .. } => "GigClosed",
            Self::GigCancelled { .. } => "GigCancelled",
        };
        name.to_owned()
    }

    fn event_version(&self) -> String {
        crate::upcast::current_version(<super::Gig as cqrs_es::Aggregate>::TYPE, &self.event_type())
            .to_owned()
    }
}
