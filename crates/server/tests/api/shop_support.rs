//! Helpers for the shop's HTTP tests: a shop with a funded buyer, products, orders followed
//! to their end.

use basis_auth::role::Role;
use reqwest::Method;
use serde_json::{Value, json};

use crate::accounts_support::Account;
use crate::helpers::{Engine, TestApp};
use crate::jobs_support::eventually;
use crate::ledger_support::{call, deposit, expect, open, strong_balance};

/// An app with an admin, a buyer holding `funds` USD in one account, and the shop's tweaks:
/// no backoff (tests never wait on the clock), `max_attempts` per step, short timeouts.
pub struct ShopFixture {
    pub app: TestApp,
    pub admin: Account,
    pub buyer: Account,
    pub wallet: i64,
}

impl ShopFixture {
    pub async fn new(engine: &Engine, funds: i64, max_attempts: u32) -> Self {
        Self::with_smtp(engine, funds, max_attempts, None).await
    }

    /// The same, with mail going to `smtp_url`.
    pub async fn with_smtp(
        engine: &Engine,
        funds: i64,
        max_attempts: u32,
        smtp_url: Option<String>,
    ) -> Self {
        let app = TestApp::spawn_with(engine, move |c| {
            c.shop.saga_backoff_ms = 0;
            c.shop.saga_max_attempts = max_attempts;
            c.shop.payments_timeout_ms = 300;
            c.auth.smtp_url = smtp_url;
        })
        .await;
        let admin = app
            .account_with_role("admin@example.com", Role::Admin)
            .await;
        let buyer = app.account("buyer@example.com").await;
        let wallet = open(&app, &buyer, "USD").await;
        if funds > 0 {
            deposit(&app, &admin, wallet, funds).await;
        }
        Self {
            app,
            admin,
            buyer,
            wallet,
        }
    }

    /// Adds a product as the admin; returns its id.
    pub async fn product(&self, name: &str, price: i64, stock: i64) -> i64 {
        let body = json!({"name": name, "price": price, "currency": "USD", "stock": stock});
        let p = expect(
            call(
                &self.app,
                &self.admin,
                Method::POST,
                "/products",
                None,
                Some(body),
            )
            .await,
            201,
        )
        .await;
        p["id"].as_i64().unwrap()
    }

    /// A product's stock now.
    pub async fn stock(&self, id: i64) -> i64 {
        let p = expect(
            call(
                &self.app,
                &self.buyer,
                Method::GET,
                &format!("/products/{id}"),
                None,
                None,
            )
            .await,
            200,
        )
        .await;
        p["stock"].as_i64().unwrap()
    }

    /// Places an order as the buyer (asserting 202 and `Location`); returns its id.
    pub async fn order(&self, key: &str, items: Value) -> i64 {
        let body = json!({"items": items, "paymentAccount": self.wallet});
        let response = call(
            &self.app,
            &self.buyer,
            Method::POST,
            "/orders",
            Some(key),
            Some(body),
        )
        .await;
        let location = response
            .headers()
            .get("location")
            .map(|l| l.to_str().unwrap().to_owned());
        let order = expect(response, 202).await;
        let id = order["id"].as_i64().unwrap();
        assert_eq!(location.as_deref(), Some(format!("/orders/{id}").as_str()));
        assert_eq!(order["status"], "pending");
        id
    }

    /// `GET /orders/{id}` as the buyer.
    pub async fn get(&self, id: i64) -> Value {
        expect(
            call(
                &self.app,
                &self.buyer,
                Method::GET,
                &format!("/orders/{id}"),
                None,
                None,
            )
            .await,
            200,
        )
        .await
    }

    /// Follows an order until its saga has finished (completed, compensated or stuck).
    pub async fn finished(&self, id: i64) -> Value {
        eventually("the saga to finish", || async {
            let order = self.get(id).await;
            matches!(
                order["sagaStatus"].as_str(),
                Some("completed" | "compensated" | "stuck")
            )
            .then_some(order)
        })
        .await
    }

    /// The buyer's (balance, pending).
    pub async fn wallet(&self) -> (i64, i64) {
        strong_balance(&self.app, &self.buyer, self.wallet).await
    }
}

/// The (step, action, outcome) of each logged attempt, as strings.
pub fn steps(order: &Value) -> Vec<(String, String, String)> {
    order["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["step"].as_str().unwrap().to_owned(),
                s["action"].as_str().unwrap().to_owned(),
                s["outcome"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

/// The steps that finished (`done`) in order, as `run:step` / `undo:step`.
pub fn done(order: &Value) -> Vec<String> {
    steps(order)
        .into_iter()
        .filter(|(_, _, o)| o == "done")
        .map(|(s, a, _)| format!("{}:{s}", if a == "run" { "run" } else { "undo" }))
        .collect()
}
