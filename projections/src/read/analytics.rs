//! Analytics for analysts: daily volumes per currency, the hiring funnel, time to hire, disputes,
//! and demand and supply by skill.
//!
//! The handler records one fact row per gig, proposal, hire, money movement and dispute, and
//! increments the daily rollups only when it inserted the fact, so every event counts exactly
//! once. Days are UTC dates of the domain's times (posted_at, submitted_at, accepted_at,
//! released_at, refunded_at). Date ranges are inclusive at both ends.
//!
//! Every figure of a gig is counted under its current skills and currency: a revision moves
//! the gig's posting and proposals from the old skills and currency to the new ones (a gig is
//! revised only while open, before any hire or money).
//!
//! Which set each figure is computed over:
//! - volumes, GMV: the day each thing happened (posted, submitted, accepted, released,
//!   refunded); GMV lists every period of the range, zeros included (ISO weeks from Monday);
//! - funnel: the gigs *posted* in the range, and what became of them since;
//! - time to hire: the hires *accepted* in the range, whenever their gig was posted;
//! - disputes: opened in the range, resolved in the range, refund share over those resolved;
//! - skills: gigs posted in the range (demand) and proposals submitted in the range (supply),
//!   each under its gig's current skills.

use chrono::{DateTime, Days, NaiveDate, Utc};
use gigledger_domain::{ContractEvent, EscrowEvent, GigEvent, Money, WalletEvent};
use serde::{Deserialize, Serialize};
use sqlx::postgres::PgRow;
use sqlx::{FromRow, PgConnection, PgExecutor, Row};
use uuid::Uuid;

use super::{decode, exact_sum, AnyEvent, ReadError};
use crate::log::RecordedEvent;
use crate::runtime::{Handler, HandlerError};

/// The handler's stored name.
pub const NAME: &str = "analytics";
/// The tables this read model fills.
pub const TABLES: &[&str] = &[
    "analytics_gigs",
    "analytics_proposals",
    "analytics_hires",
    "analytics_movements",
    "analytics_disputes",
    "analytics_daily",
    "analytics_skills_daily",
    "analytics_money_out",
];

/// Projects every event into analytics facts and daily rollups.
#[derive(Clone, Copy, Debug, Default)]
pub struct Analytics;

#[async_trait::async_trait]
impl Handler for Analytics {
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
                Some((id, AnyEvent::Gig(e))) => on_gig(tx, id, event.position, &e).await?,
                Some((id, AnyEvent::Contract(e))) => on_contract(tx, id, &e).await?,
                Some((id, AnyEvent::Escrow(e))) => on_escrow(tx, id, event.position, &e).await?,
                Some((_, AnyEvent::Wallet(e))) => on_wallet(tx, event.position, &e).await?,
                None => {}
            }
        }
        Ok(())
    }
}

/// Money paid out, on the day it was paid; a payout that failed after being paid comes off on
/// the day it failed.
async fn on_wallet(
    tx: &mut PgConnection,
    position: i64,
    event: &WalletEvent,
) -> Result<(), HandlerError> {
    let (amount, at, sign) = match event {
        WalletEvent::PayoutPaid {
            amount, paid_at, ..
        } => (amount, paid_at, 1),
        WalletEvent::PayoutFailed {
            amount,
            was_paid: true,
            failed_at,
            ..
        } => (amount, failed_at, -1),
        _ => return Ok(()),
    };
    if first_time(tx, position).await? {
        let delta = DailyDelta {
            paid_out: amount.amount.saturating_mul(sign),
            ..DailyDelta::default()
        };
        add_daily(tx, *at, amount.currency.code(), delta).await?;
    }
    Ok(())
}

/// Whether the event at `position` is counted into the money-out figures for the first time.
async fn first_time(tx: &mut PgConnection, position: i64) -> Result<bool, sqlx::Error> {
    let inserted = sqlx::query(
        "insert into analytics_money_out (position) values ($1) on conflict (position) do nothing",
    )
    .bind(position)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    Ok(inserted == 1)
}

/// What one fact adds to a day's rollup.
#[derive(Default)]
struct DailyDelta {
    gigs_posted: i64,
    proposals: i64,
    hires: i64,
    gmv_released: i64,
    fees: i64,
    refunds: i64,
    paid_out: i64,
    refunded_to_card: i64,
}

