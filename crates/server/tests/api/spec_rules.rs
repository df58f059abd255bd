//! Requests that break a rule the OpenAPI document states are refused as the client's
//! mistake (400/422), never taken as something else: a malformed `If-Match`, an unreadable
//! body on `POST /auth/mfa/totp`, a cursor or feed position not in its documented form.

use basis_auth::role::Role;
use reqwest::Method;
use serde_json::{Value, json};

use crate::accounts_support::Account;
use crate::blog_support::{header, post};
use crate::helpers::{Engine, TestApp, assert_problem};
use crate::ledger_support::{deposit, expect, open, refused, strong_balance, transfer};
use crate::on_both_engines;

on_both_engines!(
    a_malformed_if_match_is_400_naming_the_header_not_a_412,
    an_invalid_change_is_refused_as_such_before_a_stale_if_match,
    a_signed_in_enrolment_refuses_a_body_it_cannot_read,
    cursors_and_feed_positions_outside_their_documented_form_are_400,
    a_link_target_names_one_condition_as_the_document_says,
    a_transfer_account_of_the_wrong_type_is_refused_saying_what_it_must_be,
    a_timeout_on_a_transfer_that_is_not_pending_is_refused_as_the_document_says,
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

/// The schema of a link target: one object per condition, each with its pattern.
async fn target_schemas(app: &TestApp) -> Vec<Value> {
    let (status, document) = app.get_json("/openapi.json", None).await;
    assert_eq!(status, 200);
    document["components"]["schemas"]["TargetInput"]["oneOf"]
        .as_array()
        .cloned()
        .expect("TargetInput is one of several objects")
}

async fn a_link_target_names_one_condition_as_the_document_says(engine: Engine) {
    let app = TestApp::spawn(&engine).await;
    let ann = app.account("ann@example.com").await;
    let schemas = target_schemas(&app).await;
    let conditions: Vec<&str> = schemas
        .iter()
        .map(|schema| {
            assert_eq!(schema["additionalProperties"], false, "{schema}");
            let required = schema["required"].as_array().expect("required members");
            assert_eq!(required.len(), 2, "{schema}");
            assert!(required.contains(&json!("url")), "{schema}");
            required
                .iter()
                .filter_map(Value::as_str)
                .find(|name| *name != "url")
                .expect("a condition")
        })
        .collect();
    assert_eq!(conditions, ["device", "os", "language", "country"]);
    // What each condition's pattern takes, the server takes, and what it refuses, the server
    // refuses naming the member.
    let shorten = |target: Value| {
        app.bearer(Method::POST, "/shorten", &ann.access)
            .json(&json!({"longUrl": "https://example.com/a", "rules": {"targets": [target]}}))
            .send()
    };
    for (condition, value, schema_takes) in [
        ("device", "MOBILE", true),
        ("device", "Tablet", true),
        ("device", "phone", false),
        ("os", "iOS", true),
        ("os", "beos", false),
        ("language", " fr ", true),
        ("language", "fr-CA", false),
    ] {
        let index = conditions.iter().position(|c| *c == condition).unwrap();
        let pattern = schemas[index]["properties"][condition]["pattern"]
            .as_str()
            .expect("a pattern");
        let matches = regex::Regex::new(pattern).unwrap().is_match(value);
        assert_eq!(
            matches, schema_takes,
            "{condition} {value:?} against {pattern}"
        );
        let response = shorten(json!({condition: value, "url": "https://example.com/b"}))
            .await
            .unwrap();
        if schema_takes {
            assert_eq!(response.status(), 201, "{condition} {value:?}");
        } else {
            let problem = assert_problem(response, 422).await;
            assert_eq!(
                fields(&problem),
                [format!("rules.targets[0].{condition}")],
                "{problem}"
            );
        }
    }
    // Two conditions in one target break every alternative of the schema, and the server
    // refuses the target.
    let both = json!({"device": "mobile", "os": "ios", "url": "https://example.com/b"});
    assert!(
        schemas
            .iter()
            .all(|schema| schema["additionalProperties"] == false)
    );
    let problem = assert_problem(shorten(both).await.unwrap(), 422).await;
    assert_eq!(fields(&problem), ["rules.targets[0]"], "{problem}");
}

/// Ann with 1,000 in a USD account (`from`), and Bob's USD account (`to`).
async fn ann_pays_bob(app: &TestApp) -> (Account, i64, i64) {
    let admin = app.account_with_role("root@example.com", Role::Admin).await;
    let ann = app.account("ann@example.com").await;
    let bob = app.account("bob@example.com").await;
    let from = open(app, &ann, "USD").await;
    let to = open(app, &bob, "USD").await;
    deposit(app, &admin, from, 1_000).await;
    (ann, from, to)
}

async fn a_transfer_account_of_the_wrong_type_is_refused_saying_what_it_must_be(engine: Engine) {
    let app = TestApp::spawn(&engine).await;
    let (ann, from, to) = ann_pays_bob(&app).await;
    for (i, (target, says)) in [
        (
            json!(true),
            "must be an account id (a number) or participant:id",
        ),
        (json!(1.5), "must be an account id from 1 to"),
        (json!(1e30), "must be an account id from 1 to"),
        (
            json!([to]),
            "must be an account id (a number) or participant:id",
        ),
    ]
    .into_iter()
    .enumerate()
    {
        let body = json!({"from": from, "to": target, "amount": 10, "currency": "USD"});
        let problem =
            assert_problem(transfer(&app, &ann, &format!("bad-{i}"), body).await, 422).await;
        assert_eq!(fields(&problem), ["to"], "{problem}");
        let message = problem["errors"][0]["message"].as_str().unwrap_or_default();
        assert!(message.contains(says), "{target}: {message}");
    }
    // A whole number written with a fraction names the account like the integer does.
    let body = json!({"from": from, "to": to as f64, "amount": 10, "currency": "USD"});
    let moved = expect(transfer(&app, &ann, "whole", body).await, 201).await;
    assert_eq!(moved["to"], to, "{moved}");
}

async fn a_timeout_on_a_transfer_that_is_not_pending_is_refused_as_the_document_says(
    engine: Engine,
) {
    let app = TestApp::spawn(&engine).await;
    let (_, document) = app.get_json("/openapi.json", None).await;
    let description = document["paths"]["/transfers"]["post"]["description"]
        .as_str()
        .unwrap_or_default();
    assert!(
        description.contains("applies only to a pending transfer"),
        "{description}"
    );
    let (ann, from, to) = ann_pays_bob(&app).await;
    let before = strong_balance(&app, &ann, from).await;
    for (key, pending) in [("absent", json!(null)), ("posted", json!(false))] {
        let mut body = json!({"from": from, "to": to, "amount": 10, "currency": "USD",
            "timeoutSeconds": 60});
        if !pending.is_null() {
            body["pending"] = pending;
        }
        refused(transfer(&app, &ann, key, body).await, "timeoutSeconds").await;
    }
    assert_eq!(strong_balance(&app, &ann, from).await, before);
    // A null timeout is no timeout; on a pending transfer a number is what it is for.
    let body = json!({"from": from, "to": to, "amount": 10, "currency": "USD",
        "timeoutSeconds": null});
    expect(transfer(&app, &ann, "null", body).await, 201).await;
    let body = json!({"from": from, "to": to, "amount": 10, "currency": "USD",
        "pending": true, "timeoutSeconds": 60});
    let reserved = expect(transfer(&app, &ann, "pending", body).await, 201).await;
    assert_eq!(reserved["status"], "pending", "{reserved}");
}
