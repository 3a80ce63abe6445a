//! The plans of the read functions the API calls, on read tables filled to a realistic size
//! (200 000 gigs and 30 000 older ones, 50 000 contracts and proposals for one user, 100 000
//! notifications for one user, …; generated rows, then `analyze`), each run with generic and
//! with custom plans.
//!
//! The harness: every pooled session loads `auto_explain` (analysed plans of every statement,
//! nested ones included, as JSON NOTICEs), sqlx reports each NOTICE as a tracing event (target
//! `sqlx::postgres::notice`, field `message`), and a tracing layer of this binary collects them.
//! A case runs one read function and asserts, over every plan it caused: no sequential scan of a
//! large table (10 000 rows or more), no sort of more rows than the case allows (the page, unless
//! the case says why more), and no node that reads and discards more rows than the case allows
//! (a walk of an index filtered by a condition it cannot use: what a generic plan does with
//! `$2 is null or col < $2`, or the newest-first index filtered by a rare skill).
//!
//! To add a read function: add a `Case` to `cases()`.
//!
//! Only one test lives in this binary: the collector is global, and the cases run one at a time.

use std::future::Future;
use std::sync::{Mutex, OnceLock};

use chrono::NaiveDate;
use futures::future::BoxFuture;
use futures::FutureExt;
use gigledger_domain::{ContractId, GigId, GigStatus, ProposalId, UserId};
use gigledger_projections::read::gig_board::{
    self, GigQuery, GigSort, RANK_WALK, SELECT_BOUND, WALK_BOUND,
};
use gigledger_projections::read::{
    analytics, contracts, ledger, notifications, proposals, user_stats, ReadError,
};
use serde_json::Value;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{Executor, PgPool};
use tracing::field::{Field, Visit};
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::Layer;
use uuid::Uuid;

// ------------------------------------------------------------------------------------------------
// Collecting auto_explain's plans
// ------------------------------------------------------------------------------------------------

fn notices() -> &'static Mutex<Vec<String>> {
    static NOTICES: OnceLock<Mutex<Vec<String>>> = OnceLock::new();
    NOTICES.get_or_init(|| Mutex::new(Vec::new()))
}

/// Keeps the `message` of every NOTICE sqlx reports.
struct NoticeLayer;

struct MessageOf(Option<String>);

impl Visit for MessageOf {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.0 = Some(value.to_owned());
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" && self.0.is_none() {
            self.0 = Some(format!("{value:?}"));
        }
    }
}

impl<S: tracing::Subscriber> Layer<S> for NoticeLayer {
    fn on_event(&self, event: &tracing::Event<'_>, _: Context<'_, S>) {
        if event.metadata().target() != "sqlx::postgres::notice" {
            return;
        }
        let mut message = MessageOf(None);
        event.record(&mut message);
        if let Some(message) = message.0 {
            notices().lock().expect("not poisoned").push(message);
        }
    }
}

fn install_collector() {
    static ONCE: OnceLock<()> = OnceLock::new();
    ONCE.get_or_init(|| {
        tracing::subscriber::set_global_default(tracing_subscriber::registry().with(NoticeLayer))
            .expect("no other subscriber in this binary");
    });
}

/// The plans (auto_explain's JSON, `{"Query Text": …, "Plan": …}`) collected since the last call.
fn take_plans() -> Vec<Value> {
    let taken = std::mem::take(&mut *notices().lock().expect("not poisoned"));
    taken
        .iter()
        .filter_map(|message| {
            // "duration: 0.123 ms  plan:\n{ … }"
            let json = &message[message.find("plan:")?..];
            serde_json::from_str::<Value>(&json[json.find('{')?..]).ok()
        })
        .collect()
}

#[derive(Clone, Copy, Debug)]
enum Mode {
    Generic,
    Custom,
}

impl Mode {
    const fn setting(self) -> &'static str {
        match self {
            Self::Generic => "force_generic_plan",
            Self::Custom => "force_custom_plan",
        }
    }
}

/// A pool whose every session explains every statement it runs, with plans forced to `mode`.
async fn explaining_pool(connect: PgConnectOptions, mode: Mode) -> PgPool {
    PgPoolOptions::new()
        .max_connections(2)
        .after_connect(move |conn, _| {
            Box::pin(async move {
                conn.execute(sqlx::raw_sql(
                    "load 'auto_explain';
                     set auto_explain.log_min_duration = 0;
                     set auto_explain.log_format = json;
                     set auto_explain.log_level = notice;
                     set auto_explain.log_nested_statements = on;
                     set auto_explain.log_analyze = on;
                     set auto_explain.log_timing = off;",
                ))
                .await?;
                conn.execute(sqlx::raw_sql(match mode {
                    Mode::Generic => "set plan_cache_mode = force_generic_plan",
                    Mode::Custom => "set plan_cache_mode = force_custom_plan",
                }))
                .await?;
                Ok(())
            })
        })
        .connect_with(connect)
        .await
        .expect("the explaining pool connects")
}

// ------------------------------------------------------------------------------------------------
// What a plan may not do
// ------------------------------------------------------------------------------------------------

