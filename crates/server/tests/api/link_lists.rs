//! `GET /links` (the caller's links in cursor pages, searched, filtered and sorted) and
//! tags on links (`tags` in create and patch, `/links/tags…`).

use basis_auth::role::Role;
use reqwest::Method;
use serde_json::{Value, json};

use crate::accounts_support::{Account, assert_unauthorized};
use crate::helpers::{Engine, TestApp, assert_problem};
use crate::on_every_layout;

on_every_layout!(
    a_user_lists_only_their_own_links_newest_first_in_cursor_pages,
    an_admin_lists_another_owner_s_links_and_a_user_may_not,
    the_list_is_searched_in_url_alias_and_generated_code,
    the_list_is_sorted_by_clicks_either_way,
    bad_list_parameters_are_400_naming_the_parameter,
    tags_are_set_on_create_replaced_by_patch_and_filter_the_list,
    tag_statistics_count_links_and_clicks_and_tags_are_renamed_and_deleted,
);

impl TestApp {
    /// `GET path` as `who`, asserting 200, with the body and the `Link` header.
    async fn list_as(&self, who: &Account, path: &str) -> (Value, Option<String>) {
        let response = self
            .bearer(Method::GET, path, &who.access)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "{path}");
        let link = response
            .headers()
            .get("link")
            .map(|v| v.to_str().unwrap().to_owned());
        (response.json().await.unwrap(), link)
    }

    /// Creates a link from `body` as `who`, returning its code.
    async fn create_with(&self, who: &Account, body: Value) -> String {
        let response = self
            .bearer(Method::POST, "/shorten", &who.access)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 201, "{:?}", response.text().await);
        let link: Value = response.json().await.unwrap();
        link["shortCode"].as_str().unwrap().to_owned()
    }
}

fn codes(page: &Value) -> Vec<String> {
    page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["shortCode"].as_str().unwrap().to_owned())
        .collect()
}

async fn a_user_lists_only_their_own_links_newest_first_in_cursor_pages(engine: Engine) {
    let app = TestApp::spawn(&engine).await;
    let ann = app.account("ann@example.com").await;
    let bob = app.account("bob@example.com").await;
    let mut made = Vec::new();
    for i in 0..5 {
        made.push(
            app.create_as(&ann.access, &format!("https://example.com/{i}"))
                .await,
        );
        app.clock.advance(std::time::Duration::from_secs(1));
    }
    app.create_as(&bob.access, "https://example.com/bob").await;
    app.create(json!({"longUrl": "https://example.com/anonymous"}))
        .await;
    made.reverse();

    let (first, link) = app.list_as(&ann, "/links?limit=2").await;
    assert_eq!(codes(&first), made[..2]);
    assert_eq!(first["items"][0]["longUrl"], "https://example.com/4");
    assert_eq!(first["items"][0]["tags"], json!([]));
    let cursor = first["nextCursor"].as_str().unwrap();
    let link = link.expect("a Link header");
    assert!(
        link.contains("rel=\"next\"") && link.contains("limit=2"),
        "{link}"
    );
    let (second, _) = app
        .list_as(&ann, &format!("/links?limit=2&cursor={cursor}"))
        .await;
    assert_eq!(codes(&second), made[2..4]);
    let cursor = second["nextCursor"].as_str().unwrap();
    let (last, link) = app
        .list_as(&ann, &format!("/links?limit=2&cursor={cursor}"))
        .await;
    assert_eq!(codes(&last), made[4..]);
    assert!(last["nextCursor"].is_null() && link.is_none());

    let (oldest, _) = app.list_as(&ann, "/links?sort=created&limit=1").await;
    assert_eq!(codes(&oldest), [made[4].clone()]);
    let (bobs, _) = app.list_as(&bob, "/links").await;
    assert_eq!(bobs["items"].as_array().unwrap().len(), 1);
    assert_unauthorized(app.get("/links").await).await;
}

async fn an_admin_lists_another_owner_s_links_and_a_user_may_not(engine: Engine) {
    let app = TestApp::spawn(&engine).await;
    let ann = app.account("ann@example.com").await;
    let bob = app.account("bob@example.com").await;
    let admin = app.account_with_role("root@example.com", Role::Admin).await;
    let code = app.create_as(&ann.access, "https://example.com/ann").await;

    let (page, _) = app
        .list_as(&admin, &format!("/links?owner={}", ann.id))
        .await;
    assert_eq!(codes(&page), [code]);
    let (own, _) = app.list_as(&admin, "/links").await;
    assert_eq!(codes(&own), Vec::<String>::new());
    let refused = app
        .bearer(
            Method::GET,
            &format!("/links?owner={}", ann.id),
            &bob.access,
        )
        .send()
        .await
        .unwrap();
    assert_problem(refused, 403).await;
    // Naming yourself is allowed.
    let (mine, _) = app.list_as(&ann, &format!("/links?owner={}", ann.id)).await;
    assert_eq!(mine["items"].as_array().unwrap().len(), 1);
}

