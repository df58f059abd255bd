//! Health, readiness, metrics and the OpenAPI description.

use serde_json::{Value, json};

use crate::helpers::{Engine, SHARDS, TestApp, assert_problem};
use crate::on_both_engines;

on_both_engines!(
    health_and_readiness_answer_while_the_database_is_up,
    readiness_is_503_when_the_database_is_down,
    metrics_count_requests_by_route_and_status,
    the_openapi_document_describes_every_route,
);

async fn health_and_readiness_answer_while_the_database_is_up(engine: Engine) {
    let app = TestApp::spawn(&engine).await;
    assert_eq!(
        app.get("/healthz").await.json::<Value>().await.unwrap(),
        json!({"status": "ok"})
    );
    assert_eq!(
        app.get("/readyz").await.json::<Value>().await.unwrap(),
        json!({"status": "ready"})
    );
}

async fn readiness_is_503_when_the_database_is_down(engine: Engine) {
    let app = TestApp::spawn(&engine).await;
    app.state.store.close().await;
    let response = app.get("/readyz").await;
    assert!(response.headers().contains_key("retry-after"));
    let problem = assert_problem(response, 503).await;
    assert!(
        !problem["detail"].as_str().unwrap().contains("sqlx"),
        "no internals leak"
    );
    // Liveness does not depend on the database.
    assert_eq!(app.get("/healthz").await.status(), 200);
    // Writes fail cleanly too.
    assert_problem(
        app.shorten(json!({"longUrl": "https://example.com/"}))
            .await,
        503,
    )
    .await;
}

async fn metrics_count_requests_by_route_and_status(engine: Engine) {
    let app = TestApp::spawn(&engine).await;
    let code = app.create(json!({"longUrl": "https://example.com/"})).await["shortCode"]
        .as_str()
        .unwrap()
        .to_owned();
    app.follow(&code).await;
    app.follow(&code).await;
    let page = app.get("/metrics").await.text().await.unwrap();
    for needle in [
        r#"basis_http_requests_total{method="POST",route="/shorten",status="201"}"#,
        r#"basis_http_requests_total{method="GET",route="/{code}",status="301"}"#,
        "basis_http_request_duration_seconds_bucket",
        "basis_redirects_total",
        r#"basis_cache_hits_total{namespace="links",tier="l1"}"#,
        r#"basis_cache_misses_total{namespace="links",tier="l1"}"#,
        r#"basis_cache_loads_total{namespace="links"}"#,
        "basis_db_pool_connections",
    ] {
        assert!(page.contains(needle), "missing {needle}");
    }
}

async fn the_openapi_document_describes_every_route(engine: Engine) {
    let app = TestApp::spawn(&engine).await;
    let doc: Value = app.get("/openapi.json").await.json().await.unwrap();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    let paths = doc["paths"].as_object().unwrap();
    // The routes the server serves, read from the router it runs.
    let served = basis_server::routes();
    assert!(served.served().len() > 40, "{:?}", served.served());
    for (method, path) in served.served() {
        let method = method.as_str().to_ascii_lowercase();
        assert!(
            paths
                .get(*path)
                .is_some_and(|described| described[&method].is_object()),
            "{method} {path} is served but not described"
        );
    }
    let create = &paths["/shorten"]["post"]["responses"];
    for status in ["201", "400", "409", "413", "415"] {
        assert!(create[status].is_object(), "POST /shorten lacks {status}");
    }
    assert!(doc["components"]["schemas"]["Problem"].is_object());
}

/// With links sharded, readiness lists every shard database (by number) and says whether it
/// answers; one shard database down fails only its own links, never the instance's readiness.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_reports_each_shard_database_and_stays_ready_with_one_down() {
    let Some(Engine::Postgres(url)) = Engine::postgres() else {
        return;
    };
    let app = TestApp::spawn(&Engine::Sharded(url)).await;
    let ready: Value = app.get("/readyz").await.json().await.unwrap();
    assert_eq!(ready["status"], "ready");
    let shards = ready["shards"]
        .as_array()
        .expect("a list of shard databases");
    assert_eq!(shards.len(), SHARDS, "{ready}");
    for (number, shard) in shards.iter().enumerate() {
        assert_eq!(
            shard,
            &json!({"database": number, "up": true}),
            "in map order, by number, never an address"
        );
    }

    let layout = app.state.store.link_shards().unwrap().layout();
    layout.databases[1].store.close().await;
    let response = app.get("/readyz").await;
    assert_eq!(
        response.status(),
        200,
        "one shard down leaves the instance ready"
    );
    let ready: Value = response.json().await.unwrap();
    let up: Vec<bool> = ready["shards"]
        .as_array()
        .unwrap()
        .iter()
        .map(|shard| shard["up"].as_bool().unwrap())
        .collect();
    let expected: Vec<bool> = (0..SHARDS).map(|number| number != 1).collect();
    assert_eq!(up, expected);
}

/// A request that outlives the configured timeout is answered 503 and stores nothing.
#[tokio::test]
async fn a_request_over_the_time_limit_is_503() {
    // Hashing a link password takes tens of milliseconds, far over a 1 ms limit.
    let app = TestApp::spawn_with(&Engine::Sqlite, |c| c.request_timeout_ms = 1).await;
    let response = app
        .shorten(json!({"longUrl": "https://example.com/", "customAlias": "slow", "password": "a long password"}))
        .await;
    let problem = assert_problem(response, 503).await;
    assert!(problem["detail"].as_str().unwrap().contains("too long"));
    let stored =
        basis_store::links::find(&app.state.store, basis_store::links::LinkKey::Alias("slow"))
            .await
            .unwrap();
    assert!(stored.is_none(), "the cut-off request stored nothing");
}
