//! The simulated payment provider kept in PostgreSQL, which `serve` charges through.
//!
//! Its charges and voids live in the schema `provider` (`migrations/…_simulated_provider.sql`),
//! standing in for the provider's side of the wire: every process on the database shares them,
//! as they would share a real provider, and reconciliation ([`crate::reconcile`]) reads them
//! after a crash. It behaves as a provider must: a charge retried under its idempotency key
//! answers the first receipt, a key reused for a different charge is declined, and a voided key
//! is never charged again. Like the in-memory `SimulatedGateway` of the domain it can be set to
//! fail or hang ([`GatewayMode`], per instance) for tests.

use std::sync::atomic::{AtomicU8, Ordering};

use gigledger_domain::{
    ChargeReceipt, ChargeRequest, Currency, GatewayError, GatewayMode, Money, PaymentGateway,
};
use sqlx::{PgPool, Row};
use uuid::Uuid;

/// Takes the charge unless the key is already known; then answers nothing, and [`FIND`] reads
/// what the key holds (a statement of its own: this one's snapshot predates a concurrent insert
/// it waited for).
const CHARGE: &str = "
    insert into provider.charges
           (idempotency_key, charge_id, amount, currency, payer, contract_id, milestone_id,
            charged_at)
    select $1,
           -- six digits as the in-memory simulation has, more once they run out
           case when n < 1000000 then 'sim_ch_' || lpad(n::text, 6, '0') else 'sim_ch_' || n end,
           $2, $3, $4, $5, $6, now()
      from (select nextval('provider.charge_numbers') as n) as next
    on conflict (idempotency_key) do nothing
    returning charge_id";

const FIND: &str = "
    select charge_id, amount, currency, payer, contract_id, milestone_id, voided_at is not null as voided
      from provider.charges
     where idempotency_key = $1";

/// Voids the key's charge, or refuses the key in advance when nothing was charged under it yet.
const VOID: &str = "
    insert into provider.charges (idempotency_key, voided_at)
    values ($1, now())
    on conflict (idempotency_key) do update
       set voided_at = coalesce(provider.charges.voided_at, excluded.voided_at)";

const LIVE_CHARGES: &str = "
    select charge_id, idempotency_key, amount, currency
      from provider.charges
     where charge_id is not null and voided_at is null
     order by charge_id";

const VOIDED_CHARGES: &str = "
    select charge_id
      from provider.charges
     where charge_id is not null and voided_at is not null
     order by charge_id";

/// One live charge at the simulated provider.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProviderCharge {
    pub charge_id: String,
    pub idempotency_key: String,
    pub amount: Money,
}

/// The PostgreSQL-backed simulated provider.
#[derive(Debug)]
pub struct PgSimulatedGateway {
    pool: PgPool,
    mode: AtomicU8,
}

impl PgSimulatedGateway {
    /// A provider on `pool`'s database whose charges succeed.
    pub fn new(pool: PgPool) -> Self {
        Self {
            pool,
            mode: AtomicU8::new(encode(GatewayMode::Succeed)),
        }
    }

    /// Changes how this instance's later charges behave (other processes are not affected).
    pub fn set_mode(&self, mode: GatewayMode) {
        self.mode.store(encode(mode), Ordering::SeqCst);
    }

    /// The current mode.
    pub fn mode(&self) -> GatewayMode {
        decode(self.mode.load(Ordering::SeqCst))
    }

    /// Every charge that stands (not voided), in id order.
    pub async fn live_charges(&self) -> Result<Vec<ProviderCharge>, sqlx::Error> {
        let rows = sqlx::query(LIVE_CHARGES).fetch_all(&self.pool).await?;
        rows.iter()
            .map(|row| {
                let code: String = row.try_get("currency")?;
                let currency =
                    Currency::parse(&code).map_err(|e| sqlx::Error::Decode(Box::new(e)))?;
                Ok(ProviderCharge {
                    charge_id: row.try_get("charge_id")?,
                    idempotency_key: row.try_get("idempotency_key")?,
                    amount: Money::new(row.try_get("amount")?, currency),
                })
            })
            .collect()
    }

