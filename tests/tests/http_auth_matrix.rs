//! Every role against every route (issue 14, part), from the router's own route list: a role the
//! route's rule leaves out is refused (403, or 404 where existence would leak) and nothing is
//! written; a role it lets in is never answered 401/403 for its role alone by the role gate on a
//! resource that does not exist, and never a 5xx. A new route without a rule here fails the test.

use gigledger_api::routes::{table, PROVIDER, PUBLIC};
use gigledger_domain::Role;
use gigledger_tests::http::TestApi;
use reqwest::{Method, StatusCode};
use serde_json::json;
use sqlx::PgPool;

const ALL: [Role; 5] = [
    Role::Client,
    Role::Freelancer,
    Role::Admin,
    Role::Auditor,
    Role::Analyst,
];

/// The roles a route's rule lets through its role gate (parties are the domain's to decide).
fn let_in(method: &str, path: &str) -> Option<&'static [Role]> {
    use Role::{Admin, Analyst, Auditor, Client, Freelancer};
    Some(match (method, path) {
        (_, p) if p.starts_with("/v1/analytics/") => &[Analyst, Admin],
        (_, p) if p.starts_with("/v1/audit/") => &[Auditor, Admin],
        ("GET", "/v1/gigs" | "/v1/gigs/{gig_id}" | "/v1/users/{user_id}/profile")
        | ("GET", "/v1/me" | "/v1/me/notifications" | "/v1/me/stream")
        | ("POST", "/v1/me/notifications/read") => &ALL,
        ("POST", "/v1/gigs")
        | ("PATCH", "/v1/gigs/{gig_id}")
        | ("POST", "/v1/gigs/{gig_id}/close" | "/v1/gigs/{gig_id}/cancel")
        | ("GET", "/v1/gigs/{gig_id}/proposals" | "/v1/me/gigs")
        | (
            "POST",
            "/v1/gigs/{gig_id}/proposals/{proposal_id}/accept"
            | "/v1/gigs/{gig_id}/proposals/{proposal_id}/reject"
            | "/v1/contracts/{contract_id}/milestones/{milestone_id}/fund"
            | "/v1/contracts/{contract_id}/milestones/{milestone_id}/approve"
            | "/v1/contracts/{contract_id}/milestones/{milestone_id}/request-changes",
        ) => &[Client],
        (
            "POST",
            "/v1/gigs/{gig_id}/proposals"
            | "/v1/gigs/{gig_id}/proposals/{proposal_id}/withdraw"
            | "/v1/contracts/{contract_id}/milestones/{milestone_id}/submit"
            | "/v1/me/payouts",
        )
        | ("GET", "/v1/me/proposals" | "/v1/me/wallet" | "/v1/me/payouts")
        | ("PUT", "/v1/me/payout-account") => &[Freelancer],
        (
            "POST",
            "/v1/contracts/{contract_id}/cancel"
            | "/v1/contracts/{contract_id}/disputes"
            | "/v1/contracts/{contract_id}/reviews",
        )
        | ("GET", "/v1/me/contracts") => &[Client, Freelancer],
        ("GET", "/v1/contracts/{contract_id}") => &[Client, Freelancer, Admin],
        ("GET", "/v1/contracts/{contract_id}/ledger") => &[Client, Freelancer, Admin, Auditor],
        ("POST", "/v1/contracts/{contract_id}/disputes/{dispute_id}/resolve")
        | ("GET", "/v1/disputes" | "/v1/payouts") => &[Admin],
        _ => return None,
    })
}

#[sqlx::test(migrator = "gigledger_projections::MIGRATOR")]
async fn every_role_against_every_route(pool: PgPool) {
    let api = TestApi::start_with(
        pool.clone(),
        gigledger_api::settings::HttpSettings::default(),
        false,
    )
    .await;
    let users: Vec<_> = ALL.iter().map(|r| (*r, api.user(&[*r]))).collect();
    let before = api.events_by_users().await;
    for route in table().routes() {
        if route.who == PUBLIC || route.who == PROVIDER || route.path == "/v1/me/stream" {
            continue; // no token needed / the provider's signature / a stream that stays open
        }
        let allowed = let_in(route.method, route.path).unwrap_or_else(|| {
            panic!(
                "{} {} has no rule in this test: add one",
                route.method, route.path
            )
        });
        let path = route
            .path
            .split('/')
            .map(|segment| {
                if segment == "{aggregate_type}" {
                    "gig".to_owned()
                } else if segment.starts_with('{') {
                    uuid::Uuid::now_v7().to_string()
                } else {
                    segment.to_owned()
                }
            })
            .collect::<Vec<_>>()
            .join("/");
        let method = Method::from_bytes(route.method.as_bytes()).expect("a method");
        let body = (route.method != "GET").then(|| json!({}));
        for (role, user) in &users {
            let answer = api
                .send(method.clone(), &path, Some(&user.token), body.as_ref(), &[])
                .await;
            assert!(
                !answer.status.is_server_error(),
                "{role:?} {} {path}: {}",
                route.method,
                answer.status
            );
            if allowed.contains(role) {
                assert_ne!(
                    answer.status,
                    StatusCode::UNAUTHORIZED,
                    "{role:?} {} {path}",
                    route.method
                );
            } else {
                assert!(
                    answer.status == StatusCode::FORBIDDEN
                        || answer.status == StatusCode::NOT_FOUND,
                    "{role:?} may not call {} {}: {} {:?}",
                    route.method,
                    route.path,
                    answer.status,
                    answer.json()
                );
            }
        }
    }
    assert_eq!(api.events_by_users().await, before, "nothing written");
    api.stop().await;
}
