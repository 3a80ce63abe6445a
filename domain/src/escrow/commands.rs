//! What can be asked of an escrow. Only `Deposit` comes from a person (the client funding a
//! milestone); everything else is a process step sent as [`Actor::system`], following the
//! contract's events and the provider's answers. Every command carries `at`, the command's time.
//! Which events call for which of them is the process table, [`crate::process`].

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::events::{EscrowCloseReason, ScheduledMilestone};
use crate::actor::Actor;
use crate::ids::{ContractId, MilestoneId, UserId};
use crate::money::{Currency, Money};

/// A request to move money in an escrow.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum EscrowCommand {
    /// Process (on `ProposalAccepted`): open the contract's escrow. Repeating it is a no-op.
    OpenEscrow {
        /// The contract (and this stream's id).
        contract_id: ContractId,
        /// Who deposits.
        client_id: UserId,
        /// Who is paid.
        freelancer_id: UserId,
        /// The currency of every amount.
        currency: Currency,
        /// What each milestone will hold.
        milestones: Vec<ScheduledMilestone>,
        /// Platform fee in basis points.
        fee_bps: u32,
        /// Must be the system.
        actor: Actor,
        /// The command's time.
        at: DateTime<Utc>,
    },
    /// The client funds a milestone: the gateway is charged first, under the milestone's own
    /// provider-side key ([`super::charge_key`]), so any number of requests, processes or stale
    /// caches meet one charge.
    Deposit {
        /// The milestone.
        milestone_id: MilestoneId,
        /// The request's `Idempotency-Key` (1–255 characters), by which the API replays its
        /// answer. Not sent to the provider: a reused client key never names another charge.
        idempotency_key: String,
        /// The escrow's client.
        actor: Actor,
        /// The command's time.
        at: DateTime<Utc>,
    },
    /// Process (on `MilestoneApproved`): pay the held amount out, less the fee. A no-op if it
    /// was already released.
    Release {
        /// The milestone.
        milestone_id: MilestoneId,
        /// Must be the system.
        actor: Actor,
        /// The command's time.
        at: DateTime<Utc>,
    },
    /// Process (on `DisputeOpened`): freeze the milestone's funds. A no-op if already frozen.
    Freeze {
        /// The milestone.
        milestone_id: MilestoneId,
        /// Must be the system.
        actor: Actor,
        /// The command's time.
        at: DateTime<Utc>,
    },
    /// Process (on `DisputeResolved`): split a frozen milestone's funds. A no-op if already
    /// settled.
    Settle {
        /// The milestone.
        milestone_id: MilestoneId,
        /// To the freelancer, before the fee; ≥ 0.
        release: Money,
        /// To the client; ≥ 0; `release + refund` must equal the held amount.
        refund: Money,
        /// Must be the system.
        actor: Actor,
        /// The command's time.
        at: DateTime<Utc>,
    },
    /// Process (after a deposit that may have charged and is certainly not recorded): void the
    /// milestone's current charge, recording `ChargeVoided` before the provider is asked. A
    /// no-op when a deposit is recorded: its charge stays.
    VoidCharge {
        /// The milestone.
        milestone_id: MilestoneId,
        /// Must be the system.
        actor: Actor,
        /// The command's time.
        at: DateTime<Utc>,
    },
    /// Process (on `ContractCancelled`): refund the held, unfrozen funds of the milestones the
    /// contract cancelled, and close the escrow. Milestones not listed (approved or resolved but
    /// not yet released or settled) keep their funds for their own step. A no-op once closed.
    RefundUnreleased {
        /// The milestones the contract cancelled.
        milestones: Vec<MilestoneId>,
        /// Why the escrow closes.
        reason: EscrowCloseReason,
        /// Must be the system.
        actor: Actor,
        /// The command's time.
        at: DateTime<Utc>,
    },
    /// Process (after the provider refunded the deposit's charge for a `FundsRefunded`): record
    /// the card refund. A no-op if it is recorded already under the same refund id; allowed
    /// after a failed attempt.
    RecordRefundIssued {
        /// The milestone.
        milestone_id: MilestoneId,
        /// The provider's id of the refund (1–255 characters).
        refund_id: String,
        /// The amount refunded to the card: exactly what was refunded for the milestone.
        amount: Money,
        /// Must be the system.
        actor: Actor,
        /// The command's time.
        at: DateTime<Utc>,
    },
    /// Process (the provider refused the card refund): record the failed attempt, so admins see
    /// it and the process retries. A no-op if the last attempt failed for the same reason.
    RecordRefundFailed {
        /// The milestone.
        milestone_id: MilestoneId,
        /// Why, as the provider said (1–1000 characters, trimmed).
        reason: String,
        /// Must be the system.
        actor: Actor,
        /// The command's time.
        at: DateTime<Utc>,
    },
}

impl EscrowCommand {
    /// Who sends the command (the system for process steps).
    #[must_use]
    pub fn actor(&self) -> &Actor {
        match self {
            Self::OpenEscrow { actor, .. }
            | Self::Deposit { actor, .. }
            | Self::Release { actor, .. }
            | Self::Freeze { actor, .. }
            | Self::Settle { actor, .. }
            | Self::RefundUnreleased { actor, .. }
            | Self::VoidCharge { actor, .. }
            | Self::RecordRefundIssued { actor, .. }
            | Self::RecordRefundFailed { actor, .. } => actor,
        }
    }
}
