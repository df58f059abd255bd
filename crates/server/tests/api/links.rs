//! Creating, reading, changing and deleting links, and their statistics.

use serde_json::{Value, json};

use crate::helpers::{CRAWLER, DESKTOP, Engine, PHONE, TestApp, assert_problem};
use crate::on_both_engines;

on_both_engines!(
    creating_a_link_returns_201_with_location_and_the_link,
    reuse_returns_the_existing_plain_link_with_200,
    reuse_with_options_is_refused,
    a_custom_alias_becomes_the_code_and_a_taken_alias_is_409,
    reserved_and_malformed_aliases_are_400,
    unsafe_or_looping_urls_are_400_naming_the_field,
    blocked_hosts_are_refused,
    invalid_options_are_400_naming_each_field,
    reading_a_link_shows_its_click_count,
    patching_changes_the_target_the_redirect_follows,
    patching_with_null_clears_an_option,
    patching_rejects_unknown_fields_and_invalid_values,
    deleting_a_link_makes_its_code_404,
    stats_count_days_referrers_and_devices_with_bots_apart,
    links_and_flushed_clicks_survive_a_restart,
);

async fn creating_a_link_returns_201_with_location_and_the_link(engine: Engine) {
    let app = TestApp::spawn(&engine).await;
    let response = app
        .shorten(json!({"longUrl": "https://example.com/a/long/path?q=1"}))
        .await;
    assert_eq!(response.status(), 201);
    let location = response.headers()["location"].to_str().unwrap().to_owned();
    let body: Value = response.json().await.unwrap();
    let code = body["shortCode"].as_str().unwrap();
    assert_eq!(code.len(), 7);
    assert!(code.chars().all(|c| c.is_ascii_alphanumeric()));
    assert_eq!(location, format!("/links/{code}"));
    assert_eq!(body["shortUrl"], format!("http://{}/{code}", app.addr));
    assert_eq!(body["longUrl"], "https://example.com/a/long/path?q=1");
    assert_eq!(body["redirectType"], 301);
    assert_eq!(body["expiresAt"], Value::Null);
    assert_eq!(body["maxClicks"], Value::Null);
    assert!(body["createdAt"].as_str().unwrap().ends_with('Z'));

    // The same URL again without reuse: a new, different code.
    let again = app
        .create(json!({"longUrl": "https://example.com/a/long/path?q=1"}))
        .await;
    assert_ne!(again["shortCode"], body["shortCode"]);
}

async fn reuse_returns_the_existing_plain_link_with_200(engine: Engine) {
    let app = TestApp::spawn(&engine).await;
    // A link made without `reuse` was asked to be distinct: it is not handed out again.
    let distinct = app
        .create(json!({"longUrl": "https://example.com/reuse"}))
        .await;
    let first = app
        .create(json!({"longUrl": "https://example.com/reuse", "reuse": true}))
        .await;
    assert_ne!(first["shortCode"], distinct["shortCode"]);
    // A protected link to the same URL is not a reuse candidate.
    app.create(json!({"longUrl": "https://example.com/other", "password": "pw"}))
        .await;

    let response = app
        .shorten(json!({"longUrl": "https://example.com/reuse", "reuse": true}))
        .await;
    assert_eq!(response.status(), 200);
    let reused: Value = response.json().await.unwrap();
    assert_eq!(reused["shortCode"], first["shortCode"]);

    // A candidate that stops being plain is not reused; once plain again, it is.
    let code = first["shortCode"].as_str().unwrap();
    let patch = |body: Value| {
        app.client
            .patch(app.url(&format!("/links/{code}")))
            .header("content-type", "application/merge-patch+json")
            .body(body.to_string())
            .send()
    };
    assert_eq!(
        patch(json!({"redirectType": 302})).await.unwrap().status(),
        200
    );
    let response = app
        .shorten(json!({"longUrl": "https://example.com/reuse", "reuse": true}))
        .await;
    assert_eq!(response.status(), 201, "a 302 link is not plain");
    let second: Value = response.json().await.unwrap();
    assert_eq!(
        patch(json!({"redirectType": 301})).await.unwrap().status(),
        200
    );
    let response = app
        .shorten(json!({"longUrl": "https://example.com/reuse", "reuse": true}))
        .await;
    assert_eq!(response.status(), 200);
    let reused: Value = response.json().await.unwrap();
    assert_eq!(
        reused["shortCode"], first["shortCode"],
        "the oldest candidate wins"
    );
    assert_ne!(second["shortCode"], first["shortCode"]);

    let response = app
        .shorten(json!({"longUrl": "https://example.com/other", "reuse": true}))
        .await;
    assert_eq!(response.status(), 201, "only plain links are reused");
}

