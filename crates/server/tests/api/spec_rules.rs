//! Requests that break a rule the OpenAPI document states are refused as the client's
//! mistake (400/422), never taken as something else: a malformed `If-Match`, an unreadable
//! body on `POST /auth/mfa/totp`, a cursor or feed position not in its documented form.

use basis_auth::role::Role;
use reqwest::Method;
use serde_json::{Value, json};

use crate::blog_support::{header, post};
use crate::helpers::{Engine, TestApp, assert_problem};
use crate::on_both_engines;

on_both_engines!(
    a_malformed_if_match_is_400_naming_the_header_not_a_412,
    an_invalid_change_is_refused_as_such_before_a_stale_if_match,
    a_signed_in_enrolment_refuses_a_body_it_cannot_read,
    cursors_and_feed_positions_outside_their_documented_form_are_400,
);

/// The fields a problem document names.
fn fields(problem: &Value) -> Vec<String> {
    problem["errors"]
        .as_array()
        .map(|errors| {
            errors
                .iter()
                .filter_map(|e| e["field"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

async fn a_malformed_if_match_is_400_naming_the_header_not_a_412(engine: Engine) {
    let app = TestApp::spawn(&engine).await;
    let author = app.account("author@example.com").await;
    let created = app.new_post(&author, post("Guarded")).await;
    let id = created["id"].as_str().unwrap();
    let path = format!("/posts/{id}");
    let comment = app.new_comment(&author, id, "hello").await;
    let comment_path = format!("/comments/{}", comment["id"].as_str().unwrap());
    for junk in ["", "junk", "\"unterminated", "*, \"a\""] {
        let response = app
            .merge_patch(&path, &author, json!({"title": "Changed"}))
            .header("if-match", junk)
            .send()
            .await
            .unwrap();
        let problem = assert_problem(response, 400).await;
        assert_eq!(fields(&problem), ["If-Match"], "{junk:?}");
        let response = app
            .bearer(Method::PUT, &comment_path, &author.access)
            .header("if-match", junk)
            .json(&json!({"body": "changed"}))
            .send()
            .await
            .unwrap();
        assert_problem(response, 400).await;
        let response = app
            .bearer(Method::DELETE, &path, &author.access)
            .header("if-match", junk)
            .send()
            .await
            .unwrap();
        assert_problem(response, 400).await;
    }
    // Nothing changed, and a well-formed list holding the current tag still writes.
    let (_, now) = app.get_json(&path, None).await;
    assert_eq!(now["title"], "Guarded");
    let etag = header(&app.get(&path).await, "etag").unwrap();
    let response = app
        .merge_patch(&path, &author, json!({"title": "Changed"}))
        .header("if-match", format!("\"other\", {etag}"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
}

async fn an_invalid_change_is_refused_as_such_before_a_stale_if_match(engine: Engine) {
    let app = TestApp::spawn(&engine).await;
    let author = app.account("author@example.com").await;
    let created = app.new_post(&author, post("Guarded")).await;
    let id = created["id"].as_str().unwrap();
    let path = format!("/posts/{id}");
    let comment = app.new_comment(&author, id, "hello").await;
    let comment_path = format!("/comments/{}", comment["id"].as_str().unwrap());
    let stale = "\"stale\"";
    let put_stale = |path: &str, body: Value| {
        app.bearer(Method::PUT, path, &author.access)
            .header("if-match", stale)
            .json(&body)
            .send()
    };
    let response = put_stale(&path, json!({"title": "", "body": "text"}))
        .await
        .unwrap();
    assert_eq!(fields(&assert_problem(response, 422).await), ["title"]);
    let response = app
        .merge_patch(&path, &author, json!({"title": "\u{7}"}))
        .header("if-match", stale)
        .send()
        .await
        .unwrap();
    assert_eq!(fields(&assert_problem(response, 422).await), ["title"]);
    let response = put_stale(&comment_path, json!({"body": ""})).await.unwrap();
    assert_eq!(fields(&assert_problem(response, 422).await), ["body"]);
    // A valid change with the stale tag is still the 412 it always was.
    let response = put_stale(&comment_path, json!({"body": "fine"}))
        .await
        .unwrap();
    assert_problem(response, 412).await;
}

async fn a_signed_in_enrolment_refuses_a_body_it_cannot_read(engine: Engine) {
    let app = TestApp::spawn(&engine).await;
    let ann = app.account("ann@example.com").await;
    let enrol = || app.bearer(Method::POST, "/auth/mfa/totp", &ann.access);
    let response = enrol()
        .json(&json!({"challenge": {}}))
        .send()
        .await
        .unwrap();
    assert_problem(response, 400).await;
    let response = enrol().json(&json!({"unknown": 1})).send().await.unwrap();
    assert_problem(response, 400).await;
    let response = enrol()
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_problem(response, 400).await;
    let response = enrol()
        .header("content-type", "text/plain")
        .body("hello")
        .send()
        .await
        .unwrap();
    assert_problem(response, 415).await;
    // No body at all, or an empty object, starts the enrolment as before.
    assert_eq!(enrol().send().await.unwrap().status(), 201);
    assert_eq!(enrol().json(&json!({})).send().await.unwrap().status(), 201);
}

async fn cursors_and_feed_positions_outside_their_documented_form_are_400(engine: Engine) {
    let app = TestApp::spawn(&engine).await;
    let admin = app.account_with_role("root@example.com", Role::Admin).await;
    let get = |path: String| app.bearer(Method::GET, &path, &admin.access).send();
    for (path, field) in [
        ("/admin/audit?cursor=%2B5".to_owned(), "cursor"),
        ("/admin/audit?cursor=-1".to_owned(), "cursor"),
        ("/accounts?cursor=%205".to_owned(), "cursor"),
        ("/users?cursor=not-an-id".to_owned(), "cursor"),
        ("/users?cursor=".to_owned(), "cursor"),
        ("/ledger/events?after=%2B1.2".to_owned(), "after"),
        ("/ledger/events?after=1.-2".to_owned(), "after"),
    ] {
        let problem = assert_problem(get(path.clone()).await.unwrap(), 400).await;
        assert_eq!(fields(&problem), [field], "{path}");
    }
    // The documented forms are read.
    let (status, page) = app.get_json("/users?limit=1", Some(&admin)).await;
    assert_eq!(status, 200);
    assert_eq!(page["items"].as_array().map(Vec::len), Some(1));
    for path in [
        format!("/users?cursor={}", admin.id),
        "/admin/audit?cursor=5".to_owned(),
        "/ledger/events?after=0.0".to_owned(),
    ] {
        assert_eq!(get(path.clone()).await.unwrap().status(), 200, "{path}");
    }
}