async fn add_daily(
    tx: &mut PgConnection,
    at: DateTime<Utc>,
    currency: &str,
    delta: DailyDelta,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "insert into analytics_daily (day, currency, gigs_posted, proposals, hires, gmv_released,
                                      fees, refunds, paid_out, refunded_to_card)
         values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
         on conflict (day, currency) do update
            set gigs_posted = analytics_daily.gigs_posted + excluded.gigs_posted,
                proposals = analytics_daily.proposals + excluded.proposals,
                hires = analytics_daily.hires + excluded.hires,
                gmv_released = analytics_daily.gmv_released + excluded.gmv_released,
                fees = analytics_daily.fees + excluded.fees,
                refunds = analytics_daily.refunds + excluded.refunds,
                paid_out = analytics_daily.paid_out + excluded.paid_out,
                refunded_to_card = analytics_daily.refunded_to_card + excluded.refunded_to_card",
    )
    .bind(at.date_naive())
    .bind(currency)
    .bind(delta.gigs_posted)
    .bind(delta.proposals)
    .bind(delta.hires)
    .bind(delta.gmv_released)
    .bind(delta.fees)
    .bind(delta.refunds)
    .bind(delta.paid_out)
    .bind(delta.refunded_to_card)
    .execute(&mut *tx)
    .await?;
    Ok(())
}

async fn add_skills(
    tx: &mut PgConnection,
    at: DateTime<Utc>,
    skills: &[String],
    gigs: i64,
    proposals: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "insert into analytics_skills_daily (day, skill, gigs, proposals)
         select $1, skill, $3, $4 from unnest($2::text[]) as skill
         on conflict (day, skill) do update
            set gigs = analytics_skills_daily.gigs + excluded.gigs,
                proposals = analytics_skills_daily.proposals + excluded.proposals",
    )
    .bind(at.date_naive())
    .bind(skills)
    .bind(gigs)
    .bind(proposals)
    .execute(&mut *tx)
    .await?;
    Ok(())
}

async fn on_gig(
    tx: &mut PgConnection,
    gig_id: Uuid,
    position: i64,
    event: &GigEvent,
) -> Result<(), HandlerError> {
    match event {
        GigEvent::GigPosted {
            skills,
            budget,
            posted_at,
            ..
        } => {
            let currency = budget.currency().code();
            let inserted = sqlx::query(
                "insert into analytics_gigs (gig_id, posted_at, currency, skills, last_position)
                 values ($1, $2, $3, $4, $5) on conflict (gig_id) do nothing",
            )
            .bind(gig_id)
            .bind(posted_at)
            .bind(currency)
            .bind(skills)
            .bind(position)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if inserted == 1 {
                let delta = DailyDelta {
                    gigs_posted: 1,
                    ..DailyDelta::default()
                };
                add_daily(tx, *posted_at, currency, delta).await?;
                add_skills(tx, *posted_at, skills, 1, 0).await?;
            }
        }
        GigEvent::GigRevised { skills, budget, .. } => {
            // The self-join reads the row as it was before this update: the old skills and
            // currency, under which the gig's figures were counted so far.
            let revised: Option<(Vec<String>, String, Vec<String>, String)> = sqlx::query_as(
                "update analytics_gigs g
                    set skills = coalesce($3, g.skills), currency = coalesce($4, g.currency),
                        last_position = $2
                   from analytics_gigs old
                  where g.gig_id = $1 and old.gig_id = $1 and g.last_position < $2
              returning old.skills, old.currency, g.skills, g.currency",
            )
            .bind(gig_id)
            .bind(position)
            .bind(skills)
            .bind(budget.as_ref().map(|b| b.currency().code()))
            .fetch_optional(&mut *tx)
            .await?;
            if let Some((old_skills, old_currency, new_skills, new_currency)) = revised {
                move_figures(
                    tx,
                    gig_id,
                    (&old_skills, &old_currency),
                    (&new_skills, &new_currency),
                )
                .await?;
            }
        }
        GigEvent::ProposalSubmitted {
            proposal_id,
            bid,
            submitted_at,
            ..
        } => {
            let inserted = sqlx::query(
                "insert into analytics_proposals (proposal_id, gig_id, submitted_at, currency)
                 values ($1, $2, $3, $4) on conflict (proposal_id) do nothing",
            )
            .bind(proposal_id.0)
            .bind(gig_id)
            .bind(submitted_at)
            .bind(bid.currency.code())
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if inserted == 1 {
                // Counted under the gig's current skills and currency, as every figure of the
                // gig is (a revision moves them all, see `move_figures`).
                let gig: Option<(Vec<String>, String)> = sqlx::query_as(
                    "update analytics_gigs
                        set proposals = proposals + 1,
                            first_proposal_at = coalesce(first_proposal_at, $2)
                      where gig_id = $1
                  returning skills, currency",
                )
                .bind(gig_id)
                .bind(submitted_at)
                .fetch_optional(&mut *tx)
                .await?;
                let (skills, currency) =
                    gig.unwrap_or_else(|| (Vec::new(), bid.currency.code().to_owned()));
                let delta = DailyDelta {
                    proposals: 1,
                    ..DailyDelta::default()
                };
                add_daily(tx, *submitted_at, &currency, delta).await?;
                add_skills(tx, *submitted_at, &skills, 0, 1).await?;
            }
        }
        GigEvent::ProposalAccepted {
            contract_id,
            terms,
            accepted_at,
            posted_at,
            ..
        } => {
            // The gig's current currency (the terms' by the domain's rules: a gig's currency
            // cannot change while a proposal is live), so every figure of the gig agrees.
            let currency: String =
                sqlx::query_scalar("select currency from analytics_gigs where gig_id = $1")
                    .bind(gig_id)
                    .fetch_optional(&mut *tx)
                    .await?
                    .unwrap_or_else(|| terms.currency.code().to_owned());
            let inserted = sqlx::query(
                "insert into analytics_hires (contract_id, gig_id, currency, posted_at, accepted_at)
                 values ($1, $2, $3, $4, $5) on conflict (contract_id) do nothing",
            )
            .bind(contract_id.0)
            .bind(gig_id)
            .bind(&currency)
            .bind(posted_at)
            .bind(accepted_at)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if inserted == 1 {
                sqlx::query(
                    "update analytics_gigs set contract_id = $2, hired_at = $3 where gig_id = $1",
                )
                .bind(gig_id)
                .bind(contract_id.0)
                .bind(accepted_at)
                .execute(&mut *tx)
                .await?;
                let delta = DailyDelta {
                    hires: 1,
                    ..DailyDelta::default()
                };
                add_daily(tx, *accepted_at, &currency, delta).await?;
            }
        }
        GigEvent::ProposalWithdrawn { .. }
        | GigEvent::ProposalRejected { .. }
        | GigEvent::GigClosed { .. }
        | GigEvent::GigCancelled { .. } => {}
    }
    Ok(())
}

