//! The contract aggregate: the agreed work, milestone by milestone, from start to reviews.
//!
//! Stream id = contract id. The contract decides what happens to the work (submission, review,
//! approval, disputes, cancellation, reviews); the money moves in the escrow stream, driven by
//! this stream's events. Non-parties are told the contract does not exist.

mod commands;
mod errors;
mod events;

use std::collections::BTreeSet;

use chrono::{DateTime, Days, Utc};
use cqrs_es::event_sink::EventSink;
use cqrs_es::Aggregate;
use serde::{Deserialize, Serialize};

pub use commands::ContractCommand;
pub use errors::ContractError;
pub use events::{ContractEvent, ContractTerms, Party};

use crate::actor::{ActingAs, Actor, Authorise, Role};
use crate::gig::{MilestoneTerms, MAX_REVIEW_WINDOW_DAYS};
use crate::ids::{ContractId, DisputeId, GigId, MilestoneId, ProposalId, UserId};
use crate::money::{Money, BPS_PER_WHOLE};
use crate::snapshot::SnapshotSchema;
use crate::validate::{is_web_link, trimmed_within};

/// The platform fee when nothing else is configured: 1 000 bps = 10 %.
pub const DEFAULT_FEE_BPS: u32 = 1_000;
/// The client's review window when nothing else is configured.
pub const DEFAULT_REVIEW_WINDOW_DAYS: u32 = 14;
/// Change requests per milestone when nothing else is configured.
pub const DEFAULT_MAX_REVISIONS: u32 = 2;
/// How long after completion the parties may review each other; reviews are revealed then at
/// the latest.
pub const REVIEW_PERIOD_DAYS: u64 = 14;
/// Most links a submission may carry.
pub const MAX_LINKS: usize = 10;
/// Longest link accepted, in characters.
pub const MAX_LINK_CHARS: usize = 2_000;

/// When the review period of a contract completed at `completed_at` ends (the `RevealReviews`
/// timer's due time); `None` only for dates beyond chrono's range.
#[must_use]
pub fn review_period_ends_at(completed_at: DateTime<Utc>) -> Option<DateTime<Utc>> {
    completed_at.checked_add_days(Days::new(REVIEW_PERIOD_DAYS))
}

/// Where a contract is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ContractStatus {
    /// Work is under way.
    Active,
    /// Every milestone is approved, resolved or cancelled, at least one paid.
    Completed,
    /// Cancelled by a party.
    Cancelled,
}

/// Where a milestone is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum MilestoneStatus {
    /// The client has not funded it yet.
    AwaitingFunds,
    /// Its amount is in escrow; the freelancer can work.
    Funded,
    /// Work was delivered and is under review.
    Submitted,
    /// The client sent the work back.
    ChangesRequested,
    /// Accepted; its funds are released.
    Approved,
    /// Under dispute; its funds are frozen.
    Disputed,
    /// The dispute was resolved; its funds are settled.
    Resolved,
    /// Cancelled with the contract before any work was delivered.
    Cancelled,
}

impl MilestoneStatus {
    /// Whether nothing more can happen to the milestone.
    #[must_use]
    pub const fn is_final(self) -> bool {
        matches!(self, Self::Approved | Self::Resolved | Self::Cancelled)
    }
}

/// A contract between a client and a freelancer. `Default` is the contract before it started.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Contract {
    state: Option<ContractState>,
}

/// Bump on any change to the shape or meaning of `ContractState` (or what it holds).
impl SnapshotSchema for Contract {
    const SNAPSHOT_VERSION: i32 = 1;
}