/// One read function call and what its plans may do.
struct Case {
    name: String,
    /// The most rows one sort may take in (the page plus one, unless said otherwise).
    max_sorted: u64,
    /// The most rows one plan node may read and discard.
    max_discarded: u64,
    /// Large tables this function reads whole by design (whole-ledger reports).
    whole_tables: &'static [&'static str],
    run: Box<dyn Fn(PgPool) -> BoxFuture<'static, Result<usize, ReadError>>>,
}

/// The page the API asks for by default (20) plus the row that says a next page exists.
const PAGE: u64 = 21;
/// A node may discard this many rows: e.g. a short walk past the cursor's equal keys, never a
/// walk whose length grows with the table.
const DISCARDS: u64 = 500;

fn case<F, Fut>(name: impl Into<String>, run: F) -> Case
where
    F: Fn(PgPool) -> Fut + 'static,
    Fut: Future<Output = Result<usize, ReadError>> + Send + 'static,
{
    Case {
        name: name.into(),
        max_sorted: PAGE,
        max_discarded: DISCARDS,
        whole_tables: &[],
        run: Box::new(move |pool| run(pool).boxed()),
    }
}

impl Case {
    fn sorting(mut self, rows: u64) -> Self {
        self.max_sorted = rows;
        self
    }

    fn discarding(mut self, rows: u64) -> Self {
        self.max_discarded = rows;
        self
    }

    /// A board statement that walks at most `WALK_BOUND` gigs, then sorts what passed, or at
    /// most `SELECT_BOUND` matches of its filter's index (see `walk_then_select` in
    /// gig_board.rs): it may discard `WALK_BOUND` rows and sort that many or `SELECT_BOUND`.
    fn walking(self) -> Self {
        let walk = u64::try_from(WALK_BOUND).expect("positive");
        let select = u64::try_from(SELECT_BOUND).expect("positive");
        self.sorting(walk.max(select)).discarding(walk)
    }

    /// A walking statement paged to the very end of its driver's gigs: on the last pages a
    /// custom plan, which sees the cursor, may take the few gigs left after it (fewer than it
    /// estimates 3 000 for, about 1.5 `WALK_BOUND`) by a bitmap and sort them instead of walking
    /// the index. That sort is bounded by the walk's costs, not by the board.
    fn walking_to_the_end(self) -> Self {
        let walk = u64::try_from(WALK_BOUND).expect("positive");
        let walking = self.walking();
        let sorted = walking.max_sorted.max(2 * walk);
        walking.sorting(sorted)
    }

    /// A relevance query: it walks at most `RANK_WALK` gigs, then sorts what passed, or at most
    /// `SELECT_BOUND` matches of the text index (see `BY_RELEVANCE` in gig_board.rs).
    fn ranking(self) -> Self {
        let walk = u64::try_from(RANK_WALK).expect("positive");
        let select = u64::try_from(SELECT_BOUND).expect("positive");
        self.sorting(walk.max(select)).discarding(walk)
    }

    fn reading_whole(mut self, tables: &'static [&'static str]) -> Self {
        self.whole_tables = tables;
        self
    }
}

/// A row count of a plan node (EXPLAIN prints them without decimals).
fn number(node: &Value, key: &str) -> u64 {
    node.get(key).and_then(Value::as_u64).unwrap_or(0)
}

/// What `node` and the nodes under it do that `case` does not allow.
fn violations(case: &Case, large: &[String], node: &Value, out: &mut Vec<String>) {
    let kind = node
        .get("Node Type")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let relation = node
        .get("Relation Name")
        .and_then(Value::as_str)
        .unwrap_or_default();
    // A node never executed (a branch a one-time filter skipped) costs nothing.
    if node.get("Actual Loops").and_then(Value::as_u64) == Some(0) {
        return;
    }
    if kind == "Seq Scan"
        && large.iter().any(|t| t == relation)
        && !case.whole_tables.contains(&relation)
    {
        out.push(format!("sequential scan of {relation}"));
    }
    if kind == "Sort" || kind == "Incremental Sort" {
        let input = node
            .get("Plans")
            .and_then(|p| p.get(0))
            .map_or(0, |child| number(child, "Actual Rows"));
        if input > case.max_sorted {
            out.push(format!(
                "sort of {input} rows (at most {})",
                case.max_sorted
            ));
        }
    }
    // Per-loop averages in EXPLAIN ANALYZE: times the loops for the node's total.
    let loops = number(node, "Actual Loops");
    for key in [
        "Rows Removed by Filter",
        "Rows Removed by Index Recheck",
        "Rows Removed by Join Filter",
    ] {
        let removed = number(node, key).saturating_mul(loops);
        if removed > case.max_discarded {
            out.push(format!(
                "{kind} on {relation} discarded {removed} rows ({key}, at most {})",
                case.max_discarded
            ));
        }
    }
    if let Some(children) = node.get("Plans").and_then(Value::as_array) {
        for child in children {
            violations(case, large, child, out);
        }
    }
}

// ------------------------------------------------------------------------------------------------
// Realistic tables
// ------------------------------------------------------------------------------------------------

/// `tid(kind, i)`: deterministic ids, so rows of different tables refer to each other.
fn tid(kind: u32, i: u64) -> Uuid {
    Uuid::from_u128((u128::from(kind) << 96) | u128::from(i))
}

