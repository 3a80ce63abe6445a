//! Generated hostile bodies against every command route (issue 14, part): whatever JSON comes
//! in (wrong types, missing and unknown fields, huge, negative and fractional numbers, `i64`
//! extremes, odd currencies, long, control-character and non-ASCII strings, nesting), the answer
//! is a 2xx or a 4xx problem+json, never a 5xx, and a refusal writes nothing.

use gigledger_api::routes::{table, PROVIDER, PUBLIC};
use gigledger_api::settings::HttpSettings;
use gigledger_tests::http::TestApi;
use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::TestRunner;
use reqwest::Method;
use serde_json::{json, Map, Value};
use sqlx::PgPool;

/// How many generated bodies each route gets.
const CASES_PER_ROUTE: usize = 24;

/// Field names the routes know, so that generated objects reach past "unknown field".
const FIELDS: &[&str] = &[
    "title",
    "description",
    "skills",
    "budget",
    "kind",
    "amount",
    "currency",
    "min",
    "max",
    "cover_letter",
    "milestones",
    "note",
    "reason",
    "rating",
    "text",
    "milestone_id",
    "release",
    "refund",
    "up_to",
    "provider",
    "account_id",
];

fn leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        prop_oneof![
            Just(i64::MAX),
            Just(i64::MIN),
            Just(0_i64),
            Just(-1),
            Just(10_000_000_000_001),
            any::<i64>()
        ]
        .prop_map(|n| json!(n)),
        prop_oneof![Just(1e300_f64), Just(-0.5_f64), Just(10.5_f64)].prop_map(|f| json!(f)),
        prop_oneof![
            Just("USD".to_owned()),
            Just("XXX".to_owned()),
            Just(String::new()),
            Just("\u{1}\u{7f}".to_owned()),
            Just("é🎉".to_owned()),
            Just("x".repeat(20_000)),
            "[a-z]{1,12}",
        ]
        .prop_map(Value::String),
    ]
}

fn body() -> impl Strategy<Value = Value> {
    leaf().prop_recursive(4, 40, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::vec((prop::sample::select(FIELDS), inner), 0..8).prop_map(|pairs| {
                let mut map = Map::new();
                for (k, v) in pairs {
                    map.insert((*k).to_owned(), v);
                }
                Value::Object(map)
            }),
        ]
    })
}

#[sqlx::test(migrator = "gigledger_projections::MIGRATOR")]
async fn generated_bodies_get_a_2xx_or_a_4xx_problem_and_refusals_write_nothing(pool: PgPool) {
    let http = HttpSettings {
        commands_per_minute: 0,
        ..HttpSettings::default()
    };
    let api = TestApi::start_with(pool, http, true).await;
    // Real ids in the paths, so bodies reach the domain's checks, not just a 404.
    let hired = api.hire(&[20_000, 10_000]).await;
    let ids = |segment: &str| -> String {
        match segment {
            "{gig_id}" => hired.gig.clone(),
            "{contract_id}" => hired.contract.clone(),
            "{milestone_id}" => hired.milestones[0].clone(),
            _ => uuid::Uuid::now_v7().to_string(),
        }
    };
    let mut runner = TestRunner::deterministic();
    let strategy = body();
    for route in table().routes() {
        if route.method == "GET" || route.who == PUBLIC || route.who == PROVIDER {
            continue;
        }
        let path = route
            .path
            .split('/')
            .map(|s| {
                if s.starts_with('{') {
                    ids(s)
                } else {
                    s.to_owned()
                }
            })
            .collect::<Vec<_>>()
            .join("/");
        let method = Method::from_bytes(route.method.as_bytes()).expect("a method");
        // Whoever may call it (a party where one is needed), so the role gate is passed.
        let caller = if route.path.contains("/submit")
            || route.path.ends_with("/proposals")
            || route.path.contains("withdraw")
            || route.path.contains("payout")
        {
            &hired.freelancer
        } else {
            &hired.client
        };
        for _ in 0..CASES_PER_ROUTE {
            let generated = strategy.new_tree(&mut runner).expect("a value").current();
            let before = api.events_by_users().await;
            let answer = api
                .send(
                    method.clone(),
                    &path,
                    Some(&caller.token),
                    Some(&generated),
                    &[],
                )
                .await;
            let shown = generated.to_string();
            let shown = &shown[..shown.len().min(200)];
            assert!(
                !answer.status.is_server_error(),
                "{} {} with {shown}: {} {:?}",
                route.method,
                route.path,
                answer.status,
                answer.json()
            );
            if answer.status.is_client_error() {
                assert_eq!(
                    answer.header("content-type"),
                    Some("application/problem+json"),
                    "{} {} with {shown}",
                    route.method,
                    route.path
                );
                assert_eq!(
                    api.events_by_users().await,
                    before,
                    "{} {} with {shown}: refused, yet written",
                    route.method,
                    route.path
                );
            }
        }
    }
    api.stop().await;
}
