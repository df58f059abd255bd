//! The shop over HTTP (issue 13): products, orders and the operators' view of the checkout
//! sagas, on top of `basis-shop`, which holds the saga, the payment provider simulator and
//! all the SQL.
//!
//! - [`products`]: `POST /products` and `PATCH /products/{id}` (admins), `GET /products`
//!   and `GET /products/{id}` (anyone).
//! - [`orders`]: `POST /orders` (202 + `Location`; `Idempotency-Key` required),
//!   `GET /orders/{id}` (buyer or admin) with the saga's steps.
//! - [`sagas`]: `GET /admin/sagas`, `POST /admin/sagas/{id}/retry|compensate` (admins).
//! - [`jobs`]: the queue jobs that advance sagas and send the confirmation mail.
//! - [`handle`]: the shop in the application state, the payment provider it talks to
//!   (`--payments-url`, or a simulator started in-process on a loopback port), and this
//!   file's runner, which hands due sagas to the queue when their job was lost.
//! - [`views`]: the JSON shapes and the mapping of shop errors to statuses.

use std::time::Duration;

use tokio::sync::watch;

use crate::http::routes::Routes;
use crate::state::AppState;

pub mod handle;
pub mod jobs;
pub mod orders;
pub mod products;
pub mod sagas;
pub mod views;

/// How often the runner looks for sagas whose job was lost, and refreshes the gauges.
const SWEEP_EVERY: Duration = Duration::from_secs(1);
/// Sagas handed to the queue per sweep.
const SWEEP_BATCH: i64 = 200;

/// The shop's routes.
pub fn router() -> Routes<AppState> {
    Routes::new()
        .post("/products", products::create)
        .get("/products", products::list)
        .get("/products/{id}", products::read)
        .patch("/products/{id}", products::patch)
        .post("/orders", orders::create)
        .get("/orders/{id}", orders::read)
        .get("/admin/sagas", sagas::list)
        .post("/admin/sagas/{id}/retry", sagas::retry)
        .post("/admin/sagas/{id}/compensate", sagas::compensate)
}

/// Hands due sagas to the queue (a job may be lost when a process dies between committing a
/// saga and enqueueing its next job; deduplication keys make the common case free) and
/// keeps the saga gauges current, until told to stop.
pub async fn run_periodically(state: AppState, mut stop: watch::Receiver<bool>) {
    let mut ticks = tokio::time::interval(SWEEP_EVERY);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticks.tick() => {}
            _ = stop.changed() => return,
        }
        if let Err(err) = state.shop.sweep(SWEEP_BATCH).await {
            tracing::warn!(error = %err, "saga sweep failed; will retry");
        }
    }
}
