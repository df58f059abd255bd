//! Posts: method semantics (POST/PUT/PATCH/DELETE), authorization by role, content safety
//! and bad input.

use reqwest::Method;
use serde_json::{Value, json};

use crate::blog_support::{header, post};
use crate::helpers::{Engine, TestApp, assert_problem};
use crate::on_both_engines;

on_both_engines!(
    creating_a_post_answers_201_with_location_and_the_rendered_body,
    put_replaces_the_whole_post_and_a_missing_required_field_is_422,
    patch_changes_only_the_fields_it_names_and_null_clears_one,
    patch_needs_the_merge_patch_media_type_and_an_object,
    deleting_a_post_deletes_its_comments_and_a_repeat_is_404,
    drafts_are_seen_only_by_their_author_and_admins,
    authors_edit_their_posts_moderators_delete_any_and_admins_do_everything,
    markdown_is_sanitised_so_stored_scripts_never_come_back,
    malformed_and_unknown_ids_are_404,
    options_lists_the_methods_and_a_wrong_method_is_405_with_allow,
    an_unsupported_accept_is_406_and_a_wrong_content_type_is_415,
    an_oversized_post_is_413_and_nothing_is_stored,
    invalid_fields_are_422_naming_each_field_and_change_nothing,
    a_deleted_accounts_live_token_cannot_write_and_gets_401,
);

