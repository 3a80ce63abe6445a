//! The gig aggregate: a client's job posting and the proposals it receives.
//!
//! Proposals live inside the gig's stream so that "one hire per gig" and "one pending proposal
//! per freelancer" are plain aggregate rules. The state keeps only what those rules need
//! (status, owner, currency, proposals with their freelancer and status, and the milestones of
//! pending proposals for the hire); titles and descriptions live in the read models.

mod commands;
mod errors;
mod events;

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, NaiveDate, Utc};
use cqrs_es::event_sink::EventSink;
use cqrs_es::Aggregate;
use serde::{Deserialize, Serialize};

pub use commands::GigCommand;
pub use errors::GigError;
pub use events::{Budget, ContractTerms, GigEvent, MilestoneTerms};

use crate::actor::{ActingAs, Actor, Authorise, Role};
use crate::ids::{ContractId, GigId, ProposalId, UserId};
use crate::money::{Currency, Money, BPS_PER_WHOLE};
use crate::snapshot::SnapshotSchema;
use crate::validate::trimmed_within;

/// Most live (pending) proposals a gig holds at once: withdrawn, rejected and accepted ones do not
/// count, so nobody can close a gig to others by submitting and withdrawing.
pub const MAX_PROPOSALS_PER_GIG: usize = 500;
/// Most proposals a gig takes in all, whatever became of them: bounds the gig's stream (and its
/// snapshot), since each submission stays in the gig's state.
pub const MAX_SUBMISSIONS_PER_GIG: usize = 2_000;
/// Most milestones in a proposal.
pub const MAX_MILESTONES_PER_PROPOSAL: usize = 20;
/// Longest review window a contract may be given.
pub const MAX_REVIEW_WINDOW_DAYS: u32 = 365;

/// Where a gig is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum GigStatus {
    /// Taking proposals.
    Open,
    /// Not taking proposals; a pending one may still be accepted.
    Closed,
    /// A proposal was accepted.
    Hired,
    /// Cancelled by the owner before hiring.
    Cancelled,
}

/// Where a proposal is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProposalStatus {
    /// Awaiting the owner's decision.
    Pending,
    /// Withdrawn by its freelancer.
    Withdrawn,
    /// Rejected by the owner.
    Rejected,
    /// Accepted: the freelancer was hired.
    Accepted,
}

/// A gig and its proposals. `Default` is the gig before it was posted.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Gig {
    state: Option<GigState>,
}

/// Bump on any change to the shape or meaning of `GigState` (or what it holds).
impl SnapshotSchema for Gig {
    const SNAPSHOT_VERSION: i32 = 1;
}

#[derive(Clone, Debug, Serialize, Deserialize)]
struct GigState {
    id: GigId,
    client_id: UserId,
    status: GigStatus,
    currency: Currency,
    posted_at: DateTime<Utc>,
    proposals: BTreeMap<ProposalId, ProposalEntry>,
    hired: Option<ProposalId>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
struct ProposalEntry {
    freelancer_id: UserId,
    status: ProposalStatus,
    /// Kept only while pending: the hire copies them into `ProposalAccepted`.
    milestones: Vec<MilestoneTerms>,
}

impl Aggregate for Gig {
    const TYPE: &'static str = "gig";
    type Command = GigCommand;
    type Event = GigEvent;
    type Error = GigError;
    type Services = ();

    async fn handle(
        &mut self,
        command: Self::Command,
        _services: &Self::Services,
        sink: &EventSink<Self>,
    ) -> Result<(), Self::Error> {
        self.authorise(&command)?;
        let event = match command {
            GigCommand::PostGig {
                gig_id,
                title,
                description,
                skills,
                budget,
                deadline,
                actor,
                at,
            } => self.post(
                gig_id,
                GigDraft {
                    title,
                    description,
                    skills,
                    budget,
                    deadline,
                },
                &actor,
                at,
            )?,
            GigCommand::ReviseGig {
                title,
                description,
                skills,
                budget,
                deadline,
                actor,
                at,
            } => self.revise(
                Revision {
                    title,
                    description,
                    skills,
                    budget,
                    deadline,
                },
                &actor,
                at,
            )?,
            GigCommand::SubmitProposal {
                proposal_id,
                cover_letter,
                milestones,
                actor,
                at,
            } => self.submit_proposal(proposal_id, &cover_letter, milestones, &actor, at)?,
            GigCommand::WithdrawProposal {
                proposal_id,
                actor,
                at,
            } => self.withdraw_proposal(proposal_id, &actor, at)?,
            GigCommand::RejectProposal {
                proposal_id,
                actor,
                at,
            } => self.reject_proposal(proposal_id, &actor, at)?,
            GigCommand::AcceptProposal {
                proposal_id,
                contract_id,
                fee_bps,
                review_window_days,
                max_revisions,
                actor,
                at,
            } => self.accept_proposal(
                proposal_id,
                contract_id,
                PlatformTerms {
                    fee_bps,
                    review_window_days,
                    max_revisions,
                },
                &actor,
                at,
            )?,
            GigCommand::CloseGig { actor, at } => self.close(&actor, at)?,
            GigCommand::CancelGig { actor, at } => self.cancel(&actor, at)?,
        };
        sink.write(event, self).await;
        Ok(())
    }

    fn apply(&mut self, event: Self::Event) {
        if let GigEvent::GigPosted {
            gig_id,
            client_id,
            budget,
            posted_at,
            ..
        } = &event
        {
            self.state = Some(GigState {
                id: *gig_id,
                client_id: *client_id,
                status: GigStatus::Open,
                currency: budget.currency(),
                posted_at: *posted_at,
                proposals: BTreeMap::new(),
                hired: None,
            });
            return;
        }
        let Some(state) = self.state.as_mut() else {
            return;
        };
        match event {
            GigEvent::GigPosted { .. } => {}
            GigEvent::GigRevised { budget, .. } => {
                if let Some(budget) = budget {
                    state.currency = budget.currency();
                }
            }
            GigEvent::ProposalSubmitted {
                proposal_id,
                freelancer_id,
                milestones,
                ..
            } => {
                state.proposals.insert(
                    proposal_id,
                    ProposalEntry {
                        freelancer_id,
                        status: ProposalStatus::Pending,
                        milestones,
                    },
                );
            }
            GigEvent::ProposalWithdrawn { proposal_id, .. } => {
                state.settle_proposal(proposal_id, ProposalStatus::Withdrawn);
            }
            GigEvent::ProposalRejected { proposal_id, .. } => {
                state.settle_proposal(proposal_id, ProposalStatus::Rejected);
            }
            GigEvent::ProposalAccepted { proposal_id, .. } => {
                state.settle_proposal(proposal_id, ProposalStatus::Accepted);
                state.status = GigStatus::Hired;
                state.hired = Some(proposal_id);
            }
            GigEvent::GigClosed { .. } => state.status = GigStatus::Closed,
            GigEvent::GigCancelled { .. } => state.status = GigStatus::Cancelled,
        }
    }
}

impl GigState {
    fn settle_proposal(&mut self, proposal_id: ProposalId, status: ProposalStatus) {
        if let Some(proposal) = self.proposals.get_mut(&proposal_id) {
            proposal.status = status;
            proposal.milestones = Vec::new();
        }
    }
}

/// The fields of a new gig, as sent.
struct GigDraft {
    title: String,
    description: String,
    skills: Vec<String>,
    budget: Budget,
    deadline: Option<NaiveDate>,
}

/// The optional fields of a revision, as sent.
struct Revision {
    title: Option<String>,
    description: Option<String>,
    skills: Option<Vec<String>>,
    budget: Option<Budget>,
    deadline: Option<NaiveDate>,
}

/// The platform's terms the command service passes with a hire.
struct PlatformTerms {
    fee_bps: u32,
    review_window_days: u32,
    max_revisions: u32,
}

impl Gig {
    /// The gig's id, once posted.
    #[must_use]
    pub fn id(&self) -> Option<GigId> {
        self.state.as_ref().map(|state| state.id)
    }

