//! `/openapi.json` documents exactly the router's routes: every route of the table the router is
//! built from is in the document with its "who" and (under `/v1`) the bearer scheme, nothing else
//! is, every `$ref` resolves, the document parses as OpenAPI 3.1, and every `/v1` route of the
//! table really refuses a request without a token.

use std::collections::BTreeSet;

use gigledger_api::routes::{table, PROVIDER, PUBLIC};
use gigledger_tests::http::TestApi;
use reqwest::{Method, StatusCode};
use serde_json::Value;
use sqlx::PgPool;

fn refs(value: &Value, out: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            for (key, inner) in map {
                if key == "$ref" {
                    if let Some(r) = inner.as_str() {
                        out.push(r.to_owned());
                    }
                } else {
                    refs(inner, out);
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|v| refs(v, out)),
        _ => {}
    }
}

#[sqlx::test(migrator = "gigledger_projections::MIGRATOR")]
async fn the_document_covers_every_route_of_the_router_and_nothing_else(pool: PgPool) {
    let api = TestApi::start_with(pool, Default::default(), false).await;
    let answer = api
        .send(Method::GET, "/openapi.json", None, None, &[])
        .await;
    assert_eq!(answer.status, StatusCode::OK);
    let doc = answer.json();
    assert!(
        doc["openapi"]
            .as_str()
            .is_some_and(|v| v.starts_with("3.1")),
        "{}",
        doc["openapi"]
    );
    // It is an OpenAPI document as the model of a maintained implementation reads it.
    let parsed: utoipa::openapi::OpenApi =
        serde_json::from_value(doc.clone()).expect("the document parses as OpenAPI");
    assert!(!parsed.paths.paths.is_empty());
    assert!(doc["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer");

    // Every reference resolves.
    let mut all = Vec::new();
    refs(&doc, &mut all);
    assert!(!all.is_empty());
    for reference in &all {
        let name = reference
            .strip_prefix("#/components/schemas/")
            .unwrap_or_else(|| panic!("unexpected reference {reference}"));
        assert!(
            doc["components"]["schemas"].get(name).is_some(),
            "{reference} does not resolve"
        );
    }

    // The table the router is built from, against the document.
    let routes = table();
    let mut documented = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for method in ["get", "post", "patch", "put", "delete"] {
            if item.get(method).is_some() {
                documented.insert((method.to_uppercase(), path.clone()));
            }
        }
    }
    let routed: BTreeSet<(String, String)> = routes
        .routes()
        .iter()
        .map(|r| (r.method.to_owned(), r.path.to_owned()))
        .collect();
    let missing: Vec<_> = routed.difference(&documented).collect();
    assert!(
        missing.is_empty(),
        "routes missing from the document: {missing:?}"
    );
    let extra: Vec<_> = documented.difference(&routed).collect();
    assert!(extra.is_empty(), "documented but not routed: {extra:?}");

    for route in routes.routes() {
        let operation = &doc["paths"][route.path][route.method.to_lowercase()];
        assert!(
            !route.who.trim().is_empty(),
            "{} {} has no authorisation rule",
            route.method,
            route.path
        );
        assert_eq!(
            operation["x-who"], route.who,
            "{} {}",
            route.method, route.path
        );
        let secured = operation["security"][0].get("bearer").is_some();
        if route.who == PROVIDER {
            // The webhook: the provider's signature, never a bearer token; unsigned, a 400.
            assert!(!secured, "{} {} takes no token", route.method, route.path);
            assert!(
                operation["security"][0].get("provider_signature").is_some(),
                "{} {} names its signature scheme",
                route.method,
                route.path
            );
            let method = Method::from_bytes(route.method.as_bytes()).expect("a method");
            let answer = api
                .send(method, route.path, None, Some(&serde_json::json!({})), &[])
                .await;
            assert_eq!(answer.status, StatusCode::BAD_REQUEST, "{}", route.path);
            assert_eq!(answer.error_fields(), vec!["gigledger-signature"]);
        } else if route.path.starts_with("/v1/") {
            assert!(
                secured,
                "{} {} lacks the bearer scheme",
                route.method, route.path
            );
            assert_ne!(
                route.who, PUBLIC,
                "{} {} is public",
                route.method, route.path
            );
            for status in ["200", "401"] {
                let has = operation["responses"].get(status).is_some()
                    || operation["responses"].get("201").is_some() && status == "200";
                assert!(has, "{} {} documents no {status}", route.method, route.path);
            }
            // The router really guards it: no token, a 401 problem (not a 404 or a 405).
            let path = route
                .path
                .split('/')
                .map(|segment| {
                    if segment.starts_with('{') {
                        uuid::Uuid::now_v7().to_string()
                    } else {
                        segment.to_owned()
                    }
                })
                .collect::<Vec<_>>()
                .join("/");
            let method = Method::from_bytes(route.method.as_bytes()).expect("a method");
            let body = (route.method != "GET").then(|| serde_json::json!({}));
            let answer = api.send(method, &path, None, body.as_ref(), &[]).await;
            assert_eq!(
                answer.status,
                StatusCode::UNAUTHORIZED,
                "{} {path}",
                route.method
            );
            assert_eq!(answer.problem_type(), "/problems/unauthorized");
        } else {
            assert!(!secured, "{} {} needs no token", route.method, route.path);
            assert_eq!(route.who, PUBLIC);
        }
    }

    // A page to read it in.
    let docs = api.send(Method::GET, "/docs", None, None, &[]).await;
    assert_eq!(docs.status, StatusCode::OK);
    assert!(String::from_utf8_lossy(&docs.bytes).contains("openapi"));
    api.stop().await;
}

#[test]
fn every_request_body_and_answer_of_the_frontend_is_a_named_schema() {
    let doc = serde_json::to_value(gigledger_api::openapi::document()).expect("serialises");
    let schemas = doc["components"]["schemas"].as_object().expect("schemas");
    for name in [
        "PostGig",
        "ReviseGig",
        "Propose",
        "Submit",
        "Reason",
        "OpenDispute",
        "Resolve",
        "Review",
        "MarkRead",
        "CommandAnswer",
        "Problem",
        "GigCard",
        "ContractView",
        "MilestoneView",
        "ProposalView",
        "QueuedDispute",
        "LedgerEntry",
        "UserProfile",
        "Money",
        "Budget",
        "Currency",
    ] {
        assert!(
            schemas.contains_key(name),
            "no schema {name}: {:?}",
            schemas.keys().collect::<Vec<_>>()
        );
    }
    // Money is integer minor units, never a float.
    assert_eq!(schemas["Money"]["properties"]["amount"]["type"], "integer");
    assert_eq!(schemas["Money"]["properties"]["amount"]["format"], "int64");
}
