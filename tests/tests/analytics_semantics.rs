//! What the analytics figures mean (issue 8, items 10, 11 and 13): every figure of a gig under
//! its current skills and currency; GMV as every period of the range with its real bounds;
//! the funnel's exact rates, and which set the funnel and time to hire are computed over.

use std::collections::BTreeMap;

use chrono::{Duration, NaiveDate, TimeZone, Utc};
use gigledger_domain::{
    Actor, Budget, ContractCommand, ContractId, Currency, EscrowCommand, GigCommand, GigId,
    MilestoneId, MilestoneTerms, Money, ProposalId, Role,
};
use gigledger_projections::read::analytics::{self, GmvPeriod, GmvTotals, Interval, Rate};
use gigledger_projections::read::{self, ReadError};
use gigledger_projections::runtime::{catch_up, Target};
use gigledger_tests::world::{person, CommandWorld};
use sqlx::PgPool;

/// The shared command fixture, with this file's steps on top.
struct World(CommandWorld);

impl std::ops::Deref for World {
    type Target = CommandWorld;
    fn deref(&self) -> &CommandWorld {
        &self.0
    }
}

fn date(y: i32, m: u32, d: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(y, m, d).expect("a date")
}

fn fixed(amount: i64, currency: Currency) -> Budget {
    Budget::Fixed {
        amount: Money::new(amount, currency),
    }
}

impl World {
    /// The clock starts at 08:00 UTC on `day`.
    fn new(pool: PgPool, day: NaiveDate) -> Self {
        let start = Utc.from_utc_datetime(&day.and_hms_opt(8, 0, 0).expect("a time"));
        Self(CommandWorld::starting_at(pool, start))
    }

    fn next_day(&self) {
        self.clock.advance(Duration::days(1));
    }

    async fn post(&self, client: &Actor, skills: &[&str], budget: Budget) -> GigId {
        let gig = GigId::new();
        self.gig(
            gig,
            GigCommand::PostGig {
                gig_id: gig,
                title: "A gig".into(),
                description: "Something to do.".into(),
                skills: skills.iter().map(|s| (*s).to_owned()).collect(),
                budget,
                deadline: None,
                actor: client.clone(),
                at: self.now(),
            },
        )
        .await;
        gig
    }

    async fn revise(
        &self,
        gig: GigId,
        client: &Actor,
        skills: Option<&[&str]>,
        budget: Option<Budget>,
    ) {
        self.gig(
            gig,
            GigCommand::ReviseGig {
                title: None,
                description: None,
                skills: skills.map(|s| s.iter().map(|s| (*s).to_owned()).collect()),
                budget,
                deadline: None,
                actor: client.clone(),
                at: self.now(),
            },
        )
        .await;
    }

    /// A new freelancer's proposal of one milestone.
    async fn propose(&self, gig: GigId, amount: Money) -> (Actor, ProposalId, MilestoneId) {
        let freelancer = person(Role::Freelancer);
        let proposal = ProposalId::new();
        let milestone = MilestoneId::new();
        self.gig(
            gig,
            GigCommand::SubmitProposal {
                proposal_id: proposal,
                cover_letter: "I can do it.".into(),
                milestones: vec![MilestoneTerms {
                    milestone_id: milestone,
                    title: "All of it".into(),
                    amount,
                    due_date: None,
                }],
                actor: freelancer.clone(),
                at: self.now(),
            },
        )
        .await;
        (freelancer, proposal, milestone)
    }

    async fn accept(&self, gig: GigId, client: &Actor, proposal: ProposalId) -> ContractId {
        let contract = ContractId::new();
        self.gig(
            gig,
            GigCommand::AcceptProposal {
                proposal_id: proposal,
                contract_id: contract,
                fee_bps: 1_000,
                review_window_days: 14,
                max_revisions: 2,
                actor: client.clone(),
                at: self.now(),
            },
        )
        .await;
        contract
    }

