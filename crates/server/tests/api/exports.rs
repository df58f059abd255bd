//! Click exports: a job writes the CSV, its result links to it, and only the link's owner
//! (or an admin) can start one or download it.

use reqwest::Method;
use serde_json::{Value, json};

use crate::accounts_support::assert_unauthorized;
use crate::helpers::{CRAWLER, Engine, PHONE, TestApp, assert_problem};
use crate::on_every_layout;

on_every_layout!(
    an_export_job_serves_the_link_s_clicks_as_csv_to_its_owner,
    nobody_but_the_owner_or_an_admin_can_export_or_download,
);

async fn owned_link(app: &TestApp, token: &str) -> String {
    app.create_as(token, "https://example.com/export").await
}

async fn start_export(app: &TestApp, code: &str, token: &str) -> reqwest::Response {
    app.bearer(Method::POST, &format!("/links/{code}/exports"), token)
        .send()
        .await
        .unwrap()
}

async fn an_export_job_serves_the_link_s_clicks_as_csv_to_its_owner(engine: Engine) {
    let app = TestApp::spawn(&engine).await;
    let ann = app.account("ann@example.com").await;
    let code = owned_link(&app, &ann.access).await;
    for _ in 0..3 {
        assert_eq!(app.follow(&code).await.status(), 301);
    }
    let referred = app
        .client
        .get(app.url(&format!("/{code}")))
        .header("user-agent", PHONE)
        .header("referer", "https://news.example/item")
        .send()
        .await
        .unwrap();
    assert_eq!(referred.status(), 301);
    let crawl = app
        .client
        .get(app.url(&format!("/{code}")))
        .header("user-agent", CRAWLER)
        .send()
        .await
        .unwrap();
    assert_eq!(crawl.status(), 301);
    app.state.clicks.flush().await.unwrap();
    assert!(
        app.state
            .clicks
            .drain(std::time::Duration::from_secs(20))
            .await
    );

    let response = start_export(&app, &code, &ann.access).await;
    assert_eq!(response.status(), 202);
    let id = response.json::<Value>().await.unwrap()["jobId"]
        .as_str()
        .unwrap()
        .to_owned();
    let done = app.finished_job(&id, &ann.access).await;
    assert_eq!(done["status"], "done", "{done}");
    assert_eq!(done["kind"], "links.export");
    let url = done["result"]["downloadUrl"].as_str().unwrap().to_owned();
    assert_eq!(url, format!("/links/{code}/exports/{id}"));

    let response = app
        .bearer(Method::GET, &url, &ann.access)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.headers()["content-type"],
        "text/csv; charset=utf-8"
    );
    assert!(
        response.headers()["content-disposition"]
            .to_str()
            .unwrap()
            .starts_with("attachment")
    );
    let csv = response.text().await.unwrap();
    let today = app.clock_now().format("%Y-%m-%d").to_string();
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines[0], "dimension,key,clicks,bot_clicks");
    assert!(
        lines.contains(&format!("day,{today},4,1").as_str()),
        "{csv}"
    );
    assert!(lines.contains(&"referrer,news.example,1,"), "{csv}");
    assert!(lines.contains(&"device,desktop,3,"), "{csv}");
    assert!(lines.contains(&"device,mobile,1,"), "{csv}");
    assert!(lines.contains(&"device,bot,1,"), "{csv}");
    assert_eq!(done["result"]["rows"], lines.len() as u64 - 1);
}

async fn nobody_but_the_owner_or_an_admin_can_export_or_download(engine: Engine) {
    let app = TestApp::spawn(&engine).await;
    let ann = app.account("ann@example.com").await;
    let bob = app.account("bob@example.com").await;
    let admin = app
        .account_with_role("root@example.com", basis_auth::role::Role::Admin)
        .await;
    let code = owned_link(&app, &ann.access).await;

    assert_problem(start_export(&app, &code, &bob.access).await, 404).await;
    let anonymous = app
        .client
        .post(app.url(&format!("/links/{code}/exports")))
        .send()
        .await
        .unwrap();
    assert_unauthorized(anonymous).await;
    assert_problem(start_export(&app, "nosuchcode", &ann.access).await, 404).await;
    // A link made anonymously has no owner who could receive its export.
    let anonymous_link = app
        .create(json!({"longUrl": "https://example.com/anon"}))
        .await;
    let anonymous_code = anonymous_link["shortCode"].as_str().unwrap();
    assert_problem(start_export(&app, anonymous_code, &bob.access).await, 404).await;

    let response = start_export(&app, &code, &ann.access).await;
    let id = response.json::<Value>().await.unwrap()["jobId"]
        .as_str()
        .unwrap()
        .to_owned();
    let done = app.finished_job(&id, &ann.access).await;
    let url = done["result"]["downloadUrl"].as_str().unwrap().to_owned();
    let bobs = app
        .bearer(Method::GET, &url, &bob.access)
        .send()
        .await
        .unwrap();
    assert_problem(bobs, 404).await;
    let hidden = app
        .bearer(Method::GET, &format!("/jobs/{id}"), &bob.access)
        .send()
        .await
        .unwrap();
    assert_problem(hidden, 404).await;
    assert_unauthorized(app.get(&url).await).await;
    let admins = app
        .bearer(Method::GET, &url, &admin.access)
        .send()
        .await
        .unwrap();
    assert_eq!(admins.status(), 200);
    assert_eq!(app.job_status(&id, &admin.access).await["status"], "done");
    assert_problem(
        app.bearer(
            Method::GET,
            &format!("/links/{code}/exports/made-up"),
            &ann.access,
        )
        .send()
        .await
        .unwrap(),
        404,
    )
    .await;
}