/// Moves a revised gig's figures from its old skills and currency to its new ones, so that
/// demand (the gig), supply (its proposals) and the daily counts all count it under the same,
/// current skills and currency. Only the posting and the proposals are moved: a gig is revised
/// only while open, so it has no hire yet, and money moves only after a hire.
async fn move_figures(
    tx: &mut PgConnection,
    gig_id: Uuid,
    (old_skills, old_currency): (&[String], &str),
    (new_skills, new_currency): (&[String], &str),
) -> Result<(), sqlx::Error> {
    let mut old_sorted = old_skills.to_vec();
    let mut new_sorted = new_skills.to_vec();
    old_sorted.sort();
    new_sorted.sort();
    let skills_changed = old_sorted != new_sorted;
    let currency_changed = old_currency != new_currency;
    if !skills_changed && !currency_changed {
        return Ok(());
    }
    // The gig's figures per UTC day: 1 gig on its posting day, its proposals on theirs.
    let figures: Vec<(NaiveDate, i64, i64)> = sqlx::query_as(
        "select day, sum(gigs)::bigint, sum(proposals)::bigint
           from (select (posted_at at time zone 'UTC')::date as day, 1 as gigs, 0 as proposals
                   from analytics_gigs where gig_id = $1
                 union all
                 select (submitted_at at time zone 'UTC')::date, 0, 1
                   from analytics_proposals where gig_id = $1) f
          group by day order by day",
    )
    .bind(gig_id)
    .fetch_all(&mut *tx)
    .await?;
    let days: Vec<NaiveDate> = figures.iter().map(|f| f.0).collect();
    let gigs: Vec<i64> = figures.iter().map(|f| f.1).collect();
    let proposals: Vec<i64> = figures.iter().map(|f| f.2).collect();
    if currency_changed {
        // One row per (day, currency): minus under the old currency, plus under the new.
        sqlx::query(
            "insert into analytics_daily (day, currency, gigs_posted, proposals)
             select f.day, c.currency, c.sign * f.gigs, c.sign * f.proposals
               from unnest($1::date[], $2::bigint[], $3::bigint[]) as f (day, gigs, proposals)
              cross join (values ($4::text, -1::bigint), ($5::text, 1::bigint)) as c (currency, sign)
             on conflict (day, currency) do update
                set gigs_posted = analytics_daily.gigs_posted + excluded.gigs_posted,
                    proposals = analytics_daily.proposals + excluded.proposals",
        )
        .bind(&days)
        .bind(&gigs)
        .bind(&proposals)
        .bind(old_currency)
        .bind(new_currency)
        .execute(&mut *tx)
        .await?;
        // A day that only this gig made active in the old currency is gone from it.
        sqlx::query(
            "delete from analytics_daily
              where currency = $1 and day = any($2)
                and gigs_posted = 0 and proposals = 0 and hires = 0
                and gmv_released = 0 and fees = 0 and refunds = 0",
        )
        .bind(old_currency)
        .bind(&days)
        .execute(&mut *tx)
        .await?;
        sqlx::query("update analytics_proposals set currency = $2 where gig_id = $1")
            .bind(gig_id)
            .bind(new_currency)
            .execute(&mut *tx)
            .await?;
    }
    if skills_changed {
        // Each skill's net change: -1 dropped, +1 added, kept skills not at all (one row per
        // (day, skill), as `on conflict do update` needs).
        sqlx::query(
            "insert into analytics_skills_daily (day, skill, gigs, proposals)
             select f.day, c.skill, c.sign * f.gigs, c.sign * f.proposals
               from unnest($1::date[], $2::bigint[], $3::bigint[]) as f (day, gigs, proposals)
              cross join (select skill, sum(sign)::bigint as sign
                            from (select unnest($4::text[]) as skill, -1 as sign
                                  union all
                                  select unnest($5::text[]), 1) s
                           group by skill
                          having sum(sign) <> 0) c
             on conflict (day, skill) do update
                set gigs = analytics_skills_daily.gigs + excluded.gigs,
                    proposals = analytics_skills_daily.proposals + excluded.proposals",
        )
        .bind(&days)
        .bind(&gigs)
        .bind(&proposals)
        .bind(old_skills)
        .bind(new_skills)
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "delete from analytics_skills_daily
              where day = any($1) and skill = any($2) and gigs = 0 and proposals = 0",
        )
        .bind(&days)
        .bind(old_skills)
        .execute(&mut *tx)
        .await?;
    }
    Ok(())
}

