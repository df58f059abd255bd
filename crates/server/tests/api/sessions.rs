//! Cookie sessions: the cookie's attributes, a new id at each login, CSRF and same-origin
//! checks on cookie-authenticated writes (bearer requests exempt), logout and timeouts.

use reqwest::Method;
use serde_json::{Value, json};

use crate::accounts_support::{PASSWORD, assert_unauthorized};
use crate::helpers::{Engine, TestApp, assert_problem};
use crate::on_both_engines;

on_both_engines!(
    session_login_sets_a_host_prefixed_secure_http_only_lax_cookie,
    every_login_gets_a_new_session_id,
    cookie_writes_need_the_csrf_token_and_our_origin,
    bearer_requests_are_not_subject_to_csrf,
    logging_out_ends_the_session_at_once,
    sessions_end_after_30_idle_minutes_or_12_hours,
);

async fn session_login_sets_a_host_prefixed_secure_http_only_lax_cookie(engine: Engine) {
    let app = TestApp::spawn(&engine).await;
    app.sign_up("amy@example.com").await;
    let response = app
        .post_json(
            "/auth/session",
            json!({"email": "amy@example.com", "password": PASSWORD}),
        )
        .await;
    assert_eq!(response.status(), 201);
    assert_eq!(response.headers()["cache-control"], "no-store");
    let cookie = response.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(cookie.starts_with("__Host-basis_session="), "{cookie}");
    for attribute in ["Secure", "HttpOnly", "SameSite=Lax", "Path=/"] {
        assert!(
            cookie.split("; ").any(|a| a == attribute),
            "{attribute} in {cookie}"
        );
    }
    assert!(!cookie.to_lowercase().contains("domain"));
    let body: Value = response.json().await.unwrap();
    let csrf = body["csrfToken"].as_str().unwrap();
    assert!(csrf.len() >= 22);

    let pair = cookie.split(';').next().unwrap();
    let response = app
        .client
        .get(app.url("/auth/session"))
        .header("cookie", pair)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let session: Value = response.json().await.unwrap();
    assert_eq!(session["csrfToken"], csrf);
    assert_eq!(session["user"]["name"], "Test User");
    let wrong = app
        .post_json(
            "/auth/session",
            json!({"email": "amy@example.com", "password": "no no no no no"}),
        )
        .await;
    assert!(wrong.headers().get("set-cookie").is_none());
    assert_unauthorized(wrong).await;
}

async fn every_login_gets_a_new_session_id(engine: Engine) {
    let app = TestApp::spawn(&engine).await;
    app.sign_up("bo@example.com").await;
    let (first, first_csrf) = app.session("bo@example.com").await;
    // Logging in while holding a session (a fixation attempt) still yields a new id.
    let response = app
        .client
        .post(app.url("/auth/session"))
        .header("cookie", &first)
        .json(&json!({"email": "bo@example.com", "password": PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    let second = response.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_owned();
    let body: Value = response.json().await.unwrap();
    assert_ne!(first, second);
    assert_ne!(first_csrf, body["csrfToken"].as_str().unwrap());
}

async fn cookie_writes_need_the_csrf_token_and_our_origin(engine: Engine) {
    let app = TestApp::spawn(&engine).await;
    app.sign_up("cy@example.com").await;
    let (cookie, csrf) = app.session("cy@example.com").await;
    let shorten = |token: Option<&str>, origin: Option<&str>, site: Option<&str>| {
        let mut request = app
            .client
            .post(app.url("/shorten"))
            .header("cookie", &cookie)
            .json(&json!({"longUrl": "https://example.com/csrf"}));
        if let Some(token) = token {
            request = request.header("x-csrf-token", token);
        }
        if let Some(origin) = origin {
            request = request.header("origin", origin);
        }
        if let Some(site) = site {
            request = request.header("sec-fetch-site", site);
        }
        request.send()
    };
    let own = app.origin();
    assert_problem(shorten(None, Some(&own), None).await.unwrap(), 403).await;
    assert_problem(shorten(Some("wrong"), Some(&own), None).await.unwrap(), 403).await;
    assert_problem(
        shorten(Some(&csrf), Some("https://evil.example"), None)
            .await
            .unwrap(),
        403,
    )
    .await;
    assert_problem(
        shorten(Some(&csrf), None, Some("cross-site"))
            .await
            .unwrap(),
        403,
    )
    .await;
    assert_eq!(
        shorten(Some(&csrf), None, Some("same-origin"))
            .await
            .unwrap()
            .status(),
        201
    );
    let response = shorten(Some(&csrf), Some(&own), Some("same-origin"))
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    let link: Value = response.json().await.unwrap();
    // The link belongs to the session's user: anonymous callers may not manage it.
    let path = format!("/links/{}", link["shortCode"].as_str().unwrap());
    assert_unauthorized(app.client.delete(app.url(&path)).send().await.unwrap()).await;
    // Reads with the cookie need no token.
    let read = app
        .client
        .get(app.url(&path))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(read.status(), 200);
}

async fn bearer_requests_are_not_subject_to_csrf(engine: Engine) {
    let app = TestApp::spawn(&engine).await;
    let dot = app.account("dot@example.com").await;
    let response = app
        .bearer(Method::POST, "/shorten", &dot.access)
        .header("origin", "https://elsewhere.example")
        .json(&json!({"longUrl": "https://example.com/bearer"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
}

async fn logging_out_ends_the_session_at_once(engine: Engine) {
    let app = TestApp::spawn(&engine).await;
    app.sign_up("ed@example.com").await;
    let (cookie, csrf) = app.session("ed@example.com").await;
    let logout = |token: &str| {
        app.client
            .delete(app.url("/auth/session"))
            .header("cookie", &cookie)
            .header("x-csrf-token", token)
            .header("origin", app.origin())
            .send()
    };
    assert_problem(logout("wrong").await.unwrap(), 403).await;
    let response = logout(&csrf).await.unwrap();
    assert_eq!(response.status(), 204);
    let cleared = response.headers()["set-cookie"].to_str().unwrap();
    assert!(cleared.contains("Max-Age=0"), "{cleared}");
    let me = app
        .client
        .get(app.url("/auth/me"))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_unauthorized(me).await;
}

async fn sessions_end_after_30_idle_minutes_or_12_hours(engine: Engine) {
    let app = TestApp::spawn(&engine).await;
    app.sign_up("flo@example.com").await;
    let me = |cookie: &str| {
        app.client
            .get(app.url("/auth/me"))
            .header("cookie", cookie)
            .send()
    };

    let (idle, _) = app.session("flo@example.com").await;
    app.clock.advance_ms(29 * 60 * 1000);
    assert_eq!(me(&idle).await.unwrap().status(), 200);
    app.clock.advance_ms(29 * 60 * 1000);
    assert_eq!(me(&idle).await.unwrap().status(), 200, "use keeps it alive");
    app.clock.advance_ms(31 * 60 * 1000);
    assert_unauthorized(me(&idle).await.unwrap()).await;

    let (busy, _) = app.session("flo@example.com").await;
    for _ in 0..(12 * 60 / 20) {
        assert_eq!(me(&busy).await.unwrap().status(), 200);
        app.clock.advance_ms(20 * 60 * 1000);
    }
    assert_unauthorized(me(&busy).await.unwrap()).await;
}
