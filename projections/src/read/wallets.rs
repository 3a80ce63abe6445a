//! Wallets, payouts and card refunds: what a freelancer sees of their earnings (balances per
//! currency, their payout account, recent credits and payouts) and what an admin acts on (payouts
//! and card refunds that failed or still wait).
//!
//! Balances follow the wallet's events exactly as the aggregate applies them (credit → available;
//! request → available to pending; paid → pending to paid out; failed → back to available, from
//! paid out when it had been paid), so `credited = available + pending + paid_out` per currency.
//! Card refunds follow the escrow: FundsRefunded books one (pending), RefundIssued or
//! RefundFailed says whether it reached the card.

use chrono::{DateTime, Utc};
use gigledger_domain::{Currency, EscrowEvent, Money, PayoutId, UserId, WalletEvent};
use serde::Serialize;
use sqlx::postgres::PgRow;
use sqlx::{FromRow, PgConnection, PgExecutor, Row};
use uuid::Uuid;

use super::{
    currency_of, cursor_part, decode, decode_cursor, encode_cursor, into_page, money, page_limit,
    AnyEvent, Page, ReadError,
};
use crate::log::RecordedEvent;
use crate::runtime::{Handler, HandlerError};

/// The handler's stored name.
pub const NAME: &str = "wallets";
/// The tables this read model fills.
pub const TABLES: &[&str] = &[
    "wallet_balances",
    "wallet_accounts",
    "wallet_credits",
    "payouts",
    "card_refunds",
];

/// Projects wallet events and escrow refunds.
#[derive(Clone, Copy, Debug, Default)]
pub struct Wallets;

#[async_trait::async_trait]
impl Handler for Wallets {
    fn name(&self) -> &str {
        NAME
    }

    async fn handle(
        &self,
        tx: &mut PgConnection,
        events: &[RecordedEvent],
    ) -> Result<(), HandlerError> {
        for event in events {
            match decode(event)? {
                Some((user_id, AnyEvent::Wallet(e))) => on_wallet(tx, user_id, event, &e).await?,
                Some((contract_id, AnyEvent::Escrow(e))) => {
                    on_escrow(tx, contract_id, event, &e).await?;
                }
                Some((_, AnyEvent::Gig(_) | AnyEvent::Contract(_))) | None => {}
            }
        }
        Ok(())
    }
}

/// Moves a balance: `available`, `pending`, `paid_out` and `credited` deltas, once per position.
async fn move_balance(
    tx: &mut PgConnection,
    user_id: Uuid,
    position: i64,
    amount: &Money,
    deltas: [i64; 4],
) -> Result<(), sqlx::Error> {
    // Each delta is -1, 0 or 1 and the amount is a command's, far inside i64.
    let scale = |d: i64| amount.amount.saturating_mul(d);
    sqlx::query(
        "insert into wallet_balances (user_id, currency, available, pending, paid_out, credited,
                                      last_position)
         values ($1, $2, $3, $4, $5, $6, $7)
         on conflict (user_id, currency) do update
            set available = wallet_balances.available + excluded.available,
                pending = wallet_balances.pending + excluded.pending,
                paid_out = wallet_balances.paid_out + excluded.paid_out,
                credited = wallet_balances.credited + excluded.credited,
                last_position = excluded.last_position
          where wallet_balances.last_position < excluded.last_position",
    )
    .bind(user_id)
    .bind(amount.currency.code())
    .bind(scale(deltas[0]))
    .bind(scale(deltas[1]))
    .bind(scale(deltas[2]))
    .bind(scale(deltas[3]))
    .bind(position)
    .execute(&mut *tx)
    .await?;
    Ok(())
}

