//! Analytics from the read models only: GMV, the funnel, time to hire, disputes and skills, over
//! a range of UTC days. Money is per currency, never summed across currencies. Each answers JSON,
//! or RFC 4180 CSV with a header row when asked with `Accept: text/csv` (written by the `csv`
//! crate: quoting is its business).
//!
//! Who (API.md): analysts and admins; anyone else 403.

use axum::extract::State;
use axum::http::header::{ACCEPT, CONTENT_TYPE};
use axum::http::{HeaderMap, HeaderValue};
use axum::response::IntoResponse;
use axum::response::Response;
use chrono::{Days, NaiveDate};
use gigledger_domain::Role;
use gigledger_projections::read::analytics::{
    self, DisputeStats, Funnel, GmvPeriod, Interval, SkillActivity, TimeToHire,
};
use serde::Deserialize;

use crate::auth::{require_any, Caller};
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

/// Whether the client asked for CSV.
fn wants_csv(headers: &HeaderMap) -> bool {
    headers
        .get_all(ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|item| item.trim().starts_with("text/csv"))
}

/// A CSV answer: `header`, then `rows`, with `X-Position`.
fn csv_answer(
    position: i64,
    header: &[&str],
    rows: Vec<Vec<String>>,
) -> Result<Response, ApiError> {
    let mut writer = csv::Writer::from_writer(Vec::new());
    writer.write_record(header).map_err(ApiError::internal)?;
    for row in rows {
        writer.write_record(&row).map_err(ApiError::internal)?;
    }
    let bytes = writer.into_inner().map_err(ApiError::internal)?;
    let mut response = bytes.into_response();
    let headers = response.headers_mut();
    headers.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/csv; charset=utf-8"),
    );
    headers.insert(query::X_POSITION, HeaderValue::from(position));
    Ok(response)
}

fn text<T: ToString>(value: Option<T>) -> String {
    value.map(|v| v.to_string()).unwrap_or_default()
}

fn range_error(e: gigledger_projections::read::ReadError) -> ApiError {
    match e {
        gigledger_projections::read::ReadError::InvalidArgument(message) => {
            ApiError::bad_request("to", message)
        }
        other => from_read(other),
    }
}

#[utoipa::path(get, path = "/v1/analytics/gmv", tag = "analytics", params(GmvQuery), responses((status = 200, description = "released gross, fees and refunds per period and currency; `Accept: text/csv` answers RFC 4180 CSV with a header row", body = Vec<GmvPeriod>)))]
pub(crate) async fn gmv(
    State(state): State<AppState>,
    Caller(caller): Caller,
    headers: HeaderMap,
    min: MinPosition,
    ApiQuery(params): ApiQuery<GmvQuery>,
) -> Result<Response, ApiError> {
    require_any(&caller, &[Role::Analyst, Role::Admin])?;
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
    if wants_csv(&headers) {
        let rows = periods
            .iter()
            .flat_map(|p| {
                p.totals.iter().map(move |t| {
                    vec![
                        p.start.to_string(),
                        p.end.to_string(),
                        t.currency.clone(),
                        t.gmv_released.to_string(),
                        t.fees.to_string(),
                        t.refunds.to_string(),
                        t.paid_out.to_string(),
                        t.refunded_to_card.to_string(),
                    ]
                })
            })
            .collect();
        return csv_answer(
            position,
            &[
                "start",
                "end",
                "currency",
                "gmv_released",
                "fees",
                "refunds",
                "paid_out",
                "refunded_to_card",
            ],
            rows,
        );
    }
    Ok(query::answer(position, &periods))
}

#[utoipa::path(get, path = "/v1/analytics/funnel", tag = "analytics", params(Range), responses((status = 200, description = "gigs posted in the range: with proposals, hired, completed, and the rates; `Accept: text/csv` answers RFC 4180 CSV with a header row", body = Funnel)))]
pub(crate) async fn funnel(
    State(state): State<AppState>,
    Caller(caller): Caller,
    headers: HeaderMap,
    min: MinPosition,
    ApiQuery(range): ApiQuery<Range>,
) -> Result<Response, ApiError> {
    let (from, to, position) = analyst_range(&state, &caller, min, &range).await?;
    let funnel = analytics::funnel(&state.pool, from, to)
        .await
        .map_err(range_error)?;
    if wants_csv(&headers) {
        let f = &funnel;
        return csv_answer(
            position,
            &[
                "posted",
                "with_proposals",
                "hired",
                "completed",
                "proposal_rate_bps",
                "hire_rate_bps",
                "completion_rate_bps",
                "posted_to_hired_rate_bps",
            ],
            vec![vec![
                f.posted.to_string(),
                f.with_proposals.to_string(),
                f.hired.to_string(),
                f.completed.to_string(),
                text(f.proposal_rate.basis_points),
                text(f.hire_rate.basis_points),
                text(f.completion_rate.basis_points),
                text(f.posted_to_hired_rate.basis_points),
            ]],
        );
    }
    Ok(query::answer(position, &funnel))
}

