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
//! - This file: [`LedgerHandle`] (the ledger in the application state) and the background
//!   runner that keeps the read models caught up and voids timed-out pending transfers.
//!
//! Every money-moving POST needs an `Idempotency-Key` ([`crate::http::idempotency::required`]).
//! API keys get 403 here: no key scope covers money, so only a signed-in account acts.

use std::sync::Arc;
use std::time::Duration;

use basis_ledger::{Ledger, Projector};
use basis_store::Store;
use tokio::sync::{Notify, watch};

use crate::http::routes::Routes;
use crate::state::AppState;

pub mod accounts;
pub mod seats;
pub mod service;
pub mod transfers;
pub mod views;

/// Events applied per projection transaction.
const CATCH_UP_BATCH: i64 = 500;
/// Timed-out pending transfers voided per sweep.
const EXPIRE_BATCH: i64 = 200;
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

/// The server's clock, as the ledger's time source.
#[derive(Debug)]
struct LedgerClock(Arc<dyn crate::clock::Clock>);

impl basis_ledger::Clock for LedgerClock {
    fn now_ms(&self) -> i64 {
        self.0.now_ms()
    }
}

/// The ledger, its projector, and the bell that tells the runner a write happened.
#[derive(Debug, Clone)]
pub struct LedgerHandle {
    /// The write side.
    pub ledger: Ledger,
    /// The read models.
    pub projector: Projector,
    wake: Arc<Notify>,
}

impl LedgerHandle {
    /// The ledger on `store` (same database as everything else), its migrations applied.
    pub async fn open(store: &Store, clock: Arc<dyn crate::clock::Clock>) -> anyhow::Result<Self> {
        let ledger = Ledger::new(store.clone(), Arc::new(LedgerClock(clock)));
        ledger
            .install()
            .await
            .map_err(|e| anyhow::anyhow!("cannot migrate the ledger's tables: {e}"))?;
        Ok(Self {
            projector: Projector::new(ledger.clone()),
            ledger,
            wake: Arc::new(Notify::new()),
        })
    }

    /// Tells the runner that the feed grew, so the read models follow at once.
    pub fn written(&self) {
        self.wake.notify_one();
    }

    /// One round of upkeep: voids due pending transfers, then applies every new event to the
    /// read models. Returns (transfers expired, events projected).
    pub async fn sweep(&self) -> basis_ledger::Result<(usize, usize)> {
        let expired = self.ledger.expire_due(EXPIRE_BATCH).await?;
        let projected = self.projector.catch_up_all(CATCH_UP_BATCH).await?;
        Ok((expired, projected))
    }
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
            () = handle.wake.notified() => {}
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
