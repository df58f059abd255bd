//! The ledger over HTTP: accounts, transfers and the refusals of bad input.

use basis_auth::role::Role;
use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::{Engine, TestApp, assert_problem};
use crate::ledger_support::{call, deposit, expect, open, refused, strong_balance, transfer};
use crate::on_both_engines;

on_both_engines!(
    accounts_open_list_and_read_for_their_owner_or_an_admin_only,
    transfers_move_money_and_refuse_bad_input_changing_nothing,
    the_ledger_s_metrics_count_transfers_retries_replays_and_projection,
);

/// The value of the first `/metrics` series starting with `series` (name and labels).
fn metric(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find(|line| line.starts_with(series))
        .and_then(|line| line.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

async fn the_ledger_s_metrics_count_transfers_retries_replays_and_projection(engine: Engine) {
    let app = TestApp::spawn(&engine).await;
    let alice = app.account("alice@example.com").await;
    let bob = app.account("bob@example.com").await;
    let admin = app
        .account_with_role("admin@example.com", Role::Admin)
        .await;
    let a = open(&app, &alice, "USD").await;
    let b = open(&app, &bob, "USD").await;
    let text = app.get("/metrics").await.text().await.unwrap();
    for series in [
        "ledger_transfers_total{status=\"posted\"}",
        "ledger_transfers_total{status=\"expired\"}",
        "ledger_retries_total",
        "ledger_projection_jobs_total{outcome=\"coalesced\"}",
    ] {
        assert!(
            metric(&text, series).is_some(),
            "{series} is served from the start"
        );
    }
    let posted_before = metric(&text, "ledger_transfers_total{status=\"posted\"}").unwrap();
    deposit(&app, &admin, a, 100).await;
    let body = json!({"from": a, "to": b, "amount": 5, "currency": "USD"});
    expect(transfer(&app, &alice, "m-1", body.clone()).await, 201).await;
    expect(transfer(&app, &alice, "m-1", body).await, 201).await;
    let text = app.get("/metrics").await.text().await.unwrap();
    // Tests share the process's recorder, so counts only grow by at least ours.
    let posted = metric(&text, "ledger_transfers_total{status=\"posted\"}").unwrap();
    assert!(
        posted >= posted_before + 2.0,
        "a deposit and a transfer: {posted_before} → {posted}"
    );
    assert!(metric(&text, "idempotent_replays_total").unwrap_or(0.0) >= 1.0);
    assert!(
        metric(&text, "ledger_projection_jobs_total{outcome=\"enqueued\"}").unwrap_or(0.0) >= 1.0
    );
    // The projection job runs on the queue and reports what it applied and its lag.
    crate::jobs_support::eventually("the projection's metrics", || async {
        let text = app.get("/metrics").await.text().await.unwrap();
        (metric(
            &text,
            "ledger_projected_events_total{projection=\"balances\"}",
        )
        .is_some()
            && metric(&text, "ledger_projection_lag_ms").is_some())
        .then_some(())
    })
    .await;
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
    // API keys hold no scope that covers money.
    let key_path = format!("/users/{}/api-keys", alice.id);
    let key = app
        .bearer(Method::POST, &key_path, &alice.access)
        .json(&json!({"name": "script", "scopes": ["links:write", "profile:read"]}))
        .send()
        .await
        .unwrap();
    let key: Value = expect(key, 201).await;
    let with_key = app
        .client
        .get(app.url("/accounts"))
        .header("x-api-key", key["key"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert_problem(with_key, 403).await;
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