async fn on_contract(
    tx: &mut PgConnection,
    contract_id: Uuid,
    event: &ContractEvent,
) -> Result<(), HandlerError> {
    match event {
        ContractEvent::ContractCompleted { completed_at } => {
            sqlx::query(
                "update analytics_gigs set completed_at = $2
                  where contract_id = $1 and completed_at is null",
            )
            .bind(contract_id)
            .bind(completed_at)
            .execute(&mut *tx)
            .await?;
        }
        ContractEvent::DisputeOpened {
            dispute_id,
            opened_at,
            ..
        } => {
            let currency: Option<String> =
                sqlx::query_scalar("select currency from analytics_hires where contract_id = $1")
                    .bind(contract_id)
                    .fetch_optional(&mut *tx)
                    .await?;
            let currency = currency
                .ok_or_else(|| format!("dispute on contract {contract_id}, never hired"))?;
            sqlx::query(
                "insert into analytics_disputes (dispute_id, contract_id, currency, opened_at)
                 values ($1, $2, $3, $4) on conflict (dispute_id) do nothing",
            )
            .bind(dispute_id.0)
            .bind(contract_id)
            .bind(currency)
            .bind(opened_at)
            .execute(&mut *tx)
            .await?;
        }
        ContractEvent::DisputeResolved {
            dispute_id,
            release,
            refund,
            resolved_at,
            ..
        } => {
            sqlx::query(
                "update analytics_disputes
                    set resolved_at = $2, release_amount = $3, refund_amount = $4
                  where dispute_id = $1 and resolved_at is null",
            )
            .bind(dispute_id.0)
            .bind(resolved_at)
            .bind(release.amount)
            .bind(refund.amount)
            .execute(&mut *tx)
            .await?;
        }
        ContractEvent::ContractStarted { .. }
        | ContractEvent::MilestoneFunded { .. }
        | ContractEvent::MilestoneSubmitted { .. }
        | ContractEvent::MilestoneChangesRequested { .. }
        | ContractEvent::MilestoneApproved { .. }
        | ContractEvent::ContractCancelled { .. }
        | ContractEvent::ReviewLeft { .. }
        | ContractEvent::ReviewsRevealed { .. } => {}
    }
    Ok(())
}

