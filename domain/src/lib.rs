//! gigledger's domain: the gig, contract, escrow and wallet aggregates with their commands,
//! events and errors, plus money, typed ids, actors, the payment gateway port and the process
//! table that joins the aggregates ([`process`]).
//!
//! What belongs here is pure decision logic: given an aggregate's past events and a command,
//! which new events happen or why the command is refused. Nothing here does I/O, reads a clock
//! or knows about HTTP or SQL: commands carry their time (`at`) and the ids of what they create,
//! so every decision is deterministic and testable. The outside effects (charging a client,
//! onboarding a payout account, transferring a payout, refunding a card) go through the
//! [`PaymentGateway`] trait, implemented elsewhere (or by [`SimulatedGateway`]); only the
//! deposit calls it inside a command, the others are the service's and the process managers'.
//!
//! Which error to use where: each aggregate has its own error enum (one variant per rule);
//! [`ErrorKind`] classifies any of them for the layers above.

#![warn(missing_docs)]

pub mod actor;
pub mod any_event;
pub mod contract;
pub mod error;
pub mod escrow;
pub mod gateway;
pub mod gig;
pub mod ids;
pub mod money;
pub mod process;
pub mod snapshot;
#[cfg(test)]
mod test_support;
pub mod upcast;
mod validate;
pub mod wallet;

pub use actor::{ActingAs, Actor, Authorise, Role, SYSTEM_USER_ID};
pub use any_event::AnyEvent;
pub use contract::{
    Contract, ContractCommand, ContractError, ContractEvent, ContractStatus, ContractTerms,
    MilestoneStatus, Party,
};
pub use error::{DomainError, ErrorKind};
pub use escrow::{
    CardRefund, CardRefundStatus, Escrow, EscrowCloseReason, EscrowCommand, EscrowError,
    EscrowEvent, EscrowServices, JournalLine, MilestoneBalance, ScheduledMilestone,
};
pub use gateway::{
    refund_key, transfer_key, AccountStatus, ChargeReceipt, ChargeReference, ChargeRequest,
    GatewayError, GatewayMode, OnboardReceipt, OnboardRequest, PaymentGateway, Provider,
    RefundReceipt, RefundRequest, SimulatedGateway, TransferReceipt, TransferReference,
    TransferRequest,
};
pub use gig::{
    Budget, Gig, GigCommand, GigError, GigEvent, GigStatus, MilestoneTerms, ProposalStatus,
};
pub use ids::{ContractId, DisputeId, GigId, MilestoneId, PayoutId, ProposalId, UserId};
pub use money::{Currency, FeeSplit, Money, MoneyError, BPS_PER_WHOLE, MAX_AMOUNT};
pub use snapshot::SnapshotSchema;
pub use wallet::{
    minimum_payout, Payout, PayoutAccount, PayoutStatus, Wallet, WalletBalance, WalletCommand,
    WalletError, WalletEvent,
};
