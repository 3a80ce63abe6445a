//! Each mapping to its status and problem body, and each rejection through a small router.

use axum::body::Body;
use axum::extract::DefaultBodyLimit;
use axum::http::{Request, StatusCode};
use axum::routing::{get, post};
use axum::Router;
use gigledger_commands::services::{Outcome, RequestContext, ServiceError};
use gigledger_domain::contract::ContractError;
use gigledger_domain::escrow::EscrowError;
use gigledger_domain::gateway::GatewayError;
use gigledger_domain::gig::GigError;
use serde::Deserialize;
use serde_json::Value;
use tower::ServiceExt;
use uuid::Uuid;

use super::*;

/// The status, headers and parsed problem body of an error's response.
async fn answer(response: Response) -> (StatusCode, HeaderMap, Value) {
    let status = response.status();
    let headers = response.headers().clone();
    let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .expect("the body is readable");
    let body = serde_json::from_slice(&bytes).expect("the body is JSON");
    (status, headers, body)
}

async fn problem(error: ApiError) -> (StatusCode, HeaderMap, Value) {
    answer(error.into_response()).await
}

fn assert_problem(status: StatusCode, headers: &HeaderMap, body: &Value, expected: StatusCode) {
    assert_eq!(status, expected, "{body}");
    assert_eq!(headers[CONTENT_TYPE], PROBLEM_JSON);
    assert_eq!(body["status"], expected.as_u16());
    assert!(body["type"]
        .as_str()
        .is_some_and(|t| t.starts_with("/problems/")));
    assert!(body["title"].as_str().is_some_and(|t| !t.is_empty()));
    assert!(body["detail"].as_str().is_some_and(|t| !t.is_empty()));
}

fn no_if_match() -> RequestContext {
    RequestContext::new()
}

// ---- Mappings -------------------------------------------------------------------------------