async fn on_escrow(
    tx: &mut PgConnection,
    contract_id: Uuid,
    position: i64,
    event: &EscrowEvent,
) -> Result<(), HandlerError> {
    let (kind, milestone_id, gross, fee, refund, at): (_, _, Money, i64, i64, _) = match event {
        EscrowEvent::FundsReleased {
            milestone_id,
            gross,
            fee,
            released_at,
            ..
        } => ("release", milestone_id, *gross, fee.amount, 0, released_at),
        EscrowEvent::FundsRefunded {
            milestone_id,
            amount,
            refunded_at,
        } => (
            "refund",
            milestone_id,
            Money::zero(amount.currency),
            0,
            amount.amount,
            refunded_at,
        ),
        // Money back on the card: its own figure, on the day the provider refunded it (the
        // refund itself counted when it was booked, FundsRefunded).
        EscrowEvent::RefundIssued {
            amount, issued_at, ..
        } => {
            if first_time(tx, position).await? {
                let delta = DailyDelta {
                    refunded_to_card: amount.amount,
                    ..DailyDelta::default()
                };
                add_daily(tx, *issued_at, amount.currency.code(), delta).await?;
            }
            return Ok(());
        }
        EscrowEvent::EscrowOpened { .. }
        | EscrowEvent::FundsDeposited { .. }
        | EscrowEvent::FundsFrozen { .. }
        | EscrowEvent::EscrowClosed { .. }
        | EscrowEvent::ChargeVoided { .. }
        | EscrowEvent::RefundFailed { .. } => return Ok(()),
    };
    let currency = gross.currency.code();
    let inserted = sqlx::query(
        "insert into analytics_movements (position, kind, contract_id, milestone_id, currency,
                                          gross, fee, refund, at)
         values ($1, $2, $3, $4, $5, $6, $7, $8, $9) on conflict (position) do nothing",
    )
    .bind(position)
    .bind(kind)
    .bind(contract_id)
    .bind(milestone_id.0)
    .bind(currency)
    .bind(gross.amount)
    .bind(fee)
    .bind(refund)
    .bind(at)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    if inserted == 1 {
        let delta = DailyDelta {
            gmv_released: gross.amount,
            fees: fee,
            refunds: refund,
            ..DailyDelta::default()
        };
        add_daily(tx, *at, currency, delta).await?;
    }
    Ok(())
}

/// `[from, to]` as `[start, end)` instants (UTC midnights).
fn bounds(from: NaiveDate, to: NaiveDate) -> Result<(DateTime<Utc>, DateTime<Utc>), ReadError> {
    if from > to {
        return Err(ReadError::InvalidArgument(
            "`from` must not be after `to`".into(),
        ));
    }
    let end = to
        .checked_add_days(Days::new(1))
        .ok_or_else(|| ReadError::InvalidArgument("`to` is out of range".into()))?;
    Ok((
        from.and_time(chrono::NaiveTime::MIN).and_utc(),
        end.and_time(chrono::NaiveTime::MIN).and_utc(),
    ))
}

fn check_range(from: NaiveDate, to: NaiveDate) -> Result<(), ReadError> {
    bounds(from, to).map(|_| ())
}

/// One day's volumes in one currency. The money sums are exact integers of minor units of any
/// size (`numeric` in the table, since a day's volume grows with the number of events).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct DailyVolume {
    pub day: NaiveDate,
    pub currency: String,
    pub gigs_posted: i64,
    pub proposals: i64,
    pub hires: i64,
    pub gmv_released: i128,
    pub fees: i128,
    pub refunds: i128,
}

impl FromRow<'_, PgRow> for DailyVolume {
    fn from_row(row: &PgRow) -> Result<Self, sqlx::Error> {
        Ok(Self {
            day: row.try_get("day")?,
            currency: row.try_get("currency")?,
            gigs_posted: row.try_get("gigs_posted")?,
            proposals: row.try_get("proposals")?,
            hires: row.try_get("hires")?,
            gmv_released: exact_sum(row, "gmv_released")?,
            fees: exact_sum(row, "fees")?,
            refunds: exact_sum(row, "refunds")?,
        })
    }
}

/// Every day's volumes per currency in `[from, to]`, by day then currency.
pub async fn daily_volumes<'e>(
    db: impl PgExecutor<'e>,
    from: NaiveDate,
    to: NaiveDate,
) -> Result<Vec<DailyVolume>, ReadError> {
    check_range(from, to)?;
    Ok(sqlx::query_as(
        "select day, currency, gigs_posted, proposals, hires, gmv_released::text as gmv_released,
                fees::text as fees, refunds::text as refunds
           from read.analytics_daily where day between $1 and $2 order by day, currency",
    )
    .bind(from)
    .bind(to)
    .fetch_all(db)
    .await?)
}

