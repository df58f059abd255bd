//! The ledger: double-entry accounts and transfers that never lose or invent money, an
//! event-sourced history per account, and read models projected from the event feed.
//!
//! # Where things are
//!
//! - [`Ledger`] (this file): the commands (open, transfer, post, void, expire) and the
//!   strong reads of the write side; each command is one transaction, retried when the
//!   database reports a lost race.
//! - [`model`]: [`Currency`], [`Account`], [`Transfer`], [`TransferRequest`], [`Error`].
//! - `write`: the SQL of the commands, instantiated once per engine.
//! - [`events`]: [`Event`], the global feed's [`Position`] and why it has two parts.
//! - [`projection`]: [`Projector`], the read models (balances, entry lists, per-day totals)
//!   with their checkpoints, `rebuild` and the read models' hash.
//! - [`cross`]: transfers to another bank's ledger (a second PostgreSQL database), as a
//!   saga or by two-phase commit; [`twopc`]: the 2PC coordinator, its decision log and the
//!   recovery of in-doubt transactions.
//! - [`seats`]: events with seats and bookings, the last seat going to exactly one buyer.
//! - [`demo`]: the guide's isolation anomalies (lost update, last seat), shown and prevented.
//! - [`Clock`] (from `basis-clock`): the injected time source (pending timeouts, event stamps).
//! - `migrations/<engine>/`: the schema, where the invariants are enforced (see its header).
//!
//! # Why it sits on `basis-store` and keeps its own migrations
//!
//! The ledger takes a [`basis_store::Store`] for what the store already does well: one URL
//! for both engines, SQLite's single-writer pool (every write transaction here begins with
//! `BEGIN IMMEDIATE` on that one connection, so SQLite never has to upgrade a read lock and
//! fail with `SQLITE_BUSY`), the read pool for projections. It keeps its tables and SQL to
//! itself, like `basis-queue`: its own sqlx migrator (versions from 2001) in the same
//! database, sharing `_sqlx_migrations` with `ignore_missing`, so the store needs no change
//! to host it and the ledger can be read, tested and removed as one piece.
//!
//! # Concurrency
//!
//! PostgreSQL runs at READ COMMITTED with `SELECT … FOR UPDATE` on both accounts of a
//! command, lower id first: two transfers touching the same accounts queue behind each other
//! instead of deadlocking, and checks made under the lock stay true until commit. Should the
//! database still report a serialization failure (40001), a deadlock (40P01) or a stream
//! version taken by a concurrent append, the whole transaction runs again (counted in
//! `ledger_retries_total`).
//!
//! # Metrics
//!
//! `ledger_transfers_total{status}` (posted, pending, voided, expired),
//! `ledger_retries_total`, `ledger_projected_events_total{projection}` and
//! `ledger_projection_lag_ms` (set by every [`Projector::catch_up`]).

pub mod cross;
pub mod demo;
pub mod events;
pub mod model;
pub mod projection;
pub mod seats;
pub mod twopc;
mod write;

use std::sync::Arc;

use basis_store::{Pools, Store};

pub use basis_clock::{Clock, ManualClock, SystemClock};
pub use cross::{
    AccountRef, CrashPoint, CrossError, CrossLedger, CrossRequest, CrossTransfer, Direction, Hold,
    Mode,
};
pub use events::{Event, EventKind, Position};
pub use model::{
    Account, Currency, Entry, Error, NewAccount, Transfer, TransferRequest, TransferStatus,
};
pub use projection::Projector;
pub use write::TRANSFER_POSTED;

use write::Resolution;

/// Shorthand for ledger results.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// How many times a command that lost a race is run again before the error is returned.
const MAX_ATTEMPTS: u32 = 10;

