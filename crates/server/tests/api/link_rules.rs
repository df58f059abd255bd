//! Routing rules: a split by weight, sticky per visitor, and targets by device, operating
//! system and language; rules that cannot work are 422.

use rand::{Rng, SeedableRng};
use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::{DESKTOP, Engine, PHONE, TestApp, assert_problem};
use crate::on_every_layout;

on_every_layout!(
    a_split_follows_its_weights_within_two_percent_over_ten_thousand_visitors,
    a_new_visitor_gets_a_cookie_and_keeps_its_destination,
    targets_send_devices_systems_and_languages_to_their_urls_first_match_winning,
    rules_that_cannot_work_are_422_and_rules_are_shown_changed_and_cleared,
);

async fn location(app: &TestApp, code: &str, headers: &[(&str, &str)]) -> String {
    let mut request = app.client.get(app.url(&format!("/{code}")));
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = request.send().await.unwrap();
    assert_eq!(response.status(), 302);
    response.headers()["location"].to_str().unwrap().to_owned()
}

async fn a_split_follows_its_weights_within_two_percent_over_ten_thousand_visitors(engine: Engine) {
    let app = TestApp::spawn(&engine).await;
    let link = app
        .create(json!({
            "longUrl": "https://example.com/default",
            "redirectType": 302,
            "rules": {"split": [
                {"url": "https://example.com/a", "weight": 1},
                {"url": "https://example.com/b", "weight": 3},
                {"url": "https://example.com/c", "weight": 6},
            ]},
        }))
        .await;
    let code = link["shortCode"].as_str().unwrap().to_owned();
    // 10,000 visitors whose numbers come from a fixed seed, eight at a time.
    let mut seeded = rand::rngs::StdRng::seed_from_u64(18);
    let visitors: Vec<u64> = (0..10_000).map(|_| seeded.random()).collect();
    let mut tasks = tokio::task::JoinSet::new();
    for share in visitors.chunks(1250) {
        let (share, client, url) = (
            share.to_vec(),
            app.client.clone(),
            app.url(&format!("/{code}")),
        );
        tasks.spawn(async move {
            let mut seen = Vec::with_capacity(share.len());
            for visitor in share {
                let response = client
                    .get(&url)
                    .header("cookie", format!("basis_visitor={visitor:016x}"))
                    .send()
                    .await
                    .unwrap();
                assert!(
                    response.headers().get("set-cookie").is_none(),
                    "a known visitor"
                );
                seen.push(response.headers()["location"].to_str().unwrap().to_owned());
            }
            seen
        });
    }
    let mut counts = std::collections::HashMap::<String, usize>::new();
    while let Some(seen) = tasks.join_next().await {
        for url in seen.unwrap() {
            *counts.entry(url).or_default() += 1;
        }
    }
    for (url, weight) in [("a", 0.1), ("b", 0.3), ("c", 0.6)] {
        let share = counts[&format!("https://example.com/{url}")] as f64 / 10_000.0;
        assert!(
            (share - weight).abs() <= 0.02,
            "{url}: {share} for {weight}"
        );
    }
    assert!(!counts.contains_key("https://example.com/default"));
}

async fn a_new_visitor_gets_a_cookie_and_keeps_its_destination(engine: Engine) {
    let app = TestApp::spawn(&engine).await;
    let link = app
        .create(json!({
            "longUrl": "https://example.com/default",
            "redirectType": 302,
            "rules": {"split": [
                {"url": "https://example.com/a", "weight": 1},
                {"url": "https://example.com/b", "weight": 1},
            ]},
        }))
        .await;
    let code = link["shortCode"].as_str().unwrap();
    for _ in 0..5 {
        let first = app.follow(code).await;
        assert_eq!(first.headers()["cache-control"], "no-store");
        let cookie = first.headers()["set-cookie"].to_str().unwrap().to_owned();
        assert!(
            cookie.starts_with("basis_visitor=") && cookie.contains("HttpOnly"),
            "{cookie}"
        );
        let pair = cookie.split(';').next().unwrap().to_owned();
        let went = first.headers()["location"].to_str().unwrap().to_owned();
        for _ in 0..3 {
            assert_eq!(location(&app, code, &[("cookie", &pair)]).await, went);
        }
    }
    // A link without rules sets no cookie.
    let plain = app
        .create(json!({"longUrl": "https://example.com/plain"}))
        .await;
    let response = app.follow(plain["shortCode"].as_str().unwrap()).await;
    assert!(response.headers().get("set-cookie").is_none());
}