/// The board's client of 50 000 contracts (and of a quarter of the gigs).
fn client() -> UserId {
    UserId(tid(2, 0))
}
/// The freelancer of 50 000 proposals.
fn freelancer() -> UserId {
    UserId(tid(3, 0))
}
/// The gig with 20 000 proposals.
fn busy_gig() -> GigId {
    GigId(tid(1, 10))
}
/// The contract with 43 000 journal lines.
fn busy_contract() -> ContractId {
    ContractId(tid(5, 7))
}
/// The user with 100 000 notifications.
fn notified() -> UserId {
    UserId(tid(7, 0))
}

/// Fills the read tables straight (they have no triggers; the events table is not read by any
/// read function), then analyses them, as autovacuum would have on a live database.
const FILL: &str = r"
create function pg_temp.tid(kind int, i bigint) returns uuid
language sql immutable as $$
    select (lpad(to_hex(kind), 8, '0') || lpad(to_hex(i), 24, '0'))::uuid
$$;

-- 200 000 gigs, posted in an order unlike their storage order; 1 % in EUR, 2 % in GBP;
-- 40 with the skill cobol, 20 with the word zeppelin, 40 with a budget of 500 000.00;
-- 200 (open, in USD, one in every 1 000 minutes of posting) with the word telegraph and the
-- skill fortran.
insert into read.gig_board (gig_id, client_id, title, description, skills, budget_kind, currency,
                            budget_min, budget_max, posted_at, status, proposals_count,
                            last_position)
select pg_temp.tid(1, i),
       case when i % 4 = 0 then pg_temp.tid(2, 0) else pg_temp.tid(2, 1 + i % 5000) end,
       (array['Website', 'Dashboard', 'Pipeline', 'Migration', 'Audit'])[1 + i % 5]
           || ' project ' || i || case when i % 10000 = 0 then ' zeppelin' else '' end,
       'We need help with a '
           || (array['backend', 'frontend', 'database', 'report', 'service', 'cluster'])[1 + i % 6]
           || ' for our team.' || case when i % 1000 = 502 then ' Telegraph.' else '' end,
       case when i % 5000 = 0 then array['cobol', 'sql']
            else array['skill' || (i % 30), 'skill' || ((i % 30 + 1 + i % 7) % 30)] end
           || case when i % 1000 = 502 then array['fortran'] else array[]::text[] end,
       'fixed',
       case when i % 100 = 0 then 'EUR' when i % 50 = 1 then 'GBP' else 'USD' end,
       case when i % 5000 = 3 then 50000000 else 5000 + (i * 7919 % 299) * 1000 end,
       case when i % 5000 = 3 then 50000000 else 5000 + (i * 7919 % 299) * 1000 end,
       timestamptz '2026-01-01 00:00:00+00' + ((i * 7919) % 200000) * interval '1 minute',
       case i % 20 when 3 then 'closed' when 7 then 'cancelled' when 11 then 'hired'
                   else 'open' end,
       i % 9,
       i
  from generate_series(1, 200000) as i;

-- 30 000 old gigs (2020, before every gig above; in USD, statuses as above, so a fortran gig is
-- open), all with the word telegraph: it and the skill fortran are common only in old gigs. A
-- tenth have the skill fortran and a budget of 90 000.00, a tenth a budget of 10.00 (less than
-- any newer gig), the rest 1 000.00.
insert into read.gig_board (gig_id, client_id, title, description, skills, budget_kind, currency,
                            budget_min, budget_max, posted_at, status, proposals_count,
                            last_position)
select pg_temp.tid(1, 1000000 + i), pg_temp.tid(2, 1 + i % 5000), 'Relay project ' || i,
       'We keep a telegraph network running.',
       case when i % 10 = 0 then array['fortran', 'telex'] else array['telex'] end,
       'fixed', 'USD',
       case i % 10 when 0 then 9000000 when 5 then 1000 else 100000 end,
       case i % 10 when 0 then 9000000 when 5 then 1000 else 100000 end,
       timestamptz '2020-01-01 00:00:00+00' + ((i * 7919) % 30000) * interval '1 minute',
       case i % 20 when 3 then 'closed' when 7 then 'cancelled' when 11 then 'hired'
                   else 'open' end,
       0, 200000 + i
  from generate_series(1, 30000) as i;

insert into read.gig_skills (gig_id, skill, posted_at)
select gig_id, skill, posted_at from read.gig_board, unnest(skills) as skill;

insert into read.proposal_gigs (gig_id, client_id, title, last_position)
select gig_id, client_id, title, last_position from read.gig_board;

-- 200 000 proposals: 20 000 on one gig, 50 000 by one freelancer.
insert into read.proposals (proposal_id, gig_id, freelancer_id, cover_letter, milestones,
                            bid_amount, currency, status, submitted_at, submitted_position,
                            last_position)
