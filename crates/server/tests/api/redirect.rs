//! Following links: statuses, caching headers, expiry, click limits and passwords.

use base64::Engine as _;
use serde_json::{Value, json};

use crate::helpers::{CRAWLER, Engine, TestApp, assert_problem};
use crate::on_every_layout;

on_every_layout!(
    a_link_redirects_with_its_status_and_a_short_private_cache_lifetime,
    head_redirects_without_counting_a_click,
    unknown_codes_are_404,
    codes_outside_the_alphabet_are_404_without_touching_the_database,
    an_expired_link_is_410,
    a_link_out_of_clicks_is_410_and_bots_do_not_use_clicks_up,
    a_protected_link_asks_for_its_password,
    the_link_password_is_stored_as_an_argon2id_hash,
);

async fn a_link_redirects_with_its_status_and_a_short_private_cache_lifetime(engine: Engine) {
    let app = TestApp::spawn(&engine).await;
    for status in [301u16, 302, 307, 308] {
        let code = app
            .create(
                json!({"longUrl": format!("https://example.com/{status}"), "redirectType": status}),
            )
            .await["shortCode"]
            .as_str()
            .unwrap()
            .to_owned();
        let response = app.follow(&code).await;
        assert_eq!(response.status(), status);
        assert_eq!(
            response.headers()["location"],
            format!("https://example.com/{status}").as_str()
        );
        assert_eq!(response.headers()["cache-control"], "private, max-age=90");
        assert!(response.headers().contains_key("x-request-id"));
    }
    let guarded = app
        .create(json!({"longUrl": "https://example.com/", "maxClicks": 10}))
        .await["shortCode"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        app.follow(&guarded).await.headers()["cache-control"],
        "no-store"
    );
}

async fn head_redirects_without_counting_a_click(engine: Engine) {
    let app = TestApp::spawn(&engine).await;
    let code = app.create(json!({"longUrl": "https://example.com/"})).await["shortCode"]
        .as_str()
        .unwrap()
        .to_owned();
    let response = app
        .client
        .head(app.url(&format!("/{code}")))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 301);
    assert_eq!(response.headers()["location"], "https://example.com/");
    assert_eq!(app.link(&code).await["clickCount"], 0);
}

async fn unknown_codes_are_404(engine: Engine) {
    let app = TestApp::spawn(&engine).await;
    assert_problem(app.follow("aaaaaaa").await, 404).await;
    // The negative answer is cached: the next lookup is answered from memory, without I/O.
    assert!(app.state.link_cache.holds("aaaaaaa"), "the 404 was cached");
    assert_problem(app.follow("aaaaaaa").await, 404).await;
    // A later link with a negatively cached alias is still found.
    assert_problem(app.follow("later-alias").await, 404).await;
    app.create(json!({"longUrl": "https://example.com/", "customAlias": "later-alias"}))
        .await;
    assert_eq!(app.follow("later-alias").await.status(), 301);
}

async fn codes_outside_the_alphabet_are_404_without_touching_the_database(engine: Engine) {
    let app = TestApp::spawn(&engine).await;
    // With the database gone, anything that reached it would be a 503.
    app.state.store.close().await;
    assert_problem(app.follow("validcode").await, 503).await;
    for bad in [
        "a.b",
        "%F0%9F%98%80",
        "a%20b",
        "x'%20OR%20'1'='1",
        &"a".repeat(65),
    ] {
        assert_problem(app.follow(bad).await, 404).await;
    }
}

