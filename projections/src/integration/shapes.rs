//! The `data` shape of every published event type, and the one mapping from domain events to
//! them. Each arm of [`data_of`] names every field of its domain event: those bound to `_` stay in
//! the store (see the module doc of [`crate::integration`] for why).

use chrono::{DateTime, NaiveDate, Utc};
use gigledger_domain::contract::{ContractEvent, Party};
use gigledger_domain::escrow::{EscrowCloseReason, EscrowEvent};
use gigledger_domain::gateway::Provider;
use gigledger_domain::gig::{Budget, ContractTerms, GigEvent, MilestoneTerms};
use gigledger_domain::wallet::WalletEvent;
use gigledger_domain::{
    AnyEvent, ContractId, Currency, DisputeId, GigId, MilestoneId, Money, PayoutId, ProposalId,
    UserId,
};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::openapi::{RefOr, Schema};
use utoipa::{PartialSchema, ToSchema};
use uuid::Uuid;

/// One agreed milestone, without its title (free text).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Milestone {
    pub milestone_id: MilestoneId,
    pub amount: Money,
    pub due_date: Option<NaiveDate>,
}

impl From<&MilestoneTerms> for Milestone {
    fn from(terms: &MilestoneTerms) -> Self {
        let MilestoneTerms {
            milestone_id,
            title: _,
            amount,
            due_date,
        } = terms;
        Self {
            milestone_id: *milestone_id,
            amount: *amount,
            due_date: *due_date,
        }
    }
}

fn milestones(terms: &[MilestoneTerms]) -> Vec<Milestone> {
    terms.iter().map(Milestone::from).collect()
}

/// A contract's terms, fixed at the hire.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Terms {
    pub currency: Currency,
    /// Platform fee in basis points.
    pub fee_bps: u32,
    pub review_window_days: u32,
    pub max_revisions: u32,
}

impl From<&ContractTerms> for Terms {
    fn from(terms: &ContractTerms) -> Self {
        let ContractTerms {
            currency,
            fee_bps,
            review_window_days,
            max_revisions,
        } = *terms;
        Self {
            currency,
            fee_bps,
            review_window_days,
            max_revisions,
        }
    }
}

/// What one milestone of an escrow will hold.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Scheduled {
    pub milestone_id: MilestoneId,
    pub amount: Money,
}

/// Why an escrow closed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum CloseReason {
    ContractCancelled,
}

/// One entry of the catalog of published types.
pub struct CatalogEntry {
    /// The domain's event type (the stored name).
    pub domain_name: &'static str,
    pub aggregate_type: &'static str,
    /// The published type, the domain name in snake case.
    pub type_name: &'static str,
    pub version: u32,
    /// The shape's schema name (in `components`).
    pub schema_name: &'static str,
    /// The domain event's fields that are not published.
    pub left_out: &'static [&'static str],
    schema: fn() -> RefOr<Schema>,
    referenced: fn(&mut Vec<(String, RefOr<Schema>)>),
}