select pg_temp.tid(4, i),
       case when i % 10 = 0 then pg_temp.tid(1, 10) else pg_temp.tid(1, 1 + i % 200000) end,
       case when i % 4 = 0 then pg_temp.tid(3, 0) else pg_temp.tid(3, 1 + i % 10000) end,
       'Hello', '[]', 10000, 'USD', 'pending',
       timestamptz '2026-01-01 00:00:00+00' + i * interval '1 minute', i, i
  from generate_series(1, 200000) as i;

-- 60 000 contracts, 50 000 of them the client's; two milestones each.
insert into read.contracts (contract_id, gig_id, proposal_id, client_id, freelancer_id, currency,
                            fee_bps, review_window_days, max_revisions, status, started_at,
                            started_position, last_position)
select pg_temp.tid(5, i), pg_temp.tid(1, i), pg_temp.tid(4, i),
       case when i % 6 <> 0 then pg_temp.tid(2, 0) else pg_temp.tid(2, 1 + i) end,
       pg_temp.tid(3, 1 + i % 10000), 'USD', 1000, 7, 3, 'active',
       timestamptz '2026-01-01 00:00:00+00' + i * interval '1 minute', i, i
  from generate_series(1, 60000) as i;

insert into read.contract_milestones (contract_id, milestone_id, ordinal, title, amount, currency,
                                      status, last_position)
select pg_temp.tid(5, i), pg_temp.tid(6, 2 * i + k), k, 'Milestone', 10000, 'USD', 'funded', i
  from generate_series(1, 60000) as i, generate_series(0, 1) as k;

insert into read.contract_escrow_balances (contract_id, milestone_id, currency, scheduled,
                                           deposited, last_position)
select pg_temp.tid(5, i), pg_temp.tid(6, 2 * i + k), 'USD', 10000, 10000, i
  from generate_series(1, 60000) as i, generate_series(0, 1) as k;

insert into read.contract_disputes (dispute_id, contract_id, milestone_id, opened_by, reason,
                                    status, opened_at, opened_position, last_position)
select pg_temp.tid(8, i), pg_temp.tid(5, 6 * i), pg_temp.tid(6, 12 * i), pg_temp.tid(2, 0),
       'Late', 'open', timestamptz '2026-02-01 00:00:00+00' + i * interval '1 minute', i, i
  from generate_series(1, 10000) as i;

insert into read.contract_reviews (contract_id, reviewer_id, reviewee_id, reviewer, rating, text,
                                   reviewed_at, revealed_at)
select pg_temp.tid(5, i), pg_temp.tid(2, 0), pg_temp.tid(3, 1 + i % 10000), 'client', 5, 'Great',
       timestamptz '2026-03-01 00:00:00+00', timestamptz '2026-03-02 00:00:00+00'
  from generate_series(1, 60000) as i;

-- 300 000 journal lines, 43 000 of them one contract's.
insert into read.ledger_escrows (contract_id, client_id, freelancer_id, currency, fee_bps,
                                 opened_position)
select pg_temp.tid(5, i), pg_temp.tid(2, 0), pg_temp.tid(3, 1 + i % 10000), 'USD', 1000, i
  from generate_series(1, 60000) as i;

insert into read.ledger_entries (position, line, contract_id, milestone_id, event_type, movement,
                                 account, amount, currency, recorded_at)
select i, k,
       case when i % 7 = 0 then pg_temp.tid(5, 7) else pg_temp.tid(5, 1 + i % 60000) end,
       pg_temp.tid(6, 2 * (1 + i % 60000)), 'FundsDeposited', 'deposit',
       case k when 0 then 'client:' || (i % 1000) else 'escrow:' || (1 + i % 60000) end,
       case k when 0 then -10000 else 10000 end, 'USD',
       timestamptz '2026-01-01 00:00:00+00' + i * interval '1 minute'
  from generate_series(1, 150000) as i, generate_series(0, 1) as k;

-- 300 000 notifications, 100 000 of them one user's, who read all but the last 10 000.
insert into read.notifications (transaction_id, position, user_id, kind, data, created_at)
select i, i,
       case when i % 3 = 0 then pg_temp.tid(7, 0) else pg_temp.tid(7, 1 + i % 50000) end,
       'proposal_received', '{}',
       timestamptz '2026-01-01 00:00:00+00' + i * interval '1 minute'
  from generate_series(1, 300000) as i;

insert into read.notification_read_marks (user_id, transaction_id, position)
select pg_temp.tid(7, i), 270000, 270000 from generate_series(0, 50000) as i;

insert into read.user_stats (user_id, rating_sum, rating_count, completed_as_client,
                             completed_as_freelancer)
select pg_temp.tid(7, i), 9, 2, 1, 1 from generate_series(0, 100000) as i;

insert into read.user_stats_earnings (user_id, currency, net)
select pg_temp.tid(7, i), 'USD', 100000 from generate_series(0, 100000) as i;

-- Analytics: a fact per gig, proposal, hire, movement and dispute; ten years of daily rollups.
insert into read.analytics_gigs (gig_id, posted_at, currency, skills, proposals, contract_id,
                                 hired_at, last_position)
select gig_id, posted_at, currency, skills, proposals_count,
       case when status = 'hired' then gig_id end,
       case when status = 'hired' then posted_at + interval '1 day' end, last_position
  from read.gig_board;