/// A GMV bucket's width.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Interval {
    #[default]
    Day,
    /// ISO weeks, starting on Monday.
    Week,
    Month,
}

impl Interval {
    const fn as_str(self) -> &'static str {
        match self {
            Self::Day => "day",
            Self::Week => "week",
            Self::Month => "month",
        }
    }
}

/// Money moved in one currency over one period, in minor units (exact, of any size).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct GmvTotals {
    pub currency: String,
    /// Released to freelancers, gross (fees included).
    pub gmv_released: i128,
    pub fees: i128,
    pub refunds: i128,
    /// Paid out to freelancers' accounts (less payouts that failed after being paid).
    pub paid_out: i128,
    /// Refunded to clients' cards by the provider.
    pub refunded_to_card: i128,
}

/// One period of a GMV series.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct GmvPeriod {
    /// The period's first day within the range: the first day of the day, ISO week (Monday) or
    /// calendar month, or `from` when the range starts inside the period.
    pub start: NaiveDate,
    /// The period's last day within the range (inclusive): the day, the week's Sunday, the
    /// month's last day, or `to` when the range ends inside the period.
    pub end: NaiveDate,
    /// One entry per currency of the series, by currency code, zeros included: the asked
    /// currency, or else every currency that moved money anywhere in the range (so each
    /// currency's series has every period).
    pub totals: Vec<GmvTotals>,
}

/// The longest range a GMV series covers, in days (ten years): bounds the periods of a daily
/// series.
pub const GMV_MAX_DAYS: i64 = 3_660;

/// Released gross, fees and refunds over the days `[from, to]`, per `interval` and currency:
/// every period of the range in order, zeros included, each with its real bounds. Days are UTC;
/// weeks are ISO weeks (Monday to Sunday); months are calendar months. Money counts on the UTC
/// day it was released or refunded.
pub async fn gmv<'e>(
    db: impl PgExecutor<'e>,
    from: NaiveDate,
    to: NaiveDate,
    interval: Interval,
    currency: Option<&str>,
) -> Result<Vec<GmvPeriod>, ReadError> {
    check_range(from, to)?;
    if (to - from).num_days() >= GMV_MAX_DAYS {
        return Err(ReadError::InvalidArgument(format!(
            "a GMV series covers at most {GMV_MAX_DAYS} days"
        )));
    }
    // periods: every period meeting the range (date_trunc('week') is the ISO Monday), clipped
    // to it; sums: the range's rollups summed per period (one index range scan of the primary
    // key); currencies: those of the series. A period without currencies still has its row
    // (left join on true), so a range with no money at all still lists every period.
    let rows = sqlx::query(
        "with periods as (
              select greatest(p::date, $1) as period_start,
                     least((p + ('1 ' || $3)::interval)::date - 1, $2) as period_end
                from generate_series(date_trunc($3, $1::timestamp), $2::timestamp,
                                     ('1 ' || $3)::interval) as p
         ),
         sums as (
              select greatest(date_trunc($3, day::timestamp)::date, $1) as period_start, currency,
                     sum(gmv_released) as gmv_released, sum(fees) as fees,
                     sum(refunds) as refunds, sum(paid_out) as paid_out,
                     sum(refunded_to_card) as refunded_to_card
                from read.analytics_daily
               where day between $1 and $2 and ($4::text is null or currency = $4)
               group by 1, 2
         ),
         currencies as (
              select currency from sums
               where gmv_released <> 0 or fees <> 0 or refunds <> 0 or paid_out <> 0
                  or refunded_to_card <> 0
              union
              select $4::text where $4::text is not null
         )
         select p.period_start, p.period_end, c.currency,
                coalesce(s.gmv_released, 0)::text as gmv_released,
                coalesce(s.fees, 0)::text as fees, coalesce(s.refunds, 0)::text as refunds,
                coalesce(s.paid_out, 0)::text as paid_out,
                coalesce(s.refunded_to_card, 0)::text as refunded_to_card
           from periods p
           left join currencies c on true
           left join sums s on s.period_start = p.period_start and s.currency = c.currency
          order by p.period_start, c.currency",
    )
    .bind(from)
    .bind(to)
    .bind(interval.as_str())
    .bind(currency.map(str::to_uppercase))
    .fetch_all(db)
    .await?;
    let mut periods: Vec<GmvPeriod> = Vec::new();
    for row in &rows {
        let start: NaiveDate = row.try_get("period_start")?;
        if periods.last().map(|p| p.start) != Some(start) {
            periods.push(GmvPeriod {
                start,
                end: row.try_get("period_end")?,
                totals: Vec::new(),
            });
        }
        if let (Some(currency), Some(period)) = (
            row.try_get::<Option<String>, _>("currency")?,
            periods.last_mut(),
        ) {
            period.totals.push(GmvTotals {
                currency,
                gmv_released: exact_sum(row, "gmv_released")?,
                fees: exact_sum(row, "fees")?,
                refunds: exact_sum(row, "refunds")?,
                paid_out: exact_sum(row, "paid_out")?,
                refunded_to_card: exact_sum(row, "refunded_to_card")?,
            });
        }
    }
    Ok(periods)
}