    /// The ids of the charges voided so far, in id order.
    pub async fn voided(&self) -> Result<Vec<String>, sqlx::Error> {
        sqlx::query_scalar(VOIDED_CHARGES)
            .fetch_all(&self.pool)
            .await
    }

    /// Takes the charge, or says why not (`Ok(Err(..))`); `Err` when the records cannot be reached.
    async fn take(
        &self,
        req: &ChargeRequest,
    ) -> Result<Result<ChargeReceipt, GatewayError>, sqlx::Error> {
        let inserted: Option<String> = sqlx::query_scalar(CHARGE)
            .bind(&req.idempotency_key)
            .bind(req.amount.amount)
            .bind(req.amount.currency.code())
            .bind(req.payer.0)
            .bind(req.reference.contract_id.0)
            .bind(req.reference.milestone_id.0)
            .fetch_optional(&self.pool)
            .await?;
        if let Some(charge_id) = inserted {
            return Ok(Ok(ChargeReceipt { charge_id }));
        }
        let row = sqlx::query(FIND)
            .bind(&req.idempotency_key)
            .fetch_one(&self.pool)
            .await?;
        let voided: bool = row.try_get("voided")?;
        let charge_id: Option<String> = row.try_get("charge_id")?;
        let (Some(charge_id), false) = (charge_id, voided) else {
            return Ok(Err(GatewayError::Voided));
        };
        let same = row.try_get::<Option<i64>, _>("amount")? == Some(req.amount.amount)
            && row.try_get::<Option<String>, _>("currency")?.as_deref()
                == Some(req.amount.currency.code())
            && row.try_get::<Option<Uuid>, _>("payer")? == Some(req.payer.0)
            && row.try_get::<Option<Uuid>, _>("contract_id")? == Some(req.reference.contract_id.0)
            && row.try_get::<Option<Uuid>, _>("milestone_id")?
                == Some(req.reference.milestone_id.0);
        Ok(if same {
            Ok(ChargeReceipt { charge_id })
        } else {
            Err(GatewayError::Declined(
                "the idempotency key was already used for a different charge".to_owned(),
            ))
        })
    }
}

fn encode(mode: GatewayMode) -> u8 {
    match mode {
        GatewayMode::Succeed => 0,
        GatewayMode::Fail => 1,
        GatewayMode::Hang => 2,
    }
}

fn decode(mode: u8) -> GatewayMode {
    match mode {
        1 => GatewayMode::Fail,
        2 => GatewayMode::Hang,
        _ => GatewayMode::Succeed,
    }
}

fn unavailable(e: &sqlx::Error) -> GatewayError {
    GatewayError::Unavailable(format!("the simulated provider's records: {e}"))
}

#[async_trait::async_trait]
impl PaymentGateway for PgSimulatedGateway {
    async fn charge(&self, req: ChargeRequest) -> Result<ChargeReceipt, GatewayError> {
        match self.mode() {
            GatewayMode::Hang => std::future::pending().await,
            GatewayMode::Fail => Err(GatewayError::Unavailable(
                "the simulated gateway is set to fail".to_owned(),
            )),
            GatewayMode::Succeed => match self.take(&req).await {
                Ok(answer) => answer,
                // The connection died under the statement: the charge may have been taken and
                // its answer lost, which the caller must treat like a timeout (void, never
                // assume nothing happened).
                Err(sqlx::Error::Io(_) | sqlx::Error::Protocol(_) | sqlx::Error::WorkerCrashed) => {
                    Err(GatewayError::Timeout)
                }
                Err(e) => Err(unavailable(&e)),
            },
        }
    }

    async fn void(&self, idempotency_key: &str) -> Result<(), GatewayError> {
        sqlx::query(VOID)
            .bind(idempotency_key)
            .execute(&self.pool)
            .await
            .map(|_| ())
            .map_err(|e| unavailable(&e))
    }
}