    /// The gig's status, once posted.
    #[must_use]
    pub fn status(&self) -> Option<GigStatus> {
        self.state.as_ref().map(|state| state.status)
    }

    /// The owning client, once posted.
    #[must_use]
    pub fn client_id(&self) -> Option<UserId> {
        self.state.as_ref().map(|state| state.client_id)
    }

    /// The currency proposals must use, once posted.
    #[must_use]
    pub fn currency(&self) -> Option<Currency> {
        self.state.as_ref().map(|state| state.currency)
    }

    /// When the gig was posted.
    #[must_use]
    pub fn posted_at(&self) -> Option<DateTime<Utc>> {
        self.state.as_ref().map(|state| state.posted_at)
    }

    /// A proposal's status, if it exists on this gig.
    #[must_use]
    pub fn proposal_status(&self, proposal_id: ProposalId) -> Option<ProposalStatus> {
        self.proposal(proposal_id).map(|proposal| proposal.status)
    }

    /// Who submitted a proposal, if it exists on this gig.
    #[must_use]
    pub fn proposal_freelancer(&self, proposal_id: ProposalId) -> Option<UserId> {
        self.proposal(proposal_id)
            .map(|proposal| proposal.freelancer_id)
    }

    /// How many proposals the gig has received, whatever became of them.
    #[must_use]
    pub fn proposal_count(&self) -> usize {
        self.state.as_ref().map_or(0, |state| state.proposals.len())
    }

    /// How many proposals are pending.
    #[must_use]
    pub fn pending_proposal_count(&self) -> usize {
        self.state.as_ref().map_or(0, |state| {
            state
                .proposals
                .values()
                .filter(|proposal| proposal.status == ProposalStatus::Pending)
                .count()
        })
    }

    /// The accepted proposal, once someone was hired.
    #[must_use]
    pub fn hired_proposal(&self) -> Option<ProposalId> {
        self.state.as_ref().and_then(|state| state.hired)
    }

    fn proposal(&self, proposal_id: ProposalId) -> Option<&ProposalEntry> {
        self.state
            .as_ref()
            .and_then(|state| state.proposals.get(&proposal_id))
    }

    fn existing(&self) -> Result<&GigState, GigError> {
        self.state.as_ref().ok_or(GigError::GigNotFound)
    }

    fn owned_by(&self, actor: &Actor) -> Result<&GigState, GigError> {
        let state = self.existing()?;
        if state.client_id == actor.user_id {
            Ok(state)
        } else {
            Err(GigError::NotOwner)
        }
    }

    fn post(
        &self,
        gig_id: GigId,
        draft: GigDraft,
        actor: &Actor,
        at: DateTime<Utc>,
    ) -> Result<GigEvent, GigError> {
        if self.state.is_some() {
            return Err(GigError::AlreadyPosted);
        }
        if !actor.has_role(Role::Client) {
            return Err(GigError::NotAClient);
        }
        let title = valid_title(&draft.title)?;
        let description = valid_description(&draft.description)?;
        let skills = normalised_skills(&draft.skills)?;
        validate_budget(&draft.budget)?;
        validate_deadline(draft.deadline, at)?;
        Ok(GigEvent::GigPosted {
            gig_id,
            client_id: actor.user_id,
            title,
            description,
            skills,
            budget: draft.budget,
            deadline: draft.deadline,
            posted_at: at,
        })
    }

    fn revise(
        &self,
        revision: Revision,
        actor: &Actor,
        at: DateTime<Utc>,
    ) -> Result<GigEvent, GigError> {
        let state = self.owned_by(actor)?;
        if state.status != GigStatus::Open {
            return Err(GigError::NotOpenForRevision);
        }
        let Revision {
            title,
            description,
            skills,
            budget,
            deadline,
        } = revision;
        if title.is_none()
            && description.is_none()
            && skills.is_none()
            && budget.is_none()
            && deadline.is_none()
        {
            return Err(GigError::NothingToRevise);
        }
        let title = title.as_deref().map(valid_title).transpose()?;
        let description = description.as_deref().map(valid_description).transpose()?;
        let skills = skills.as_deref().map(normalised_skills).transpose()?;
        if let Some(budget) = &budget {
            validate_budget(budget)?;
            // Proposals were priced in the old currency; switching would strand them.
            if budget.currency() != state.currency && !state.proposals.is_empty() {
                return Err(GigError::CurrencyLocked);
            }
        }
        validate_deadline(deadline, at)?;
        Ok(GigEvent::GigRevised {
            title,
            description,
            skills,
            budget,
            deadline,
            revised_at: at,
        })
    }

    fn submit_proposal(
        &self,
        proposal_id: ProposalId,
        cover_letter: &str,
        milestones: Vec<MilestoneTerms>,
        actor: &Actor,
        at: DateTime<Utc>,
    ) -> Result<GigEvent, GigError> {
        let state = self.existing()?;
        if !actor.has_role(Role::Freelancer) {
            return Err(GigError::NotAFreelancer);
        }
        if state.client_id == actor.user_id {
            return Err(GigError::OwnerCannotPropose);
        }
        if state.status != GigStatus::Open {
            return Err(GigError::NotOpenForProposals);
        }
        if state.proposals.contains_key(&proposal_id) {
            return Err(GigError::ProposalIdTaken);
        }
        let has_pending = state.proposals.values().any(|proposal| {
            proposal.freelancer_id == actor.user_id && proposal.status == ProposalStatus::Pending
        });
        if has_pending {
            return Err(GigError::DuplicatePendingProposal);
        }
        let pending = state
            .proposals
            .values()
            .filter(|proposal| proposal.status == ProposalStatus::Pending)
            .count();
        if pending >= MAX_PROPOSALS_PER_GIG {
            return Err(GigError::TooManyProposals);
        }
        if state.proposals.len() >= MAX_SUBMISSIONS_PER_GIG {
            return Err(GigError::TooManySubmissions);
        }
        let cover_letter =
            trimmed_within(cover_letter, 1, 10_000).ok_or(GigError::InvalidCoverLetter)?;
        let milestones = valid_milestones(milestones, state.currency, at)?;
        let bid = milestones
            .iter()
            .try_fold(Money::zero(state.currency), |sum, milestone| {
                sum.checked_add(milestone.amount)
            })
            .map_err(|_| GigError::BidTooLarge)?;
        Ok(GigEvent::ProposalSubmitted {
            proposal_id,
            freelancer_id: actor.user_id,
            cover_letter,
            milestones,
            bid,
            submitted_at: at,
        })
    }

    fn withdraw_proposal(
        &self,
        proposal_id: ProposalId,
        actor: &Actor,
        at: DateTime<Utc>,
    ) -> Result<GigEvent, GigError> {
        let state = self.existing()?;
        let proposal = state
            .proposals
            .get(&proposal_id)
            .ok_or(GigError::ProposalNotFound)?;
        if proposal.freelancer_id != actor.user_id {
            return Err(GigError::NotProposalAuthor);
        }
        if proposal.status != ProposalStatus::Pending {
            return Err(GigError::ProposalNotPending);
        }
        Ok(GigEvent::ProposalWithdrawn {
            proposal_id,
            freelancer_id: proposal.freelancer_id,
            withdrawn_at: at,
        })
    }

    fn reject_proposal(
        &self,
        proposal_id: ProposalId,
        actor: &Actor,
        at: DateTime<Utc>,
    ) -> Result<GigEvent, GigError> {
        let state = self.owned_by(actor)?;
        let proposal = state
            .proposals
            .get(&proposal_id)
            .ok_or(GigError::ProposalNotFound)?;
        if proposal.status != ProposalStatus::Pending {
            return Err(GigError::ProposalNotPending);
        }
        Ok(GigEvent::ProposalRejected {
            proposal_id,
            freelancer_id: proposal.freelancer_id,
            rejected_at: at,
        })
    }

