//! `GET /{code}+`: where a link goes, with its title and creation date, without redirecting
//! or counting.

use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::{Engine, TestApp, assert_problem};
use crate::on_both_engines;

on_both_engines!(
    a_preview_shows_the_destination_and_title_without_counting,
    a_preview_of_a_protected_or_gone_link_keeps_the_destination_hidden,
);

async fn a_preview_shows_the_destination_and_title_without_counting(engine: Engine) {
    let app = TestApp::spawn(&engine).await;
    let link = app
        .create(json!({"longUrl": "https://example.com/a?b=<c>", "title": "  Spring <sale> "}))
        .await;
    let code = link["shortCode"].as_str().unwrap();
    assert_eq!(link["title"], "Spring <sale>");

    let response = app.get(&format!("/{code}+")).await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["cache-control"], "no-store");
    let preview: Value = response.json().await.unwrap();
    assert_eq!(preview["longUrl"], "https://example.com/a?b=%3Cc%3E");
    assert_eq!(preview["title"], "Spring <sale>");
    assert_eq!(preview["shortCode"], code);
    assert_eq!(preview["createdAt"], link["createdAt"]);
    assert_eq!(preview["passwordProtected"], false);

    let page = app
        .client
        .get(app.url(&format!("/{code}+")))
        .header("accept", "text/html,*/*;q=0.8")
        .send()
        .await
        .unwrap();
    assert!(
        page.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    let html = page.text().await.unwrap();
    assert!(
        html.contains("Spring &lt;sale&gt;") && html.contains("https://example.com/a?b=%3Cc%3E")
    );

    // Neither preview was a click.
    app.state.clicks.flush().await.unwrap();
    assert!(
        app.state
            .clicks
            .drain(std::time::Duration::from_secs(20))
            .await
    );
    assert_eq!(app.link(code).await["clickCount"], 0);
    assert_problem(app.get("/nosuchcode+").await, 404).await;
    assert_problem(app.get("/+").await, 404).await;

    // The title is changed and cleared by a patch.
    let patched: Value = app
        .client
        .request(Method::PATCH, app.url(&format!("/links/{code}")))
        .json(&json!({"title": null}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(patched["title"].is_null());
    let preview: Value = app.get(&format!("/{code}+")).await.json().await.unwrap();
    assert!(preview.get("title").is_none());
}

async fn a_preview_of_a_protected_or_gone_link_keeps_the_destination_hidden(engine: Engine) {
    let app = TestApp::spawn(&engine).await;
    let protected = app
        .create(json!({"longUrl": "https://example.com/secret", "password": "open sesame", "title": "Secret"}))
        .await;
    let code = protected["shortCode"].as_str().unwrap();
    let preview: Value = app.get(&format!("/{code}+")).await.json().await.unwrap();
    assert_eq!(preview["passwordProtected"], true);
    assert!(preview.get("longUrl").is_none() && preview.get("title").is_none());

    let expiring = app
        .create(json!({
            "longUrl": "https://example.com/soon",
            "expiresAt": app.clock_now() + chrono::Duration::seconds(60),
        }))
        .await;
    let code = expiring["shortCode"].as_str().unwrap();
    assert_eq!(app.get(&format!("/{code}+")).await.status(), 200);
    app.clock.advance(std::time::Duration::from_secs(61));
    assert_problem(app.get(&format!("/{code}+")).await, 410).await;
}
