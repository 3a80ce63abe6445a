//! The analytics routes (JSON) over a known flow, and who may read them.

use gigledger_domain::Role;
use gigledger_tests::http::TestApi;
use reqwest::StatusCode;
use serde_json::{json, Value};
use sqlx::PgPool;

#[sqlx::test(migrator = "gigledger_projections::MIGRATOR")]
async fn analysts_read_figures_of_what_happened_and_nothing_else(pool: PgPool) {
    let api = TestApi::start(pool).await;
    let hired = api.hire(&[20_000]).await;
    api.post(
        &hired.client,
        &format!("{}/fund", hired.milestone_path(0)),
        &json!({}),
    )
    .await;
    api.post(
        &hired.freelancer,
        &format!("{}/submit", hired.milestone_path(0)),
        &json!({ "note": "done" }),
    )
    .await;
    let approved = api
        .post(
            &hired.client,
            &format!("{}/approve", hired.milestone_path(0)),
            &json!({}),
        )
        .await;
    assert_eq!(approved.status, StatusCode::OK);
    let at = approved.position();
    let analyst = api.user(&[Role::Analyst]);
    // Around today (UTC), so a run across midnight counts the same.
    let today = chrono::Utc::now().date_naive();
    let from = today.pred_opt().expect("a day");
    let to = today.succ_opt().expect("a day");

    let gmv = api
        .get_at(
            &analyst,
            &format!("/v1/analytics/gmv?from={from}&to={to}&currency=USD"),
            at,
        )
        .await;
    assert_eq!(gmv.status, StatusCode::OK, "{:?}", gmv.json());
    let periods = gmv.json().as_array().expect("periods").clone();
    assert_eq!(periods.len(), 3, "one per day, zeros included");
    let total = |field: &str| -> i64 {
        periods
            .iter()
            .flat_map(|p| p["totals"].as_array().cloned().unwrap_or_default())
            .map(|t| t[field].as_i64().expect("a sum"))
            .sum()
    };
    // Computed from the flow, not from the same SQL: 20 000 released, 10 % fee, nothing refunded.
    assert_eq!(total("gmv_released"), 20_000);
    assert_eq!(total("fees"), 2_000);
    assert_eq!(total("refunds"), 0);

    let funnel = api
        .get_at(
            &analyst,
            &format!("/v1/analytics/funnel?from={from}&to={to}"),
            at,
        )
        .await;
    assert_eq!(funnel.status, StatusCode::OK);
    assert_eq!(funnel.json()["posted"], 1);
    assert_eq!(funnel.json()["hired"], 1);
    assert_eq!(funnel.json()["completed"], 1);
    let hire = api
        .get_at(
            &analyst,
            &format!("/v1/analytics/time-to-hire?from={from}&to={to}"),
            at,
        )
        .await;
    assert_eq!(hire.json()["hires"], 1);
    for path in ["disputes", "skills"] {
        let answer = api
            .get_at(
                &analyst,
                &format!("/v1/analytics/{path}?from={from}&to={to}"),
                at,
            )
            .await;
        assert_eq!(answer.status, StatusCode::OK, "{path}: {:?}", answer.json());
        assert_ne!(answer.json(), Value::Null);
    }

    // The same figures as CSV, read back with a CSV reader.
    let csv_of = |path: String| {
        let api = &api;
        let analyst = &analyst;
        async move {
            let position = at.to_string();
            let answer = api
                .send(
                    reqwest::Method::GET,
                    &path,
                    Some(&analyst.token),
                    None,
                    &[
                        ("accept", "text/csv"),
                        ("x-min-position", position.as_str()),
                    ],
                )
                .await;
            assert_eq!(answer.status, StatusCode::OK, "{path}");
            assert!(answer
                .header("content-type")
                .is_some_and(|c| c.starts_with("text/csv")));
            assert!(answer.header("x-position").is_some());
            let mut reader = csv::Reader::from_reader(answer.bytes.as_slice());
            let header: Vec<String> = reader
                .headers()
                .expect("a header")
                .iter()
                .map(str::to_owned)
                .collect();
            let rows: Vec<Vec<String>> = reader
                .records()
                .map(|r| r.expect("a record").iter().map(str::to_owned).collect())
                .collect();
            (header, rows)
        }
    };
    let (header, rows) = csv_of(format!(
        "/v1/analytics/gmv?from={from}&to={to}&currency=USD"
    ))
    .await;
    assert_eq!(
        header,
        [
            "start",
            "end",
            "currency",
            "gmv_released",
            "fees",
            "refunds",
            "paid_out",
            "refunded_to_card"
        ]
    );
    assert_eq!(rows.len(), 3);
    let sum = |column: usize| -> i64 {
        rows.iter()
            .map(|r| r[column].parse::<i64>().expect("a number"))
            .sum()
    };
    assert_eq!((sum(3), sum(4), sum(5)), (20_000, 2_000, 0));
    assert_eq!(
        (sum(6), sum(7)),
        (0, 0),
        "nothing paid out or refunded to a card yet"
    );
    let (header, rows) = csv_of(format!("/v1/analytics/funnel?from={from}&to={to}")).await;
    assert_eq!(
        &header[..4],
        ["posted", "with_proposals", "hired", "completed"]
    );
    assert_eq!(&rows[0][..4], ["1", "1", "1", "1"]);
    let skills_json = api
        .get_at(
            &analyst,
            &format!("/v1/analytics/skills?from={from}&to={to}"),
            at,
        )
        .await
        .json();
    let (header, rows) = csv_of(format!("/v1/analytics/skills?from={from}&to={to}")).await;
    assert_eq!(header, ["skill", "gigs", "proposals"]);
    let from_json: Vec<Vec<String>> = skills_json
        .as_array()
        .expect("skills")
        .iter()
        .map(|s| {
            vec![
                s["skill"].as_str().expect("skill").to_owned(),
                s["gigs"].to_string(),
                s["proposals"].to_string(),
            ]
        })
        .collect();
    assert_eq!(rows, from_json);
    for path in ["time-to-hire", "disputes"] {
        let (header, rows) = csv_of(format!("/v1/analytics/{path}?from={from}&to={to}")).await;
        assert!(
            !header.is_empty() && rows.len() == 1,
            "{path}: {header:?} {rows:?}"
        );
    }

    // Bad input is a problem naming the parameter.
    let bad = api
        .get(&analyst, "/v1/analytics/gmv?interval=fortnight")
        .await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    assert_eq!(bad.error_fields(), vec!["interval"]);
    let backwards = api
        .get(
            &analyst,
            &format!("/v1/analytics/funnel?from={to}&to={from}"),
        )
        .await;
    assert_eq!(
        backwards.status,
        StatusCode::BAD_REQUEST,
        "{:?}",
        backwards.json()
    );

    // An analyst reads no payloads: not the audit log, not a contract, not a gig's proposals.
    let forbidden = api.get(&analyst, "/v1/audit/events").await;
    assert_eq!(forbidden.status, StatusCode::FORBIDDEN);
    let contract = api.get(&analyst, &hired.contract_path()).await;
    assert_eq!(contract.status, StatusCode::NOT_FOUND);
    let proposals = api
        .get_at(
            &analyst,
            &format!("/v1/gigs/{}/proposals", hired.gig),
            hired.position,
        )
        .await;
    assert_eq!(proposals.status, StatusCode::FORBIDDEN);
    // ... and nobody else reads analytics.
    for role in [Role::Client, Role::Freelancer, Role::Auditor] {
        let user = api.user(&[role]);
        let answer = api.get(&user, "/v1/analytics/funnel").await;
        assert_eq!(answer.status, StatusCode::FORBIDDEN, "{role:?}");
        assert_eq!(answer.problem_type(), "/problems/forbidden");
    }
    api.stop().await;
}
