//! Token login: the pair, the JWT's claims, equal failures, throttling, refresh rotation,
//! reuse detection, concurrent refresh, logout and expiry.

use reqwest::Method;
use serde_json::{Value, json};

use crate::accounts_support::{PASSWORD, assert_unauthorized, claims};
use crate::helpers::{Engine, TestApp, assert_problem};
use crate::on_both_engines;

on_both_engines!(
    login_returns_a_bearer_pair_that_is_not_cached,
    the_access_token_carries_the_required_claims_and_expires_after_15_minutes,
    a_wrong_password_and_an_unknown_email_get_the_same_401,
    the_sixth_login_in_15_minutes_is_429_and_audited,
    refreshing_rotates_and_a_spent_token_revokes_its_family,
    of_concurrent_refreshes_with_one_token_exactly_one_succeeds,
    logout_revokes_the_refresh_family,
    refresh_tokens_expire_after_7_days,
    me_returns_the_caller_and_401_without_credentials,
);

async fn login_returns_a_bearer_pair_that_is_not_cached(engine: Engine) {
    let app = TestApp::spawn(&engine).await;
    app.sign_up("ann@example.com").await;
    let response = app
        .post_json(
            "/auth/login",
            json!({"email": "ann@example.com", "password": PASSWORD}),
        )
        .await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["cache-control"], "no-store");
    assert_eq!(response.headers()["x-content-type-options"], "nosniff");
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["tokenType"], "Bearer");
    assert_eq!(body["expiresIn"], 900);
    assert_eq!(body["accessToken"].as_str().unwrap().split('.').count(), 3);
    // At least 128 random bits, base64url.
    assert!(body["refreshToken"].as_str().unwrap().len() >= 22);
}

async fn the_access_token_carries_the_required_claims_and_expires_after_15_minutes(engine: Engine) {
    let app = TestApp::spawn(&engine).await;
    let ann = app.account("ann@example.com").await;
    let claims = claims(&ann.access);
    assert_eq!(claims["sub"], ann.id.as_str());
    assert_eq!(claims["role"], "user");
    assert_eq!(claims["iss"], app.origin());
    assert_eq!(claims["aud"], "basis-api");
    assert_eq!(
        claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap(),
        900
    );
    assert!(claims["jti"].as_str().unwrap().len() >= 16);

    let me = || app.bearer(Method::GET, "/auth/me", &ann.access).send();
    assert_eq!(me().await.unwrap().status(), 200);
    app.clock.advance_ms(899_000);
    assert_eq!(me().await.unwrap().status(), 200);
    app.clock.advance_ms(1_000);
    let body = assert_unauthorized(me().await.unwrap()).await;
    assert!(
        !body.to_string().contains("expired at"),
        "no internals: {body}"
    );
}

async fn a_wrong_password_and_an_unknown_email_get_the_same_401(engine: Engine) {
    let app = TestApp::spawn(&engine).await;
    app.sign_up("bea@example.com").await;
    let wrong = app
        .post_json(
            "/auth/login",
            json!({"email": "bea@example.com", "password": "not the password at all"}),
        )
        .await;
    let challenge = wrong.headers()["www-authenticate"].clone();
    let wrong = assert_unauthorized(wrong).await;
    let unknown = app
        .post_json(
            "/auth/login",
            json!({"email": "nobody@example.com", "password": "not the password at all"}),
        )
        .await;
    assert_eq!(unknown.headers()["www-authenticate"], challenge);
    let unknown = assert_unauthorized(unknown).await;
    assert_eq!(wrong, unknown);
    let malformed = app
        .post_json("/auth/login", json!({"email": "bea@example.com"}))
        .await;
    assert_problem(malformed, 400).await;
}

async fn the_sixth_login_in_15_minutes_is_429_and_audited(engine: Engine) {
    let app = TestApp::spawn(&engine).await;
    app.sign_up("cyd@example.com").await;
    for _ in 0..5 {
        let response = app
            .post_json(
                "/auth/login",
                json!({"email": "cyd@example.com", "password": "guess guess guess"}),
            )
            .await;
        assert_eq!(response.status(), 401);
    }
    // Even the right password waits: the guesser cannot tell.
    let response = app
        .post_json(
            "/auth/login",
            json!({"email": "cyd@example.com", "password": PASSWORD}),
        )
        .await;
    let retry_after: u64 = response.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=900).contains(&retry_after));
    let body = assert_problem(response, 429).await;
    assert_eq!(body["retryAfter"], retry_after);
    // Another account from the same address is not affected.
    app.sign_up("dee@example.com").await;
    app.login_tokens("dee@example.com", PASSWORD).await;
    app.clock.advance_ms(15 * 60 * 1000);
    app.login_tokens("cyd@example.com", PASSWORD).await;

    let admin = app
        .account_with_role("root@example.com", basis_auth::role::Role::Admin)
        .await;
    let audit: Value = app
        .bearer(Method::GET, "/admin/audit?limit=100", &admin.access)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let kinds: Vec<_> = audit["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap().to_owned())
        .collect();
    for kind in ["login.failed", "login.throttled", "login.succeeded"] {
        assert!(kinds.iter().any(|k| k == kind), "{kind} in {kinds:?}");
    }
    assert!(
        !audit.to_string().contains("guess guess"),
        "no secrets in the audit log"
    );
}

