//! The escrow ledger: every journal line of every escrow event, for auditors.
//!
//! Lines come from [`EscrowEvent::journal_lines`], so the ledger and the domain can never
//! disagree on what an event means; the freelancer who names the payable account comes from
//! `EscrowOpened`, remembered in `ledger_escrows`. Each line also carries its movement kind
//! (deposit, release gross / fee / net, refund), from which per-contract totals are summed.

use chrono::{DateTime, Utc};
use gigledger_domain::escrow::{escrow_account, PLATFORM_REVENUE_ACCOUNT};
use gigledger_domain::{ContractId, Currency, EscrowEvent, MilestoneId, UserId, WalletEvent};
use serde::Serialize;
use sqlx::postgres::PgRow;
use sqlx::{FromRow, PgConnection, PgExecutor, Row};
use uuid::Uuid;

use super::{
    currency_of, cursor_part, decode, decode_cursor, encode_cursor, exact_sum, into_page,
    page_limit, AnyEvent, Page, ReadError,
};
use crate::log::RecordedEvent;
use crate::runtime::{Handler, HandlerError};

/// The handler's stored name.
pub const NAME: &str = "ledger";
/// The tables this read model fills.
pub const TABLES: &[&str] = &["ledger_escrows", "ledger_entries", "wallet_ledger_entries"];

/// Projects escrow events into journal lines.
#[derive(Clone, Copy, Debug, Default)]
pub struct Ledger;

#[async_trait::async_trait]
impl Handler for Ledger {
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
                Some((contract_id, AnyEvent::Escrow(escrow_event))) => {
                    apply(tx, contract_id, event, &escrow_event).await?;
                }
                Some((freelancer_id, AnyEvent::Wallet(wallet_event))) => {
                    apply_wallet(tx, freelancer_id, event, &wallet_event).await?;
                }
                Some((_, AnyEvent::Gig(_) | AnyEvent::Contract(_))) | None => {}
            }
        }
        Ok(())
    }
}

/// What a line of `event` records, told by the event and the line's account.
fn movement(event: &EscrowEvent, account: &str, contract: ContractId) -> Option<&'static str> {
    match event {
        EscrowEvent::FundsDeposited { .. } => Some("deposit"),
        EscrowEvent::FundsReleased { .. } if account == escrow_account(contract) => {
            Some("release_gross")
        }
        EscrowEvent::FundsReleased { .. } if account == PLATFORM_REVENUE_ACCOUNT => {
            Some("release_fee")
        }
        EscrowEvent::FundsReleased { .. } => Some("release_net"),
        EscrowEvent::FundsRefunded { .. } => Some("refund"),
        EscrowEvent::RefundIssued { .. } => Some("card_refund"),
        EscrowEvent::EscrowOpened { .. }
        | EscrowEvent::FundsFrozen { .. }
        | EscrowEvent::EscrowClosed { .. }
        | EscrowEvent::ChargeVoided { .. }
        | EscrowEvent::RefundFailed { .. } => None,
    }
}

fn milestone_of(event: &EscrowEvent) -> Option<MilestoneId> {
    match event {
        EscrowEvent::FundsDeposited { milestone_id, .. }
        | EscrowEvent::FundsReleased { milestone_id, .. }
        | EscrowEvent::FundsFrozen { milestone_id, .. }
        | EscrowEvent::FundsRefunded { milestone_id, .. }
        | EscrowEvent::RefundIssued { milestone_id, .. }
        | EscrowEvent::RefundFailed { milestone_id, .. } => Some(*milestone_id),
        // A void moves no money: it has no journal lines to attach a milestone to.
        EscrowEvent::EscrowOpened { .. }
        | EscrowEvent::EscrowClosed { .. }
        | EscrowEvent::ChargeVoided { .. } => None,
    }
}

async fn apply(
    tx: &mut PgConnection,
    contract_id: Uuid,
    recorded: &RecordedEvent,
    event: &EscrowEvent,
) -> Result<(), HandlerError> {
    if let EscrowEvent::EscrowOpened {
        client_id,
        freelancer_id,
        currency,
        fee_bps,
        ..
    } = event
    {
        sqlx::query(
            "insert into ledger_escrows (contract_id, client_id, freelancer_id, currency, fee_bps,
                                         opened_position)
             values ($1, $2, $3, $4, $5, $6) on conflict (contract_id) do nothing",
        )
        .bind(contract_id)
        .bind(client_id.0)
        .bind(freelancer_id.0)
        .bind(currency.code())
        .bind(i64::from(*fee_bps))
        .bind(recorded.position)
        .execute(&mut *tx)
        .await?;
        return Ok(());
    }
    let Some(milestone_id) = milestone_of(event) else {
        return Ok(());
    };
    if matches!(event, EscrowEvent::FundsFrozen { .. }) {
        return Ok(()); // moves no money
    }
    let freelancer: Option<Uuid> =
        sqlx::query_scalar("select freelancer_id from ledger_escrows where contract_id = $1")
            .bind(contract_id)
            .fetch_optional(&mut *tx)
            .await?;
    // Money moved in an escrow whose opening was never seen: the payable account is unknown.
    let Some(freelancer) = freelancer else {
        return Err(format!(
            "escrow {contract_id} moved money at position {} before it was opened",
            recorded.position
        )
        .into());
    };
    let contract = ContractId(contract_id);
    let lines = event.journal_lines(contract, UserId(freelancer));
    for (line, journal_line) in (0_i16..).zip(&lines) {
        let Some(kind) = movement(event, &journal_line.account, contract) else {
            continue;
        };
        sqlx::query(
            "insert into ledger_entries (position, line, contract_id, milestone_id, event_type,
                                         movement, account, amount, currency, recorded_at)
             values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
             on conflict (position, line) do nothing",
        )
        .bind(recorded.position)
        .bind(line)
        .bind(contract_id)
        .bind(milestone_id.0)
        .bind(&recorded.event_type)
        .bind(kind)
        .bind(&journal_line.account)
        .bind(journal_line.amount)
        .bind(journal_line.currency.code())
        .bind(recorded.recorded_at)
        .execute(&mut *tx)
        .await?;
    }
    Ok(())
}

