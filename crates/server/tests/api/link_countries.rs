//! Countries (`--geoip-db`): with a MaxMind-format database, a visit's country is in the
//! visit log and routing rules target countries; without one, countries stay unknown and
//! country targets are refused; a database that cannot be read stops the server.

use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use basis_server::clock::ManualClock;
use basis_server::{Config, Server};
use basis_testkit::mmdb::country_db;
use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::{Engine, TestApp, assert_problem};
use crate::on_both_engines;

on_both_engines!(
    a_visits_country_is_logged_and_country_targets_send_it_to_their_url,
    without_a_geoip_database_countries_stay_unknown_and_country_targets_are_422,
    a_missing_or_unreadable_geoip_database_stops_the_server_naming_the_file,
    behind_a_trusted_proxy_the_forwarded_client_is_the_visitor,
);

/// A database placing the test client (loopback) in `country`, and a documentation
/// network in Japan.
fn database_placing_loopback_in(country: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("countries.mmdb");
    let loopback: IpAddr = "127.0.0.0".parse().unwrap();
    let loopback6: IpAddr = "::1".parse().unwrap();
    let elsewhere: IpAddr = "198.51.100.0".parse().unwrap();
    std::fs::write(
        &path,
        country_db(&[
            (loopback, 8, country),
            (loopback6, 128, country),
            (elsewhere, 24, "JP"),
        ]),
    )
    .unwrap();
    (dir, path)
}

async fn shorten_as(app: &TestApp, token: &str, body: Value) -> reqwest::Response {
    app.bearer(Method::POST, "/shorten", token)
        .json(&body)
        .send()
        .await
        .unwrap()
}

fn targeting(countries: &[&str]) -> Value {
    let targets: Vec<Value> = countries
        .iter()
        .map(|c| json!({"country": c, "url": format!("https://example.com/{}", c.to_lowercase())}))
        .collect();
    json!({
        "longUrl": "https://example.com/elsewhere",
        "redirectType": 302,
        "rules": {"targets": targets},
    })
}

async fn location(app: &TestApp, code: &str) -> String {
    let response = app.follow(code).await;
    assert_eq!(response.status(), 302);
    response.headers()["location"].to_str().unwrap().to_owned()
}

async fn visit_countries(app: &TestApp, token: &str, path: &str) -> Vec<Value> {
    let response = app.bearer(Method::GET, path, token).send().await.unwrap();
    assert_eq!(response.status(), 200, "{path}");
    let page: Value = response.json().await.unwrap();
    page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["country"].clone())
        .collect()
}

async fn store_clicks(app: &TestApp) {
    app.state.clicks.flush().await.unwrap();
    assert!(app.state.clicks.drain(Duration::from_secs(10)).await);
}