/// An exact share: `numerator / denominator`, and the same in basis points (1/10 000) rounded
/// half up, `None` when the denominator is zero. Integers only, never a float.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Rate {
    pub numerator: i64,
    pub denominator: i64,
    pub basis_points: Option<i64>,
}

impl Rate {
    /// `numerator / denominator` (counts, so both are at least zero).
    pub fn of(numerator: i64, denominator: i64) -> Self {
        let basis_points = (denominator > 0).then(|| {
            // Half up in integers: (2·10 000·n + d) / (2·d), in i128 so no count overflows it.
            let (n, d) = (i128::from(numerator), i128::from(denominator));
            let bps = (2 * 10_000 * n + d) / (2 * d);
            i64::try_from(bps).unwrap_or(i64::MAX)
        });
        Self {
            numerator,
            denominator,
            basis_points,
        }
    }
}

/// The hiring funnel of one cohort: the gigs **posted** on the days of the range, and what
/// became of them since (up to now, whenever it happened). Each rate is a stage over the stage
/// before it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Funnel {
    /// Gigs posted in the range.
    pub posted: i64,
    /// … of which received at least one proposal (at any time).
    pub with_proposals: i64,
    /// … of which hired (at any time).
    pub hired: i64,
    /// … of which saw their contract completed (at any time).
    pub completed: i64,
    /// `with_proposals / posted`.
    pub proposal_rate: Rate,
    /// `hired / with_proposals` (a gig is hired only from a proposal).
    pub hire_rate: Rate,
    /// `completed / hired`.
    pub completion_rate: Rate,
    /// `hired / posted`: the whole funnel's first two stages at once.
    pub posted_to_hired_rate: Rate,
}

/// The funnel of the gigs posted on the days `[from, to]` (UTC), counting what became of them
/// since. Not the same set as [`time_to_hire`], which takes the hires *accepted* in the range
/// whenever their gig was posted.
pub async fn funnel<'e>(
    db: impl PgExecutor<'e>,
    from: NaiveDate,
    to: NaiveDate,
) -> Result<Funnel, ReadError> {
    let (start, end) = bounds(from, to)?;
    let (posted, with_proposals, hired, completed): (i64, i64, i64, i64) = sqlx::query_as(
        "select count(*) as posted,
                count(*) filter (where proposals > 0) as with_proposals,
                count(*) filter (where hired_at is not null) as hired,
                count(*) filter (where completed_at is not null) as completed
           from read.analytics_gigs
          where posted_at >= $1 and posted_at < $2",
    )
    .bind(start)
    .bind(end)
    .fetch_one(db)
    .await?;
    Ok(Funnel {
        posted,
        with_proposals,
        hired,
        completed,
        proposal_rate: Rate::of(with_proposals, posted),
        hire_rate: Rate::of(hired, with_proposals),
        completion_rate: Rate::of(completed, hired),
        posted_to_hired_rate: Rate::of(hired, posted),
    })
}

/// Percentiles of the time from posting a gig to accepting a proposal, in whole seconds.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, FromRow, utoipa::ToSchema)]
pub struct TimeToHire {
    pub hires: i64,
    pub p50_seconds: Option<i64>,
    pub p90_seconds: Option<i64>,
    pub p99_seconds: Option<i64>,
}

