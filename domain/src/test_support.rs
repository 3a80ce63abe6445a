//! Fixtures shared by the aggregates' given/when/then tests: the same people, time and ids
//! everywhere, so a test reads the same in every aggregate.

use chrono::{DateTime, TimeZone, Utc};
use uuid::Uuid;

use crate::actor::{Actor, Role};
use crate::ids::{ContractId, GigId, UserId};
use crate::money::{Currency, Money};

pub(crate) fn user(n: u128) -> UserId {
    UserId(Uuid::from_u128(n))
}

pub(crate) fn client() -> Actor {
    Actor::new(user(1), vec![Role::Client])
}

pub(crate) fn freelancer() -> Actor {
    Actor::new(user(2), vec![Role::Freelancer])
}

pub(crate) fn admin() -> Actor {
    Actor::new(user(9), vec![Role::Admin])
}

pub(crate) fn system() -> Actor {
    Actor::system()
}

/// The time every test command is stamped with (unless a test moves it).
pub(crate) fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2025, 3, 1, 12, 0, 0).unwrap()
}

pub(crate) fn usd(amount: i64) -> Money {
    Money::new(amount, Currency::USD)
}

pub(crate) fn gig_id() -> GigId {
    GigId(Uuid::from_u128(100))
}

pub(crate) fn contract_id() -> ContractId {
    ContractId(Uuid::from_u128(300))
}
