//! Helpers for the ledger's HTTP tests: requests as a user, accounts, deposits, balances.

use reqwest::Method;
use serde_json::{Value, json};

use crate::accounts_support::Account;
use crate::helpers::{TestApp, assert_problem};

/// A request as `who`, with an optional idempotency key and JSON body.
pub async fn call(
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
pub async fn expect(response: reqwest::Response, status: u16) -> Value {
    assert_eq!(response.status(), status, "{:?}", response.text().await);
    response.json().await.expect("a JSON body")
}

/// Opens an account in `currency` for `who`, returning its id.
pub async fn open(app: &TestApp, who: &Account, currency: &str) -> i64 {
    let body = json!({"currency": currency, "name": "main"});
    let account = expect(
        call(app, who, Method::POST, "/accounts", None, Some(body)).await,
        201,
    )
    .await;
    account["id"].as_i64().expect("an id")
}

/// Deposits `amount` into `account` as the admin.
pub async fn deposit(app: &TestApp, admin: &Account, account: i64, amount: i64) -> Value {
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
pub async fn strong_balance(app: &TestApp, who: &Account, account: i64) -> (i64, i64) {
    let path = format!("/accounts/{account}?consistency=strong");
    let body = expect(call(app, who, Method::GET, &path, None, None).await, 200).await;
    (
        body["balance"].as_i64().unwrap(),
        body["pending"].as_i64().unwrap(),
    )
}

/// Moves money as `who`; returns the response.
pub async fn transfer(app: &TestApp, who: &Account, key: &str, body: Value) -> reqwest::Response {
    call(app, who, Method::POST, "/transfers", Some(key), Some(body)).await
}

/// Asserts a 422 naming `field`.
pub async fn refused(response: reqwest::Response, field: &str) {
    let problem = assert_problem(response, 422).await;
    assert_eq!(problem["errors"][0]["field"], field, "{problem}");
}
