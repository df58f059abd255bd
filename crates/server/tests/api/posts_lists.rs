//! Lists of posts: cursor pagination with `Link`, filters, sorting, search ranking,
//! injection strings, bad parameters, and the "no N+1" round-trip count.

use reqwest::Method;
use serde_json::{Value, json};

use crate::accounts_support::Account;
use crate::blog_support::{header, post};
use crate::helpers::{Engine, TestApp, assert_problem};
use crate::on_both_engines;

on_both_engines!(
    pages_follow_next_cursor_and_link_until_the_last_page,
    sorting_by_title_pages_in_title_order_both_ways,
    filters_by_author_category_and_tag_combine,
    a_users_posts_lists_only_that_authors_published_posts,
    bad_list_parameters_are_400_naming_the_parameter,
    search_finds_stemmed_words_and_ranks_title_matches_first,
    injection_strings_in_every_filter_are_treated_as_data,
    listing_a_hundred_posts_takes_as_many_round_trips_as_listing_ten,
);

fn ids(page: &Value) -> Vec<String> {
    page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["id"].as_str().unwrap().to_owned())
        .collect()
}

async fn publish_many(app: &TestApp, author: &Account, n: usize) -> Vec<String> {
    let mut ids = Vec::new();
    for i in 0..n {
        let created = app.new_post(author, post(&format!("Post {i:02}"))).await;
        ids.push(created["id"].as_str().unwrap().to_owned());
    }
    ids
}

async fn pages_follow_next_cursor_and_link_until_the_last_page(engine: Engine) {
    let app = TestApp::spawn(&engine).await;
    let author = app.account("author@example.com").await;
    // Same creation time for all (the clock stands still): ties are broken by id.
    let mut created = publish_many(&app, &author, 25).await;
    created.reverse();
    let mut seen = Vec::new();
    let mut path = "/posts?limit=10&category=engineering".to_owned();
    let mut pages = 0;
    loop {
        let response = app.get(&path).await;
        assert_eq!(response.status(), 200);
        let link = header(&response, "link");
        let page: Value = response.json().await.unwrap();
        pages += 1;
        seen.extend(ids(&page));
        match page["nextCursor"].as_str() {
            Some(cursor) => {
                let link = link.expect("a Link header when there is a next page");
                assert!(link.ends_with("rel=\"next\""), "{link}");
                assert!(
                    link.contains("category=engineering") && link.contains("limit=10"),
                    "{link}"
                );
                let target = link
                    .trim_start_matches('<')
                    .split('>')
                    .next()
                    .unwrap()
                    .to_owned();
                assert!(target.contains(cursor) || target.contains(&cursor.replace('=', "%3D")));
                path = target;
            }
            None => {
                assert!(link.is_none(), "no Link on the last page");
                break;
            }
        }
    }
    assert_eq!(pages, 3);
    assert_eq!(seen, created, "every post once, newest first");
    let (_, oldest) = app.get_json("/posts?sort=date&limit=1", None).await;
    assert_eq!(ids(&oldest), vec![created[24].clone()]);
}

async fn sorting_by_title_pages_in_title_order_both_ways(engine: Engine) {
    let app = TestApp::spawn(&engine).await;
    let author = app.account("author@example.com").await;
    for title in ["Delta", "alpha-less", "Bravo", "Charlie", "Echo", "Alpha"] {
        app.clock.advance_ms(1);
        app.new_post(&author, post(title)).await;
    }
    for (sort, expected) in [
        ("title", vec!["Alpha", "Bravo", "Charlie", "Delta", "Echo"]),
        ("-title", vec!["Echo", "Delta", "Charlie", "Bravo", "Alpha"]),
    ] {
        let mut titles = Vec::new();
        let mut path = format!("/posts?sort={sort}&limit=2");
        loop {
            let (status, page) = app.get_json(&path, None).await;
            assert_eq!(status, 200);
            titles.extend(
                page["items"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|p| p["title"].as_str().unwrap().to_owned()),
            );
            match page["nextCursor"].as_str() {
                Some(cursor) => path = format!("/posts?sort={sort}&limit=2&cursor={cursor}"),
                None => break,
            }
        }
        // Collations differ for lower-case titles; the upper-case ones order the same everywhere.
        titles.retain(|t| t != "alpha-less");
        assert_eq!(titles, expected, "sort={sort}");
    }
}

