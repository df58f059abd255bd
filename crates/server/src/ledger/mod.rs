//! The ledger over HTTP (issue 20): accounts, transfers, deposits, entries and the event feed,
//! on top of `basis-ledger`, which holds the rules that keep money whole and all the SQL.
//!
//! - [`accounts`]: `POST|GET /accounts`, `GET /accounts/{id}` (projected or `?consistency=strong`),
//!   `GET /accounts/{id}/entries`, `POST /accounts/{id}/deposits` (admins).
//! - [`transfers`]: `POST /transfers`, `GET /transfers/{id}`, `POST /transfers/{id}/post|void`,
//!   `GET /ledger/events` (admins).
//! - [`seats`]: `POST /events` (admins), `GET /events/{id}`, `POST /events/{id}/bookings`
//!   (201, or 409 once sold out).
//! - [`service`]: who may see and move what, the amount rules, the mapping of ledger errors to
//!   statuses, and the audit record of every money movement.
//! - [`views`]: the JSON shapes.
//! - [`handle`]: the ledger in the application state; this file: the background
//!   runner that keeps the read models caught up and voids timed-out pending transfers.
//!
//! Every money-moving POST needs an `Idempotency-Key` ([`crate::http::idempotency::required`]).
//! API keys get 403 here: no key scope covers money, so only a signed-in account acts.

use std::time::Duration;

use tokio::sync::watch;

use crate::http::routes::Routes;
use crate::state::AppState;

pub mod accounts;
pub mod handle;
pub mod seats;
pub mod service;
pub mod transfers;
pub mod views;

/// How often the runner sweeps even when no write woke it.
const SWEEP_EVERY: Duration = Duration::from_secs(1);

/// The ledger's routes.
pub fn router() -> Routes<AppState> {
    Routes::new()
        .post("/accounts", accounts::create)
        .get("/accounts", accounts::list)
        .get("/accounts/{id}", accounts::read)
        .get("/accounts/{id}/entries", accounts::entries)
        .post("/accounts/{id}/deposits", accounts::deposit)
        .post("/transfers", transfers::create)
        .get("/transfers/{id}", transfers::read)
        .post("/transfers/{id}/post", transfers::post)
        .post("/transfers/{id}/void", transfers::void)
        .get("/ledger/events", transfers::events)
        .post("/events", seats::create)
        .get("/events/{id}", seats::read)
        .post("/events/{id}/bookings", seats::book)
}

/// Keeps the read models caught up (woken by every write, and every second) and voids
/// timed-out pending transfers, until told to stop. Several processes may run it: the
/// projector's checkpoints are locked, and a transfer resolves once.
pub async fn run_periodically(state: AppState, mut stop: watch::Receiver<bool>) {
    let handle = state.ledger.clone();
    let mut ticks = tokio::time::interval(SWEEP_EVERY);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticks.tick() => {}
            () = handle.woken() => {}
            _ = stop.changed() => return,
        }
        match handle.sweep().await {
            Ok((0, _)) => {}
            Ok((expired, _)) => {
                let detail = format!("{expired} pending transfers timed out");
                service::audit_system(&state, "ledger.transfers_expired", &detail).await;
            }
            Err(err) => tracing::warn!(error = %err, "ledger upkeep failed; will retry"),
        }
    }
}