insert into read.analytics_proposals (proposal_id, gig_id, submitted_at, currency)
select proposal_id, gig_id, submitted_at, currency from read.proposals;

insert into read.analytics_hires (contract_id, gig_id, currency, posted_at, accepted_at)
select pg_temp.tid(5, i), pg_temp.tid(1, i), 'USD',
       timestamptz '2026-01-01 00:00:00+00' + i * interval '2 minutes',
       timestamptz '2026-01-01 00:00:00+00' + i * interval '2 minutes'
           + (i % 1000) * interval '1 minute'
  from generate_series(1, 50000) as i;

insert into read.analytics_movements (position, kind, contract_id, milestone_id, currency, gross,
                                      fee, at)
select i, 'release', pg_temp.tid(5, 1 + i % 60000), pg_temp.tid(6, i), 'USD', 10000, 1000,
       timestamptz '2026-01-01 00:00:00+00' + i * interval '2 minutes'
  from generate_series(1, 100000) as i;

insert into read.analytics_disputes (dispute_id, contract_id, currency, opened_at, resolved_at,
                                     release_amount, refund_amount)
select pg_temp.tid(8, i), pg_temp.tid(5, i), 'USD',
       timestamptz '2026-01-01 00:00:00+00' + i * interval '10 minutes',
       case when i % 2 = 0
            then timestamptz '2026-01-01 00:00:00+00' + i * interval '10 minutes'
                 + interval '1 day' end,
       case when i % 2 = 0 then 6000 end, case when i % 2 = 0 then 4000 end
  from generate_series(1, 20000) as i;

insert into read.analytics_daily (day, currency, gigs_posted, proposals, hires, gmv_released, fees,
                                  refunds)
select d::date, c, 50, 200, 10, 1000000, 100000, 5000
  from generate_series(date '2017-01-01', date '2026-12-31', interval '1 day') as d,
       unnest(array['USD', 'EUR', 'GBP', 'JPY', 'CHF']) as c;

insert into read.analytics_skills_daily (day, skill, gigs, proposals)
select d::date, 'skill' || s, 5, 20
  from generate_series(date '2017-01-01', date '2026-12-31', interval '1 day') as d,
       generate_series(0, 29) as s;

analyze;
";

// ------------------------------------------------------------------------------------------------
// The read functions the API calls
// ------------------------------------------------------------------------------------------------

fn board(name: &str, query: GigQuery) -> Case {
    case(format!("search_gigs {name}"), move |pool| {
        let query = query.clone();
        async move { Ok(gig_board::search_gigs(&pool, &query).await?.items.len()) }
    })
}

/// Every page of a board query whose matches are known from the fill: exactly `expected` gigs,
/// each once, in the query's order (the selective branch of a walk, and its paging, return what the
/// filter matches; a page cut short after its walk continues where the walk stopped). Pages of 7
/// unless the query says.
fn board_all(name: &str, query: GigQuery, expected: usize) -> Case {
    let by_rank = query.q.is_some() && query.sort == GigSort::Relevance;
    case(format!("search_gigs {name}, every page"), move |pool| {
        let mut query = GigQuery {
            limit: query.limit.or(Some(7)),
            ..query.clone()
        };
        async move {
            let mut keys = Vec::new();
            loop {
                let page = gig_board::search_gigs(&pool, &query).await?;
                keys.extend(page.items.iter().map(|c| {
                    let rank = if by_rank { c.rank } else { 0 };
                    (rank, c.posted_at, c.gig_id)
                }));
                match page.next_cursor {
                    Some(next) => query.cursor = Some(next),
                    None => break,
                }
            }
            assert_eq!(keys.len(), expected, "{query:?}");
            assert!(
                keys.windows(2).all(|w| w[0] > w[1]),
                "newest first, once each"
            );
            Ok(keys.len())
        }
    })
}

fn march(day: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(2026, 3, day).expect("a date")
}