async fn filters_by_author_category_and_tag_combine(engine: Engine) {
    let app = TestApp::spawn(&engine).await;
    let ann = app.account("ann@example.com").await;
    let bob = app.account("bob@example.com").await;
    let a1 = app.new_post(&ann, json!({"title": "a1", "body": "b", "category": "news", "tags": ["rust"], "status": "published"})).await;
    let a2 = app.new_post(&ann, json!({"title": "a2", "body": "b", "category": "howto", "tags": ["go", "Rust"], "status": "published"})).await;
    let b1 = app.new_post(&bob, json!({"title": "b1", "body": "b", "category": "news", "tags": ["go"], "status": "published"})).await;
    let id = |v: &Value| v["id"].as_str().unwrap().to_owned();
    let mut check = Vec::new();
    check.push((format!("/posts?author={}", ann.id), vec![id(&a2), id(&a1)]));
    check.push(("/posts?category=news".to_owned(), vec![id(&b1), id(&a1)]));
    check.push(("/posts?category=NEWS".to_owned(), vec![id(&b1), id(&a1)]));
    check.push(("/posts?tag=rust".to_owned(), vec![id(&a2), id(&a1)]));
    check.push(("/posts?tag=go&category=news".to_owned(), vec![id(&b1)]));
    check.push((format!("/posts?tag=go&author={}", ann.id), vec![id(&a2)]));
    check.push(("/posts?tag=python".to_owned(), vec![]));
    for (path, expected) in check {
        let (status, page) = app.get_json(&path, None).await;
        assert_eq!(status, 200, "{path}");
        assert_eq!(ids(&page), expected, "{path}");
    }
    let (_, page) = app.get_json("/posts?tag=rust", None).await;
    assert_eq!(page["items"][0]["tags"], json!(["go", "rust"]));
    assert_eq!(page["items"][0]["authorName"], "Test User");
}

async fn a_users_posts_lists_only_that_authors_published_posts(engine: Engine) {
    let app = TestApp::spawn(&engine).await;
    let ann = app.account("ann@example.com").await;
    let bob = app.account("bob@example.com").await;
    let published = app.new_post(&ann, post("Ann's")).await;
    let mut draft = post("Ann's draft");
    draft["status"] = json!("draft");
    let draft = app.new_post(&ann, draft).await;
    app.new_post(&bob, post("Bob's")).await;
    let path = format!("/users/{}/posts", ann.id);
    let (_, page) = app.get_json(&path, None).await;
    assert_eq!(
        ids(&page),
        vec![published["id"].as_str().unwrap().to_owned()]
    );
    let (_, drafts) = app
        .get_json(&format!("{path}?status=draft"), Some(&ann))
        .await;
    assert_eq!(ids(&drafts), vec![draft["id"].as_str().unwrap().to_owned()]);
    let (status, _) = app
        .get_json(&format!("{path}?status=draft"), Some(&bob))
        .await;
    assert_eq!(status, 403);
    let (status, page) = app.get_json("/users/nobody/posts", None).await;
    assert_eq!((status, page["items"].clone()), (200, json!([])));
}

async fn bad_list_parameters_are_400_naming_the_parameter(engine: Engine) {
    let app = TestApp::spawn(&engine).await;
    let author = app.account("author@example.com").await;
    publish_many(&app, &author, 3).await;
    let (_, by_title) = app.get_json("/posts?sort=title&limit=1", None).await;
    let title_cursor = by_title["nextCursor"].as_str().unwrap().to_owned();
    for (query, field) in [
        ("limit=0", "limit"),
        ("limit=101", "limit"),
        ("limit=ten", "limit"),
        ("limit=-5", "limit"),
        ("sort=newest", "sort"),
        ("status=archived", "status"),
        ("cursor=bm90IGpzb24", "cursor"),
        ("cursor=%%%", "cursor"),
        (&format!("cursor={title_cursor}"), "cursor"),
    ] {
        let response = app.get(&format!("/posts?{query}")).await;
        let problem = assert_problem(response, 400).await;
        assert_eq!(problem["errors"][0]["field"], field, "{query}");
    }
    let (status, page) = app.get_json("/posts?limit=100", None).await;
    assert_eq!((status, page["items"].as_array().unwrap().len()), (200, 3));
}

