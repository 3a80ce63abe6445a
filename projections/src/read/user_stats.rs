//! Public profiles: rating, completed contracts, earnings band.
//!
//! The rating is kept as an exact rational (sum and count of revealed ratings; no floats), and
//! shown as an average rounded half up to two decimals. Reviews count only once revealed. The
//! earnings band is derived on read from the net released to the freelancer per currency, in
//! the currency's major units: `0`, `<1k`, `1k-10k`, `10k+`.

use gigledger_domain::{ContractEvent, Currency, EscrowEvent, UserId};
use serde::Serialize;
use sqlx::{PgConnection, PgPool, Row};
use uuid::Uuid;

use super::{decode, exact_sum, AnyEvent, ReadError};
use crate::log::RecordedEvent;
use crate::runtime::{Handler, HandlerError};

/// The handler's stored name.
pub const NAME: &str = "user_stats";
/// The tables this read model fills.
pub const TABLES: &[&str] = &[
    "user_stats",
    "user_stats_earnings",
    "user_stats_contracts",
    "user_stats_reviews",
];

/// Projects contract and escrow events into public profile statistics.
#[derive(Clone, Copy, Debug, Default)]
pub struct UserStats;

#[async_trait::async_trait]
impl Handler for UserStats {
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
                Some((id, AnyEvent::Contract(e))) => on_contract(tx, id, &e).await?,
                Some((id, AnyEvent::Escrow(e))) => on_escrow(tx, id, event.position, &e).await?,
                Some((_, AnyEvent::Gig(_) | AnyEvent::Wallet(_))) | None => {}
            }
        }
        Ok(())
    }
}

async fn remember_parties(
    tx: &mut PgConnection,
    contract_id: Uuid,
    client_id: UserId,
    freelancer_id: UserId,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "insert into user_stats_contracts (contract_id, client_id, freelancer_id)
         values ($1, $2, $3) on conflict (contract_id) do nothing",
    )
    .bind(contract_id)
    .bind(client_id.0)
    .bind(freelancer_id.0)
    .execute(&mut *tx)
    .await?;
    Ok(())
}

async fn on_contract(
    tx: &mut PgConnection,
    contract_id: Uuid,
    event: &ContractEvent,
) -> Result<(), HandlerError> {
    match event {
        ContractEvent::ContractStarted {
            client_id,
            freelancer_id,
            ..
        } => remember_parties(tx, contract_id, *client_id, *freelancer_id).await?,
        ContractEvent::ContractCompleted { .. } => {
            // Counted once: only the update that flips `completed` returns the parties.
            let parties: Option<(Uuid, Uuid)> = sqlx::query_as(
                "update user_stats_contracts set completed = true
                  where contract_id = $1 and not completed
              returning client_id, freelancer_id",
            )
            .bind(contract_id)
            .fetch_optional(&mut *tx)
            .await?;
            if let Some((client_id, freelancer_id)) = parties {
                sqlx::query(
                    "insert into user_stats (user_id, completed_as_client) values ($1, 1)
                     on conflict (user_id)
                     do update set completed_as_client = user_stats.completed_as_client + 1",
                )
                .bind(client_id)
                .execute(&mut *tx)
                .await?;
                sqlx::query(
                    "insert into user_stats (user_id, completed_as_freelancer) values ($1, 1)
                     on conflict (user_id)
                     do update set completed_as_freelancer = user_stats.completed_as_freelancer + 1",
                )
                .bind(freelancer_id)
                .execute(&mut *tx)
                .await?;
            }
        }
        ContractEvent::ReviewLeft {
            reviewer_id,
            reviewee_id,
            rating,
            ..
        } => {
            sqlx::query(
                "insert into user_stats_reviews (contract_id, reviewer_id, reviewee_id, rating)
                 values ($1, $2, $3, $4) on conflict (contract_id, reviewer_id) do nothing",
            )
            .bind(contract_id)
            .bind(reviewer_id.0)
            .bind(reviewee_id.0)
            .bind(i16::from(*rating))
            .execute(&mut *tx)
            .await?;
        }
        ContractEvent::ReviewsRevealed { .. } => {
            // Each review is added to its reviewee's rating once, when it turns revealed.
            let revealed: Vec<(Uuid, i16)> = sqlx::query_as(
                "update user_stats_reviews set revealed = true
                  where contract_id = $1 and not revealed
              returning reviewee_id, rating",
            )
            .bind(contract_id)
            .fetch_all(&mut *tx)
            .await?;
            for (reviewee_id, rating) in revealed {
                sqlx::query(
                    "insert into user_stats (user_id, rating_sum, rating_count) values ($1, $2, 1)
                     on conflict (user_id)
                     do update set rating_sum = user_stats.rating_sum + excluded.rating_sum,
                                   rating_count = user_stats.rating_count + 1",
                )
                .bind(reviewee_id)
                .bind(i64::from(rating))
                .execute(&mut *tx)
                .await?;
            }
        }
        ContractEvent::MilestoneFunded { .. }
        | ContractEvent::MilestoneSubmitted { .. }
        | ContractEvent::MilestoneChangesRequested { .. }
        | ContractEvent::MilestoneApproved { .. }
        | ContractEvent::ContractCancelled { .. }
        | ContractEvent::DisputeOpened { .. }
        | ContractEvent::DisputeResolved { .. } => {}
    }
    Ok(())
}