#[derive(Clone, Debug, Serialize, Deserialize)]
struct ContractState {
    id: ContractId,
    gig_id: GigId,
    proposal_id: ProposalId,
    client_id: UserId,
    freelancer_id: UserId,
    terms: ContractTerms,
    status: ContractStatus,
    milestones: Vec<MilestoneRecord>,
    disputes: Vec<DisputeRecord>,
    completed_at: Option<DateTime<Utc>>,
    client_reviewed: bool,
    freelancer_reviewed: bool,
    reviews_revealed: bool,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
struct MilestoneRecord {
    id: MilestoneId,
    amount: Money,
    status: MilestoneStatus,
    changes_requested: u32,
    review_due_at: Option<DateTime<Utc>>,
    /// A dispute on it was resolved with a release above zero.
    resolved_with_release: bool,
}

impl MilestoneRecord {
    /// Whether the freelancer was paid for it: approved, or resolved with a release above zero.
    fn paid(&self) -> bool {
        match self.status {
            MilestoneStatus::Approved => true,
            MilestoneStatus::Resolved => self.resolved_with_release,
            _ => false,
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
struct DisputeRecord {
    id: DisputeId,
    milestone_id: MilestoneId,
    open: bool,
}

/// The facts `StartContract` carries, gathered for validation.
struct Start {
    contract_id: ContractId,
    gig_id: GigId,
    proposal_id: ProposalId,
    client_id: UserId,
    freelancer_id: UserId,
    milestones: Vec<MilestoneTerms>,
    terms: ContractTerms,
}

impl Aggregate for Contract {
    const TYPE: &'static str = "contract";
    type Command = ContractCommand;
    type Event = ContractEvent;
    type Error = ContractError;
    type Services = ();

    async fn handle(
        &mut self,
        command: Self::Command,
        _services: &Self::Services,
        sink: &EventSink<Self>,
    ) -> Result<(), Self::Error> {
        self.authorise(&command)?;
        match command {
            ContractCommand::StartContract {
                contract_id,
                gig_id,
                proposal_id,
                client_id,
                freelancer_id,
                currency,
                milestones,
                fee_bps,
                review_window_days,
                max_revisions,
                actor,
                at,
            } => {
                let start = Start {
                    contract_id,
                    gig_id,
                    proposal_id,
                    client_id,
                    freelancer_id,
                    milestones,
                    terms: ContractTerms {
                        currency,
                        fee_bps,
                        review_window_days,
                        max_revisions,
                    },
                };
                if let Some(event) = self.start(start, &actor, at)? {
                    sink.write(event, self).await;
                }
            }
            ContractCommand::MarkMilestoneFunded {
                milestone_id,
                actor,
                at,
            } => {
                if let Some(event) = self.mark_funded(milestone_id, &actor, at)? {
                    sink.write(event, self).await;
                }
            }
            ContractCommand::SubmitMilestone {
                milestone_id,
                note,
                links,
                actor,
                at,
            } => {
                let event = self.submit(milestone_id, &note, &links, &actor, at)?;
                sink.write(event, self).await;
            }
            ContractCommand::RequestChanges {
                milestone_id,
                reason,
                actor,
                at,
            } => {
                let event = self.request_changes(milestone_id, &reason, &actor, at)?;
                sink.write(event, self).await;
            }
            ContractCommand::ApproveMilestone {
                milestone_id,
                actor,
                at,
            } => {
                let event = self.approve(milestone_id, &actor, at)?;
                sink.write(event, self).await;
                self.complete_if_done(at, sink).await;
            }
            ContractCommand::AutoApproveMilestone {
                milestone_id,
                actor,
                at,
            } => {
                if let Some(event) = self.auto_approve(milestone_id, &actor, at)? {
                    sink.write(event, self).await;
                    self.complete_if_done(at, sink).await;
                }
            }
            ContractCommand::CancelContract { reason, actor, at } => {
                let event = self.cancel(&reason, &actor, at)?;
                sink.write(event, self).await;
            }
            ContractCommand::OpenDispute {
                dispute_id,
                milestone_id,
                reason,
                actor,
                at,
            } => {
                let event = self.open_dispute(dispute_id, milestone_id, &reason, &actor, at)?;
                sink.write(event, self).await;
            }
            ContractCommand::ResolveDispute {
                dispute_id,
                release,
                refund,
                actor,
                at,
            } => {
                let event = self.resolve_dispute(dispute_id, release, refund, &actor, at)?;
                sink.write(event, self).await;
                self.complete_if_done(at, sink).await;
            }
            ContractCommand::LeaveReview {
                rating,
                text,
                actor,
                at,
            } => {
                let event = self.review(rating, &text, &actor, at)?;
                sink.write(event, self).await;
                // The second review reveals both at once: nobody waits for the timer.
                if self.state.as_ref().is_some_and(|state| {
                    state.client_reviewed && state.freelancer_reviewed && !state.reviews_revealed
                }) {
                    sink.write(ContractEvent::ReviewsRevealed { revealed_at: at }, self)
                        .await;
                }
            }
            ContractCommand::RevealReviews { actor, at } => {
                if let Some(event) = self.reveal(&actor, at)? {
                    sink.write(event, self).await;
                }
            }
        }
        Ok(())
    }

    fn apply(&mut self, event: Self::Event) {
        if let ContractEvent::ContractStarted {
            contract_id,
            gig_id,
            proposal_id,
            client_id,
            freelancer_id,
            milestones,
            terms,
            ..
        } = event
        {
            self.state = Some(ContractState {
                id: contract_id,
                gig_id,
                proposal_id,
                client_id,
                freelancer_id,
                terms,
                status: ContractStatus::Active,
                milestones: milestones
                    .into_iter()
                    .map(|milestone| MilestoneRecord {
                        id: milestone.milestone_id,
                        amount: milestone.amount,
                        status: MilestoneStatus::AwaitingFunds,
                        changes_requested: 0,
                        review_due_at: None,
                        resolved_with_release: false,
                    })
                    .collect(),
                disputes: Vec::new(),
                completed_at: None,
                client_reviewed: false,
                freelancer_reviewed: false,
                reviews_revealed: false,
            });
            return;
        }
        let Some(state) = self.state.as_mut() else {
            return;
        };
        match event {
            ContractEvent::ContractStarted { .. } => {}
            ContractEvent::MilestoneFunded { milestone_id, .. } => {
                state.set_milestone(milestone_id, MilestoneStatus::Funded, None);
            }
            ContractEvent::MilestoneSubmitted {
                milestone_id,
                review_due_at,
                ..
            } => {
                state.set_milestone(
                    milestone_id,
                    MilestoneStatus::Submitted,
                    Some(review_due_at),
                );
            }
            ContractEvent::MilestoneChangesRequested {
                milestone_id,
                revision,
                ..
            } => {
                state.set_milestone(milestone_id, MilestoneStatus::ChangesRequested, None);
                if let Some(milestone) = state.milestone_mut(milestone_id) {
                    milestone.changes_requested = revision;
                }
            }
            ContractEvent::MilestoneApproved { milestone_id, .. } => {
                state.set_milestone(milestone_id, MilestoneStatus::Approved, None);
            }
            ContractEvent::ContractCompleted { completed_at } => {
                state.status = ContractStatus::Completed;
                state.completed_at = Some(completed_at);
            }
            ContractEvent::ContractCancelled {
                cancelled_milestones,
                ..
            } => {
                state.status = ContractStatus::Cancelled;
                for milestone_id in cancelled_milestones {
                    state.set_milestone(milestone_id, MilestoneStatus::Cancelled, None);
                }
            }
            ContractEvent::DisputeOpened {
                dispute_id,
                milestone_id,
                ..
            } => {
                state.set_milestone(milestone_id, MilestoneStatus::Disputed, None);
                state.disputes.push(DisputeRecord {
                    id: dispute_id,
                    milestone_id,
                    open: true,
                });
            }
            ContractEvent::DisputeResolved {
                dispute_id,
                milestone_id,
                release,
                ..
            } => {
                state.set_milestone(milestone_id, MilestoneStatus::Resolved, None);
                if let Some(milestone) = state.milestone_mut(milestone_id) {
                    milestone.resolved_with_release = release.is_positive();
                }
                if let Some(dispute) = state.disputes.iter_mut().find(|d| d.id == dispute_id) {
                    dispute.open = false;
                }
            }
            ContractEvent::ReviewLeft { reviewer, .. } => match reviewer {
                Party::Client => state.client_reviewed = true,
                Party::Freelancer => state.freelancer_reviewed = true,
            },
            ContractEvent::ReviewsRevealed { .. } => state.reviews_revealed = true,
        }
    }
}

impl ContractState {
    fn milestone(&self, milestone_id: MilestoneId) -> Result<&MilestoneRecord, ContractError> {
        self.milestones
            .iter()
            .find(|milestone| milestone.id == milestone_id)
            .ok_or(ContractError::MilestoneNotFound)
    }

    fn milestone_mut(&mut self, milestone_id: MilestoneId) -> Option<&mut MilestoneRecord> {
        self.milestones
            .iter_mut()
            .find(|milestone| milestone.id == milestone_id)
    }

    fn set_milestone(
        &mut self,
        milestone_id: MilestoneId,
        status: MilestoneStatus,
        review_due_at: Option<DateTime<Utc>>,
    ) {
        if let Some(milestone) = self.milestone_mut(milestone_id) {
            milestone.status = status;
            milestone.review_due_at = review_due_at;
        }
    }

    fn party(&self, user_id: UserId) -> Option<Party> {
        if user_id == self.client_id {
            Some(Party::Client)
        } else if user_id == self.freelancer_id {
            Some(Party::Freelancer)
        } else {
            None
        }
    }

    fn require_active(&self) -> Result<(), ContractError> {
        if self.status == ContractStatus::Active {
            Ok(())
        } else {
            Err(ContractError::ContractNotActive)
        }
    }

    fn is_ready_to_complete(&self) -> bool {
        self.status == ContractStatus::Active
            && self.milestones.iter().all(|m| m.status.is_final())
            && self.milestones.iter().any(MilestoneRecord::paid)
    }
}

impl Contract {
    /// The contract's id, once started.
    #[must_use]
    pub fn id(&self) -> Option<ContractId> {
        self.state.as_ref().map(|state| state.id)
    }

    /// The gig it was hired from.
    #[must_use]
    pub fn gig_id(&self) -> Option<GigId> {
        self.state.as_ref().map(|state| state.gig_id)
    }

    /// The accepted proposal.
    #[must_use]
    pub fn proposal_id(&self) -> Option<ProposalId> {
        self.state.as_ref().map(|state| state.proposal_id)
    }

    /// The hiring client.
    #[must_use]
    pub fn client_id(&self) -> Option<UserId> {
        self.state.as_ref().map(|state| state.client_id)
    }

    /// The hired freelancer.
    #[must_use]
    pub fn freelancer_id(&self) -> Option<UserId> {
        self.state.as_ref().map(|state| state.freelancer_id)
    }

    /// Which side `user_id` is on, if a party.
    #[must_use]
    pub fn party(&self, user_id: UserId) -> Option<Party> {
        self.state.as_ref().and_then(|state| state.party(user_id))
    }

    /// The contract's terms.
    #[must_use]
    pub fn terms(&self) -> Option<ContractTerms> {
        self.state.as_ref().map(|state| state.terms)
    }

    /// The contract's status, once started.
    #[must_use]
    pub fn status(&self) -> Option<ContractStatus> {
        self.state.as_ref().map(|state| state.status)
    }

    /// The milestones in their agreed order.
    #[must_use]
    pub fn milestone_ids(&self) -> Vec<MilestoneId> {
        self.state.as_ref().map_or_else(Vec::new, |state| {
            state.milestones.iter().map(|m| m.id).collect()
        })
    }

    /// A milestone's status.
    #[must_use]
    pub fn milestone_status(&self, milestone_id: MilestoneId) -> Option<MilestoneStatus> {
        self.milestone(milestone_id).map(|m| m.status)
    }

    /// A milestone's agreed amount.
    #[must_use]
    pub fn milestone_amount(&self, milestone_id: MilestoneId) -> Option<Money> {
        self.milestone(milestone_id).map(|m| m.amount)
    }

    /// How many changes the client has requested on a milestone.
    #[must_use]
    pub fn changes_requested(&self, milestone_id: MilestoneId) -> Option<u32> {
        self.milestone(milestone_id).map(|m| m.changes_requested)
    }

    /// When a submitted milestone is approved automatically (`None` unless it is Submitted).
    #[must_use]
    pub fn review_due_at(&self, milestone_id: MilestoneId) -> Option<DateTime<Utc>> {
        self.milestone(milestone_id).and_then(|m| m.review_due_at)
    }

    /// The milestone a dispute is about.
    #[must_use]
    pub fn dispute_milestone(&self, dispute_id: DisputeId) -> Option<MilestoneId> {
        self.dispute(dispute_id).map(|d| d.milestone_id)
    }

    /// Whether a dispute is still open (`None` if it does not exist).
    #[must_use]
    pub fn is_dispute_open(&self, dispute_id: DisputeId) -> Option<bool> {
        self.dispute(dispute_id).map(|d| d.open)
    }

    /// When the contract completed.
    #[must_use]
    pub fn completed_at(&self) -> Option<DateTime<Utc>> {
        self.state.as_ref().and_then(|state| state.completed_at)
    }

    /// Whether `party` has left their review.
    #[must_use]
    pub fn has_reviewed(&self, party: Party) -> bool {
        self.state.as_ref().is_some_and(|state| match party {
            Party::Client => state.client_reviewed,
            Party::Freelancer => state.freelancer_reviewed,
        })
    }

    /// Whether the reviews have been revealed.
    #[must_use]
    pub fn reviews_revealed(&self) -> bool {
        self.state
            .as_ref()
            .is_some_and(|state| state.reviews_revealed)
    }

    fn milestone(&self, milestone_id: MilestoneId) -> Option<&MilestoneRecord> {
        self.state
            .as_ref()
            .and_then(|state| state.milestone(milestone_id).ok())
    }

    fn dispute(&self, dispute_id: DisputeId) -> Option<&DisputeRecord> {
        self.state
            .as_ref()
            .and_then(|state| state.disputes.iter().find(|d| d.id == dispute_id))
    }

    fn existing(&self) -> Result<&ContractState, ContractError> {
        self.state.as_ref().ok_or(ContractError::ContractNotFound)
    }

    /// The caller's side; a non-party is told the contract does not exist unless they are an
    /// admin (who may see it anyway).
    fn party_of(&self, actor: &Actor) -> Result<(&ContractState, Party), ContractError> {
        let state = self.existing()?;
        match state.party(actor.user_id) {
            Some(party) => Ok((state, party)),
            None if actor.has_role(Role::Admin) => Err(ContractError::NotAParty),
            None => Err(ContractError::ContractNotFound),
        }
    }

    fn as_client(&self, actor: &Actor) -> Result<&ContractState, ContractError> {
        match self.party_of(actor)? {
            (state, Party::Client) => Ok(state),
            (_, Party::Freelancer) => Err(ContractError::NotTheClient),
        }
    }

    fn as_freelancer(&self, actor: &Actor) -> Result<&ContractState, ContractError> {
        match self.party_of(actor)? {
            (state, Party::Freelancer) => Ok(state),
            (_, Party::Client) => Err(ContractError::NotTheFreelancer),
        }
    }

    /// An admin who is not a party: who may resolve a dispute.
    fn as_judge(&self, actor: &Actor) -> Result<&ContractState, ContractError> {
        let state = self.existing()?;
        if !actor.has_role(Role::Admin) {
            return Err(if state.party(actor.user_id).is_some() {
                ContractError::NotAnAdmin
            } else {
                ContractError::ContractNotFound
            });
        }
        // Nobody judges their own case: an admin who is the client or the freelancer is a party
        // first.
        if state.party(actor.user_id).is_some() {
            return Err(ContractError::PartyCannotResolve);
        }
        Ok(state)
    }

    fn as_system(&self, actor: &Actor) -> Result<&ContractState, ContractError> {
        if !actor.is_system() {
            return Err(ContractError::NotSystem);
        }
        self.existing()
    }

    async fn complete_if_done(&mut self, at: DateTime<Utc>, sink: &EventSink<Self>) {
        if self
            .state
            .as_ref()
            .is_some_and(ContractState::is_ready_to_complete)
        {
            sink.write(ContractEvent::ContractCompleted { completed_at: at }, self)
                .await;
        }
    }

    fn start(
        &self,
        start: Start,
        actor: &Actor,
        at: DateTime<Utc>,
    ) -> Result<Option<ContractEvent>, ContractError> {
        if !actor.is_system() {
            return Err(ContractError::NotSystem);
        }
        if let Some(state) = &self.state {
            // Started already: a redelivered ProposalAccepted is fine, a reused id is not.
            return if state.gig_id == start.gig_id && state.proposal_id == start.proposal_id {
                Ok(None)
            } else {
                Err(ContractError::ContractIdTaken)
            };
        }
        if start.milestones.is_empty() {
            return Err(ContractError::NoMilestones);
        }
        let mut ids = BTreeSet::new();
        for milestone in &start.milestones {
            if !ids.insert(milestone.milestone_id) {
                return Err(ContractError::DuplicateMilestoneId);
            }
            if !milestone.amount.is_positive()
                || milestone.amount.exceeds_maximum()
                || milestone.amount.currency != start.terms.currency
            {
                return Err(ContractError::InvalidMilestoneAmount);
            }
        }
        if start.terms.fee_bps > BPS_PER_WHOLE {
            return Err(ContractError::InvalidFeeRate);
        }
        if !(1..=MAX_REVIEW_WINDOW_DAYS).contains(&start.terms.review_window_days) {
            return Err(ContractError::InvalidReviewWindow);
        }
        Ok(Some(ContractEvent::ContractStarted {
            contract_id: start.contract_id,
            gig_id: start.gig_id,
            proposal_id: start.proposal_id,
            client_id: start.client_id,
            freelancer_id: start.freelancer_id,
            milestones: start.milestones,
            terms: start.terms,
            started_at: at,
        }))
    }

    fn mark_funded(
        &self,
        milestone_id: MilestoneId,
        actor: &Actor,
        at: DateTime<Utc>,
    ) -> Result<Option<ContractEvent>, ContractError> {
        let state = self.as_system(actor)?;
        let milestone = state.milestone(milestone_id)?;
        // Funded already (or beyond, or cancelled): the deposit was seen before.
        Ok(
            (milestone.status == MilestoneStatus::AwaitingFunds).then_some(
                ContractEvent::MilestoneFunded {
                    milestone_id,
                    funded_at: at,
                },
            ),
        )
    }

    fn submit(
        &self,
        milestone_id: MilestoneId,
        note: &str,
        links: &[String],
        actor: &Actor,
        at: DateTime<Utc>,
    ) -> Result<ContractEvent, ContractError> {
        let state = self.as_freelancer(actor)?;
        state.require_active()?;
        match state.milestone(milestone_id)?.status {
            MilestoneStatus::Funded | MilestoneStatus::ChangesRequested => {}
            MilestoneStatus::AwaitingFunds => return Err(ContractError::MilestoneNotFunded),
            _ => return Err(ContractError::MilestoneNotAwaitingWork),
        }
        let note = trimmed_within(note, 1, 5_000).ok_or(ContractError::InvalidNote)?;
        if links.len() > MAX_LINKS {
            return Err(ContractError::TooManyLinks);
        }
        let links = links
            .iter()
            .map(|link| link.trim())
            .map(|link| {
                is_web_link(link, MAX_LINK_CHARS)
                    .then(|| link.to_owned())
                    .ok_or(ContractError::InvalidLink)
            })
            .collect::<Result<Vec<_>, _>>()?;
        let review_due_at = at
            .checked_add_days(Days::new(u64::from(state.terms.review_window_days)))
            .ok_or(ContractError::DateOutOfRange)?;
        Ok(ContractEvent::MilestoneSubmitted {
            milestone_id,
            note,
            links,
            submitted_at: at,
            review_due_at,
        })
    }

    fn request_changes(
        &self,
        milestone_id: MilestoneId,
        reason: &str,
        actor: &Actor,
        at: DateTime<Utc>,
    ) -> Result<ContractEvent, ContractError> {
        let state = self.as_client(actor)?;
        state.require_active()?;
        let milestone = state.milestone(milestone_id)?;
        if milestone.status != MilestoneStatus::Submitted {
            return Err(ContractError::MilestoneNotSubmitted);
        }
        let max = state.terms.max_revisions;
        if milestone.changes_requested >= max {
            return Err(ContractError::RevisionLimitReached { max });
        }
        let reason =
            trimmed_within(reason, 1, 2_000).ok_or(ContractError::InvalidReason { max: 2_000 })?;
        Ok(ContractEvent::MilestoneChangesRequested {
            milestone_id,
            reason,
            revision: milestone.changes_requested.saturating_add(1),
            requested_at: at,
        })
    }

    fn approve(
        &self,
        milestone_id: MilestoneId,
        actor: &Actor,
        at: DateTime<Utc>,
    ) -> Result<ContractEvent, ContractError> {
        let state = self.as_client(actor)?;
        let milestone = state.milestone(milestone_id)?;
        match milestone.status {
            MilestoneStatus::Submitted => Ok(ContractEvent::MilestoneApproved {
                milestone_id,
                amount: milestone.amount,
                auto: false,
                approved_at: at,
            }),
            MilestoneStatus::Approved => Err(ContractError::MilestoneAlreadyApproved),
            _ => Err(ContractError::MilestoneNotSubmitted),
        }
    }

    fn auto_approve(
        &self,
        milestone_id: MilestoneId,
        actor: &Actor,
        at: DateTime<Utc>,
    ) -> Result<Option<ContractEvent>, ContractError> {
        let state = self.as_system(actor)?;
        let milestone = state.milestone(milestone_id)?;
        // The timer may fire early, late, or after the client already acted: only an
        // unreviewed submission whose window has ended is approved.
        let due = milestone.status == MilestoneStatus::Submitted
            && milestone.review_due_at.is_some_and(|due_at| at >= due_at);
        Ok(due.then_some(ContractEvent::MilestoneApproved {
            milestone_id,
            amount: milestone.amount,
            auto: true,
            approved_at: at,
        }))
    }

    fn cancel(
        &self,
        reason: &str,
        actor: &Actor,
        at: DateTime<Utc>,
    ) -> Result<ContractEvent, ContractError> {
        let (state, _) = self.party_of(actor)?;
        state.require_active()?;
        let delivered_pending = state.milestones.iter().any(|m| {
            matches!(
                m.status,
                MilestoneStatus::Submitted
                    | MilestoneStatus::ChangesRequested
                    | MilestoneStatus::Disputed
            )
        });
        if delivered_pending {
            return Err(ContractError::DeliveredWorkPending);
        }
        let reason =
            trimmed_within(reason, 1, 2_000).ok_or(ContractError::InvalidReason { max: 2_000 })?;
        let cancelled_milestones = state
            .milestones
            .iter()
            .filter(|m| {
                matches!(
                    m.status,
                    MilestoneStatus::AwaitingFunds | MilestoneStatus::Funded
                )
            })
            .map(|m| m.id)
            .collect();
        Ok(ContractEvent::ContractCancelled {
            reason,
            cancelled_by: actor.user_id,
            cancelled_milestones,
            cancelled_at: at,
        })
    }

    fn open_dispute(
        &self,
        dispute_id: DisputeId,
        milestone_id: MilestoneId,
        reason: &str,
        actor: &Actor,
        at: DateTime<Utc>,
    ) -> Result<ContractEvent, ContractError> {
        let (state, _) = self.party_of(actor)?;
        state.require_active()?;
        if state.disputes.iter().any(|d| d.id == dispute_id) {
            return Err(ContractError::DisputeIdTaken);
        }
        match state.milestone(milestone_id)?.status {
            MilestoneStatus::Funded
            | MilestoneStatus::Submitted
            | MilestoneStatus::ChangesRequested => {}
            MilestoneStatus::Disputed => return Err(ContractError::DisputeAlreadyOpen),
            _ => return Err(ContractError::MilestoneNotDisputable),
        }
        let reason =
            trimmed_within(reason, 1, 5_000).ok_or(ContractError::InvalidReason { max: 5_000 })?;
        Ok(ContractEvent::DisputeOpened {
            dispute_id,
            milestone_id,
            opened_by: actor.user_id,
            reason,
            opened_at: at,
        })
    }

    fn resolve_dispute(
        &self,
        dispute_id: DisputeId,
        release: Money,
        refund: Money,
        actor: &Actor,
        at: DateTime<Utc>,
    ) -> Result<ContractEvent, ContractError> {
        let state = self.as_judge(actor)?;
        let dispute = state
            .disputes
            .iter()
            .find(|d| d.id == dispute_id)
            .ok_or(ContractError::DisputeNotFound)?;
        if !dispute.open {
            return Err(ContractError::DisputeAlreadyResolved);
        }
        let milestone = state.milestone(dispute.milestone_id)?;
        let expected = state.terms.currency;
        if release.currency != expected || refund.currency != expected {
            return Err(ContractError::SettlementCurrencyMismatch { expected });
        }
        if release.is_negative() {
            return Err(ContractError::NegativeRelease);
        }
        if refund.is_negative() {
            return Err(ContractError::NegativeRefund);
        }
        // An overflowing sum cannot equal the amount either: same refusal.
        if release.checked_add(refund) != Ok(milestone.amount) {
            return Err(ContractError::SettlementDoesNotMatchAmount {
                amount: milestone.amount,
            });
        }
        Ok(ContractEvent::DisputeResolved {
            dispute_id,
            milestone_id: dispute.milestone_id,
            release,
            refund,
            resolved_by: actor.user_id,
            resolved_at: at,
        })
    }

    fn review(
        &self,
        rating: u8,
        text: &str,
        actor: &Actor,
        at: DateTime<Utc>,
    ) -> Result<ContractEvent, ContractError> {
        let (state, reviewer) = self.party_of(actor)?;
        if state.status != ContractStatus::Completed {
            return Err(ContractError::ContractNotCompleted);
        }
        // Once revealed, each side has seen the other's review: a late one would not be blind.
        if state.reviews_revealed {
            return Err(ContractError::ReviewPeriodOver);
        }
        let period_over = state
            .completed_at
            .and_then(review_period_ends_at)
            .is_some_and(|ends_at| at >= ends_at);
        if period_over {
            return Err(ContractError::ReviewPeriodOver);
        }
        let (already, reviewee_id) = match reviewer {
            Party::Client => (state.client_reviewed, state.freelancer_id),
            Party::Freelancer => (state.freelancer_reviewed, state.client_id),
        };
        if already {
            return Err(ContractError::AlreadyReviewed);
        }
        if !(1..=5).contains(&rating) {
            return Err(ContractError::InvalidRating);
        }
        let text = trimmed_within(text, 0, 5_000).ok_or(ContractError::ReviewTextTooLong)?;
        Ok(ContractEvent::ReviewLeft {
            reviewer_id: actor.user_id,
            reviewee_id,
            reviewer,
            rating,
            text,
            reviewed_at: at,
        })
    }

    fn reveal(
        &self,
        actor: &Actor,
        at: DateTime<Utc>,
    ) -> Result<Option<ContractEvent>, ContractError> {
        let state = self.as_system(actor)?;
        let period_over = state
            .completed_at
            .and_then(review_period_ends_at)
            .is_some_and(|ends_at| at >= ends_at);
        let due = state.status == ContractStatus::Completed
            && !state.reviews_revealed
            && ((state.client_reviewed && state.freelancer_reviewed) || period_over);
        Ok(due.then_some(ContractEvent::ReviewsRevealed { revealed_at: at }))
    }
}

impl Authorise for Contract {
    /// Process steps are the system's; delivering is the freelancer's, reviewing the work the
    /// client's; cancelling, disputing and reviewing each other either party's, in the side they
    /// are on; resolving an admin's who is not a party.
    fn authorise(&self, command: &ContractCommand) -> Result<ActingAs, ContractError> {
        let party = |party| {
            ActingAs::Role(match party {
                Party::Client => Role::Client,
                Party::Freelancer => Role::Freelancer,
            })
        };
        match command {
            ContractCommand::StartContract { actor, .. } => {
                if actor.is_system() {
                    Ok(ActingAs::System)
                } else {
                    Err(ContractError::NotSystem)
                }
            }
            ContractCommand::MarkMilestoneFunded { actor, .. }
            | ContractCommand::AutoApproveMilestone { actor, .. }
            | ContractCommand::RevealReviews { actor, .. } => {
                self.as_system(actor).map(|_| ActingAs::System)
            }
            ContractCommand::SubmitMilestone { actor, .. } => self
                .as_freelancer(actor)
                .map(|_| ActingAs::Role(Role::Freelancer)),
            ContractCommand::RequestChanges { actor, .. }
            | ContractCommand::ApproveMilestone { actor, .. } => {
                self.as_client(actor).map(|_| ActingAs::Role(Role::Client))
            }
            ContractCommand::CancelContract { actor, .. }
            | ContractCommand::OpenDispute { actor, .. }
            | ContractCommand::LeaveReview { actor, .. } => {
                self.party_of(actor).map(|(_, side)| party(side))
            }
            ContractCommand::ResolveDispute { actor, .. } => {
                self.as_judge(actor).map(|_| ActingAs::Role(Role::Admin))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeDelta;
    use cqrs_es::test::TestFramework;
    use cqrs_es::DomainEvent;
    use proptest::prelude::*;
    use uuid::Uuid;

    use super::*;
    use crate::error::ErrorKind;
    use crate::money::Currency;
    use crate::test_support::*;

    type ContractTest = TestFramework<Contract>;

    fn stranger() -> Actor {
        Actor::new(user(3), vec![Role::Client, Role::Freelancer])
    }

    fn days_later(days: i64) -> DateTime<Utc> {
        now() + TimeDelta::days(days)
    }

    fn proposal_id() -> ProposalId {
        ProposalId(Uuid::from_u128(200))
    }

    fn m1() -> MilestoneId {
        MilestoneId(Uuid::from_u128(401))
    }

    fn m2() -> MilestoneId {
        MilestoneId(Uuid::from_u128(402))
    }

    fn dispute(n: u128) -> DisputeId {
        DisputeId(Uuid::from_u128(500 + n))
    }

    fn milestone_terms() -> Vec<MilestoneTerms> {
        vec![
            MilestoneTerms {
                milestone_id: m1(),
                title: "Design".to_owned(),
                amount: usd(20_000),
                due_date: None,
            },
            MilestoneTerms {
                milestone_id: m2(),
                title: "Build".to_owned(),
                amount: usd(30_000),
                due_date: None,
            },
        ]
    }

    fn terms() -> ContractTerms {
        ContractTerms {
            currency: Currency::USD,
            fee_bps: 1_000,
            review_window_days: 14,
            max_revisions: 2,
        }
    }

    fn start_contract() -> ContractCommand {
        ContractCommand::StartContract {
            contract_id: contract_id(),
            gig_id: gig_id(),
            proposal_id: proposal_id(),
            client_id: client().user_id,
            freelancer_id: freelancer().user_id,
            currency: Currency::USD,
            milestones: milestone_terms(),
            fee_bps: 1_000,
            review_window_days: 14,
            max_revisions: 2,
            actor: system(),
            at: now(),
        }
    }

    fn start_contract_with(edit: impl FnOnce(&mut ContractCommand)) -> ContractCommand {
        let mut command = start_contract();
        edit(&mut command);
        command
    }

    fn started() -> ContractEvent {
        started_with(milestone_terms())
    }

    fn started_with(milestones: Vec<MilestoneTerms>) -> ContractEvent {
        ContractEvent::ContractStarted {
            contract_id: contract_id(),
            gig_id: gig_id(),
            proposal_id: proposal_id(),
            client_id: client().user_id,
            freelancer_id: freelancer().user_id,
            milestones,
            terms: terms(),
            started_at: now(),
        }
    }

    /// A contract with a single milestone (m1), for completion rules.
    fn started_single() -> ContractEvent {
        started_with(milestone_terms().into_iter().take(1).collect())
    }

    fn funded(milestone_id: MilestoneId) -> ContractEvent {
        ContractEvent::MilestoneFunded {
            milestone_id,
            funded_at: now(),
        }
    }

    fn submitted(milestone_id: MilestoneId) -> ContractEvent {
        ContractEvent::MilestoneSubmitted {
            milestone_id,
            note: "Here it is.".to_owned(),
            links: vec!["https://example.com/design".to_owned()],
            submitted_at: now(),
            review_due_at: days_later(14),
        }
    }

    fn changes_requested(milestone_id: MilestoneId, revision: u32) -> ContractEvent {
        ContractEvent::MilestoneChangesRequested {
            milestone_id,
            reason: "Please use our colours.".to_owned(),
            revision,
            requested_at: now(),
        }
    }

    fn approved(milestone_id: MilestoneId, amount: i64) -> ContractEvent {
        ContractEvent::MilestoneApproved {
            milestone_id,
            amount: usd(amount),
            auto: false,
            approved_at: now(),
        }
    }

    fn completed() -> ContractEvent {
        ContractEvent::ContractCompleted {
            completed_at: now(),
        }
    }

    fn cancelled(milestones: Vec<MilestoneId>) -> ContractEvent {
        ContractEvent::ContractCancelled {
            reason: "Plans changed.".to_owned(),
            cancelled_by: client().user_id,
            cancelled_milestones: milestones,
            cancelled_at: now(),
        }
    }

    fn dispute_opened(id: DisputeId, milestone_id: MilestoneId, by: &Actor) -> ContractEvent {
        ContractEvent::DisputeOpened {
            dispute_id: id,
            milestone_id,
            opened_by: by.user_id,
            reason: "The work was not delivered.".to_owned(),
            opened_at: now(),
        }
    }

    fn dispute_resolved(
        id: DisputeId,
        milestone_id: MilestoneId,
        release: i64,
        refund: i64,
    ) -> ContractEvent {
        ContractEvent::DisputeResolved {
            dispute_id: id,
            milestone_id,
            release: usd(release),
            refund: usd(refund),
            resolved_by: admin().user_id,
            resolved_at: now(),
        }
    }

    fn review_left(reviewer: Party) -> ContractEvent {
        let (reviewer_id, reviewee_id) = match reviewer {
            Party::Client => (client().user_id, freelancer().user_id),
            Party::Freelancer => (freelancer().user_id, client().user_id),
        };
        ContractEvent::ReviewLeft {
            reviewer_id,
            reviewee_id,
            reviewer,
            rating: 5,
            text: "Great to work with.".to_owned(),
            reviewed_at: now(),
        }
    }

    fn revealed() -> ContractEvent {
        ContractEvent::ReviewsRevealed { revealed_at: now() }
    }

    /// A contract whose single milestone was approved: Completed.
    fn completed_history() -> Vec<ContractEvent> {
        vec![
            started_single(),
            funded(m1()),
            submitted(m1()),
            approved(m1(), 20_000),
            completed(),
        ]
    }

    fn rebuilt(events: Vec<ContractEvent>) -> Contract {
        let mut contract = Contract::default();
        for event in events {
            contract.apply(event);
        }
        contract
    }

    fn submit(milestone_id: MilestoneId, actor: Actor) -> ContractCommand {
        ContractCommand::SubmitMilestone {
            milestone_id,
            note: "  Here it is. ".to_owned(),
            links: vec!["https://example.com/design".to_owned()],
            actor,
            at: now(),
        }
    }

    fn submit_with(note: &str, links: Vec<String>) -> ContractCommand {
        ContractCommand::SubmitMilestone {
            milestone_id: m1(),
            note: note.to_owned(),
            links,
            actor: freelancer(),
            at: now(),
        }
    }

    fn request_changes(actor: Actor) -> ContractCommand {
        ContractCommand::RequestChanges {
            milestone_id: m1(),
            reason: "Please use our colours.".to_owned(),
            actor,
            at: now(),
        }
    }

    fn approve(milestone_id: MilestoneId, actor: Actor) -> ContractCommand {
        ContractCommand::ApproveMilestone {
            milestone_id,
            actor,
            at: now(),
        }
    }

    fn auto_approve(milestone_id: MilestoneId, at: DateTime<Utc>) -> ContractCommand {
        ContractCommand::AutoApproveMilestone {
            milestone_id,
            actor: system(),
            at,
        }
    }

    fn cancel(actor: Actor) -> ContractCommand {
        ContractCommand::CancelContract {
            reason: "Plans changed.".to_owned(),
            actor,
            at: now(),
        }
    }

    fn open_dispute(id: DisputeId, milestone_id: MilestoneId, actor: Actor) -> ContractCommand {
        ContractCommand::OpenDispute {
            dispute_id: id,
            milestone_id,
            reason: "The work was not delivered.".to_owned(),
            actor,
            at: now(),
        }
    }

    fn resolve(id: DisputeId, release: Money, refund: Money, actor: Actor) -> ContractCommand {
        ContractCommand::ResolveDispute {
            dispute_id: id,
            release,
            refund,
            actor,
            at: now(),
        }
    }

    fn review(actor: Actor, rating: u8, at: DateTime<Utc>) -> ContractCommand {
        ContractCommand::LeaveReview {
            rating,
            text: "Great to work with.".to_owned(),
            actor,
            at,
        }
    }

    fn reveal(at: DateTime<Utc>) -> ContractCommand {
        ContractCommand::RevealReviews {
            actor: system(),
            at,
        }
    }

    // ---- StartContract ----

    #[test]
    fn the_platform_starts_a_contract_from_the_accepted_proposal_with_its_terms() {
        ContractTest::with(())
            .given_no_previous_events()
            .when(start_contract())
            .then_expect_events(vec![started()]);
        let contract = rebuilt(vec![started()]);
        assert_eq!(contract.status(), Some(ContractStatus::Active));
        assert_eq!(contract.milestone_ids(), vec![m1(), m2()]);
        assert_eq!(
            contract.milestone_status(m1()),
            Some(MilestoneStatus::AwaitingFunds)
        );
        assert_eq!(contract.terms(), Some(terms()));
        assert_eq!(contract.client_id(), Some(client().user_id));
        assert_eq!(contract.freelancer_id(), Some(freelancer().user_id));
        assert_eq!(contract.party(stranger().user_id), None);
    }

    #[test]
    fn only_the_platform_can_start_a_contract() {
        let command = start_contract_with(|command| {
            if let ContractCommand::StartContract { actor, .. } = command {
                *actor = client();
            }
        });
        ContractTest::with(())
            .given_no_previous_events()
            .when(command)
            .then_expect_error(ContractError::NotSystem);
    }

    #[test]
    fn starting_a_contract_again_for_the_same_proposal_changes_nothing() {
        ContractTest::with(())
            .given(vec![started(), funded(m1())])
            .when(start_contract())
            .then_expect_events(vec![]);
    }

    #[test]
    fn a_contract_id_cannot_be_reused_for_another_proposal() {
        let command = start_contract_with(|command| {
            if let ContractCommand::StartContract { proposal_id, .. } = command {
                *proposal_id = ProposalId(Uuid::from_u128(999));
            }
        });
        ContractTest::with(())
            .given(vec![started()])
            .when(command)
            .then_expect_error(ContractError::ContractIdTaken);
    }

    #[test]
    fn a_contract_needs_at_least_one_milestone() {
        let command = start_contract_with(|command| {
            if let ContractCommand::StartContract { milestones, .. } = command {
                milestones.clear();
            }
        });
        ContractTest::with(())
            .given_no_previous_events()
            .when(command)
            .then_expect_error(ContractError::NoMilestones);
    }

    #[test]
    fn contract_milestones_must_be_positive_at_most_the_maximum_in_its_currency_and_distinct() {
        let cases = [
            (usd(0), m2(), ContractError::InvalidMilestoneAmount),
            (
                Money::new(100, Currency::EUR),
                m2(),
                ContractError::InvalidMilestoneAmount,
            ),
            (usd(100), m1(), ContractError::DuplicateMilestoneId),
            (
                usd(crate::money::MAX_AMOUNT + 1),
                m2(),
                ContractError::InvalidMilestoneAmount,
            ),
        ];
        for (amount, id, expected) in cases {
            let command = start_contract_with(|command| {
                if let ContractCommand::StartContract { milestones, .. } = command {
                    milestones[1].amount = amount;
                    milestones[1].milestone_id = id;
                }
            });
            ContractTest::with(())
                .given_no_previous_events()
                .when(command)
                .then_expect_error(expected);
        }
    }

    #[test]
    fn a_contracts_fee_rate_and_review_window_must_be_valid() {
        let command = start_contract_with(|command| {
            if let ContractCommand::StartContract { fee_bps, .. } = command {
                *fee_bps = 10_001;
            }
        });
        ContractTest::with(())
            .given_no_previous_events()
            .when(command)
            .then_expect_error(ContractError::InvalidFeeRate);
        let command = start_contract_with(|command| {
            if let ContractCommand::StartContract {
                review_window_days, ..
            } = command
            {
                *review_window_days = 0;
            }
        });
        ContractTest::with(())
            .given_no_previous_events()
            .when(command)
            .then_expect_error(ContractError::InvalidReviewWindow);
    }

    // ---- MarkMilestoneFunded ----

    fn mark_funded(milestone_id: MilestoneId, actor: Actor) -> ContractCommand {
        ContractCommand::MarkMilestoneFunded {
            milestone_id,
            actor,
            at: now(),
        }
    }

    #[test]
    fn the_platform_marks_a_milestone_funded_once_its_deposit_is_in_escrow() {
        ContractTest::with(())
            .given(vec![started()])
            .when(mark_funded(m1(), system()))
            .then_expect_events(vec![funded(m1())]);
    }

    #[test]
    fn marking_a_milestone_funded_again_or_after_cancellation_changes_nothing() {
        let histories = [
            vec![started(), funded(m1())],
            vec![started(), funded(m1()), submitted(m1())],
            vec![started(), cancelled(vec![m1(), m2()])],
        ];
        for history in histories {
            ContractTest::with(())
                .given(history)
                .when(mark_funded(m1(), system()))
                .then_expect_events(vec![]);
        }
    }

    #[test]
    fn only_the_platform_can_mark_a_milestone_funded() {
        ContractTest::with(())
            .given(vec![started()])
            .when(mark_funded(m1(), client()))
            .then_expect_error(ContractError::NotSystem);
    }

    #[test]
    fn an_unknown_milestone_cannot_be_marked_funded() {
        ContractTest::with(())
            .given(vec![started()])
            .when(mark_funded(MilestoneId(Uuid::from_u128(999)), system()))
            .then_expect_error(ContractError::MilestoneNotFound);
    }

    #[test]
    fn a_command_on_a_contract_that_does_not_exist_is_not_found() {
        ContractTest::with(())
            .given_no_previous_events()
            .when(mark_funded(m1(), system()))
            .then_expect_error(ContractError::ContractNotFound);
        ContractTest::with(())
            .given_no_previous_events()
            .when(submit(m1(), freelancer()))
            .then_expect_error(ContractError::ContractNotFound);
    }

    // ---- SubmitMilestone ----

    #[test]
    fn the_freelancer_submits_work_on_a_funded_milestone_which_starts_the_review_window() {
        ContractTest::with(())
            .given(vec![started(), funded(m1())])
            .when(submit(m1(), freelancer()))
            .then_expect_events(vec![submitted(m1())]);
        let contract = rebuilt(vec![started(), funded(m1()), submitted(m1())]);
        assert_eq!(contract.review_due_at(m1()), Some(days_later(14)));
    }

    #[test]
    fn the_freelancer_can_resubmit_after_changes_were_requested() {
        ContractTest::with(())
            .given(vec![
                started(),
                funded(m1()),
                submitted(m1()),
                changes_requested(m1(), 1),
            ])
            .when(submit(m1(), freelancer()))
            .then_expect_events(vec![submitted(m1())]);
    }

    #[test]
    fn work_cannot_be_submitted_before_the_milestone_is_funded() {
        ContractTest::with(())
            .given(vec![started()])
            .when(submit(m1(), freelancer()))
            .then_expect_error(ContractError::MilestoneNotFunded);
    }

    #[test]
    fn work_cannot_be_submitted_while_under_review_disputed_or_after_approval() {
        let histories = [
            vec![started(), funded(m1()), submitted(m1())],
            vec![
                started(),
                funded(m1()),
                dispute_opened(dispute(1), m1(), &client()),
            ],
            vec![
                started(),
                funded(m1()),
                submitted(m1()),
                approved(m1(), 20_000),
            ],
        ];
        for history in histories {
            ContractTest::with(())
                .given(history)
                .when(submit(m1(), freelancer()))
                .then_expect_error(ContractError::MilestoneNotAwaitingWork);
        }
    }

    #[test]
    fn only_the_freelancer_can_submit_work() {
        ContractTest::with(())
            .given(vec![started(), funded(m1())])
            .when(submit(m1(), client()))
            .then_expect_error(ContractError::NotTheFreelancer);
    }

    #[test]
    fn a_non_party_is_told_the_contract_does_not_exist() {
        ContractTest::with(())
            .given(vec![started(), funded(m1())])
            .when(submit(m1(), stranger()))
            .then_expect_error(ContractError::ContractNotFound);
    }

    #[test]
    fn an_admin_who_is_not_a_party_cannot_act_for_a_party() {
        ContractTest::with(())
            .given(vec![started(), funded(m1())])
            .when(submit(m1(), admin()))
            .then_expect_error(ContractError::NotAParty);
    }

    #[test]
    fn work_cannot_be_submitted_on_a_cancelled_contract() {
        ContractTest::with(())
            .given(vec![started(), funded(m1()), cancelled(vec![m1(), m2()])])
            .when(submit(m1(), freelancer()))
            .then_expect_error(ContractError::ContractNotActive);
    }

    #[test]
    fn work_cannot_be_submitted_on_an_unknown_milestone() {
        ContractTest::with(())
            .given(vec![started()])
            .when(submit(MilestoneId(Uuid::from_u128(999)), freelancer()))
            .then_expect_error(ContractError::MilestoneNotFound);
    }

    #[test]
    fn a_submission_note_must_be_1_to_5000_characters() {
        for bad in ["  ".to_owned(), "n".repeat(5_001)] {
            ContractTest::with(())
                .given(vec![started(), funded(m1())])
                .when(submit_with(&bad, vec![]))
                .then_expect_error(ContractError::InvalidNote);
        }
    }

    #[test]
    fn a_submission_carries_at_most_10_links() {
        let links = (0..11)
            .map(|n| format!("https://example.com/{n}"))
            .collect();
        ContractTest::with(())
            .given(vec![started(), funded(m1())])
            .when(submit_with("Done.", links))
            .then_expect_error(ContractError::TooManyLinks);
    }

    #[test]
    fn each_link_must_be_an_http_url_of_at_most_2000_characters() {
        let bad_links = [
            "ftp://example.com/file".to_owned(),
            "not a url".to_owned(),
            format!("https://example.com/{}", "a".repeat(2_000)),
        ];
        for bad in bad_links {
            ContractTest::with(())
                .given(vec![started(), funded(m1())])
                .when(submit_with("Done.", vec![bad]))
                .then_expect_error(ContractError::InvalidLink);
        }
    }

    // ---- RequestChanges ----

    #[test]
    fn the_client_can_request_changes_to_submitted_work_which_stops_the_review_window() {
        ContractTest::with(())
            .given(vec![started(), funded(m1()), submitted(m1())])
            .when(request_changes(client()))
            .then_expect_events(vec![changes_requested(m1(), 1)]);
        let contract = rebuilt(vec![
            started(),
            funded(m1()),
            submitted(m1()),
            changes_requested(m1(), 1),
        ]);
        assert_eq!(contract.review_due_at(m1()), None);
        assert_eq!(contract.changes_requested(m1()), Some(1));
    }

    #[test]
    fn after_the_maximum_change_requests_only_approval_or_a_dispute_remain() {
        let history = vec![
            started(),
            funded(m1()),
            submitted(m1()),
            changes_requested(m1(), 1),
            submitted(m1()),
            changes_requested(m1(), 2),
            submitted(m1()),
        ];
        let error = ContractTest::with(())
            .given(history.clone())
            .when(request_changes(client()))
            .inspect_result()
            .err();
        assert_eq!(error, Some(ContractError::RevisionLimitReached { max: 2 }));
        assert!(error
            .map(|e| e.to_string())
            .is_some_and(|message| message.contains("only approval or a dispute remain")));
        // Approval and disputes are still open.
        let approve_result = ContractTest::with(())
            .given(history.clone())
            .when(approve(m1(), client()))
            .inspect_result();
        assert!(approve_result.is_ok());
        let dispute_result = ContractTest::with(())
            .given(history)
            .when(open_dispute(dispute(1), m1(), client()))
            .inspect_result();
        assert!(dispute_result.is_ok());
    }

    #[test]
    fn changes_can_only_be_requested_on_submitted_work() {
        for history in [
            vec![started(), funded(m1())],
            vec![
                started(),
                funded(m1()),
                submitted(m1()),
                changes_requested(m1(), 1),
            ],
        ] {
            ContractTest::with(())
                .given(history)
                .when(request_changes(client()))
                .then_expect_error(ContractError::MilestoneNotSubmitted);
        }
    }

    #[test]
    fn only_the_client_can_request_changes() {
        ContractTest::with(())
            .given(vec![started(), funded(m1()), submitted(m1())])
            .when(request_changes(freelancer()))
            .then_expect_error(ContractError::NotTheClient);
    }

    #[test]
    fn a_change_request_needs_a_reason_of_1_to_2000_characters() {
        for bad in [" ".to_owned(), "r".repeat(2_001)] {
            ContractTest::with(())
                .given(vec![started(), funded(m1()), submitted(m1())])
                .when(ContractCommand::RequestChanges {
                    milestone_id: m1(),
                    reason: bad,
                    actor: client(),
                    at: now(),
                })
                .then_expect_error(ContractError::InvalidReason { max: 2_000 });
        }
    }

    // ---- ApproveMilestone ----

    #[test]
    fn the_client_approves_submitted_work_which_releases_its_amount() {
        ContractTest::with(())
            .given(vec![started(), funded(m1()), submitted(m1())])
            .when(approve(m1(), client()))
            .then_expect_events(vec![approved(m1(), 20_000)]);
    }

    #[test]
    fn approving_the_last_open_milestone_completes_the_contract() {
        ContractTest::with(())
            .given(vec![
                started(),
                funded(m1()),
                funded(m2()),
                submitted(m1()),
                approved(m1(), 20_000),
                submitted(m2()),
            ])
            .when(approve(m2(), client()))
            .then_expect_events(vec![approved(m2(), 30_000), completed()]);
    }

    #[test]
    fn a_milestone_cannot_be_approved_twice() {
        ContractTest::with(())
            .given(vec![
                started(),
                funded(m1()),
                submitted(m1()),
                approved(m1(), 20_000),
            ])
            .when(approve(m1(), client()))
            .then_expect_error(ContractError::MilestoneAlreadyApproved);
    }

    #[test]
    fn only_submitted_work_can_be_approved() {
        for history in [
            vec![started()],
            vec![started(), funded(m1())],
            vec![
                started(),
                funded(m1()),
                submitted(m1()),
                changes_requested(m1(), 1),
            ],
        ] {
            ContractTest::with(())
                .given(history)
                .when(approve(m1(), client()))
                .then_expect_error(ContractError::MilestoneNotSubmitted);
        }
    }

    #[test]
    fn only_the_client_can_approve_work() {
        ContractTest::with(())
            .given(vec![started(), funded(m1()), submitted(m1())])
            .when(approve(m1(), freelancer()))
            .then_expect_error(ContractError::NotTheClient);
        ContractTest::with(())
            .given(vec![started(), funded(m1()), submitted(m1())])
            .when(approve(m1(), stranger()))
            .then_expect_error(ContractError::ContractNotFound);
    }

    // ---- AutoApproveMilestone ----

    #[test]
    fn submitted_work_is_approved_automatically_when_its_review_window_ends() {
        ContractTest::with(())
            .given(vec![started(), funded(m1()), submitted(m1())])
            .when(auto_approve(m1(), days_later(14)))
            .then_expect_events(vec![ContractEvent::MilestoneApproved {
                milestone_id: m1(),
                amount: usd(20_000),
                auto: true,
                approved_at: days_later(14),
            }]);
    }

    #[test]
    fn auto_approving_the_last_open_milestone_completes_the_contract() {
        ContractTest::with(())
            .given(vec![started_single(), funded(m1()), submitted(m1())])
            .when(auto_approve(m1(), days_later(20)))
            .then_expect_events(vec![
                ContractEvent::MilestoneApproved {
                    milestone_id: m1(),
                    amount: usd(20_000),
                    auto: true,
                    approved_at: days_later(20),
                },
                ContractEvent::ContractCompleted {
                    completed_at: days_later(20),
                },
            ]);
    }

    #[test]
    fn an_auto_approval_timer_that_fires_early_changes_nothing() {
        ContractTest::with(())
            .given(vec![started(), funded(m1()), submitted(m1())])
            .when(auto_approve(m1(), days_later(14) - TimeDelta::seconds(1)))
            .then_expect_events(vec![]);
    }

    #[test]
    fn an_auto_approval_timer_that_fires_after_the_client_acted_changes_nothing() {
        let histories = [
            vec![
                started(),
                funded(m1()),
                submitted(m1()),
                approved(m1(), 20_000),
            ],
            vec![
                started(),
                funded(m1()),
                submitted(m1()),
                changes_requested(m1(), 1),
            ],
            vec![
                started(),
                funded(m1()),
                submitted(m1()),
                dispute_opened(dispute(1), m1(), &client()),
            ],
        ];
        for history in histories {
            ContractTest::with(())
                .given(history)
                .when(auto_approve(m1(), days_later(30)))
                .then_expect_events(vec![]);
        }
    }

    #[test]
    fn only_the_platform_can_auto_approve() {
        ContractTest::with(())
            .given(vec![started(), funded(m1()), submitted(m1())])
            .when(ContractCommand::AutoApproveMilestone {
                milestone_id: m1(),
                actor: client(),
                at: days_later(14),
            })
            .then_expect_error(ContractError::NotSystem);
    }

    #[test]
    fn an_unknown_milestone_cannot_be_auto_approved() {
        ContractTest::with(())
            .given(vec![started()])
            .when(auto_approve(
                MilestoneId(Uuid::from_u128(999)),
                days_later(14),
            ))
            .then_expect_error(ContractError::MilestoneNotFound);
    }

    // ---- CancelContract ----

    #[test]
    fn either_party_can_cancel_and_only_never_submitted_milestones_are_cancelled() {
        let history = vec![
            started_with(vec![
                milestone_terms()[0].clone(),
                milestone_terms()[1].clone(),
                MilestoneTerms {
                    milestone_id: MilestoneId(Uuid::from_u128(403)),
                    title: "Polish".to_owned(),
                    amount: usd(5_000),
                    due_date: None,
                },
            ]),
            funded(m1()),
            submitted(m1()),
            approved(m1(), 20_000),
            funded(m2()),
        ];
        for (actor, by) in [
            (client(), client().user_id),
            (freelancer(), freelancer().user_id),
        ] {
            ContractTest::with(())
                .given(history.clone())
                .when(cancel(actor))
                .then_expect_events(vec![ContractEvent::ContractCancelled {
                    reason: "Plans changed.".to_owned(),
                    cancelled_by: by,
                    cancelled_milestones: vec![m2(), MilestoneId(Uuid::from_u128(403))],
                    cancelled_at: now(),
                }]);
        }
        let mut after = history;
        after.push(cancelled(vec![m2(), MilestoneId(Uuid::from_u128(403))]));
        let contract = rebuilt(after);
        assert_eq!(contract.status(), Some(ContractStatus::Cancelled));
        assert_eq!(
            contract.milestone_status(m1()),
            Some(MilestoneStatus::Approved)
        );
        assert_eq!(
            contract.milestone_status(m2()),
            Some(MilestoneStatus::Cancelled)
        );
    }

    #[test]
    fn a_contract_cannot_be_cancelled_while_delivered_or_disputed_work_is_pending() {
        let histories = [
            vec![started(), funded(m1()), submitted(m1())],
            vec![
                started(),
                funded(m1()),
                submitted(m1()),
                changes_requested(m1(), 1),
            ],
            vec![
                started(),
                funded(m1()),
                dispute_opened(dispute(1), m1(), &freelancer()),
            ],
        ];
        for history in histories {
            ContractTest::with(())
                .given(history)
                .when(cancel(client()))
                .then_expect_error(ContractError::DeliveredWorkPending);
        }
    }

    #[test]
    fn a_cancelled_or_completed_contract_cannot_be_cancelled() {
        for history in [
            vec![started(), cancelled(vec![m1(), m2()])],
            completed_history(),
        ] {
            ContractTest::with(())
                .given(history)
                .when(cancel(client()))
                .then_expect_error(ContractError::ContractNotActive);
        }
    }

    #[test]
    fn a_cancellation_needs_a_reason_of_1_to_2000_characters() {
        ContractTest::with(())
            .given(vec![started()])
            .when(ContractCommand::CancelContract {
                reason: "   ".to_owned(),
                actor: client(),
                at: now(),
            })
            .then_expect_error(ContractError::InvalidReason { max: 2_000 });
    }

    #[test]
    fn a_non_party_cannot_cancel_a_contract() {
        ContractTest::with(())
            .given(vec![started()])
            .when(cancel(stranger()))
            .then_expect_error(ContractError::ContractNotFound);
    }

    // ---- OpenDispute ----

    #[test]
    fn either_party_can_dispute_a_funded_submitted_or_sent_back_milestone() {
        let histories = [
            vec![started(), funded(m1())],
            vec![started(), funded(m1()), submitted(m1())],
            vec![
                started(),
                funded(m1()),
                submitted(m1()),
                changes_requested(m1(), 1),
            ],
        ];
        for history in histories {
            for party in [client(), freelancer()] {
                ContractTest::with(())
                    .given(history.clone())
                    .when(open_dispute(dispute(1), m1(), party.clone()))
                    .then_expect_events(vec![dispute_opened(dispute(1), m1(), &party)]);
            }
        }
    }

    #[test]
    fn a_milestone_has_at_most_one_open_dispute() {
        ContractTest::with(())
            .given(vec![
                started(),
                funded(m1()),
                dispute_opened(dispute(1), m1(), &client()),
            ])
            .when(open_dispute(dispute(2), m1(), freelancer()))
            .then_expect_error(ContractError::DisputeAlreadyOpen);
    }

    #[test]
    fn an_unfunded_or_finished_milestone_cannot_be_disputed() {
        let histories = [
            vec![started()],
            vec![
                started(),
                funded(m1()),
                submitted(m1()),
                approved(m1(), 20_000),
            ],
            vec![
                started(),
                funded(m1()),
                dispute_opened(dispute(1), m1(), &client()),
                dispute_resolved(dispute(1), m1(), 0, 20_000),
            ],
        ];
        for history in histories {
            ContractTest::with(())
                .given(history)
                .when(open_dispute(dispute(2), m1(), client()))
                .then_expect_error(ContractError::MilestoneNotDisputable);
        }
    }

    #[test]
    fn a_dispute_id_cannot_be_reused() {
        ContractTest::with(())
            .given(vec![
                started(),
                funded(m1()),
                funded(m2()),
                dispute_opened(dispute(1), m1(), &client()),
            ])
            .when(open_dispute(dispute(1), m2(), client()))
            .then_expect_error(ContractError::DisputeIdTaken);
    }

    #[test]
    fn a_dispute_needs_a_reason_of_1_to_5000_characters() {
        ContractTest::with(())
            .given(vec![started(), funded(m1())])
            .when(ContractCommand::OpenDispute {
                dispute_id: dispute(1),
                milestone_id: m1(),
                reason: "r".repeat(5_001),
                actor: client(),
                at: now(),
            })
            .then_expect_error(ContractError::InvalidReason { max: 5_000 });
    }

    #[test]
    fn a_non_party_cannot_open_a_dispute() {
        ContractTest::with(())
            .given(vec![started(), funded(m1())])
            .when(open_dispute(dispute(1), m1(), stranger()))
            .then_expect_error(ContractError::ContractNotFound);
    }

    // ---- ResolveDispute ----

    fn disputed_history() -> Vec<ContractEvent> {
        vec![
            started(),
            funded(m1()),
            submitted(m1()),
            dispute_opened(dispute(1), m1(), &client()),
        ]
    }

    #[test]
    fn an_admin_resolves_a_dispute_by_splitting_the_milestone_amount() {
        ContractTest::with(())
            .given(disputed_history())
            .when(resolve(dispute(1), usd(15_000), usd(5_000), admin()))
            .then_expect_events(vec![dispute_resolved(dispute(1), m1(), 15_000, 5_000)]);
        let mut history = disputed_history();
        history.push(dispute_resolved(dispute(1), m1(), 15_000, 5_000));
        let contract = rebuilt(history);
        assert_eq!(
            contract.milestone_status(m1()),
            Some(MilestoneStatus::Resolved)
        );
        assert_eq!(contract.is_dispute_open(dispute(1)), Some(false));
        assert_eq!(contract.dispute_milestone(dispute(1)), Some(m1()));
    }

    #[test]
    fn resolving_the_last_open_milestone_completes_the_contract() {
        ContractTest::with(())
            .given(vec![
                started(),
                funded(m1()),
                funded(m2()),
                submitted(m1()),
                approved(m1(), 20_000),
                dispute_opened(dispute(1), m2(), &freelancer()),
            ])
            .when(resolve(dispute(1), usd(30_000), usd(0), admin()))
            .then_expect_events(vec![
                dispute_resolved(dispute(1), m2(), 30_000, 0),
                completed(),
            ]);
    }

    #[test]
    fn a_contract_whose_every_milestone_was_refunded_in_full_does_not_complete() {
        // DOMAIN.md: Completed needs at least one milestone paid; a resolution releasing nothing
        // paid nothing. The contract stays Active (either party may cancel it).
        ContractTest::with(())
            .given(vec![
                started_single(),
                funded(m1()),
                dispute_opened(dispute(1), m1(), &client()),
            ])
            .when(resolve(dispute(1), usd(0), usd(20_000), admin()))
            .then_expect_events(vec![dispute_resolved(dispute(1), m1(), 0, 20_000)]);
    }

    #[test]
    fn no_review_is_taken_after_the_reviews_were_revealed() {
        let mut history = completed_history();
        history.push(review_left(Party::Client));
        history.push(revealed());
        ContractTest::with(())
            .given(history)
            .when(review(freelancer(), 4, now()))
            .then_expect_error(ContractError::ReviewPeriodOver);
    }

    #[test]
    fn only_an_admin_can_resolve_a_dispute() {
        ContractTest::with(())
            .given(disputed_history())
            .when(resolve(dispute(1), usd(20_000), usd(0), freelancer()))
            .then_expect_error(ContractError::NotAnAdmin);
        ContractTest::with(())
            .given(disputed_history())
            .when(resolve(dispute(1), usd(20_000), usd(0), stranger()))
            .then_expect_error(ContractError::ContractNotFound);
    }

    #[test]
    fn each_contract_command_is_authorised_in_one_capacity_whatever_roles_the_actor_holds() {
        let mut contract = Contract::default();
        contract.apply(started());
        let all_roles =
            |actor: Actor| Actor::new(actor.user_id, vec![Role::Client, Role::Freelancer]);
        let cancel = |actor| ContractCommand::CancelContract {
            reason: "Plans changed.".to_owned(),
            actor,
            at: now(),
        };
        assert_eq!(
            contract.authorise(&cancel(all_roles(freelancer()))),
            Ok(ActingAs::Role(Role::Freelancer))
        );
        assert_eq!(
            contract.authorise(&cancel(all_roles(client()))),
            Ok(ActingAs::Role(Role::Client))
        );
        assert_eq!(
            contract.authorise(&mark_funded(m1(), system())),
            Ok(ActingAs::System)
        );
        assert_eq!(
            contract.authorise(&resolve(dispute(1), usd(1), usd(1), admin())),
            Ok(ActingAs::Role(Role::Admin))
        );
        assert_eq!(
            contract.authorise(&cancel(stranger())),
            Err(ContractError::ContractNotFound)
        );
    }

    #[test]
    fn an_admin_who_is_a_party_to_the_contract_cannot_resolve_its_dispute() {
        for party in [client(), freelancer()] {
            let mut roles = party.roles.clone();
            roles.push(Role::Admin);
            let admin_party = Actor::new(party.user_id, roles);
            ContractTest::with(())
                .given(disputed_history())
                .when(resolve(dispute(1), usd(20_000), usd(0), admin_party))
                .then_expect_error(ContractError::PartyCannotResolve);
        }
    }

    #[test]
    fn release_and_refund_must_add_up_to_the_milestone_amount() {
        let error = ContractTest::with(())
            .given(disputed_history())
            .when(resolve(dispute(1), usd(10_000), usd(5_000), admin()))
            .inspect_result()
            .err();
        assert_eq!(
            error,
            Some(ContractError::SettlementDoesNotMatchAmount {
                amount: usd(20_000)
            })
        );
        assert_eq!(
            error.map(|e| e.to_string()).as_deref(),
            Some("release and refund must add up to the milestone amount 200.00 USD")
        );
    }

    #[test]
    fn a_release_and_refund_whose_sum_overflows_is_refused() {
        ContractTest::with(())
            .given(disputed_history())
            .when(resolve(dispute(1), usd(i64::MAX), usd(i64::MAX), admin()))
            .then_expect_error(ContractError::SettlementDoesNotMatchAmount {
                amount: usd(20_000),
            });
    }

    #[test]
    fn release_and_refund_cannot_be_negative_even_when_they_add_up() {
        ContractTest::with(())
            .given(disputed_history())
            .when(resolve(dispute(1), usd(-1), usd(20_001), admin()))
            .then_expect_error(ContractError::NegativeRelease);
        ContractTest::with(())
            .given(disputed_history())
            .when(resolve(dispute(1), usd(20_001), usd(-1), admin()))
            .then_expect_error(ContractError::NegativeRefund);
    }

    #[test]
    fn release_and_refund_must_be_in_the_contracts_currency() {
        ContractTest::with(())
            .given(disputed_history())
            .when(resolve(
                dispute(1),
                Money::new(20_000, Currency::EUR),
                Money::new(0, Currency::EUR),
                admin(),
            ))
            .then_expect_error(ContractError::SettlementCurrencyMismatch {
                expected: Currency::USD,
            });
    }

    #[test]
    fn a_dispute_cannot_be_resolved_twice() {
        let mut history = disputed_history();
        history.push(dispute_resolved(dispute(1), m1(), 20_000, 0));
        ContractTest::with(())
            .given(history)
            .when(resolve(dispute(1), usd(20_000), usd(0), admin()))
            .then_expect_error(ContractError::DisputeAlreadyResolved);
    }

    #[test]
    fn an_unknown_dispute_cannot_be_resolved() {
        ContractTest::with(())
            .given(disputed_history())
            .when(resolve(dispute(7), usd(20_000), usd(0), admin()))
            .then_expect_error(ContractError::DisputeNotFound);
    }

    // ---- LeaveReview ----

    #[test]
    fn a_party_reviews_the_other_after_completion_and_the_review_stays_hidden() {
        ContractTest::with(())
            .given(completed_history())
            .when(review(client(), 5, days_later(1)))
            .then_expect_events(vec![ContractEvent::ReviewLeft {
                reviewer_id: client().user_id,
                reviewee_id: freelancer().user_id,
                reviewer: Party::Client,
                rating: 5,
                text: "Great to work with.".to_owned(),
                reviewed_at: days_later(1),
            }]);
    }

    #[test]
    fn the_second_review_reveals_both_at_once() {
        let mut history = completed_history();
        history.push(review_left(Party::Client));
        ContractTest::with(())
            .given(history)
            .when(review(freelancer(), 5, now()))
            .then_expect_events(vec![review_left(Party::Freelancer), revealed()]);
    }

    #[test]
    fn a_review_can_only_be_left_on_a_completed_contract() {
        for history in [
            vec![started(), funded(m1())],
            vec![started(), cancelled(vec![m1(), m2()])],
        ] {
            ContractTest::with(())
                .given(history)
                .when(review(client(), 4, now()))
                .then_expect_error(ContractError::ContractNotCompleted);
        }
    }

    #[test]
    fn reviews_close_14_days_after_completion() {
        ContractTest::with(())
            .given(completed_history())
            .when(review(client(), 4, days_later(14)))
            .then_expect_error(ContractError::ReviewPeriodOver);
        let just_in_time = ContractTest::with(())
            .given(completed_history())
            .when(review(client(), 4, days_later(14) - TimeDelta::seconds(1)))
            .inspect_result();
        assert!(just_in_time.is_ok());
    }

    #[test]
    fn each_party_reviews_only_once() {
        let mut history = completed_history();
        history.push(review_left(Party::Client));
        ContractTest::with(())
            .given(history)
            .when(review(client(), 1, now()))
            .then_expect_error(ContractError::AlreadyReviewed);
    }

    #[test]
    fn a_rating_must_be_1_to_5() {
        for bad in [0, 6] {
            ContractTest::with(())
                .given(completed_history())
                .when(review(client(), bad, now()))
                .then_expect_error(ContractError::InvalidRating);
        }
    }

    #[test]
    fn a_review_text_is_at_most_5000_characters_and_may_be_empty() {
        ContractTest::with(())
            .given(completed_history())
            .when(ContractCommand::LeaveReview {
                rating: 3,
                text: "t".repeat(5_001),
                actor: client(),
                at: now(),
            })
            .then_expect_error(ContractError::ReviewTextTooLong);
        let empty = ContractTest::with(())
            .given(completed_history())
            .when(ContractCommand::LeaveReview {
                rating: 3,
                text: String::new(),
                actor: client(),
                at: now(),
            })
            .inspect_result();
        assert!(empty.is_ok());
    }

    #[test]
    fn a_non_party_cannot_review_a_contract() {
        ContractTest::with(())
            .given(completed_history())
            .when(review(stranger(), 1, now()))
            .then_expect_error(ContractError::ContractNotFound);
    }

    // ---- RevealReviews ----

    #[test]
    fn the_platform_reveals_reviews_when_the_review_period_ends() {
        let mut history = completed_history();
        history.push(review_left(Party::Client));
        ContractTest::with(())
            .given(history)
            .when(reveal(days_later(14)))
            .then_expect_events(vec![ContractEvent::ReviewsRevealed {
                revealed_at: days_later(14),
            }]);
        // With no reviews at all the period still ends.
        let result = ContractTest::with(())
            .given(completed_history())
            .when(reveal(days_later(15)))
            .inspect_result();
        assert!(matches!(
            result.as_deref(),
            Ok([ContractEvent::ReviewsRevealed { .. }])
        ));
    }

    #[test]
    fn revealing_before_the_period_ends_with_one_review_changes_nothing() {
        let mut history = completed_history();
        history.push(review_left(Party::Client));
        ContractTest::with(())
            .given(history)
            .when(reveal(days_later(13)))
            .then_expect_events(vec![]);
    }

    #[test]
    fn revealing_reviews_twice_or_on_an_active_contract_changes_nothing() {
        let mut revealed_history = completed_history();
        revealed_history.extend([
            review_left(Party::Client),
            review_left(Party::Freelancer),
            revealed(),
        ]);
        for history in [revealed_history, vec![started(), funded(m1())]] {
            ContractTest::with(())
                .given(history)
                .when(reveal(days_later(30)))
                .then_expect_events(vec![]);
        }
    }

    #[test]
    fn only_the_platform_can_reveal_reviews() {
        ContractTest::with(())
            .given(completed_history())
            .when(ContractCommand::RevealReviews {
                actor: admin(),
                at: days_later(30),
            })
            .then_expect_error(ContractError::NotSystem);
    }

    // ---- events, state and errors ----

    #[test]
    fn every_event_is_stored_under_its_variant_name_at_version_1() {
        let events = vec![
            started(),
            funded(m1()),
            submitted(m1()),
            changes_requested(m1(), 1),
            approved(m1(), 20_000),
            completed(),
            cancelled(vec![m2()]),
            dispute_opened(dispute(1), m1(), &client()),
            dispute_resolved(dispute(1), m1(), 1, 2),
            review_left(Party::Client),
            revealed(),
        ];
        for event in events {
            let json = serde_json::to_value(&event).unwrap();
            let tag = json.as_object().and_then(|o| o.keys().next().cloned());
            assert_eq!(tag, Some(event.event_type()));
            assert_eq!(event.event_version(), "1");
            let back: ContractEvent = serde_json::from_value(json).unwrap();
            assert_eq!(back, event);
        }
    }

    #[test]
    fn a_contract_survives_a_snapshot_round_trip() {
        let mut history = disputed_history();
        history.push(funded(m2()));
        let contract = rebuilt(history);
        let snapshot = serde_json::to_value(&contract).unwrap();
        let restored: Contract = serde_json::from_value(snapshot).unwrap();
        assert_eq!(format!("{restored:?}"), format!("{contract:?}"));
    }

    #[test]
    fn completion_and_reviews_are_visible_through_accessors() {
        let mut history = completed_history();
        history.push(review_left(Party::Freelancer));
        let contract = rebuilt(history);
        assert_eq!(contract.status(), Some(ContractStatus::Completed));
        assert_eq!(contract.completed_at(), Some(now()));
        assert!(contract.has_reviewed(Party::Freelancer));
        assert!(!contract.has_reviewed(Party::Client));
        assert!(!contract.reviews_revealed());
        assert_eq!(review_period_ends_at(now()), Some(days_later(14)));
    }

    #[test]
    fn refusals_say_what_kind_they_are_and_which_field_is_at_fault() {
        assert_eq!(ContractError::ContractNotFound.kind(), ErrorKind::NotFound);
        assert_eq!(ContractError::NotTheClient.kind(), ErrorKind::Forbidden);
        assert_eq!(
            ContractError::MilestoneAlreadyApproved.kind(),
            ErrorKind::Conflict
        );
        assert_eq!(ContractError::InvalidNote.kind(), ErrorKind::Validation);
        assert_eq!(ContractError::InvalidNote.field(), Some("note"));
        assert_eq!(ContractError::NegativeRefund.field(), Some("refund"));
        assert_eq!(ContractError::ContractNotFound.field(), None);
    }

    proptest! {
        #[test]
        fn any_resolution_that_does_not_add_up_to_the_milestone_amount_is_refused(
            release in any::<i64>(),
            refund in any::<i64>(),
        ) {
            let result = ContractTest::with(())
                .given(disputed_history())
                .when(resolve(dispute(1), usd(release), usd(refund), admin()))
                .inspect_result();
            let adds_up = i128::from(release) + i128::from(refund) == 20_000;
            if adds_up && release >= 0 && refund >= 0 {
                prop_assert!(result.is_ok());
            } else {
                prop_assert!(result.is_err());
            }
        }

        #[test]
        fn any_split_of_the_milestone_amount_resolves_the_dispute(release in 0_i64..=20_000) {
            let refund = 20_000 - release;
            let result = ContractTest::with(())
                .given(disputed_history())
                .when(resolve(dispute(1), usd(release), usd(refund), admin()))
                .inspect_result();
            prop_assert_eq!(
                result,
                Ok(vec![dispute_resolved(dispute(1), m1(), release, refund)])
            );
        }
    }
}