/// A wallet event's journal lines (a payout leaving `freelancer_payable` for `payouts_sent`, or
/// coming back after a failure), kept beside the escrows' lines: they belong to no contract.
async fn apply_wallet(
    tx: &mut PgConnection,
    freelancer_id: Uuid,
    recorded: &RecordedEvent,
    event: &WalletEvent,
) -> Result<(), HandlerError> {
    let (kind, payout_id) = match event {
        WalletEvent::PayoutPaid { payout_id, .. } => ("payout", payout_id),
        WalletEvent::PayoutFailed { payout_id, .. } => ("payout_returned", payout_id),
        _ => return Ok(()),
    };
    let lines = event.journal_lines(UserId(freelancer_id));
    for (line, journal_line) in (0_i16..).zip(&lines) {
        sqlx::query(
            "insert into wallet_ledger_entries (position, line, user_id, payout_id, event_type,
                                                movement, account, amount, currency, recorded_at)
             values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
             on conflict (position, line) do nothing",
        )
        .bind(recorded.position)
        .bind(line)
        .bind(freelancer_id)
        .bind(payout_id.0)
        .bind(&recorded.event_type)
        .bind(kind)
        .bind(&journal_line.account)
        .bind(journal_line.amount)
        .bind(journal_line.currency.code())
        .bind(recorded.recorded_at)
        .execute(&mut *tx)
        .await?;
    }
    Ok(())
}

/// One journal line.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct LedgerEntry {
    /// The escrow event's global position.
    pub position: i64,
    /// The line's index within the event's journal entry.
    pub line: i16,
    pub contract_id: ContractId,
    pub milestone_id: MilestoneId,
    pub event_type: String,
    /// `deposit`, `release_gross`, `release_fee`, `release_net`, `refund` or `card_refund`.
    pub movement: String,
    pub account: String,
    /// Signed minor units: positive flows into the account.
    pub amount: i64,
    pub currency: Currency,
    pub recorded_at: DateTime<Utc>,
}

impl FromRow<'_, PgRow> for LedgerEntry {
    fn from_row(row: &PgRow) -> Result<Self, sqlx::Error> {
        Ok(Self {
            position: row.try_get("position")?,
            line: row.try_get("line")?,
            contract_id: ContractId(row.try_get("contract_id")?),
            milestone_id: MilestoneId(row.try_get("milestone_id")?),
            event_type: row.try_get("event_type")?,
            movement: row.try_get("movement")?,
            account: row.try_get("account")?,
            amount: row.try_get("amount")?,
            currency: currency_of(row, "currency")?,
            recorded_at: row.try_get("recorded_at")?,
        })
    }
}

const CURSOR: &str = "l";

/// A contract's journal lines in log order (by position, then line).
pub async fn entries_of_contract<'e>(
    db: impl PgExecutor<'e>,
    contract_id: ContractId,
    cursor: Option<&str>,
    limit: Option<u32>,
) -> Result<Page<LedgerEntry>, ReadError> {
    let limit = page_limit(limit);
    // Sentinel before every line on the first page: the keyset stays the index condition in a
    // generic plan (`$2 is null or …` would not).
    let after: (i64, i16) = cursor
        .map(|c| {
            let parts = decode_cursor(c, CURSOR, 2)?;
            Ok::<_, ReadError>((cursor_part(parts[0])?, cursor_part(parts[1])?))
        })
        .transpose()?
        .unwrap_or((-1, -1));
    let rows = sqlx::query_as(
        "select * from read.ledger_entries
          where contract_id = $1
            and (position, line) > ($2, $3::smallint)
          order by position, line
          limit $4",
    )
    .bind(contract_id.0)
    .bind(after.0)
    .bind(after.1)
    .bind(limit + 1)
    .fetch_all(db)
    .await?;
    Ok(into_page(rows, limit, |e: &LedgerEntry| {
        encode_cursor(CURSOR, &[&e.position, &e.line])
    }))
}

