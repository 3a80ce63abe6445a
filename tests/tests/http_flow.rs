//! The whole marketplace over HTTP, as a frontend drives it: every step is a command answered with
//! its position, read back through the query routes with `X-Min-Position` (no sleeps), and at the
//! end the contract's ledger adds up to zero and the freelancer is owed exactly what was released
//! less the platform's fee.

use std::collections::HashMap;

use gigledger_domain::Role;
use gigledger_tests::http::{gig_body, proposal_body, TestApi};
use reqwest::StatusCode;
use serde_json::{json, Value};
use sqlx::PgPool;

fn milestone<'a>(contract: &'a Value, id: &str) -> &'a Value {
    contract["milestones"]
        .as_array()
        .and_then(|ms| ms.iter().find(|m| m["milestone_id"] == id))
        .unwrap_or_else(|| panic!("milestone {id} in {contract}"))
}

#[sqlx::test(migrator = "gigledger_projections::MIGRATOR")]
async fn post_propose_hire_fund_deliver_revise_approve_dispute_resolve_and_review(pool: PgPool) {
    let api = TestApi::start(pool).await;
    let client = api.user(&[Role::Client]);
    let ada = api.user(&[Role::Freelancer]);
    let bob = api.user(&[Role::Freelancer]);
    let admin = api.user(&[Role::Admin]);

    // Post.
    let posted = api
        .post(&client, "/v1/gigs", &gig_body("Tune our Postgres", 80_000))
        .await;
    assert_eq!(posted.status, StatusCode::CREATED, "{:?}", posted.json());
    let gig = posted.json()["id"].as_str().expect("gig id").to_owned();
    assert_eq!(
        posted.header("location"),
        Some(format!("/v1/gigs/{gig}").as_str())
    );
    let seen = api
        .get_at(&client, &format!("/v1/gigs/{gig}"), posted.position())
        .await;
    assert_eq!(seen.status, StatusCode::OK);
    assert_eq!(seen.json()["title"], "Tune our Postgres");
    assert_eq!(seen.json()["status"], "open");
    assert!(seen.header("x-position").is_some());
    assert_eq!(
        seen.header("etag"),
        Some(format!("\"{}\"", posted.json()["version"]).as_str())
    );

    // Two proposals; one rejected, one accepted.
    let by_ada = api
        .post(
            &ada,
            &format!("/v1/gigs/{gig}/proposals"),
            &proposal_body(&[50_000, 30_000]),
        )
        .await;
    assert_eq!(by_ada.status, StatusCode::CREATED, "{:?}", by_ada.json());
    let ada_proposal = by_ada.json()["id"]
        .as_str()
        .expect("proposal id")
        .to_owned();
    let proposed_milestones: Vec<String> = by_ada.json()["milestone_ids"]
        .as_array()
        .expect("milestone ids")
        .iter()
        .map(|m| m.as_str().expect("an id").to_owned())
        .collect();
    assert_eq!(proposed_milestones.len(), 2);
    let by_bob = api
        .post(
            &bob,
            &format!("/v1/gigs/{gig}/proposals"),
            &proposal_body(&[70_000]),
        )
        .await;
    assert_eq!(by_bob.status, StatusCode::CREATED, "{:?}", by_bob.json());
    let bob_proposal = by_bob.json()["id"]
        .as_str()
        .expect("proposal id")
        .to_owned();

    let listed = api
        .get_at(
            &client,
            &format!("/v1/gigs/{gig}/proposals"),
            by_bob.position(),
        )
        .await;
    assert_eq!(listed.status, StatusCode::OK);
    assert_eq!(listed.json()["items"].as_array().map(Vec::len), Some(2));

    let rejected = api
        .post(
            &client,
            &format!("/v1/gigs/{gig}/proposals/{bob_proposal}/reject"),
            &json!({}),
        )
        .await;
    assert_eq!(rejected.status, StatusCode::OK, "{:?}", rejected.json());
    let bobs = api
        .get_at(&bob, "/v1/me/proposals", rejected.position())
        .await;
    assert_eq!(bobs.json()["items"][0]["status"], "rejected");

    let accepted = api
        .post(
            &client,
            &format!("/v1/gigs/{gig}/proposals/{ada_proposal}/accept"),
            &json!({}),
        )
        .await;
    assert_eq!(
        accepted.status,
        StatusCode::CREATED,
        "{:?}",
        accepted.json()
    );
    let contract_id = accepted.json()["contract_id"]
        .as_str()
        .expect("contract")
        .to_owned();
    let milestone_ids: Vec<String> = accepted.json()["milestone_ids"]
        .as_array()
        .expect("milestone ids")
        .iter()
        .map(|m| m.as_str().expect("an id").to_owned())
        .collect();
    assert_eq!(
        milestone_ids, proposed_milestones,
        "the contract keeps the proposal's ids"
    );
    let (m1, m2) = (milestone_ids[0].clone(), milestone_ids[1].clone());
    let contract_path = format!("/v1/contracts/{contract_id}");
    let view = api
        .get_at(&client, &contract_path, accepted.position())
        .await;
    assert_eq!(view.status, StatusCode::OK, "{:?}", view.json());
    assert_eq!(view.json()["status"], "active");
    assert_eq!(milestone(&view.json(), &m1)["status"], "awaiting_funds");

    // Fund, submit, request changes, resubmit, approve the first milestone.
    let m1_path = format!("{contract_path}/milestones/{m1}");
    let funded = api
        .post(&client, &format!("{m1_path}/fund"), &json!({}))
        .await;
    assert_eq!(funded.status, StatusCode::OK, "{:?}", funded.json());
    let view = api.get_at(&ada, &contract_path, funded.position()).await;
    assert_eq!(
        milestone(&view.json(), &m1)["status"],
        "funded",
        "{:?}",
        view.json()
    );
    assert_eq!(milestone(&view.json(), &m1)["escrow"]["held"], 50_000);

    let submitted = api
        .post(
            &ada,
            &format!("{m1_path}/submit"),
            &json!({ "note": "Indexes added." }),
        )
        .await;
    assert_eq!(submitted.status, StatusCode::OK, "{:?}", submitted.json());
    let view = api
        .get_at(&client, &contract_path, submitted.position())
        .await;
    assert_eq!(milestone(&view.json(), &m1)["status"], "submitted");

    let sent_back = api
        .post(
            &client,
            &format!("{m1_path}/request-changes"),
            &json!({ "reason": "Explain the plan change." }),
        )
        .await;
    assert_eq!(sent_back.status, StatusCode::OK, "{:?}", sent_back.json());
    let view = api.get_at(&ada, &contract_path, sent_back.position()).await;
    assert_eq!(milestone(&view.json(), &m1)["status"], "changes_requested");
    assert_eq!(milestone(&view.json(), &m1)["revision_count"], 1);

    let resubmitted = api
        .post(
            &ada,
            &format!("{m1_path}/submit"),
            &json!({ "note": "Explained.", "links": ["https://example.com/plan"] }),
        )
        .await;
    assert_eq!(
        resubmitted.status,
        StatusCode::OK,
        "{:?}",
        resubmitted.json()
    );
    let approved = api
        .post(&client, &format!("{m1_path}/approve"), &json!({}))
        .await;
    assert_eq!(approved.status, StatusCode::OK, "{:?}", approved.json());
    let view = api.get_at(&ada, &contract_path, approved.position()).await;
    let approved_m1 = milestone(&view.json(), &m1).clone();
    assert_eq!(approved_m1["status"], "approved");
    assert_eq!(approved_m1["escrow"]["released_gross"], 50_000);
    assert_eq!(approved_m1["escrow"]["held"], 0);

    // Fund the second, dispute it, and an admin splits it.
    let m2_path = format!("{contract_path}/milestones/{m2}");
    let funded = api
        .post(&client, &format!("{m2_path}/fund"), &json!({}))
        .await;
    assert_eq!(funded.status, StatusCode::OK, "{:?}", funded.json());
    let disputed = api
        .post(
            &ada,
            &format!("{contract_path}/disputes"),
            &json!({ "milestone_id": m2, "reason": "The client stopped answering." }),
        )
        .await;
    assert_eq!(
        disputed.status,
        StatusCode::CREATED,
        "{:?}",
        disputed.json()
    );
    let dispute = disputed.json()["dispute_id"]
        .as_str()
        .expect("dispute id")
        .to_owned();
    let queue = api
        .get_at(&admin, "/v1/disputes?status=open", disputed.position())
        .await;
    assert_eq!(queue.status, StatusCode::OK, "{:?}", queue.json());
    let queued = queue.json()["items"]
        .as_array()
        .and_then(|items| {
            items
                .iter()
                .find(|d| d["dispute_id"] == dispute.as_str())
                .cloned()
        })
        .expect("the dispute is queued");
    assert_eq!(
        queued["amount_frozen"],
        json!({ "amount": 30_000, "currency": "USD" })
    );

    let resolved = api
        .post(
            &admin,
            &format!("{contract_path}/disputes/{dispute}/resolve"),
            &json!({ "release": 20_000, "refund": 10_000 }),
        )
        .await;
    assert_eq!(resolved.status, StatusCode::OK, "{:?}", resolved.json());
    let view = api
        .get_at(&client, &contract_path, resolved.position())
        .await;
    assert_eq!(view.json()["status"], "completed", "{:?}", view.json());
    let settled = milestone(&view.json(), &m2).clone();
    assert_eq!(settled["escrow"]["released_gross"], 20_000);
    assert_eq!(settled["escrow"]["refunded"], 10_000);

    // Both review; the reviews show once both are in.
    let by_client = api
        .post(
            &client,
            &format!("{contract_path}/reviews"),
            &json!({ "rating": 5, "text": "Fast and careful." }),
        )
        .await;
    assert_eq!(
        by_client.status,
        StatusCode::CREATED,
        "{:?}",
        by_client.json()
    );
    let by_ada_review = api
        .post(
            &ada,
            &format!("{contract_path}/reviews"),
            &json!({ "rating": 4, "text": "Clear brief." }),
        )
        .await;
    assert_eq!(
        by_ada_review.status,
        StatusCode::CREATED,
        "{:?}",
        by_ada_review.json()
    );
    let view = api
        .get_at(&client, &contract_path, by_ada_review.position())
        .await;
    assert_eq!(
        view.json()["reviews"].as_array().map(Vec::len),
        Some(2),
        "{:?}",
        view.json()
    );

    // The ledger: every journal entry balances, and the freelancer is owed the releases less fees.
    let ledger = api
        .get_at(
            &client,
            &format!("{contract_path}/ledger?limit=100"),
            by_ada_review.position(),
        )
        .await;
    assert_eq!(ledger.status, StatusCode::OK, "{:?}", ledger.json());
    let entries = ledger.json()["items"].as_array().expect("entries").clone();
    assert!(ledger.json()["next_cursor"].is_null());
    let mut per_currency: HashMap<String, i64> = HashMap::new();
    let mut payable = 0;
    let mut fees = 0;
    for entry in &entries {
        *per_currency
            .entry(entry["currency"].as_str().expect("currency").to_owned())
            .or_default() += entry["amount"].as_i64().expect("amount");
        match entry["movement"].as_str() {
            Some("release_net") => payable += entry["amount"].as_i64().expect("amount"),
            Some("release_fee") => fees += entry["amount"].as_i64().expect("amount"),
            _ => {}
        }
    }
    assert_eq!(
        per_currency,
        HashMap::from([("USD".to_owned(), 0)]),
        "{entries:?}"
    );
    let fee_bps = view.json()["fee_bps"].as_i64().expect("fee");
    let released = 50_000 + 20_000;
    assert_eq!(fees, released * fee_bps / 10_000);
    assert_eq!(payable, released - fees);

    // The freelancer's public profile counts the completed contract.
    let profile = api
        .get_at(
            &client,
            &format!("/v1/users/{}/profile", ada.id()),
            by_ada_review.position(),
        )
        .await;
    assert_eq!(profile.status, StatusCode::OK);
    assert_eq!(
        profile.json()["completed_as_freelancer"],
        1,
        "{:?}",
        profile.json()
    );

    // Every write of the flow carried its request's id as its correlation id.
    let uncorrelated: i64 =
        sqlx::query_scalar("select count(*) from events where metadata->>'correlation_id' is null")
            .fetch_one(&api.pool)
            .await
            .expect("counted");
    assert_eq!(uncorrelated, 0);
    api.stop().await;
}

#[sqlx::test(migrator = "gigledger_projections::MIGRATOR")]
async fn the_request_id_comes_back_and_is_the_correlation_id_of_what_the_request_wrote(
    pool: PgPool,
) {
    let api = TestApi::start(pool).await;
    let client = api.user(&[Role::Client]);
    let answer = api
        .send(
            reqwest::Method::POST,
            "/v1/gigs",
            Some(&client.token),
            Some(&gig_body("Traced", 10_000)),
            &[("x-request-id", "trace-me-42")],
        )
        .await;
    assert_eq!(answer.status, StatusCode::CREATED);
    assert_eq!(answer.header("x-request-id"), Some("trace-me-42"));
    let correlations: Vec<Option<String>> =
        sqlx::query_scalar("select metadata->>'correlation_id' from events")
            .fetch_all(&api.pool)
            .await
            .expect("read");
    assert_eq!(correlations, vec![Some("trace-me-42".to_owned())]);
    // Without one, the server makes one and says which.
    let answer = api.get(&client, "/v1/me").await;
    assert!(answer
        .header("x-request-id")
        .is_some_and(|id| !id.is_empty()));
    api.stop().await;
}
