//! A stored event of any of our aggregates, decoded: what process managers and read models read
//! from the global log.

use cqrs_es::Aggregate;
use serde::Deserialize;
use serde_json::Value;

use crate::contract::{Contract, ContractEvent};
use crate::escrow::{Escrow, EscrowEvent};
use crate::gig::{Gig, GigEvent};

/// An event of a gig, a contract or an escrow.
#[derive(Clone, Debug, PartialEq)]
pub enum AnyEvent {
    /// An event of a gig's stream.
    Gig(GigEvent),
    /// An event of a contract's stream.
    Contract(ContractEvent),
    /// An event of an escrow's stream.
    Escrow(EscrowEvent),
}

impl AnyEvent {
    /// Decodes a stored payload by its stream's aggregate type; `None` for a type that is not one
    /// of ours. A payload that does not decode for one of ours is an error (never skipped).
    pub fn decode(
        aggregate_type: &str,
        payload: &Value,
    ) -> Result<Option<Self>, serde_json::Error> {
        Ok(Some(match aggregate_type {
            Gig::TYPE => Self::Gig(GigEvent::deserialize(payload)?),
            Contract::TYPE => Self::Contract(ContractEvent::deserialize(payload)?),
            Escrow::TYPE => Self::Escrow(EscrowEvent::deserialize(payload)?),
            _ => return Ok(None),
        }))
    }
}