#[tokio::test]
async fn a_domain_validation_refusal_is_422_naming_its_field() {
    let (status, headers, body) = problem(GigError::InvalidTitle.into()).await;
    assert_problem(status, &headers, &body, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(body["type"], "/problems/validation");
    assert_eq!(body["errors"][0]["field"], "title");
    assert_eq!(
        body["errors"][0]["message"],
        GigError::InvalidTitle.to_string()
    );
}

#[tokio::test]
async fn a_validation_refusal_without_a_field_names_the_body() {
    let (status, _, body) = problem(GigError::NothingToRevise.into()).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(body["errors"][0]["field"], "body");
}

#[tokio::test]
async fn a_forbidden_refusal_is_403() {
    let (status, headers, body) = problem(ContractError::NotTheClient.into()).await;
    assert_problem(status, &headers, &body, StatusCode::FORBIDDEN);
    assert_eq!(body["type"], "/problems/forbidden");
    assert!(body.get("errors").is_none());
}

#[tokio::test]
async fn a_not_found_refusal_is_404() {
    let (status, headers, body) = problem(ContractError::ContractNotFound.into()).await;
    assert_problem(status, &headers, &body, StatusCode::NOT_FOUND);
    assert_eq!(body["type"], "/problems/not-found");
}

#[tokio::test]
async fn a_state_refusal_is_409() {
    let (status, headers, body) = problem(EscrowError::AlreadyDeposited.into()).await;
    assert_problem(status, &headers, &body, StatusCode::CONFLICT);
    assert_eq!(body["type"], "/problems/conflict");
}

#[tokio::test]
async fn a_declined_or_voided_charge_is_409() {
    for gateway in [GatewayError::Declined("card".into()), GatewayError::Voided] {
        let (status, _, body) = problem(EscrowError::Gateway(gateway).into()).await;
        assert_eq!(status, StatusCode::CONFLICT, "{body}");
    }
}

#[tokio::test]
async fn a_failed_payment_provider_is_502() {
    let error = EscrowError::Gateway(GatewayError::Unavailable("down".into()));
    let (status, headers, body) = problem(error.into()).await;
    assert_problem(status, &headers, &body, StatusCode::BAD_GATEWAY);
    assert_eq!(body["type"], "/problems/payment-provider-failed");
}

#[tokio::test]
async fn a_silent_payment_provider_is_504() {
    let error = EscrowError::Gateway(GatewayError::Timeout);
    let (status, headers, body) = problem(error.into()).await;
    assert_problem(status, &headers, &body, StatusCode::GATEWAY_TIMEOUT);
    assert_eq!(body["type"], "/problems/payment-provider-timeout");
}

#[tokio::test]
async fn a_service_refusal_maps_as_its_domain_error() {
    let error = ServiceError::Gig(GigError::NotOwner);
    let (status, _, _) = problem(ApiError::from_service(error, &no_if_match())).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let error = ServiceError::Escrow(EscrowError::Gateway(GatewayError::Timeout));
    let (status, _, _) = problem(ApiError::from_service(error, &no_if_match())).await;
    assert_eq!(status, StatusCode::GATEWAY_TIMEOUT);
}

#[tokio::test]
async fn a_conflict_under_a_stale_if_match_is_412() {
    let ctx = RequestContext {
        expected_version: Some(3),
        ..RequestContext::new()
    };
    let error = ServiceError::Conflict {
        aggregate_type: "contract",
    };
    let (status, headers, body) = problem(ApiError::from_service(error, &ctx)).await;
    assert_problem(status, &headers, &body, StatusCode::PRECONDITION_FAILED);
    assert_eq!(body["type"], "/problems/precondition-failed");
}

#[tokio::test]
async fn a_conflict_through_every_retry_without_if_match_is_409() {
    let error = ServiceError::Conflict {
        aggregate_type: "contract",
    };
    let (status, _, body) = problem(ApiError::from_service(error, &no_if_match())).await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(body["type"], "/problems/conflict");
}

#[tokio::test]
async fn a_domain_refusal_under_if_match_stays_itself() {
    let ctx = RequestContext {
        expected_version: Some(3),
        ..RequestContext::new()
    };
    let error = ServiceError::Contract(ContractError::MilestoneAlreadyApproved);
    let (status, _, _) = problem(ApiError::from_service(error, &ctx)).await;
    assert_eq!(status, StatusCode::CONFLICT);
}

#[tokio::test]
async fn an_internal_failure_is_500_and_its_cause_is_not_sent() {
    let error = ServiceError::Internal("connection to 10.0.0.7 reset; secret=hunter2".into());
    let (status, headers, body) = problem(ApiError::from_service(error, &no_if_match())).await;
    assert_problem(status, &headers, &body, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(body["type"], "/problems/internal");
    let text = body.to_string();
    assert!(
        !text.contains("10.0.0.7") && !text.contains("hunter2"),
        "{text}"
    );
}

#[tokio::test]
async fn storage_that_failed_before_recording_is_503_with_retry_after() {
    let error = ServiceError::NotRecorded("statement timeout at 10.0.0.7".into());
    let (status, headers, body) = problem(ApiError::from_service(error, &no_if_match())).await;
    assert_problem(status, &headers, &body, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(headers[RETRY_AFTER], "1");
    assert!(!body.to_string().contains("10.0.0.7"));
}

#[tokio::test]
async fn a_recorded_command_with_a_pending_follow_up_is_503_naming_what_it_wrote() {
    let error = ServiceError::Incomplete {
        outcome: Box::new(Outcome {
            id: "c0ffee".into(),
            version: 4,
            position: Some(42),
            events: vec!["FundsDeposited".into()],
        }),
        step: "MarkMilestoneFunded".into(),
        cause: "connection reset".into(),
    };
    let (status, headers, body) = problem(ApiError::from_service(error, &no_if_match())).await;
    assert_problem(status, &headers, &body, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(headers[RETRY_AFTER], "1");
    assert_eq!(body["id"], "c0ffee");
    assert_eq!(body["version"], 4);
    assert_eq!(body["position"], 42);
    assert!(!body.to_string().contains("connection reset"));
}

#[test]
fn only_a_recorded_command_keeps_its_idempotency_key() {
    let incomplete = ServiceError::Incomplete {
        outcome: Box::new(Outcome {
            id: "c".into(),
            version: 1,
            position: Some(1),
            events: vec![],
        }),
        step: "s".into(),
        cause: "c".into(),
    };
    assert!(ApiError::from_service(incomplete, &no_if_match()).recorded_something());
    let others = [
        ServiceError::NotRecorded("n".into()),
        ServiceError::Internal("i".into()),
        ServiceError::Gig(GigError::InvalidTitle),
        ServiceError::Escrow(EscrowError::Gateway(GatewayError::Timeout)),
    ];
    for error in others {
        assert!(!ApiError::from_service(error, &no_if_match()).recorded_something());
    }
}

#[tokio::test]
async fn idempotency_answers_are_409_in_flight_and_422_reused() {
    let (status, headers, body) = problem(ApiError::IdempotencyKeyInFlight).await;
    assert_problem(status, &headers, &body, StatusCode::CONFLICT);
    assert_eq!(headers[RETRY_AFTER], "1");
    assert_eq!(body["type"], "/problems/idempotency-key-in-flight");
    let (status, headers, body) = problem(ApiError::IdempotencyKeyReused).await;
    assert_problem(status, &headers, &body, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(body["type"], "/problems/idempotency-key-reused");
}

#[tokio::test]
async fn auth_and_rate_answers_keep_their_status() {
    let cases = [
        (
            ApiError::Unauthorized {
                detail: "no token".into(),
            },
            StatusCode::UNAUTHORIZED,
        ),
        (
            ApiError::TooManyRequests { retry_after: 7 },
            StatusCode::TOO_MANY_REQUESTS,
        ),
    ];
    for (error, expected) in cases {
        let (status, headers, body) = problem(error).await;
        assert_problem(status, &headers, &body, expected);
    }
    let (_, headers, _) = problem(ApiError::TooManyRequests { retry_after: 7 }).await;
    assert_eq!(headers[RETRY_AFTER], "7");
}

// ---- Rejections through a router ------------------------------------------------------------

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
#[expect(dead_code, reason = "only parsed")]
struct Proposal {
    cover_letter: String,
    milestones: Vec<Milestone>,
}

#[derive(Debug, Deserialize)]
#[expect(dead_code, reason = "only parsed")]
struct Milestone {
    title: String,
    amount: i64,
}

#[derive(Debug, Deserialize)]
#[expect(dead_code, reason = "only parsed")]
struct Page {
    limit: Option<u8>,
    cursor: Option<String>,
}

fn router() -> Router {
    Router::new()
        .route(
            "/proposals",
            post(|ApiJson(_): ApiJson<Proposal>| async { "ok" }),
        )
        .route(
            "/anything",
            post(|ApiJson(_): ApiJson<Value>| async { "ok" }),
        )
        .route(
            "/contracts/{contract_id}/milestones/{milestone_id}",
            get(|ApiPath((_, _)): ApiPath<(Uuid, Uuid)>| async { "ok" }),
        )
        .route("/gigs", get(|ApiQuery(_): ApiQuery<Page>| async { "ok" }))
        .fallback(route_not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(LIMIT))
}

async fn send(request: Request<Body>) -> (StatusCode, HeaderMap, Value) {
    let response = router().oneshot(request).await.expect("the router answers");
    answer(response).await
}

fn post_json(path: &str, body: impl Into<Body>) -> Request<Body> {
    Request::post(path)
        .header(CONTENT_TYPE, "application/json")
        .body(body.into())
        .expect("a request")
}

/// API.md's body limit.
const LIMIT: usize = 256 * 1024;

const GOOD: &str = r#"{"cover_letter":"hi","milestones":[{"title":"a","amount":5}]}"#;

#[tokio::test]
async fn a_good_body_passes() {
    let response = router()
        .oneshot(post_json("/proposals", GOOD))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let with_charset = Request::post("/proposals")
        .header(CONTENT_TYPE, "application/json; charset=utf-8")
        .body(Body::from(GOOD))
        .unwrap();
    let response = router().oneshot(with_charset).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
}

#[tokio::test]
async fn a_body_that_is_not_json_is_400() {
    let (status, headers, body) = send(post_json("/proposals", "{not json")).await;
    assert_problem(status, &headers, &body, StatusCode::BAD_REQUEST);
    assert_eq!(body["type"], "/problems/bad-request");
    assert_eq!(body["errors"][0]["field"], "body");
}

#[tokio::test]
async fn an_empty_body_is_400() {
    let (status, headers, body) = send(post_json("/proposals", "")).await;
    assert_problem(status, &headers, &body, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn trailing_bytes_after_the_json_are_400() {
    let (status, headers, body) = send(post_json("/proposals", format!("{GOOD} x"))).await;
    assert_problem(status, &headers, &body, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn a_value_of_the_wrong_type_is_422_naming_its_path() {
    let body = r#"{"cover_letter":"hi","milestones":[{"title":"a","amount":"5"}]}"#;
    let (status, headers, body) = send(post_json("/proposals", body)).await;
    assert_problem(status, &headers, &body, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(body["type"], "/problems/validation");
    assert_eq!(body["errors"][0]["field"], "milestones[0].amount");
}

#[tokio::test]
async fn a_missing_field_is_422_naming_it() {
    let body = r#"{"cover_letter":"hi","milestones":[{"amount":5}]}"#;
    let (status, headers, body) = send(post_json("/proposals", body)).await;
    assert_problem(status, &headers, &body, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(body["errors"][0]["field"], "milestones[0].title");
    let (_, _, body) = send(post_json("/proposals", r#"{"milestones":[]}"#)).await;
    assert_eq!(body["errors"][0]["field"], "cover_letter");
}

#[tokio::test]
async fn an_unknown_field_where_it_matters_is_422_naming_it() {
    let body = r#"{"cover_letter":"hi","milestones":[],"bid":9}"#;
    let (status, headers, body) = send(post_json("/proposals", body)).await;
    assert_problem(status, &headers, &body, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(body["errors"][0]["field"], "bid");
}

#[tokio::test]
async fn a_wrong_content_type_is_415() {
    let request = Request::post("/proposals")
        .header(CONTENT_TYPE, "text/plain")
        .body(Body::from(GOOD))
        .unwrap();
    let (status, headers, body) = send(request).await;
    assert_problem(status, &headers, &body, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let request = Request::post("/proposals").body(Body::from(GOOD)).unwrap();
    let (status, _, _) = send(request).await;
    assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
}

#[tokio::test]
async fn json_nested_ten_thousand_deep_is_400_not_a_crash() {
    let deep = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
    let (status, headers, body) = send(post_json("/anything", deep.clone())).await;
    assert_problem(status, &headers, &body, StatusCode::BAD_REQUEST);
    // A typed body refuses the first value that does not fit, before the depth matters.
    let (status, _, body) = send(post_json("/proposals", deep)).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    let deep_field = format!(
        r#"{{"cover_letter":"hi","milestones":[{{"title":{}1{}}}]}}"#,
        "[".repeat(10_000),
        "]".repeat(10_000)
    );
    let (status, _, body) = send(post_json("/proposals", deep_field)).await;
    assert!(status.is_client_error(), "{body}");
    let deep_objects = format!("{}1{}", r#"{"a":"#.repeat(10_000), "}".repeat(10_000));
    let (status, _, _) = send(post_json("/anything", deep_objects)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn invalid_utf8_is_400() {
    let mut bytes = br#"{"cover_letter":""#.to_vec();
    bytes.extend_from_slice(&[0xff, 0xfe, 0xc3]);
    bytes.extend_from_slice(br#"","milestones":[]}"#);
    let (status, headers, body) = send(post_json("/proposals", bytes)).await;
    assert_problem(status, &headers, &body, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn a_body_over_the_limit_is_413() {
    let big = format!(
        r#"{{"cover_letter":"{}","milestones":[]}}"#,
        "x".repeat(LIMIT)
    );
    let (status, headers, body) = send(post_json("/proposals", big)).await;
    assert_problem(status, &headers, &body, StatusCode::PAYLOAD_TOO_LARGE);
}

#[tokio::test]
async fn a_bad_uuid_in_a_path_is_400_naming_the_parameter() {
    let path = format!("/contracts/{}/milestones/not-a-uuid", Uuid::nil());
    let request = Request::get(path).body(Body::empty()).unwrap();
    let (status, headers, body) = send(request).await;
    assert_problem(status, &headers, &body, StatusCode::BAD_REQUEST);
    assert_eq!(body["errors"][0]["field"], "milestone_id");
    let good = format!("/contracts/{}/milestones/{}", Uuid::nil(), Uuid::nil());
    let response = router()
        .oneshot(Request::get(good).body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
}

#[tokio::test]
async fn a_bad_query_value_is_400_naming_the_parameter() {
    for query in ["limit=abc", "limit=300", "limit=-1"] {
        let request = Request::get(format!("/gigs?{query}"))
            .body(Body::empty())
            .unwrap();
        let (status, headers, body) = send(request).await;
        assert_problem(status, &headers, &body, StatusCode::BAD_REQUEST);
        assert_eq!(body["errors"][0]["field"], "limit", "{query}: {body}");
    }
    let ok = Request::get("/gigs?limit=5&cursor=x")
        .body(Body::empty())
        .unwrap();
    assert_eq!(router().oneshot(ok).await.unwrap().status(), StatusCode::OK);
}

#[tokio::test]
async fn an_unknown_route_is_a_404_problem_and_a_wrong_method_a_405_problem() {
    let request = Request::get("/nowhere").body(Body::empty()).unwrap();
    let (status, headers, body) = send(request).await;
    assert_problem(status, &headers, &body, StatusCode::NOT_FOUND);
    let request = Request::delete("/gigs").body(Body::empty()).unwrap();
    let (status, headers, body) = send(request).await;
    assert_problem(status, &headers, &body, StatusCode::METHOD_NOT_ALLOWED);
}
