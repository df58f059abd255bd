//! Import from other shorteners' exports (fixtures written from their documented formats)
//! and `GET /links/export`: every fixture survives the round trip through export.

use std::collections::HashMap;

use basis_server::clock::Clock as _;
use basis_server::links::import::{self, Report, Source};
use reqwest::Method;
use serde_json::{Value, json};

use crate::accounts_support::{Account, assert_unauthorized};
use crate::helpers::{Engine, TestApp, assert_problem};
use crate::on_both_engines;

on_both_engines!(
    every_fixture_survives_an_import_and_an_export,
    an_export_streams_csv_or_json_of_the_callers_links_only,
);

const FIXTURES: [(Source, &str); 4] = [
    (Source::Shlink, "shlink.csv"),
    (Source::Kutt, "kutt.json"),
    (Source::Yourls, "yourls.csv"),
    (Source::Bitly, "bitly.csv"),
];

fn fixture(name: &str) -> String {
    let path = format!(
        "{}/tests/fixtures/import/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read_to_string(&path).expect("the fixture exists")
}

async fn import_as(
    app: &TestApp,
    owner: &Account,
    source: Source,
    text: &str,
) -> (Vec<import::Imported>, Report) {
    let items = import::parse(source, text, &app.state.url_policy).expect("the fixture parses");
    let target = import::Target {
        store: &app.state.store,
        codes: &app.state.codes,
        ids: &app.state.ids,
    };
    let mut seen = Vec::new();
    let report = import::write(
        target,
        &owner.id,
        None,
        app.clock.now_ms(),
        items.clone(),
        |done, total| seen.push((done, total)),
    )
    .await
    .expect("the import is written");
    assert_eq!(
        seen.last(),
        Some(&(items.len(), items.len())),
        "progress reaches the end"
    );
    (items, report)
}

async fn export_json(app: &TestApp, token: &str) -> Vec<Value> {
    let response = app
        .bearer(Method::GET, "/links/export?format=json", token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "application/json");
    response.json().await.unwrap()
}

async fn every_fixture_survives_an_import_and_an_export(engine: Engine) {
    let app = TestApp::spawn(&engine).await;
    // Each fixture has a link whose code is taken here already.
    let other = app.account("other@example.com").await;
    let response = app
        .bearer(Method::POST, "/shorten", &other.access)
        .json(&json!({"longUrl": "https://example.com/first", "customAlias": "taken-here"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);

    for (i, (source, name)) in FIXTURES.into_iter().enumerate() {
        let owner = app.account(&format!("owner{i}@example.com")).await;
        let (items, report) = import_as(&app, &owner, source, &fixture(name)).await;
        assert_eq!(report.created, 3, "{name}");
        let conflicts: HashMap<&str, &str> = report
            .conflicts
            .iter()
            .map(|c| (c.code.as_str(), c.new_code.as_str()))
            .collect();
        assert!(conflicts.contains_key("taken-here"), "{name}: {report:?}");
        assert_eq!(report.kept + report.conflicts.len(), 3);

        let exported = export_json(&app, &owner.access).await;
        assert_eq!(exported.len(), items.len(), "{name}");
        for item in &items {
            let code = conflicts
                .get(item.code.as_str())
                .copied()
                .unwrap_or(&item.code);
            let link = exported
                .iter()
                .find(|l| l["shortCode"] == code)
                .unwrap_or_else(|| panic!("{name}: {code} is exported"));
            assert_eq!(link["longUrl"], item.long_url.as_str(), "{name}");
            assert_eq!(link["title"], json!(item.title), "{name}");
            assert_eq!(link["tags"], json!(item.tags), "{name}");
            assert_eq!(link["clicks"], item.clicks, "{name}");
            let created = chrono::DateTime::parse_from_rfc3339(link["createdAt"].as_str().unwrap())
                .unwrap()
                .timestamp_millis();
            assert_eq!(Some(created), item.created_at, "{name}");
            // And it redirects where it went before.
            let followed = app.follow(code).await;
            assert_eq!(followed.status(), 301, "{name} {code}");
            assert_eq!(followed.headers()["location"], item.long_url.as_str());
        }
    }
    // What each fixture says, checked once by hand: titles, tags and totals.
    let shlink = import::parse(
        Source::Shlink,
        &fixture("shlink.csv"),
        &app.state.url_policy,
    )
    .unwrap();
    assert_eq!(shlink[0].tags, ["promo", "seasonal"]);
    assert_eq!(shlink[0].clicks, 42);
    assert_eq!(shlink[2].title.as_deref(), Some("Title, with comma"));
    let yourls = import::parse(
        Source::Yourls,
        &fixture("yourls.csv"),
        &app.state.url_policy,
    )
    .unwrap();
    assert_eq!(yourls[0].clicks, 128);
    let bitly = import::parse(Source::Bitly, &fixture("bitly.csv"), &app.state.url_policy).unwrap();
    assert_eq!(bitly[1].code, "3AbCdEf");
    assert_eq!(bitly[0].tags, ["campaign", "spring"]);
}

async fn an_export_streams_csv_or_json_of_the_callers_links_only(engine: Engine) {
    let app = TestApp::spawn(&engine).await;
    let ann = app.account("ann@example.com").await;
    let bob = app.account("bob@example.com").await;
    // More than one page of the stream (500 links).
    let items: Vec<Value> = (0..620)
        .map(|n| json!({"longUrl": format!("https://example.com/{n}"), "tags": ["bulk"]}))
        .collect();
    for chunk in items.chunks(500) {
        let response = app
            .bearer(Method::POST, "/links/bulk", &ann.access)
            .json(&chunk)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 207);
    }
    let titled = app
        .bearer(Method::POST, "/shorten", &ann.access)
        .json(&json!({"longUrl": "https://example.com/t", "customAlias": "with-title", "title": "Quote \" and, comma"}))
        .send()
        .await
        .unwrap();
    assert_eq!(titled.status(), 201);
    app.create_as(&bob.access, "https://example.com/bob").await;
    for _ in 0..3 {
        app.follow("with-title").await;
    }

    let json_links = export_json(&app, &ann.access).await;
    assert_eq!(json_links.len(), 621);
    // Oldest first; clicks not yet stored are counted.
    let last = json_links.last().unwrap();
    assert_eq!(last["shortCode"], "with-title");
    assert_eq!(last["clicks"], 3);
    assert_eq!(json_links[0]["tags"], json!(["bulk"]));

    let response = app
        .bearer(Method::GET, "/links/export", &ann.access)
        .header("accept", "text/csv")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/csv")
    );
    let csv = response.text().await.unwrap();
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(
        lines[0],
        "shortCode,shortUrl,longUrl,domain,title,tags,createdAt,clicks"
    );
    assert_eq!(lines.len(), 622);
    assert!(lines[621].starts_with("with-title,"), "{}", lines[621]);
    assert!(
        lines[621].contains("\"Quote \"\" and, comma\""),
        "{}",
        lines[621]
    );
    assert!(lines[621].ends_with(",3"));

    // Compressed, the streamed answer still ends cleanly and holds the same links.
    let response = app
        .bearer(Method::GET, "/links/export?format=csv", &ann.access)
        .header("accept-encoding", "gzip")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-encoding"], "gzip");
    let packed = response.bytes().await.expect("the whole compressed body");
    let unpacked = String::from_utf8(crate::compression::decode("gzip", &packed)).unwrap();
    assert_eq!(unpacked, csv);

    // Bob sees his own only; he may not ask for Ann's; bad formats and anonymous callers
    // are refused.
    assert_eq!(export_json(&app, &bob.access).await.len(), 1);
    let response = app
        .bearer(
            Method::GET,
            &format!("/links/export?owner={}", ann.id),
            &bob.access,
        )
        .send()
        .await
        .unwrap();
    assert_problem(response, 403).await;
    let response = app
        .bearer(Method::GET, "/links/export?format=xml", &ann.access)
        .send()
        .await
        .unwrap();
    assert_problem(response, 400).await;
    assert_unauthorized(app.get("/links/export").await).await;
}
