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
//! - [`cross`]: transfers to another bank's ledger (`"to": "remote:42"`), by two-phase
//!   commit or saga, their flags and the loop that settles in-doubt ones.
//! - [`handle`]: the ledger in the application state; [`project`]: the queue job that
//!   catches the read models up; this file: the runner that enqueues it (after writes,
//!   coalesced, and on a safety tick) and voids timed-out pending transfers.
//!
//! Every money-moving POST needs an `Idempotency-Key` ([`crate::http::idempotency::required`]).
//! API keys get 403 here: no key scope covers money, so only a signed-in account acts.

use std::time::Duration;

use tokio::sync::watch;

use crate::http::routes::Routes;
use crate::state::AppState;

pub mod accounts;
pub mod cross;
pub mod handle;
pub mod project;
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

/// Enqueues the projection job when a write of this process rang the bell (at most once per
/// [`project::COALESCE`]) and every [`SWEEP_EVERY`] (for writes of processes that died
/// before they could), and voids timed-out pending transfers on each tick, until told to
/// stop. Several processes may run it: the queue coalesces projection jobs, the projector's
/// checkpoints are locked, and a transfer resolves once.
pub async fn run_periodically(state: AppState, mut stop: watch::Receiver<bool>) {
    let handle = state.ledger.clone();
    let mut ticks = tokio::time::interval(SWEEP_EVERY);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let tick = tokio::select! {
            _ = ticks.tick() => true,
            () = handle.woken() => false,
            _ = stop.changed() => return,
        };
        if tick {
            match handle.expire().await {
                Ok(0) => {}
                Ok(expired) => {
                    let detail = format!("{expired} pending transfers timed out");
                    service::audit_system(&state, "ledger.transfers_expired", &detail).await;
                }
                Err(err) => {
                    tracing::warn!(error = %err, "voiding timed-out transfers failed; will retry")
                }
            }
        }
        if let Err(err) = project::enqueue(&state.jobs, state.clock.now_ms()).await {
            tracing::warn!(error = %err, "cannot enqueue the ledger's projection; the next tick will");
        }
        if !tick {
            tokio::select! {
                () = tokio::time::sleep(project::COALESCE) => {}
                _ = stop.changed() => return,
            }
        }
    }
}
