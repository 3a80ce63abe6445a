//! The simulated payment provider kept in PostgreSQL, which `serve` charges through.
//!
//! Its charges and voids live in the schema `provider` (`migrations/…_simulated_provider.sql`),
//! standing in for the provider's side of the wire: every process on the database shares them,
//! as they would share a real provider, and reconciliation ([`crate::reconcile`]) reads them
//! after a crash. It behaves as a provider must: a charge retried under its idempotency key
//! answers the first receipt, a key reused for a different charge is declined, and a voided key
//! is never charged again. Like the in-memory `SimulatedGateway` of the domain it can be set to
//! fail or hang ([`GatewayMode`], per instance) for tests.

use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};

use gigledger_domain::gateway::{
    AccountStatus, OnboardReceipt, OnboardRequest, RefundReceipt, RefundRequest, TransferReceipt,
    TransferRequest,
};
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
    /// Transfers succeed, then a `transfer.failed` notice reports each failed (as a bank that
    /// bounces a payout days later).
    fail_transfers_later: AtomicBool,
}

impl PgSimulatedGateway {
    /// A provider on `pool`'s database whose charges succeed.
    pub fn new(pool: PgPool) -> Self {
        Self {
            pool,
            mode: AtomicU8::new(encode(GatewayMode::Succeed)),
            fail_transfers_later: AtomicBool::new(false),
        }
    }

