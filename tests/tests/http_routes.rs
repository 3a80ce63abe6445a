//! Every route of the frontend API, each with its success, its 401, its 403 or 404 (where a
//! signed-in caller can be refused at all), and a 4xx for bad input, each asserting the status and
//! the problem's `type` and `errors`. The last step checks that no route of the list was left out.

use std::collections::{BTreeMap, BTreeSet};

use gigledger_domain::Role;
use gigledger_tests::http::{gig_body, proposal_body, Answer, TestApi, User};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use sqlx::PgPool;

/// What a case shows of a route.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Kind {
    Success,
    Unauthenticated,
    Refused,
    BadInput,
}

/// Every frontend route (method, path template), and whether a signed-in caller can be refused.
const ROUTES: &[(&str, &str, bool)] = &[
    ("POST", "/v1/gigs", true),
    ("GET", "/v1/gigs", false),
    ("GET", "/v1/gigs/{gig_id}", true),
    ("PATCH", "/v1/gigs/{gig_id}", true),
    ("POST", "/v1/gigs/{gig_id}/close", true),
    ("POST", "/v1/gigs/{gig_id}/cancel", true),
    ("POST", "/v1/gigs/{gig_id}/proposals", true),
    ("GET", "/v1/gigs/{gig_id}/proposals", true),
    (
        "POST",
        "/v1/gigs/{gig_id}/proposals/{proposal_id}/withdraw",
        true,
    ),
    (
        "POST",
        "/v1/gigs/{gig_id}/proposals/{proposal_id}/reject",
        true,
    ),
    (
        "POST",
        "/v1/gigs/{gig_id}/proposals/{proposal_id}/accept",
        true,
    ),
    (
        "POST",
        "/v1/contracts/{contract_id}/milestones/{milestone_id}/fund",
        true,
    ),
    (
        "POST",
        "/v1/contracts/{contract_id}/milestones/{milestone_id}/submit",
        true,
    ),
    (
        "POST",
        "/v1/contracts/{contract_id}/milestones/{milestone_id}/request-changes",
        true,
    ),
    (
        "POST",
        "/v1/contracts/{contract_id}/milestones/{milestone_id}/approve",
        true,
    ),
    ("POST", "/v1/contracts/{contract_id}/cancel", true),
    ("POST", "/v1/contracts/{contract_id}/disputes", true),
    (
        "POST",
        "/v1/contracts/{contract_id}/disputes/{dispute_id}/resolve",
        true,
    ),
    ("POST", "/v1/contracts/{contract_id}/reviews", true),
    ("GET", "/v1/contracts/{contract_id}", true),
    ("GET", "/v1/contracts/{contract_id}/ledger", true),
    ("GET", "/v1/users/{user_id}/profile", false),
    ("GET", "/v1/me", false),
    ("GET", "/v1/me/gigs", true),
    ("GET", "/v1/me/proposals", true),
    ("GET", "/v1/me/contracts", true),
    ("GET", "/v1/me/notifications", false),
    ("POST", "/v1/me/notifications/read", false),
    ("GET", "/v1/me/stream", false),
    ("GET", "/v1/disputes", true),
];

struct Checker<'a> {
    api: &'a TestApi,
    seen: BTreeMap<(&'static str, &'static str), BTreeSet<Kind>>,
    /// The highest position a command of this test answered: every query waits for it, so that
    /// a read sees the writes before it (read your writes, as a frontend does).
    written: i64,
}