async fn on_wallet(
    tx: &mut PgConnection,
    user_id: Uuid,
    recorded: &RecordedEvent,
    event: &WalletEvent,
) -> Result<(), HandlerError> {
    let position = recorded.position;
    match event {
        WalletEvent::PayoutAccountRegistered {
            provider,
            account_id,
            registered_at,
            ..
        } => {
            sqlx::query(
                "insert into wallet_accounts (user_id, provider, account_id, status, registered_at)
                 values ($1, $2, $3, 'pending', $4)
                 on conflict (user_id, provider) do update
                    set account_id = excluded.account_id,
                        status = case when wallet_accounts.account_id = excluded.account_id
                                      then wallet_accounts.status else 'pending' end,
                        registered_at = excluded.registered_at,
                        verified_at = case when wallet_accounts.account_id = excluded.account_id
                                           then wallet_accounts.verified_at end",
            )
            .bind(user_id)
            .bind(provider.as_str())
            .bind(account_id)
            .bind(registered_at)
            .execute(&mut *tx)
            .await?;
        }
        WalletEvent::PayoutAccountVerified {
            provider,
            account_id,
            verified_at,
        } => {
            sqlx::query(
                "update wallet_accounts set status = 'verified', verified_at = $4
                  where user_id = $1 and provider = $2 and account_id = $3",
            )
            .bind(user_id)
            .bind(provider.as_str())
            .bind(account_id)
            .bind(verified_at)
            .execute(&mut *tx)
            .await?;
        }
        WalletEvent::EarningsCredited {
            contract_id,
            milestone_id,
            net,
            credited_at,
            ..
        } => {
            sqlx::query(
                "insert into wallet_credits (position, user_id, contract_id, milestone_id, amount,
                                             currency, credited_at)
                 values ($1, $2, $3, $4, $5, $6, $7) on conflict (position) do nothing",
            )
            .bind(position)
            .bind(user_id)
            .bind(contract_id.0)
            .bind(milestone_id.0)
            .bind(net.amount)
            .bind(net.currency.code())
            .bind(credited_at)
            .execute(&mut *tx)
            .await?;
            move_balance(tx, user_id, position, net, [1, 0, 0, 1]).await?;
        }
        WalletEvent::PayoutRequested {
            payout_id,
            amount,
            account_id,
            provider,
            requested_at,
        } => {
            sqlx::query(
                "insert into payouts (payout_id, user_id, amount, currency, provider, account_id,
                                      status, requested_at, updated_at, position, last_position)
                 values ($1, $2, $3, $4, $5, $6, 'pending', $7, $7, $8, $8)
                 on conflict (payout_id) do nothing",
            )
            .bind(payout_id.0)
            .bind(user_id)
            .bind(amount.amount)
            .bind(amount.currency.code())
            .bind(provider.as_str())
            .bind(account_id)
            .bind(requested_at)
            .bind(position)
            .execute(&mut *tx)
            .await?;
            move_balance(tx, user_id, position, amount, [-1, 1, 0, 0]).await?;
        }
        WalletEvent::PayoutPaid {
            payout_id,
            amount,
            transfer_id,
            paid_at,
        } => {
            sqlx::query(
                "update payouts set status = 'paid', transfer_id = $2, updated_at = $3,
                        last_position = $4
                  where payout_id = $1 and last_position < $4",
            )
            .bind(payout_id.0)
            .bind(transfer_id)
            .bind(paid_at)
            .bind(position)
            .execute(&mut *tx)
            .await?;
            move_balance(tx, user_id, position, amount, [0, -1, 1, 0]).await?;
        }
        WalletEvent::PayoutFailed {
            payout_id,
            amount,
            reason,
            was_paid,
            failed_at,
        } => {
            sqlx::query(
                "update payouts set status = 'failed', reason = $2, updated_at = $3,
                        last_position = $4
                  where payout_id = $1 and last_position < $4",
            )
            .bind(payout_id.0)
            .bind(reason)
            .bind(failed_at)
            .bind(position)
            .execute(&mut *tx)
            .await?;
            let deltas = if *was_paid {
                [1, 0, -1, 0]
            } else {
                [1, -1, 0, 0]
            };
            move_balance(tx, user_id, position, amount, deltas).await?;
        }
    }
    Ok(())
}