async fn on_escrow(
    tx: &mut PgConnection,
    contract_id: Uuid,
    position: i64,
    event: &EscrowEvent,
) -> Result<(), HandlerError> {
    match event {
        EscrowEvent::EscrowOpened {
            client_id,
            freelancer_id,
            ..
        } => remember_parties(tx, contract_id, *client_id, *freelancer_id).await?,
        EscrowEvent::FundsReleased { net, .. } => {
            // Counted once: the escrow stream's position guard moves only forward.
            let freelancer: Option<Uuid> = sqlx::query_scalar(
                "update user_stats_contracts set last_escrow_position = $2
                  where contract_id = $1 and last_escrow_position < $2
              returning freelancer_id",
            )
            .bind(contract_id)
            .bind(position)
            .fetch_optional(&mut *tx)
            .await?;
            if let Some(freelancer) = freelancer {
                sqlx::query(
                    "insert into user_stats_earnings (user_id, currency, net) values ($1, $2, $3)
                     on conflict (user_id, currency)
                     do update set net = user_stats_earnings.net + excluded.net",
                )
                .bind(freelancer)
                .bind(net.currency.code())
                .bind(net.amount)
                .execute(&mut *tx)
                .await?;
                sqlx::query("insert into user_stats (user_id) values ($1) on conflict do nothing")
                    .bind(freelancer)
                    .execute(&mut *tx)
                    .await?;
            }
        }
        EscrowEvent::FundsDeposited { .. }
        | EscrowEvent::FundsFrozen { .. }
        | EscrowEvent::FundsRefunded { .. }
        | EscrowEvent::EscrowClosed { .. }
        | EscrowEvent::ChargeVoided { .. }
        | EscrowEvent::RefundIssued { .. }
        | EscrowEvent::RefundFailed { .. } => {}
    }
    Ok(())
}

/// An exact average rating.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Rating {
    /// The sum of the revealed ratings (`numeric` in the table: it grows by up to 5 per review).
    pub sum: i128,
    pub count: i64,
    /// `sum / count` rounded half up to two decimals, e.g. `"4.67"`.
    pub average: String,
}

impl Rating {
    /// `None` without any rating.
    pub fn of(sum: i128, count: i64) -> Option<Self> {
        if count <= 0 {
            return None;
        }
        // Hundredths, rounded half up, in integers: (200·sum + count) / (2·count). In i128 a
        // sum of up to 5 per review of any count the log can hold stays exact.
        let count_wide = i128::from(count);
        let hundredths = (sum * 200 + count_wide) / (count_wide * 2);
        Some(Self {
            sum,
            count,
            average: format!("{}.{:02}", hundredths / 100, hundredths % 100),
        })
    }
}

