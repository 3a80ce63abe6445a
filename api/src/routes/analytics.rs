//! Analytics from the read models only (issue 10 adds `Accept: text/csv`): GMV, the funnel, time
//! to hire, disputes and skills, over a range of UTC days. Money is per currency, never summed
//! across currencies.
//!
//! Who (API.md): analysts and admins; anyone else 403.

use axum::extract::State;
use axum::response::Response;
use chrono::{Days, NaiveDate};
use gigledger_domain::{Actor, Role};
use gigledger_projections::read::analytics::{
    self, DisputeStats, Funnel, GmvPeriod, Interval, SkillActivity, TimeToHire,
};
use serde::Deserialize;

use crate::auth::Caller;
use crate::error::{ApiError, ApiQuery};
use crate::query::{self, from_read, MinPosition};
use crate::routes::Table;
use crate::state::AppState;

const WHO: &str = "analyst, admin";

pub fn routes(table: Table) -> Table {
    table
        .get("/v1/analytics/gmv", WHO, gmv)
        .get("/v1/analytics/funnel", WHO, funnel)
        .get("/v1/analytics/time-to-hire", WHO, time_to_hire)
        .get("/v1/analytics/disputes", WHO, disputes)
        .get("/v1/analytics/skills", WHO, skills)
}

fn require_analyst(caller: &Actor) -> Result<(), ApiError> {
    if caller.has_role(Role::Analyst) || caller.has_role(Role::Admin) {
        Ok(())
    } else {
        Err(ApiError::Forbidden {
            detail: "analytics are for analysts and admins".to_owned(),
        })
    }
}

/// `?from=&to=` UTC days, inclusive; default the last 30 days to today.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct Range {
    pub from: Option<NaiveDate>,
    pub to: Option<NaiveDate>,
}

impl Range {
    fn days(&self, today: NaiveDate) -> (NaiveDate, NaiveDate) {
        let to = self.to.unwrap_or(today);
        let from = self
            .from
            .unwrap_or_else(|| to.checked_sub_days(Days::new(29)).unwrap_or(to));
        (from, to)
    }
}

/// `GET /v1/analytics/gmv` query.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct GmvQuery {
    pub from: Option<NaiveDate>,
    pub to: Option<NaiveDate>,
    /// `day` (default), `week` or `month`.
    pub interval: Option<Interval>,
    /// Only this currency; every currency otherwise, each its own series.
    pub currency: Option<String>,
}

fn range_error(e: gigledger_projections::read::ReadError) -> ApiError {
    match e {
        gigledger_projections::read::ReadError::InvalidArgument(message) => {
            ApiError::bad_request("to", message)
        }
        other => from_read(other),
    }
}

#[utoipa::path(get, path = "/v1/analytics/gmv", tag = "analytics", params(GmvQuery), responses((status = 200, description = "released gross, fees and refunds per period and currency", body = Vec<GmvPeriod>)))]
pub(crate) async fn gmv(
    State(state): State<AppState>,
    Caller(caller): Caller,
    min: MinPosition,
    ApiQuery(params): ApiQuery<GmvQuery>,
) -> Result<Response, ApiError> {
    require_analyst(&caller)?;
    let (from, to) = Range {
        from: params.from,
        to: params.to,
    }
    .days(state.services.now().date_naive());
    let position = min.wait(&state, &[analytics::NAME]).await?;
    let periods = analytics::gmv(
        &state.pool,
        from,
        to,
        params.interval.unwrap_or_default(),
        params.currency.as_deref(),
    )
    .await
    .map_err(range_error)?;
    Ok(query::answer(position, &periods))
}

#[utoipa::path(get, path = "/v1/analytics/funnel", tag = "analytics", params(Range), responses((status = 200, description = "gigs posted in the range: with proposals, hired, completed, and the rates", body = Funnel)))]
pub(crate) async fn funnel(
    State(state): State<AppState>,
    Caller(caller): Caller,
    min: MinPosition,
    ApiQuery(range): ApiQuery<Range>,
) -> Result<Response, ApiError> {
    require_analyst(&caller)?;
    let (from, to) = range.days(state.services.now().date_naive());
    let position = min.wait(&state, &[analytics::NAME]).await?;
    let funnel = analytics::funnel(&state.pool, from, to)
        .await
        .map_err(range_error)?;
    Ok(query::answer(position, &funnel))
}

#[utoipa::path(get, path = "/v1/analytics/time-to-hire", tag = "analytics", params(Range), responses((status = 200, description = "percentiles of posted → accepted over the hires accepted in the range", body = TimeToHire)))]
pub(crate) async fn time_to_hire(
    State(state): State<AppState>,
    Caller(caller): Caller,
    min: MinPosition,
    ApiQuery(range): ApiQuery<Range>,
) -> Result<Response, ApiError> {
    require_analyst(&caller)?;
    let (from, to) = range.days(state.services.now().date_naive());
    let position = min.wait(&state, &[analytics::NAME]).await?;
    let figures = analytics::time_to_hire(&state.pool, from, to)
        .await
        .map_err(range_error)?;
    Ok(query::answer(position, &figures))
}

#[utoipa::path(get, path = "/v1/analytics/disputes", tag = "analytics", params(Range), responses((status = 200, description = "disputes opened and resolved, share of escrow refunded per currency", body = DisputeStats)))]
pub(crate) async fn disputes(
    State(state): State<AppState>,
    Caller(caller): Caller,
    min: MinPosition,
    ApiQuery(range): ApiQuery<Range>,
) -> Result<Response, ApiError> {
    require_analyst(&caller)?;
    let (from, to) = range.days(state.services.now().date_naive());
    let position = min.wait(&state, &[analytics::NAME]).await?;
    let figures = analytics::disputes(&state.pool, from, to)
        .await
        .map_err(range_error)?;
    Ok(query::answer(position, &figures))
}

#[utoipa::path(get, path = "/v1/analytics/skills", tag = "analytics", params(Range), responses((status = 200, description = "demand (gigs) and supply (proposals) by skill", body = Vec<SkillActivity>)))]
pub(crate) async fn skills(
    State(state): State<AppState>,
    Caller(caller): Caller,
    min: MinPosition,
    ApiQuery(range): ApiQuery<Range>,
) -> Result<Response, ApiError> {
    require_analyst(&caller)?;
    let (from, to) = range.days(state.services.now().date_naive());
    let position = min.wait(&state, &[analytics::NAME]).await?;
    let figures = analytics::skills(&state.pool, from, to)
        .await
        .map_err(range_error)?;
    Ok(query::answer(position, &figures))
}