async fn search_finds_stemmed_words_and_ranks_title_matches_first(engine: Engine) {
    let app = TestApp::spawn(&engine).await;
    let author = app.account("author@example.com").await;
    let in_body = app.new_post(&author, json!({"title": "Weekend notes", "body": "We talked about databases and indexing for a while.", "status": "published"})).await;
    let in_title = app
        .new_post(
            &author,
            json!({"title": "Indexing databases", "body": "A short note.", "status": "published"}),
        )
        .await;
    app.new_post(
        &author,
        json!({"title": "Gardening", "body": "Tomatoes need sun.", "status": "published"}),
    )
    .await;
    let mut draft = json!({"title": "Indexes, drafted", "body": "indexing", "status": "draft"});
    draft["status"] = json!("draft");
    app.new_post(&author, draft).await;
    let (status, page) = app.get_json("/posts?q=indexes", None).await;
    assert_eq!(status, 200);
    assert_eq!(
        ids(&page),
        vec![
            in_title["id"].as_str().unwrap().to_owned(),
            in_body["id"].as_str().unwrap().to_owned()
        ]
    );
    let (_, page) = app.get_json("/posts?q=tomato+sun", None).await;
    assert_eq!(page["items"][0]["title"], "Gardening");
    let (_, page) = app.get_json("/posts?q=indexing&limit=1", None).await;
    let cursor = page["nextCursor"]
        .as_str()
        .expect("a second page")
        .to_owned();
    let (_, second) = app
        .get_json(&format!("/posts?q=indexing&limit=1&cursor={cursor}"), None)
        .await;
    assert_eq!(
        ids(&second),
        vec![in_body["id"].as_str().unwrap().to_owned()]
    );
    assert!(second["nextCursor"].is_null());
    let (_, none) = app.get_json("/posts?q=quantum", None).await;
    assert_eq!(none["items"], json!([]));
}

async fn injection_strings_in_every_filter_are_treated_as_data(engine: Engine) {
    let app = TestApp::spawn(&engine).await;
    let author = app.account("author@example.com").await;
    let created = app.new_post(&author, post("Still here")).await;
    let attacks = [
        "admin' OR '1'='1",
        "' OR 1=1 --",
        "'; DROP TABLE posts; --",
        "1 UNION SELECT id, email, name FROM users --",
        "\" OR \"\"=\"",
        "%' OR title LIKE '%",
        "rust\") OR (\"1\"=\"1",
        "NEAR(a b) OR * AND -x",
    ];
    let encode = |s: &str| url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
    for attack in attacks {
        for name in ["author", "category", "tag", "q"] {
            let (status, page) = app
                .get_json(&format!("/posts?{name}={}", encode(attack)), None)
                .await;
            assert_eq!(status, 200, "{name}={attack}");
            assert_eq!(
                page["items"],
                json!([]),
                "{name}={attack} matched as data, so nothing"
            );
        }
        for name in ["status", "sort", "cursor", "limit"] {
            let response = app.get(&format!("/posts?{name}={}", encode(attack))).await;
            assert_problem(response, 400).await;
        }
        let (status, _) = app
            .get_json(&format!("/users/{}/posts", encode(attack)), None)
            .await;
        assert_eq!(status, 200);
    }
    let (_, page) = app.get_json("/posts", None).await;
    assert_eq!(
        ids(&page),
        vec![created["id"].as_str().unwrap().to_owned()],
        "the table is intact"
    );
    let response = app
        .bearer(Method::POST, "/posts", &author.access)
        .json(&json!({"title": "admin' OR '1'='1", "body": "'; DROP TABLE posts; --", "status": "published"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    let stored: Value = response.json().await.unwrap();
    assert_eq!(stored["title"], "admin' OR '1'='1");
    let (_, page) = app.get_json("/posts", None).await;
    assert_eq!(page["items"].as_array().unwrap().len(), 2);
}

async fn listing_a_hundred_posts_takes_as_many_round_trips_as_listing_ten(engine: Engine) {
    let app = TestApp::spawn(&engine).await;
    let ann = app.account("ann@example.com").await;
    let bob = app.account("bob@example.com").await;
    for i in 0..100 {
        let who = if i % 2 == 0 { &ann } else { &bob };
        let created = app.new_post(who, post(&format!("Post {i}"))).await;
        if i % 10 == 0 {
            app.new_comment(&bob, created["id"].as_str().unwrap(), "nice")
                .await;
        }
    }
    let store = &app.state.store;
    let mut counts = Vec::new();
    for limit in [10, 100] {
        // Background upkeep (the ledger's runner) may read the same store meanwhile; it only
        // ever adds, so the fewest of three readings is the list's own count.
        let mut fewest = u64::MAX;
        let mut answer = None;
        for _ in 0..3 {
            let before = store.round_trips();
            answer = Some(app.get_json(&format!("/posts?limit={limit}"), None).await);
            fewest = fewest.min(store.round_trips() - before);
        }
        counts.push(fewest);
        let (status, page) = answer.unwrap();
        assert_eq!(status, 200);
        let items = page["items"].as_array().unwrap();
        assert_eq!(items.len(), limit);
        assert!(
            items
                .iter()
                .all(|p| p["tags"] == json!(["http", "rust"]) && p["authorName"] == "Test User")
        );
        if limit == 100 {
            let comments: i64 = items
                .iter()
                .map(|p| p["commentCount"].as_i64().unwrap())
                .sum();
            assert_eq!(comments, 10);
        }
    }
    assert_eq!(
        counts[0], counts[1],
        "the count does not grow with the page"
    );
    assert_eq!(
        counts[1], 2,
        "one statement for the posts, one for their tags"
    );
}