async fn an_expired_link_is_410(engine: Engine) {
    let app = TestApp::spawn(&engine).await;
    let expires = (app.clock_now() + chrono::Duration::minutes(10)).to_rfc3339();
    let code = app
        .create(json!({"longUrl": "https://example.com/", "expiresAt": expires}))
        .await["shortCode"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(app.follow(&code).await.status(), 301);
    app.clock.advance_ms(10 * 60 * 1000);
    let problem = assert_problem(app.follow(&code).await, 410).await;
    assert!(problem["detail"].as_str().unwrap().contains("expired"));
    // The link itself can still be read by its manager.
    assert_eq!(app.link(&code).await["shortCode"], code.as_str());
}

async fn a_link_out_of_clicks_is_410_and_bots_do_not_use_clicks_up(engine: Engine) {
    let app = TestApp::spawn(&engine).await;
    let code = app
        .create(json!({"longUrl": "https://example.com/", "maxClicks": 3}))
        .await["shortCode"]
        .as_str()
        .unwrap()
        .to_owned();
    let crawl = || {
        app.client
            .get(app.url(&format!("/{code}")))
            .header("user-agent", CRAWLER)
            .send()
    };
    assert_eq!(crawl().await.unwrap().status(), 301);
    assert_eq!(app.follow(&code).await.status(), 301);
    // The limit holds across a flush, when the count moves from memory to the database.
    app.state.clicks.flush().await.unwrap();
    assert_eq!(app.follow(&code).await.status(), 301);
    assert_eq!(app.follow(&code).await.status(), 301);
    assert_problem(app.follow(&code).await, 410).await;
    app.state.clicks.flush().await.unwrap();
    assert_problem(app.follow(&code).await, 410).await;
    assert_eq!(app.link(&code).await["clickCount"], 3);
}

async fn a_protected_link_asks_for_its_password(engine: Engine) {
    let app = TestApp::spawn(&engine).await;
    let link: Value = app
        .create(json!({"longUrl": "https://example.com/secret", "password": "open sesame"}))
        .await;
    assert_eq!(link["passwordProtected"], true);
    let code = link["shortCode"].as_str().unwrap();
    let path = format!("/{code}");

    let response = app.follow(code).await;
    assert_eq!(
        response.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .split(' ')
            .next(),
        Some("Basic")
    );
    assert_problem(response, 401).await;
    let wrong = app
        .client
        .get(app.url(&path))
        .header("x-link-password", "guess")
        .send()
        .await
        .unwrap();
    assert_problem(wrong, 401).await;

    let right = app
        .client
        .get(app.url(&path))
        .header("x-link-password", "open sesame")
        .send()
        .await
        .unwrap();
    assert_eq!(right.status(), 301);
    assert_eq!(right.headers()["location"], "https://example.com/secret");
    assert_eq!(right.headers()["cache-control"], "no-store");

    let basic = base64::engine::general_purpose::STANDARD.encode("anyone:open sesame");
    let response = app
        .client
        .get(app.url(&path))
        .header("authorization", format!("Basic {basic}"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 301);

    let form = app
        .client
        .post(app.url(&path))
        .form(&[("password", "open sesame")])
        .send()
        .await
        .unwrap();
    assert_eq!(form.status(), 303);
    assert_eq!(form.headers()["location"], "https://example.com/secret");
    let form = app
        .client
        .post(app.url(&path))
        .form(&[("password", "nope")])
        .send()
        .await
        .unwrap();
    assert_problem(form, 401).await;
    // A form without the field is a missing password, not a malformed request.
    let empty_form = app
        .client
        .post(app.url(&path))
        .header("content-type", "application/x-www-form-urlencoded")
        .body("")
        .send()
        .await
        .unwrap();
    assert_problem(empty_form, 401).await;
    let not_a_form = app
        .client
        .post(app.url(&path))
        .json(&json!({"password": "open sesame"}))
        .send()
        .await
        .unwrap();
    assert_problem(not_a_form, 415).await;

    assert_eq!(
        app.link(code).await["clickCount"],
        3,
        "only successful visits count"
    );
}

async fn the_link_password_is_stored_as_an_argon2id_hash(engine: Engine) {
    let app = TestApp::spawn(&engine).await;
    let code = app
        .create(json!({"longUrl": "https://example.com/", "password": "hunter2hunter2"}))
        .await["shortCode"]
        .as_str()
        .unwrap()
        .to_owned();
    let row = basis_store::links::find(&app.state.store, app.state.codes.key_of(&code))
        .await
        .unwrap()
        .unwrap();
    let hash = row.password_hash.unwrap();
    assert!(
        hash.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"),
        "{hash}"
    );
    assert!(!hash.contains("hunter2"));
}
