//! Races over HTTP (issue 14, part): many clients at once on one milestone, one gig, one
//! contract: exactly one effect each time, money counted once, the ledger balanced.

use std::sync::Arc;

use gigledger_domain::Role;
use gigledger_tests::http::{assert_trial_balance_is_zero, proposal_body, TestApi};
use reqwest::{Method, StatusCode};
use serde_json::json;
use sqlx::PgPool;

/// Sends `n` copies of one request at once, each with its own idempotency key, spread over
/// `servers` in turn (one server, or several on one database), and returns the statuses.
async fn at_once(
    servers: &[&Arc<TestApi>],
    n: usize,
    token: &str,
    path: &str,
    body: serde_json::Value,
) -> Vec<StatusCode> {
    let mut sent = Vec::new();
    for i in 0..n {
        let (api, token, path, body) = (
            servers[i % servers.len()].clone(),
            token.to_owned(),
            path.to_owned(),
            body.clone(),
        );
        sent.push(tokio::spawn(async move {
            let key = format!("race-{}-{i}", uuid::Uuid::now_v7());
            api.send(
                Method::POST,
                &path,
                Some(&token),
                Some(&body),
                &[("idempotency-key", key.as_str())],
            )
            .await
            .status
        }));
    }
    let mut statuses = Vec::new();
    for s in sent {
        statuses.push(s.await.expect("a request"));
    }
    statuses
}

fn assert_only(statuses: &[StatusCode], allowed: &[StatusCode]) {
    for status in statuses {
        assert!(
            allowed.contains(status),
            "{status} among {statuses:?} (never a 5xx but a 503 to retry)"
        );
    }
}

#[sqlx::test(migrator = "gigledger_projections::MIGRATOR")]
async fn fifty_fundings_with_different_keys_charge_once_and_fifty_approvals_release_once(
    pool: PgPool,
) {
    let api = Arc::new(TestApi::start(pool.clone()).await);
    let hired = api.hire(&[20_000]).await;
    let milestone = hired.milestone_path(0);
    let statuses = at_once(
        &[&api],
        50,
        &hired.client.token,
        &format!("{milestone}/fund"),
        json!({}),
    )
    .await;
    assert_only(
        &statuses,
        &[
            StatusCode::OK,
            StatusCode::CONFLICT,
            StatusCode::SERVICE_UNAVAILABLE,
        ],
    );
    assert!(statuses.contains(&StatusCode::OK), "{statuses:?}");
    assert_eq!(api.events_of_type("FundsDeposited").await, 1);
    assert_eq!(api.charges().await, 1, "one charge at the provider");

    let submitted = api
        .post(
            &hired.freelancer,
            &format!("{milestone}/submit"),
            &json!({ "note": "done" }),
        )
        .await;
    assert_eq!(submitted.status, StatusCode::OK);
    let statuses = at_once(
        &[&api],
        50,
        &hired.client.token,
        &format!("{milestone}/approve"),
        json!({}),
    )
    .await;
    assert_only(
        &statuses,
        &[
            StatusCode::OK,
            StatusCode::CONFLICT,
            StatusCode::SERVICE_UNAVAILABLE,
        ],
    );
    assert!(statuses.contains(&StatusCode::OK), "{statuses:?}");
    assert_eq!(api.events_of_type("MilestoneApproved").await, 1);
    assert_eq!(api.events_of_type("FundsReleased").await, 1);
    assert_eq!(api.events_of_type("EarningsCredited").await, 1);
    let auditor = api.user(&[Role::Auditor]);
    let reconciled = api.get(&auditor, "/v1/audit/reconcile").await.json();
    assert_eq!(reconciled["ok"], true, "{reconciled:?}");
    let api = Arc::into_inner(api).expect("the only handle");
    api.stop().await;
    // Every line the workers wrote by now still balances.
    assert_trial_balance_is_zero(&pool).await;
}

