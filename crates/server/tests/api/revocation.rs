//! Access tokens die at once: deleted, demoted or signed-out-everywhere accounts' tokens
//! are refused on the next request, on this instance and on another one sharing the
//! database (and Redis, when configured).

use basis_auth::role::Role;
use reqwest::Method;
use serde_json::{Value, json};

use crate::accounts_support::assert_unauthorized;
use crate::helpers::{Engine, TestApp};
use crate::on_both_engines;

on_both_engines!(
    a_demoted_admin_s_token_is_refused_on_the_next_request,
    a_deleted_account_s_token_is_refused_on_the_next_request,
    signing_out_everywhere_ends_tokens_sessions_and_refresh_tokens,
    another_instance_refuses_a_token_cut_on_the_first,
);

async fn admin_list(app: &TestApp, token: &str) -> reqwest::Response {
    app.bearer(Method::GET, "/users", token)
        .send()
        .await
        .unwrap()
}

async fn a_demoted_admin_s_token_is_refused_on_the_next_request(engine: Engine) {
    let app = TestApp::spawn(&engine).await;
    let root = app.account_with_role("root@example.com", Role::Admin).await;
    let admin = app
        .account_with_role("admin@example.com", Role::Admin)
        .await;
    assert_eq!(admin_list(&app, &admin.access).await.status(), 200);

    app.clock.advance_ms(1_000);
    let demoted = app
        .bearer(Method::PATCH, &format!("/users/{}", admin.id), &root.access)
        .json(&json!({"role": "user"}))
        .send()
        .await
        .unwrap();
    assert_eq!(demoted.status(), 200);

    // Well within its 15 minutes, the token still says "admin": refused all the same.
    assert_unauthorized(admin_list(&app, &admin.access).await).await;
    assert_unauthorized(
        app.bearer(Method::GET, "/auth/me", &admin.access)
            .send()
            .await
            .unwrap(),
    )
    .await;
    // The demoter's own token is untouched.
    assert_eq!(admin_list(&app, &root.access).await.status(), 200);

    // A refresh gives a token with the new role, which works and is not an admin's.
    app.clock.advance_ms(1);
    let refreshed: Value = app
        .post_json("/auth/refresh", json!({"refreshToken": admin.refresh}))
        .await
        .json()
        .await
        .unwrap();
    let fresh = refreshed["accessToken"].as_str().expect("a new token");
    assert_eq!(
        app.bearer(Method::GET, "/auth/me", fresh)
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(admin_list(&app, fresh).await.status(), 403);
}

async fn a_deleted_account_s_token_is_refused_on_the_next_request(engine: Engine) {
    let app = TestApp::spawn(&engine).await;
    let root = app.account_with_role("root@example.com", Role::Admin).await;
    let user = app.account("gone@example.com").await;
    app.clock.advance_ms(1_000);
    let deleted = app
        .bearer(Method::DELETE, &format!("/users/{}", user.id), &root.access)
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status(), 204);
    let create = app
        .bearer(Method::POST, "/shorten", &user.access)
        .json(&json!({"longUrl": "https://example.com/ghost"}))
        .send()
        .await
        .unwrap();
    assert_unauthorized(create).await;
}

async fn signing_out_everywhere_ends_tokens_sessions_and_refresh_tokens(engine: Engine) {
    let app = TestApp::spawn(&engine).await;
    let phone = app.account("me@example.com").await;
    let laptop_tokens = app
        .login_tokens("me@example.com", crate::accounts_support::PASSWORD)
        .await;
    let laptop = laptop_tokens["accessToken"].as_str().unwrap();
    let (cookie, _) = app.session("me@example.com").await;

    app.clock.advance_ms(1_000);
    let out = app
        .bearer(Method::POST, "/auth/logout-all", &phone.access)
        .send()
        .await
        .unwrap();
    assert_eq!(out.status(), 204);

    for token in [phone.access.as_str(), laptop] {
        assert_unauthorized(
            app.bearer(Method::GET, "/auth/me", token)
                .send()
                .await
                .unwrap(),
        )
        .await;
    }
    let refresh = app
        .post_json("/auth/refresh", json!({"refreshToken": phone.refresh}))
        .await;
    assert_eq!(refresh.status(), 401);
    let by_cookie = app
        .client
        .get(app.url("/auth/session"))
        .header("cookie", cookie)
        .send()
        .await
        .unwrap();
    assert_ne!(by_cookie.status(), 200, "the browser session is gone");

    // Signing in again works at once.
    app.clock.advance_ms(1);
    let again = app
        .login_tokens("me@example.com", crate::accounts_support::PASSWORD)
        .await;
    let token = again["accessToken"].as_str().unwrap();
    assert_eq!(
        app.bearer(Method::GET, "/auth/me", token)
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
}

async fn another_instance_refuses_a_token_cut_on_the_first(engine: Engine) {
    let redis = std::env::var("BASIS_TEST_REDIS_URL")
        .ok()
        .filter(|u| !u.is_empty());
    // Instances behind one origin: tokens name it as their issuer.
    let origin: url::Url = "http://basis.test".parse().unwrap();
    let first = TestApp::spawn_with(&engine, |config| {
        config.redis_url = redis.clone();
        config.base_url = Some(origin.clone());
    })
    .await;
    // The second instance shares the first one's database (and Redis).
    let second = TestApp::spawn_with(&engine, |config| {
        config.redis_url = redis.clone();
        config.base_url = Some(origin.clone());
        config.database_url = first.config.database_url.clone();
        config.data_dir = first.config.data_dir.clone();
    })
    .await;
    // Redis keeps login attempts across tests: names of this run only.
    let run = rand::random::<u32>();
    let root = first
        .account_with_role(&format!("root-{run}@example.com"), Role::Admin)
        .await;
    let admin = first
        .account_with_role(&format!("admin-{run}@example.com"), Role::Admin)
        .await;
    assert_eq!(admin_list(&second, &admin.access).await.status(), 200);

    first.clock.advance_ms(1_000);
    let demoted = first
        .bearer(Method::PATCH, &format!("/users/{}", admin.id), &root.access)
        .json(&json!({"role": "user"}))
        .send()
        .await
        .unwrap();
    assert_eq!(demoted.status(), 200);

    if redis.is_some() {
        // One pub/sub delivery away (well before the next periodic reload).
        let refused = tokio::time::timeout(std::time::Duration::from_secs(2), async {
            loop {
                if admin_list(&second, &admin.access).await.status() == 401 {
                    return;
                }
                tokio::task::yield_now().await;
            }
        })
        .await;
        assert!(
            refused.is_ok(),
            "the second instance learned the cutoff through Redis"
        );
    } else {
        // Without Redis, the periodic reload carries it; run one now.
        second
            .state
            .identity
            .cutoffs
            .reload(&second.state.store, second.state.clock.now_ms())
            .await
            .unwrap();
        assert_unauthorized(admin_list(&second, &admin.access).await).await;
    }
}
