//! Comments: create, list, replace, patch, delete, authorization, plain text.

use reqwest::Method;
use serde_json::{Value, json};

use crate::blog_support::{header, post};
use crate::helpers::{Engine, TestApp, assert_problem};
use crate::on_both_engines;

on_both_engines!(
    a_comment_is_created_listed_changed_and_deleted,
    only_authors_edit_comments_and_moderators_delete_any,
    comments_are_plain_text_and_bad_ones_are_422,
    comment_lists_paginate_oldest_first,
);

async fn a_comment_is_created_listed_changed_and_deleted(engine: Engine) {
    let app = TestApp::spawn(&engine).await;
    let cast = app.cast().await;
    let created = app.new_post(&cast.author, post("Discussed")).await;
    let post_id = created["id"].as_str().unwrap();
    let response = app
        .bearer(
            Method::POST,
            &format!("/posts/{post_id}/comments"),
            &cast.other.access,
        )
        .json(&json!({"body": "Great post"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    let location = header(&response, "location").unwrap();
    let comment: Value = response.json().await.unwrap();
    assert_eq!(
        location,
        format!("/comments/{}", comment["id"].as_str().unwrap())
    );
    assert_eq!(comment["postId"], post_id);
    assert_eq!(comment["authorId"], cast.other.id.as_str());

    let (_, list) = app
        .get_json(&format!("/posts/{post_id}/comments"), None)
        .await;
    assert_eq!(list["items"], json!([comment.clone()]));
    let (_, read_post) = app.get_json(&format!("/posts/{post_id}"), None).await;
    assert_eq!(read_post["commentCount"], 1);

    let response = app
        .bearer(Method::PUT, &location, &cast.other.access)
        .json(&json!({"body": "Edited"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let response = app
        .bearer(Method::PUT, &location, &cast.other.access)
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_problem(response, 422).await;
    let response = app
        .merge_patch(&location, &cast.other, json!({"body": "Patched"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let etag = header(&response, "etag").unwrap();
    let (_, read) = app.get_json(&location, None).await;
    assert_eq!(read["body"], "Patched");

    let response = app
        .bearer(Method::DELETE, &location, &cast.other.access)
        .header("if-match", "\"stale\"")
        .send()
        .await
        .unwrap();
    assert_problem(response, 412).await;
    let response = app
        .bearer(Method::DELETE, &location, &cast.other.access)
        .header("if-match", &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 204);
    let response = app
        .bearer(Method::DELETE, &location, &cast.other.access)
        .send()
        .await
        .unwrap();
    assert_problem(response, 404).await;
    let response = app
        .bearer(Method::POST, "/posts/424242/comments", &cast.other.access)
        .json(&json!({"body": "x"}))
        .send()
        .await
        .unwrap();
    assert_problem(response, 404).await;
}

async fn only_authors_edit_comments_and_moderators_delete_any(engine: Engine) {
    let app = TestApp::spawn(&engine).await;
    let cast = app.cast().await;
    let created = app.new_post(&cast.author, post("Moderated")).await;
    let post_id = created["id"].as_str().unwrap();
    let comment = app.new_comment(&cast.other, post_id, "mine").await;
    let path = format!("/comments/{}", comment["id"].as_str().unwrap());
    for who in [&cast.author, &cast.moderator] {
        let response = app
            .merge_patch(&path, who, json!({"body": "not yours"}))
            .send()
            .await
            .unwrap();
        assert_problem(response, 403).await;
    }
    let response = app
        .bearer(Method::DELETE, &path, &cast.author.access)
        .send()
        .await
        .unwrap();
    assert_problem(response, 403).await;
    let response = app
        .merge_patch(&path, &cast.admin, json!({"body": "admin edit"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let response = app
        .bearer(Method::DELETE, &path, &cast.moderator.access)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 204);
    let response = app
        .as_user(Method::POST, &format!("/posts/{post_id}/comments"), None)
        .json(&json!({"body": "anon"}))
        .send()
        .await
        .unwrap();
    assert_problem(response, 401).await;
}

async fn comments_are_plain_text_and_bad_ones_are_422(engine: Engine) {
    let app = TestApp::spawn(&engine).await;
    let author = app.account("author@example.com").await;
    let created = app.new_post(&author, post("Text")).await;
    let post_id = created["id"].as_str().unwrap();
    let text = "<script>alert(1)</script> **not bold**";
    let comment = app.new_comment(&author, post_id, text).await;
    assert_eq!(
        comment["body"], text,
        "stored and returned as text, never rendered"
    );
    assert!(comment.get("bodyHtml").is_none());
    for body in [
        json!({"body": ""}),
        json!({"body": "x".repeat(5001)}),
        json!({"body": 3}),
        json!({"text": "x"}),
        json!([]),
    ] {
        let response = app
            .bearer(
                Method::POST,
                &format!("/posts/{post_id}/comments"),
                &author.access,
            )
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_problem(response, 422).await;
    }
    let (_, list) = app
        .get_json(&format!("/posts/{post_id}/comments"), None)
        .await;
    assert_eq!(list["items"].as_array().unwrap().len(), 1);
}

async fn comment_lists_paginate_oldest_first(engine: Engine) {
    let app = TestApp::spawn(&engine).await;
    let author = app.account("author@example.com").await;
    let created = app.new_post(&author, post("Busy")).await;
    let post_id = created["id"].as_str().unwrap();
    let mut expected = Vec::new();
    for i in 0..7 {
        let c = app.new_comment(&author, post_id, &format!("c{i}")).await;
        expected.push(c["body"].as_str().unwrap().to_owned());
    }
    let mut seen = Vec::new();
    let mut path = format!("/posts/{post_id}/comments?limit=3");
    loop {
        let response = app.get(&path).await;
        let link = header(&response, "link");
        let page: Value = response.json().await.unwrap();
        seen.extend(
            page["items"]
                .as_array()
                .unwrap()
                .iter()
                .map(|c| c["body"].as_str().unwrap().to_owned()),
        );
        match link {
            Some(link) => {
                path = link
                    .trim_start_matches('<')
                    .split('>')
                    .next()
                    .unwrap()
                    .to_owned()
            }
            None => break,
        }
    }
    assert_eq!(seen, expected);
    let response = app
        .get(&format!("/posts/{post_id}/comments?cursor=nope"))
        .await;
    assert_problem(response, 400).await;
}