async fn creating_a_post_answers_201_with_location_and_the_rendered_body(engine: Engine) {
    let app = TestApp::spawn(&engine).await;
    let author = app.account("author@example.com").await;
    let response = app
        .bearer(Method::POST, "/posts", &author.access)
        .json(&json!({"title": "Hello", "body": "# Title\n\n**bold**", "tags": ["Rust", "rust", "web"], "category": "News"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    let location = header(&response, "location").expect("a Location");
    assert!(header(&response, "etag").is_some_and(|e| e.starts_with('"')));
    let created: Value = response.json().await.unwrap();
    assert_eq!(
        location,
        format!("/posts/{}", created["id"].as_str().unwrap())
    );
    assert_eq!(created["status"], "draft", "status defaults to draft");
    assert_eq!(
        created["tags"],
        json!(["rust", "web"]),
        "tags are normalised and distinct"
    );
    assert_eq!(created["category"], "news");
    assert_eq!(created["authorId"], author.id.as_str());
    assert_eq!(created["authorName"], "Test User");
    assert_eq!(created["commentCount"], 0);
    assert!(
        created["bodyHtml"]
            .as_str()
            .unwrap()
            .contains("<strong>bold</strong>")
    );
    let (status, read) = app.get_json(&location, Some(&author)).await;
    assert_eq!(status, 200);
    assert_eq!(read, created);
}

async fn put_replaces_the_whole_post_and_a_missing_required_field_is_422(engine: Engine) {
    let app = TestApp::spawn(&engine).await;
    let author = app.account("author@example.com").await;
    let created = app.new_post(&author, post("First")).await;
    let path = format!("/posts/{}", created["id"].as_str().unwrap());
    let response = app
        .bearer(Method::PUT, &path, &author.access)
        .json(&json!({"title": "Second", "body": "New body", "status": "published"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let replaced: Value = response.json().await.unwrap();
    assert_eq!(replaced["title"], "Second");
    assert_eq!(replaced["tags"], json!([]), "PUT resets what it omits");
    assert_eq!(replaced["category"], Value::Null);

    let response = app
        .bearer(Method::PUT, &path, &author.access)
        .json(&json!({"body": "no title"}))
        .send()
        .await
        .unwrap();
    let problem = assert_problem(response, 422).await;
    assert_eq!(problem["errors"][0]["field"], "title");
    let (_, after) = app.get_json(&path, Some(&author)).await;
    assert_eq!(after, replaced, "a rejected PUT changes nothing");
}

async fn patch_changes_only_the_fields_it_names_and_null_clears_one(engine: Engine) {
    let app = TestApp::spawn(&engine).await;
    let author = app.account("author@example.com").await;
    let created = app.new_post(&author, post("Patch me")).await;
    let path = format!("/posts/{}", created["id"].as_str().unwrap());
    let response = app
        .merge_patch(
            &path,
            &author,
            json!({"title": "Patched", "category": null}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let patched: Value = response.json().await.unwrap();
    assert_eq!(patched["title"], "Patched");
    assert_eq!(patched["category"], Value::Null);
    assert_eq!(patched["body"], created["body"]);
    assert_eq!(patched["tags"], created["tags"]);
    assert_eq!(patched["status"], created["status"]);

    // A required member set to null is removed, leaving an invalid post: 422, nothing stored.
    let response = app
        .merge_patch(&path, &author, json!({"title": null}))
        .send()
        .await
        .unwrap();
    assert_problem(response, 422).await;
    let response = app
        .merge_patch(&path, &author, json!({"id": "7"}))
        .send()
        .await
        .unwrap();
    assert_problem(response, 422).await;
    let (_, after) = app.get_json(&path, None).await;
    assert_eq!(after, patched);
}

async fn patch_needs_the_merge_patch_media_type_and_an_object(engine: Engine) {
    let app = TestApp::spawn(&engine).await;
    let author = app.account("author@example.com").await;
    let created = app.new_post(&author, post("Typed")).await;
    let path = format!("/posts/{}", created["id"].as_str().unwrap());
    let response = app
        .bearer(Method::PATCH, &path, &author.access)
        .json(&json!({"title": "x"}))
        .send()
        .await
        .unwrap();
    assert_problem(response, 415).await;
    for bad in ["[1, 2]", "\"title\"", "{\"title\": ", "null"] {
        let response = app
            .bearer(Method::PATCH, &path, &author.access)
            .header("content-type", "application/merge-patch+json")
            .body(bad)
            .send()
            .await
            .unwrap();
        assert_problem(response, 400).await;
    }
    let (_, after) = app.get_json(&path, None).await;
    assert_eq!(after, created);
}

async fn deleting_a_post_deletes_its_comments_and_a_repeat_is_404(engine: Engine) {
    let app = TestApp::spawn(&engine).await;
    let author = app.account("author@example.com").await;
    let created = app.new_post(&author, post("Short-lived")).await;
    let id = created["id"].as_str().unwrap();
    let comment = app.new_comment(&author, id, "first").await;
    let path = format!("/posts/{id}");
    let response = app
        .bearer(Method::DELETE, &path, &author.access)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 204);
    assert_eq!(app.get_json(&path, Some(&author)).await.0, 404);
    let comment_path = format!("/comments/{}", comment["id"].as_str().unwrap());
    assert_eq!(app.get_json(&comment_path, Some(&author)).await.0, 404);
    let response = app
        .bearer(Method::DELETE, &path, &author.access)
        .send()
        .await
        .unwrap();
    assert_problem(response, 404).await;
}

async fn drafts_are_seen_only_by_their_author_and_admins(engine: Engine) {
    let app = TestApp::spawn(&engine).await;
    let cast = app.cast().await;
    let mut body = post("Secret draft");
    body["status"] = json!("draft");
    let draft = app.new_post(&cast.author, body).await;
    let path = format!("/posts/{}", draft["id"].as_str().unwrap());
    assert_eq!(app.get_json(&path, Some(&cast.author)).await.0, 200);
    assert_eq!(app.get_json(&path, Some(&cast.admin)).await.0, 200);
    assert_eq!(app.get_json(&path, Some(&cast.other)).await.0, 404);
    assert_eq!(app.get_json(&path, Some(&cast.moderator)).await.0, 404);
    assert_eq!(app.get_json(&path, None).await.0, 404);
    let comments = format!("{path}/comments");
    assert_eq!(app.get_json(&comments, None).await.0, 404);

    let (_, public) = app.get_json("/posts", None).await;
    assert_eq!(
        public["items"],
        json!([]),
        "lists show published posts by default"
    );
    let (status, _) = app.get_json("/posts?status=draft", None).await;
    assert_eq!(status, 401);
    let (_, mine) = app
        .get_json("/posts?status=draft", Some(&cast.author))
        .await;
    assert_eq!(mine["items"][0]["id"], draft["id"]);
    let (_, others) = app.get_json("/posts?status=draft", Some(&cast.other)).await;
    assert_eq!(
        others["items"],
        json!([]),
        "another user's draft list is their own"
    );
    let (status, _) = app
        .get_json(
            &format!("/posts?status=draft&author={}", cast.author.id),
            Some(&cast.other),
        )
        .await;
    assert_eq!(status, 403);
    let (_, all) = app.get_json("/posts?status=draft", Some(&cast.admin)).await;
    assert_eq!(all["items"][0]["id"], draft["id"]);
}

async fn authors_edit_their_posts_moderators_delete_any_and_admins_do_everything(engine: Engine) {
    let app = TestApp::spawn(&engine).await;
    let cast = app.cast().await;
    let created = app.new_post(&cast.author, post("Owned")).await;
    let path = format!("/posts/{}", created["id"].as_str().unwrap());
    let patch = json!({"title": "Taken over"});
    for who in [&cast.other, &cast.moderator] {
        let response = app
            .merge_patch(&path, who, patch.clone())
            .send()
            .await
            .unwrap();
        assert_problem(response, 403).await;
    }
    let response = app
        .bearer(Method::DELETE, &path, &cast.other.access)
        .send()
        .await
        .unwrap();
    assert_problem(response, 403).await;
    let response = app
        .merge_patch(&path, &cast.admin, json!({"title": "Edited by admin"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let response = app
        .merge_patch(&path, &cast.author, json!({"title": "Mine again"}))
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
        .as_user(Method::POST, "/posts", None)
        .json(&post("anon"))
        .send()
        .await
        .unwrap();
    assert_problem(response, 401).await;
}

async fn markdown_is_sanitised_so_stored_scripts_never_come_back(engine: Engine) {
    let app = TestApp::spawn(&engine).await;
    let author = app.account("author@example.com").await;
    let attacks = [
        "<script>alert('x')</script>",
        "<img src=x onerror=alert(1)>",
        "[click](javascript:alert(1))",
        "<a href=\"javascript:alert(1)\">x</a>",
        "<iframe src=\"https://evil.example\"></iframe>",
        "<svg onload=alert(1)>",
    ];
    let body = format!("Safe *text*.\n\n{}", attacks.join("\n\n"));
    let created = app
        .new_post(
            &author,
            json!({"title": "<b>not bold</b>", "body": body, "status": "published"}),
        )
        .await;
    let (_, read) = app
        .get_json(&format!("/posts/{}", created["id"].as_str().unwrap()), None)
        .await;
    let html = read["bodyHtml"].as_str().unwrap().to_lowercase();
    assert!(html.contains("<em>text</em>"), "{html}");
    for needle in [
        "<script",
        "onerror",
        "javascript:",
        "<iframe",
        "onload",
        "<svg",
    ] {
        assert!(!html.contains(needle), "{needle} survived: {html}");
    }
    assert_eq!(
        read["title"], "<b>not bold</b>",
        "titles are plain text, returned as written"
    );
    assert_eq!(read["body"], body, "the Markdown source is kept as written");
}

async fn malformed_and_unknown_ids_are_404(engine: Engine) {
    let app = TestApp::spawn(&engine).await;
    let author = app.account("author@example.com").await;
    for id in [
        "999999",
        "abc",
        "-1",
        "0",
        "1.5",
        "99999999999999999999999",
        "%27%20OR%201=1",
    ] {
        for path in [
            format!("/posts/{id}"),
            format!("/posts/{id}/comments"),
            format!("/comments/{id}"),
        ] {
            assert_problem(
                app.as_user(Method::GET, &path, None).send().await.unwrap(),
                404,
            )
            .await;
        }
        let response = app
            .bearer(Method::DELETE, &format!("/posts/{id}"), &author.access)
            .send()
            .await
            .unwrap();
        assert_problem(response, 404).await;
    }
}

async fn options_lists_the_methods_and_a_wrong_method_is_405_with_allow(engine: Engine) {
    let app = TestApp::spawn(&engine).await;
    let author = app.account("author@example.com").await;
    let created = app.new_post(&author, post("Methods")).await;
    let id = created["id"].as_str().unwrap();
    for (path, allowed) in [
        ("/posts".to_owned(), "GET, HEAD, POST, OPTIONS"),
        (
            format!("/posts/{id}"),
            "GET, HEAD, PUT, PATCH, DELETE, OPTIONS",
        ),
        (format!("/posts/{id}/comments"), "GET, HEAD, POST, OPTIONS"),
        (format!("/users/{}/posts", author.id), "GET, HEAD, OPTIONS"),
    ] {
        let response = app
            .as_user(Method::OPTIONS, &path, None)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 204, "{path}");
        assert_eq!(header(&response, "allow").as_deref(), Some(allowed));
        let head = app.as_user(Method::HEAD, &path, None).send().await.unwrap();
        assert_eq!(head.status(), 200, "HEAD {path}");
        assert!(header(&head, "etag").is_some());
        assert!(head.bytes().await.unwrap().is_empty());
    }
    let response = app
        .as_user(Method::PUT, "/posts", Some(&author))
        .json(&post("x"))
        .send()
        .await
        .unwrap();
    let allow = header(&response, "allow").expect("an Allow header");
    assert!(allow.contains("GET") && allow.contains("POST"), "{allow}");
    assert_problem(response, 405).await;
    let response = app
        .as_user(Method::POST, &format!("/posts/{id}"), Some(&author))
        .json(&post("x"))
        .send()
        .await
        .unwrap();
    assert!(header(&response, "allow").is_some_and(|a| a.contains("PATCH")));
    assert_problem(response, 405).await;
}

async fn an_unsupported_accept_is_406_and_a_wrong_content_type_is_415(engine: Engine) {
    let app = TestApp::spawn(&engine).await;
    let author = app.account("author@example.com").await;
    let created = app.new_post(&author, post("Negotiated")).await;
    let path = format!("/posts/{}", created["id"].as_str().unwrap());
    for accept in ["text/html", "application/xml", "application/json;q=0"] {
        let response = app
            .as_user(Method::GET, &path, None)
            .header("accept", accept)
            .send()
            .await
            .unwrap();
        assert_problem(response, 406).await;
    }
    for accept in ["application/json", "*/*", "text/html, application/*;q=0.1"] {
        let response = app
            .as_user(Method::GET, &path, None)
            .header("accept", accept)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "{accept}");
    }
    for content_type in [
        "text/plain",
        "application/x-www-form-urlencoded",
        "application/merge-patch+json",
    ] {
        let response = app
            .bearer(Method::POST, "/posts", &author.access)
            .header("content-type", content_type)
            .body(post("Wrong type").to_string())
            .send()
            .await
            .unwrap();
        assert_problem(response, 415).await;
    }
    let (_, list) = app.get_json("/posts", None).await;
    assert_eq!(list["items"].as_array().unwrap().len(), 1);
}

async fn an_oversized_post_is_413_and_nothing_is_stored(engine: Engine) {
    let app = TestApp::spawn_with(&engine, |c| c.body_limit = 4096).await;
    let author = app.account("author@example.com").await;
    let mut body = post("Huge");
    body["body"] = json!("x".repeat(10_000));
    let response = app
        .bearer(Method::POST, "/posts", &author.access)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_problem(response, 413).await;
    let (_, list) = app.get_json("/posts", None).await;
    assert_eq!(list["items"], json!([]));
}

async fn invalid_fields_are_422_naming_each_field_and_change_nothing(engine: Engine) {
    let app = TestApp::spawn(&engine).await;
    let author = app.account("author@example.com").await;
    let cases = [
        (json!({"title": "", "body": "b"}), "title"),
        (json!({"title": "t".repeat(201), "body": "b"}), "title"),
        (json!({"title": "t", "body": "   "}), "body"),
        (
            json!({"title": "t", "body": "b", "status": "secret"}),
            "status",
        ),
        (
            json!({"title": "t", "body": "b", "category": "no spaces"}),
            "category",
        ),
        (
            json!({"title": "t", "body": "b", "tags": ["ok", "bad tag"]}),
            "tags[1]",
        ),
        (
            json!({"title": "t", "body": "b", "tags": (0..11).map(|n| format!("t{n}")).collect::<Vec<_>>()}),
            "tags",
        ),
        (json!({"title": 5, "body": "b"}), ""),
    ];
    for (body, field) in cases {
        let response = app
            .bearer(Method::POST, "/posts", &author.access)
            .json(&body)
            .send()
            .await
            .unwrap();
        let problem = assert_problem(response, 422).await;
        let fields: Vec<&str> = problem["errors"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|e| e["field"].as_str())
            .collect();
        assert!(
            field.is_empty() || fields.contains(&field),
            "{body}: {fields:?}"
        );
    }
    let (_, drafts) = app.get_json("/posts?status=draft", Some(&author)).await;
    assert_eq!(drafts["items"], json!([]));
}

async fn a_deleted_accounts_live_token_cannot_write_and_gets_401(engine: Engine) {
    let app = TestApp::spawn(&engine).await;
    let author = app.account("author@example.com").await;
    let created = app.new_post(&author, post("Orphan-to-be")).await;
    let other = app.account("leaver@example.com").await;
    let response = app
        .bearer(
            Method::DELETE,
            &format!("/users/{}", other.id),
            &other.access,
        )
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 204);
    // The access token is still valid for minutes, but names no account any more.
    let response = app
        .bearer(Method::POST, "/posts", &other.access)
        .json(&post("Ghost"))
        .send()
        .await
        .unwrap();
    assert_problem(response, 401).await;
    let path = format!("/posts/{}/comments", created["id"].as_str().unwrap());
    let response = app
        .bearer(Method::POST, &path, &other.access)
        .json(&json!({"body": "boo"}))
        .send()
        .await
        .unwrap();
    assert_problem(response, 401).await;
    let (_, comments) = app.get_json(&path, None).await;
    assert_eq!(comments["items"], json!([]));
}
