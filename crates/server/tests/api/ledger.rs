//! The ledger over HTTP: accounts, transfers, pending transfers, projected and strong reads,
//! the event feed, and idempotency keys on every money-moving POST.

use std::time::Duration;

use basis_auth::role::Role;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::accounts_support::{Account, PASSWORD};
use crate::helpers::{Engine, TestApp, assert_problem};
use crate::jobs_support::eventually;
use crate::on_both_engines;

on_both_engines!(
    accounts_open_list_and_read_for_their_owner_or_an_admin_only,
    transfers_move_money_and_refuse_bad_input_changing_nothing,
    pending_transfers_post_void_and_time_out_exactly_once,
    projected_reads_converge_and_the_feed_is_for_admins,
    a_retry_replays_the_first_response_and_keys_last_a_day,
    fifty_concurrent_identical_posts_make_one_transfer,
);

/// A request as `who`, with an optional idempotency key and JSON body.
async fn call(
    app: &TestApp,
    who: &Account,
    method: Method,
    path: &str,
    key: Option<&str>,
    body: Option<Value>,
) -> reqwest::Response {
    let mut request = app.bearer(method, path, &who.access);
    if let Some(key) = key {
        request = request.header("idempotency-key", key);
    }
    if let Some(body) = body {
        request = request.json(&body);
    }
    request.send().await.expect("a response")
}

/// Asserts `status` and returns the JSON body.
async fn expect(response: reqwest::Response, status: u16) -> Value {
    assert_eq!(response.status(), status, "{:?}", response.text().await);
    response.json().await.expect("a JSON body")
}

/// Opens an account in `currency` for `who`, returning its id.
async fn open(app: &TestApp, who: &Account, currency: &str) -> i64 {
    let body = json!({"currency": currency, "name": "main"});
    let account = expect(
        call(app, who, Method::POST, "/accounts", None, Some(body)).await,
        201,
    )
    .await;
    account["id"].as_i64().expect("an id")
}

/// Deposits `amount` into `account` as the admin.
async fn deposit(app: &TestApp, admin: &Account, account: i64, amount: i64) -> Value {
    let key = format!("deposit-{account}-{amount}-{}", rand::random::<u32>());
    let path = format!("/accounts/{account}/deposits");
    let response = call(
        app,
        admin,
        Method::POST,
        &path,
        Some(&key),
        Some(json!({"amount": amount})),
    )
    .await;
    expect(response, 201).await
}

/// The write side's balance of `account`.
async fn strong_balance(app: &TestApp, who: &Account, account: i64) -> (i64, i64) {
    let path = format!("/accounts/{account}?consistency=strong");
    let body = expect(call(app, who, Method::GET, &path, None, None).await, 200).await;
    (
        body["balance"].as_i64().unwrap(),
        body["pending"].as_i64().unwrap(),
    )
}

/// Moves money as `who`; returns the response.
async fn transfer(app: &TestApp, who: &Account, key: &str, body: Value) -> reqwest::Response {
    call(app, who, Method::POST, "/transfers", Some(key), Some(body)).await
}

/// Asserts a 422 naming `field`.
async fn refused(response: reqwest::Response, field: &str) {
    let problem = assert_problem(response, 422).await;
    assert_eq!(problem["errors"][0]["field"], field, "{problem}");
}

