//! The visit log (`--visit-log-days`): individual visits written by the click worker,
//! listed and exported by the link's owner, pruned by age.

use std::time::Duration;

use reqwest::Method;
use serde_json::Value;

use crate::accounts_support::{PASSWORD, assert_unauthorized};
use crate::helpers::{CRAWLER, DESKTOP, Engine, PHONE, TestApp, assert_problem};
use crate::on_every_layout;

on_every_layout!(
    visits_are_written_by_the_click_worker_and_listed_newest_first_with_filters,
    the_csv_export_holds_every_visit_and_visits_past_their_days_are_pruned,
    the_visit_log_is_off_unless_configured,
);

async fn spawn_logging(engine: &Engine, days: u32) -> TestApp {
    TestApp::spawn_with(engine, |config| config.visit_log_days = Some(days)).await
}

async fn visit(app: &TestApp, code: &str, user_agent: &str, referer: Option<&str>) {
    let mut request = app
        .client
        .get(app.url(&format!("/{code}")))
        .header("user-agent", user_agent);
    if let Some(referer) = referer {
        request = request.header("referer", referer);
    }
    assert_eq!(request.send().await.unwrap().status(), 301);
}

async fn store_clicks(app: &TestApp) {
    app.state.clicks.flush().await.unwrap();
    assert!(app.state.clicks.drain(Duration::from_secs(10)).await);
}

async fn visits(app: &TestApp, token: &str, path: &str) -> (Value, Option<String>) {
    let response = app.bearer(Method::GET, path, token).send().await.unwrap();
    assert_eq!(response.status(), 200, "{path}");
    let link = response
        .headers()
        .get("link")
        .map(|v| v.to_str().unwrap().to_owned());
    (response.json().await.unwrap(), link)
}

fn field(page: &Value, name: &str) -> Vec<Value> {
    page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v[name].clone())
        .collect()
}

async fn visits_are_written_by_the_click_worker_and_listed_newest_first_with_filters(
    engine: Engine,
) {
    let app = spawn_logging(&engine, 30).await;
    let ann = app.account("ann@example.com").await;
    let code = app
        .create_as(&ann.access, "https://example.com/logged")
        .await;
    let path = format!("/links/{code}/visits");

    visit(&app, &code, DESKTOP, Some("https://news.example/story")).await;
    app.clock.advance(Duration::from_secs(60));
    visit(&app, &code, PHONE, None).await;
    app.clock.advance(Duration::from_secs(60));
    visit(&app, &code, CRAWLER, None).await;
    // Nothing is written on the redirect path: the visits wait for the click worker.
    let (before, _) = visits(&app, &ann.access, &path).await;
    assert_eq!(before["items"], serde_json::json!([]));
    store_clicks(&app).await;

    // Humans only by default, newest first, with their details.
    let (page, _) = visits(&app, &ann.access, &path).await;
    assert_eq!(field(&page, "device"), ["mobile", "desktop"]);
    // The test phone's user agent names no browser family.
    assert_eq!(field(&page, "browser"), ["other", "chrome"]);
    assert_eq!(
        field(&page, "referrer"),
        [Value::Null, Value::from("news.example")]
    );
    assert_eq!(field(&page, "bot"), [false, false]);
    // The client's address, cut to its /24.
    assert_eq!(field(&page, "ip"), ["127.0.0.0", "127.0.0.0"]);
    let at = field(&page, "at");
    let times: Vec<&str> = at.iter().map(|t| t.as_str().unwrap()).collect();
    assert!(times[0] > times[1], "newest first: {times:?}");

    let (bots, _) = visits(&app, &ann.access, &format!("{path}?bots=only")).await;
    assert_eq!(field(&bots, "device"), ["bot"]);
    assert_eq!(field(&bots, "bot"), [true]);
    let (all, _) = visits(&app, &ann.access, &format!("{path}?bots=include")).await;
    assert_eq!(all["items"].as_array().unwrap().len(), 3);
    let (mobile, _) = visits(&app, &ann.access, &format!("{path}?device=mobile")).await;
    assert_eq!(field(&mobile, "browser"), ["other"]);
    let (chrome, _) = visits(&app, &ann.access, &format!("{path}?browser=chrome")).await;
    assert_eq!(field(&chrome, "device"), ["desktop"]);
    let (referred, _) = visits(&app, &ann.access, &format!("{path}?referrer=news.example")).await;
    assert_eq!(field(&referred, "device"), ["desktop"]);
    let since = (app.clock_now() - chrono::Duration::seconds(90)).to_rfc3339();
    let (recent, _) = visits(
        &app,
        &ann.access,
        &format!("{path}?bots=include&since={}", urlencode(&since)),
    )
    .await;
    assert_eq!(field(&recent, "device"), ["bot", "mobile"]);
    let (older, _) = visits(
        &app,
        &ann.access,
        &format!("{path}?until={}", urlencode(&since)),
    )
    .await;
    assert_eq!(field(&older, "device"), ["desktop"]);

    // Cursor pages, with a Link header to the next one.
    let (first, link) = visits(&app, &ann.access, &format!("{path}?bots=include&limit=2")).await;
    assert_eq!(field(&first, "device"), ["bot", "mobile"]);
    let cursor = first["nextCursor"].as_str().unwrap();
    assert!(link.unwrap().contains("rel=\"next\""));
    let (second, link) = visits(
        &app,
        &ann.access,
        &format!("{path}?bots=include&limit=2&cursor={cursor}"),
    )
    .await;
    assert_eq!(field(&second, "device"), ["desktop"]);
    assert_eq!(second["nextCursor"], Value::Null);
    assert!(link.is_none());

    // Bad filters are named; other people's links are not found; anonymous callers 401.
    for bad in [
        "device=toaster",
        "since=yesterday",
        "bots=maybe",
        "limit=0",
        "cursor=%21%21",
        "format=xml",
    ] {
        let response = app
            .bearer(Method::GET, &format!("{path}?{bad}"), &ann.access)
            .send()
            .await
            .unwrap();
        assert_problem(response, 400).await;
    }
    let bob = app.account("bob@example.com").await;
    let response = app
        .bearer(Method::GET, &path, &bob.access)
        .send()
        .await
        .unwrap();
    assert_problem(response, 404).await;
    assert_unauthorized(app.get(&path).await).await;
}