fn cases() -> Vec<Case> {
    let usd = || Some("USD".to_owned());
    vec![
        // The board: each filter the API offers, selective and not.
        board("newest", GigQuery::default()),
        board(
            "deep in the board",
            GigQuery {
                cursor: Some("gn.1767500000000000.00000000-0000-0000-0000-000000000000".into()),
                ..GigQuery::default()
            },
        ),
        board(
            "status=cancelled",
            GigQuery {
                status: Some(GigStatus::Cancelled),
                ..GigQuery::default()
            },
        ),
        board(
            "currency=EUR (1 % of the board)",
            GigQuery {
                currency: Some("EUR".into()),
                ..GigQuery::default()
            },
        ),
        board(
            "currency=EUR status=open",
            GigQuery {
                currency: Some("EUR".into()),
                status: Some(GigStatus::Open),
                ..GigQuery::default()
            },
        ),
        // 40 gigs reach it: taken by the budget index, then those 40 sorted.
        board(
            "currency=USD min_budget few reach",
            GigQuery {
                currency: usd(),
                min_budget: Some(10_000_000),
                ..GigQuery::default()
            },
        )
        .walking(),
        board(
            "currency=USD min_budget most reach",
            GigQuery {
                currency: usd(),
                min_budget: Some(100_000),
                max_budget: Some(250_000),
                ..GigQuery::default()
            },
        )
        .walking(),
        board(
            "currency=GBP max_budget few reach",
            GigQuery {
                currency: Some("GBP".into()),
                max_budget: Some(5_000),
                ..GigQuery::default()
            },
        )
        .walking(),
        board_all(
            "currency=USD min_budget few reach",
            GigQuery {
                currency: usd(),
                min_budget: Some(10_000_000),
                ..GigQuery::default()
            },
            40,
        )
        .walking(),
        board_all(
            "currency=GBP max_budget few reach",
            GigQuery {
                currency: Some("GBP".into()),
                max_budget: Some(5_000),
                ..GigQuery::default()
            },
            13,
        )
        .walking(),
        board_all(
            "q=zeppelin newest",
            GigQuery {
                q: Some("zeppelin".into()),
                sort: GigSort::Newest,
                ..GigQuery::default()
            },
            20,
        )
        .walking(),
        board_all(
            "q=zeppelin by relevance",
            GigQuery {
                q: Some("zeppelin".into()),
                ..GigQuery::default()
            },
            20,
        )
        .ranking(),
        board_all(
            "skills=cobol",
            GigQuery {
                skills: vec!["cobol".into()],
                ..GigQuery::default()
            },
            40,
        ),
        board(
            "skills=cobol (40 gigs)",
            GigQuery {
                skills: vec!["cobol".into()],
                ..GigQuery::default()
            },
        ),
        // A page per skill, merged.
        board(
            "skills=skill3,cobol",
            GigQuery {
                skills: vec!["skill3".into(), "cobol".into()],
                ..GigQuery::default()
            },
        )
        .sorting(2 * PAGE),
        board(
            "skills=skill3 currency=USD status=open",
            GigQuery {
                skills: vec!["skill3".into()],
                currency: usd(),
                status: Some(GigStatus::Open),
                ..GigQuery::default()
            },
        )
        .walking(),
        board_all(
            "skills=skill3 currency=EUR",
            GigQuery {
                skills: vec!["skill3".into()],
                currency: Some("EUR".into()),
                ..GigQuery::default()
            },
            93,
        )
        .walking(),
        board_all(
            "skills=cobol status=open",
            GigQuery {
                skills: vec!["cobol".into()],
                status: Some(GigStatus::Open),
                ..GigQuery::default()
            },
            40,
        )
        .walking(),
        board(
            "q=zeppelin (20 gigs) by relevance",
            GigQuery {
                q: Some("zeppelin".into()),
                ..GigQuery::default()
            },
        )
        .ranking(),
        board(
            "q=website (a fifth of the board) by relevance",
            GigQuery {
                q: Some("website".into()),
                ..GigQuery::default()
            },
        )
        .ranking(),
        board(
            "q=zeppelin newest",
            GigQuery {
                q: Some("zeppelin".into()),
                sort: GigSort::Newest,
                ..GigQuery::default()
            },
        )
        .walking(),
        board(
            "q=website newest (a fifth of the board)",
            GigQuery {
                q: Some("website".into()),
                sort: GigSort::Newest,
                ..GigQuery::default()
            },
        )
        .walking(),
        board(
            "q=zeppelin skills=sql currency=EUR",
            GigQuery {
                q: Some("zeppelin".into()),
                skills: vec!["sql".into()],
                currency: Some("EUR".into()),
                ..GigQuery::default()
            },
        )
        .ranking(),
        // A word and a skill common only in old gigs: two matches in every 2 000 newest gigs
        // (fewer than a page), 30 000 (3 000) in old gigs. A page takes at most SELECT_BOUND
        // matches by the filter's index; past that, only its walk's hits, and the next page
        // continues after the walk.
        board(
            "q=telegraph newest (common only in old gigs)",
            GigQuery {
                q: Some("telegraph".into()),
                sort: GigSort::Newest,
                ..GigQuery::default()
            },
        )
        .walking(),
        board_all(
            "q=telegraph newest (common only in old gigs)",
            GigQuery {
                q: Some("telegraph".into()),
                sort: GigSort::Newest,
                limit: Some(100),
                ..GigQuery::default()
            },
            30_200,
        )
        .walking_to_the_end(),
        // Relevance ranks the matches among the newest RANK_WALK gigs: one in every 1 000.
        board(
            "q=telegraph by relevance (common only in old gigs)",
            GigQuery {
                q: Some("telegraph".into()),
                ..GigQuery::default()
            },
        )
        .ranking(),
        board_all(
            "q=telegraph by relevance (common only in old gigs)",
            GigQuery {
                q: Some("telegraph".into()),
                ..GigQuery::default()
            },
            usize::try_from(RANK_WALK / 1_000).expect("positive"),
        )
        .ranking(),
        board(
            "skills=fortran currency=USD (common only in old gigs)",
            GigQuery {
                skills: vec!["fortran".into()],
                currency: usd(),
                ..GigQuery::default()
            },
        )
        .walking(),
        board_all(
            "skills=fortran currency=USD (common only in old gigs)",
            GigQuery {
                skills: vec!["fortran".into()],
                currency: usd(),
                limit: Some(100),
                ..GigQuery::default()
            },
            3_200,
        )
        .walking(),
        board_all(
            "skills=fortran status=open (common only in old gigs)",
            GigQuery {
                skills: vec!["fortran".into()],
                status: Some(GigStatus::Open),
                limit: Some(100),
                ..GigQuery::default()
            },
            3_200,
        )
        .walking(),
        // None among the newest gigs: the first pages are empty, with a next cursor.
        board_all(
            "currency=USD min_budget only old gigs reach",
            GigQuery {
                currency: usd(),
                min_budget: Some(5_000_000),
                max_budget: Some(9_000_000),
                limit: Some(100),
                ..GigQuery::default()
            },
            3_000,
        )
        .walking(),
        board_all(
            "currency=USD max_budget only old gigs reach",
            GigQuery {
                currency: usd(),
                max_budget: Some(4_000),
                limit: Some(100),
                ..GigQuery::default()
            },
            3_000,
        )
        .walking(),
        case("gigs_of_client", |pool| async move {
            Ok(gig_board::gigs_of_client(&pool, client(), None, None, None)
                .await?
                .items
                .len())
        }),
        case("gigs_of_client status=open", |pool| async move {
            Ok(
                gig_board::gigs_of_client(&pool, client(), Some(GigStatus::Open), None, None)
                    .await?
                    .items
                    .len(),
            )
        }),
        case("hired_contract", |pool| async move {
            Ok(usize::from(
                gig_board::hired_contract(&pool, GigId(tid(1, 11)), UserId(tid(2, 11)))
                    .await?
                    .is_none(),
            ))
        }),
        case("get_gig", |pool| async move {
            Ok(gig_board::get_gig(&pool, GigId(tid(1, 77)))
                .await?
                .iter()
                .count())
        }),
        // Proposals: first pages and pages deep in long listings.
        case("proposals_of_gig first page", |pool| async move {
            Ok(proposals::proposals_of_gig(&pool, busy_gig(), None, None)
                .await?
                .items
                .len())
        }),
        case("proposals_of_gig deep", |pool| async move {
            Ok(
                proposals::proposals_of_gig(&pool, busy_gig(), Some("p.190000"), None)
                    .await?
                    .items
                    .len(),
            )
        }),
        case("proposals_of_freelancer first page", |pool| async move {
            Ok(
                proposals::proposals_of_freelancer(&pool, freelancer(), None, None)
                    .await?
                    .items
                    .len(),
            )
        }),
        case("proposals_of_freelancer deep", |pool| async move {
            Ok(
                proposals::proposals_of_freelancer(&pool, freelancer(), Some("p.10000"), None)
                    .await?
                    .items
                    .len(),
            )
        }),
        case("get_proposal", |pool| async move {
            Ok(proposals::get_proposal(&pool, ProposalId(tid(4, 99)))
                .await?
                .iter()
                .count())
        }),
        // Contracts: two index scans (client, freelancer) of a page each, merged.
        case("contracts_of_user first page", |pool| async move {
            Ok(contracts::contracts_of_user(&pool, client(), None, None)
                .await?
                .items
                .len())
        })
        .sorting(2 * PAGE),
        case("contracts_of_user deep", |pool| async move {
            Ok(
                contracts::contracts_of_user(&pool, client(), Some("c.5000"), None)
                    .await?
                    .items
                    .len(),
            )
        })
        .sorting(2 * PAGE),
        case("dispute_queue open", |pool| async move {
            Ok(
                contracts::dispute_queue(&pool, Some(contracts::DisputeStatus::Open), None, None)
                    .await?
                    .items
                    .len(),
            )
        }),
        case("dispute_queue every status", |pool| async move {
            Ok(contracts::dispute_queue(&pool, None, None, None)
                .await?
                .items
                .len())
        }),
        case("get_contract", |pool| async move {
            Ok(contracts::get_contract(&pool, ContractId(tid(5, 42)))
                .await?
                .iter()
                .count())
        }),
        // The ledger.
        case("entries_of_contract first page", |pool| async move {
            Ok(
                ledger::entries_of_contract(&pool, busy_contract(), None, None)
                    .await?
                    .items
                    .len(),
            )
        }),
        case("entries_of_contract deep", |pool| async move {
            Ok(
                ledger::entries_of_contract(&pool, busy_contract(), Some("l.140000.1"), None)
                    .await?
                    .items
                    .len(),
            )
        }),
        case("trial_balance of a contract", |pool| async move {
            Ok(ledger::trial_balance(&pool, Some(ContractId(tid(5, 42))))
                .await?
                .len())
        })
        .sorting(1_000),
        case("contract_totals", |pool| async move {
            Ok(ledger::contract_totals(&pool, ContractId(tid(5, 42)))
                .await?
                .iter()
                .count())
        }),
        // Whole-ledger reports (platform totals): they read every line by design.
        case("trial_balance of the platform", |pool| async move {
            Ok(ledger::trial_balance(&pool, None).await?.len())
        })
        .reading_whole(&["ledger_entries"])
        .sorting(u64::MAX),
        case("totals_by_currency", |pool| async move {
            Ok(ledger::totals_by_currency(&pool).await?.len())
        })
        .reading_whole(&["ledger_entries"])
        .sorting(u64::MAX)
        .discarding(u64::MAX),
        // Notifications.
        case("notifications_of first page", |pool| async move {
            Ok(
                notifications::notifications_of(&pool, notified(), None, None)
                    .await?
                    .items
                    .len(),
            )
        }),
        case("notifications_of deep", |pool| async move {
            Ok(
                notifications::notifications_of(&pool, notified(), Some("n.290000.290000"), None)
                    .await?
                    .items
                    .len(),
            )
        }),
        case("notifications_newest_first", |pool| async move {
            Ok(
                notifications::notifications_newest_first(&pool, notified(), false, None, None)
                    .await?
                    .items
                    .len(),
            )
        }),
        case("notifications_newest_first unread", |pool| async move {
            Ok(
                notifications::notifications_newest_first(&pool, notified(), true, None, None)
                    .await?
                    .items
                    .len(),
            )
        }),
        case("unread_count", |pool| async move {
            Ok(usize::try_from(notifications::unread_count(&pool, notified()).await?).unwrap_or(0))
        }),
        case("mark_read_up_to", |pool| async move {
            let up_to = format!("280002-280002-{}", notified().0);
            notifications::mark_read_up_to(&pool, notified(), &up_to).await?;
            Ok(1)
        }),
        // The profile.
        case("profile", |pool| async move {
            Ok(user_stats::profile(&pool, UserId(tid(7, 5)))
                .await?
                .earnings
                .len())
        }),
        // Analytics over a month (their sorts are of the month's rows, not of pages).
        case("daily_volumes", |pool| async move {
            Ok(analytics::daily_volumes(&pool, march(1), march(31))
                .await?
                .len())
        })
        .sorting(1_000),
        case("gmv by week in USD", |pool| async move {
            Ok(analytics::gmv(
                &pool,
                march(1),
                march(31),
                analytics::Interval::Week,
                Some("USD"),
            )
            .await?
            .len())
        })
        .sorting(1_000),
        case("funnel", |pool| async move {
            Ok(usize::from(
                analytics::funnel(&pool, march(1), march(31)).await?.posted > 0,
            ))
        }),
        case("time_to_hire", |pool| async move {
            Ok(usize::from(
                analytics::time_to_hire(&pool, march(1), march(31))
                    .await?
                    .hires
                    > 0,
            ))
        })
        .sorting(50_000),
        case("disputes", |pool| async move {
            let stats = analytics::disputes(&pool, march(1), march(31)).await?;
            Ok(usize::try_from(stats.opened).unwrap_or(0))
        }),
        case("skills", |pool| async move {
            Ok(analytics::skills(&pool, march(1), march(31)).await?.len())
        })
        .sorting(1_000),
        case("skills_by_day", |pool| async move {
            Ok(analytics::skills_by_day(&pool, march(1), march(31))
                .await?
                .len())
        })
        .sorting(1_000),
    ]
}