async fn accounts_open_list_and_read_for_their_owner_or_an_admin_only(engine: Engine) {
    let app = TestApp::spawn(&engine).await;
    let alice = app.account("alice@example.com").await;
    let bob = app.account("bob@example.com").await;
    let admin = app
        .account_with_role("admin@example.com", Role::Admin)
        .await;

    let response = call(
        &app,
        &alice,
        Method::POST,
        "/accounts",
        None,
        Some(json!({"currency": "USD"})),
    )
    .await;
    let location = response.headers()["location"].to_str().unwrap().to_owned();
    let created = expect(response, 201).await;
    assert_eq!(location, format!("/accounts/{}", created["id"]));
    assert_eq!(
        (created["balance"].as_i64(), created["pending"].as_i64()),
        (Some(0), Some(0))
    );
    assert_eq!(created["version"], 1);
    assert!(created["createdAt"].is_string());
    for bad in [json!({"currency": "usd"}), json!({"currency": "USX"})] {
        refused(
            call(&app, &alice, Method::POST, "/accounts", None, Some(bad)).await,
            "currency",
        )
        .await;
    }
    let anonymous = app
        .client
        .post(app.url("/accounts"))
        .json(&json!({"currency": "USD"}))
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.status(), 401);

    open(&app, &alice, "EUR").await;
    open(&app, &alice, "GBP").await;
    open(&app, &bob, "USD").await;
    let first = call(&app, &alice, Method::GET, "/accounts?limit=2", None, None).await;
    let link = first.headers()["link"].to_str().unwrap().to_owned();
    let first = expect(first, 200).await;
    assert_eq!(first["items"].as_array().unwrap().len(), 2);
    let cursor = first["nextCursor"].as_str().unwrap();
    assert_eq!(
        link,
        format!("</accounts?limit=2&cursor={cursor}>; rel=\"next\"")
    );
    let path = format!("/accounts?limit=2&cursor={cursor}");
    let second = expect(
        call(&app, &alice, Method::GET, &path, None, None).await,
        200,
    )
    .await;
    assert_eq!(
        second["items"].as_array().unwrap().len(),
        1,
        "only alice's three accounts"
    );
    assert!(second["nextCursor"].is_null());

    let own = format!("/accounts/{}", created["id"]);
    expect(call(&app, &alice, Method::GET, &own, None, None).await, 200).await;
    expect(call(&app, &admin, Method::GET, &own, None, None).await, 200).await;
    assert_problem(call(&app, &bob, Method::GET, &own, None, None).await, 404).await;
    assert_problem(
        call(&app, &alice, Method::GET, "/accounts/999999", None, None).await,
        404,
    )
    .await;
    assert_problem(
        call(&app, &alice, Method::GET, "/accounts/abc", None, None).await,
        404,
    )
    .await;
}

