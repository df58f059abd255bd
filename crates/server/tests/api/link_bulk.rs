//! `POST /links/bulk`: up to 1,000 links per request as JSON or CSV, each item created or
//! refused on its own.

use reqwest::Method;
use serde_json::{Value, json};

use crate::accounts_support::assert_unauthorized;
use crate::helpers::{Engine, TestApp, assert_problem};
use crate::on_every_layout;

on_every_layout!(
    a_bulk_request_creates_what_it_can_and_says_why_the_rest_failed,
    a_csv_upload_creates_links_and_names_the_lines_that_failed,
    a_thousand_links_are_created_in_one_request_and_all_redirect,
    a_bulk_request_that_cannot_be_read_is_refused_whole,
);

async fn bulk(app: &TestApp, token: &str, content_type: &str, body: Vec<u8>) -> reqwest::Response {
    app.bearer(Method::POST, "/links/bulk", token)
        .header("content-type", content_type)
        .body(body)
        .send()
        .await
        .unwrap()
}

async fn a_bulk_request_creates_what_it_can_and_says_why_the_rest_failed(engine: Engine) {
    let app = TestApp::spawn(&engine).await;
    let ann = app.account("ann@example.com").await;
    app.create(json!({"longUrl": "https://example.com/old", "customAlias": "taken-one"}))
        .await;
    let items = json!([
        {"longUrl": "https://example.com/a", "tags": ["Bulk"]},
        {"longUrl": "ftp://example.com/b"},
        {"longUrl": "https://example.com/c", "customAlias": "taken-one"},
        {"longUrl": "https://example.com/d", "customAlias": "fresh-one"},
        {"longUrl": "https://example.com/e", "customAlias": "fresh-one"},
        "not an object",
        {"longUrl": "https://example.com/f", "reuse": true},
        {"longUrl": "https://example.com/g", "maxClicks": 2, "password": "open sesame"},
    ]);
    let response = bulk(
        &app,
        &ann.access,
        "application/json",
        items.to_string().into_bytes(),
    )
    .await;
    assert_eq!(response.status(), 207);
    let result: Value = response.json().await.unwrap();
    assert_eq!(result["created"], 3);
    assert_eq!(result["failed"], 5);
    let statuses: Vec<u64> = result["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["status"].as_u64().unwrap())
        .collect();
    assert_eq!(statuses, [201, 400, 409, 201, 409, 400, 400, 201]);
    let items = result["items"].as_array().unwrap();
    assert_eq!(items[1]["problem"]["errors"][0]["field"], "longUrl");
    assert_eq!(items[6]["problem"]["errors"][0]["field"], "reuse");
    assert_eq!(items[0]["link"]["tags"], json!(["bulk"]));
    assert_eq!(items[3]["link"]["shortCode"], "fresh-one");

    let code = items[0]["link"]["shortCode"].as_str().unwrap();
    let followed = app.follow(code).await;
    assert_eq!(followed.status(), 301);
    assert_eq!(followed.headers()["location"], "https://example.com/a");
    assert_eq!(
        app.follow("fresh-one").await.headers()["location"],
        "https://example.com/d"
    );
    let guarded = items[7]["link"]["shortCode"].as_str().unwrap();
    assert_eq!(app.follow(guarded).await.status(), 401);
    // They are the caller's.
    let listed: Value = app
        .bearer(Method::GET, "/links?tag=bulk", &ann.access)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(listed["items"][0]["shortCode"], code);
}

async fn a_csv_upload_creates_links_and_names_the_lines_that_failed(engine: Engine) {
    let app = TestApp::spawn(&engine).await;
    let ann = app.account("ann@example.com").await;
    let csv = "\u{feff}longUrl,customAlias,tags,maxClicks\r\n\
               https://example.com/1,csv-one,a|b,\r\n\
               \"https://example.com/2?x=1,2\",,,5\r\n\
               not a url,,,\r\n\
               https://example.com/4,,,\r\n\
               https://example.com/5,,,lots\r\n";
    let response = bulk(&app, &ann.access, "text/csv; charset=utf-8", csv.into()).await;
    assert_eq!(response.status(), 207);
    let result: Value = response.json().await.unwrap();
    assert_eq!(result["created"], 3, "{result}");
    let items = result["items"].as_array().unwrap();
    assert_eq!(items[0]["line"], 2);
    assert_eq!(items[0]["link"]["tags"], json!(["a", "b"]));
    assert_eq!(items[1]["link"]["longUrl"], "https://example.com/2?x=1,2");
    assert_eq!(items[1]["link"]["maxClicks"], 5);
    assert_eq!(
        (items[2]["line"].clone(), items[2]["status"].clone()),
        (json!(4), json!(400))
    );
    assert_eq!(items[4]["problem"]["errors"][0]["field"], "maxClicks");
    assert_eq!(app.follow("csv-one").await.status(), 301);

    let unknown = bulk(
        &app,
        &ann.access,
        "text/csv",
        b"longUrl,colour\nhttps://e.com/,red\n".to_vec(),
    )
    .await;
    let problem = assert_problem(unknown, 400).await;
    assert!(problem["detail"].as_str().unwrap().contains("colour"));
    let open_quote = bulk(
        &app,
        &ann.access,
        "text/csv",
        b"longUrl\n\"https://e.com/\n".to_vec(),
    )
    .await;
    assert!(
        assert_problem(open_quote, 400).await["detail"]
            .as_str()
            .unwrap()
            .starts_with("line 2")
    );
}

async fn a_thousand_links_are_created_in_one_request_and_all_redirect(engine: Engine) {
    let app = TestApp::spawn(&engine).await;
    let ann = app.account("ann@example.com").await;
    // About 150 KB: past the 64 KiB limit of other routes, within this route's 4 MiB.
    let padding = "p".repeat(120);
    let items: Vec<Value> = (0..1000)
        .map(|i| json!({"longUrl": format!("https://example.com/bulk/{i}?{padding}")}))
        .collect();
    let response = bulk(
        &app,
        &ann.access,
        "application/json",
        serde_json::to_vec(&items).unwrap(),
    )
    .await;
    assert_eq!(response.status(), 207);
    let result: Value = response.json().await.unwrap();
    assert_eq!(result["created"], 1000);
    let items = result["items"].as_array().unwrap();
    for i in [0, 499, 999] {
        let code = items[i]["link"]["shortCode"].as_str().unwrap();
        let followed = app.follow(code).await;
        let expected = format!("https://example.com/bulk/{i}?{padding}");
        assert_eq!(followed.headers()["location"], expected.as_str());
    }
    let page: Value = app
        .bearer(Method::GET, "/links?limit=100", &ann.access)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(page["items"].as_array().unwrap().len(), 100);

    let too_many: Vec<Value> = (0..1001)
        .map(|_| json!({"longUrl": "https://example.com/"}))
        .collect();
    let refused = bulk(
        &app,
        &ann.access,
        "application/json",
        serde_json::to_vec(&too_many).unwrap(),
    )
    .await;
    assert_problem(refused, 400).await;
}

async fn a_bulk_request_that_cannot_be_read_is_refused_whole(engine: Engine) {
    let app = TestApp::spawn(&engine).await;
    let ann = app.account("ann@example.com").await;
    let cases: [(&str, Vec<u8>, u16); 5] = [
        (
            "application/json",
            b"{\"longUrl\": \"https://e.com/\"}".to_vec(),
            400,
        ),
        ("application/json", b"[{".to_vec(), 400),
        ("application/json", b"[]".to_vec(), 400),
        ("text/plain", b"https://e.com/".to_vec(), 415),
        ("text/csv", vec![b'a'; 5 * 1024 * 1024], 413),
    ];
    for (content_type, body, status) in cases {
        assert_problem(bulk(&app, &ann.access, content_type, body).await, status).await;
    }
    let anonymous = app
        .client
        .post(app.url("/links/bulk"))
        .json(&json!([{"longUrl": "https://e.com/"}]))
        .send()
        .await
        .unwrap();
    assert_unauthorized(anonymous).await;
    // Nothing was created by the refused requests.
    let page: Value = app
        .bearer(Method::GET, "/links", &ann.access)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(page["items"], json!([]));
}