macro_rules! shapes {
    ($(
        $(#[$doc:meta])*
        $variant:ident => $agg:literal $ty:literal v $version:literal, left out [$($lo:literal),*] {
            $($(#[$fdoc:meta])* $field:ident : $fty:ty,)*
        }
    )*) => {
        $(
            $(#[$doc])*
            #[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
            pub struct $variant { $($(#[$fdoc])* pub $field: $fty,)* }
        )*

        /// The published data of one event: one shape per event type.
        #[derive(Clone, Debug, PartialEq, Serialize)]
        #[serde(untagged)]
        pub enum EventData { $($variant($variant),)* }

        impl EventData {
            /// The aggregate type of the event.
            #[must_use]
            pub fn aggregate_type(&self) -> &'static str {
                match self { $(Self::$variant(_) => $agg,)* }
            }
            /// The published type (the envelope's `type`).
            #[must_use]
            pub fn type_name(&self) -> &'static str {
                match self { $(Self::$variant(_) => $ty,)* }
            }
            /// The shape's version (the envelope's `version`).
            #[must_use]
            pub fn version(&self) -> u32 {
                match self { $(Self::$variant(_) => $version,)* }
            }
        }

        /// Every published type, in the order of the domain's enums.
        #[must_use]
        pub fn catalog() -> Vec<CatalogEntry> {
            vec![$(CatalogEntry {
                domain_name: stringify!($variant),
                aggregate_type: $agg,
                type_name: $ty,
                version: $version,
                schema_name: stringify!($variant),
                left_out: &[$($lo),*],
                schema: <$variant as PartialSchema>::schema,
                referenced: <$variant as ToSchema>::schemas,
            },)*]
        }
    };
}

impl EventData {
    /// The data as JSON (the envelope's `data`).
    #[must_use]
    pub fn to_json(&self) -> Value {
        // Plain structs of ids, numbers, strings and times: serialising them cannot fail.
        serde_json::to_value(self).unwrap_or(Value::Null)
    }
}

/// The JSON Schemas: the envelope, each subject's data shape, and the shared components.
#[must_use]
pub fn json_schemas() -> Value {
    let mut components = std::collections::BTreeMap::new();
    let mut events = serde_json::Map::new();
    for entry in catalog() {
        let mut referenced = Vec::new();
        (entry.referenced)(&mut referenced);
        for (name, schema) in referenced {
            components.insert(name, serde_json::to_value(schema).unwrap_or(Value::Null));
        }
        components.insert(
            entry.schema_name.to_owned(),
            serde_json::to_value((entry.schema)()).unwrap_or(Value::Null),
        );
        events.insert(
            super::subject(entry.aggregate_type, entry.type_name),
            serde_json::json!({
                "type": entry.type_name,
                "version": entry.version,
                "data": { "$ref": format!("#/components/schemas/{}", entry.schema_name) },
            }),
        );
    }
    let mut referenced = Vec::new();
    <super::Envelope as ToSchema>::schemas(&mut referenced);
    for (name, schema) in referenced {
        components.insert(name, serde_json::to_value(schema).unwrap_or(Value::Null));
    }
    serde_json::json!({
        "envelope": <super::Envelope as PartialSchema>::schema(),
        "events": events,
        "components": { "schemas": components },
    })
}

shapes! {
    // --- gig ---------------------------------------------------------------------------------
    /// A gig was posted (its title and description stay in the store; skills are tags).
    GigPosted => "gig" "gig_posted" v 1, left out ["title", "description"] {
        gig_id: GigId,
        client_id: UserId,
        skills: Vec<String>,
        budget: Budget,
        deadline: Option<NaiveDate>,
        posted_at: DateTime<Utc>,
    }
    /// A gig was revised; `None` fields are unchanged, and the text changes are flags only.
    GigRevised => "gig" "gig_revised" v 1, left out ["title", "description"] {
        title_changed: bool,
        description_changed: bool,
        skills: Option<Vec<String>>,
        budget: Option<Budget>,
        deadline: Option<NaiveDate>,
        revised_at: DateTime<Utc>,
    }
    /// A freelancer proposed (the cover letter and milestone titles stay in the store).
    ProposalSubmitted => "gig" "proposal_submitted" v 1, left out ["cover_letter", "milestones[].title"] {
        proposal_id: ProposalId,
        freelancer_id: UserId,
        milestones: Vec<Milestone>,
        bid: Money,
        submitted_at: DateTime<Utc>,
    }
    /// A pending proposal was withdrawn by its freelancer.
    ProposalWithdrawn => "gig" "proposal_withdrawn" v 1, left out [] {
        proposal_id: ProposalId,
        freelancer_id: UserId,
        withdrawn_at: DateTime<Utc>,
    }
    /// A pending proposal was rejected by the gig's owner.
    ProposalRejected => "gig" "proposal_rejected" v 1, left out [] {
        proposal_id: ProposalId,
        freelancer_id: UserId,
        rejected_at: DateTime<Utc>,
    }
    /// The owner hired the freelancer: a contract and its escrow start.
    ProposalAccepted => "gig" "proposal_accepted" v 1, left out ["milestones[].title"] {
        gig_id: GigId,
        proposal_id: ProposalId,
        contract_id: ContractId,
        client_id: UserId,
        freelancer_id: UserId,
        milestones: Vec<Milestone>,
        terms: Terms,
        accepted_at: DateTime<Utc>,
        posted_at: DateTime<Utc>,
    }
    /// The gig stopped taking proposals.
    GigClosed => "gig" "gig_closed" v 1, left out [] {
        closed_at: DateTime<Utc>,
    }
    /// The gig was cancelled before anyone was hired.
    GigCancelled => "gig" "gig_cancelled" v 1, left out [] {
        cancelled_at: DateTime<Utc>,
    }
    // --- contract ----------------------------------------------------------------------------
    /// A contract started; every milestone awaits funds.
    ContractStarted => "contract" "contract_started" v 1, left out ["milestones[].title"] {
        contract_id: ContractId,
        gig_id: GigId,
        proposal_id: ProposalId,
        client_id: UserId,
        freelancer_id: UserId,
        milestones: Vec<Milestone>,
        terms: Terms,
        started_at: DateTime<Utc>,
    }
    /// A milestone's amount is held in escrow.
    MilestoneFunded => "contract" "milestone_funded" v 1, left out [] {
        milestone_id: MilestoneId,
        funded_at: DateTime<Utc>,
    }
    /// Work was submitted for a milestone (the note and links stay in the store).
    MilestoneSubmitted => "contract" "milestone_submitted" v 1, left out ["note", "links"] {
        milestone_id: MilestoneId,
        /// How many links the submission has.
        links_count: u32,
        submitted_at: DateTime<Utc>,
        review_due_at: DateTime<Utc>,
    }
    /// The client sent the work back (the reason stays in the store).
    MilestoneChangesRequested => "contract" "milestone_changes_requested" v 1, left out ["reason"] {
        milestone_id: MilestoneId,
        /// Which request this is for the milestone, from 1.
        revision: u32,
        requested_at: DateTime<Utc>,
    }
    /// The work was approved (`auto`: by the review window's end).
    MilestoneApproved => "contract" "milestone_approved" v 1, left out [] {
        milestone_id: MilestoneId,
        amount: Money,
        auto: bool,
        approved_at: DateTime<Utc>,
    }
    /// Every milestone is settled and at least one was paid.
    ContractCompleted => "contract" "contract_completed" v 1, left out [] {
        completed_at: DateTime<Utc>,
    }
    /// A party cancelled the contract (the reason stays in the store).
    ContractCancelled => "contract" "contract_cancelled" v 1, left out ["reason"] {
        cancelled_by: UserId,
        cancelled_milestones: Vec<MilestoneId>,
        cancelled_at: DateTime<Utc>,
    }
    /// A party disputed a milestone (the reason stays in the store).
    DisputeOpened => "contract" "dispute_opened" v 1, left out ["reason"] {
        dispute_id: DisputeId,
        milestone_id: MilestoneId,
        opened_by: UserId,
        opened_at: DateTime<Utc>,
    }
    /// An admin split a disputed milestone's amount.
    DisputeResolved => "contract" "dispute_resolved" v 1, left out [] {
        dispute_id: DisputeId,
        milestone_id: MilestoneId,
        release: Money,
        refund: Money,
        resolved_by: UserId,
        resolved_at: DateTime<Utc>,
    }
    /// A party reviewed the other (the text and the rating stay in the store: reviews are
    /// double-blind until revealed).
    ReviewLeft => "contract" "review_left" v 1, left out ["rating", "text"] {
        reviewer_id: UserId,
        reviewee_id: UserId,
        reviewer: Party,
        reviewed_at: DateTime<Utc>,
    }
    /// The contract's reviews became public (read them from the API).
    ReviewsRevealed => "contract" "reviews_revealed" v 1, left out [] {
        revealed_at: DateTime<Utc>,
    }
    // --- escrow ------------------------------------------------------------------------------
    /// A contract's escrow opened with its milestone schedule.
    EscrowOpened => "escrow" "escrow_opened" v 1, left out [] {
        contract_id: ContractId,
        client_id: UserId,
        freelancer_id: UserId,
        currency: Currency,
        milestones: Vec<Scheduled>,
        fee_bps: u32,
        opened_at: DateTime<Utc>,
    }
    /// The client was charged for a milestone; the amount is held.
    FundsDeposited => "escrow" "funds_deposited" v 1, left out ["charge_id"] {
        milestone_id: MilestoneId,
        amount: Money,
        deposited_at: DateTime<Utc>,
    }
    /// Held funds were paid out: `net` to the freelancer, `fee` to the platform.
    FundsReleased => "escrow" "funds_released" v 1, left out [] {
        milestone_id: MilestoneId,
        gross: Money,
        fee: Money,
        net: Money,
        released_at: DateTime<Utc>,
    }
    /// A dispute froze a milestone's funds.
    FundsFrozen => "escrow" "funds_frozen" v 1, left out [] {
        milestone_id: MilestoneId,
        amount: Money,
        frozen_at: DateTime<Utc>,
    }
    /// Held funds went back to the client.
    FundsRefunded => "escrow" "funds_refunded" v 1, left out [] {
        milestone_id: MilestoneId,
        amount: Money,
        refunded_at: DateTime<Utc>,
    }
    /// The escrow takes no more deposits.
    EscrowClosed => "escrow" "escrow_closed" v 1, left out [] {
        reason: CloseReason,
        closed_at: DateTime<Utc>,
    }
    /// A charge no deposit records was voided at the provider (no money moved).
    ChargeVoided => "escrow" "charge_voided" v 1, left out ["charge_key"] {
        milestone_id: MilestoneId,
        voided_at: DateTime<Utc>,
    }
    /// The provider refunded a refunded amount to the client's card.
    RefundIssued => "escrow" "refund_issued" v 1, left out ["refund_id"] {
        milestone_id: MilestoneId,
        amount: Money,
        issued_at: DateTime<Utc>,
    }
    /// The provider refused a card refund (it is tried again).
    RefundFailed => "escrow" "refund_failed" v 1, left out ["reason"] {
        milestone_id: MilestoneId,
        failed_at: DateTime<Utc>,
    }
    // --- wallet ------------------------------------------------------------------------------
    /// A freelancer registered a payout account (its id at the provider stays in the store).
    PayoutAccountRegistered => "wallet" "payout_account_registered" v 1, left out ["account_id"] {
        freelancer_id: UserId,
        provider: Provider,
        registered_at: DateTime<Utc>,
    }
    /// The provider verified the payout account.
    PayoutAccountVerified => "wallet" "payout_account_verified" v 1, left out ["account_id"] {
        provider: Provider,
        verified_at: DateTime<Utc>,
    }
    /// A release's net amount became available to the freelancer.
    EarningsCredited => "wallet" "earnings_credited" v 1, left out [] {
        freelancer_id: UserId,
        /// The `funds_released` event credited.
        release_event_id: Uuid,
        contract_id: ContractId,
        milestone_id: MilestoneId,
        net: Money,
        credited_at: DateTime<Utc>,
    }
    /// The freelancer asked for a payout.
    PayoutRequested => "wallet" "payout_requested" v 1, left out ["account_id"] {
        payout_id: PayoutId,
        amount: Money,
        provider: Provider,
        requested_at: DateTime<Utc>,
    }
    /// The provider transferred the payout.
    PayoutPaid => "wallet" "payout_paid" v 1, left out ["transfer_id"] {
        payout_id: PayoutId,
        amount: Money,
        paid_at: DateTime<Utc>,
    }
    /// The payout failed; its amount is available again.
    PayoutFailed => "wallet" "payout_failed" v 1, left out ["reason"] {
        payout_id: PayoutId,
        amount: Money,
        was_paid: bool,
        failed_at: DateTime<Utc>,
    }
}

fn count(links: &[String]) -> u32 {
    u32::try_from(links.len()).unwrap_or(u32::MAX)
}

/// The published data of a domain event. Exhaustive over every variant and every field: a new
/// event or field does not compile until it is given a place here (a field bound to `_` is kept
/// out on purpose).
#[must_use]
pub fn data_of(event: &AnyEvent) -> EventData {
    match event {
        AnyEvent::Gig(event) => gig(event),
        AnyEvent::Contract(event) => contract(event),
        AnyEvent::Escrow(event) => escrow(event),
        AnyEvent::Wallet(event) => wallet(event),
    }
}

fn gig(event: &GigEvent) -> EventData {
    match event.clone() {
        GigEvent::GigPosted {
            gig_id,
            client_id,
            title: _,
            description: _,
            skills,
            budget,
            deadline,
            posted_at,
        } => EventData::GigPosted(GigPosted {
            gig_id,
            client_id,
            skills,
            budget,
            deadline,
            posted_at,
        }),
        GigEvent::GigRevised {
            title,
            description,
            skills,
            budget,
            deadline,
            revised_at,
        } => EventData::GigRevised(GigRevised {
            title_changed: title.is_some(),
            description_changed: description.is_some(),
            skills,
            budget,
            deadline,
            revised_at,
        }),
        GigEvent::ProposalSubmitted {
            proposal_id,
            freelancer_id,
            cover_letter: _,
            milestones: terms,
            bid,
            submitted_at,
        } => EventData::ProposalSubmitted(ProposalSubmitted {
            proposal_id,
            freelancer_id,
            milestones: milestones(&terms),
            bid,
            submitted_at,
        }),
        GigEvent::ProposalWithdrawn {
            proposal_id,
            freelancer_id,
            withdrawn_at,
        } => EventData::ProposalWithdrawn(ProposalWithdrawn {
            proposal_id,
            freelancer_id,
            withdrawn_at,
        }),
        GigEvent::ProposalRejected {
            proposal_id,
            freelancer_id,
            rejected_at,
        } => EventData::ProposalRejected(ProposalRejected {
            proposal_id,
            freelancer_id,
            rejected_at,
        }),
        GigEvent::ProposalAccepted {
            gig_id,
            proposal_id,
            contract_id,
            client_id,
            freelancer_id,
            milestones: terms,
            terms: contract_terms,
            accepted_at,
            posted_at,
        } => EventData::ProposalAccepted(ProposalAccepted {
            gig_id,
            proposal_id,
            contract_id,
            client_id,
            freelancer_id,
            milestones: milestones(&terms),
            terms: Terms::from(&contract_terms),
            accepted_at,
            posted_at,
        }),
        GigEvent::GigClosed { closed_at } => EventData::GigClosed(GigClosed { closed_at }),
        GigEvent::GigCancelled { cancelled_at } => {
            EventData::GigCancelled(GigCancelled { cancelled_at })
        }
    }
}

fn contract(event: &ContractEvent) -> EventData {
    match event.clone() {
        ContractEvent::ContractStarted {
            contract_id,
            gig_id,
            proposal_id,
            client_id,
            freelancer_id,
            milestones: terms,
            terms: contract_terms,
            started_at,
        } => EventData::ContractStarted(ContractStarted {
            contract_id,
            gig_id,
            proposal_id,
            client_id,
            freelancer_id,
            milestones: milestones(&terms),
            terms: Terms::from(&contract_terms),
            started_at,
        }),
        ContractEvent::MilestoneFunded {
            milestone_id,
            funded_at,
        } => EventData::MilestoneFunded(MilestoneFunded {
            milestone_id,
            funded_at,
        }),
        ContractEvent::MilestoneSubmitted {
            milestone_id,
            note: _,
            links,
            submitted_at,
            review_due_at,
        } => EventData::MilestoneSubmitted(MilestoneSubmitted {
            milestone_id,
            links_count: count(&links),
            submitted_at,
            review_due_at,
        }),
        ContractEvent::MilestoneChangesRequested {
            milestone_id,
            reason: _,
            revision,
            requested_at,
        } => EventData::MilestoneChangesRequested(MilestoneChangesRequested {
            milestone_id,
            revision,
            requested_at,
        }),
        ContractEvent::MilestoneApproved {
            milestone_id,
            amount,
            auto,
            approved_at,
        } => EventData::MilestoneApproved(MilestoneApproved {
            milestone_id,
            amount,
            auto,
            approved_at,
        }),
        ContractEvent::ContractCompleted { completed_at } => {
            EventData::ContractCompleted(ContractCompleted { completed_at })
        }
        ContractEvent::ContractCancelled {
            reason: _,
            cancelled_by,
            cancelled_milestones,
            cancelled_at,
        } => EventData::ContractCancelled(ContractCancelled {
            cancelled_by,
            cancelled_milestones,
            cancelled_at,
        }),
        ContractEvent::DisputeOpened {
            dispute_id,
            milestone_id,
            opened_by,
            reason: _,
            opened_at,
        } => EventData::DisputeOpened(DisputeOpened {
            dispute_id,
            milestone_id,
            opened_by,
            opened_at,
        }),
        ContractEvent::DisputeResolved {
            dispute_id,
            milestone_id,
            release,
            refund,
            resolved_by,
            resolved_at,
        } => EventData::DisputeResolved(DisputeResolved {
            dispute_id,
            milestone_id,
            release,
            refund,
            resolved_by,
            resolved_at,
        }),
        ContractEvent::ReviewLeft {
            reviewer_id,
            reviewee_id,
            reviewer,
            rating: _,
            text: _,
            reviewed_at,
        } => EventData::ReviewLeft(ReviewLeft {
            reviewer_id,
            reviewee_id,
            reviewer,
            reviewed_at,
        }),
        ContractEvent::ReviewsRevealed { revealed_at } => {
            EventData::ReviewsRevealed(ReviewsRevealed { revealed_at })
        }
    }
}

fn escrow(event: &EscrowEvent) -> EventData {
    match event.clone() {
        EscrowEvent::EscrowOpened {
            contract_id,
            client_id,
            freelancer_id,
            currency,
            milestones,
            fee_bps,
            opened_at,
        } => EventData::EscrowOpened(EscrowOpened {
            contract_id,
            client_id,
            freelancer_id,
            currency,
            milestones: milestones
                .iter()
                .map(|m| Scheduled {
                    milestone_id: m.milestone_id,
                    amount: m.amount,
                })
                .collect(),
            fee_bps,
            opened_at,
        }),
        EscrowEvent::FundsDeposited {
            milestone_id,
            amount,
            charge_id: _,
            deposited_at,
        } => EventData::FundsDeposited(FundsDeposited {
            milestone_id,
            amount,
            deposited_at,
        }),
        EscrowEvent::FundsReleased {
            milestone_id,
            gross,
            fee,
            net,
            released_at,
        } => EventData::FundsReleased(FundsReleased {
            milestone_id,
            gross,
            fee,
            net,
            released_at,
        }),
        EscrowEvent::FundsFrozen {
            milestone_id,
            amount,
            frozen_at,
        } => EventData::FundsFrozen(FundsFrozen {
            milestone_id,
            amount,
            frozen_at,
        }),
        EscrowEvent::FundsRefunded {
            milestone_id,
            amount,
            refunded_at,
        } => EventData::FundsRefunded(FundsRefunded {
            milestone_id,
            amount,
            refunded_at,
        }),
        EscrowEvent::EscrowClosed { reason, closed_at } => EventData::EscrowClosed(EscrowClosed {
            reason: match reason {
                EscrowCloseReason::ContractCancelled => CloseReason::ContractCancelled,
            },
            closed_at,
        }),
        EscrowEvent::ChargeVoided {
            milestone_id,
            charge_key: _,
            voided_at,
        } => EventData::ChargeVoided(ChargeVoided {
            milestone_id,
            voided_at,
        }),
        EscrowEvent::RefundIssued {
            milestone_id,
            refund_id: _,
            amount,
            issued_at,
        } => EventData::RefundIssued(RefundIssued {
            milestone_id,
            amount,
            issued_at,
        }),
        EscrowEvent::RefundFailed {
            milestone_id,
            reason: _,
            failed_at,
        } => EventData::RefundFailed(RefundFailed {
            milestone_id,
            failed_at,
        }),
    }
}

fn wallet(event: &WalletEvent) -> EventData {
    match event.clone() {
        WalletEvent::PayoutAccountRegistered {
            freelancer_id,
            provider,
            account_id: _,
            registered_at,
        } => EventData::PayoutAccountRegistered(PayoutAccountRegistered {
            freelancer_id,
            provider,
            registered_at,
        }),
        WalletEvent::PayoutAccountVerified {
            provider,
            account_id: _,
            verified_at,
        } => EventData::PayoutAccountVerified(PayoutAccountVerified {
            provider,
            verified_at,
        }),
        WalletEvent::EarningsCredited {
            freelancer_id,
            release_event_id,
            contract_id,
            milestone_id,
            net,
            credited_at,
        } => EventData::EarningsCredited(EarningsCredited {
            freelancer_id,
            release_event_id,
            contract_id,
            milestone_id,
            net,
            credited_at,
        }),
        WalletEvent::PayoutRequested {
            payout_id,
            amount,
            account_id: _,
            provider,
            requested_at,
        } => EventData::PayoutRequested(PayoutRequested {
            payout_id,
            amount,
            provider,
            requested_at,
        }),
        WalletEvent::PayoutPaid {
            payout_id,
            amount,
            transfer_id: _,
            paid_at,
        } => EventData::PayoutPaid(PayoutPaid {
            payout_id,
            amount,
            paid_at,
        }),
        WalletEvent::PayoutFailed {
            payout_id,
            amount,
            reason: _,
            was_paid,
            failed_at,
        } => EventData::PayoutFailed(PayoutFailed {
            payout_id,
            amount,
            was_paid,
            failed_at,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    /// The variant names of a domain event enum, as serde knows them: deserialising an unknown
    /// variant fails with "unknown variant `x`, expected one of `A`, `B`, ...".
    fn variants<T: serde::de::DeserializeOwned>() -> BTreeSet<String> {
        let Err(error) = serde_json::from_value::<T>(serde_json::json!({ "NoSuchEvent": {} }))
        else {
            panic!("an unknown variant decoded");
        };
        let message = error.to_string();
        let (_, listed) = message
            .split_once("expected one of ")
            .unwrap_or_else(|| panic!("no variant list in {message:?}"));
        listed
            .split(", ")
            .map(|v| v.trim().trim_matches('`').to_owned())
            .filter(|v| !v.is_empty())
            .collect()
    }

    fn catalogued(aggregate: &str) -> BTreeSet<String> {
        catalog()
            .iter()
            .filter(|e| e.aggregate_type == aggregate)
            .map(|e| e.domain_name.to_owned())
            .collect()
    }

    #[test]
    fn every_domain_event_type_has_a_published_shape() {
        assert_eq!(catalogued("gig"), variants::<GigEvent>());
        assert_eq!(catalogued("contract"), variants::<ContractEvent>());
        assert_eq!(catalogued("escrow"), variants::<EscrowEvent>());
        assert_eq!(catalogued("wallet"), variants::<WalletEvent>());
    }

    #[test]
    fn published_type_names_are_the_domain_names_in_snake_case() {
        for entry in catalog() {
            assert_eq!(
                entry.type_name,
                crate::integration::snake_case(entry.domain_name)
            );
            assert_eq!(
                crate::integration::subject(entry.aggregate_type, entry.type_name),
                format!("gigledger.{}.{}", entry.aggregate_type, entry.type_name)
            );
        }
    }

    #[test]
    fn every_shape_has_a_schema() {
        let schemas = json_schemas();
        for entry in catalog() {
            assert!(
                schemas["components"]["schemas"][entry.schema_name].is_object(),
                "no schema for {}",
                entry.schema_name
            );
        }
        assert_eq!(
            schemas["events"].as_object().map(serde_json::Map::len),
            Some(catalog().len())
        );
    }

    #[test]
    fn events_doc_is_current() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/events.md");
        let generated = crate::integration::events_doc();
        if std::env::var_os("UPDATE_EVENTS_DOC").is_some() {
            std::fs::create_dir_all(path.parent().expect("docs/")).expect("docs/ is writable");
            std::fs::write(&path, &generated).expect("docs/events.md is writable");
        }
        let stored = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            stored == generated,
            "docs/events.md is stale: run `UPDATE_EVENTS_DOC=1 cargo test -p gigledger-projections events_doc_is_current`"
        );
    }
}