async fn a_visits_country_is_logged_and_country_targets_send_it_to_their_url(engine: Engine) {
    let (_dir, db) = database_placing_loopback_in("FR");
    let app = TestApp::spawn_with(&engine, |c| {
        c.visit_log_days = Some(30);
        c.geoip_db = Some(db);
    })
    .await;
    let ann = app.account("ann@example.com").await;

    // The first matching target wins; codes are taken in either case and shown upper case.
    let french = shorten_as(&app, &ann.access, targeting(&["de", "fr", "FR"])).await;
    assert_eq!(french.status(), 201);
    let french: Value = french.json().await.unwrap();
    let code = french["shortCode"].as_str().unwrap().to_owned();
    assert_eq!(french["rules"]["targets"][0]["country"], "DE");
    assert_eq!(french["rules"]["targets"][1]["country"], "FR");
    assert_eq!(location(&app, &code).await, "https://example.com/fr");
    // A client naming another address is not believed: no proxy is trusted here.
    let spoofed = app
        .client
        .get(app.url(&format!("/{code}")))
        .header("x-forwarded-for", "198.51.100.7")
        .send()
        .await
        .unwrap();
    assert_eq!(spoofed.headers()["location"], "https://example.com/fr");
    // A link targeting other countries only sends the visitor to its own URL.
    let other: Value = shorten_as(&app, &ann.access, targeting(&["JP", "DE"]))
        .await
        .json()
        .await
        .unwrap();
    let other = other["shortCode"].as_str().unwrap().to_owned();
    assert_eq!(
        location(&app, &other).await,
        "https://example.com/elsewhere"
    );

    // Rules changed by PATCH are checked the same way.
    let patched = app
        .bearer(Method::PATCH, &format!("/links/{other}"), &ann.access)
        .header("content-type", "application/merge-patch+json")
        .body(json!({"rules": {"targets": [{"country": "fr", "url": "https://example.com/patched"}]}}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(patched.status(), 200);
    assert_eq!(location(&app, &other).await, "https://example.com/patched");

    store_clicks(&app).await;
    let path = format!("/links/{code}/visits");
    assert_eq!(
        visit_countries(&app, &ann.access, &path).await,
        ["FR", "FR"]
    );
    assert_eq!(
        visit_countries(&app, &ann.access, &format!("{path}?country=fr")).await,
        ["FR", "FR"]
    );
    assert!(
        visit_countries(&app, &ann.access, &format!("{path}?country=DE"))
            .await
            .is_empty()
    );
    let csv = app
        .bearer(Method::GET, &format!("{path}?format=csv"), &ann.access)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let row: Vec<&str> = csv.lines().nth(1).unwrap().split(',').collect();
    assert_eq!(row[4], "FR", "{csv}");

    let bad = app
        .bearer(Method::GET, &format!("{path}?country=FRA"), &ann.access)
        .send()
        .await
        .unwrap();
    let problem = assert_problem(bad, 400).await;
    assert_eq!(problem["errors"][0]["field"], "country", "{problem}");
    let bad = shorten_as(&app, &ann.access, targeting(&["F1"])).await;
    let problem = assert_problem(bad, 422).await;
    assert_eq!(
        problem["errors"][0]["field"], "rules.targets[0].country",
        "{problem}"
    );
}

async fn without_a_geoip_database_countries_stay_unknown_and_country_targets_are_422(
    engine: Engine,
) {
    let app = TestApp::spawn_with(&engine, |c| c.visit_log_days = Some(30)).await;
    let ann = app.account("ann@example.com").await;
    let refused = shorten_as(&app, &ann.access, targeting(&["FR"])).await;
    let problem = assert_problem(refused, 422).await;
    assert_eq!(
        problem["errors"][0]["field"], "rules.targets[0].country",
        "{problem}"
    );
    assert!(
        problem["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("--geoip-db"),
        "{problem}"
    );

    let code = app
        .create_as(&ann.access, "https://example.com/anywhere")
        .await;
    assert_eq!(app.follow(&code).await.status(), 301);
    store_clicks(&app).await;
    let countries = visit_countries(&app, &ann.access, &format!("/links/{code}/visits")).await;
    assert_eq!(countries, [Value::Null]);
}

async fn a_missing_or_unreadable_geoip_database_stops_the_server_naming_the_file(engine: Engine) {
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config::with_data_dir(dir.path());
    config.listen = "127.0.0.1:0".parse().unwrap();
    config.database_url = engine.fresh_database().await;
    let clock = Arc::new(ManualClock::starting_now());

    let missing = dir.path().join("missing.mmdb");
    config.geoip_db = Some(missing);
    let err = Server::build_with_clock(config.clone(), clock.clone())
        .await
        .expect_err("a missing database is refused");
    let text = format!("{err:#}");
    assert!(
        text.contains("cannot read the GeoIP database") && text.contains("missing.mmdb"),
        "{text}"
    );

    let garbage = dir.path().join("garbage.mmdb");
    std::fs::write(&garbage, "GeoIP? no: a text file").unwrap();
    config.geoip_db = Some(garbage);
    let err = Server::build_with_clock(config.clone(), clock.clone())
        .await
        .expect_err("a file that is no database is refused");
    let text = format!("{err:#}");
    assert!(
        text.contains("garbage.mmdb is not a usable GeoIP database"),
        "{text}"
    );

    let (_db_dir, good) = database_placing_loopback_in("FR");
    config.geoip_db = Some(good);
    Server::build_with_clock(config, clock)
        .await
        .expect("a good database is accepted");
}

async fn behind_a_trusted_proxy_the_forwarded_client_is_the_visitor(engine: Engine) {
    let (dir, db) = database_placing_loopback_in("FR");
    // The test client plays the proxy (a gateway in front of the server).
    let rules = dir.path().join("rate-limits.toml");
    std::fs::write(&rules, "trusted_proxies = [\"127.0.0.1\", \"::1\"]\n").unwrap();
    let app = TestApp::spawn_with(&engine, |c| {
        c.visit_log_days = Some(30);
        c.geoip_db = Some(db);
        c.rate_limit_config = Some(rules);
    })
    .await;
    let ann = app.account("ann@example.com").await;
    let link: Value = shorten_as(&app, &ann.access, targeting(&["JP", "FR"]))
        .await
        .json()
        .await
        .unwrap();
    let code = link["shortCode"].as_str().unwrap().to_owned();
    let forwarded = app
        .client
        .get(app.url(&format!("/{code}")))
        .header("x-forwarded-for", "198.51.100.7")
        .send()
        .await
        .unwrap();
    assert_eq!(forwarded.headers()["location"], "https://example.com/jp");
    // The proxy's own requests are its own.
    assert_eq!(location(&app, &code).await, "https://example.com/fr");

    store_clicks(&app).await;
    let response = app
        .bearer(Method::GET, &format!("/links/{code}/visits"), &ann.access)
        .send()
        .await
        .unwrap();
    let page: Value = response.json().await.unwrap();
    let seen: Vec<(Value, Value)> = page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| (v["country"].clone(), v["ip"].clone()))
        .collect();
    assert_eq!(
        seen,
        [
            (Value::from("FR"), Value::from("127.0.0.0")),
            (Value::from("JP"), Value::from("198.51.100.0")),
        ]
    );
}