async fn on_escrow(
    tx: &mut PgConnection,
    contract_id: Uuid,
    recorded: &RecordedEvent,
    event: &EscrowEvent,
) -> Result<(), HandlerError> {
    let position = recorded.position;
    match event {
        EscrowEvent::FundsRefunded {
            milestone_id,
            amount,
            refunded_at,
        } => {
            sqlx::query(
                "insert into card_refunds (contract_id, milestone_id, amount, currency, status,
                                           refunded_at, updated_at, position, last_position)
                 values ($1, $2, $3, $4, 'pending', $5, $5, $6, $6)
                 on conflict (contract_id, milestone_id) do nothing",
            )
            .bind(contract_id)
            .bind(milestone_id.0)
            .bind(amount.amount)
            .bind(amount.currency.code())
            .bind(refunded_at)
            .bind(position)
            .execute(&mut *tx)
            .await?;
        }
        EscrowEvent::RefundIssued {
            milestone_id,
            refund_id,
            ..
        } => {
            sqlx::query(
                "update card_refunds set status = 'issued', refund_id = $3, reason = null,
                        updated_at = $4, last_position = $5
                  where contract_id = $1 and milestone_id = $2 and last_position < $5",
            )
            .bind(contract_id)
            .bind(milestone_id.0)
            .bind(refund_id)
            .bind(recorded.recorded_at)
            .bind(position)
            .execute(&mut *tx)
            .await?;
        }
        EscrowEvent::RefundFailed {
            milestone_id,
            reason,
            ..
        } => {
            sqlx::query(
                "update card_refunds set status = 'failed', reason = $3, updated_at = $4,
                        last_position = $5
                  where contract_id = $1 and milestone_id = $2 and last_position < $5
                    and status <> 'issued'",
            )
            .bind(contract_id)
            .bind(milestone_id.0)
            .bind(reason)
            .bind(recorded.recorded_at)
            .bind(position)
            .execute(&mut *tx)
            .await?;
        }
        EscrowEvent::EscrowOpened { .. }
        | EscrowEvent::FundsDeposited { .. }
        | EscrowEvent::FundsReleased { .. }
        | EscrowEvent::FundsFrozen { .. }
        | EscrowEvent::EscrowClosed { .. }
        | EscrowEvent::ChargeVoided { .. } => {}
    }
    Ok(())
}

/// One currency of a wallet.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct BalanceView {
    pub currency: Currency,
    /// Minor units that can be paid out now.
    pub available: i64,
    /// Requested, not yet paid.
    pub pending: i64,
    pub paid_out: i64,
}

impl FromRow<'_, PgRow> for BalanceView {
    fn from_row(row: &PgRow) -> Result<Self, sqlx::Error> {
        Ok(Self {
            currency: currency_of(row, "currency")?,
            available: row.try_get("available")?,
            pending: row.try_get("pending")?,
            paid_out: row.try_get("paid_out")?,
        })
    }
}

/// A payout account and its status.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, FromRow, utoipa::ToSchema)]
pub struct AccountView {
    pub provider: String,
    pub account_id: String,
    /// `pending` until the provider verifies it, then `verified`.
    pub status: String,
    pub registered_at: DateTime<Utc>,
    pub verified_at: Option<DateTime<Utc>>,
}

/// One credit of a release's net amount.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct CreditView {
    pub contract_id: Uuid,
    pub milestone_id: Uuid,
    pub amount: Money,
    pub credited_at: DateTime<Utc>,
}

impl FromRow<'_, PgRow> for CreditView {
    fn from_row(row: &PgRow) -> Result<Self, sqlx::Error> {
        Ok(Self {
            contract_id: row.try_get("contract_id")?,
            milestone_id: row.try_get("milestone_id")?,
            amount: money(row, "amount", "currency")?,
            credited_at: row.try_get("credited_at")?,
        })
    }
}

/// One payout.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct PayoutView {
    pub payout_id: PayoutId,
    pub user_id: UserId,
    pub amount: Money,
    pub provider: String,
    pub account_id: String,
    /// `pending`, `paid` or `failed`.
    pub status: String,
    pub transfer_id: Option<String>,
    /// Why it failed.
    pub reason: Option<String>,
    pub requested_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    #[serde(skip)]
    position: i64,
}

impl FromRow<'_, PgRow> for PayoutView {
    fn from_row(row: &PgRow) -> Result<Self, sqlx::Error> {
        Ok(Self {
            payout_id: PayoutId(row.try_get("payout_id")?),
            user_id: UserId(row.try_get("user_id")?),
            amount: money(row, "amount", "currency")?,
            provider: row.try_get("provider")?,
            account_id: row.try_get("account_id")?,
            status: row.try_get("status")?,
            transfer_id: row.try_get("transfer_id")?,
            reason: row.try_get("reason")?,
            requested_at: row.try_get("requested_at")?,
            updated_at: row.try_get("updated_at")?,
            position: row.try_get("position")?,
        })
    }
}