async fn transfers_move_money_and_refuse_bad_input_changing_nothing(engine: Engine) {
    let app = TestApp::spawn(&engine).await;
    let alice = app.account("alice@example.com").await;
    let bob = app.account("bob@example.com").await;
    let admin = app
        .account_with_role("admin@example.com", Role::Admin)
        .await;
    let a = open(&app, &alice, "USD").await;
    let b = open(&app, &bob, "USD").await;
    let b_eur = open(&app, &bob, "EUR").await;

    // Deposits: admins only, with a key.
    let path = format!("/accounts/{a}/deposits");
    let no_key = call(
        &app,
        &admin,
        Method::POST,
        &path,
        None,
        Some(json!({"amount": 1000})),
    )
    .await;
    assert_problem(no_key, 400).await;
    let long_key = "k".repeat(256);
    let response = call(
        &app,
        &admin,
        Method::POST,
        &path,
        Some(&long_key),
        Some(json!({"amount": 1000})),
    )
    .await;
    assert_problem(response, 400).await;
    let response = call(
        &app,
        &alice,
        Method::POST,
        &path,
        Some("d1"),
        Some(json!({"amount": 1000})),
    )
    .await;
    assert_problem(response, 403).await;
    let deposited = deposit(&app, &admin, a, 1000).await;
    assert_eq!(deposited["status"], "posted");
    assert_eq!(strong_balance(&app, &alice, a).await, (1000, 0));

    let body = json!({"from": a, "to": b, "amount": 300, "currency": "USD", "reference": "rent"});
    assert_problem(
        call(
            &app,
            &alice,
            Method::POST,
            "/transfers",
            None,
            Some(body.clone()),
        )
        .await,
        400,
    )
    .await;
    let response = transfer(&app, &alice, "t1", body).await;
    let location = response.headers()["location"].to_str().unwrap().to_owned();
    let moved = expect(response, 201).await;
    assert_eq!(location, format!("/transfers/{}", moved["id"]));
    assert_eq!(
        (moved["status"].as_str(), moved["amount"].as_i64()),
        (Some("posted"), Some(300))
    );
    assert_eq!(strong_balance(&app, &alice, a).await, (700, 0));
    assert_eq!(strong_balance(&app, &bob, b).await, (300, 0));

    // Every refusal names its field and changes nothing.
    let with = |amount: Value| json!({"from": a, "to": b, "amount": amount, "currency": "USD"});
    let big = serde_json::from_str::<Value>("9223372036854775808").unwrap();
    for (i, amount) in [
        json!(0),
        json!(-5),
        json!(1.5),
        json!("10"),
        json!(1e30),
        big,
    ]
    .into_iter()
    .enumerate()
    {
        refused(
            transfer(&app, &alice, &format!("bad{i}"), with(amount)).await,
            "amount",
        )
        .await;
    }
    refused(
        transfer(&app, &alice, "poor", with(json!(701))).await,
        "amount",
    )
    .await;
    let mismatch = json!({"from": a, "to": b_eur, "amount": 1, "currency": "USD"});
    refused(
        transfer(&app, &alice, "mismatch", mismatch).await,
        "currency",
    )
    .await;
    let same = json!({"from": a, "to": a, "amount": 1, "currency": "USD"});
    refused(transfer(&app, &alice, "same", same).await, "to").await;
    let unknown = json!({"from": a, "to": 999_999, "amount": 1, "currency": "USD"});
    assert_problem(transfer(&app, &alice, "unknown", unknown).await, 404).await;
    let foreign = json!({"from": b, "to": a, "amount": 1, "currency": "USD"});
    assert_problem(transfer(&app, &alice, "foreign", foreign).await, 404).await;
    assert_eq!(strong_balance(&app, &alice, a).await, (700, 0));
    assert_eq!(strong_balance(&app, &bob, b).await, (300, 0));

    // The transfer is visible to both sides and admins, nobody else.
    let carol = app.account("carol@example.com").await;
    for (who, status) in [(&alice, 200), (&bob, 200), (&admin, 200), (&carol, 404)] {
        assert_eq!(
            call(&app, who, Method::GET, &location, None, None)
                .await
                .status(),
            status
        );
    }
    // Entries: newest first, one line per posted transfer on each account.
    let entries = expect(
        call(
            &app,
            &alice,
            Method::GET,
            &format!("/accounts/{a}/entries"),
            None,
            None,
        )
        .await,
        200,
    )
    .await;
    let lines: Vec<(&str, i64)> = entries["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["side"].as_str().unwrap(), e["amount"].as_i64().unwrap()))
        .collect();
    assert_eq!(lines, [("debit", 300), ("credit", 1000)]);
    let path = format!("/accounts/{a}/entries?limit=1");
    let page = expect(
        call(&app, &alice, Method::GET, &path, None, None).await,
        200,
    )
    .await;
    assert!(page["nextCursor"].is_string());
    assert_problem(
        call(
            &app,
            &carol,
            Method::GET,
            &format!("/accounts/{a}/entries"),
            None,
            None,
        )
        .await,
        404,
    )
    .await;
}

async fn pending_transfers_post_void_and_time_out_exactly_once(engine: Engine) {
    let app = TestApp::spawn(&engine).await;
    let alice = app.account("alice@example.com").await;
    let bob = app.account("bob@example.com").await;
    let admin = app
        .account_with_role("admin@example.com", Role::Admin)
        .await;
    let a = open(&app, &alice, "USD").await;
    let b = open(&app, &bob, "USD").await;
    deposit(&app, &admin, a, 1000).await;
    let pending = |amount: i64, timeout: Option<i64>| {
        let mut body =
            json!({"from": a, "to": b, "amount": amount, "currency": "USD", "pending": true});
        if let Some(seconds) = timeout {
            body["timeoutSeconds"] = json!(seconds);
        }
        body
    };

    let held = expect(transfer(&app, &alice, "p1", pending(200, None)).await, 201).await;
    assert_eq!(held["status"], "pending");
    assert_eq!(strong_balance(&app, &alice, a).await, (1000, 200));
    // The reservation is not spendable.
    refused(
        transfer(&app, &alice, "p-too-much", pending(801, None)).await,
        "amount",
    )
    .await;

    let post = format!("/transfers/{}/post", held["id"]);
    refused(
        call(
            &app,
            &alice,
            Method::POST,
            &post,
            Some("post1-big"),
            Some(json!({"amount": 201})),
        )
        .await,
        "amount",
    )
    .await;
    assert_problem(
        call(
            &app,
            &alice,
            Method::POST,
            &post,
            None,
            Some(json!({"amount": 150})),
        )
        .await,
        400,
    )
    .await;
    let posted = expect(
        call(
            &app,
            &alice,
            Method::POST,
            &post,
            Some("post1"),
            Some(json!({"amount": 150})),
        )
        .await,
        200,
    )
    .await;
    assert_eq!(
        (posted["status"].as_str(), posted["postedAmount"].as_i64()),
        (Some("posted"), Some(150))
    );
    assert_eq!(strong_balance(&app, &alice, a).await, (850, 0));
    assert_eq!(strong_balance(&app, &bob, b).await, (150, 0));
    assert_problem(
        call(&app, &alice, Method::POST, &post, Some("post1-again"), None).await,
        409,
    )
    .await;
    let void = format!("/transfers/{}/void", held["id"]);
    assert_problem(
        call(&app, &alice, Method::POST, &void, Some("void-posted"), None).await,
        409,
    )
    .await;

    let second = expect(transfer(&app, &alice, "p2", pending(100, None)).await, 201).await;
    let void = format!("/transfers/{}/void", second["id"]);
    let voided = expect(
        call(&app, &alice, Method::POST, &void, Some("void2"), None).await,
        200,
    )
    .await;
    assert_eq!(voided["status"], "voided");
    assert_eq!(strong_balance(&app, &alice, a).await, (850, 0));

    // A timeout voids it once the clock passes it; the sweep is what the runner calls.
    refused(
        transfer(&app, &alice, "p3-bad", pending(50, Some(0))).await,
        "timeoutSeconds",
    )
    .await;
    let third = expect(
        transfer(&app, &alice, "p3", pending(50, Some(60))).await,
        201,
    )
    .await;
    assert_eq!(strong_balance(&app, &alice, a).await, (850, 50));
    app.clock.advance(Duration::from_secs(61));
    app.state.ledger.sweep().await.expect("a sweep");
    let path = format!("/transfers/{}", third["id"]);
    let expired = expect(
        call(&app, &alice, Method::GET, &path, None, None).await,
        200,
    )
    .await;
    assert_eq!(expired["status"], "voided");
    assert_eq!(strong_balance(&app, &alice, a).await, (850, 0));
    let post = format!("/transfers/{}/post", third["id"]);
    assert_problem(
        call(&app, &alice, Method::POST, &post, Some("late"), None).await,
        409,
    )
    .await;

    // Every movement is in the audit log.
    let audit = expect(
        call(
            &app,
            &admin,
            Method::GET,
            "/admin/audit?limit=100",
            None,
            None,
        )
        .await,
        200,
    )
    .await;
    let kinds: Vec<&str> = audit["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["kind"].as_str())
        .collect();
    for kind in [
        "ledger.deposit",
        "ledger.transfer",
        "ledger.transfer.post",
        "ledger.transfer.void",
    ] {
        assert!(kinds.contains(&kind), "{kind} missing from {kinds:?}");
    }
}

async fn projected_reads_converge_and_the_feed_is_for_admins(engine: Engine) {
    let app = TestApp::spawn(&engine).await;
    let alice = app.account("alice@example.com").await;
    let admin = app
        .account_with_role("admin@example.com", Role::Admin)
        .await;
    let a = open(&app, &alice, "USD").await;
    deposit(&app, &admin, a, 1000).await;
    // The write side has it at once.
    assert_eq!(strong_balance(&app, &alice, a).await, (1000, 0));
    // The read model follows (the runner is woken by the write), and says how far behind it is.
    let path = format!("/accounts/{a}");
    eventually("the projection to catch up", || async {
        let response = call(&app, &alice, Method::GET, &path, None, None).await;
        let lag = response
            .headers()
            .get("x-projection-lag")
            .and_then(|v| v.to_str().ok()?.parse::<i64>().ok());
        assert!(lag.is_some_and(|ms| ms >= 0), "X-Projection-Lag: {lag:?}");
        let body: Value = response.json().await.unwrap();
        (body["balance"] == 1000 && body["version"] == 2).then_some(())
    })
    .await;
    let bad = format!("/accounts/{a}?consistency=eventually");
    assert_problem(call(&app, &alice, Method::GET, &bad, None, None).await, 400).await;

    let feed = expect(
        call(
            &app,
            &admin,
            Method::GET,
            "/ledger/events?limit=1000",
            None,
            None,
        )
        .await,
        200,
    )
    .await;
    let kinds: Vec<&str> = feed["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["kind"].as_str())
        .collect();
    assert!(
        kinds.contains(&"AccountOpened") && kinds.contains(&"TransferPosted"),
        "{kinds:?}"
    );
    let next = feed["next"].as_str().unwrap();
    let rest = expect(
        call(
            &app,
            &admin,
            Method::GET,
            &format!("/ledger/events?after={next}"),
            None,
            None,
        )
        .await,
        200,
    )
    .await;
    assert_eq!(rest["items"], json!([]));
    assert_eq!(rest["next"], next);
    assert_problem(
        call(
            &app,
            &admin,
            Method::GET,
            "/ledger/events?after=x",
            None,
            None,
        )
        .await,
        400,
    )
    .await;
    assert_problem(
        call(&app, &alice, Method::GET, "/ledger/events", None, None).await,
        403,
    )
    .await;
}

async fn a_retry_replays_the_first_response_and_keys_last_a_day(engine: Engine) {
    let app = TestApp::spawn(&engine).await;
    let mut alice = app.account("alice@example.com").await;
    let bob = app.account("bob@example.com").await;
    let admin = app
        .account_with_role("admin@example.com", Role::Admin)
        .await;
    let a = open(&app, &alice, "USD").await;
    let b = open(&app, &bob, "USD").await;
    deposit(&app, &admin, a, 1000).await;
    let body = json!({"from": a, "to": b, "amount": 10, "currency": "USD"});

    let first = transfer(&app, &alice, "key-1", body.clone()).await;
    let (status, location) = (first.status(), first.headers()["location"].clone());
    let bytes = first.bytes().await.unwrap();
    let again = transfer(&app, &alice, "key-1", body.clone()).await;
    assert_eq!(again.status(), status);
    assert_eq!(again.headers()["location"], location);
    assert_eq!(again.bytes().await.unwrap(), bytes, "byte for byte");
    assert_eq!(
        strong_balance(&app, &alice, a).await,
        (990, 0),
        "one transfer"
    );
    let metrics = app.get("/metrics").await.text().await.unwrap();
    assert!(
        metrics.contains("idempotent_replays_total"),
        "the replay is counted"
    );

    // Another payload under the same key is refused; so is the key while its first use runs.
    let other = json!({"from": a, "to": b, "amount": 11, "currency": "USD"});
    assert_problem(transfer(&app, &alice, "key-1", other.clone()).await, 422).await;
    let now = app.state.clock.now_ms();
    let running = basis_server::idempotency::fingerprint("/transfers", body.to_string().as_bytes());
    basis_store::idempotency::claim(
        &app.state.store,
        &alice.id,
        "key-2",
        &running,
        now,
        now + 60_000,
    )
    .await
    .unwrap();
    assert_problem(transfer(&app, &alice, "key-2", body.clone()).await, 409).await;
    // Keys are the caller's own: bob's key-1 is a different key.
    let bobs = json!({"from": b, "to": a, "amount": 1, "currency": "USD"});
    expect(transfer(&app, &bob, "key-1", bobs).await, 201).await;

    // Kept for 24 hours, then forgotten.
    app.clock.advance(Duration::from_secs(23 * 3600));
    alice.access = app.login_tokens(&alice.email, PASSWORD).await["accessToken"]
        .as_str()
        .unwrap()
        .into();
    assert_eq!(
        transfer(&app, &alice, "key-1", body.clone())
            .await
            .bytes()
            .await
            .unwrap(),
        bytes
    );
    app.clock.advance(Duration::from_secs(3600));
    alice.access = app.login_tokens(&alice.email, PASSWORD).await["accessToken"]
        .as_str()
        .unwrap()
        .into();
    let fresh = expect(transfer(&app, &alice, "key-1", other).await, 201).await;
    assert_ne!(fresh.to_string().as_bytes(), bytes.as_ref());
    assert_eq!(strong_balance(&app, &alice, a).await, (980, 0));
}

async fn fifty_concurrent_identical_posts_make_one_transfer(engine: Engine) {
    let app = TestApp::spawn(&engine).await;
    let alice = app.account("alice@example.com").await;
    let bob = app.account("bob@example.com").await;
    let admin = app
        .account_with_role("admin@example.com", Role::Admin)
        .await;
    let a = open(&app, &alice, "USD").await;
    let b = open(&app, &bob, "USD").await;
    deposit(&app, &admin, a, 1000).await;
    let body = json!({"from": a, "to": b, "amount": 7, "currency": "USD"});
    let mut attempts = tokio::task::JoinSet::new();
    for _ in 0..50 {
        let request = app
            .bearer(Method::POST, "/transfers", &alice.access)
            .header("idempotency-key", "the-one")
            .json(&body);
        attempts.spawn(async move {
            let response = request.send().await.expect("a response");
            (response.status(), response.text().await.expect("a body"))
        });
    }
    let outcomes = attempts.join_all().await;
    let created: Vec<&String> = outcomes
        .iter()
        .filter(|(s, _)| *s == StatusCode::CREATED)
        .map(|(_, b)| b)
        .collect();
    assert!(!created.is_empty());
    assert!(
        created.iter().all(|b| *b == created[0]),
        "every 201 is the same transfer"
    );
    for (status, text) in &outcomes {
        assert!(matches!(status.as_u16(), 201 | 409), "{status} {text}");
    }
    assert_eq!(strong_balance(&app, &alice, a).await, (993, 0));
    let entries = expect(
        call(
            &app,
            &bob,
            Method::GET,
            &format!("/accounts/{b}/entries"),
            None,
            None,
        )
        .await,
        200,
    )
    .await;
    assert_eq!(
        entries["items"].as_array().unwrap().len(),
        1,
        "exactly one transfer"
    );
}
