//! Several domains (`--domain`): links belong to a domain, the same alias may live on two,
//! redirects follow `Host`, and an unknown host gets the fallback or 404.

use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::{Engine, TestApp, assert_problem};
use crate::on_both_engines;

on_both_engines!(
    the_same_alias_lives_on_two_domains_and_each_host_finds_its_own,
    an_unknown_host_gets_the_fallback_redirect_or_404,
);

async fn spawn(engine: &Engine, fallback: Option<&str>) -> TestApp {
    TestApp::spawn_with(engine, |config| {
        config.domains = vec!["links.example".into(), "Go.Example".into()];
        config.unknown_domain_redirect = fallback.map(|u| url::Url::parse(u).unwrap());
    })
    .await
}

async fn follow_on(app: &TestApp, host: &str, code: &str) -> reqwest::Response {
    app.client
        .get(app.url(&format!("/{code}")))
        .header("host", host)
        .send()
        .await
        .unwrap()
}

async fn create_on(app: &TestApp, token: &str, body: Value) -> reqwest::Response {
    app.bearer(Method::POST, "/shorten", token)
        .json(&body)
        .send()
        .await
        .unwrap()
}

async fn the_same_alias_lives_on_two_domains_and_each_host_finds_its_own(engine: Engine) {
    let app = spawn(&engine, None).await;
    let ann = app.account("ann@example.com").await;
    let default_host = app.addr.to_string();

    let home = create_on(
        &app,
        &ann.access,
        json!({"longUrl": "https://example.com/home", "customAlias": "promo"}),
    )
    .await;
    assert_eq!(home.status(), 201);
    let home: Value = home.json().await.unwrap();
    assert_eq!(home["domain"], "127.0.0.1");
    assert_eq!(home["shortUrl"], format!("http://{default_host}/promo"));

    let away = create_on(
        &app,
        &ann.access,
        json!({"longUrl": "https://example.com/away", "customAlias": "promo", "domain": "LINKS.example"}),
    )
    .await;
    assert_eq!(away.status(), 201);
    let away: Value = away.json().await.unwrap();
    assert_eq!(away["domain"], "links.example");
    assert_eq!(away["shortUrl"], "http://links.example/promo");
    // Twice on one domain is still a conflict.
    let again = create_on(
        &app,
        &ann.access,
        json!({"longUrl": "https://example.com/again", "customAlias": "promo", "domain": "links.example"}),
    )
    .await;
    assert_problem(again, 409).await;

    // Each host finds its own link, through the cache too (second round).
    for _ in 0..2 {
        let on_default = follow_on(&app, &default_host, "promo").await;
        assert_eq!(on_default.headers()["location"], "https://example.com/home");
        let on_links = follow_on(&app, "links.example", "promo").await;
        assert_eq!(on_links.headers()["location"], "https://example.com/away");
        let on_links_port = follow_on(&app, "Links.Example:8443", "promo").await;
        assert_eq!(
            on_links_port.headers()["location"],
            "https://example.com/away"
        );
        assert_problem(follow_on(&app, "go.example", "promo").await, 404).await;
    }

    // A generated code belongs to its domain only.
    let generated = create_on(
        &app,
        &ann.access,
        json!({"longUrl": "https://example.com/gen", "domain": "go.example"}),
    )
    .await;
    assert_eq!(generated.status(), 201);
    let generated: Value = generated.json().await.unwrap();
    let code = generated["shortCode"].as_str().unwrap();
    assert_eq!(generated["shortUrl"], format!("http://go.example/{code}"));
    assert_eq!(follow_on(&app, "go.example", code).await.status(), 301);
    assert_problem(follow_on(&app, &default_host, code).await, 404).await;
    // Its preview, on its domain.
    let preview = app
        .client
        .get(app.url(&format!("/{code}+")))
        .header("host", "go.example")
        .header("accept", "application/json")
        .send()
        .await
        .unwrap();
    assert_eq!(preview.status(), 200);
    let preview: Value = preview.json().await.unwrap();
    assert_eq!(preview["shortUrl"], format!("http://go.example/{code}"));

    // A domain the server does not serve is 422, naming the field.
    let unknown = create_on(
        &app,
        &ann.access,
        json!({"longUrl": "https://example.com/x", "domain": "evil.example"}),
    )
    .await;
    let problem = assert_problem(unknown, 422).await;
    assert_eq!(problem["errors"][0]["field"], "domain");

    // The list filters by domain.
    let list = |query: &'static str| {
        let app = &app;
        let token = ann.access.clone();
        async move {
            let response = app.bearer(Method::GET, query, &token).send().await.unwrap();
            assert_eq!(response.status(), 200, "{query}");
            let page: Value = response.json().await.unwrap();
            page["items"]
                .as_array()
                .unwrap()
                .iter()
                .map(|l| l["longUrl"].as_str().unwrap().to_owned())
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(
        list("/links?domain=links.example").await,
        ["https://example.com/away"]
    );
    assert_eq!(
        list("/links?domain=127.0.0.1").await,
        ["https://example.com/home"]
    );
    assert_eq!(list("/links").await.len(), 3);
    let bad = app
        .bearer(Method::GET, "/links?domain=evil.example", &ann.access)
        .send()
        .await
        .unwrap();
    assert_problem(bad, 400).await;

    // Bulk creates keep aliases unique per domain too.
    let bulk = app
        .bearer(Method::POST, "/links/bulk", &ann.access)
        .json(&json!([
            {"longUrl": "https://example.com/b1", "customAlias": "promo", "domain": "go.example"},
            {"longUrl": "https://example.com/b2", "customAlias": "promo", "domain": "links.example"},
        ]))
        .send()
        .await
        .unwrap();
    assert_eq!(bulk.status(), 207);
    let bulk: Value = bulk.json().await.unwrap();
    let statuses: Vec<u64> = bulk["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["status"].as_u64().unwrap())
        .collect();
    assert_eq!(statuses, [201, 409]);
    assert_eq!(
        follow_on(&app, "go.example", "promo").await.headers()["location"],
        "https://example.com/b1"
    );
}

async fn an_unknown_host_gets_the_fallback_redirect_or_404(engine: Engine) {
    let app = spawn(&engine, Some("https://home.example/welcome")).await;
    let code = app
        .create(json!({"longUrl": "https://example.com/x", "customAlias": "known"}))
        .await;
    assert_eq!(code["shortCode"], "known");
    let elsewhere = follow_on(&app, "stranger.example", "known").await;
    assert_eq!(elsewhere.status(), 302);
    assert_eq!(
        elsewhere.headers()["location"],
        "https://home.example/welcome"
    );
    // The API itself answers on any host.
    let api = app
        .client
        .get(app.url("/links/known"))
        .header("host", "stranger.example")
        .send()
        .await
        .unwrap();
    assert_ne!(api.status(), 302);

    let strict = spawn(&engine, None).await;
    strict
        .create(json!({"longUrl": "https://example.com/x", "customAlias": "known"}))
        .await;
    assert_problem(follow_on(&strict, "stranger.example", "known").await, 404).await;
    assert_eq!(
        follow_on(&strict, &strict.addr.to_string(), "known")
            .await
            .status(),
        301
    );
}
