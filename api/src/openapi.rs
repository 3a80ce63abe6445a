//! The OpenAPI 3.1 document of exactly the routes in [`crate::routes::table`]: generated from the
//! handlers' `#[utoipa::path]` annotations, with the bearer scheme on every `/v1` operation, the
//! problem responses every command and query can give, and each route's "who" (from the table)
//! as `x-who`. Served at `/openapi.json`, and as a Scalar page at `/docs`.

use axum::response::{Html, IntoResponse, Response};
use serde::Serialize;
use utoipa::openapi::extensions::ExtensionsBuilder;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme};
use utoipa::openapi::{Content, RefOr, ResponseBuilder};
use utoipa::{Modify, OpenApi, ToSchema};

use crate::routes::{
    self, analytics, audit, contracts, disputes, gigs, health, me, payouts, proposals, reviews,
    users,
};

/// What every command answers (plus what a route adds: `contract_id`, `milestone_ids`,
/// `dispute_id`, …). A command recorded whose follow-up step failed answers `202` with
/// `pending: true`.
#[derive(Serialize, ToSchema)]
pub struct CommandAnswer {
    /// The aggregate the command was sent to (a proposal's answer names the proposal).
    pub id: String,
    /// Its version after the command.
    pub version: u64,
    /// The global log position of the last event written, follow-ups included: send it as
    /// `X-Min-Position` to read the effect back.
    pub position: Option<i64>,
}

/// An RFC 9457 problem document (`application/problem+json`).
#[derive(Serialize, ToSchema)]
pub struct Problem {
    /// `/problems/validation`, `/problems/not-found`, …
    #[serde(rename = "type")]
    pub kind: String,
    pub title: String,
    pub status: u16,
    pub detail: String,
    /// For input errors: each field at fault.
    pub errors: Option<Vec<ProblemField>>,
}

/// One input at fault.
#[derive(Serialize, ToSchema)]
pub struct ProblemField {
    pub field: String,
    pub message: String,
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "gigledger",
        description = "An event-sourced backend for freelance marketplaces: gigs, proposals, \
                       contracts with milestones, escrow. Commands take `Idempotency-Key` and \
                       `If-Match`; queries take `X-Min-Position` and answer `X-Position`; errors \
                       are RFC 9457 problems."
    ),
    paths(
        health::healthz, health::readyz, health::metrics, openapi_json, docs,
        gigs::post_gig, gigs::search, gigs::one, gigs::revise, gigs::close, gigs::cancel,
        proposals::propose, proposals::list, proposals::withdraw, proposals::reject,
        proposals::accept,
        contracts::one, contracts::ledger_of, contracts::fund, contracts::submit,
        contracts::request_changes, contracts::approve, contracts::cancel,
        disputes::open, disputes::resolve, disputes::queue,
        reviews::review,
        me::me, me::my_gigs, me::my_proposals, me::my_contracts, me::my_notifications,
        me::mark_read, me::stream,
        users::profile,
        payouts::put_payout_account, payouts::my_wallet, payouts::request_payout,
        payouts::my_payouts, payouts::needing_attention, payouts::webhook,
        audit::events, audit::stream, audit::state_as_of, audit::verify, audit::digest,
        audit::verify_digest, audit::export, audit::reconcile,
        analytics::gmv, analytics::funnel, analytics::time_to_hire, analytics::disputes,
        analytics::skills,
    ),
    // Types named only by query parameters are not collected from the paths: listed here.
    components(schemas(
        CommandAnswer, Problem, ProblemField, gigs::SortParam, gigledger_domain::GigStatus,
        gigledger_projections::read::contracts::DisputeStatus,
        gigledger_projections::read::analytics::Interval,
    )),
    modifiers(&Conventions)
)]
struct ApiDoc;

/// The bearer scheme, the problem responses and `x-who` on every operation.
struct Conventions;