impl<'a> Checker<'a> {
    /// Sends `body` (or none) to `path` as `user` (or no one) and checks the answer.
    #[expect(
        clippy::too_many_arguments,
        reason = "one call per case reads best as a table"
    )]
    async fn case(
        &mut self,
        route: (&'static str, &'static str),
        path: &str,
        user: Option<&User>,
        body: Option<Value>,
        status: StatusCode,
        problem: Option<&str>,
        fields: &[&str],
    ) -> Answer {
        self.case_with_headers(route, path, user, body, &[], status, problem, fields)
            .await
    }

    /// [`Checker::case`] with request headers of its own.
    #[expect(
        clippy::too_many_arguments,
        reason = "one call per case reads best as a table"
    )]
    async fn case_with_headers(
        &mut self,
        route: (&'static str, &'static str),
        path: &str,
        user: Option<&User>,
        body: Option<Value>,
        headers: &[(&str, &str)],
        status: StatusCode,
        problem: Option<&str>,
        fields: &[&str],
    ) -> Answer {
        let method = Method::from_bytes(route.0.as_bytes()).expect("a method");
        let events = self.api.events_by_users().await;
        let written = self.written.to_string();
        let mut sent: Vec<(&str, &str)> = headers.to_vec();
        if method == Method::GET && self.written > 0 && !path.contains("min_position") {
            sent.push(("x-min-position", written.as_str()));
        }
        let answer = self
            .api
            .send(
                method,
                path,
                user.map(|u| u.token.as_str()),
                body.as_ref(),
                &sent,
            )
            .await;
        if let Some(position) = answer
            .json()
            .get("position")
            .and_then(serde_json::Value::as_i64)
        {
            self.written = self.written.max(position);
        }
        assert_eq!(
            answer.status,
            status,
            "{} {path}: {:?}",
            route.0,
            answer.json()
        );
        let kind = if status.is_success() {
            Kind::Success
        } else if status == StatusCode::UNAUTHORIZED {
            Kind::Unauthenticated
        } else if status == StatusCode::FORBIDDEN || status == StatusCode::NOT_FOUND {
            Kind::Refused
        } else {
            Kind::BadInput
        };
        if let Some(problem) = problem {
            assert_eq!(answer.problem_type(), problem, "{} {path}", route.0);
            assert_eq!(
                answer.error_fields(),
                fields,
                "{} {path}: {:?}",
                route.0,
                answer.json()
            );
            assert_eq!(
                self.api.events_by_users().await,
                events,
                "{} {path} refused, nothing written",
                route.0
            );
        }
        self.seen.entry(route).or_default().insert(kind);
        answer
    }

    async fn ok(
        &mut self,
        route: (&'static str, &'static str),
        path: &str,
        user: &User,
        body: Option<Value>,
        status: StatusCode,
    ) -> Answer {
        self.case(route, path, Some(user), body, status, None, &[])
            .await
    }

    async fn no_token(&mut self, route: (&'static str, &'static str), path: &str) {
        let body = (route.0 != "GET").then(|| json!({}));
        self.case(
            route,
            path,
            None,
            body,
            StatusCode::UNAUTHORIZED,
            Some("/problems/unauthorized"),
            &[],
        )
        .await;
    }

    async fn forbidden(
        &mut self,
        route: (&'static str, &'static str),
        path: &str,
        user: &User,
        body: Option<Value>,
    ) {
        self.case(
            route,
            path,
            Some(user),
            body,
            StatusCode::FORBIDDEN,
            Some("/problems/forbidden"),
            &[],
        )
        .await;
    }

    async fn not_found(
        &mut self,
        route: (&'static str, &'static str),
        path: &str,
        user: &User,
        body: Option<Value>,
    ) {
        self.case(
            route,
            path,
            Some(user),
            body,
            StatusCode::NOT_FOUND,
            Some("/problems/not-found"),
            &[],
        )
        .await;
    }

    async fn invalid(
        &mut self,
        route: (&'static str, &'static str),
        path: &str,
        user: &User,
        body: Option<Value>,
        field: &str,
    ) {
        self.case(
            route,
            path,
            Some(user),
            body,
            StatusCode::UNPROCESSABLE_ENTITY,
            Some("/problems/validation"),
            &[field],
        )
        .await;
    }

    /// A route whose success is an endless body (an event stream): its head is checked, and the
    /// connection dropped.
    async fn opened(&mut self, route: (&'static str, &'static str), path: &str, user: &User) {
        let response = self
            .api
            .http
            .get(format!("{}{path}", self.api.base))
            .bearer_auth(&user.token)
            .send()
            .await
            .expect("the server answers");
        assert_eq!(response.status(), StatusCode::OK, "GET {path}");
        let content_type = response
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        assert!(
            content_type.starts_with("text/event-stream"),
            "GET {path}: {content_type}"
        );
        self.seen.entry(route).or_default().insert(Kind::Success);
    }

    async fn unreadable(
        &mut self,
        route: (&'static str, &'static str),
        path: &str,
        user: &User,
        field: &str,
    ) {
        let body = (route.0 != "GET").then(|| json!({}));
        self.case(
            route,
            path,
            Some(user),
            body,
            StatusCode::BAD_REQUEST,
            Some("/problems/bad-request"),
            &[field],
        )
        .await;
    }
}