/// One account's balance in one currency.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct AccountBalance {
    pub account: String,
    pub currency: String,
    /// The sum of the account's lines (signed minor units, exact: an account such as
    /// `platform_revenue` grows without bound).
    pub balance: i128,
}

impl FromRow<'_, PgRow> for AccountBalance {
    fn from_row(row: &PgRow) -> Result<Self, sqlx::Error> {
        Ok(Self {
            account: row.try_get("account")?,
            currency: row.try_get("currency")?,
            balance: exact_sum(row, "balance")?,
        })
    }
}

/// The balance of every account per currency, over one contract's lines or all of them. Every
/// journal entry sums to zero, so the balances of each currency sum to zero.
pub async fn trial_balance<'e>(
    db: impl PgExecutor<'e>,
    contract_id: Option<ContractId>,
) -> Result<Vec<AccountBalance>, ReadError> {
    // Two statements: `$1 is null or contract_id = $1` would, in a generic plan, read every
    // contract's lines for one contract's balance.
    Ok(match contract_id {
        Some(contract_id) => {
            sqlx::query_as(
                "select account, currency, sum(amount)::text as balance
                   from read.ledger_entries
                  where contract_id = $1
                  group by account, currency
                  order by currency, account",
            )
            .bind(contract_id.0)
            .fetch_all(db)
            .await?
        }
        // Every line: the escrows' and the wallets' (payouts belong to no contract).
        None => {
            sqlx::query_as(
                "select account, currency, sum(amount)::text as balance
                   from (select account, currency, amount from read.ledger_entries
                         union all
                         select account, currency, amount from read.wallet_ledger_entries) as lines
                  group by account, currency
                  order by currency, account",
            )
            .fetch_all(db)
            .await?
        }
    })
}

/// What an escrow received and paid out, summed from the ledger, in minor units (exact: the
/// totals over every contract grow without bound).
/// `deposited = released_gross + refunded + held` and `released_gross = net + fee`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct EscrowTotals {
    /// `None` for totals over every contract (of one currency).
    pub contract_id: Option<ContractId>,
    pub currency: String,
    pub deposited: i128,
    pub released_gross: i128,
    pub fee: i128,
    pub net: i128,
    pub refunded: i128,
    pub held: i128,
}

impl FromRow<'_, PgRow> for EscrowTotals {
    fn from_row(row: &PgRow) -> Result<Self, sqlx::Error> {
        Ok(Self {
            contract_id: row
                .try_get::<Option<Uuid>, _>("contract_id")?
                .map(ContractId),
            currency: row.try_get("currency")?,
            deposited: exact_sum(row, "deposited")?,
            released_gross: exact_sum(row, "released_gross")?,
            fee: exact_sum(row, "fee")?,
            net: exact_sum(row, "net")?,
            refunded: exact_sum(row, "refunded")?,
            held: exact_sum(row, "held")?,
        })
    }
}

/// Sums of the movements, signed as they flow, over the escrow account's lines (plus the fee
/// and net lines of releases): held is the escrow account's balance. `sum` of a `bigint` is an
/// exact `numeric` in PostgreSQL; it is sent as text and read into an `i128`, never cast back to
/// `bigint` (a total over every contract may not fit).
macro_rules! totals_columns {
    () => {
        "coalesce(sum(amount) filter (where movement = 'deposit' and account like 'escrow:%'), 0)::text
             as deposited,
         coalesce(-sum(amount) filter (where movement = 'release_gross'), 0)::text
             as released_gross,
         coalesce(sum(amount) filter (where movement = 'release_fee'), 0)::text as fee,
         coalesce(sum(amount) filter (where movement = 'release_net'), 0)::text as net,
         coalesce(-sum(amount) filter (where movement = 'refund' and account like 'escrow:%'), 0)::text
             as refunded,
         coalesce(sum(amount) filter (where account like 'escrow:%'), 0)::text as held"
    };
}

/// One contract's escrow totals; `None` if its escrow was never opened.
pub async fn contract_totals<'e>(
    db: impl PgExecutor<'e>,
    contract_id: ContractId,
) -> Result<Option<EscrowTotals>, ReadError> {
    Ok(sqlx::query_as(concat!(
        "select e.contract_id, e.currency, t.* from read.ledger_escrows e
           cross join lateral (select ",
        totals_columns!(),
        " from read.ledger_entries l where l.contract_id = e.contract_id) t
          where e.contract_id = $1"
    ))
    .bind(contract_id.0)
    .fetch_optional(db)
    .await?)
}

/// Escrow totals over every contract, per currency.
pub async fn totals_by_currency<'e>(
    db: impl PgExecutor<'e>,
) -> Result<Vec<EscrowTotals>, ReadError> {
    Ok(sqlx::query_as(concat!(
        "select null::uuid as contract_id, currency, ",
        totals_columns!(),
        " from read.ledger_entries group by currency order by currency"
    ))
    .fetch_all(db)
    .await?)
}
