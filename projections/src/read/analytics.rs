//! Analytics for analysts: daily volumes per currency, the hiring funnel, time to hire, disputes,
//! and demand and supply by skill.
//!
//! The handler records one fact row per gig, proposal, hire, money movement and dispute, and
//! increments the daily rollups only when it inserted the fact, so every event counts exactly
//! once. Days are UTC dates of the domain's times (posted_at, submitted_at, accepted_at,
//! released_at, refunded_at). Date ranges are inclusive at both ends.

use chrono::{DateTime, Days, NaiveDate, Utc};
use gigledger_domain::{ContractEvent, EscrowEvent, GigEvent, Money};
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
                None => {}
            }
        }
        Ok(())
    }
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
}

async fn add_daily(
    tx: &mut PgConnection,
    at: DateTime<Utc>,
    currency: &str,
    delta: DailyDelta,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "insert into analytics_daily (day, currency, gigs_posted, proposals, hires, gmv_released,
                                      fees, refunds)
         values ($1, $2, $3, $4, $5, $6, $7, $8)
         on conflict (day, currency) do update
            set gigs_posted = analytics_daily.gigs_posted + excluded.gigs_posted,
                proposals = analytics_daily.proposals + excluded.proposals,
                hires = analytics_daily.hires + excluded.hires,
                gmv_released = analytics_daily.gmv_released + excluded.gmv_released,
                fees = analytics_daily.fees + excluded.fees,
                refunds = analytics_daily.refunds + excluded.refunds",
    )
    .bind(at.date_naive())
    .bind(currency)
    .bind(delta.gigs_posted)
    .bind(delta.proposals)
    .bind(delta.hires)
    .bind(delta.gmv_released)
    .bind(delta.fees)
    .bind(delta.refunds)
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
            sqlx::query(
                "update analytics_gigs
                    set skills = coalesce($3, skills), currency = coalesce($4, currency),
                        last_position = $2
                  where gig_id = $1 and last_position < $2",
            )
            .bind(gig_id)
            .bind(position)
            .bind(skills)
            .bind(budget.as_ref().map(|b| b.currency().code()))
            .execute(&mut *tx)
            .await?;
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
                let skills: Option<Vec<String>> = sqlx::query_scalar(
                    "update analytics_gigs
                        set proposals = proposals + 1,
                            first_proposal_at = coalesce(first_proposal_at, $2)
                      where gig_id = $1
                  returning skills",
                )
                .bind(gig_id)
                .bind(submitted_at)
                .fetch_optional(&mut *tx)
                .await?;
                let delta = DailyDelta {
                    proposals: 1,
                    ..DailyDelta::default()
                };
                add_daily(tx, *submitted_at, bid.currency.code(), delta).await?;
                add_skills(tx, *submitted_at, &skills.unwrap_or_default(), 0, 1).await?;
            }
        }
        GigEvent::ProposalAccepted {
            contract_id,
            terms,
            accepted_at,
            posted_at,
            ..
        } => {
            let inserted = sqlx::query(
                "insert into analytics_hires (contract_id, gig_id, currency, posted_at, accepted_at)
                 values ($1, $2, $3, $4, $5) on conflict (contract_id) do nothing",
            )
            .bind(contract_id.0)
            .bind(gig_id)
            .bind(terms.currency.code())
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
                add_daily(tx, *accepted_at, terms.currency.code(), delta).await?;
            }
        }
        GigEvent::ProposalWithdrawn { .. }
        | GigEvent::ProposalRejected { .. }
        | GigEvent::GigClosed { .. }
        | GigEvent::GigCancelled { .. } => {}
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
        EscrowEvent::EscrowOpened { .. }
        | EscrowEvent::FundsDeposited { .. }
        | EscrowEvent::FundsFrozen { .. }
        | EscrowEvent::EscrowClosed { .. }
        | EscrowEvent::ChargeVoided { .. } => return Ok(()),
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
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
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
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
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

/// Money moved in one period and currency, in minor units (exact, of any size).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct GmvPeriod {
    /// The first day of the period.
    pub period: NaiveDate,
    pub currency: String,
    /// Released to freelancers, gross (fees included).
    pub gmv_released: i128,
    pub fees: i128,
    pub refunds: i128,
}

impl FromRow<'_, PgRow> for GmvPeriod {
    fn from_row(row: &PgRow) -> Result<Self, sqlx::Error> {
        Ok(Self {
            period: row.try_get("period")?,
            currency: row.try_get("currency")?,
            gmv_released: exact_sum(row, "gmv_released")?,
            fees: exact_sum(row, "fees")?,
            refunds: exact_sum(row, "refunds")?,
        })
    }
}

/// Released gross, fees and refunds per `interval` and currency over the days `[from, to]`.
pub async fn gmv<'e>(
    db: impl PgExecutor<'e>,
    from: NaiveDate,
    to: NaiveDate,
    interval: Interval,
    currency: Option<&str>,
) -> Result<Vec<GmvPeriod>, ReadError> {
    check_range(from, to)?;
    Ok(sqlx::query_as(
        "select date_trunc($3, day::timestamp)::date as period, currency,
                sum(gmv_released)::text as gmv_released, sum(fees)::text as fees,
                sum(refunds)::text as refunds
           from read.analytics_daily
          where day between $1 and $2 and ($4::text is null or currency = $4)
          group by 1, 2
         having sum(gmv_released) <> 0 or sum(refunds) <> 0
          order by 1, 2",
    )
    .bind(from)
    .bind(to)
    .bind(interval.as_str())
    .bind(currency.map(str::to_uppercase))
    .fetch_all(db)
    .await?)
}

/// The hiring funnel of the gigs posted in a date range.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, FromRow)]
pub struct Funnel {
    pub posted: i64,
    /// … that received at least one proposal.
    pub with_proposals: i64,
    pub hired: i64,
    /// … whose contract completed.
    pub completed: i64,
}

/// The funnel of the gigs posted on the days `[from, to]` (what became of them since).
pub async fn funnel<'e>(
    db: impl PgExecutor<'e>,
    from: NaiveDate,
    to: NaiveDate,
) -> Result<Funnel, ReadError> {
    let (start, end) = bounds(from, to)?;
    Ok(sqlx::query_as(
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
    .await?)
}

/// Percentiles of the time from posting a gig to accepting a proposal, in whole seconds.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, FromRow)]
pub struct TimeToHire {
    pub hires: i64,
    pub p50_seconds: Option<i64>,
    pub p90_seconds: Option<i64>,
    pub p99_seconds: Option<i64>,
}

/// Time to hire over the hires made on the days `[from, to]` (interpolated percentiles).
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
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
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
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
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
#[derive(Clone, Debug, PartialEq, Eq, Serialize, FromRow)]
pub struct SkillActivity {
    pub skill: String,
    /// Gigs posted with the skill.
    pub gigs: i64,
    /// Proposals submitted on gigs with the skill.
    pub proposals: i64,
}

/// Demand (gigs) and supply (proposals) by skill over the days `[from, to]`, most demanded
/// first.
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
#[derive(Clone, Debug, PartialEq, Eq, Serialize, FromRow)]
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
