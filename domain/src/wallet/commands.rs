//! What can be asked of a wallet. `RegisterPayoutAccount` and `RequestPayout` come from the
//! wallet's freelancer; everything else is a process step sent as [`Actor::system`], following
//! the escrow's releases and the provider's answers and notices. Every command carries `at`, the
//! command's time. Which events call for which of them is the process table, [`crate::process`].

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::actor::Actor;
use crate::gateway::Provider;
use crate::ids::{ContractId, MilestoneId, PayoutId, UserId};
use crate::money::Money;

/// A request to a freelancer's wallet (stream id = the freelancer's user id).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum WalletCommand {
    /// The freelancer registers the account the provider's onboarding answered (the service
    /// onboards at the provider first, as a deposit charges first). One account per provider:
    /// a different id replaces the provider's account (pending again); the same id again
    /// changes nothing, so a repeated onboarding keeps a verified account verified. The account
    /// registered last is the one payouts go to.
    RegisterPayoutAccount {
        /// Where the account is held.
        provider: Provider,
        /// The provider's id of the account (1–255 characters, trimmed).
        account_id: String,
        /// The wallet's freelancer.
        actor: Actor,
        /// The command's time.
        at: DateTime<Utc>,
    },
    /// Process (from the provider's "account verified" notice): the pending account with this id
    /// may receive payouts. A no-op if it is verified already, or was since replaced.
    VerifyPayoutAccount {
        /// The provider's id of the account.
        account_id: String,
        /// Must be the system.
        actor: Actor,
        /// The command's time.
        at: DateTime<Utc>,
    },
    /// Process (on `FundsReleased`): the released net amount is owed to the freelancer. Once
    /// per release event: a repeat of its id changes nothing, and so does a net of zero.
    CreditEarnings {
        /// The wallet's freelancer (the escrow's), so that a first credit opens the wallet.
        freelancer_id: UserId,
        /// The stored `FundsReleased` event's id: the key that makes the credit happen once.
        release_event_id: Uuid,
        /// The contract whose escrow released it.
        contract_id: ContractId,
        /// The milestone released.
        milestone_id: MilestoneId,
        /// The freelancer's share (`FundsReleased.net`), ≥ 0.
        net: Money,
        /// Must be the system.
        actor: Actor,
        /// The command's time.
        at: DateTime<Utc>,
    },
    /// The freelancer asks for part of their available earnings to be sent to their verified
    /// payout account; the provider's transfer is made by a process manager afterwards. A
    /// payout id used before with the same amount changes nothing (a retried request); with
    /// another amount it is refused.
    RequestPayout {
        /// Chosen by the caller, new per payout.
        payout_id: PayoutId,
        /// How much, at least [`super::minimum_payout`] of its currency and at most what is
        /// available in it.
        amount: Money,
        /// The wallet's freelancer.
        actor: Actor,
        /// The command's time.
        at: DateTime<Utc>,
    },
    /// Process (after the provider's transfer succeeded): the pending payout is paid. A no-op
    /// if it is already paid under the same transfer id.
    MarkPayoutPaid {
        /// The payout.
        payout_id: PayoutId,
        /// The provider's id of the transfer (1–255 characters).
        transfer_id: String,
        /// Must be the system.
        actor: Actor,
        /// The command's time.
        at: DateTime<Utc>,
    },
    /// Process (the provider refused the transfer, or reported later that it failed): the
    /// payout's money is available again (and leaves `paid_out` if it had been paid). A no-op if
    /// it already failed.
    MarkPayoutFailed {
        /// The payout.
        payout_id: PayoutId,
        /// Why, as the provider said (1–1000 characters, trimmed).
        reason: String,
        /// Must be the system.
        actor: Actor,
        /// The command's time.
        at: DateTime<Utc>,
    },
}

impl WalletCommand {
    /// Who sends the command (the system for process steps).
    #[must_use]
    pub fn actor(&self) -> &Actor {
        match self {
            Self::RegisterPayoutAccount { actor, .. }
            | Self::VerifyPayoutAccount { actor, .. }
            | Self::CreditEarnings { actor, .. }
            | Self::RequestPayout { actor, .. }
            | Self::MarkPayoutPaid { actor, .. }
            | Self::MarkPayoutFailed { actor, .. } => actor,
        }
    }
}