#[sqlx::test(migrator = "gigledger_projections::MIGRATOR")]
async fn no_read_function_scans_a_large_table_or_sorts_more_than_its_page_in_any_plan_mode(
    _: PgPoolOptions,
    connect: PgConnectOptions,
) {
    install_collector();
    let filler = PgPoolOptions::new()
        .max_connections(1)
        .connect_with(connect.clone())
        .await
        .expect("connects");
    filler
        .execute(sqlx::raw_sql(FILL))
        .await
        .expect("the read tables fill");
    let large: Vec<String> = sqlx::query_scalar(
        "select relname::text from pg_class
          where relnamespace = 'read'::regnamespace and relkind = 'r' and reltuples >= 10000",
    )
    .fetch_all(&filler)
    .await
    .expect("table sizes");
    assert!(large.len() >= 15, "the tables were filled: {large:?}");
    filler.close().await;

    let mut failures = Vec::new();
    for mode in [Mode::Generic, Mode::Custom] {
        let pool = explaining_pool(connect.clone(), mode).await;
        let setting: String = sqlx::query_scalar("show plan_cache_mode")
            .fetch_one(&pool)
            .await
            .expect("shows");
        assert_eq!(setting, mode.setting());
        for case in cases() {
            take_plans();
            let found = (case.run)(pool.clone())
                .await
                .unwrap_or_else(|e| panic!("{}: {e}", case.name));
            assert!(found > 0, "{} ({mode:?}) found nothing to read", case.name);
            let plans = take_plans();
            assert!(
                !plans.is_empty(),
                "{} ({mode:?}): no plan was collected",
                case.name
            );
            for plan in &plans {
                let mut wrong = Vec::new();
                violations(&case, &large, &plan["Plan"], &mut wrong);
                if !wrong.is_empty() {
                    failures.push(format!(
                        "{} ({mode:?}): {}\n  {}\n{}",
                        case.name,
                        wrong.join("; "),
                        plan["Query Text"].as_str().unwrap_or_default().trim(),
                        serde_json::to_string_pretty(&plan["Plan"]).unwrap_or_default()
                    ));
                }
            }
        }
        pool.close().await;
    }
    assert!(
        failures.is_empty(),
        "{} plans do what they may not:\n\n{}",
        failures.len(),
        failures.join("\n\n")
    );
}