async fn targets_send_devices_systems_and_languages_to_their_urls_first_match_winning(
    engine: Engine,
) {
    let app = TestApp::spawn(&engine).await;
    let link = app
        .create(json!({
            "longUrl": "https://example.com/default",
            "redirectType": 302,
            "rules": {"targets": [
                {"os": "android", "url": "https://play.example.com/app"},
                {"device": "mobile", "url": "https://m.example.com/"},
                {"language": "fr", "url": "https://example.fr/"},
            ]},
        }))
        .await;
    let code = link["shortCode"].as_str().unwrap();
    let android =
        "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 Mobile Safari/537.36";
    let cases: [(&[(&str, &str)], &str); 5] = [
        (&[("user-agent", android)], "https://play.example.com/app"),
        // An iPhone is mobile but not Android: the second rule.
        (
            &[("user-agent", PHONE), ("accept-language", "fr")],
            "https://m.example.com/",
        ),
        (
            &[
                ("user-agent", DESKTOP),
                ("accept-language", "de-CH, fr-CA;q=0.5"),
            ],
            "https://example.fr/",
        ),
        (
            &[("user-agent", DESKTOP), ("accept-language", "de, fr;q=0")],
            "https://example.com/default",
        ),
        (&[("user-agent", DESKTOP)], "https://example.com/default"),
    ];
    for (headers, expected) in cases {
        assert_eq!(location(&app, code, headers).await, expected, "{headers:?}");
    }
}

async fn rules_that_cannot_work_are_422_and_rules_are_shown_changed_and_cleared(engine: Engine) {
    let app = TestApp::spawn(&engine).await;
    let eleven: Vec<Value> = (0..11)
        .map(|i| json!({"url": format!("https://example.com/{i}"), "weight": 1}))
        .collect();
    let refused = [
        (json!({"split": eleven}), "rules"),
        (
            json!({"split": [{"url": "https://example.com/a", "weight": 0}]}),
            "rules.split",
        ),
        (
            json!({"split": [{"url": "https://example.com/a", "weight": -2}]}),
            "rules.split[0].weight",
        ),
        (
            json!({"targets": [{"device": "fridge", "url": "https://example.com/"}]}),
            "rules.targets[0].device",
        ),
        (
            json!({"targets": [{"language": "fr", "url": "javascript:alert(1)"}]}),
            "rules.targets[0].url",
        ),
    ];
    for (rules, field) in refused {
        let response = app
            .shorten(json!({"longUrl": "https://example.com/", "rules": rules}))
            .await;
        let problem = assert_problem(response, 422).await;
        assert_eq!(problem["errors"][0]["field"], field, "{rules}");
    }
    // Malformed (not rules at all) stays a 400.
    let malformed = app
        .shorten(json!({"longUrl": "https://example.com/", "rules": {"split": "half"}}))
        .await;
    assert_problem(malformed, 400).await;

    let link = app
        .create(json!({
            "longUrl": "https://example.com/default",
            "rules": {"targets": [{"device": "Mobile", "url": "https://m.example.com"}]},
        }))
        .await;
    let code = link["shortCode"].as_str().unwrap();
    let shown = app.link(code).await;
    assert_eq!(
        shown["rules"],
        json!({"targets": [{"device": "mobile", "url": "https://m.example.com/"}]})
    );
    let patch = |body: Value| {
        app.client
            .request(Method::PATCH, app.url(&format!("/links/{code}")))
            .json(&body)
            .send()
    };
    let too_many = patch(json!({"rules": {"split": (0..11).map(|i| json!({"url": format!("https://example.com/{i}"), "weight": 1})).collect::<Vec<_>>()}})).await.unwrap();
    assert_problem(too_many, 422).await;
    let changed: Value =
        patch(json!({"rules": {"split": [{"url": "https://example.com/x", "weight": 2}]}}))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
    assert_eq!(changed["rules"]["split"][0]["weight"], 2);
    assert_eq!(
        app.follow(code).await.headers()["location"],
        "https://example.com/x"
    );
    let cleared: Value = patch(json!({"rules": null}))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(cleared.get("rules").is_none());
    let plain = app.follow(code).await;
    assert_eq!(plain.headers()["location"], "https://example.com/default");
    assert_eq!(plain.headers()["cache-control"], "private, max-age=90");
}