/// Runs `write::<engine>::$f(conn, args…)` in a write transaction on the store's engine,
/// committing on success and running it again when [`Error::is_retryable`].
macro_rules! write_tx {
    ($ledger:expr, $f:ident ( $($arg:expr),* )) => {{
        let ledger: &Ledger = $ledger;
        let _span = basis_store::db_span!(ledger.store, "write");
        // The caller's next reads wait for a replica that has this write (read-your-writes).
        ledger.store.note_write();
        let mut attempt = 1;
        loop {
            let result: Result<_> = match ledger.store.pools() {
                Pools::Sqlite { write, .. } => async {
                    let mut tx = write.begin_with("BEGIN IMMEDIATE").await?;
                    let out = write::sqlite::$f(&mut tx, $($arg),*).await?;
                    tx.commit().await?;
                    Ok(out)
                }.await,
                Pools::Postgres { write, .. } => async {
                    let mut tx = write.begin().await?;
                    let out = write::postgres::$f(&mut tx, $($arg),*).await?;
                    tx.commit().await?;
                    Ok(out)
                }.await,
            };
            match result {
                Err(err) if err.is_retryable() && attempt < MAX_ATTEMPTS => {
                    attempt += 1;
                    metrics::counter!("ledger_retries_total").increment(1);
                    tracing::debug!(%err, attempt, "ledger command lost a race; running it again");
                }
                other => break other,
            }
        }
    }};
}

/// The ledger over a store. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Ledger {
    store: Store,
    clock: Arc<dyn Clock>,
}

impl Ledger {
    /// A ledger on `store`, stamping events with `clock`. Call [`Ledger::install`] once.
    pub fn new(store: Store, clock: Arc<dyn Clock>) -> Self {
        Self { store, clock }
    }

    /// Creates or updates the ledger's tables (its own migrations, versions from 2001).
    pub async fn install(&self) -> Result<()> {
        // Posted transfers are announced through the store's outbox (see `write.rs`).
        basis_store::outbox::install(&self.store)
            .await
            .map_err(Error::Store)?;
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

    /// The store under this ledger.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The clock stamping this ledger's events.
    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.clock
    }

    /// Opens an account (balance 0) and its event stream.
    pub async fn open_account(&self, new: &NewAccount) -> Result<Account> {
        let now = self.clock.now_ms();
        write_tx!(self, open_account(now, new))
    }

    /// The funding account of `currency`, opened on first use: money enters the ledger as a
    /// transfer out of it (its balance goes negative by what was deposited).
    pub async fn funding_account(&self, currency: &Currency) -> Result<Account> {
        let now = self.clock.now_ms();
        write_tx!(self, funding_account(now, currency.as_str()))
    }

    /// Deposits `amount` into `account` from its currency's funding account.
    pub async fn deposit(
        &self,
        account: i64,
        amount: i64,
        currency: &Currency,
    ) -> Result<Transfer> {
        self.deposit_once(account, amount, currency, None).await
    }

    /// [`Ledger::deposit`], made at most once for `request_key` when one is given (see
    /// [`TransferRequest::request_key`]).
    pub async fn deposit_once(
        &self,
        account: i64,
        amount: i64,
        currency: &Currency,
        request_key: Option<String>,
    ) -> Result<Transfer> {
        let funding = self.funding_account(currency).await?;
        let mut request = TransferRequest::posted(funding.id, account, amount, currency);
        request.request_key = request_key;
        self.transfer(&request).await
    }

    /// Moves money (or reserves it, for a pending transfer).
    pub async fn transfer(&self, req: &TransferRequest) -> Result<Transfer> {
        req.validate()?;
        let now = self.clock.now_ms();
        let (t, new) = write_tx!(self, transfer(now, req))?;
        if new {
            metrics::counter!("ledger_transfers_total", "status" => t.status.as_str()).increment(1);
        }
        Ok(t)
    }

    /// Posts a pending transfer: all it reserved, or the smaller `amount`.
    pub async fn post(&self, transfer: i64, amount: Option<i64>) -> Result<Transfer> {
        self.resolve(transfer, Resolution::Post(amount)).await
    }

    /// Voids a pending transfer, releasing what it reserved.
    pub async fn void(&self, transfer: i64) -> Result<Transfer> {
        self.resolve(transfer, Resolution::Void).await
    }

    async fn resolve(&self, transfer: i64, how: Resolution) -> Result<Transfer> {
        let now = self.clock.now_ms();
        let t = write_tx!(self, resolve(now, transfer, how))?;
        let outcome = match how {
            Resolution::Post(_) => "posted",
            Resolution::Void => "voided",
            Resolution::Expire => "expired",
        };
        metrics::counter!("ledger_transfers_total", "status" => outcome).increment(1);
        Ok(t)
    }

