//! A small shop and its checkout: products, orders, and the orchestrated saga that turns an
//! order into reserved stock, a captured payment and a confirmation mail, or undoes every
//! step it took. No HTTP of its own except the payment provider simulator's (a separate
//! service by design: the saga must meet real network failures).
//!
//! # Where things are
//!
//! - [`Shop`] (this file, `catalog.rs`): products and orders, validated and stored in one
//!   transaction with the order's saga row, so an accepted order always has a saga.
//! - [`saga`]: the checkout saga as a persisted state machine ([`saga::Checkout`]), its steps
//!   and compensations, leases, backoff and the `stuck` parking; the operator's retry and
//!   compensate.
//! - [`payments`]: the provider as the saga sees it ([`payments::PaymentsClient`], HTTP with
//!   timeouts and idempotency keys) and the simulator ([`payments::sim`]) that
//!   `basis payments-sim` serves, which authorizes, captures and refunds with the ledger's
//!   pending transfers and fails, lags or hangs on demand.
//! - [`model`]: the values and [`Error`].
//! - `migrations/<engine>/`: the tables (versions from 3001) and the invariants they enforce.
//!
//! # How the saga moves money, and why not through the server's ledger handle
//!
//! The saga never touches the ledger itself: money moves only through the payment provider,
//! over HTTP, as it would with a real one. The simulator, being the provider, is the one
//! that calls `basis-ledger` directly (a pending transfer from the buyer's account to the
//! shop's on authorize, a post on capture, a void or a reverse transfer on cancel). So the
//! shop crate depends on the ledger crate, not on the server, and the server's shop resource
//! never imports its ledger resource: the only shared piece is the `Ledger` value. The shop
//! reads the ledger only to check, before accepting an order, that the paying account
//! exists, belongs to the buyer and is in the order's currency.
//!
//! # Storage
//!
//! Like the ledger and the queue, the shop sits on a [`basis_store::Store`] and keeps its
//! own sqlx migrator (versions from 3001, `ignore_missing`) in the same database. Every
//! write transaction on SQLite begins with `BEGIN IMMEDIATE` on the store's single writer;
//! on PostgreSQL the invariants rest on conditional updates (`stock = stock - q WHERE
//! stock >= q`, `WHERE lease_token = $n`) and the CHECKs of the schema.
//!
//! # Metrics
//!
//! `shop_sagas_total{outcome}` (completed, compensated, stuck), `shop_saga_steps_total{step,
//! action, outcome}`, `shop_compensations_total{step}`, and the gauge
//! `shop_sagas{status, step}` set by [`saga::Checkout::refresh_gauges`].

pub mod catalog;
pub mod model;
pub mod payments;
pub mod saga;

use std::sync::Arc;

use basis_store::{Pools, Store};

pub use basis_clock::{Clock, ManualClock, SystemClock};
pub use model::{
    Error, LogEntry, NewProduct, Order, OrderItem, OrderRequest, OrderStatus, Product,
    ProductPatch, Saga,
};

/// Shorthand for shop results.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Runs `$body` inside a write transaction named `$tx` on the store's engine (`BEGIN
/// IMMEDIATE` on SQLite), committing when the body yields a value. An early `return` or
/// `?` drops the transaction, which rolls it back.
#[macro_export]
#[doc(hidden)]
macro_rules! in_tx {
    ($store:expr, $tx:ident => $body:expr) => {{
        let store: &basis_store::Store = &$store;
        let _span = basis_store::db_span!(store, "write");
        match store.pools() {
            basis_store::Pools::Sqlite { write, .. } => {
                let mut $tx = write.begin_with("BEGIN IMMEDIATE").await?;
                let out = $body;
                $tx.commit().await?;
                out
            }
            basis_store::Pools::Postgres { write, .. } => {
                let mut $tx = write.begin().await?;
                let out = $body;
                $tx.commit().await?;
                out
            }
        }
    }};
}

/// The shop over a store. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Shop {
    store: Store,
    clock: Arc<dyn Clock>,
    ledger: basis_ledger::Ledger,
}

impl Shop {
    /// A shop on `ledger`'s store and clock. Call [`Shop::install`] once.
    pub fn new(ledger: basis_ledger::Ledger) -> Self {
        Self {
            store: ledger.store().clone(),
            clock: ledger.clock().clone(),
            ledger,
        }
    }

    /// Creates or updates the shop's tables (its own migrations, versions from 3001).
    pub async fn install(&self) -> Result<()> {
        // Confirmed and cancelled orders are announced through the store's outbox.
        basis_store::outbox::install(&self.store).await?;
        let result = match self.store.pools() {
            Pools::Sqlite { write, .. } => {
                let mut migrator = sqlx::migrate!("migrations/sqlite");
                migrator.set_ignore_missing(true);
                migrator.run(write).await
            }
            Pools::Postgres { write, .. } => {
                let mut migrator = sqlx::migrate!("migrations/postgres");
                migrator.set_ignore_missing(true);
                migrator.run(write).await
            }
        };
        result.map_err(|e| Error::Store(e.into()))
    }

    /// The store under the shop.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The ledger the shop's money lives in.
    pub fn ledger(&self) -> &basis_ledger::Ledger {
        &self.ledger
    }

    /// The clock.
    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.clock
    }

    /// The shop's own account in `currency` (opened on first use, owned by no user): where
    /// buyers' payments go.
    pub async fn shop_account(&self, currency: &basis_ledger::Currency) -> Result<i64> {
        let name = format!("shop:{}", currency.as_str());
        let found: Option<i64> = basis_store::on_pool!(self.store, write, pool => {
            sqlx::query_scalar(
                "SELECT id FROM ledger_accounts WHERE owner_id IS NULL AND name = $1 \
                 AND currency = $2 ORDER BY id LIMIT 1",
            )
            .bind(&name)
            .bind(currency.as_str())
            .fetch_optional(pool)
            .await
        })?;
        if let Some(id) = found {
            return Ok(id);
        }
        // Two first checkouts may both open one; the lowest id wins for everyone after.
        self.ledger
            .open_account(&basis_ledger::NewAccount {
                currency: currency.clone(),
                name: Some(name),
                owner_id: None,
                allow_overdraft: false,
            })
            .await?;
        let id: i64 = basis_store::on_pool!(self.store, write, pool => {
            sqlx::query_scalar(
                "SELECT id FROM ledger_accounts WHERE owner_id IS NULL AND name = $1 \
                 AND currency = $2 ORDER BY id LIMIT 1",
            )
            .bind(format!("shop:{}", currency.as_str()))
            .bind(currency.as_str())
            .fetch_one(pool)
            .await
        })?;
        Ok(id)
    }
}
