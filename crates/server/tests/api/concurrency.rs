//! Many creates at once: codes never collide.

use std::collections::HashSet;

use serde_json::json;

use crate::helpers::{Engine, TestApp};
use crate::on_both_engines;

on_both_engines!(eight_tasks_creating_a_thousand_links_each_get_eight_thousand_distinct_codes);

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
