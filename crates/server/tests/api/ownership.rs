//! Link ownership: only the owner or an admin edits, deletes or reads an owned link and
//! its stats; anonymous creation is allowed unless configuration requires sign-in.

use basis_auth::role::Role;
use reqwest::Method;
use serde_json::{Value, json};

use crate::accounts_support::assert_unauthorized;
use crate::helpers::{Engine, TestApp, assert_problem};
use crate::on_both_engines;

on_both_engines!(
    only_the_owner_or_an_admin_manages_an_owned_link,
    reuse_hands_out_only_the_callers_own_links,
    anonymous_creation_can_be_switched_off,
    a_stranger_s_invalid_body_is_403_on_every_owner_only_route,
);

async fn only_the_owner_or_an_admin_manages_an_owned_link(engine: Engine) {
    let app = TestApp::spawn(&engine).await;
    let owner = app.account("owner@example.com").await;
    let other = app.account("other@example.com").await;
    let admin = app.account_with_role("root@example.com", Role::Admin).await;
    let code = app
        .create_as(&owner.access, "https://example.com/mine")
        .await;
    let path = format!("/links/{code}");
    let stats = format!("{path}/stats");
    let patch = json!({"longUrl": "https://example.com/changed"});

    // Anyone may follow it.
    assert_eq!(app.follow(&code).await.status(), 301);
    for (method, target) in [
        (Method::GET, &path),
        (Method::GET, &stats),
        (Method::PATCH, &path),
        (Method::DELETE, &path),
    ] {
        let anonymous = app
            .client
            .request(method.clone(), app.url(target))
            .json(&patch)
            .send()
            .await
            .unwrap();
        assert_unauthorized(anonymous).await;
        let response = app
            .bearer(method.clone(), target, &other.access)
            .json(&patch)
            .send()
            .await
            .unwrap();
        assert_problem(response, 403).await;
    }
    assert_eq!(
        app.bearer(Method::GET, &stats, &owner.access)
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    let response = app
        .bearer(Method::PATCH, &path, &owner.access)
        .json(&patch)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(
        app.bearer(Method::GET, &stats, &admin.access)
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(
        app.bearer(Method::DELETE, &path, &admin.access)
            .send()
            .await
            .unwrap()
            .status(),
        204
    );
}

async fn reuse_hands_out_only_the_callers_own_links(engine: Engine) {
    let app = TestApp::spawn(&engine).await;
    let owner = app.account("owner@example.com").await;
    let other = app.account("other@example.com").await;
    let url = "https://example.com/shared";
    let shorten = |access: Option<&str>, reuse: bool| {
        let body = json!({"longUrl": url, "reuse": reuse});
        let request = match access {
            Some(access) => app.bearer(Method::POST, "/shorten", access),
            None => app.client.post(app.url("/shorten")),
        };
        async move {
            let response = request.json(&body).send().await.unwrap();
            let status = response.status().as_u16();
            let body: Value = response.json().await.unwrap();
            (status, body["shortCode"].as_str().unwrap().to_owned())
        }
    };
    // The owner's plain link, made without `reuse`.
    let (status, mine) = shorten(Some(&owner.access), false).await;
    assert_eq!(status, 201);
    // Neither another user nor an anonymous caller gets it back.
    let (status, theirs) = shorten(Some(&other.access), true).await;
    assert_eq!(status, 201);
    assert_ne!(theirs, mine);
    let (status, anonymous) = shorten(None, true).await;
    assert_eq!(status, 201);
    assert!(anonymous != mine && anonymous != theirs);
    // Each gets their own.
    assert_eq!(shorten(Some(&owner.access), true).await, (200, mine));
    assert_eq!(shorten(Some(&other.access), true).await, (200, theirs));
    assert_eq!(shorten(None, true).await, (200, anonymous));
}

async fn anonymous_creation_can_be_switched_off(engine: Engine) {
    let open = TestApp::spawn(&engine).await;
    assert_eq!(
        open.shorten(json!({"longUrl": "https://example.com/anon"}))
            .await
            .status(),
        201
    );

    let closed = TestApp::spawn_with(&engine, |c| c.auth.require_auth_for_links = true).await;
    assert_unauthorized(
        closed
            .shorten(json!({"longUrl": "https://example.com/anon"}))
            .await,
    )
    .await;
    let user = closed.account("user@example.com").await;
    let response = closed
        .bearer(Method::POST, "/shorten", &user.access)
        .json(&json!({"longUrl": "https://example.com/signed-in"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
}

/// Authorisation comes before the body is read: a stranger learns nothing from a 400,
/// whatever they send to someone else's resource.
async fn a_stranger_s_invalid_body_is_403_on_every_owner_only_route(engine: Engine) {
    let app = TestApp::spawn(&engine).await;
    let owner = app.account("owner@example.com").await;
    let stranger = app.account("stranger@example.com").await;
    let code = app
        .create_as(&owner.access, "https://example.com/mine")
        .await;
    let post: Value = app
        .bearer(Method::POST, "/posts", &owner.access)
        .json(&json!({"title": "Mine", "body": "text", "status": "published"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let post_id = post["id"].as_str().unwrap().to_owned();
    let comment: Value = app
        .bearer(
            Method::POST,
            &format!("/posts/{post_id}/comments"),
            &owner.access,
        )
        .json(&json!({"body": "first"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let comment_id = comment["id"].as_str().unwrap().to_owned();
    let user = &owner.id;
    let routes = [
        (
            Method::PATCH,
            format!("/links/{code}"),
            "application/merge-patch+json",
        ),
        (Method::PUT, format!("/posts/{post_id}"), "application/json"),
        (
            Method::PATCH,
            format!("/posts/{post_id}"),
            "application/merge-patch+json",
        ),
        (
            Method::PUT,
            format!("/comments/{comment_id}"),
            "application/json",
        ),
        (
            Method::PATCH,
            format!("/comments/{comment_id}"),
            "application/merge-patch+json",
        ),
        (
            Method::PATCH,
            format!("/users/{user}"),
            "application/merge-patch+json",
        ),
        (
            Method::POST,
            format!("/users/{user}/password"),
            "application/json",
        ),
        (
            Method::POST,
            format!("/users/{user}/api-keys"),
            "application/json",
        ),
    ];
    for (method, path, content_type) in routes {
        for body in ["{not json", r#"{"unknownField": 1, "title": 5}"#, "[]"] {
            let response = app
                .bearer(method.clone(), &path, &stranger.access)
                .header("content-type", content_type)
                .body(body)
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), 403, "{method} {path} with {body}");
        }
    }
}
