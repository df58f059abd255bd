//! Conditional requests, caching headers and idempotency keys on the blog's resources.

use reqwest::Method;
use serde_json::{Value, json};

use crate::accounts_support::PASSWORD;
use crate::blog_support::{header, post};
use crate::helpers::{Engine, TestApp, assert_problem};
use crate::on_both_engines;

on_both_engines!(
    a_matching_if_none_match_is_304_with_no_body_on_items_and_lists,
    a_stale_if_match_is_412_so_two_editors_cannot_overwrite_each_other,
    published_posts_are_publicly_cacheable_and_drafts_are_not_stored,
    a_retried_post_with_the_same_key_returns_the_first_response_and_creates_one_post,
    the_same_key_with_another_body_is_422_and_keys_expire_after_a_day,
);

async fn a_matching_if_none_match_is_304_with_no_body_on_items_and_lists(engine: Engine) {
    let app = TestApp::spawn(&engine).await;
    let author = app.account("author@example.com").await;
    let created = app.new_post(&author, post("Cached")).await;
    let id = created["id"].as_str().unwrap();
    app.new_comment(&author, id, "hello").await;
    for path in [
        format!("/posts/{id}"),
        "/posts".to_owned(),
        format!("/posts/{id}/comments"),
    ] {
        let first = app.as_user(Method::GET, &path, None).send().await.unwrap();
        assert_eq!(first.status(), 200);
        let etag = header(&first, "etag").expect("an ETag");
        assert!(!etag.starts_with("W/"), "strong ETag");
        assert!(header(&first, "last-modified").is_some_and(|d| d.ends_with("GMT")));
        let again = app
            .as_user(Method::GET, &path, None)
            .header("if-none-match", &etag)
            .send()
            .await
            .unwrap();
        assert_eq!(again.status(), 304, "{path}");
        assert_eq!(header(&again, "etag").as_deref(), Some(etag.as_str()));
        assert!(again.bytes().await.unwrap().is_empty());
        let other = app
            .as_user(Method::GET, &path, None)
            .header("if-none-match", "\"other\"")
            .send()
            .await
            .unwrap();
        assert_eq!(other.status(), 200);
    }
    // A new comment changes the post's representation (its comment count), so its ETag.
    let before = header(&app.get(&format!("/posts/{id}")).await, "etag").unwrap();
    app.new_comment(&author, id, "second").await;
    let response = app
        .as_user(Method::GET, &format!("/posts/{id}"), None)
        .header("if-none-match", &before)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
}

async fn a_stale_if_match_is_412_so_two_editors_cannot_overwrite_each_other(engine: Engine) {
    let app = TestApp::spawn(&engine).await;
    let author = app.account("author@example.com").await;
    let created = app.new_post(&author, post("Contested")).await;
    let path = format!("/posts/{}", created["id"].as_str().unwrap());
    let read = app.get(&path).await;
    let etag = header(&read, "etag").unwrap();

    // Editor A saves first, with the ETag both read.
    let response = app
        .merge_patch(&path, &author, json!({"title": "A's title"}))
        .header("if-match", &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let new_etag = header(&response, "etag").unwrap();
    assert_ne!(new_etag, etag);
    // Editor B's save with the old ETag is refused, for PUT, PATCH and DELETE alike.
    let response = app
        .merge_patch(&path, &author, json!({"title": "B's title"}))
        .header("if-match", &etag)
        .send()
        .await
        .unwrap();
    assert_problem(response, 412).await;
    let response = app
        .bearer(Method::PUT, &path, &author.access)
        .header("if-match", &etag)
        .json(&post("B"))
        .send()
        .await
        .unwrap();
    assert_problem(response, 412).await;
    let response = app
        .bearer(Method::DELETE, &path, &author.access)
        .header("if-match", &etag)
        .send()
        .await
        .unwrap();
    assert_problem(response, 412).await;
    let (_, now) = app.get_json(&path, None).await;
    assert_eq!(now["title"], "A's title");
    // With the current ETag, the write goes through.
    let response = app
        .bearer(Method::DELETE, &path, &author.access)
        .header("if-match", &new_etag)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 204);
}

async fn published_posts_are_publicly_cacheable_and_drafts_are_not_stored(engine: Engine) {
    let app = TestApp::spawn(&engine).await;
    let author = app.account("author@example.com").await;
    let published = app.new_post(&author, post("Public")).await;
    let mut body = post("Private");
    body["status"] = json!("draft");
    let draft = app.new_post(&author, body).await;
    let cache_control =
        |response: &reqwest::Response| header(response, "cache-control").unwrap_or_default();
    let response = app
        .get(&format!("/posts/{}", published["id"].as_str().unwrap()))
        .await;
    let public = cache_control(&response);
    assert!(
        public.starts_with("public") && public.contains("max-age="),
        "{public}"
    );
    let response = app
        .as_user(
            Method::GET,
            &format!("/posts/{}", draft["id"].as_str().unwrap()),
            Some(&author),
        )
        .send()
        .await
        .unwrap();
    let private = cache_control(&response);
    assert!(
        private.contains("private") && private.contains("no-store"),
        "{private}"
    );
    assert!(cache_control(&app.get("/posts").await).starts_with("public"));
    let response = app
        .as_user(Method::GET, "/posts?status=draft", Some(&author))
        .send()
        .await
        .unwrap();
    assert!(cache_control(&response).contains("no-store"));
}