    /// Funds, submits and approves the milestone: its money is released now.
    async fn pay(
        &self,
        contract: ContractId,
        client: &Actor,
        freelancer: &Actor,
        milestone: MilestoneId,
    ) {
        let deposit = EscrowCommand::Deposit {
            milestone_id: milestone,
            idempotency_key: format!("{contract}:{milestone}"),
            actor: client.clone(),
            at: self.now(),
        };
        self.escrow(contract, deposit).await;
        for command in [
            ContractCommand::SubmitMilestone {
                milestone_id: milestone,
                note: "Delivered.".into(),
                links: vec![],
                actor: freelancer.clone(),
                at: self.now(),
            },
            ContractCommand::ApproveMilestone {
                milestone_id: milestone,
                actor: client.clone(),
                at: self.now(),
            },
        ] {
            if let Err(e) = self.services.contract(contract, command, &self.ctx).await {
                panic!("the contract command failed: {e}");
            }
        }
    }

    async fn catch_up_analytics(&self) {
        for handler in read::all() {
            let target = Target::live(handler.name());
            if let Err(e) = catch_up(&self.pool, handler.as_ref(), &target, 3).await {
                panic!("{} failed to catch up: {e}", handler.name());
            }
        }
    }
}

/// `(gigs, proposals)` per skill over the range.
async fn skills(pool: &PgPool, from: NaiveDate, to: NaiveDate) -> BTreeMap<String, (i64, i64)> {
    analytics::skills(pool, from, to)
        .await
        .expect("reads")
        .into_iter()
        .map(|s| (s.skill, (s.gigs, s.proposals)))
        .collect()
}

/// `(gigs_posted, proposals, hires)` per (day, currency) over the range.
async fn daily(
    pool: &PgPool,
    from: NaiveDate,
    to: NaiveDate,
) -> BTreeMap<(NaiveDate, String), (i64, i64, i64)> {
    analytics::daily_volumes(pool, from, to)
        .await
        .expect("reads")
        .into_iter()
        .map(|v| ((v.day, v.currency), (v.gigs_posted, v.proposals, v.hires)))
        .collect()
}

async fn analytics_rows(pool: &PgPool) -> Vec<String> {
    let mut all = Vec::new();
    for table in read::tables_of("analytics").expect("analytics") {
        let rows: Vec<String> = sqlx::query_scalar(&format!(
            "select '{table} ' || to_jsonb(t)::text from read.{table} t order by 1"
        ))
        .fetch_all(pool)
        .await
        .expect("reads");
        all.extend(rows);
    }
    all
}

#[sqlx::test(migrator = "gigledger_projections::MIGRATOR")]
async fn every_figure_of_a_revised_gig_counts_under_its_current_skills_and_currency(pool: PgPool) {
    let (d1, d2) = (date(2026, 11, 16), date(2026, 11, 17));
    let world = World::new(pool.clone(), d1);
    let client = person(Role::Client);
    let usd = |amount| Money::new(amount, Currency::USD);

    // Day 1: a gig for html and css, four proposals; a gig in EUR (a currency changes only
    // before any proposal).
    let web = world
        .post(&client, &["html", "css"], fixed(10_000, Currency::USD))
        .await;
    for _ in 0..4 {
        world.propose(web, usd(9_000)).await;
    }
    let design = world
        .post(&client, &["design"], fixed(5_000, Currency::EUR))
        .await;
    world.catch_up_analytics().await;

    // Day 2: the first becomes css and rust (html dropped, css kept), six more proposals; the
    // second moves to USD and hires.
    world.next_day();
    world
        .revise(web, &client, Some(&["css", "rust"]), None)
        .await;
    for _ in 0..6 {
        world.propose(web, usd(9_500)).await;
    }
    world
        .revise(design, &client, None, Some(fixed(6_000, Currency::USD)))
        .await;
    let (_, hired, _) = world.propose(design, usd(6_000)).await;
    world.accept(design, &client, hired).await;
    world.catch_up_analytics().await;

    assert_eq!(
        skills(&pool, d1, d2).await,
        BTreeMap::from([
            ("css".to_owned(), (1, 10)),
            ("design".to_owned(), (1, 1)),
            ("rust".to_owned(), (1, 10)),
        ])
    );
    // Per day too: the posting and the first four proposals moved on day 1.
    let by_day: Vec<(NaiveDate, String, i64, i64)> = analytics::skills_by_day(&pool, d1, d2)
        .await
        .expect("reads")
        .into_iter()
        .map(|s| (s.day, s.skill, s.gigs, s.proposals))
        .collect();
    assert_eq!(
        by_day,
        [
            (d1, "css".to_owned(), 1, 4),
            (d1, "design".to_owned(), 1, 0),
            (d1, "rust".to_owned(), 1, 4),
            (d2, "css".to_owned(), 0, 6),
            (d2, "design".to_owned(), 0, 1),
            (d2, "rust".to_owned(), 0, 6),
        ]
    );
    // Nothing is left in EUR: the gig, its proposal and its hire all count in USD.
    assert_eq!(
        daily(&pool, d1, d2).await,
        BTreeMap::from([
            ((d1, "USD".to_owned()), (2, 4, 0)),
            ((d2, "USD".to_owned()), (0, 7, 1)),
        ])
    );

    // A rebuild from zero gives the same rows as the model built while events arrived.
    let before = analytics_rows(&pool).await;
    let handler = read::all()
        .into_iter()
        .find(|h| h.name() == "analytics")
        .expect("analytics");
    let tables = read::tables_of("analytics").expect("analytics");
    gigledger_projections::rebuild::rebuild(&pool, handler.as_ref(), tables, 2)
        .await
        .expect("rebuilds");
    assert_eq!(analytics_rows(&pool).await, before);
}