    /// Voids up to `limit` pending transfers whose timeout has passed, each in its own
    /// transaction; returns how many it voided. A post or void that wins the race is fine.
    pub async fn expire_due(&self, limit: i64) -> Result<usize> {
        let now = self.clock.now_ms();
        let due: Vec<i64> = basis_store::on_pool!(self.store, write, pool => {
            sqlx::query_scalar(
                "SELECT id FROM ledger_transfers WHERE status = 'pending' AND timeout_at <= $1 \
                 ORDER BY timeout_at, id LIMIT $2",
            )
            .bind(now)
            .bind(limit)
            .fetch_all(pool)
            .await
        })?;
        let mut expired = 0;
        for id in due {
            match self.resolve(id, Resolution::Expire).await {
                Ok(_) => expired += 1,
                Err(Error::NotPending { .. }) => {}
                Err(err) => return Err(err),
            }
        }
        Ok(expired)
    }

    /// An account as the write side has it now (the strong read).
    pub async fn account(&self, id: i64) -> Result<Account> {
        let found: Option<Account> = basis_store::on_pool!(self.store, read, pool => {
            sqlx::query_as("SELECT * FROM ledger_accounts WHERE id = $1")
                .bind(id)
                .fetch_optional(pool)
                .await
        })?;
        found.ok_or(Error::AccountNotFound(id))
    }

    /// A transfer.
    pub async fn transfer_by_id(&self, id: i64) -> Result<Transfer> {
        let found: Option<Transfer> = basis_store::on_pool!(self.store, read, pool => {
            sqlx::query_as("SELECT * FROM ledger_transfers WHERE id = $1")
                .bind(id)
                .fetch_optional(pool)
                .await
        })?;
        found.ok_or(Error::TransferNotFound(id))
    }

    /// The oldest transfer carrying `reference` (migration 2005 indexes it): how a caller
    /// that creates transfers idempotently finds the one it may already have made.
    pub async fn transfer_by_reference(&self, reference: &str) -> Result<Option<Transfer>> {
        Ok(basis_store::on_pool!(self.store, write, pool => {
            sqlx::query_as("SELECT * FROM ledger_transfers WHERE reference = $1 ORDER BY id LIMIT 1")
                .bind(reference)
                .fetch_optional(pool)
                .await
        })?)
    }

    /// The accounts of `owner`, by id after `after`, at most `limit`.
    pub async fn accounts_of(&self, owner: &str, after: i64, limit: i64) -> Result<Vec<Account>> {
        Ok(basis_store::on_pool!(self.store, read, pool => {
            sqlx::query_as(
                "SELECT * FROM ledger_accounts WHERE owner_id = $1 AND id > $2 ORDER BY id LIMIT $3",
            )
            .bind(owner)
            .bind(after)
            .bind(limit)
            .fetch_all(pool)
            .await
        })?)
    }

    /// The entry lines of an account, newest first, with ids below `before`.
    pub async fn entries(&self, account: i64, before: i64, limit: i64) -> Result<Vec<Entry>> {
        Ok(basis_store::on_pool!(self.store, read, pool => {
            sqlx::query_as(
                "SELECT id, transfer_id, account_id, side, amount, created_at FROM ledger_entries \
                 WHERE account_id = $1 AND id < $2 ORDER BY id DESC LIMIT $3",
            )
            .bind(account)
            .bind(before)
            .bind(limit)
            .fetch_all(pool)
            .await
        })?)
    }

    /// Up to `limit` events of the global feed after `after`, in feed order.
    pub async fn events_after(&self, after: Position, limit: i64) -> Result<Vec<Event>> {
        // The write pool: on PostgreSQL the feed's horizon must be the primary's.
        Ok(match self.store.pools() {
            Pools::Sqlite { read, .. } => {
                sqlx::query_as(events::FEED_SQLITE)
                    .bind(after.tx)
                    .bind(after.seq)
                    .bind(limit)
                    .fetch_all(read)
                    .await?
            }
            Pools::Postgres { write, .. } => {
                sqlx::query_as(events::FEED_POSTGRES)
                    .bind(after.tx)
                    .bind(after.seq)
                    .bind(limit)
                    .fetch_all(write)
                    .await?
            }
        })
    }

    /// The events of one account's stream, in version order.
    pub async fn stream(&self, account: i64) -> Result<Vec<Event>> {
        Ok(basis_store::on_pool!(self.store, read, pool => {
            sqlx::query_as("SELECT * FROM ledger_events WHERE account_id = $1 ORDER BY version")
                .bind(account)
                .fetch_all(pool)
                .await
        })?)
    }
}