fn urlencode(text: &str) -> String {
    url::form_urlencoded::byte_serialize(text.as_bytes()).collect()
}

async fn the_csv_export_holds_every_visit_and_visits_past_their_days_are_pruned(engine: Engine) {
    let app = spawn_logging(&engine, 2).await;
    let ann = app.account("ann@example.com").await;
    let code = app
        .create_as(&ann.access, "https://example.com/pruned")
        .await;
    let path = format!("/links/{code}/visits");
    visit(&app, &code, DESKTOP, Some("https://a.example/")).await;
    visit(&app, &code, CRAWLER, None).await;
    app.clock.advance(Duration::from_secs(86_400));
    visit(&app, &code, PHONE, None).await;
    store_clicks(&app).await;
    // A day on, the first access token has expired: sign in again.
    let access = fresh_token(&app).await;

    // CSV by Accept or by format, bots excluded unless asked for.
    let response = app
        .bearer(Method::GET, &path, &access)
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
    assert_eq!(lines[0], "time,referrer,device,browser,country,bot,ip");
    assert_eq!(lines.len(), 3, "{csv}");
    assert!(lines[1].contains(",mobile,other,,false,127.0.0.0"), "{csv}");
    assert!(lines[2].contains(",a.example,desktop,chrome,"), "{csv}");
    // Compressed, the stream still ends cleanly with the same rows.
    let packed = app
        .bearer(Method::GET, &format!("{path}?format=csv"), &access)
        .header("accept-encoding", "gzip")
        .send()
        .await
        .unwrap();
    assert_eq!(packed.headers()["content-encoding"], "gzip");
    let packed = packed.bytes().await.expect("the whole compressed body");
    let unpacked = String::from_utf8(crate::compression::decode("gzip", &packed)).unwrap();
    assert_eq!(unpacked, csv);
    let with_bots = app
        .bearer(
            Method::GET,
            &format!("{path}?format=csv&bots=include"),
            &access,
        )
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(with_bots.lines().count(), 4);
    assert!(with_bots.contains(",bot,other,,true,"));

    // Two days and a bit after the first visits, the pruning job deletes them (and only them).
    app.clock.advance(Duration::from_secs(86_400 + 3_600));
    let pruned = basis_server::links::visits::prune(&app.state)
        .await
        .unwrap();
    assert_eq!(pruned, 2);
    let access = fresh_token(&app).await;
    let (left, _) = visits(&app, &access, &format!("{path}?bots=include")).await;
    assert_eq!(field(&left, "device"), ["mobile"]);
    assert_eq!(
        basis_server::links::visits::prune(&app.state)
            .await
            .unwrap(),
        0
    );
    // A link with logged visits can still be deleted: they go with it.
    let response = app
        .bearer(Method::DELETE, &format!("/links/{code}"), &access)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 204);
}

async fn fresh_token(app: &TestApp) -> String {
    app.login_tokens("ann@example.com", PASSWORD).await["accessToken"]
        .as_str()
        .unwrap()
        .to_owned()
}

async fn the_visit_log_is_off_unless_configured(engine: Engine) {
    let app = TestApp::spawn(&engine).await;
    assert!(!app.state.clicks.logs_visits());
    let ann = app.account("ann@example.com").await;
    let code = app
        .create_as(&ann.access, "https://example.com/unlogged")
        .await;
    visit(&app, &code, DESKTOP, None).await;
    store_clicks(&app).await;
    let response = app
        .bearer(Method::GET, &format!("/links/{code}/visits"), &ann.access)
        .send()
        .await
        .unwrap();
    let problem = assert_problem(response, 409).await;
    assert!(
        problem["detail"]
            .as_str()
            .unwrap()
            .contains("visit-log-days")
    );
    // The click is counted all the same.
    let link: Value = app
        .bearer(Method::GET, &format!("/links/{code}"), &ann.access)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(link["clickCount"], 1);
    assert_eq!(
        basis_server::links::visits::prune(&app.state)
            .await
            .unwrap(),
        0
    );
}
