//! Many creates at once: codes never collide, and reuse requests agree on one link.

use std::collections::HashSet;

use serde_json::json;

use crate::helpers::{Engine, TestApp};
use crate::on_both_engines;

on_both_engines!(
    eight_tasks_creating_a_thousand_links_each_get_eight_thousand_distinct_codes,
    concurrent_reuse_requests_for_a_new_url_agree_on_one_link,
);

async fn eight_tasks_creating_a_thousand_links_each_get_eight_thousand_distinct_codes(
    engine: Engine,
) {
    let app = std::sync::Arc::new(TestApp::spawn(&engine).await);
    let mut tasks = tokio::task::JoinSet::new();
    for task in 0..8 {
        let app = app.clone();
        tasks.spawn(async move {
            let mut codes = Vec::with_capacity(1000);
            for i in 0..1000 {
                let link = app
                    .create(json!({"longUrl": format!("https://example.com/{task}/{i}")}))
                    .await;
                codes.push(link["shortCode"].as_str().unwrap().to_owned());
            }
            codes
        });
    }
    let mut all = HashSet::new();
    while let Some(codes) = tasks.join_next().await {
        all.extend(codes.unwrap());
    }
    assert_eq!(all.len(), 8000);
    // Every one of them redirects to its own target.
    let sample: Vec<&String> = all.iter().take(20).collect();
    for code in sample {
        assert_eq!(app.follow(code).await.status(), 301);
    }
}

async fn concurrent_reuse_requests_for_a_new_url_agree_on_one_link(engine: Engine) {
    let app = std::sync::Arc::new(TestApp::spawn(&engine).await);
    for round in 0..10 {
        let url = format!("https://example.com/reused-at-once/{round}");
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..8 {
            let (app, url) = (app.clone(), url.clone());
            tasks.spawn(async move {
                let response = app.shorten(json!({"longUrl": url, "reuse": true})).await;
                let status = response.status().as_u16();
                let body: serde_json::Value = response.json().await.unwrap();
                (status, body["shortCode"].as_str().unwrap().to_owned())
            });
        }
        let answers = tasks.join_all().await;
        let codes: HashSet<&String> = answers.iter().map(|(_, code)| code).collect();
        assert_eq!(
            codes.len(),
            1,
            "round {round}: one link for all: {answers:?}"
        );
        let made = answers.iter().filter(|(status, _)| *status == 201).count();
        let reused = answers.iter().filter(|(status, _)| *status == 200).count();
        assert_eq!((made, reused), (1, 7), "round {round}: {answers:?}");
    }
}