/// A freelancer's earnings in one currency, as a band.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct EarningsBand {
    pub currency: String,
    /// `0`, `<1k`, `1k-10k` or `10k+` (major units of the currency).
    pub band: &'static str,
}

/// The band of `net` minor units of `currency`.
pub fn earnings_band(net: i128, currency: Currency) -> &'static str {
    let unit = 10_i128.pow(u32::from(currency.exponent()));
    if net <= 0 {
        "0"
    } else if net < 1_000 * unit {
        "<1k"
    } else if net < 10_000 * unit {
        "1k-10k"
    } else {
        "10k+"
    }
}

/// What anyone signed in may see of a user.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct UserProfile {
    pub user_id: UserId,
    /// `None` until a review of the user was revealed.
    pub rating: Option<Rating>,
    /// Revealed reviews of the user.
    pub review_count: i64,
    pub completed_as_client: i64,
    pub completed_as_freelancer: i64,
    /// Per currency the user was paid in, by currency code.
    pub earnings: Vec<EarningsBand>,
}

/// A user's public profile (all zero for a user with no history).
pub async fn profile(pool: &PgPool, user_id: UserId) -> Result<UserProfile, ReadError> {
    // `rating_sum` is numeric: read exactly, as text.
    let stats = sqlx::query(
        "select rating_sum::text as rating_sum, rating_count, completed_as_client,
                completed_as_freelancer
           from read.user_stats where user_id = $1",
    )
    .bind(user_id.0)
    .fetch_optional(pool)
    .await?;
    let (rating_sum, rating_count, completed_as_client, completed_as_freelancer) = match stats {
        Some(row) => (
            exact_sum(&row, "rating_sum")?,
            row.try_get("rating_count")?,
            row.try_get("completed_as_client")?,
            row.try_get("completed_as_freelancer")?,
        ),
        None => (0, 0, 0, 0),
    };
    // `net` is numeric (a freelancer's earnings grow without bound): read exactly, as text.
    let rows = sqlx::query(
        "select currency, net::text as net from read.user_stats_earnings
          where user_id = $1 order by currency",
    )
    .bind(user_id.0)
    .fetch_all(pool)
    .await?;
    let earnings = rows
        .iter()
        .map(|row| {
            let currency: String = row.try_get("currency")?;
            let net = exact_sum(row, "net")?;
            let band = Currency::parse(&currency).map_or("0", |c| earnings_band(net, c));
            Ok(EarningsBand { currency, band })
        })
        .collect::<Result<_, sqlx::Error>>()?;
    Ok(UserProfile {
        user_id,
        rating: Rating::of(rating_sum, rating_count),
        review_count: rating_count,
        completed_as_client,
        completed_as_freelancer,
        earnings,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_average_rating_is_rounded_half_up_to_two_decimals() {
        assert_eq!(Rating::of(14, 3).map(|r| r.average), Some("4.67".into()));
        assert_eq!(Rating::of(5, 1).map(|r| r.average), Some("5.00".into()));
        assert_eq!(Rating::of(9, 2).map(|r| r.average), Some("4.50".into()));
        assert_eq!(Rating::of(1, 8).map(|r| r.average), Some("0.13".into()));
        assert_eq!(Rating::of(0, 0), None);
        // A sum beyond i64 stays exact.
        let huge = i128::from(i64::MAX) * 5;
        assert_eq!(
            Rating::of(huge, i64::MAX).map(|r| r.average),
            Some("5.00".into())
        );
    }

    #[test]
    fn earnings_bands_are_in_major_units_of_the_currency() {
        assert_eq!(earnings_band(0, Currency::USD), "0");
        assert_eq!(earnings_band(99_999, Currency::USD), "<1k");
        assert_eq!(earnings_band(100_000, Currency::USD), "1k-10k");
        assert_eq!(earnings_band(1_000_000, Currency::USD), "10k+");
        assert_eq!(earnings_band(999, Currency::JPY), "<1k");
        assert_eq!(earnings_band(10_000, Currency::JPY), "10k+");
    }
}
