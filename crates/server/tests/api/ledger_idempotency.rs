//! The ledger over HTTP: idempotency keys on money-moving POSTs, and the last seat.

use std::time::Duration;

use basis_auth::role::Role;
use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::accounts_support::PASSWORD;
use crate::helpers::{Engine, TestApp, assert_problem};
use crate::ledger_support::{call, deposit, expect, open, strong_balance, transfer};
use crate::on_both_engines;

on_both_engines!(
    a_retry_replays_the_first_response_and_keys_last_a_day,
    fifty_concurrent_identical_posts_make_one_transfer,
    the_last_seat_goes_to_exactly_one_of_a_hundred_buyers,
    a_claim_left_by_a_dead_process_is_taken_over_and_finds_the_transfer_it_made,
);

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
    let running =
        basis_server::http::idempotency::fingerprint("/transfers", body.to_string().as_bytes());
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
    // The stored response is gone, but a money key names one transfer for ever (as a
    // TigerBeetle transfer id does): another payload is refused, the same one finds it.
    assert_problem(transfer(&app, &alice, "key-1", other).await, 422).await;
    let first: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
    let again = expect(transfer(&app, &alice, "key-1", body).await, 201).await;
    assert_eq!(
        again["id"], first["id"],
        "the transfer the key made, not a new one"
    );
    assert_eq!(strong_balance(&app, &alice, a).await, (991, 0));
}

async fn a_claim_left_by_a_dead_process_is_taken_over_and_finds_the_transfer_it_made(
    engine: Engine,
) {
    let app = TestApp::spawn(&engine).await;
    let alice = app.account("alice@example.com").await;
    let bob = app.account("bob@example.com").await;
    let admin = app
        .account_with_role("admin@example.com", Role::Admin)
        .await;
    let a = open(&app, &alice, "USD").await;
    let b = open(&app, &bob, "USD").await;
    deposit(&app, &admin, a, 1000).await;
    let body = json!({"from": a, "to": b, "amount": 25, "currency": "USD"});
    let fingerprint =
        basis_server::http::idempotency::fingerprint("/transfers", body.to_string().as_bytes());
    let store = &app.state.store;
    let now = app.state.clock.now_ms();
    let ttl = basis_server::http::idempotency::TTL_MS;

    // "lost": claimed, then the process died before the transfer committed.
    basis_store::idempotency::claim(store, &alice.id, "lost", &fingerprint, now, now + ttl)
        .await
        .unwrap();
    // "made": claimed, the transfer committed, and the process died before storing the answer.
    basis_store::idempotency::claim(store, &alice.id, "made", &fingerprint, now, now + ttl)
        .await
        .unwrap();
    let usd = basis_ledger::Currency::parse("USD").unwrap();
    let made = app
        .state
        .ledger
        .ledger
        .transfer(
            &basis_ledger::TransferRequest::posted(a, b, 25, &usd)
                .once_for(format!("{}/made", alice.id)),
        )
        .await
        .unwrap();
    assert_eq!(strong_balance(&app, &alice, a).await, (975, 0));

    // While the first request could still be running, a retry is told to wait.
    for key in ["lost", "made"] {
        assert_problem(transfer(&app, &alice, key, body.clone()).await, 409).await;
    }
    // Past twice the request timeout, the claim is an orphan and the retry takes it over.
    let lease_ms = 2 * app.state.request_timeout_ms;
    app.clock
        .advance(Duration::from_millis(u64::try_from(lease_ms).unwrap() + 1));
    let found = expect(transfer(&app, &alice, "made", body.clone()).await, 201).await;
    assert_eq!(
        found["id"], made.id,
        "the retry answers with the transfer already made"
    );
    assert_eq!(
        strong_balance(&app, &alice, a).await,
        (975, 0),
        "not moved twice"
    );
    let redone = expect(transfer(&app, &alice, "lost", body.clone()).await, 201).await;
    assert_ne!(redone["id"], made.id);
    assert_eq!(
        strong_balance(&app, &alice, a).await,
        (950, 0),
        "the lost one moved once"
    );
    // Both keys are complete now: further retries replay.
    let replay = transfer(&app, &alice, "made", body.clone()).await;
    assert_eq!(replay.headers()["idempotent-replayed"], "true");
    assert_eq!(strong_balance(&app, &alice, a).await, (950, 0));
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

async fn the_last_seat_goes_to_exactly_one_of_a_hundred_buyers(engine: Engine) {
    let app = TestApp::spawn(&engine).await;
    let admin = app
        .account_with_role("admin@example.com", Role::Admin)
        .await;
    let buyer = app.account("buyer@example.com").await;
    let concert = json!({"name": "Concert", "seats": 2});
    assert_problem(
        call(
            &app,
            &buyer,
            Method::POST,
            "/events",
            None,
            Some(concert.clone()),
        )
        .await,
        403,
    )
    .await;
    for (bad, field) in [
        (json!({"name": "x", "seats": 0}), "seats"),
        (json!({"name": " ", "seats": 1}), "name"),
        (json!({"name": "x", "seats": 1.5}), "seats"),
    ] {
        let problem = assert_problem(
            call(&app, &admin, Method::POST, "/events", None, Some(bad)).await,
            422,
        )
        .await;
        assert_eq!(problem["errors"][0]["field"], field);
    }
    let response = call(&app, &admin, Method::POST, "/events", None, Some(concert)).await;
    let location = response.headers()["location"].to_str().unwrap().to_owned();
    let event = expect(response, 201).await;
    assert_eq!(location, format!("/events/{}", event["id"]));
    let bookings = format!("{location}/bookings");
    // Take one seat, so one is left for a hundred buyers at once.
    expect(
        call(&app, &buyer, Method::POST, &bookings, None, None).await,
        201,
    )
    .await;
    let mut buyers = tokio::task::JoinSet::new();
    for _ in 0..100 {
        let request = app.bearer(Method::POST, &bookings, &buyer.access);
        buyers.spawn(async move { request.send().await.expect("a response").status().as_u16() });
    }
    let mut statuses = buyers.join_all().await;
    statuses.sort_unstable();
    assert_eq!(
        statuses.iter().filter(|s| **s == 201).count(),
        1,
        "{statuses:?}"
    );
    assert_eq!(
        statuses.iter().filter(|s| **s == 409).count(),
        99,
        "{statuses:?}"
    );
    let now = expect(
        call(&app, &buyer, Method::GET, &location, None, None).await,
        200,
    )
    .await;
    assert_eq!(now["seatsLeft"], 0);
    assert_problem(
        call(
            &app,
            &buyer,
            Method::POST,
            "/events/999999/bookings",
            None,
            None,
        )
        .await,
        404,
    )
    .await;
}