    fn accept_proposal(
        &self,
        proposal_id: ProposalId,
        contract_id: ContractId,
        terms: PlatformTerms,
        actor: &Actor,
        at: DateTime<Utc>,
    ) -> Result<GigEvent, GigError> {
        let state = self.owned_by(actor)?;
        match state.status {
            GigStatus::Open | GigStatus::Closed => {}
            GigStatus::Hired => return Err(GigError::AlreadyHired),
            GigStatus::Cancelled => return Err(GigError::AlreadyCancelled),
        }
        let proposal = state
            .proposals
            .get(&proposal_id)
            .ok_or(GigError::ProposalNotFound)?;
        if proposal.status != ProposalStatus::Pending {
            return Err(GigError::ProposalNotPending);
        }
        if terms.fee_bps > BPS_PER_WHOLE {
            return Err(GigError::InvalidFeeRate);
        }
        if !(1..=MAX_REVIEW_WINDOW_DAYS).contains(&terms.review_window_days) {
            return Err(GigError::InvalidReviewWindow);
        }
        Ok(GigEvent::ProposalAccepted {
            gig_id: state.id,
            proposal_id,
            contract_id,
            client_id: state.client_id,
            freelancer_id: proposal.freelancer_id,
            milestones: proposal.milestones.clone(),
            terms: ContractTerms {
                currency: state.currency,
                fee_bps: terms.fee_bps,
                review_window_days: terms.review_window_days,
                max_revisions: terms.max_revisions,
            },
            accepted_at: at,
            posted_at: state.posted_at,
        })
    }

    fn close(&self, actor: &Actor, at: DateTime<Utc>) -> Result<GigEvent, GigError> {
        let state = self.owned_by(actor)?;
        if state.status != GigStatus::Open {
            return Err(GigError::NotOpenForClosing);
        }
        Ok(GigEvent::GigClosed { closed_at: at })
    }