/// The problem statuses a command can answer besides its success.
const COMMAND_PROBLEMS: &[(&str, &str)] = &[
    ("400", "the request cannot be read (path, query, header, JSON syntax)"),
    ("401", "no valid bearer token"),
    ("403", "the caller's role may not do this"),
    ("404", "no such resource, or one the caller may not know of"),
    ("409", "the resource's state does not allow this now, or the idempotency key is in flight"),
    ("412", "`If-Match` names a version the resource has moved on from; nothing was written"),
    ("413", "the body is over 256 KiB"),
    ("415", "the body is not JSON"),
    ("422", "invalid input (`errors` names the fields), or the idempotency key was used for another request"),
    ("429", "the caller's command allowance is used up (`Retry-After`)"),
    ("502", "the payment provider failed"),
    ("503", "try again shortly (`Retry-After`): storage, the time limit, or shutting down"),
    ("504", "the payment provider did not answer in time"),
];

/// The problem statuses a query can answer besides its success.
const QUERY_PROBLEMS: &[(&str, &str)] = &[
    ("400", "the request cannot be read (path, query, header)"),
    ("401", "no valid bearer token"),
    ("403", "the caller's role may not read this"),
    ("404", "no such resource, or one the caller may not know of"),
    (
        "503",
        "the views did not reach `X-Min-Position` in time, or storage failed (`Retry-After`)",
    ),
];

impl Modify for Conventions {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .build(),
            ),
        );
        components.add_security_scheme(
            "provider_signature",
            SecurityScheme::ApiKey(utoipa::openapi::security::ApiKey::Header(
                utoipa::openapi::security::ApiKeyValue::with_description(
                    gigledger_commands::notice::SIGNATURE_HEADER,
                    "t=<unix seconds>,v1=<hex HMAC-SHA256(secret, \"<t>.<raw body>\")>, within five minutes",
                ),
            )),
        );
        let table = routes::table();
        for (path, item) in &mut openapi.paths.paths {
            let operations = [
                ("GET", item.get.as_mut()),
                ("POST", item.post.as_mut()),
                ("PATCH", item.patch.as_mut()),
                ("PUT", item.put.as_mut()),
            ];
            for (method, operation) in operations {
                let Some(operation) = operation else { continue };
                if let Some(route) = table
                    .routes()
                    .iter()
                    .find(|r| r.method == method && r.path == path)
                {
                    let extensions = ExtensionsBuilder::new()
                        .add("x-who", serde_json::json!(route.who))
                        .build();
                    operation
                        .extensions
                        .get_or_insert_with(Default::default)
                        .merge(extensions);
                }
                let signed_by_provider = table
                    .routes()
                    .iter()
                    .any(|r| r.method == method && r.path == path && r.who == routes::PROVIDER);
                if !path.starts_with("/v1/") || signed_by_provider {
                    continue;
                }
                operation.security = Some(vec![SecurityRequirement::new(
                    "bearer",
                    Vec::<String>::new(),
                )]);
                let problems = if method == "GET" {
                    QUERY_PROBLEMS
                } else {
                    COMMAND_PROBLEMS
                };
                for (status, description) in problems {
                    let response = ResponseBuilder::new()
                        .description(*description)
                        .content(
                            crate::error::PROBLEM_JSON,
                            Content::new(Some(RefOr::Ref(utoipa::openapi::Ref::from_schema_name(
                                "Problem",
                            )))),
                        )
                        .build();
                    operation
                        .responses
                        .responses
                        .entry((*status).to_owned())
                        .or_insert(RefOr::T(response));
                }
            }
        }
    }
}

/// The document.
pub fn document() -> utoipa::openapi::OpenApi {
    ApiDoc::openapi()
}

/// `GET /openapi.json`.
#[utoipa::path(get, path = "/openapi.json", tag = "operations", responses((status = 200, description = "this document")))]
pub async fn openapi_json() -> Response {
    axum::Json(document()).into_response()
}

/// `GET /docs`: the document in Scalar's reference page.
#[utoipa::path(get, path = "/docs", tag = "operations", responses((status = 200, description = "this document as a reference page", content_type = "text/html")))]
pub async fn docs() -> Html<String> {
    Html(utoipa_scalar::Scalar::new(document()).to_html())
}
