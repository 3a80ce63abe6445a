//! The command services over a test database, with a clock that moves only when told: the
//! fixture the read-model tests set their state up with (by sending commands, never raw rows).

use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};
use gigledger_commands::clock::ManualClock;
use gigledger_commands::services::{Outcome, RequestContext, Services, ServicesConfig};
use gigledger_domain::{
    Actor, ContractCommand, ContractId, Currency, EscrowCommand, GigCommand, GigId, Money, Role,
    SimulatedGateway, UserId,
};
use sqlx::PgPool;

/// US dollars in minor units.
pub fn usd(amount: i64) -> Money {
    Money::new(amount, Currency::USD)
}

/// A new user with one role.
pub fn person(role: Role) -> Actor {
    Actor::new(UserId::new(), vec![role])
}

/// Services with the simulated gateway and a manual clock.
pub struct CommandWorld {
    pub pool: PgPool,
    pub services: Services,
    pub clock: Arc<ManualClock>,
    pub ctx: RequestContext,
}

impl CommandWorld {
    /// The clock starts at `start`.
    pub fn starting_at(pool: PgPool, start: DateTime<Utc>) -> Self {
        let clock = Arc::new(ManualClock::new(start));
        let services = Services::new(
            pool.clone(),
            ServicesConfig::default(),
            Arc::new(SimulatedGateway::new()),
            clock.clone(),
        );
        Self {
            pool,
            services,
            clock,
            ctx: RequestContext::new(),
        }
    }

    /// Moves the clock on a minute and returns the new time, so each step has its own.
    pub fn now(&self) -> DateTime<Utc> {
        self.clock.advance(Duration::minutes(1));
        self.services.now()
    }

    /// Sends a gig command that must succeed.
    pub async fn gig(&self, gig: GigId, command: GigCommand) -> Outcome {
        match self.services.gig(gig, command, &self.ctx).await {
            Ok(outcome) => outcome,
            Err(e) => panic!("the gig command failed: {e}"),
        }
    }

    /// Sends a contract command that must succeed.
    pub async fn contract(&self, contract: ContractId, command: ContractCommand) -> Outcome {
        match self.services.contract(contract, command, &self.ctx).await {
            Ok(outcome) => outcome,
            Err(e) => panic!("the contract command failed: {e}"),
        }
    }

    /// Sends an escrow command that must succeed.
    pub async fn escrow(&self, contract: ContractId, command: EscrowCommand) -> Outcome {
        match self.services.escrow(contract, command, &self.ctx).await {
            Ok(outcome) => outcome,
            Err(e) => panic!("the escrow command failed: {e}"),
        }
    }
}