async fn reuse_with_options_is_refused(engine: Engine) {
    let app = TestApp::spawn(&engine).await;
    let body = assert_problem(
        app.shorten(
            json!({"longUrl": "https://example.com/", "reuse": true, "customAlias": "mine"}),
        )
        .await,
        400,
    )
    .await;
    assert_eq!(body["errors"][0]["field"], "reuse");
}

async fn a_custom_alias_becomes_the_code_and_a_taken_alias_is_409(engine: Engine) {
    let app = TestApp::spawn(&engine).await;
    let link = app
        .create(json!({"longUrl": "https://example.com/", "customAlias": "my-Link_1"}))
        .await;
    assert_eq!(link["shortCode"], "my-Link_1");
    let response = app.follow("my-Link_1").await;
    assert_eq!(response.status(), 301);

    let problem = assert_problem(
        app.shorten(json!({"longUrl": "https://example.org/", "customAlias": "my-Link_1"}))
            .await,
        409,
    )
    .await;
    assert!(problem["detail"].as_str().unwrap().contains("my-Link_1"));
    // The first link still points where it did.
    assert_eq!(
        app.link("my-Link_1").await["longUrl"],
        "https://example.com/"
    );
}

async fn reserved_and_malformed_aliases_are_400(engine: Engine) {
    let app = TestApp::spawn(&engine).await;
    for alias in [
        "links",
        "shorten",
        "Users",
        "healthz",
        "metrics",
        "openapi",
        "ab",
        "has space",
        "dot.ted",
        "ü-nicode",
    ] {
        let body = assert_problem(
            app.shorten(json!({"longUrl": "https://example.com/", "customAlias": alias}))
                .await,
            400,
        )
        .await;
        assert_eq!(body["errors"][0]["field"], "customAlias", "{alias}");
    }
}

async fn unsafe_or_looping_urls_are_400_naming_the_field(engine: Engine) {
    let app = TestApp::spawn(&engine).await;
    let own = format!("http://{}/abc", app.addr);
    let too_long = format!("https://example.com/{}", "x".repeat(2048));
    for url in [
        "javascript:alert(1)",
        "data:text/html;base64,PHNjcmlwdD4=",
        "file:///etc/passwd",
        "ftp://example.com/file",
        "//example.com/no-scheme",
        "not a url",
        "",
        "https://",
        own.as_str(),
        too_long.as_str(),
    ] {
        let body = assert_problem(app.shorten(json!({"longUrl": url})).await, 400).await;
        assert_eq!(body["errors"][0]["field"], "longUrl", "{url}");
    }
}

async fn blocked_hosts_are_refused(engine: Engine) {
    let dir = tempfile::tempdir().unwrap();
    let list = dir.path().join("blocked.txt");
    std::fs::write(
        &list,
        "# phishing\nevil.example\n\nmalware.test # comment\n",
    )
    .unwrap();
    let app = TestApp::spawn_with(&engine, |c| c.host_blocklist = Some(list.clone())).await;
    for url in [
        "https://evil.example/",
        "https://login.evil.example/x",
        "http://MALWARE.test",
    ] {
        assert_problem(app.shorten(json!({"longUrl": url})).await, 400).await;
    }
    app.create(json!({"longUrl": "https://good.example/"}))
        .await;
}

