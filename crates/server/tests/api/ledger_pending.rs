//! The ledger over HTTP: pending transfers, timeouts, the audit log, projected and strong
//! reads, and the event feed.

use std::time::Duration;

use basis_auth::role::Role;
use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::{Engine, TestApp, assert_problem};
use crate::jobs_support::eventually;
use crate::ledger_support::{call, deposit, expect, open, refused, strong_balance, transfer};
use crate::on_both_engines;

on_both_engines!(
    pending_transfers_post_void_and_time_out_exactly_once,
    projected_reads_converge_and_the_feed_is_for_admins,
);

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

    // A timeout voids it once the clock passes it; `expire` is what the runner calls each tick.
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
    app.state.ledger.expire().await.expect("a sweep");
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