fn period(start: NaiveDate, end: NaiveDate, totals: &[(&str, i128, i128)]) -> GmvPeriod {
    GmvPeriod {
        start,
        end,
        totals: totals
            .iter()
            .map(|(currency, gmv, fees)| GmvTotals {
                currency: (*currency).to_owned(),
                gmv_released: *gmv,
                fees: *fees,
                refunds: 0,
                paid_out: 0,
                refunded_to_card: 0,
            })
            .collect(),
    }
}

#[sqlx::test(migrator = "gigledger_projections::MIGRATOR")]
async fn gmv_lists_every_period_of_the_range_with_its_real_bounds_zeros_included(pool: PgPool) {
    // 10 000 USD released on Wednesday 25 November 2026; nothing else moves.
    let paid_on = date(2026, 11, 25);
    let world = World::new(pool.clone(), paid_on);
    let client = person(Role::Client);
    let gig = world
        .post(&client, &["rust"], fixed(10_000, Currency::USD))
        .await;
    let (freelancer, proposal, milestone) =
        world.propose(gig, Money::new(10_000, Currency::USD)).await;
    let contract = world.accept(gig, &client, proposal).await;
    world.pay(contract, &client, &freelancer, milestone).await;
    world.catch_up_analytics().await;

    // From a Wednesday to a Tuesday: two partial ISO weeks at the ends, labelled with the days
    // of the range they cover, and the empty weeks between.
    let (from, to) = (date(2026, 11, 18), date(2026, 12, 8));
    let weeks = analytics::gmv(&pool, from, to, Interval::Week, None)
        .await
        .expect("reads");
    assert_eq!(
        weeks,
        [
            period(from, date(2026, 11, 22), &[("USD", 0, 0)]),
            period(
                date(2026, 11, 23),
                date(2026, 11, 29),
                &[("USD", 10_000, 1_000)]
            ),
            period(date(2026, 11, 30), date(2026, 12, 6), &[("USD", 0, 0)]),
            period(date(2026, 12, 7), to, &[("USD", 0, 0)]),
        ]
    );
    let months = analytics::gmv(&pool, from, to, Interval::Month, None)
        .await
        .expect("reads");
    assert_eq!(
        months,
        [
            period(from, date(2026, 11, 30), &[("USD", 10_000, 1_000)]),
            period(date(2026, 12, 1), to, &[("USD", 0, 0)]),
        ]
    );
    let days = analytics::gmv(&pool, from, to, Interval::Day, None)
        .await
        .expect("reads");
    assert_eq!(days.len(), 21);
    for (n, day) in days.iter().enumerate() {
        let expected = from + Duration::days(i64::try_from(n).expect("small"));
        let gmv = if expected == paid_on { 10_000 } else { 0 };
        let fees = gmv / 10;
        assert_eq!(day, &period(expected, expected, &[("USD", gmv, fees)]));
    }

    // The currency asked for has its series even where it never moved money.
    let eur = analytics::gmv(&pool, from, to, Interval::Month, Some("eur"))
        .await
        .expect("reads");
    assert_eq!(
        eur,
        [
            period(from, date(2026, 11, 30), &[("EUR", 0, 0)]),
            period(date(2026, 12, 1), to, &[("EUR", 0, 0)]),
        ]
    );
    // A range where no money moved still lists its periods, with no currency in them.
    let quiet = analytics::gmv(
        &pool,
        date(2027, 1, 1),
        date(2027, 1, 3),
        Interval::Day,
        None,
    )
    .await
    .expect("reads");
    assert_eq!(
        quiet,
        [
            period(date(2027, 1, 1), date(2027, 1, 1), &[]),
            period(date(2027, 1, 2), date(2027, 1, 2), &[]),
            period(date(2027, 1, 3), date(2027, 1, 3), &[]),
        ]
    );
    // One day inside a week is a period of one day.
    let one = analytics::gmv(&pool, paid_on, paid_on, Interval::Week, Some("USD"))
        .await
        .expect("reads");
    assert_eq!(one, [period(paid_on, paid_on, &[("USD", 10_000, 1_000)])]);
    // The number of periods is bounded.
    let too_long = analytics::gmv(
        &pool,
        date(2000, 1, 1),
        date(2026, 1, 1),
        Interval::Day,
        None,
    )
    .await;
    assert!(matches!(too_long, Err(ReadError::InvalidArgument(_))));
}