fn id_of(answer: &Answer, member: &str) -> String {
    answer.json()[member]
        .as_str()
        .unwrap_or_else(|| panic!("{member} in {:?}", answer.json()))
        .to_owned()
}

#[sqlx::test(migrator = "gigledger_projections::MIGRATOR")]
async fn every_route_answers_its_success_401_refusal_and_bad_input_as_problems(pool: PgPool) {
    let api = TestApi::start(pool).await;
    let mut c = Checker {
        api: &api,
        seen: BTreeMap::new(),
        written: 0,
    };
    let client = api.user(&[Role::Client]);
    let freelancer = api.user(&[Role::Freelancer]);
    let other_freelancer = api.user(&[Role::Freelancer]);
    let stranger = api.user(&[Role::Client]);
    let admin = api.user(&[Role::Admin]);
    let auditor = api.user(&[Role::Auditor]);
    let bad_uuid = "not-a-uuid";

    // Gigs.
    let r = ("POST", "/v1/gigs");
    let posted = c
        .ok(
            r,
            "/v1/gigs",
            &client,
            Some(gig_body("Main", 60_000)),
            StatusCode::CREATED,
        )
        .await;
    let gig = id_of(&posted, "id");
    c.no_token(r, "/v1/gigs").await;
    c.forbidden(r, "/v1/gigs", &freelancer, Some(gig_body("No", 1)))
        .await;
    let mut empty_title = gig_body("x", 1);
    empty_title["title"] = json!("   ");
    c.invalid(r, "/v1/gigs", &client, Some(empty_title), "title")
        .await;

    let r = ("PATCH", "/v1/gigs/{gig_id}");
    let path = format!("/v1/gigs/{gig}");
    c.ok(
        r,
        &path,
        &client,
        Some(json!({ "title": "Main, revised" })),
        StatusCode::OK,
    )
    .await;
    c.no_token(r, &path).await;
    c.forbidden(r, &path, &stranger, Some(json!({ "title": "Mine now" })))
        .await;
    c.invalid(r, &path, &client, Some(json!({ "title": 5 })), "title")
        .await;

    for (r, name) in [
        (("POST", "/v1/gigs/{gig_id}/close"), "close"),
        (("POST", "/v1/gigs/{gig_id}/cancel"), "cancel"),
    ] {
        let other = c
            .ok(
                ("POST", "/v1/gigs"),
                "/v1/gigs",
                &client,
                Some(gig_body(name, 1_000)),
                StatusCode::CREATED,
            )
            .await;
        let path = format!("/v1/gigs/{}/{name}", id_of(&other, "id"));
        c.no_token(r, &path).await;
        c.forbidden(r, &path, &stranger, None).await;
        c.invalid(r, &path, &client, Some(json!({ "extra": 1 })), "extra")
            .await;
        c.ok(r, &path, &client, None, StatusCode::OK).await;
    }

    // Proposals.
    let r = ("POST", "/v1/gigs/{gig_id}/proposals");
    let path = format!("/v1/gigs/{gig}/proposals");
    let hired_proposal = c
        .ok(
            r,
            &path,
            &freelancer,
            Some(proposal_body(&[30_000, 20_000, 10_000])),
            StatusCode::CREATED,
        )
        .await;
    let to_withdraw = c
        .ok(
            r,
            &path,
            &other_freelancer,
            Some(proposal_body(&[55_000])),
            StatusCode::CREATED,
        )
        .await;
    let third = api.user(&[Role::Freelancer]);
    let to_reject = c
        .ok(
            r,
            &path,
            &third,
            Some(proposal_body(&[58_000])),
            StatusCode::CREATED,
        )
        .await;
    c.no_token(r, &path).await;
    c.forbidden(r, &path, &client, Some(proposal_body(&[1_000])))
        .await;
    let fresh = api.user(&[Role::Freelancer]);
    c.invalid(
        r,
        &path,
        &fresh,
        Some(json!({ "cover_letter": "hi", "milestones": [] })),
        "milestones",
    )
    .await;

    let r = ("GET", "/v1/gigs/{gig_id}/proposals");
    c.ok(r, &path, &client, None, StatusCode::OK).await;
    c.no_token(r, &path).await;
    c.forbidden(r, &path, &stranger, None).await;
    c.unreadable(r, &format!("{path}?limit=0"), &client, "limit")
        .await;

    let r = ("POST", "/v1/gigs/{gig_id}/proposals/{proposal_id}/withdraw");
    let path = format!(
        "/v1/gigs/{gig}/proposals/{}/withdraw",
        id_of(&to_withdraw, "id")
    );
    c.no_token(r, &path).await;
    c.forbidden(r, &path, &freelancer, None).await;
    c.unreadable(
        r,
        &format!("/v1/gigs/{gig}/proposals/{bad_uuid}/withdraw"),
        &other_freelancer,
        "proposal_id",
    )
    .await;
    c.ok(r, &path, &other_freelancer, None, StatusCode::OK)
        .await;

    let r = ("POST", "/v1/gigs/{gig_id}/proposals/{proposal_id}/reject");
    let path = format!(
        "/v1/gigs/{gig}/proposals/{}/reject",
        id_of(&to_reject, "id")
    );
    c.no_token(r, &path).await;
    c.forbidden(r, &path, &stranger, None).await;
    c.unreadable(
        r,
        &format!(
            "/v1/gigs/{bad_uuid}/proposals/{}/reject",
            id_of(&to_reject, "id")
        ),
        &client,
        "gig_id",
    )
    .await;
    c.ok(r, &path, &client, None, StatusCode::OK).await;

    let r = ("POST", "/v1/gigs/{gig_id}/proposals/{proposal_id}/accept");
    let path = format!(
        "/v1/gigs/{gig}/proposals/{}/accept",
        id_of(&hired_proposal, "id")
    );
    c.no_token(r, &path).await;
    c.forbidden(r, &path, &stranger, None).await;
    c.invalid(r, &path, &client, Some(json!({ "fee_bps": 0 })), "fee_bps")
        .await;
    let accepted = c.ok(r, &path, &client, None, StatusCode::CREATED).await;
    let contract = id_of(&accepted, "contract_id");
    let ms: Vec<String> = accepted.json()["milestone_ids"]
        .as_array()
        .expect("ids")
        .iter()
        .map(|m| m.as_str().expect("id").to_owned())
        .collect();
    let m =
        |i: usize, action: &str| format!("/v1/contracts/{contract}/milestones/{}/{action}", ms[i]);

    // Gig queries.
    let r = ("GET", "/v1/gigs");
    c.ok(
        r,
        "/v1/gigs?q=main&sort=newest",
        &stranger,
        None,
        StatusCode::OK,
    )
    .await;
    c.no_token(r, "/v1/gigs").await;
    c.unreadable(r, "/v1/gigs?limit=101", &stranger, "limit")
        .await;
    let r = ("GET", "/v1/gigs/{gig_id}");
    c.ok(
        r,
        &format!("/v1/gigs/{gig}"),
        &stranger,
        None,
        StatusCode::OK,
    )
    .await;
    c.no_token(r, &format!("/v1/gigs/{gig}")).await;
    c.not_found(
        r,
        &format!("/v1/gigs/{}", uuid::Uuid::now_v7()),
        &stranger,
        None,
    )
    .await;
    c.unreadable(r, &format!("/v1/gigs/{bad_uuid}"), &stranger, "gig_id")
        .await;

    // Milestones.
    let r = (
        "POST",
        "/v1/contracts/{contract_id}/milestones/{milestone_id}/fund",
    );
    c.no_token(r, &m(0, "fund")).await;
    c.not_found(r, &m(0, "fund"), &stranger, None).await;
    c.unreadable(
        r,
        &format!("/v1/contracts/{contract}/milestones/{bad_uuid}/fund"),
        &client,
        "milestone_id",
    )
    .await;
    c.ok(r, &m(0, "fund"), &client, None, StatusCode::OK).await;
    c.ok(r, &m(1, "fund"), &client, None, StatusCode::OK).await;

    let r = (
        "POST",
        "/v1/contracts/{contract_id}/milestones/{milestone_id}/submit",
    );
    c.no_token(r, &m(0, "submit")).await;
    c.not_found(
        r,
        &m(0, "submit"),
        &other_freelancer,
        Some(json!({ "note": "mine" })),
    )
    .await;
    c.invalid(
        r,
        &m(0, "submit"),
        &freelancer,
        Some(json!({ "note": "" })),
        "note",
    )
    .await;
    c.ok(
        r,
        &m(0, "submit"),
        &freelancer,
        Some(json!({ "note": "done" })),
        StatusCode::OK,
    )
    .await;

    let r = (
        "POST",
        "/v1/contracts/{contract_id}/milestones/{milestone_id}/request-changes",
    );
    c.no_token(r, &m(0, "request-changes")).await;
    c.not_found(
        r,
        &m(0, "request-changes"),
        &stranger,
        Some(json!({ "reason": "no" })),
    )
    .await;
    c.invalid(
        r,
        &m(0, "request-changes"),
        &client,
        Some(json!({})),
        "reason",
    )
    .await;
    c.ok(
        r,
        &m(0, "request-changes"),
        &client,
        Some(json!({ "reason": "more tests" })),
        StatusCode::OK,
    )
    .await;
    c.ok(
        (
            "POST",
            "/v1/contracts/{contract_id}/milestones/{milestone_id}/submit",
        ),
        &m(0, "submit"),
        &freelancer,
        Some(json!({ "note": "tested" })),
        StatusCode::OK,
    )
    .await;

    let r = (
        "POST",
        "/v1/contracts/{contract_id}/milestones/{milestone_id}/approve",
    );
    c.no_token(r, &m(0, "approve")).await;
    c.not_found(r, &m(0, "approve"), &stranger, None).await;
    c.invalid(
        r,
        &m(0, "approve"),
        &client,
        Some(json!({ "amount": 1 })),
        "amount",
    )
    .await;
    c.ok(r, &m(0, "approve"), &client, None, StatusCode::OK)
        .await;

    // Disputes.
    let r = ("POST", "/v1/contracts/{contract_id}/disputes");
    let path = format!("/v1/contracts/{contract}/disputes");
    c.no_token(r, &path).await;
    c.not_found(
        r,
        &path,
        &stranger,
        Some(json!({ "milestone_id": ms[1], "reason": "x" })),
    )
    .await;
    c.invalid(
        r,
        &path,
        &freelancer,
        Some(json!({ "milestone_id": "m1", "reason": "x" })),
        "milestone_id",
    )
    .await;
    let opened = c
        .ok(
            r,
            &path,
            &freelancer,
            Some(json!({ "milestone_id": ms[1], "reason": "no answer" })),
            StatusCode::CREATED,
        )
        .await;
    let dispute = id_of(&opened, "dispute_id");

    let r = ("GET", "/v1/disputes");
    c.ok(r, "/v1/disputes?status=open", &admin, None, StatusCode::OK)
        .await;
    c.no_token(r, "/v1/disputes").await;
    c.forbidden(r, "/v1/disputes", &client, None).await;
    c.unreadable(r, "/v1/disputes?status=lost", &admin, "status")
        .await;

    let r = (
        "POST",
        "/v1/contracts/{contract_id}/disputes/{dispute_id}/resolve",
    );
    let path = format!("/v1/contracts/{contract}/disputes/{dispute}/resolve");
    c.no_token(r, &path).await;
    c.forbidden(
        r,
        &path,
        &freelancer,
        Some(json!({ "release": 1, "refund": 0 })),
    )
    .await;
    c.invalid(
        r,
        &path,
        &admin,
        Some(json!({ "release": 15_000, "refund": 1 })),
        "release",
    )
    .await;
    c.ok(
        r,
        &path,
        &admin,
        Some(json!({ "release": 15_000, "refund": 5_000 })),
        StatusCode::OK,
    )
    .await;

    // Cancel (the third milestone was never funded or delivered).
    let r = ("POST", "/v1/contracts/{contract_id}/cancel");
    let path = format!("/v1/contracts/{contract}/cancel");
    c.no_token(r, &path).await;
    c.not_found(r, &path, &stranger, Some(json!({ "reason": "mine" })))
        .await;
    c.invalid(
        r,
        &path,
        &freelancer,
        Some(json!({ "reason": 3 })),
        "reason",
    )
    .await;
    let cancelled = c
        .ok(
            r,
            &path,
            &freelancer,
            Some(json!({ "reason": "the rest is off" })),
            StatusCode::OK,
        )
        .await;

    // Reviews, on a completed contract of their own.
    let done = api.hire(&[10_000]).await;
    api.post(
        &done.client,
        &format!("{}/fund", done.milestone_path(0)),
        &json!({}),
    )
    .await;
    api.post(
        &done.freelancer,
        &format!("{}/submit", done.milestone_path(0)),
        &json!({ "note": "ok" }),
    )
    .await;
    api.post(
        &done.client,
        &format!("{}/approve", done.milestone_path(0)),
        &json!({}),
    )
    .await;
    let r = ("POST", "/v1/contracts/{contract_id}/reviews");
    let path = format!("{}/reviews", done.contract_path());
    c.no_token(r, &path).await;
    c.not_found(
        r,
        &path,
        &stranger,
        Some(json!({ "rating": 5, "text": "?" })),
    )
    .await;
    c.invalid(
        r,
        &path,
        &done.client,
        Some(json!({ "rating": 9, "text": "too good" })),
        "rating",
    )
    .await;
    let reviewed = c
        .ok(
            r,
            &path,
            &done.client,
            Some(json!({ "rating": 5, "text": "great" })),
            StatusCode::CREATED,
        )
        .await;

    // Contract queries (after everything above is projected).
    let at = cancelled.position().max(reviewed.position()).to_string();
    let wait = [("x-min-position", at.as_str())];
    let r = ("GET", "/v1/contracts/{contract_id}");
    let path = format!("/v1/contracts/{contract}");
    let view = api
        .send(Method::GET, &path, Some(&client.token), None, &wait)
        .await;
    assert_eq!(view.status, StatusCode::OK);
    assert_eq!(view.json()["status"], "cancelled");
    c.ok(r, &path, &admin, None, StatusCode::OK).await;
    c.no_token(r, &path).await;
    c.not_found(r, &path, &stranger, None).await;
    c.unreadable(
        r,
        &format!("/v1/contracts/{bad_uuid}"),
        &client,
        "contract_id",
    )
    .await;
    let r = ("GET", "/v1/contracts/{contract_id}/ledger");
    c.ok(r, &format!("{path}/ledger"), &auditor, None, StatusCode::OK)
        .await;
    c.no_token(r, &format!("{path}/ledger")).await;
    c.not_found(r, &format!("{path}/ledger"), &stranger, None)
        .await;
    c.unreadable(
        r,
        &format!("{path}/ledger?cursor=forged"),
        &client,
        "cursor",
    )
    .await;

    // The caller's own views.
    let r = ("GET", "/v1/me");
    let me = c.ok(r, "/v1/me", &client, None, StatusCode::OK).await;
    assert_eq!(me.json()["sub"], client.id());
    c.no_token(r, "/v1/me").await;
    c.unreadable(r, "/v1/me?min_position=-1", &client, "min_position")
        .await;
    let r = ("GET", "/v1/me/gigs");
    c.ok(r, "/v1/me/gigs?status=open", &client, None, StatusCode::OK)
        .await;
    c.no_token(r, "/v1/me/gigs").await;
    c.forbidden(r, "/v1/me/gigs", &freelancer, None).await;
    c.unreadable(r, "/v1/me/gigs?status=asleep", &client, "status")
        .await;
    let r = ("GET", "/v1/me/proposals");
    c.ok(r, "/v1/me/proposals", &freelancer, None, StatusCode::OK)
        .await;
    c.no_token(r, "/v1/me/proposals").await;
    c.forbidden(r, "/v1/me/proposals", &client, None).await;
    c.unreadable(r, "/v1/me/proposals?cursor=forged", &freelancer, "cursor")
        .await;
    let r = ("GET", "/v1/me/contracts");
    c.ok(r, "/v1/me/contracts", &freelancer, None, StatusCode::OK)
        .await;
    c.no_token(r, "/v1/me/contracts").await;
    c.forbidden(r, "/v1/me/contracts", &auditor, None).await;
    c.unreadable(r, "/v1/me/contracts?limit=many", &freelancer, "limit")
        .await;
    let r = ("GET", "/v1/me/notifications");
    let listed = api
        .send(
            Method::GET,
            "/v1/me/notifications",
            Some(&client.token),
            None,
            &wait,
        )
        .await;
    let newest = listed.json()["items"][0]["id"]
        .as_str()
        .map(str::to_owned)
        .expect("the client was notified");
    c.ok(
        r,
        "/v1/me/notifications?unread=true",
        &client,
        None,
        StatusCode::OK,
    )
    .await;
    c.no_token(r, "/v1/me/notifications").await;
    c.unreadable(r, "/v1/me/notifications?unread=maybe", &client, "unread")
        .await;
    let r = ("POST", "/v1/me/notifications/read");
    c.ok(
        r,
        "/v1/me/notifications/read",
        &client,
        Some(json!({ "up_to": newest })),
        StatusCode::OK,
    )
    .await;
    c.no_token(r, "/v1/me/notifications/read").await;
    c.invalid(
        r,
        "/v1/me/notifications/read",
        &client,
        Some(json!({ "up_to": "someone-elses" })),
        "up_to",
    )
    .await;
    let unread = api.get(&client, "/v1/me/notifications?unread=true").await;
    assert_eq!(unread.json()["unread_count"], 0, "{:?}", unread.json());
    let r = ("GET", "/v1/me/stream");
    c.opened(r, "/v1/me/stream", &client).await;
    c.no_token(r, "/v1/me/stream").await;
    c.case_with_headers(
        r,
        "/v1/me/stream",
        Some(&client),
        None,
        &[("last-event-id", "not-a-position")],
        StatusCode::BAD_REQUEST,
        Some("/problems/bad-request"),
        &["Last-Event-ID"],
    )
    .await;
    let r = ("GET", "/v1/users/{user_id}/profile");
    c.ok(
        r,
        &format!("/v1/users/{}/profile", freelancer.id()),
        &stranger,
        None,
        StatusCode::OK,
    )
    .await;
    c.no_token(r, &format!("/v1/users/{}/profile", freelancer.id()))
        .await;
    c.unreadable(
        r,
        &format!("/v1/users/{bad_uuid}/profile"),
        &stranger,
        "user_id",
    )
    .await;

    // Nothing left out.
    let mut missing = Vec::new();
    for (method, template, refusable) in ROUTES {
        let kinds = c
            .seen
            .get(&(*method, *template))
            .cloned()
            .unwrap_or_default();
        let mut wanted = vec![Kind::Success, Kind::Unauthenticated, Kind::BadInput];
        if *refusable {
            wanted.push(Kind::Refused);
        }
        for kind in wanted {
            if !kinds.contains(&kind) {
                missing.push(format!("{method} {template}: {kind:?}"));
            }
        }
    }
    assert!(missing.is_empty(), "cases missing: {missing:#?}");
    assert_eq!(
        c.seen.len(),
        ROUTES.len(),
        "a case names a route the list lacks"
    );
    api.stop().await;
}

#[sqlx::test(migrator = "gigledger_projections::MIGRATOR")]
async fn unknown_paths_and_methods_are_problems_too(pool: PgPool) {
    let api = TestApi::start_with(pool, Default::default(), false).await;
    let user = api.user(&[Role::Client]);
    let nowhere = api.get(&user, "/v1/nowhere").await;
    assert_eq!(nowhere.status, StatusCode::NOT_FOUND);
    assert_eq!(nowhere.problem_type(), "/problems/not-found");
    let wrong = api
        .send(Method::DELETE, "/v1/gigs", Some(&user.token), None, &[])
        .await;
    assert_eq!(wrong.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(wrong.problem_type(), "/problems/method-not-allowed");
    api.stop().await;
}