#[utoipa::path(get, path = "/v1/analytics/time-to-hire", tag = "analytics", params(Range), responses((status = 200, description = "percentiles of posted → accepted over the hires accepted in the range; `Accept: text/csv` answers RFC 4180 CSV with a header row", body = TimeToHire)))]
pub(crate) async fn time_to_hire(
    State(state): State<AppState>,
    Caller(caller): Caller,
    headers: HeaderMap,
    min: MinPosition,
    ApiQuery(range): ApiQuery<Range>,
) -> Result<Response, ApiError> {
    let (from, to, position) = analyst_range(&state, &caller, min, &range).await?;
    let figures = analytics::time_to_hire(&state.pool, from, to)
        .await
        .map_err(range_error)?;
    if wants_csv(&headers) {
        return csv_answer(
            position,
            &["hires", "p50_seconds", "p90_seconds", "p99_seconds"],
            vec![vec![
                figures.hires.to_string(),
                text(figures.p50_seconds),
                text(figures.p90_seconds),
                text(figures.p99_seconds),
            ]],
        );
    }
    Ok(query::answer(position, &figures))
}

#[utoipa::path(get, path = "/v1/analytics/disputes", tag = "analytics", params(Range), responses((status = 200, description = "disputes opened and resolved, share of escrow refunded per currency; `Accept: text/csv` answers RFC 4180 CSV with a header row", body = DisputeStats)))]
pub(crate) async fn disputes(
    State(state): State<AppState>,
    Caller(caller): Caller,
    headers: HeaderMap,
    min: MinPosition,
    ApiQuery(range): ApiQuery<Range>,
) -> Result<Response, ApiError> {
    let (from, to, position) = analyst_range(&state, &caller, min, &range).await?;
    let figures = analytics::disputes(&state.pool, from, to)
        .await
        .map_err(range_error)?;
    if wants_csv(&headers) {
        // One row per currency of the refunded share (the counts repeat); one row without a
        // currency when nothing was resolved.
        let counts = [figures.opened.to_string(), figures.resolved.to_string()];
        let mut rows: Vec<Vec<String>> = figures
            .refund_share
            .iter()
            .map(|share| {
                let mut row = counts.to_vec();
                row.extend([
                    share.currency.clone(),
                    share.refunded.to_string(),
                    share.settled.to_string(),
                ]);
                row
            })
            .collect();
        if rows.is_empty() {
            let mut row = counts.to_vec();
            row.extend([String::new(), String::new(), String::new()]);
            rows.push(row);
        }
        return csv_answer(
            position,
            &["opened", "resolved", "currency", "refunded", "settled"],
            rows,
        );
    }
    Ok(query::answer(position, &figures))
}

#[utoipa::path(get, path = "/v1/analytics/skills", tag = "analytics", params(Range), responses((status = 200, description = "demand (gigs) and supply (proposals) by skill; `Accept: text/csv` answers RFC 4180 CSV with a header row", body = Vec<SkillActivity>)))]
pub(crate) async fn skills(
    State(state): State<AppState>,
    Caller(caller): Caller,
    headers: HeaderMap,
    min: MinPosition,
    ApiQuery(range): ApiQuery<Range>,
) -> Result<Response, ApiError> {
    let (from, to, position) = analyst_range(&state, &caller, min, &range).await?;
    let figures = analytics::skills(&state.pool, from, to)
        .await
        .map_err(range_error)?;
    if wants_csv(&headers) {
        let rows = figures
            .iter()
            .map(|s| vec![s.skill.clone(), s.gigs.to_string(), s.proposals.to_string()])
            .collect();
        return csv_answer(position, &["skill", "gigs", "proposals"], rows);
    }
    Ok(query::answer(position, &figures))
}

/// What every range route does first: only analysts and admins; the range's days (the last 30
/// by default); the analytics model caught up with `X-Min-Position`. Answers the days and the
/// position the figures reflect.
async fn analyst_range(
    state: &AppState,
    caller: &gigledger_domain::Actor,
    min: MinPosition,
    range: &Range,
) -> Result<(chrono::NaiveDate, chrono::NaiveDate, i64), ApiError> {
    require_any(caller, &[Role::Analyst, Role::Admin])?;
    let (from, to) = range.days(state.services.now().date_naive());
    let position = min.wait(state, &[analytics::NAME]).await?;
    Ok((from, to, position))
}