#[sqlx::test(migrator = "gigledger_projections::MIGRATOR")]
async fn concurrent_accepts_of_different_proposals_on_one_gig_start_one_contract(pool: PgPool) {
    let api = Arc::new(TestApi::start(pool.clone()).await);
    let client = api.user(&[Role::Client]);
    let posted = api
        .post(
            &client,
            "/v1/gigs",
            &gigledger_tests::http::gig_body("Contested", 30_000),
        )
        .await;
    assert_eq!(posted.status, StatusCode::CREATED);
    let gig = posted.json()["id"].as_str().expect("a gig").to_owned();
    let mut proposals = Vec::new();
    for _ in 0..10 {
        let freelancer = api.user(&[Role::Freelancer]);
        let proposed = api
            .post(
                &freelancer,
                &format!("/v1/gigs/{gig}/proposals"),
                &proposal_body(&[30_000]),
            )
            .await;
        assert_eq!(proposed.status, StatusCode::CREATED);
        proposals.push(proposed.json()["id"].as_str().expect("an id").to_owned());
    }
    let mut sent = Vec::new();
    for proposal in &proposals {
        let (api, token, path) = (
            api.clone(),
            client.token.clone(),
            format!("/v1/gigs/{gig}/proposals/{proposal}/accept"),
        );
        sent.push(tokio::spawn(async move {
            api.send(Method::POST, &path, Some(&token), Some(&json!({})), &[])
                .await
                .status
        }));
    }
    let mut statuses = Vec::new();
    for s in sent {
        statuses.push(s.await.expect("a request"));
    }
    assert_only(
        &statuses,
        &[
            StatusCode::CREATED,
            StatusCode::CONFLICT,
            StatusCode::SERVICE_UNAVAILABLE,
        ],
    );
    assert_eq!(
        statuses
            .iter()
            .filter(|s| **s == StatusCode::CREATED)
            .count(),
        1,
        "{statuses:?}"
    );
    assert_eq!(api.events_of_type("ProposalAccepted").await, 1);
    assert_eq!(api.events_of_type("ContractStarted").await, 1);
    assert_eq!(api.events_of_type("EscrowOpened").await, 1);
    let api = Arc::into_inner(api).expect("the only handle");
    api.stop().await;
}

#[sqlx::test(migrator = "gigledger_projections::MIGRATOR")]
async fn a_dispute_and_an_approval_at_once_one_wins_and_the_ledger_balances(pool: PgPool) {
    let api = Arc::new(TestApi::start(pool.clone()).await);
    let hired = api.hire(&[20_000]).await;
    let milestone = hired.milestone_path(0);
    for (user, step, body) in [
        (&hired.client, "fund", json!({})),
        (&hired.freelancer, "submit", json!({ "note": "done" })),
    ] {
        let answer = api.post(user, &format!("{milestone}/{step}"), &body).await;
        assert_eq!(answer.status, StatusCode::OK, "{step}");
    }
    let approve = {
        let (api, token, path) = (
            api.clone(),
            hired.client.token.clone(),
            format!("{milestone}/approve"),
        );
        tokio::spawn(async move {
            api.send(Method::POST, &path, Some(&token), Some(&json!({})), &[])
                .await
                .status
        })
    };
    let dispute = {
        let (api, token, path, body) = (
            api.clone(),
            hired.freelancer.token.clone(),
            format!("{}/disputes", hired.contract_path()),
            json!({ "milestone_id": hired.milestones[0], "reason": "not paid" }),
        );
        tokio::spawn(async move {
            api.send(Method::POST, &path, Some(&token), Some(&body), &[])
                .await
                .status
        })
    };
    let (approved, disputed) = (
        approve.await.expect("a request"),
        dispute.await.expect("a request"),
    );
    let released = api.events_of_type("FundsReleased").await;
    let frozen = api.events_of_type("FundsFrozen").await;
    assert!(
        (approved == StatusCode::OK && released == 1 && frozen == 0)
            || (disputed.is_success() && frozen == 1 && released == 0),
        "approve {approved}, dispute {disputed}, released {released}, frozen {frozen}"
    );
    assert!(
        !(approved == StatusCode::OK && disputed.is_success()),
        "both won: approve {approved}, dispute {disputed}"
    );
    let api = Arc::into_inner(api).expect("the only handle");
    api.stop().await;
    assert_trial_balance_is_zero(&pool).await;
}