async fn the_list_is_searched_in_url_alias_and_generated_code(engine: Engine) {
    let app = TestApp::spawn(&engine).await;
    let ann = app.account("ann@example.com").await;
    let shoes = app
        .create_as(&ann.access, "https://shop.example.com/Shoes?size=42")
        .await;
    let promo = app
        .create_with(
            &ann,
            json!({"longUrl": "https://example.com/x", "customAlias": "spring-SALE"}),
        )
        .await;
    let other = app
        .create_as(&ann.access, "https://example.org/100%_real")
        .await;

    let search = |q: &str| format!("/links?q={}", urlencoding(q));
    assert_eq!(
        codes(&app.list_as(&ann, &search("shoes")).await.0),
        std::slice::from_ref(&shoes)
    );
    assert_eq!(codes(&app.list_as(&ann, &search("sale")).await.0), [promo]);
    // `%` and `_` are matched literally, not as wildcards.
    assert_eq!(codes(&app.list_as(&ann, &search("0%_r")).await.0), [other]);
    assert_eq!(codes(&app.list_as(&ann, &search("%")).await.0).len(), 1);
    // A generated code is not stored, yet it finds its link.
    assert_eq!(codes(&app.list_as(&ann, &search(&shoes)).await.0), [shoes]);
    assert_eq!(
        codes(&app.list_as(&ann, &search("nothing")).await.0).len(),
        0
    );
}

fn urlencoding(text: &str) -> String {
    url::form_urlencoded::byte_serialize(text.as_bytes()).collect()
}

async fn the_list_is_sorted_by_clicks_either_way(engine: Engine) {
    let app = TestApp::spawn(&engine).await;
    let ann = app.account("ann@example.com").await;
    let mut made = Vec::new();
    for (i, clicks) in [2, 0, 3, 1].into_iter().enumerate() {
        let code = app
            .create_as(&ann.access, &format!("https://example.com/{i}"))
            .await;
        for _ in 0..clicks {
            assert_eq!(app.follow(&code).await.status(), 301);
        }
        made.push((clicks, code));
    }
    app.state.clicks.flush().await.unwrap();
    assert!(
        app.state
            .clicks
            .drain(std::time::Duration::from_secs(20))
            .await
    );

    made.sort();
    let ascending: Vec<String> = made.iter().map(|(_, c)| c.clone()).collect();
    let mut walked = Vec::new();
    let mut path = "/links?sort=clicks&limit=3".to_owned();
    loop {
        let (page, _) = app.list_as(&ann, &path).await;
        walked.extend(codes(&page));
        match page["nextCursor"].as_str() {
            Some(next) => path = format!("/links?sort=clicks&limit=3&cursor={next}"),
            None => break,
        }
    }
    assert_eq!(walked, ascending);
    let (most, _) = app.list_as(&ann, "/links?sort=-clicks&limit=2").await;
    assert_eq!(codes(&most), [ascending[3].clone(), ascending[2].clone()]);
    assert_eq!(most["items"][0]["clickCount"], 3);
}

async fn bad_list_parameters_are_400_naming_the_parameter(engine: Engine) {
    let app = TestApp::spawn(&engine).await;
    let ann = app.account("ann@example.com").await;
    app.create_as(&ann.access, "https://example.com/1").await;
    app.create_as(&ann.access, "https://example.com/2").await;
    let (page, _) = app.list_as(&ann, "/links?limit=1").await;
    let cursor = page["nextCursor"].as_str().unwrap().to_owned();
    for (path, field) in [
        ("/links?limit=0".to_owned(), "limit"),
        ("/links?limit=101".to_owned(), "limit"),
        ("/links?limit=x".to_owned(), "limit"),
        ("/links?sort=title".to_owned(), "sort"),
        ("/links?cursor=garbage".to_owned(), "cursor"),
        (format!("/links?sort=-clicks&cursor={cursor}"), "cursor"),
        ("/links?tag=a%2Fb".to_owned(), "tag"),
        (format!("/links?q={}", "x".repeat(201)), "q"),
    ] {
        let response = app
            .bearer(Method::GET, &path, &ann.access)
            .send()
            .await
            .unwrap();
        let problem = assert_problem(response, 400).await;
        assert_eq!(problem["errors"][0]["field"], field, "{path}");
    }
}

