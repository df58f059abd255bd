//! Creating, reading, changing and deleting links, and their statistics.

use basis_store::on_pool;
use serde_json::{Value, json};

use crate::helpers::{CRAWLER, DESKTOP, Engine, PHONE, TestApp, assert_problem};
use crate::on_every_layout;

on_every_layout!(
    creating_a_link_returns_201_with_location_and_the_link,
    reuse_returns_a_plain_link_made_without_reuse_with_200,
    reuse_compares_the_full_url_after_the_hash,
    links_with_an_alias_password_expiry_limit_or_redirect_type_are_not_reused,
    a_link_stops_being_reused_when_it_gets_a_guard_and_after_delete,
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

/// `POST /shorten` with `reuse`, asserting `status`; returns the link's code.
async fn reuse(app: &TestApp, url: &str, status: u16) -> String {
    let response = app.shorten(json!({"longUrl": url, "reuse": true})).await;
    assert_eq!(response.status(), status, "reuse of {url}");
    let body: Value = response.json().await.unwrap();
    body["shortCode"].as_str().unwrap().to_owned()
}

/// `PATCH /links/{code}` with `body`, asserting 200.
async fn patch(app: &TestApp, code: &str, body: Value) -> Value {
    let response = app
        .client
        .patch(app.url(&format!("/links/{code}")))
        .header("content-type", "application/merge-patch+json")
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    response.json().await.unwrap()
}

async fn reuse_returns_a_plain_link_made_without_reuse_with_200(engine: Engine) {
    let app = TestApp::spawn(&engine).await;
    let url = "https://example.com/reuse";
    // Made without `reuse`, and clicked: flushed clicks and pending ones.
    let first = app.create(json!({"longUrl": url})).await;
    let code = first["shortCode"].as_str().unwrap();
    app.follow(code).await;
    app.follow(code).await;
    app.state.clicks.flush().await.unwrap();
    assert!(
        app.state
            .clicks
            .drain(std::time::Duration::from_secs(10))
            .await
    );
    app.follow(code).await;

    let response = app.shorten(json!({"longUrl": url, "reuse": true})).await;
    assert_eq!(response.status(), 200);
    assert!(response.headers().get("location").is_none());
    let reused: Value = response.json().await.unwrap();
    assert_eq!(reused["shortCode"], code);
    assert_eq!(reused["longUrl"], url);
    assert_eq!(reused["clickCount"], 3);

    // A second plain link to the URL (made without `reuse`, so a new one): the oldest wins.
    let second = app.create(json!({"longUrl": url})).await;
    assert_ne!(second["shortCode"], code);
    assert_eq!(reuse(&app, url, 200).await, code);
    let made = reuse(&app, "https://example.com/other", 201).await;
    assert_eq!(reuse(&app, "https://example.com/other", 200).await, made);
}

/// On SQLite, stores the hash of `hash_of` as the reuse hash of the links to `url`.
async fn set_sqlite_hash(app: &TestApp, url: &str, hash_of: &str) {
    if app.state.store.engine() == basis_store::Engine::Sqlite {
        on_pool!(app.state.store, write, pool => {
            sqlx::query("UPDATE links SET url_hash = $1 WHERE long_url = $2")
                .bind(basis_store::links::url_hash(hash_of))
                .bind(url)
                .execute(pool)
                .await
                .unwrap();
        });
    }
}

async fn reuse_compares_the_full_url_after_the_hash(engine: Engine) {
    let app = TestApp::spawn(&engine).await;
    // The same `hashtext` on PostgreSQL; SQLite's 64-bit hash is made to collide by hand.
    let (stored, asked) = ("https://example.com/10009", "https://example.com/81191");
    let code = app.create(json!({"longUrl": stored})).await["shortCode"]
        .as_str()
        .unwrap()
        .to_owned();
    set_sqlite_hash(&app, stored, asked).await;
    assert_ne!(reuse(&app, asked, 201).await, code);
    set_sqlite_hash(&app, stored, stored).await;
    assert_eq!(reuse(&app, stored, 200).await, code);
}

async fn links_with_an_alias_password_expiry_limit_or_redirect_type_are_not_reused(engine: Engine) {
    let app = TestApp::spawn(&engine).await;
    let url = "https://example.com/guarded";
    let later = (app.clock_now() + chrono::Duration::days(1)).to_rfc3339();
    let mut codes = Vec::new();
    for options in [
        json!({"customAlias": "my-guarded"}),
        json!({"password": "pw"}),
        json!({"expiresAt": later}),
        json!({"maxClicks": 5}),
        json!({"redirectType": 302}),
    ] {
        let mut body = options.clone();
        body["longUrl"] = json!(url);
        codes.push(app.create(body).await["shortCode"].clone());
    }
    let made = reuse(&app, url, 201).await;
    assert!(!codes.contains(&json!(made)), "{made} is one of {codes:?}");
    assert_eq!(reuse(&app, url, 200).await, made);
}

async fn a_link_stops_being_reused_when_it_gets_a_guard_and_after_delete(engine: Engine) {
    let app = TestApp::spawn(&engine).await;
    let url = "https://example.com/changing";
    let a = app.create(json!({"longUrl": url})).await["shortCode"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(reuse(&app, url, 200).await, a);

    // A password added by PATCH: `a` is protected and no longer handed out.
    let body = patch(&app, &a, json!({"password": "open sesame"})).await;
    assert_eq!(body["passwordProtected"], true);
    assert_problem(app.follow(&a).await, 401).await;
    let with_password = app
        .client
        .get(app.url(&format!("/{a}")))
        .header("x-link-password", "open sesame")
        .send()
        .await
        .unwrap();
    assert_eq!(with_password.status(), 301);
    let b = reuse(&app, url, 201).await;
    assert_ne!(b, a);

    // Without its password `a` is plain again, and the oldest.
    let body = patch(&app, &a, json!({"password": null})).await;
    assert_eq!(body["passwordProtected"], false);
    assert_eq!(app.follow(&a).await.status(), 301);
    assert_eq!(reuse(&app, url, 200).await, a);

    // An expiry on `a`, a click limit on `b`: neither is handed out.
    let later = (app.clock_now() + chrono::Duration::days(1)).to_rfc3339();
    patch(&app, &a, json!({"expiresAt": later})).await;
    assert_eq!(reuse(&app, url, 200).await, b);
    patch(&app, &b, json!({"maxClicks": 10})).await;
    let c = reuse(&app, url, 201).await;
    assert!(c != a && c != b);

    // A deleted link is not handed out.
    let response = app
        .client
        .delete(app.url(&format!("/links/{c}")))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 204);
    let d = reuse(&app, url, 201).await;
    assert!(d != a && d != b && d != c);

    // Nor is a link that redirects with another status, even with its expiry gone.
    patch(&app, &a, json!({"expiresAt": null, "redirectType": 302})).await;
    assert_eq!(reuse(&app, url, 200).await, d);
    patch(&app, &a, json!({"redirectType": 301})).await;
    assert_eq!(reuse(&app, url, 200).await, a);

    // A link whose target changes is found under its new URL only.
    patch(&app, &a, json!({"longUrl": "https://example.com/moved"})).await;
    assert_eq!(reuse(&app, url, 200).await, d);
    assert_eq!(reuse(&app, "https://example.com/moved", 200).await, a);
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
    // Warm the lookup cache with the old target: the next redirect needs no database.
    assert_eq!(
        app.follow(&code).await.headers()["location"],
        "https://old.example/"
    );
    assert!(app.state.link_cache.holds(&code), "the link was cached");

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

    // The change evicted the cached target, and the next redirect caches the new one.
    assert!(
        !app.state.link_cache.holds(&code),
        "the change evicted the link"
    );
    let response = app.follow(&code).await;
    assert_eq!(response.status(), 307);
    assert_eq!(response.headers()["location"], "https://new.example/");
    assert!(app.state.link_cache.holds(&code));
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
        send(r#"{"password": ""}"#, "application/json")
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
    assert_eq!(app.link(&code).await["passwordProtected"], false);
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