#[sqlx::test(migrator = "gigledger_projections::MIGRATOR")]
async fn two_servers_on_one_database_charge_once_release_once_and_hire_once(pool: PgPool) {
    // Two processes' worth of services, caches and workers on one database.
    let one = Arc::new(TestApi::start(pool.clone()).await);
    let two = Arc::new(TestApi::start(pool.clone()).await);
    let hired = one.hire(&[20_000]).await;
    let milestone = hired.milestone_path(0);
    let ok_or_retry = [
        StatusCode::OK,
        StatusCode::CONFLICT,
        StatusCode::SERVICE_UNAVAILABLE,
    ];
    let funded = at_once(
        &[&one, &two],
        40,
        &hired.client.token,
        &format!("{milestone}/fund"),
        json!({}),
    )
    .await;
    assert_only(&funded, &ok_or_retry);
    assert!(funded.contains(&StatusCode::OK), "{funded:?}");
    assert_eq!(one.events_of_type("FundsDeposited").await, 1);
    assert_eq!(one.charges().await, 1);
    let submitted = two
        .post(
            &hired.freelancer,
            &format!("{milestone}/submit"),
            &json!({ "note": "done" }),
        )
        .await;
    assert_eq!(submitted.status, StatusCode::OK, "{:?}", submitted.json());
    let approved = at_once(
        &[&one, &two],
        40,
        &hired.client.token,
        &format!("{milestone}/approve"),
        json!({}),
    )
    .await;
    assert_only(&approved, &ok_or_retry);
    assert_eq!(one.events_of_type("FundsReleased").await, 1);
    assert_eq!(one.events_of_type("EarningsCredited").await, 1);

    // Accepts of different proposals of one gig, half on each server: one contract.
    let client = one.user(&[Role::Client]);
    let posted = one
        .post(
            &client,
            "/v1/gigs",
            &gigledger_tests::http::gig_body("Contested twice", 10_000),
        )
        .await;
    let gig = posted.json()["id"].as_str().expect("a gig").to_owned();
    let mut proposals = Vec::new();
    for _ in 0..8 {
        let freelancer = one.user(&[Role::Freelancer]);
        let proposed = one
            .post(
                &freelancer,
                &format!("/v1/gigs/{gig}/proposals"),
                &proposal_body(&[10_000]),
            )
            .await;
        assert_eq!(
            proposed.status,
            StatusCode::CREATED,
            "{:?}",
            proposed.json()
        );
        proposals.push(proposed.json()["id"].as_str().expect("an id").to_owned());
    }
    let mut accepts = Vec::new();
    for (i, proposal) in proposals.iter().enumerate() {
        let (api, token, path) = (
            if i % 2 == 0 { one.clone() } else { two.clone() },
            client.token.clone(),
            format!("/v1/gigs/{gig}/proposals/{proposal}/accept"),
        );
        accepts.push(tokio::spawn(async move {
            api.send(Method::POST, &path, Some(&token), Some(&json!({})), &[])
                .await
                .status
        }));
    }
    let mut statuses = Vec::new();
    for a in accepts {
        statuses.push(a.await.expect("a request"));
    }
    assert_eq!(
        statuses
            .iter()
            .filter(|s| **s == StatusCode::CREATED)
            .count(),
        1,
        "{statuses:?}"
    );
    assert_eq!(one.events_of_type("ContractStarted").await, 2);
    let auditor = one.user(&[Role::Auditor]);
    let reconciled = two.get(&auditor, "/v1/audit/reconcile").await.json();
    assert_eq!(reconciled["ok"], true, "{reconciled:?}");
    for api in [one, two] {
        Arc::into_inner(api).expect("the only handle").stop().await;
    }
    assert_trial_balance_is_zero(&pool).await;
}
