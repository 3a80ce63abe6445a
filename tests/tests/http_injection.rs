//! Injection (issue 14, part): SQL metacharacters, LIKE wildcards and `tsquery` syntax in the
//! board's search and filters are inert — a 200 with what the words really match, never a 5xx.

use gigledger_domain::Role;
use gigledger_tests::http::TestApi;
use reqwest::StatusCode;
use serde_json::json;
use sqlx::PgPool;

#[sqlx::test(migrator = "gigledger_projections::MIGRATOR")]
async fn search_and_filters_take_metacharacters_as_text(pool: PgPool) {
    let api = TestApi::start(pool).await;
    let client = api.user(&[Role::Client]);
    let posted = api
        .post(
            &client,
            "/v1/gigs",
            &json!({
                "title": "O'Brien & Sons: 100% uptime",
                "description": "Keep the invoices' API at 100% -- no downtime; drop table gigs;",
                "skills": ["rust", "c++"],
                "budget": { "kind": "fixed", "amount": { "amount": 50_000, "currency": "USD" } },
            }),
        )
        .await;
    assert_eq!(posted.status, StatusCode::CREATED, "{:?}", posted.json());
    let at = posted.position();
    let gig = posted.json()["id"].as_str().expect("an id").to_owned();
    let found = |path: String| {
        let api = &api;
        let client = &client;
        async move {
            let answer = api.get_at(client, &path, at).await;
            assert_eq!(answer.status, StatusCode::OK, "{path}: {:?}", answer.json());
            answer.json()["items"]
                .as_array()
                .expect("items")
                .iter()
                .map(|g| g["gig_id"].as_str().expect("a gig id").to_owned())
                .collect::<Vec<_>>()
        }
    };
    let q = |text: &str| {
        format!(
            "/v1/gigs?q={}",
            url::form_urlencoded::byte_serialize(text.as_bytes()).collect::<String>()
        )
    };
    // The words find it, quotes and ampersands and all.
    assert_eq!(found(q("O'Brien")).await, vec![gig.clone()]);
    assert_eq!(found(q("uptime & sons")).await, vec![gig.clone()]);
    // Query syntax and SQL are only words: no error, and no match they do not make.
    for hostile in [
        "') or 1=1 --",
        "'; drop table read.gig_board; --",
        "!!! & | :* <-> (",
        "%",
        "_",
        "\\",
        "\"unbalanced",
        "a:*",
    ] {
        let ids = found(q(hostile)).await;
        assert!(
            ids.is_empty() || ids == vec![gig.clone()],
            "{hostile}: {ids:?}"
        );
    }
    // LIKE wildcards and quotes in a skill filter match only the skill spelled so.
    assert!(found("/v1/gigs?skills=%25".to_owned()).await.is_empty());
    assert!(found("/v1/gigs?skills=r_st".to_owned()).await.is_empty());
    assert_eq!(
        found("/v1/gigs?skills=c%2B%2B".to_owned()).await,
        vec![gig.clone()]
    );
    assert!(
        found("/v1/gigs?skills=%27%20or%20%271%27%3D%271".to_owned())
            .await
            .is_empty()
    );
    // The board is still there.
    assert_eq!(found("/v1/gigs".to_owned()).await, vec![gig]);
    api.stop().await;
}