/// Time to hire over the hires **accepted** on the days `[from, to]` (UTC), whenever their gig
/// was posted (interpolated percentiles, rounded to whole seconds). Not the same set as
/// [`funnel`], whose cohort is the gigs posted in the range.
pub async fn time_to_hire<'e>(
    db: impl PgExecutor<'e>,
    from: NaiveDate,
    to: NaiveDate,
) -> Result<TimeToHire, ReadError> {
    let (start, end) = bounds(from, to)?;
    Ok(sqlx::query_as(
        "select count(*) as hires,
                round(percentile_cont(0.5) within group (order by seconds))::bigint as p50_seconds,
                round(percentile_cont(0.9) within group (order by seconds))::bigint as p90_seconds,
                round(percentile_cont(0.99) within group (order by seconds))::bigint as p99_seconds
           from (select extract(epoch from accepted_at - posted_at)::float8 as seconds
                   from read.analytics_hires
                  where accepted_at >= $1 and accepted_at < $2) h",
    )
    .bind(start)
    .bind(end)
    .fetch_one(db)
    .await?)
}

/// How much of the disputed money went back to clients, in one currency:
/// `refunded / settled` where `settled = released + refunded` over resolved disputes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct RefundShare {
    pub currency: String,
    pub refunded: i128,
    pub settled: i128,
}

impl FromRow<'_, PgRow> for RefundShare {
    fn from_row(row: &PgRow) -> Result<Self, sqlx::Error> {
        Ok(Self {
            currency: row.try_get("currency")?,
            refunded: exact_sum(row, "refunded")?,
            settled: exact_sum(row, "settled")?,
        })
    }
}

/// Disputes in a date range.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct DisputeStats {
    /// Opened on the days `[from, to]`.
    pub opened: i64,
    /// Resolved on the days `[from, to]`.
    pub resolved: i64,
    /// Over the disputes resolved in the range, per currency.
    pub refund_share: Vec<RefundShare>,
}

/// Disputes opened and resolved on the days `[from, to]`, and the refunded share of the
/// resolved ones.
pub async fn disputes(
    pool: &sqlx::PgPool,
    from: NaiveDate,
    to: NaiveDate,
) -> Result<DisputeStats, ReadError> {
    let (start, end) = bounds(from, to)?;
    let (opened, resolved): (i64, i64) = sqlx::query_as(
        "select count(*) filter (where opened_at >= $1 and opened_at < $2),
                count(*) filter (where resolved_at >= $1 and resolved_at < $2)
           from read.analytics_disputes
          where (opened_at >= $1 and opened_at < $2) or (resolved_at >= $1 and resolved_at < $2)",
    )
    .bind(start)
    .bind(end)
    .fetch_one(pool)
    .await?;
    let refund_share = sqlx::query_as(
        "select currency, sum(refund_amount)::text as refunded,
                sum(release_amount + refund_amount)::text as settled
           from read.analytics_disputes
          where resolved_at >= $1 and resolved_at < $2
          group by currency order by currency",
    )
    .bind(start)
    .bind(end)
    .fetch_all(pool)
    .await?;
    Ok(DisputeStats {
        opened,
        resolved,
        refund_share,
    })
}

/// Demand and supply of one skill.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, FromRow, utoipa::ToSchema)]
pub struct SkillActivity {
    pub skill: String,
    /// Gigs posted with the skill.
    pub gigs: i64,
    /// Proposals submitted on gigs with the skill.
    pub proposals: i64,
}

/// Demand (gigs posted on the days `[from, to]`) and supply (proposals submitted on them) by
/// skill, each counted under its gig's current skills, most demanded first.
pub async fn skills<'e>(
    db: impl PgExecutor<'e>,
    from: NaiveDate,
    to: NaiveDate,
) -> Result<Vec<SkillActivity>, ReadError> {
    check_range(from, to)?;
    Ok(sqlx::query_as(
        "select skill, sum(gigs)::bigint as gigs, sum(proposals)::bigint as proposals
           from read.analytics_skills_daily
          where day between $1 and $2
          group by skill
          order by gigs desc, proposals desc, skill",
    )
    .bind(from)
    .bind(to)
    .fetch_all(db)
    .await?)
}

/// Demand and supply of one skill on one day.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, FromRow, utoipa::ToSchema)]
pub struct SkillDay {
    pub day: NaiveDate,
    pub skill: String,
    pub gigs: i64,
    pub proposals: i64,
}

/// Demand and supply per day and skill over the days `[from, to]`.
pub async fn skills_by_day<'e>(
    db: impl PgExecutor<'e>,
    from: NaiveDate,
    to: NaiveDate,
) -> Result<Vec<SkillDay>, ReadError> {
    check_range(from, to)?;
    Ok(sqlx::query_as(
        "select day, skill, gigs, proposals from read.analytics_skills_daily
          where day between $1 and $2 order by day, skill",
    )
    .bind(from)
    .bind(to)
    .fetch_all(db)
    .await?)
}