async fn invalid_options_are_400_naming_each_field(engine: Engine) {
    let app = TestApp::spawn(&engine).await;
    let past = (chrono::Utc::now() - chrono::Duration::hours(1)).to_rfc3339();
    let body = assert_problem(
        app.shorten(json!({
            "longUrl": "https://example.com/",
            "redirectType": 303,
            "maxClicks": 0,
            "expiresAt": past,
            "password": "",
        }))
        .await,
        400,
    )
    .await;
    let mut fields: Vec<&str> = body["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["field"].as_str().unwrap())
        .collect();
    fields.sort_unstable();
    assert_eq!(
        fields,
        ["expiresAt", "maxClicks", "password", "redirectType"]
    );
    // Wrong JSON types are 400 as well.
    assert_problem(
        app.shorten(json!({"longUrl": "https://example.com/", "maxClicks": "many"}))
            .await,
        400,
    )
    .await;
    assert_problem(
        app.shorten(json!({"longUrl": "https://example.com/", "expiresAt": "tomorrow"}))
            .await,
        400,
    )
    .await;
    assert_problem(
        app.shorten(json!({"url": "https://example.com/"})).await,
        400,
    )
    .await;
}

async fn reading_a_link_shows_its_click_count(engine: Engine) {
    let app = TestApp::spawn(&engine).await;
    let code = app.create(json!({"longUrl": "https://example.com/"})).await["shortCode"]
        .as_str()
        .unwrap()
        .to_owned();
    for _ in 0..3 {
        assert_eq!(app.follow(&code).await.status(), 301);
    }
    assert_eq!(app.link(&code).await["clickCount"], 3);
    // Flushing moves the count to the database without changing what is shown.
    app.state.clicks.flush().await.unwrap();
    assert_eq!(app.link(&code).await["clickCount"], 3);
    assert_problem(app.get("/links/nosuchcode").await, 404).await;
}

async fn patching_changes_the_target_the_redirect_follows(engine: Engine) {
    let app = TestApp::spawn(&engine).await;
    let code = app.create(json!({"longUrl": "https://old.example/"})).await["shortCode"]
        .as_str()
        .unwrap()
        .to_owned();
    // Warm the lookup cache with the old target.
    assert_eq!(
        app.follow(&code).await.headers()["location"],
        "https://old.example/"
    );

    let response = app
        .client
        .patch(app.url(&format!("/links/{code}")))
        .header("content-type", "application/merge-patch+json")
        .body(r#"{"longUrl": "https://new.example/", "redirectType": 307}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["longUrl"], "https://new.example/");
    assert_eq!(body["redirectType"], 307);

    let response = app.follow(&code).await;
    assert_eq!(response.status(), 307);
    assert_eq!(response.headers()["location"], "https://new.example/");
}

async fn patching_with_null_clears_an_option(engine: Engine) {
    let app = TestApp::spawn(&engine).await;
    let later = (app.clock_now() + chrono::Duration::days(1)).to_rfc3339();
    let code = app
        .create(json!({"longUrl": "https://example.com/", "expiresAt": later, "maxClicks": 5}))
        .await["shortCode"]
        .as_str()
        .unwrap()
        .to_owned();
    let patch = |body: Value| {
        app.client
            .patch(app.url(&format!("/links/{code}")))
            .json(&body)
            .send()
    };
    let body: Value = patch(json!({"expiresAt": null}))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(body["expiresAt"], Value::Null);
    assert_eq!(body["maxClicks"], 5, "absent members stay as they were");
    let body: Value = patch(json!({"maxClicks": null}))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(body["maxClicks"], Value::Null);
    assert_eq!(app.link(&code).await["maxClicks"], Value::Null);
}

async fn patching_rejects_unknown_fields_and_invalid_values(engine: Engine) {
    let app = TestApp::spawn(&engine).await;
    let code = app.create(json!({"longUrl": "https://example.com/"})).await["shortCode"]
        .as_str()
        .unwrap()
        .to_owned();
    let path = format!("/links/{code}");
    let send = |body: &'static str, content_type: &'static str| {
        app.client
            .patch(app.url(&path))
            .header("content-type", content_type)
            .body(body)
            .send()
    };
    assert_problem(
        send(r#"{"customAlias": "x"}"#, "application/json")
            .await
            .unwrap(),
        400,
    )
    .await;
    assert_problem(
        send(r#"{"longUrl": "javascript:x"}"#, "application/json")
            .await
            .unwrap(),
        400,
    )
    .await;
    assert_problem(
        send(r#"{"redirectType": 200}"#, "application/json")
            .await
            .unwrap(),
        400,
    )
    .await;
    assert_problem(
        send(r#"{"longUrl": "#, "application/json").await.unwrap(),
        400,
    )
    .await;
    assert_problem(
        send(r#"{"longUrl": "https://x.example/"}"#, "text/plain")
            .await
            .unwrap(),
        415,
    )
    .await;
    // Nothing was changed by the rejected requests.
    assert_eq!(app.link(&code).await["longUrl"], "https://example.com/");
    assert_eq!(app.link(&code).await["redirectType"], 301);
}

async fn deleting_a_link_makes_its_code_404(engine: Engine) {
    let app = TestApp::spawn(&engine).await;
    let code = app.create(json!({"longUrl": "https://example.com/"})).await["shortCode"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(app.follow(&code).await.status(), 301);
    let delete = || app.client.delete(app.url(&format!("/links/{code}"))).send();
    assert_eq!(delete().await.unwrap().status(), 204);
    assert_problem(app.follow(&code).await, 404).await;
    assert_problem(app.get(&format!("/links/{code}")).await, 404).await;
    assert_problem(delete().await.unwrap(), 404).await;
    // Pending clicks of the deleted link are dropped without failing the flush.
    app.state.clicks.flush().await.unwrap();
}

async fn stats_count_days_referrers_and_devices_with_bots_apart(engine: Engine) {
    let app = TestApp::spawn(&engine).await;
    let code = app.create(json!({"longUrl": "https://example.com/"})).await["shortCode"]
        .as_str()
        .unwrap()
        .to_owned();
    let click = |ua: &'static str, referer: Option<&'static str>| {
        let mut request = app
            .client
            .get(app.url(&format!("/{code}")))
            .header("user-agent", ua);
        if let Some(referer) = referer {
            request = request.header("referer", referer);
        }
        request.send()
    };
    click(DESKTOP, Some("https://news.example/item?id=1"))
        .await
        .unwrap();
    click(DESKTOP, Some("https://news.example/other"))
        .await
        .unwrap();
    click(PHONE, Some("https://social.example/")).await.unwrap();
    // Flushed and unflushed clicks both count.
    app.state.clicks.flush().await.unwrap();
    click(PHONE, None).await.unwrap();
    click(CRAWLER, Some("https://spam.example/")).await.unwrap();
    // The next day.
    app.clock.advance_ms(86_400_000);
    click(DESKTOP, Some("https://news.example/")).await.unwrap();

    let stats: Value = app
        .get(&format!("/links/{code}/stats"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(stats["totalClicks"], 5);
    assert_eq!(stats["botClicks"], 1);
    assert_eq!(
        stats["devices"],
        json!({"desktop": 3, "mobile": 2, "tablet": 0, "bot": 1})
    );
    assert_eq!(
        stats["topReferrers"],
        json!([{"host": "news.example", "clicks": 3}, {"host": "social.example", "clicks": 1}])
    );
    let days = stats["clicksPerDay"].as_array().unwrap();
    assert_eq!(days.len(), 2);
    assert_eq!(days[0]["clicks"], 1, "newest day first");
    assert_eq!(days[1]["clicks"], 4);
    assert_eq!(days[1]["botClicks"], 1);
    assert_eq!(
        app.link(&code).await["clickCount"],
        5,
        "bots are not in clickCount"
    );

    assert_problem(app.get(&format!("/links/{code}/stats?days=0")).await, 400).await;
    assert_problem(app.get(&format!("/links/{code}/stats?days=abc")).await, 400).await;
}

async fn links_and_flushed_clicks_survive_a_restart(engine: Engine) {
    let app = TestApp::spawn(&engine).await;
    let code = app.create(json!({"longUrl": "https://example.com/"})).await["shortCode"]
        .as_str()
        .unwrap()
        .to_owned();
    app.create(json!({"longUrl": "https://example.com/alias", "customAlias": "kept"}))
        .await;
    for _ in 0..7 {
        app.follow(&code).await;
    }
    let app = app.restart().await;
    assert_eq!(app.link(&code).await["clickCount"], 7);
    assert_eq!(
        app.follow("kept").await.headers()["location"],
        "https://example.com/alias"
    );
    // Codes issued after the restart do not collide with earlier ones.
    let next = app
        .create(json!({"longUrl": "https://example.com/next"}))
        .await;
    assert_ne!(next["shortCode"], code);
}
