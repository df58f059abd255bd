//! Several domains (`--domain`): links belong to a domain, the same alias may live on two,
//! redirects follow `Host`, and an unknown host gets the fallback or 404; `?domain=` says
//! which of two same aliases a management request means, and bulk CSV has a domain column.

use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::{Engine, TestApp, assert_problem};
use crate::on_every_layout;

on_every_layout!(
    the_same_alias_lives_on_two_domains_and_each_host_finds_its_own,
    an_unknown_host_gets_the_fallback_redirect_or_404,
    the_same_alias_on_two_domains_is_read_changed_counted_and_deleted_by_domain,
    a_bulk_csv_names_each_links_domain_in_a_column,
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

/// `GET|PATCH|DELETE` of `path` as `token`, with a JSON Merge Patch body for `PATCH`.
async fn call(
    app: &TestApp,
    method: Method,
    path: &str,
    token: &str,
    patch: Option<Value>,
) -> reqwest::Response {
    let mut request = app.bearer(method, path, token);
    if let Some(patch) = patch {
        request = request
            .header("content-type", "application/merge-patch+json")
            .body(patch.to_string());
    }
    request.send().await.unwrap()
}

async fn json_of(response: reqwest::Response, status: u16) -> Value {
    assert_eq!(response.status(), status);
    response.json().await.unwrap()
}

async fn the_same_alias_on_two_domains_is_read_changed_counted_and_deleted_by_domain(
    engine: Engine,
) {
    let app = TestApp::spawn_with(&engine, |config| {
        config.domains = vec!["links.example".into(), "go.example".into()];
        config.visit_log_days = Some(30);
    })
    .await;
    let ann = app.account("ann@example.com").await;
    let token = ann.access.as_str();
    let default_host = app.addr.to_string();
    for (url, domain) in [
        ("https://example.com/home", None),
        ("https://example.com/away", Some("links.example")),
    ] {
        let mut body = json!({"longUrl": url, "customAlias": "promo"});
        if let Some(domain) = domain {
            body["domain"] = domain.into();
        }
        assert_eq!(create_on(&app, token, body).await.status(), 201);
    }
    let long_url = |link: Value| link["longUrl"].as_str().unwrap().to_owned();

    // Without the parameter an alias is the default domain's; with it, the named domain's
    // (the default one by its name too, in any case).
    let read = |query: &'static str| call(&app, Method::GET, query, token, None);
    assert_eq!(
        long_url(json_of(read("/links/promo").await, 200).await),
        "https://example.com/home"
    );
    let away = json_of(read("/links/promo?domain=Links.Example").await, 200).await;
    assert_eq!(away["domain"], "links.example");
    assert_eq!(long_url(away), "https://example.com/away");
    assert_eq!(
        long_url(json_of(read("/links/promo?domain=127.0.0.1").await, 200).await),
        "https://example.com/home"
    );
    assert_problem(read("/links/promo?domain=go.example").await, 404).await;
    let problem = assert_problem(read("/links/promo?domain=evil.example").await, 400).await;
    assert_eq!(problem["errors"][0]["field"], "domain", "{problem}");

    // A change reaches the named domain's link only, and its redirect at once.
    let patched = call(
        &app,
        Method::PATCH,
        "/links/promo?domain=links.example",
        token,
        Some(json!({"longUrl": "https://example.com/away-2"})),
    )
    .await;
    assert_eq!(
        long_url(json_of(patched, 200).await),
        "https://example.com/away-2"
    );
    let on_links = follow_on(&app, "links.example", "promo").await;
    assert_eq!(on_links.headers()["location"], "https://example.com/away-2");
    let on_default = follow_on(&app, &default_host, "promo").await;
    assert_eq!(on_default.headers()["location"], "https://example.com/home");
    follow_on(&app, "links.example", "promo").await;

    // Statistics and visits are each link's own: two on links.example, one on the default.
    app.state.clicks.flush().await.unwrap();
    assert!(
        app.state
            .clicks
            .drain(std::time::Duration::from_secs(10))
            .await
    );
    let stats = json_of(read("/links/promo/stats?domain=links.example").await, 200).await;
    assert_eq!(stats["totalClicks"], 2, "{stats}");
    let stats = json_of(read("/links/promo/stats").await, 200).await;
    assert_eq!(stats["totalClicks"], 1, "{stats}");
    let visits = json_of(read("/links/promo/visits?domain=links.example").await, 200).await;
    assert_eq!(visits["items"].as_array().unwrap().len(), 2, "{visits}");
    let visits = json_of(read("/links/promo/visits").await, 200).await;
    assert_eq!(visits["items"].as_array().unwrap().len(), 1, "{visits}");
    let export = call(
        &app,
        Method::POST,
        "/links/promo/exports?domain=links.example",
        token,
        None,
    )
    .await;
    assert_eq!(export.status(), 202);
    assert_problem(
        call(
            &app,
            Method::POST,
            "/links/promo/exports?domain=go.example",
            token,
            None,
        )
        .await,
        404,
    )
    .await;

    // A generated code is found on its own domain, or with no domain named.
    let generated = json_of(
        create_on(
            &app,
            token,
            json!({"longUrl": "https://example.com/gen", "domain": "go.example"}),
        )
        .await,
        201,
    )
    .await;
    let code = generated["shortCode"].as_str().unwrap().to_owned();
    for (query, status) in [
        ("", 200),
        ("?domain=go.example", 200),
        ("?domain=links.example", 404),
    ] {
        let response = call(
            &app,
            Method::GET,
            &format!("/links/{code}{query}"),
            token,
            None,
        )
        .await;
        assert_eq!(response.status(), status, "{query}");
    }

    // Deleting the links.example alias leaves the default domain's.
    let deleted = call(
        &app,
        Method::DELETE,
        "/links/promo?domain=links.example",
        token,
        None,
    )
    .await;
    assert_eq!(deleted.status(), 204);
    assert_problem(follow_on(&app, "links.example", "promo").await, 404).await;
    assert_problem(read("/links/promo?domain=links.example").await, 404).await;
    let on_default = follow_on(&app, &default_host, "promo").await;
    assert_eq!(on_default.headers()["location"], "https://example.com/home");
    assert_eq!(
        long_url(json_of(read("/links/promo").await, 200).await),
        "https://example.com/home"
    );
}

async fn a_bulk_csv_names_each_links_domain_in_a_column(engine: Engine) {
    let app = spawn(&engine, None).await;
    let ann = app.account("ann@example.com").await;
    let csv = "longUrl,customAlias,domain\n\
               https://example.com/b1,sale,links.example\n\
               https://example.com/b2,sale,\n\
               https://example.com/b3,sale,LINKS.example\n\
               https://example.com/b4,other,evil.example\n";
    let response = app
        .bearer(Method::POST, "/links/bulk", &ann.access)
        .header("content-type", "text/csv")
        .body(csv)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 207);
    let result: Value = response.json().await.unwrap();
    let statuses: Vec<i64> = result["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["status"].as_i64().unwrap())
        .collect();
    // The same alias on two domains is two links; twice on one is a conflict.
    assert_eq!(statuses, [201, 201, 409, 422], "{result}");
    assert_eq!(result["items"][0]["link"]["domain"], "links.example");
    assert_eq!(
        result["items"][0]["link"]["shortUrl"],
        "http://links.example/sale"
    );
    assert_eq!(result["items"][1]["link"]["domain"], "127.0.0.1");
    assert_eq!(
        result["items"][3]["problem"]["errors"][0]["field"],
        "domain"
    );
    let on_links = follow_on(&app, "links.example", "sale").await;
    assert_eq!(on_links.headers()["location"], "https://example.com/b1");
    let on_default = follow_on(&app, &app.addr.to_string(), "sale").await;
    assert_eq!(on_default.headers()["location"], "https://example.com/b2");
}