async fn tags_are_set_on_create_replaced_by_patch_and_filter_the_list(engine: Engine) {
    let app = TestApp::spawn(&engine).await;
    let ann = app.account("ann@example.com").await;
    let bob = app.account("bob@example.com").await;
    let launch = app
        .create_with(
            &ann,
            json!({"longUrl": "https://example.com/a", "tags": ["Launch", "news", "launch "]}),
        )
        .await;
    let plain = app.create_as(&ann.access, "https://example.com/b").await;
    app.create_with(
        &bob,
        json!({"longUrl": "https://example.com/c", "tags": ["launch"]}),
    )
    .await;

    let read = app.bearer(Method::GET, &format!("/links/{launch}"), &ann.access);
    let link: Value = read.send().await.unwrap().json().await.unwrap();
    assert_eq!(link["tags"], json!(["launch", "news"]));
    let (tagged, _) = app.list_as(&ann, "/links?tag=LAUNCH").await;
    assert_eq!(codes(&tagged), std::slice::from_ref(&launch));

    let patched = app
        .bearer(Method::PATCH, &format!("/links/{plain}"), &ann.access)
        .json(&json!({"tags": ["launch"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(patched.status(), 200);
    let patched: Value = patched.json().await.unwrap();
    assert_eq!(patched["tags"], json!(["launch"]));
    let (tagged, _) = app.list_as(&ann, "/links?tag=launch&sort=created").await;
    assert_eq!(codes(&tagged), [launch.clone(), plain.clone()]);
    // A patch without tags keeps them; null clears them.
    let kept = app
        .bearer(Method::PATCH, &format!("/links/{launch}"), &ann.access)
        .json(&json!({"redirectType": 302}))
        .send()
        .await
        .unwrap();
    assert_eq!(
        kept.json::<Value>().await.unwrap()["tags"],
        json!(["launch", "news"])
    );
    let cleared = app
        .bearer(Method::PATCH, &format!("/links/{launch}"), &ann.access)
        .json(&json!({"tags": null}))
        .send()
        .await
        .unwrap();
    assert_eq!(cleared.json::<Value>().await.unwrap()["tags"], json!([]));

    for bad in [
        json!(["a/b"]),
        json!((0..21).map(|i| format!("t{i}")).collect::<Vec<_>>()),
    ] {
        let response = app
            .bearer(Method::POST, "/shorten", &ann.access)
            .json(&json!({"longUrl": "https://example.com/d", "tags": bad}))
            .send()
            .await
            .unwrap();
        let problem = assert_problem(response, 400).await;
        assert_eq!(problem["errors"][0]["field"], "tags");
    }
    let reuse = app
        .bearer(Method::POST, "/shorten", &ann.access)
        .json(&json!({"longUrl": "https://example.com/b", "tags": ["x"], "reuse": true}))
        .send()
        .await
        .unwrap();
    assert_problem(reuse, 400).await;
}

async fn tag_statistics_count_links_and_clicks_and_tags_are_renamed_and_deleted(engine: Engine) {
    let app = TestApp::spawn(&engine).await;
    let ann = app.account("ann@example.com").await;
    let bob = app.account("bob@example.com").await;
    let a = app
        .create_with(
            &ann,
            json!({"longUrl": "https://example.com/a", "tags": ["x", "y"]}),
        )
        .await;
    app.create_with(
        &ann,
        json!({"longUrl": "https://example.com/b", "tags": ["y"]}),
    )
    .await;
    let bobs = app
        .create_with(
            &bob,
            json!({"longUrl": "https://example.com/c", "tags": ["x"]}),
        )
        .await;
    for _ in 0..3 {
        assert_eq!(app.follow(&a).await.status(), 301);
    }
    app.state.clicks.flush().await.unwrap();
    assert!(
        app.state
            .clicks
            .drain(std::time::Duration::from_secs(20))
            .await
    );

    let (stats, _) = app.list_as(&ann, "/links/tags").await;
    assert_eq!(
        stats["items"],
        json!([{"tag": "x", "links": 1, "clicks": 3}, {"tag": "y", "links": 2, "clicks": 3}])
    );

    // Renaming onto a tag a link already has keeps one of the two.
    let renamed = app
        .bearer(Method::PATCH, "/links/tags/X", &ann.access)
        .json(&json!({"name": "y"}))
        .send()
        .await
        .unwrap();
    assert_eq!(renamed.status(), 200);
    assert_eq!(renamed.json::<Value>().await.unwrap()["links"], 1);
    let (stats, _) = app.list_as(&ann, "/links/tags").await;
    assert_eq!(
        stats["items"],
        json!([{"tag": "y", "links": 2, "clicks": 3}])
    );
    // Bob's tag is his own.
    let bob_link: Value = app
        .bearer(Method::GET, &format!("/links/{bobs}"), &bob.access)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(bob_link["tags"], json!(["x"]));

    let deleted = app
        .bearer(Method::DELETE, "/links/tags/y", &ann.access)
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.json::<Value>().await.unwrap()["links"], 2);
    let (stats, _) = app.list_as(&ann, "/links/tags").await;
    assert_eq!(stats["items"], json!([]));
    assert_eq!(app.follow(&a).await.status(), 301, "the links stay");

    let missing = app
        .bearer(Method::DELETE, "/links/tags/y", &ann.access)
        .send()
        .await
        .unwrap();
    assert_problem(missing, 404).await;
    let bad_name = app
        .bearer(Method::PATCH, "/links/tags/x", &bob.access)
        .json(&json!({"name": "no/slash"}))
        .send()
        .await
        .unwrap();
    assert_eq!(
        assert_problem(bad_name, 400).await["errors"][0]["field"],
        "name"
    );
    assert_unauthorized(app.get("/links/tags").await).await;
}