    /// From now on, each transfer succeeds and is then reported failed by a later notice.
    pub fn fail_transfers_later(&self, on: bool) {
        self.fail_transfers_later.store(on, Ordering::SeqCst);
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

    async fn onboard(&self, req: OnboardRequest) -> Result<OnboardReceipt, GatewayError> {
        self.ready().await?;
        let lost = |e: sqlx::Error| lost_answer(&e);
        let mut tx = self.pool.begin().await.map_err(lost)?;
        let created: Option<String> = sqlx::query_scalar(ONBOARD)
            .bind(req.user.0)
            .bind(req.provider.as_str())
            .fetch_optional(&mut *tx)
            .await
            .map_err(lost)?;
        let (account_id, status) = match created {
            Some(account_id) => {
                // The simulation verifies every account it opens, and says so the way a real
                // provider does: a signed notice to the webhook, later.
                notice(
                    &mut tx,
                    "account.verified",
                    serde_json::json!({
                        "account_id": account_id,
                        "user_id": req.user,
                        "provider": req.provider,
                    }),
                )
                .await
                .map_err(lost)?;
                sqlx::query(
                    "update provider.accounts set status = 'verified' where account_id = $1",
                )
                .bind(&account_id)
                .execute(&mut *tx)
                .await
                .map_err(lost)?;
                (account_id, AccountStatus::Pending)
            }
            None => {
                let (account_id, status): (String, String) = sqlx::query_as(
                    "select account_id, status from provider.accounts
                      where user_id = $1 and provider = $2",
                )
                .bind(req.user.0)
                .bind(req.provider.as_str())
                .fetch_one(&mut *tx)
                .await
                .map_err(lost)?;
                let status = if status == "verified" {
                    AccountStatus::Verified
                } else {
                    AccountStatus::Pending
                };
                (account_id, status)
            }
        };
        tx.commit().await.map_err(lost)?;
        Ok(OnboardReceipt {
            account_id,
            status,
            onboarding_url: None,
        })
    }

    async fn transfer(&self, req: TransferRequest) -> Result<TransferReceipt, GatewayError> {
        self.ready().await?;
        let lost = |e: sqlx::Error| lost_answer(&e);
        let mut tx = self.pool.begin().await.map_err(lost)?;
        let verified: Option<bool> = sqlx::query_scalar(
            "select status = 'verified' from provider.accounts where account_id = $1",
        )
        .bind(&req.account_id)
        .fetch_optional(&mut *tx)
        .await
        .map_err(lost)?;
        if verified != Some(true) {
            return Err(GatewayError::Declined(format!(
                "no verified account {}",
                req.account_id
            )));
        }
        let made: Option<String> = sqlx::query_scalar(TRANSFER)
            .bind(&req.idempotency_key)
            .bind(&req.account_id)
            .bind(req.amount.amount)
            .bind(req.amount.currency.code())
            .fetch_optional(&mut *tx)
            .await
            .map_err(lost)?;
        let transfer_id = match made {
            Some(transfer_id) => {
                if self.fail_transfers_later.load(Ordering::SeqCst) {
                    sqlx::query(
                        "update provider.transfers
                            set status = 'failed', failure = 'the receiving bank returned it',
                                failed_at = now()
                          where transfer_id = $1",
                    )
                    .bind(&transfer_id)
                    .execute(&mut *tx)
                    .await
                    .map_err(lost)?;
                    notice(
                        &mut tx,
                        "transfer.failed",
                        serde_json::json!({
                            "transfer_id": transfer_id,
                            "payout_id": req.reference.payout_id,
                            "user_id": req.reference.user_id,
                            "reason": "the receiving bank returned it",
                        }),
                    )
                    .await
                    .map_err(lost)?;
                }
                transfer_id
            }
            None => {
                let (transfer_id, account, amount, currency): (String, String, i64, String) =
                    sqlx::query_as(
                        "select transfer_id, account_id, amount, currency
                           from provider.transfers where idempotency_key = $1",
                    )
                    .bind(&req.idempotency_key)
                    .fetch_one(&mut *tx)
                    .await
                    .map_err(lost)?;
                if account != req.account_id
                    || amount != req.amount.amount
                    || currency != req.amount.currency.code()
                {
                    return Err(GatewayError::Declined(
                        "the idempotency key was already used for a different transfer".to_owned(),
                    ));
                }
                transfer_id
            }
        };
        tx.commit().await.map_err(lost)?;
        Ok(TransferReceipt { transfer_id })
    }

    async fn refund(&self, req: RefundRequest) -> Result<RefundReceipt, GatewayError> {
        self.ready().await?;
        let lost = |e: sqlx::Error| lost_answer(&e);
        let mut tx = self.pool.begin().await.map_err(lost)?;
        // The charge's row, locked: two refunds of one charge are decided one after the other.
        let charge: Option<(i64, String, bool)> = sqlx::query_as(
            "select amount, currency, voided_at is not null from provider.charges
              where charge_id = $1 for update",
        )
        .bind(&req.charge_id)
        .fetch_optional(&mut *tx)
        .await
        .map_err(lost)?;
        let Some((charged, currency, voided)) = charge else {
            return Err(GatewayError::Declined(format!(
                "no charge {}",
                req.charge_id
            )));
        };
        let existing: Option<(String, String, i64)> = sqlx::query_as(
            "select refund_id, charge_id, amount from provider.refunds where idempotency_key = $1",
        )
        .bind(&req.idempotency_key)
        .fetch_optional(&mut *tx)
        .await
        .map_err(lost)?;
        if let Some((refund_id, charge_id, amount)) = existing {
            return if charge_id == req.charge_id && amount == req.amount.amount {
                Ok(RefundReceipt { refund_id })
            } else {
                Err(GatewayError::Declined(
                    "the idempotency key was already used for a different refund".to_owned(),
                ))
            };
        }
        if voided || currency != req.amount.currency.code() || req.amount.amount <= 0 {
            return Err(GatewayError::Declined(format!(
                "charge {} cannot be refunded {}",
                req.charge_id, req.amount
            )));
        }
        let refunded: i64 = sqlx::query_scalar(
            "select coalesce(sum(amount), 0)::bigint from provider.refunds where charge_id = $1",
        )
        .bind(&req.charge_id)
        .fetch_one(&mut *tx)
        .await
        .map_err(lost)?;
        if refunded.saturating_add(req.amount.amount) > charged {
            return Err(GatewayError::Declined(format!(
                "refunds of charge {} would exceed it",
                req.charge_id
            )));
        }
        let refund_id: String = sqlx::query_scalar(REFUND)
            .bind(&req.idempotency_key)
            .bind(&req.charge_id)
            .bind(req.amount.amount)
            .bind(req.amount.currency.code())
            .fetch_one(&mut *tx)
            .await
            .map_err(lost)?;
        tx.commit().await.map_err(lost)?;
        Ok(RefundReceipt { refund_id })
    }
}

impl PgSimulatedGateway {
    /// Honours the mode before a call.
    async fn ready(&self) -> Result<(), GatewayError> {
        match self.mode() {
            GatewayMode::Hang => std::future::pending().await,
            GatewayMode::Fail => Err(GatewayError::Unavailable(
                "the simulated gateway is set to fail".to_owned(),
            )),
            GatewayMode::Succeed => Ok(()),
        }
    }
}

const ONBOARD: &str = "
    insert into provider.accounts (account_id, user_id, provider, status)
    select 'sim_acct_' || lpad(n::text, 6, '0'), $1, $2, 'pending'
      from (select nextval('provider.numbers') as n) as next
    on conflict (user_id, provider) do nothing
    returning account_id";

const TRANSFER: &str = "
    insert into provider.transfers (idempotency_key, transfer_id, account_id, amount, currency,
                                    status)
    select $1, 'sim_tr_' || lpad(n::text, 6, '0'), $2, $3, $4, 'paid'
      from (select nextval('provider.numbers') as n) as next
    on conflict (idempotency_key) do nothing
    returning transfer_id";

const REFUND: &str = "
    insert into provider.refunds (idempotency_key, refund_id, charge_id, amount, currency, status)
    select $1, 'sim_re_' || lpad(n::text, 6, '0'), $2, $3, $4, 'succeeded'
      from (select nextval('provider.numbers') as n) as next
    returning refund_id";

/// Queues a notice the provider sends to the service's webhook (signed at delivery).
async fn notice(
    tx: &mut sqlx::PgConnection,
    notice_type: &str,
    data: serde_json::Value,
) -> Result<(), sqlx::Error> {
    let id = format!("sim_evt_{}", Uuid::now_v7().simple());
    let body = serde_json::json!({
        "id": id,
        "type": notice_type,
        "created": chrono::Utc::now().timestamp(),
        "data": data,
    });
    sqlx::query("insert into provider.outbox (notice_id, body) values ($1, $2)")
        .bind(&id)
        .bind(body)
        .execute(&mut *tx)
        .await?;
    Ok(())
}

/// A provider call whose answer was lost with the connection may have been made: a timeout to
/// the caller, who retries under the same key; any other storage failure is unavailability.
fn lost_answer(e: &sqlx::Error) -> GatewayError {
    match e {
        sqlx::Error::Io(_) | sqlx::Error::Protocol(_) | sqlx::Error::WorkerCrashed => {
            GatewayError::Timeout
        }
        other => unavailable(other),
    }
}

/// One notice the simulated provider has yet to deliver.
#[derive(Clone, Debug, PartialEq)]
pub struct PendingNotice {
    pub number: i64,
    pub notice_id: String,
    pub body: serde_json::Value,
}

/// The oldest notices not delivered yet.
pub async fn undelivered(pool: &PgPool, limit: i64) -> Result<Vec<PendingNotice>, sqlx::Error> {
    let rows = sqlx::query(
        "select number, notice_id, body from provider.outbox
          where delivered_at is null order by number limit $1",
    )
    .bind(limit)
    .fetch_all(pool)
    .await?;
    rows.iter()
        .map(|row| {
            Ok(PendingNotice {
                number: row.try_get("number")?,
                notice_id: row.try_get("notice_id")?,
                body: row.try_get("body")?,
            })
        })
        .collect()
}

/// Marks a notice delivered (the webhook answered 2xx).
pub async fn delivered(pool: &PgPool, number: i64) -> Result<(), sqlx::Error> {
    sqlx::query("update provider.outbox set delivered_at = now() where number = $1")
        .bind(number)
        .execute(pool)
        .await?;
    Ok(())
}