    fn cancel(&self, actor: &Actor, at: DateTime<Utc>) -> Result<GigEvent, GigError> {
        let state = self.owned_by(actor)?;
        match state.status {
            GigStatus::Open | GigStatus::Closed => Ok(GigEvent::GigCancelled { cancelled_at: at }),
            GigStatus::Hired => Err(GigError::AlreadyHired),
            GigStatus::Cancelled => Err(GigError::AlreadyCancelled),
        }
    }
}

impl Authorise for Gig {
    /// Posting and proposing need the role; the owner's commands are the gig's client's, a
    /// withdrawal its proposal's freelancer's.
    fn authorise(&self, command: &GigCommand) -> Result<ActingAs, GigError> {
        let client = ActingAs::Role(Role::Client);
        match command {
            GigCommand::PostGig { actor, .. } => {
                if actor.has_role(Role::Client) {
                    Ok(client)
                } else {
                    Err(GigError::NotAClient)
                }
            }
            GigCommand::SubmitProposal { actor, .. } => {
                self.existing()?;
                if actor.has_role(Role::Freelancer) {
                    Ok(ActingAs::Role(Role::Freelancer))
                } else {
                    Err(GigError::NotAFreelancer)
                }
            }
            GigCommand::WithdrawProposal {
                proposal_id, actor, ..
            } => {
                let proposal = self
                    .existing()?
                    .proposals
                    .get(proposal_id)
                    .ok_or(GigError::ProposalNotFound)?;
                if proposal.freelancer_id == actor.user_id {
                    Ok(ActingAs::Role(Role::Freelancer))
                } else {
                    Err(GigError::NotProposalAuthor)
                }
            }
            GigCommand::ReviseGig { actor, .. }
            | GigCommand::RejectProposal { actor, .. }
            | GigCommand::AcceptProposal { actor, .. }
            | GigCommand::CloseGig { actor, .. }
            | GigCommand::CancelGig { actor, .. } => self.owned_by(actor).map(|_| client),
        }
    }
}

fn valid_title(title: &str) -> Result<String, GigError> {
    trimmed_within(title, 1, 200).ok_or(GigError::InvalidTitle)
}

fn valid_description(description: &str) -> Result<String, GigError> {
    trimmed_within(description, 1, 20_000).ok_or(GigError::InvalidDescription)
}

/// Trimmed, lower-case, duplicates dropped (first occurrence kept), then counted.
fn normalised_skills(skills: &[String]) -> Result<Vec<String>, GigError> {
    let mut seen = BTreeSet::new();
    let mut normalised = Vec::new();
    for skill in skills {
        let skill = trimmed_within(skill, 1, 50)
            .ok_or(GigError::InvalidSkill)?
            .to_lowercase();
        if seen.insert(skill.clone()) {
            normalised.push(skill);
        }
    }
    if (1..=20).contains(&normalised.len()) {
        Ok(normalised)
    } else {
        Err(GigError::InvalidSkillCount)
    }
}

fn validate_budget(budget: &Budget) -> Result<(), GigError> {
    match budget {
        Budget::Fixed { amount } => {
            if !amount.is_positive() {
                return Err(GigError::BudgetNotPositive);
            }
            if amount.exceeds_maximum() {
                return Err(GigError::BudgetTooLarge);
            }
        }
        Budget::Hourly { min, max } => {
            if !min.is_positive() || !max.is_positive() {
                return Err(GigError::BudgetNotPositive);
            }
            if min.exceeds_maximum() || max.exceeds_maximum() {
                return Err(GigError::BudgetTooLarge);
            }
            if min.currency != max.currency {
                return Err(GigError::BudgetCurrencyMismatch);
            }
            if min.amount > max.amount {
                return Err(GigError::HourlyRangeInverted);
            }
        }
    }
    Ok(())
}

fn validate_deadline(deadline: Option<NaiveDate>, at: DateTime<Utc>) -> Result<(), GigError> {
    match deadline {
        Some(deadline) if deadline <= at.date_naive() => Err(GigError::DeadlineNotInFuture),
        _ => Ok(()),
    }
}

fn valid_milestones(
    milestones: Vec<MilestoneTerms>,
    currency: Currency,
    at: DateTime<Utc>,
) -> Result<Vec<MilestoneTerms>, GigError> {
    if !(1..=MAX_MILESTONES_PER_PROPOSAL).contains(&milestones.len()) {
        return Err(GigError::InvalidMilestoneCount);
    }
    let mut ids = BTreeSet::new();
    milestones
        .into_iter()
        .map(|milestone| {
            if !ids.insert(milestone.milestone_id) {
                return Err(GigError::DuplicateMilestoneId);
            }
            let title =
                trimmed_within(&milestone.title, 1, 200).ok_or(GigError::InvalidMilestoneTitle)?;
            if milestone.amount.currency != currency {
                return Err(GigError::MilestoneCurrencyMismatch { expected: currency });
            }
            if !milestone.amount.is_positive() {
                return Err(GigError::MilestoneAmountNotPositive);
            }
            if milestone.amount.exceeds_maximum() {
                return Err(GigError::MilestoneAmountTooLarge);
            }
            if milestone.due_date.is_some_and(|due| due < at.date_naive()) {
                return Err(GigError::MilestoneDueDateInPast);
            }
            Ok(MilestoneTerms { title, ..milestone })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use cqrs_es::test::TestFramework;
    use cqrs_es::DomainEvent;
    use uuid::Uuid;

    use super::*;
    use crate::error::ErrorKind;
    use crate::money::MAX_AMOUNT;
    use crate::test_support::*;

    type GigTest = TestFramework<Gig>;

    fn other_freelancer() -> Actor {
        Actor::new(user(3), vec![Role::Freelancer])
    }

    fn other_client() -> Actor {
        Actor::new(user(4), vec![Role::Client])
    }

    fn date(y: i32, m: u32, d: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, m, d).unwrap()
    }

    fn proposal(n: u128) -> ProposalId {
        ProposalId(Uuid::from_u128(200 + n))
    }

    fn milestone(n: u128, amount: Money) -> MilestoneTerms {
        MilestoneTerms {
            milestone_id: crate::ids::MilestoneId(Uuid::from_u128(400 + n)),
            title: format!("Milestone {n}"),
            amount,
            due_date: Some(date(2025, 4, 1)),
        }
    }

    fn fixed_budget() -> Budget {
        Budget::Fixed {
            amount: usd(50_000),
        }
    }

    fn post_gig() -> GigCommand {
        GigCommand::PostGig {
            gig_id: gig_id(),
            title: "Build a landing page".to_owned(),
            description: "A responsive landing page for our product launch.".to_owned(),
            skills: vec!["html".to_owned(), "css".to_owned()],
            budget: fixed_budget(),
            deadline: Some(date(2025, 4, 30)),
            actor: client(),
            at: now(),
        }
    }

    fn post_gig_with(edit: impl FnOnce(&mut GigCommand)) -> GigCommand {
        let mut command = post_gig();
        edit(&mut command);
        command
    }

    fn posted() -> GigEvent {
        GigEvent::GigPosted {
            gig_id: gig_id(),
            client_id: client().user_id,
            title: "Build a landing page".to_owned(),
            description: "A responsive landing page for our product launch.".to_owned(),
            skills: vec!["html".to_owned(), "css".to_owned()],
            budget: fixed_budget(),
            deadline: Some(date(2025, 4, 30)),
            posted_at: now(),
        }
    }

    fn submit(id: ProposalId, actor: Actor) -> GigCommand {
        GigCommand::SubmitProposal {
            proposal_id: id,
            cover_letter: "I have built many of these.".to_owned(),
            milestones: vec![milestone(1, usd(20_000)), milestone(2, usd(30_000))],
            actor,
            at: now(),
        }
    }

    fn submit_with_milestones(milestones: Vec<MilestoneTerms>) -> GigCommand {
        GigCommand::SubmitProposal {
            proposal_id: proposal(1),
            cover_letter: "I have built many of these.".to_owned(),
            milestones,
            actor: freelancer(),
            at: now(),
        }
    }

    fn submitted(id: ProposalId, by: &Actor) -> GigEvent {
        GigEvent::ProposalSubmitted {
            proposal_id: id,
            freelancer_id: by.user_id,
            cover_letter: "I have built many of these.".to_owned(),
            milestones: vec![milestone(1, usd(20_000)), milestone(2, usd(30_000))],
            bid: usd(50_000),
            submitted_at: now(),
        }
    }

    fn withdrawn(id: ProposalId, by: &Actor) -> GigEvent {
        GigEvent::ProposalWithdrawn {
            proposal_id: id,
            freelancer_id: by.user_id,
            withdrawn_at: now(),
        }
    }

    fn rejected(id: ProposalId, by: &Actor) -> GigEvent {
        GigEvent::ProposalRejected {
            proposal_id: id,
            freelancer_id: by.user_id,
            rejected_at: now(),
        }
    }

    fn accept(id: ProposalId, actor: Actor) -> GigCommand {
        GigCommand::AcceptProposal {
            proposal_id: id,
            contract_id: contract_id(),
            fee_bps: 1_000,
            review_window_days: 14,
            max_revisions: 2,
            actor,
            at: now(),
        }
    }

    fn accepted(id: ProposalId, by: &Actor) -> GigEvent {
        GigEvent::ProposalAccepted {
            gig_id: gig_id(),
            proposal_id: id,
            contract_id: contract_id(),
            client_id: client().user_id,
            freelancer_id: by.user_id,
            milestones: vec![milestone(1, usd(20_000)), milestone(2, usd(30_000))],
            terms: ContractTerms {
                currency: Currency::USD,
                fee_bps: 1_000,
                review_window_days: 14,
                max_revisions: 2,
            },
            accepted_at: now(),
            posted_at: now(),
        }
    }

    fn revise(actor: Actor) -> GigCommand {
        GigCommand::ReviseGig {
            title: Some("  Build a landing page, fast ".to_owned()),
            description: None,
            skills: None,
            budget: None,
            deadline: None,
            actor,
            at: now(),
        }
    }

    fn revise_budget(budget: Budget) -> GigCommand {
        GigCommand::ReviseGig {
            title: None,
            description: None,
            skills: None,
            budget: Some(budget),
            deadline: None,
            actor: client(),
            at: now(),
        }
    }

    fn closed() -> GigEvent {
        GigEvent::GigClosed { closed_at: now() }
    }

    fn cancelled() -> GigEvent {
        GigEvent::GigCancelled {
            cancelled_at: now(),
        }
    }

    fn rebuilt(events: Vec<GigEvent>) -> Gig {
        let mut gig = Gig::default();
        for event in events {
            gig.apply(event);
        }
        gig
    }

    // ---- PostGig ----

    #[test]
    fn a_client_can_post_a_gig_which_opens_it_for_proposals() {
        GigTest::with(())
            .given_no_previous_events()
            .when(post_gig())
            .then_expect_events(vec![posted()]);
        assert_eq!(rebuilt(vec![posted()]).status(), Some(GigStatus::Open));
    }

    #[test]
    fn a_posted_gigs_text_is_trimmed_and_its_skills_lowercased_and_deduplicated() {
        let command = post_gig_with(|command| {
            if let GigCommand::PostGig { title, skills, .. } = command {
                *title = "  Build a landing page \n".to_owned();
                *skills = vec![" HTML ".to_owned(), "css".to_owned(), "html".to_owned()];
            }
        });
        GigTest::with(())
            .given_no_previous_events()
            .when(command)
            .then_expect_events(vec![posted()]);
    }

    #[test]
    fn only_a_client_can_post_a_gig() {
        let command = post_gig_with(|command| {
            if let GigCommand::PostGig { actor, .. } = command {
                *actor = freelancer();
            }
        });
        GigTest::with(())
            .given_no_previous_events()
            .when(command)
            .then_expect_error(GigError::NotAClient);
    }

    #[test]
    fn a_gig_cannot_be_posted_twice() {
        GigTest::with(())
            .given(vec![posted()])
            .when(post_gig())
            .then_expect_error(GigError::AlreadyPosted);
    }

    #[test]
    fn a_gig_title_must_be_1_to_200_characters() {
        for bad in [String::new(), "   ".to_owned(), "x".repeat(201)] {
            let command = post_gig_with(|command| {
                if let GigCommand::PostGig { title, .. } = command {
                    *title = bad;
                }
            });
            GigTest::with(())
                .given_no_previous_events()
                .when(command)
                .then_expect_error(GigError::InvalidTitle);
        }
        // Counted in characters, not bytes.
        let command = post_gig_with(|command| {
            if let GigCommand::PostGig { title, .. } = command {
                *title = "é".repeat(200);
            }
        });
        let result = GigTest::with(())
            .given_no_previous_events()
            .when(command)
            .inspect_result();
        assert!(result.is_ok());
    }

    #[test]
    fn a_gig_description_must_be_1_to_20000_characters() {
        for bad in [" ".to_owned(), "d".repeat(20_001)] {
            let command = post_gig_with(|command| {
                if let GigCommand::PostGig { description, .. } = command {
                    *description = bad;
                }
            });
            GigTest::with(())
                .given_no_previous_events()
                .when(command)
                .then_expect_error(GigError::InvalidDescription);
        }
    }

    #[test]
    fn a_gig_needs_1_to_20_distinct_skills() {
        let too_many: Vec<String> = (0..21).map(|n| format!("skill{n}")).collect();
        for bad in [Vec::new(), too_many] {
            let command = post_gig_with(|command| {
                if let GigCommand::PostGig { skills, .. } = command {
                    *skills = bad;
                }
            });
            GigTest::with(())
                .given_no_previous_events()
                .when(command)
                .then_expect_error(GigError::InvalidSkillCount);
        }
    }

    #[test]
    fn duplicate_skills_count_once_towards_the_limit_of_20() {
        let mut many: Vec<String> = (0..20).map(|n| format!("skill{n}")).collect();
        many.push("SKILL0".to_owned());
        let command = post_gig_with(|command| {
            if let GigCommand::PostGig { skills, .. } = command {
                *skills = many;
            }
        });
        let result = GigTest::with(())
            .given_no_previous_events()
            .when(command)
            .inspect_result();
        assert!(matches!(
            result.as_deref(),
            Ok([GigEvent::GigPosted { skills, .. }]) if skills.len() == 20
        ));
    }

    #[test]
    fn each_skill_must_be_1_to_50_characters() {
        for bad in ["  ".to_owned(), "s".repeat(51)] {
            let command = post_gig_with(|command| {
                if let GigCommand::PostGig { skills, .. } = command {
                    *skills = vec!["rust".to_owned(), bad];
                }
            });
            GigTest::with(())
                .given_no_previous_events()
                .when(command)
                .then_expect_error(GigError::InvalidSkill);
        }
    }

    #[test]
    fn budget_amounts_must_be_greater_than_zero() {
        let bad_budgets = [
            Budget::Fixed { amount: usd(0) },
            Budget::Fixed { amount: usd(-1) },
            Budget::Hourly {
                min: usd(0),
                max: usd(5_000),
            },
        ];
        for bad in bad_budgets {
            let command = post_gig_with(|command| {
                if let GigCommand::PostGig { budget, .. } = command {
                    *budget = bad;
                }
            });
            GigTest::with(())
                .given_no_previous_events()
                .when(command)
                .then_expect_error(GigError::BudgetNotPositive);
        }
    }

    #[test]
    fn an_hourly_budgets_minimum_cannot_exceed_its_maximum() {
        let command = post_gig_with(|command| {
            if let GigCommand::PostGig { budget, .. } = command {
                *budget = Budget::Hourly {
                    min: usd(6_000),
                    max: usd(5_000),
                };
            }
        });
        GigTest::with(())
            .given_no_previous_events()
            .when(command)
            .then_expect_error(GigError::HourlyRangeInverted);
    }

    #[test]
    fn an_hourly_budget_with_equal_minimum_and_maximum_is_accepted() {
        let command = post_gig_with(|command| {
            if let GigCommand::PostGig { budget, .. } = command {
                *budget = Budget::Hourly {
                    min: usd(5_000),
                    max: usd(5_000),
                };
            }
        });
        let result = GigTest::with(())
            .given_no_previous_events()
            .when(command)
            .inspect_result();
        assert!(result.is_ok());
    }

    #[test]
    fn an_hourly_budget_must_be_in_one_currency() {
        let command = post_gig_with(|command| {
            if let GigCommand::PostGig { budget, .. } = command {
                *budget = Budget::Hourly {
                    min: usd(1_000),
                    max: Money::new(5_000, Currency::EUR),
                };
            }
        });
        GigTest::with(())
            .given_no_previous_events()
            .when(command)
            .then_expect_error(GigError::BudgetCurrencyMismatch);
    }

    #[test]
    fn a_deadline_must_be_after_the_posting_date() {
        for bad in [date(2025, 3, 1), date(2025, 2, 28)] {
            let command = post_gig_with(|command| {
                if let GigCommand::PostGig { deadline, .. } = command {
                    *deadline = Some(bad);
                }
            });
            GigTest::with(())
                .given_no_previous_events()
                .when(command)
                .then_expect_error(GigError::DeadlineNotInFuture);
        }
    }

    #[test]
    fn a_gig_may_have_no_deadline() {
        let command = post_gig_with(|command| {
            if let GigCommand::PostGig { deadline, .. } = command {
                *deadline = None;
            }
        });
        let result = GigTest::with(())
            .given_no_previous_events()
            .when(command)
            .inspect_result();
        assert!(result.is_ok());
    }

    // ---- ReviseGig ----

    #[test]
    fn the_owner_can_revise_an_open_gig() {
        GigTest::with(())
            .given(vec![posted()])
            .when(revise(client()))
            .then_expect_events(vec![GigEvent::GigRevised {
                title: Some("Build a landing page, fast".to_owned()),
                description: None,
                skills: None,
                budget: None,
                deadline: None,
                revised_at: now(),
            }]);
    }

    #[test]
    fn only_the_owner_can_revise_a_gig() {
        GigTest::with(())
            .given(vec![posted()])
            .when(revise(other_client()))
            .then_expect_error(GigError::NotOwner);
    }

    #[test]
    fn a_gig_that_does_not_exist_cannot_be_revised() {
        GigTest::with(())
            .given_no_previous_events()
            .when(revise(client()))
            .then_expect_error(GigError::GigNotFound);
    }

    #[test]
    fn only_an_open_gig_can_be_revised() {
        GigTest::with(())
            .given(vec![posted(), closed()])
            .when(revise(client()))
            .then_expect_error(GigError::NotOpenForRevision);
    }

    #[test]
    fn a_revision_must_change_something() {
        GigTest::with(())
            .given(vec![posted()])
            .when(GigCommand::ReviseGig {
                title: None,
                description: None,
                skills: None,
                budget: None,
                deadline: None,
                actor: client(),
                at: now(),
            })
            .then_expect_error(GigError::NothingToRevise);
    }

    #[test]
    fn a_revision_is_validated_like_a_new_gig() {
        GigTest::with(())
            .given(vec![posted()])
            .when(GigCommand::ReviseGig {
                title: None,
                description: None,
                skills: Some(vec![]),
                budget: None,
                deadline: None,
                actor: client(),
                at: now(),
            })
            .then_expect_error(GigError::InvalidSkillCount);
        GigTest::with(())
            .given(vec![posted()])
            .when(revise_budget(Budget::Fixed { amount: usd(0) }))
            .then_expect_error(GigError::BudgetNotPositive);
        GigTest::with(())
            .given(vec![posted()])
            .when(GigCommand::ReviseGig {
                title: None,
                description: None,
                skills: None,
                budget: None,
                deadline: Some(date(2025, 3, 1)),
                actor: client(),
                at: now(),
            })
            .then_expect_error(GigError::DeadlineNotInFuture);
    }

    #[test]
    fn the_budgets_currency_may_change_before_any_proposal_arrives() {
        let euros = Budget::Fixed {
            amount: Money::new(40_000, Currency::EUR),
        };
        GigTest::with(())
            .given(vec![posted()])
            .when(revise_budget(euros.clone()))
            .then_expect_events(vec![GigEvent::GigRevised {
                title: None,
                description: None,
                skills: None,
                budget: Some(euros.clone()),
                deadline: None,
                revised_at: now(),
            }]);
        let gig = rebuilt(vec![
            posted(),
            GigEvent::GigRevised {
                title: None,
                description: None,
                skills: None,
                budget: Some(euros),
                deadline: None,
                revised_at: now(),
            },
        ]);
        assert_eq!(gig.currency(), Some(Currency::EUR));
    }

    #[test]
    fn the_budgets_currency_cannot_change_once_proposals_were_received() {
        GigTest::with(())
            .given(vec![
                posted(),
                submitted(proposal(1), &freelancer()),
                withdrawn(proposal(1), &freelancer()),
            ])
            .when(revise_budget(Budget::Fixed {
                amount: Money::new(40_000, Currency::EUR),
            }))
            .then_expect_error(GigError::CurrencyLocked);
        // The amount may still change.
        let result = GigTest::with(())
            .given(vec![posted(), submitted(proposal(1), &freelancer())])
            .when(revise_budget(Budget::Fixed {
                amount: usd(60_000),
            }))
            .inspect_result();
        assert!(result.is_ok());
    }

    // ---- SubmitProposal ----

    #[test]
    fn a_freelancer_can_propose_and_the_bid_is_the_sum_of_the_milestones() {
        GigTest::with(())
            .given(vec![posted()])
            .when(submit(proposal(1), freelancer()))
            .then_expect_events(vec![submitted(proposal(1), &freelancer())]);
    }

    #[test]
    fn only_a_freelancer_can_propose() {
        GigTest::with(())
            .given(vec![posted()])
            .when(submit(proposal(1), other_client()))
            .then_expect_error(GigError::NotAFreelancer);
    }

    #[test]
    fn the_owner_cannot_propose_on_their_own_gig() {
        let owner_also_freelancing =
            Actor::new(client().user_id, vec![Role::Client, Role::Freelancer]);
        GigTest::with(())
            .given(vec![posted()])
            .when(submit(proposal(1), owner_also_freelancing))
            .then_expect_error(GigError::OwnerCannotPropose);
    }

    #[test]
    fn a_proposal_cannot_be_submitted_to_a_gig_that_does_not_exist() {
        GigTest::with(())
            .given_no_previous_events()
            .when(submit(proposal(1), freelancer()))
            .then_expect_error(GigError::GigNotFound);
    }

    #[test]
    fn a_gig_that_is_closed_hired_or_cancelled_takes_no_proposals() {
        let histories = [
            vec![posted(), closed()],
            vec![posted(), cancelled()],
            vec![
                posted(),
                submitted(proposal(1), &freelancer()),
                accepted(proposal(1), &freelancer()),
            ],
        ];
        for history in histories {
            GigTest::with(())
                .given(history)
                .when(submit(proposal(2), other_freelancer()))
                .then_expect_error(GigError::NotOpenForProposals);
        }
    }

    #[test]
    fn a_freelancer_cannot_propose_twice_while_the_first_proposal_is_pending() {
        GigTest::with(())
            .given(vec![posted(), submitted(proposal(1), &freelancer())])
            .when(submit(proposal(2), freelancer()))
            .then_expect_error(GigError::DuplicatePendingProposal);
    }

    #[test]
    fn a_freelancer_may_propose_again_after_withdrawing_or_being_rejected() {
        for ended in [
            withdrawn(proposal(1), &freelancer()),
            rejected(proposal(1), &freelancer()),
        ] {
            GigTest::with(())
                .given(vec![posted(), submitted(proposal(1), &freelancer()), ended])
                .when(submit(proposal(2), freelancer()))
                .then_expect_events(vec![submitted(proposal(2), &freelancer())]);
        }
    }

    #[test]
    fn a_proposal_id_cannot_be_reused() {
        GigTest::with(())
            .given(vec![posted(), submitted(proposal(1), &freelancer())])
            .when(submit(proposal(1), other_freelancer()))
            .then_expect_error(GigError::ProposalIdTaken);
    }

    #[test]
    fn withdrawn_and_rejected_proposals_do_not_count_towards_the_500_live_ones() {
        // One freelancer submitting and withdrawing 500 times must not close the gig to others.
        let mut history = vec![posted()];
        for n in 0..500 {
            history.push(submitted(proposal(1000 + n), &freelancer()));
            if n % 2 == 0 {
                history.push(withdrawn(proposal(1000 + n), &freelancer()));
            } else {
                history.push(rejected(proposal(1000 + n), &freelancer()));
            }
        }
        GigTest::with(())
            .given(history)
            .when(submit(proposal(1), other_freelancer()))
            .then_expect_events(vec![submitted(proposal(1), &other_freelancer())]);
    }

    #[test]
    fn a_gig_holds_at_most_500_pending_proposals() {
        let mut history = vec![posted()];
        for n in 0..500 {
            let someone = Actor::new(user(10_000 + n), vec![Role::Freelancer]);
            history.push(submitted(proposal(1000 + n), &someone));
        }
        GigTest::with(())
            .given(history)
            .when(submit(proposal(1), freelancer()))
            .then_expect_error(GigError::TooManyProposals);
    }

    #[test]
    fn a_pending_proposal_leaving_frees_a_place_among_the_500() {
        let mut history = vec![posted()];
        for n in 0..500 {
            let someone = Actor::new(user(10_000 + n), vec![Role::Freelancer]);
            history.push(submitted(proposal(1000 + n), &someone));
        }
        let leaving = Actor::new(user(10_000), vec![Role::Freelancer]);
        history.push(withdrawn(proposal(1000), &leaving));
        GigTest::with(())
            .given(history)
            .when(submit(proposal(1), freelancer()))
            .then_expect_events(vec![submitted(proposal(1), &freelancer())]);
    }

    #[test]
    fn a_gig_takes_at_most_2000_submissions_in_all() {
        let mut history = vec![posted()];
        for n in 0..2_000 {
            history.push(submitted(proposal(1000 + n), &freelancer()));
            history.push(withdrawn(proposal(1000 + n), &freelancer()));
        }
        GigTest::with(())
            .given(history)
            .when(submit(proposal(1), other_freelancer()))
            .then_expect_error(GigError::TooManySubmissions);
    }

    #[test]
    fn the_2000th_submission_is_still_accepted() {
        let mut history = vec![posted()];
        for n in 0..1_999 {
            history.push(submitted(proposal(1000 + n), &freelancer()));
            history.push(withdrawn(proposal(1000 + n), &freelancer()));
        }
        GigTest::with(())
            .given(history)
            .when(submit(proposal(1), other_freelancer()))
            .then_expect_events(vec![submitted(proposal(1), &other_freelancer())]);
    }

    #[test]
    fn the_500th_proposal_is_still_accepted() {
        let mut history = vec![posted()];
        for n in 0..499 {
            let someone = Actor::new(user(10_000 + n), vec![Role::Freelancer]);
            history.push(submitted(proposal(1000 + n), &someone));
        }
        GigTest::with(())
            .given(history)
            .when(submit(proposal(1), freelancer()))
            .then_expect_events(vec![submitted(proposal(1), &freelancer())]);
    }

    #[test]
    fn a_cover_letter_must_be_1_to_10000_characters() {
        for bad in ["  ".to_owned(), "c".repeat(10_001)] {
            GigTest::with(())
                .given(vec![posted()])
                .when(GigCommand::SubmitProposal {
                    proposal_id: proposal(1),
                    cover_letter: bad,
                    milestones: vec![milestone(1, usd(100))],
                    actor: freelancer(),
                    at: now(),
                })
                .then_expect_error(GigError::InvalidCoverLetter);
        }
    }

    #[test]
    fn a_proposal_needs_1_to_20_milestones() {
        let too_many = (0..21).map(|n| milestone(n, usd(100))).collect();
        for bad in [Vec::new(), too_many] {
            GigTest::with(())
                .given(vec![posted()])
                .when(submit_with_milestones(bad))
                .then_expect_error(GigError::InvalidMilestoneCount);
        }
    }

    #[test]
    fn each_milestone_title_must_be_1_to_200_characters() {
        let mut untitled = milestone(1, usd(100));
        untitled.title = " ".to_owned();
        GigTest::with(())
            .given(vec![posted()])
            .when(submit_with_milestones(vec![untitled]))
            .then_expect_error(GigError::InvalidMilestoneTitle);
    }

    #[test]
    fn milestone_amounts_must_be_greater_than_zero() {
        GigTest::with(())
            .given(vec![posted()])
            .when(submit_with_milestones(vec![
                milestone(1, usd(100)),
                milestone(2, usd(0)),
            ]))
            .then_expect_error(GigError::MilestoneAmountNotPositive);
    }

    #[test]
    fn milestone_amounts_must_be_in_the_gigs_currency() {
        let error = GigTest::with(())
            .given(vec![posted()])
            .when(submit_with_milestones(vec![milestone(
                1,
                Money::new(100, Currency::EUR),
            )]))
            .inspect_result()
            .err();
        assert_eq!(
            error,
            Some(GigError::MilestoneCurrencyMismatch {
                expected: Currency::USD
            })
        );
        assert_eq!(
            error.map(|e| e.to_string()).as_deref(),
            Some("milestone amounts must be in the gig's currency USD")
        );
    }

    #[test]
    fn a_milestone_due_date_cannot_be_in_the_past() {
        let mut late = milestone(1, usd(100));
        late.due_date = Some(date(2025, 2, 28));
        GigTest::with(())
            .given(vec![posted()])
            .when(submit_with_milestones(vec![late]))
            .then_expect_error(GigError::MilestoneDueDateInPast);
    }

    #[test]
    fn milestones_need_distinct_ids() {
        GigTest::with(())
            .given(vec![posted()])
            .when(submit_with_milestones(vec![
                milestone(1, usd(100)),
                milestone(1, usd(200)),
            ]))
            .then_expect_error(GigError::DuplicateMilestoneId);
    }

    #[test]
    fn a_milestone_amount_above_the_maximum_is_refused_on_its_field() {
        let error = GigTest::with(())
            .given(vec![posted()])
            .when(submit_with_milestones(vec![
                milestone(1, usd(MAX_AMOUNT)),
                milestone(2, usd(MAX_AMOUNT + 1)),
            ]))
            .inspect_result()
            .err();
        assert_eq!(error, Some(GigError::MilestoneAmountTooLarge));
        assert_eq!(error.as_ref().and_then(GigError::field), Some("milestones"));
        assert_eq!(
            error.map(|e| e.to_string()).as_deref(),
            Some("milestone amounts must be at most 10000000000000 minor units")
        );
    }

    #[test]
    fn twenty_milestones_at_the_maximum_make_a_valid_bid() {
        let milestones: Vec<_> = (1..=20).map(|n| milestone(n, usd(MAX_AMOUNT))).collect();
        let events = GigTest::with(())
            .given(vec![posted()])
            .when(submit_with_milestones(milestones))
            .inspect_result();
        let bid = match events.as_deref() {
            Ok([GigEvent::ProposalSubmitted { bid, .. }]) => Some(*bid),
            _ => None,
        };
        assert_eq!(bid, Some(usd(20 * MAX_AMOUNT)));
    }

    #[test]
    fn a_budget_above_the_maximum_is_refused_on_its_field() {
        let too_large = [
            Budget::Fixed {
                amount: usd(MAX_AMOUNT + 1),
            },
            Budget::Hourly {
                min: usd(1),
                max: usd(MAX_AMOUNT + 1),
            },
        ];
        for budget in too_large {
            let post = post_gig_with(|command| {
                if let GigCommand::PostGig { budget: b, .. } = command {
                    *b = budget.clone();
                }
            });
            GigTest::with(())
                .given_no_previous_events()
                .when(post)
                .then_expect_error(GigError::BudgetTooLarge);
            GigTest::with(())
                .given(vec![posted()])
                .when(revise_budget(budget))
                .then_expect_error(GigError::BudgetTooLarge);
        }
        assert_eq!(GigError::BudgetTooLarge.field(), Some("budget"));
        GigTest::with(())
            .given_no_previous_events()
            .when(post_gig_with(|command| {
                if let GigCommand::PostGig { budget, .. } = command {
                    *budget = Budget::Fixed {
                        amount: usd(MAX_AMOUNT),
                    };
                }
            }))
            .inspect_result()
            .expect("a budget at the maximum is accepted");
    }

    // ---- WithdrawProposal ----

    fn withdraw(id: ProposalId, actor: Actor) -> GigCommand {
        GigCommand::WithdrawProposal {
            proposal_id: id,
            actor,
            at: now(),
        }
    }

    #[test]
    fn a_freelancer_can_withdraw_their_pending_proposal() {
        GigTest::with(())
            .given(vec![posted(), submitted(proposal(1), &freelancer())])
            .when(withdraw(proposal(1), freelancer()))
            .then_expect_events(vec![withdrawn(proposal(1), &freelancer())]);
    }

    #[test]
    fn only_the_proposing_freelancer_can_withdraw_a_proposal() {
        for someone_else in [other_freelancer(), client()] {
            GigTest::with(())
                .given(vec![posted(), submitted(proposal(1), &freelancer())])
                .when(withdraw(proposal(1), someone_else))
                .then_expect_error(GigError::NotProposalAuthor);
        }
    }

    #[test]
    fn a_proposal_that_does_not_exist_cannot_be_withdrawn() {
        GigTest::with(())
            .given(vec![posted()])
            .when(withdraw(proposal(1), freelancer()))
            .then_expect_error(GigError::ProposalNotFound);
        GigTest::with(())
            .given_no_previous_events()
            .when(withdraw(proposal(1), freelancer()))
            .then_expect_error(GigError::GigNotFound);
    }

    #[test]
    fn only_a_pending_proposal_can_be_withdrawn() {
        GigTest::with(())
            .given(vec![
                posted(),
                submitted(proposal(1), &freelancer()),
                withdrawn(proposal(1), &freelancer()),
            ])
            .when(withdraw(proposal(1), freelancer()))
            .then_expect_error(GigError::ProposalNotPending);
    }

    // ---- RejectProposal ----

    fn reject(id: ProposalId, actor: Actor) -> GigCommand {
        GigCommand::RejectProposal {
            proposal_id: id,
            actor,
            at: now(),
        }
    }

    #[test]
    fn the_owner_can_reject_a_pending_proposal() {
        GigTest::with(())
            .given(vec![posted(), submitted(proposal(1), &freelancer())])
            .when(reject(proposal(1), client()))
            .then_expect_events(vec![rejected(proposal(1), &freelancer())]);
    }

    #[test]
    fn only_the_owner_can_reject_a_proposal() {
        GigTest::with(())
            .given(vec![posted(), submitted(proposal(1), &freelancer())])
            .when(reject(proposal(1), other_client()))
            .then_expect_error(GigError::NotOwner);
    }

    #[test]
    fn a_proposal_that_does_not_exist_cannot_be_rejected() {
        GigTest::with(())
            .given(vec![posted()])
            .when(reject(proposal(1), client()))
            .then_expect_error(GigError::ProposalNotFound);
    }

    #[test]
    fn only_a_pending_proposal_can_be_rejected() {
        GigTest::with(())
            .given(vec![
                posted(),
                submitted(proposal(1), &freelancer()),
                rejected(proposal(1), &freelancer()),
            ])
            .when(reject(proposal(1), client()))
            .then_expect_error(GigError::ProposalNotPending);
    }

    // ---- AcceptProposal ----

    #[test]
    fn the_owner_can_accept_a_pending_proposal_which_hires_its_freelancer() {
        GigTest::with(())
            .given(vec![posted(), submitted(proposal(1), &freelancer())])
            .when(accept(proposal(1), client()))
            .then_expect_events(vec![accepted(proposal(1), &freelancer())]);
    }

    #[test]
    fn a_closed_gig_can_still_hire_from_its_pending_proposals() {
        GigTest::with(())
            .given(vec![
                posted(),
                submitted(proposal(1), &freelancer()),
                closed(),
            ])
            .when(accept(proposal(1), client()))
            .then_expect_events(vec![accepted(proposal(1), &freelancer())]);
    }

    #[test]
    fn after_a_hire_the_gig_is_hired_and_other_pending_proposals_stay_pending() {
        let gig = rebuilt(vec![
            posted(),
            submitted(proposal(1), &freelancer()),
            submitted(proposal(2), &other_freelancer()),
            accepted(proposal(1), &freelancer()),
        ]);
        assert_eq!(gig.status(), Some(GigStatus::Hired));
        assert_eq!(gig.hired_proposal(), Some(proposal(1)));
        assert_eq!(
            gig.proposal_status(proposal(1)),
            Some(ProposalStatus::Accepted)
        );
        assert_eq!(
            gig.proposal_status(proposal(2)),
            Some(ProposalStatus::Pending)
        );
        assert_eq!(gig.proposal_count(), 2);
        assert_eq!(gig.pending_proposal_count(), 1);
        assert_eq!(
            gig.proposal_freelancer(proposal(2)),
            Some(other_freelancer().user_id)
        );
    }

    #[test]
    fn only_the_owner_can_accept_a_proposal() {
        GigTest::with(())
            .given(vec![posted(), submitted(proposal(1), &freelancer())])
            .when(accept(proposal(1), other_client()))
            .then_expect_error(GigError::NotOwner);
    }

    #[test]
    fn a_gig_hires_only_once() {
        GigTest::with(())
            .given(vec![
                posted(),
                submitted(proposal(1), &freelancer()),
                submitted(proposal(2), &other_freelancer()),
                accepted(proposal(1), &freelancer()),
            ])
            .when(accept(proposal(2), client()))
            .then_expect_error(GigError::AlreadyHired);
    }

    #[test]
    fn a_cancelled_gig_cannot_hire() {
        GigTest::with(())
            .given(vec![
                posted(),
                submitted(proposal(1), &freelancer()),
                cancelled(),
            ])
            .when(accept(proposal(1), client()))
            .then_expect_error(GigError::AlreadyCancelled);
    }

    #[test]
    fn a_proposal_that_is_not_pending_cannot_be_accepted() {
        GigTest::with(())
            .given(vec![
                posted(),
                submitted(proposal(1), &freelancer()),
                withdrawn(proposal(1), &freelancer()),
            ])
            .when(accept(proposal(1), client()))
            .then_expect_error(GigError::ProposalNotPending);
    }

    #[test]
    fn a_proposal_that_does_not_exist_cannot_be_accepted() {
        GigTest::with(())
            .given(vec![posted()])
            .when(accept(proposal(1), client()))
            .then_expect_error(GigError::ProposalNotFound);
    }

    #[test]
    fn the_fee_rate_of_a_hire_cannot_exceed_100_percent() {
        let mut command = accept(proposal(1), client());
        if let GigCommand::AcceptProposal { fee_bps, .. } = &mut command {
            *fee_bps = 10_001;
        }
        GigTest::with(())
            .given(vec![posted(), submitted(proposal(1), &freelancer())])
            .when(command)
            .then_expect_error(GigError::InvalidFeeRate);
    }

    #[test]
    fn the_review_window_of_a_hire_must_be_1_to_365_days() {
        for bad in [0, 366] {
            let mut command = accept(proposal(1), client());
            if let GigCommand::AcceptProposal {
                review_window_days, ..
            } = &mut command
            {
                *review_window_days = bad;
            }
            GigTest::with(())
                .given(vec![posted(), submitted(proposal(1), &freelancer())])
                .when(command)
                .then_expect_error(GigError::InvalidReviewWindow);
        }
    }

    // ---- CloseGig ----

    fn close(actor: Actor) -> GigCommand {
        GigCommand::CloseGig { actor, at: now() }
    }

    #[test]
    fn the_owner_can_close_an_open_gig() {
        GigTest::with(())
            .given(vec![posted()])
            .when(close(client()))
            .then_expect_events(vec![closed()]);
        assert_eq!(
            rebuilt(vec![posted(), closed()]).status(),
            Some(GigStatus::Closed)
        );
    }

    #[test]
    fn only_the_owner_can_close_a_gig() {
        GigTest::with(())
            .given(vec![posted()])
            .when(close(other_client()))
            .then_expect_error(GigError::NotOwner);
    }

    #[test]
    fn only_an_open_gig_can_be_closed() {
        GigTest::with(())
            .given(vec![posted(), closed()])
            .when(close(client()))
            .then_expect_error(GigError::NotOpenForClosing);
    }

    #[test]
    fn a_gig_that_does_not_exist_cannot_be_closed() {
        GigTest::with(())
            .given_no_previous_events()
            .when(close(client()))
            .then_expect_error(GigError::GigNotFound);
    }

    // ---- CancelGig ----

    fn cancel(actor: Actor) -> GigCommand {
        GigCommand::CancelGig { actor, at: now() }
    }

    #[test]
    fn the_owner_can_cancel_an_open_or_closed_gig_nobody_was_hired_for() {
        for history in [vec![posted()], vec![posted(), closed()]] {
            GigTest::with(())
                .given(history)
                .when(cancel(client()))
                .then_expect_events(vec![cancelled()]);
        }
    }

    #[test]
    fn only_the_owner_can_cancel_a_gig() {
        GigTest::with(())
            .given(vec![posted()])
            .when(cancel(other_client()))
            .then_expect_error(GigError::NotOwner);
    }

    #[test]
    fn a_gig_with_a_hire_cannot_be_cancelled() {
        GigTest::with(())
            .given(vec![
                posted(),
                submitted(proposal(1), &freelancer()),
                accepted(proposal(1), &freelancer()),
            ])
            .when(cancel(client()))
            .then_expect_error(GigError::AlreadyHired);
    }

    #[test]
    fn a_cancelled_gig_cannot_be_cancelled_again() {
        GigTest::with(())
            .given(vec![posted(), cancelled()])
            .when(cancel(client()))
            .then_expect_error(GigError::AlreadyCancelled);
    }

    #[test]
    fn a_gig_that_does_not_exist_cannot_be_cancelled() {
        GigTest::with(())
            .given_no_previous_events()
            .when(cancel(client()))
            .then_expect_error(GigError::GigNotFound);
    }

    // ---- events, state and errors ----

    #[test]
    fn every_event_is_stored_under_its_variant_name_at_version_1() {
        let events = vec![
            posted(),
            GigEvent::GigRevised {
                title: None,
                description: None,
                skills: None,
                budget: None,
                deadline: None,
                revised_at: now(),
            },
            submitted(proposal(1), &freelancer()),
            withdrawn(proposal(1), &freelancer()),
            rejected(proposal(1), &freelancer()),
            accepted(proposal(1), &freelancer()),
            closed(),
            cancelled(),
        ];
        for event in events {
            let json = serde_json::to_value(&event).unwrap();
            let tag = json.as_object().and_then(|o| o.keys().next().cloned());
            assert_eq!(tag, Some(event.event_type()));
            let version = match event {
                GigEvent::ProposalAccepted { .. } => "2",
                _ => "1",
            };
            assert_eq!(event.event_version(), version, "{}", event.event_type());
            let back: GigEvent = serde_json::from_value(json).unwrap();
            assert_eq!(back, event);
        }
    }

    #[test]
    fn a_budget_is_tagged_by_kind_on_the_wire() {
        let json = serde_json::to_value(Budget::Hourly {
            min: usd(1_000),
            max: usd(2_000),
        })
        .unwrap();
        assert_eq!(
            json,
            serde_json::json!({
                "kind": "hourly",
                "min": { "amount": 1000, "currency": "USD" },
                "max": { "amount": 2000, "currency": "USD" },
            })
        );
    }

    #[test]
    fn a_gig_survives_a_snapshot_round_trip() {
        let gig = rebuilt(vec![
            posted(),
            submitted(proposal(1), &freelancer()),
            submitted(proposal(2), &other_freelancer()),
            rejected(proposal(2), &other_freelancer()),
        ]);
        let snapshot = serde_json::to_value(&gig).unwrap();
        let restored: Gig = serde_json::from_value(snapshot).unwrap();
        assert_eq!(format!("{restored:?}"), format!("{gig:?}"));
        assert_eq!(
            restored.proposal_status(proposal(2)),
            Some(ProposalStatus::Rejected)
        );
    }

    #[test]
    fn each_gig_command_is_authorised_in_one_capacity_whatever_roles_the_actor_holds() {
        let both = |actor: Actor| Actor::new(actor.user_id, vec![Role::Client, Role::Freelancer]);
        let post = post_gig_with(|command| {
            if let GigCommand::PostGig { actor, .. } = command {
                *actor = both(client());
            }
        });
        assert_eq!(
            Gig::default().authorise(&post),
            Ok(ActingAs::Role(Role::Client))
        );
        let gig = rebuilt(vec![posted(), submitted(proposal(1), &freelancer())]);
        assert_eq!(
            gig.authorise(&withdraw(proposal(1), both(freelancer()))),
            Ok(ActingAs::Role(Role::Freelancer))
        );
        assert_eq!(
            gig.authorise(&submit(proposal(2), both(other_freelancer()))),
            Ok(ActingAs::Role(Role::Freelancer))
        );
        assert_eq!(
            gig.authorise(&close(both(client()))),
            Ok(ActingAs::Role(Role::Client))
        );
        assert_eq!(
            gig.authorise(&close(other_client())),
            Err(GigError::NotOwner)
        );
    }

    #[test]
    fn refusals_say_what_kind_they_are_and_which_field_is_at_fault() {
        assert_eq!(GigError::GigNotFound.kind(), ErrorKind::NotFound);
        assert_eq!(GigError::NotOwner.kind(), ErrorKind::Forbidden);
        assert_eq!(GigError::NotOpenForProposals.kind(), ErrorKind::Conflict);
        assert_eq!(GigError::InvalidTitle.kind(), ErrorKind::Validation);
        assert_eq!(GigError::InvalidTitle.field(), Some("title"));
        assert_eq!(GigError::BidTooLarge.field(), Some("milestones"));
        assert_eq!(GigError::NotOwner.field(), None);
        assert_eq!(
            GigError::NotOpenForProposals.to_string(),
            "the gig is not open for proposals"
        );
    }
}