async fn refresh(app: &TestApp, token: &str) -> reqwest::Response {
    app.post_json("/auth/refresh", json!({"refreshToken": token}))
        .await
}

async fn refreshing_rotates_and_a_spent_token_revokes_its_family(engine: Engine) {
    let app = TestApp::spawn(&engine).await;
    let eve = app.account("eve@example.com").await;
    let response = refresh(&app, &eve.refresh).await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["cache-control"], "no-store");
    let second: Value = response.json().await.unwrap();
    let second_refresh = second["refreshToken"].as_str().unwrap();
    assert_ne!(second_refresh, eve.refresh);
    assert_eq!(
        claims(second["accessToken"].as_str().unwrap())["sub"],
        eve.id.as_str()
    );

    // The first token is spent: presenting it again is reuse, and the whole family dies.
    assert_unauthorized(refresh(&app, &eve.refresh).await).await;
    assert_unauthorized(refresh(&app, second_refresh).await).await;
    // A separate login is a separate family and still works.
    let other = app.login_tokens("eve@example.com", PASSWORD).await;
    assert_eq!(
        refresh(&app, other["refreshToken"].as_str().unwrap())
            .await
            .status(),
        200
    );
    assert_unauthorized(refresh(&app, "made-up-token").await).await;
    assert_problem(app.post_json("/auth/refresh", json!({})).await, 400).await;
}

async fn of_concurrent_refreshes_with_one_token_exactly_one_succeeds(engine: Engine) {
    let app = TestApp::spawn(&engine).await;
    let fay = app.account("fay@example.com").await;
    let attempts = (0..8).map(|_| {
        let client = app.client.clone();
        let url = app.url("/auth/refresh");
        let body = json!({"refreshToken": fay.refresh});
        async move { client.post(url).json(&body).send().await.unwrap() }
    });
    let statuses: Vec<u16> = futures_join(attempts).await;
    // One rotation wins; the others present a token already used (a replay), and are 401.
    let wins = statuses.iter().filter(|s| **s == 200).count();
    assert_eq!(wins, 1, "{statuses:?}");
    assert!(
        statuses.iter().all(|s| *s == 200 || *s == 401),
        "{statuses:?}"
    );
}

async fn futures_join(
    requests: impl Iterator<
        Item = impl std::future::Future<Output = reqwest::Response> + Send + 'static,
    >,
) -> Vec<u16> {
    let handles: Vec<_> = requests.map(tokio::spawn).collect();
    let mut statuses = Vec::new();
    for handle in handles {
        statuses.push(handle.await.unwrap().status().as_u16());
    }
    statuses
}

async fn logout_revokes_the_refresh_family(engine: Engine) {
    let app = TestApp::spawn(&engine).await;
    let gus = app.account("gus@example.com").await;
    let response = app
        .post_json("/auth/logout", json!({"refreshToken": gus.refresh}))
        .await;
    assert_eq!(response.status(), 204);
    assert_unauthorized(refresh(&app, &gus.refresh).await).await;
    // Logging out an unknown token says nothing about it.
    let response = app
        .post_json("/auth/logout", json!({"refreshToken": "unknown"}))
        .await;
    assert_eq!(response.status(), 204);
}

async fn refresh_tokens_expire_after_7_days(engine: Engine) {
    let app = TestApp::spawn(&engine).await;
    let hal = app.account("hal@example.com").await;
    app.clock.advance_ms(7 * 24 * 3600 * 1000 - 1000);
    let response = refresh(&app, &hal.refresh).await;
    assert_eq!(response.status(), 200);
    let next: Value = response.json().await.unwrap();
    app.clock.advance_ms(7 * 24 * 3600 * 1000);
    assert_unauthorized(refresh(&app, next["refreshToken"].as_str().unwrap()).await).await;
}

async fn me_returns_the_caller_and_401_without_credentials(engine: Engine) {
    let app = TestApp::spawn(&engine).await;
    let ida = app.account("ida@example.com").await;
    let me: Value = app
        .bearer(Method::GET, "/auth/me", &ida.access)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(me["id"], ida.id.as_str());
    assert_unauthorized(app.get("/auth/me").await).await;
}
