//! Bad input at the HTTP level: every rejection is a problem document, never a 5xx.

use proptest::prelude::*;
use serde_json::json;

use crate::helpers::{Engine, TestApp, assert_problem};
use crate::on_both_engines;

on_both_engines!(
    malformed_json_is_400,
    a_body_that_is_not_json_is_415,
    an_oversized_body_is_413_and_stores_nothing,
    an_unknown_method_is_405_with_allow,
    an_unknown_path_is_404,
    the_request_id_is_echoed_or_made,
    security_headers_are_on_every_response,
    a_body_of_the_wrong_shape_names_the_field_in_plain_words,
);

/// The `errors` of a problem, as `(field, message)` pairs, after checking that nothing in
/// it speaks of our parser (Rust types, serde, line and column).
fn field_errors(problem: &serde_json::Value) -> Vec<(String, String)> {
    let text = problem.to_string();
    for internal in [
        "deserialize",
        "line 1",
        "column",
        "`",
        "u16",
        "i64",
        "struct",
    ] {
        assert!(!text.contains(internal), "{internal} in {text}");
    }
    problem["errors"]
        .as_array()
        .unwrap_or_else(|| panic!("no errors in {problem}"))
        .iter()
        .map(|e| {
            (
                e["field"].as_str().unwrap().to_owned(),
                e["message"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

async fn malformed_json_is_400(engine: Engine) {
    let app = TestApp::spawn(&engine).await;
    for body in ["{", "{\"longUrl\": }", "[1,2", "nul", "\"just a string\""] {
        let response = app
            .client
            .post(app.url("/shorten"))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        assert_problem(response, 400).await;
    }
}

async fn a_body_that_is_not_json_is_415(engine: Engine) {
    let app = TestApp::spawn(&engine).await;
    for content_type in [
        None,
        Some("text/plain"),
        Some("application/x-www-form-urlencoded"),
    ] {
        let mut request = app
            .client
            .post(app.url("/shorten"))
            .body(r#"{"longUrl":"https://example.com/"}"#);
        if let Some(content_type) = content_type {
            request = request.header("content-type", content_type);
        }
        assert_problem(request.send().await.unwrap(), 415).await;
    }
}

async fn an_oversized_body_is_413_and_stores_nothing(engine: Engine) {
    let app = TestApp::spawn_with(&engine, |c| c.body_limit = 1024).await;
    let body = json!({"longUrl": "https://example.com/", "customAlias": "big", "padding": "x".repeat(4096)});
    assert_problem(app.shorten(body).await, 413).await;
    assert_problem(app.follow("big").await, 404).await;
}

async fn an_unknown_method_is_405_with_allow(engine: Engine) {
    let app = TestApp::spawn(&engine).await;
    let response = app
        .client
        .put(app.url("/links/abcdefg"))
        .send()
        .await
        .unwrap();
    let allow = response.headers()["allow"].to_str().unwrap().to_owned();
    assert_problem(response, 405).await;
    for method in ["GET", "PATCH", "DELETE"] {
        assert!(allow.contains(method), "{allow}");
    }
    let response = app.client.get(app.url("/shorten")).send().await.unwrap();
    assert_eq!(response.headers()["allow"], "POST");
    assert_problem(response, 405).await;
    let response = app.client.delete(app.url("/abcdefg")).send().await.unwrap();
    assert_problem(response, 405).await;
}

async fn an_unknown_path_is_404(engine: Engine) {
    let app = TestApp::spawn(&engine).await;
    assert_problem(app.get("/no/such/path").await, 404).await;
    assert_problem(app.get("/links/abc/nothing").await, 404).await;
}

async fn the_request_id_is_echoed_or_made(engine: Engine) {
    let app = TestApp::spawn(&engine).await;
    let response = app
        .client
        .get(app.url("/healthz"))
        .header("x-request-id", "trace-me-42")
        .send()
        .await
        .unwrap();
    assert_eq!(response.headers()["x-request-id"], "trace-me-42");
    let response = app.get("/healthz").await;
    assert_eq!(response.headers()["x-request-id"].len(), 36, "a UUID");
}

async fn security_headers_are_on_every_response(engine: Engine) {
    let app = TestApp::spawn(&engine).await;
    for response in [app.get("/healthz").await, app.get("/nope/nope").await] {
        assert_eq!(response.headers()["x-content-type-options"], "nosniff");
        assert_eq!(response.headers()["x-frame-options"], "DENY");
        assert!(response.headers().contains_key("referrer-policy"));
    }
}

/// Random bodies and paths never produce a 5xx, and never disturb stored links.
#[test]
fn arbitrary_input_never_causes_a_server_error() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let app = runtime.block_on(TestApp::spawn(&Engine::Sqlite));
    let code =
        runtime.block_on(app.create(json!({"longUrl": "https://example.com/kept"})))["shortCode"]
            .as_str()
            .unwrap()
            .to_owned();
    let json_value = prop_oneof![
        Just(serde_json::Value::Null),
        any::<bool>().prop_map(serde_json::Value::from),
        any::<i64>().prop_map(serde_json::Value::from),
        ".{0,40}".prop_map(serde_json::Value::from),
    ];
    let fields = prop::collection::btree_map(
        prop_oneof![
            Just("longUrl".to_owned()),
            Just("customAlias".to_owned()),
            Just("expiresAt".to_owned()),
            Just("maxClicks".to_owned()),
            Just("redirectType".to_owned()),
            Just("password".to_owned()),
            Just("reuse".to_owned()),
            "[a-z]{1,8}",
        ],
        json_value,
        0..6,
    );
    let config = ProptestConfig {
        cases: 200,
        ..ProptestConfig::default()
    };
    proptest!(config, |(body in fields, raw in ".{0,60}", path in "[ -~]{0,30}")| {
        runtime.block_on(async {
            let body = serde_json::Value::Object(body.into_iter().collect());
            let statuses = [
                app.shorten(body.clone()).await.status(),
                app.client.post(app.url("/shorten")).header("content-type", "application/json").body(raw.clone()).send().await.unwrap().status(),
                app.client.patch(app.url(&format!("/links/{code}"))).json(&body).send().await.unwrap().status(),
                app.client.get(app.url(&format!("/{}", path.replace(['#', '?'], "")))).send().await.unwrap().status(),
            ];
            for status in statuses {
                prop_assert!(status.as_u16() < 500, "{status} for {body} / {raw:?} / {path:?}");
            }
            Ok(())
        })?;
    });
    // The existing link still redirects, wherever the patches pointed it, once the guards
    // they may have given it are taken off (a random string is a valid password).
    let cleared = runtime.block_on(
        app.client
            .patch(app.url(&format!("/links/{code}")))
            .json(&json!({"password": null, "expiresAt": null, "maxClicks": null}))
            .send(),
    );
    assert_eq!(cleared.unwrap().status(), 200);
    let response = runtime.block_on(app.follow(&code));
    assert!(response.status().is_redirection());
}

async fn a_body_of_the_wrong_shape_names_the_field_in_plain_words(engine: Engine) {
    let app = TestApp::spawn(&engine).await;
    let error = |field: &str, message: &str| vec![(field.to_owned(), message.to_owned())];
    let problem = assert_problem(app.shorten(json!({"longUrl": 5})).await, 400).await;
    assert_eq!(field_errors(&problem), error("longUrl", "must be a string"));
    let problem = assert_problem(app.shorten(json!({})).await, 400).await;
    assert_eq!(field_errors(&problem), error("longUrl", "is required"));
    let problem = assert_problem(
        app.shorten(json!({"longUrl": "https://example.com/", "redirectType": 70000}))
            .await,
        400,
    )
    .await;
    assert_eq!(
        field_errors(&problem),
        error("redirectType", "must be an integer from 0 to 65535")
    );

    let code = app.create(json!({"longUrl": "https://example.com/"})).await["shortCode"]
        .as_str()
        .unwrap()
        .to_owned();
    let response = app
        .client
        .patch(app.url(&format!("/links/{code}")))
        .header("content-type", "application/merge-patch+json")
        .body(r#"{"colour": "blue"}"#)
        .send()
        .await
        .unwrap();
    let problem = assert_problem(response, 400).await;
    assert_eq!(
        field_errors(&problem),
        error("colour", "is not a field of this request")
    );

    // The blog answers 422 for fields, with the same words.
    let author = app.account("writer@example.com").await;
    let response = app
        .bearer(reqwest::Method::POST, "/posts", &author.access)
        .json(&json!({"title": 5, "body": "text"}))
        .send()
        .await
        .unwrap();
    let problem = assert_problem(response, 422).await;
    assert_eq!(field_errors(&problem), error("title", "must be a string"));
}