#[test]
fn a_rate_is_exact_and_rounds_half_up_in_basis_points() {
    assert_eq!(
        Rate::of(2, 3),
        Rate {
            numerator: 2,
            denominator: 3,
            basis_points: Some(6_667)
        }
    );
    assert_eq!(Rate::of(1, 3).basis_points, Some(3_333));
    assert_eq!(Rate::of(1, 20_000).basis_points, Some(1));
    assert_eq!(Rate::of(1, 20_001).basis_points, Some(0));
    assert_eq!(Rate::of(7, 7).basis_points, Some(10_000));
    assert_eq!(Rate::of(0, 0).basis_points, None);
    assert_eq!(Rate::of(i64::MAX, i64::MAX).basis_points, Some(10_000));
}

#[sqlx::test(migrator = "gigledger_projections::MIGRATOR")]
async fn the_funnel_has_exact_rates_over_gigs_posted_and_time_to_hire_takes_hires_accepted(
    pool: PgPool,
) {
    let (d1, d3) = (date(2026, 11, 16), date(2026, 11, 18));
    let world = World::new(pool.clone(), d1);
    let client = person(Role::Client);
    let usd = |amount| Money::new(amount, Currency::USD);

    // Day 1: three gigs, two with proposals, none hired yet.
    let hired = world
        .post(&client, &["rust"], fixed(10_000, Currency::USD))
        .await;
    let (_, proposal, _) = world.propose(hired, usd(10_000)).await;
    let pending = world
        .post(&client, &["rust"], fixed(10_000, Currency::USD))
        .await;
    world.propose(pending, usd(10_000)).await;
    world
        .post(&client, &["rust"], fixed(10_000, Currency::USD))
        .await;
    // Day 3: the first is hired.
    world.next_day();
    world.next_day();
    world.accept(hired, &client, proposal).await;
    world.catch_up_analytics().await;

    let funnel = analytics::funnel(&pool, d1, d1).await.expect("reads");
    assert_eq!(
        (
            funnel.posted,
            funnel.with_proposals,
            funnel.hired,
            funnel.completed
        ),
        (3, 2, 1, 0)
    );
    assert_eq!(funnel.proposal_rate, Rate::of(2, 3));
    assert_eq!(funnel.proposal_rate.basis_points, Some(6_667));
    assert_eq!(funnel.hire_rate.basis_points, Some(5_000));
    assert_eq!(
        funnel.completion_rate,
        Rate {
            numerator: 0,
            denominator: 1,
            basis_points: Some(0)
        }
    );
    assert_eq!(funnel.posted_to_hired_rate.basis_points, Some(3_333));

    // The funnel's set is the gigs posted in the range; time to hire's is the hires accepted in
    // it: on day 3 the first is empty and the second has the hire.
    let day3 = analytics::funnel(&pool, d3, d3).await.expect("reads");
    assert_eq!(day3.posted, 0);
    assert_eq!(day3.proposal_rate.basis_points, None);
    let hires = analytics::time_to_hire(&pool, d3, d3).await.expect("reads");
    assert_eq!(hires.hires, 1);
    let two_days = 2 * 24 * 3_600;
    assert!(hires.p50_seconds.expect("p50") > two_days - 3_600);
    let day1_hires = analytics::time_to_hire(&pool, d1, d1).await.expect("reads");
    assert_eq!(day1_hires.hires, 0);
}