/// One refund booked on an escrow and whether it reached the card.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct CardRefundView {
    pub contract_id: Uuid,
    pub milestone_id: Uuid,
    pub amount: Money,
    /// `pending`, `issued` or `failed`.
    pub status: String,
    pub refund_id: Option<String>,
    pub reason: Option<String>,
    pub refunded_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl FromRow<'_, PgRow> for CardRefundView {
    fn from_row(row: &PgRow) -> Result<Self, sqlx::Error> {
        Ok(Self {
            contract_id: row.try_get("contract_id")?,
            milestone_id: row.try_get("milestone_id")?,
            amount: money(row, "amount", "currency")?,
            status: row.try_get("status")?,
            refund_id: row.try_get("refund_id")?,
            reason: row.try_get("reason")?,
            refunded_at: row.try_get("refunded_at")?,
            updated_at: row.try_get("updated_at")?,
        })
    }
}

/// What `GET /v1/me/wallet` shows.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct WalletView {
    pub user_id: UserId,
    pub balances: Vec<BalanceView>,
    pub accounts: Vec<AccountView>,
    /// The ten newest.
    pub recent_credits: Vec<CreditView>,
    /// The ten newest.
    pub recent_payouts: Vec<PayoutView>,
}

/// How many recent credits and payouts a wallet view shows.
const RECENT: i64 = 10;

/// A freelancer's wallet (empty when nothing was ever credited or registered).
pub async fn wallet_of(db: &mut PgConnection, user_id: UserId) -> Result<WalletView, ReadError> {
    let balances = sqlx::query_as(
        "select currency, available, pending, paid_out from read.wallet_balances
          where user_id = $1 order by currency",
    )
    .bind(user_id.0)
    .fetch_all(&mut *db)
    .await?;
    let accounts = sqlx::query_as(
        "select provider, account_id, status, registered_at, verified_at
           from read.wallet_accounts where user_id = $1 order by provider",
    )
    .bind(user_id.0)
    .fetch_all(&mut *db)
    .await?;
    let recent_credits = sqlx::query_as(
        "select contract_id, milestone_id, amount, currency, credited_at
           from read.wallet_credits where user_id = $1 order by position desc limit $2",
    )
    .bind(user_id.0)
    .bind(RECENT)
    .fetch_all(&mut *db)
    .await?;
    let recent_payouts = sqlx::query_as(
        "select * from read.payouts where user_id = $1 order by position desc limit $2",
    )
    .bind(user_id.0)
    .bind(RECENT)
    .fetch_all(&mut *db)
    .await?;
    Ok(WalletView {
        user_id,
        balances,
        accounts,
        recent_credits,
        recent_payouts,
    })
}

const PAYOUTS_CURSOR: &str = "po";

/// A freelancer's payouts, newest first.
pub async fn payouts_of<'e>(
    db: impl PgExecutor<'e>,
    user_id: UserId,
    cursor: Option<&str>,
    limit: Option<u32>,
) -> Result<Page<PayoutView>, ReadError> {
    let limit = page_limit(limit);
    let before: i64 = match cursor {
        None => i64::MAX,
        Some(c) => cursor_part(decode_cursor(c, PAYOUTS_CURSOR, 1)?[0])?,
    };
    let rows = sqlx::query_as(
        "select * from read.payouts where user_id = $1 and position < $2
          order by position desc limit $3",
    )
    .bind(user_id.0)
    .bind(before)
    .bind(limit + 1)
    .fetch_all(db)
    .await?;
    Ok(into_page(rows, limit, |p: &PayoutView| {
        encode_cursor(PAYOUTS_CURSOR, &[&p.position])
    }))
}

/// What an admin acts on: payouts and card refunds in one status, newest first.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct AttentionView {
    pub payouts: Vec<PayoutView>,
    pub refunds: Vec<CardRefundView>,
}

/// Payouts and card refunds in `status` (`failed`, or `pending` for those still waiting), the
/// `limit` newest of each.
pub async fn needing_attention(
    db: &mut PgConnection,
    status: &str,
    limit: Option<u32>,
) -> Result<AttentionView, ReadError> {
    if status != "failed" && status != "pending" {
        return Err(ReadError::InvalidArgument(
            "status must be failed or pending".to_owned(),
        ));
    }
    let limit = page_limit(limit);
    let payouts = sqlx::query_as(
        "select * from read.payouts where status = $1 order by position desc limit $2",
    )
    .bind(status)
    .bind(limit)
    .fetch_all(&mut *db)
    .await?;
    let refunds = sqlx::query_as(
        "select * from read.card_refunds where status = $1 order by position desc limit $2",
    )
    .bind(status)
    .bind(limit)
    .fetch_all(&mut *db)
    .await?;
    Ok(AttentionView { payouts, refunds })
}