async fn a_retried_post_with_the_same_key_returns_the_first_response_and_creates_one_post(
    engine: Engine,
) {
    let app = TestApp::spawn(&engine).await;
    let author = app.account("author@example.com").await;
    let send = || {
        app.bearer(Method::POST, "/posts", &author.access)
            .header("idempotency-key", "retry-1")
            .json(&post("Once"))
            .send()
    };
    let first = send().await.unwrap();
    assert_eq!(first.status(), 201);
    let location = header(&first, "location");
    let first: Value = first.json().await.unwrap();
    let second = send().await.unwrap();
    assert_eq!(second.status(), 201);
    assert_eq!(header(&second, "location"), location);
    assert_eq!(
        header(&second, "idempotent-replayed").as_deref(),
        Some("true")
    );
    assert_eq!(second.json::<Value>().await.unwrap(), first);
    let (_, list) = app.get_json("/posts", None).await;
    assert_eq!(
        list["items"].as_array().unwrap().len(),
        1,
        "one post, not two"
    );

    // Keys belong to their caller: another user's identical key is a different request.
    let other = app.account("other@example.com").await;
    let response = app
        .bearer(Method::POST, "/posts", &other.access)
        .header("idempotency-key", "retry-1")
        .json(&post("Once"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    assert!(header(&response, "idempotent-replayed").is_none());

    // Comments honour keys too.
    let id = first["id"].as_str().unwrap();
    for _ in 0..2 {
        let response = app
            .bearer(
                Method::POST,
                &format!("/posts/{id}/comments"),
                &author.access,
            )
            .header("idempotency-key", "comment-1")
            .json(&json!({"body": "only once"}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 201);
    }
    let (_, comments) = app.get_json(&format!("/posts/{id}/comments"), None).await;
    assert_eq!(comments["items"].as_array().unwrap().len(), 1);
}

async fn the_same_key_with_another_body_is_422_and_keys_expire_after_a_day(engine: Engine) {
    let app = TestApp::spawn(&engine).await;
    let author = app.account("author@example.com").await;
    let send = |token: String, title: &'static str| {
        app.bearer(Method::POST, "/posts", &token)
            .header("idempotency-key", "k")
            .json(&post(title))
            .send()
    };
    assert_eq!(
        send(author.access.clone(), "One").await.unwrap().status(),
        201
    );
    assert_problem(send(author.access.clone(), "Two").await.unwrap(), 422).await;
    // A rejected request does not use up the key for a corrected retry.
    let bad = app
        .bearer(Method::POST, "/posts", &author.access)
        .header("idempotency-key", "fresh")
        .json(&json!({"title": ""}))
        .send()
        .await
        .unwrap();
    assert_problem(bad, 422).await;
    let good = app
        .bearer(Method::POST, "/posts", &author.access)
        .header("idempotency-key", "fresh")
        .json(&post("Fixed"))
        .send()
        .await
        .unwrap();
    assert_eq!(good.status(), 201);

    // Access tokens live minutes, so the same user signs in again after the clock moves.
    app.clock.advance_ms(24 * 3600 * 1000 - 1000);
    let token = app.login_tokens(&author.email, PASSWORD).await["accessToken"]
        .as_str()
        .unwrap()
        .to_owned();
    let replayed = send(token.clone(), "One").await.unwrap();
    assert_eq!(
        header(&replayed, "idempotent-replayed").as_deref(),
        Some("true")
    );
    app.clock.advance_ms(1000);
    let after_a_day = send(token.clone(), "Two").await.unwrap();
    assert_eq!(after_a_day.status(), 201, "an expired key is free again");
    assert!(header(&after_a_day, "idempotent-replayed").is_none());
    let (_, list) = app.get_json("/posts", None).await;
    assert_eq!(list["items"].as_array().unwrap().len(), 3);
    // Housekeeping removes the expired "fresh" key; "k" was just reclaimed and stays.
    let purged =
        basis_store::idempotency::purge_expired(&app.state.store, app.state.clock.now_ms())
            .await
            .unwrap();
    assert_eq!(purged, 1);
    let response = app
        .bearer(Method::POST, "/posts", &token)
        .header("idempotency-key", "x".repeat(300))
        .json(&post("Long key"))
        .send()
        .await
        .unwrap();
    assert_problem(response, 400).await;
}
