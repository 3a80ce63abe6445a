//! A stored event of any of our aggregates, decoded: what process managers and read models read
//! from the global log.

use std::borrow::Cow;

use cqrs_es::Aggregate;
use serde::Deserialize;
use serde_json::Value;

use crate::contract::{Contract, ContractEvent};
use crate::escrow::{Escrow, EscrowEvent};
use crate::gig::{Gig, GigEvent};
use crate::upcast;
use crate::wallet::{Wallet, WalletEvent};

/// An event of a gig, a contract, an escrow or a wallet.
#[derive(Clone, Debug, PartialEq)]
pub enum AnyEvent {
    /// An event of a gig's stream.
    Gig(GigEvent),
    /// An event of a contract's stream.
    Contract(ContractEvent),
    /// An event of an escrow's stream.
    Escrow(EscrowEvent),
    /// An event of a freelancer's wallet stream.
    Wallet(WalletEvent),
}

impl AnyEvent {
    /// Decodes a stored event by its stream's aggregate type, first bringing a payload of an older
    /// `event_version` to the current shape through the one upcaster chain ([`crate::upcast`],
    /// which the write side uses too). `None` for a type that is not one of ours. A payload that
    /// does not decode for one of ours, or a version the chain does not lead from, is an error
    /// (never skipped, never read as another version's shape).
    pub fn decode(
        aggregate_type: &str,
        event_type: &str,
        event_version: &str,
        payload: &Value,
    ) -> Result<Option<Self>, serde_json::Error> {
        if ![Gig::TYPE, Contract::TYPE, Escrow::TYPE, Wallet::TYPE].contains(&aggregate_type) {
            return Ok(None);
        }
        let payload = upcast::upcast(
            aggregate_type,
            event_type,
            event_version,
            Cow::Borrowed(payload),
        )
        .map_err(serde::de::Error::custom)?;
        let payload = payload.as_ref();
        Ok(Some(match aggregate_type {
            Gig::TYPE => Self::Gig(GigEvent::deserialize(payload)?),
            Contract::TYPE => Self::Contract(ContractEvent::deserialize(payload)?),
            Escrow::TYPE => Self::Escrow(EscrowEvent::deserialize(payload)?),
            Wallet::TYPE => Self::Wallet(WalletEvent::deserialize(payload)?),
            _ => return Ok(None),
        }))
    }
}
