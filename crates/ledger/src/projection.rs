//! Read models (the query side of CQRS), projected from the global event feed.
//!
//! Three projections, each with its own checkpoint row in `ledger_checkpoints`:
//! - `balances`: one row per account (balance, pending debits and credits, version);
//! - `entries`: one row per posted transfer and account (what an account statement lists);
//! - `daily`: per day and currency, how many transfers posted and how much moved.
//!
//! [`Projector::catch_up`] advances each projection in its own transaction that reads the
//! checkpoint (locked on PostgreSQL, so two runners never apply one event twice), applies the
//! next events and moves the checkpoint: the read model and its checkpoint commit together, so
//! a crash anywhere leaves them consistent and the next call carries on. Any runner may call
//! it: a queue job, a loop, a test. [`Projector::rebuild`] empties the read models and replays
//! the whole feed; [`Projector::hash`] fingerprints the read models so a rebuild can be
//! compared with the live state.

use sha2::{Digest, Sha256};

use basis_store::{Pools, on_pool};

use crate::events::{self, Event, EventKind, Position};
use crate::{Ledger, Result};

/// The projections, by checkpoint name.
pub const PROJECTIONS: [&str; 3] = ["balances", "entries", "daily"];

/// A balance as the `balances` read model has it.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct ViewBalance {
    /// The account.
    pub account_id: i64,
    /// Its currency.
    pub currency: String,
    /// Posted credits minus debits.
    pub balance: i64,
    /// Reserved by pending debits.
    pub pending_debits: i64,
    /// Promised by pending credits.
    pub pending_credits: i64,
    /// The stream version projected so far.
    pub version: i64,
}

/// (balance, pending debits, pending credits) change an event makes to its account.
fn balance_delta(e: &Event) -> (i64, i64, i64) {
    let debit = e.side.as_deref() == Some("debit");
    match (e.kind, debit) {
        (EventKind::AccountOpened, _) => (0, 0, 0),
        (EventKind::TransferPending, true) => (0, e.amount, 0),
        (EventKind::TransferPending, false) => (0, 0, e.amount),
        (EventKind::TransferPosted, true) => (-e.amount, -e.released, 0),
        (EventKind::TransferPosted, false) => (e.amount, 0, -e.released),
        (EventKind::TransferVoided | EventKind::TransferExpired, true) => (0, -e.released, 0),
        (EventKind::TransferVoided | EventKind::TransferExpired, false) => (0, 0, -e.released),
    }
}

const DAY_MS: i64 = 86_400_000;

macro_rules! projection_ops {
    ($engine:ident, $Conn:ty, for_update = $for_update:literal, feed = $feed:expr) => {
        pub(crate) mod $engine {
            use super::*;

            /// Applies up to `limit` events to `projection` and moves its checkpoint.
            pub(crate) async fn advance(
                conn: &mut $Conn,
                projection: &str,
                limit: i64,
                now: i64,
            ) -> Result<usize> {
                let (tx, seq): (i64, i64) = sqlx::query_as(concat!(
                    "SELECT tx, seq FROM ledger_checkpoints WHERE projection = $1",
                    $for_update
                ))
                .bind(projection)
                .fetch_one(&mut *conn)
                .await?;
                let batch: Vec<Event> = sqlx::query_as($feed)
                    .bind(tx)
                    .bind(seq)
                    .bind(limit)
                    .fetch_all(&mut *conn)
                    .await?;
                let Some(last) = batch.last().map(Event::position) else {
                    return Ok(0);
                };
                for e in &batch {
                    apply(conn, projection, e).await?;
                }
                sqlx::query("UPDATE ledger_checkpoints SET tx = $1, seq = $2, at = $3 WHERE projection = $4")
                    .bind(last.tx)
                    .bind(last.seq)
                    .bind(now)
                    .bind(projection)
                    .execute(&mut *conn)
                    .await?;
                Ok(batch.len())
            }

            async fn apply(conn: &mut $Conn, projection: &str, e: &Event) -> Result<()> {
                let posted = e.kind == EventKind::TransferPosted;
                match projection {
                    "balances" if e.kind == EventKind::AccountOpened => {
                        sqlx::query(
                            "INSERT INTO ledger_view_balances (account_id, currency, balance, \
                             pending_debits, pending_credits, version) VALUES ($1, $2, 0, 0, 0, $3)",
                        )
                        .bind(e.account_id)
                        .bind(&e.currency)
                        .bind(e.version)
                        .execute(&mut *conn)
                        .await?;
                    }
                    "balances" => {
                        let (balance, debits, credits) = balance_delta(e);
                        sqlx::query(
                            "UPDATE ledger_view_balances SET balance = balance + $1, \
                             pending_debits = pending_debits + $2, pending_credits = pending_credits + $3, \
                             version = $4 WHERE account_id = $5",
                        )
                        .bind(balance)
                        .bind(debits)
                        .bind(credits)
                        .bind(e.version)
                        .bind(e.account_id)
                        .execute(&mut *conn)
                        .await?;
                    }
                    "entries" if posted => {
                        sqlx::query(
                            "INSERT INTO ledger_view_entries (account_id, seq, kind, transfer_id, side, \
                             counterparty_id, amount, at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
                        )
                        .bind(e.account_id)
                        .bind(e.seq)
                        .bind(e.kind.as_str())
                        .bind(e.transfer_id.unwrap_or_default())
                        .bind(e.side.as_deref().unwrap_or_default())
                        .bind(e.counterparty_id.unwrap_or_default())
                        .bind(e.amount)
                        .bind(e.at)
                        .execute(&mut *conn)
                        .await?;
                    }
                    // Each transfer is counted once, on its debit side.
                    "daily" if posted && e.side.as_deref() == Some("debit") => {
                        sqlx::query(
                            "INSERT INTO ledger_view_daily (day, currency, transfers, amount) \
                             VALUES ($1, $2, 1, $3) ON CONFLICT (day, currency) DO UPDATE SET \
                             transfers = ledger_view_daily.transfers + 1, \
                             amount = ledger_view_daily.amount + excluded.amount",
                        )
                        .bind(e.at.div_euclid(DAY_MS))
                        .bind(&e.currency)
                        .bind(e.amount)
                        .execute(&mut *conn)
                        .await?;
                    }
                    _ => {}
                }
                Ok(())
            }

            /// Empties `projection`'s read model and moves its checkpoint back to the start.
            pub(crate) async fn reset(conn: &mut $Conn, projection: &str, now: i64) -> Result<()> {
                let table = match projection {
                    "balances" => "DELETE FROM ledger_view_balances",
                    "entries" => "DELETE FROM ledger_view_entries",
                    _ => "DELETE FROM ledger_view_daily",
                };
                sqlx::query(table).execute(&mut *conn).await?;
                sqlx::query("UPDATE ledger_checkpoints SET tx = 0, seq = 0, at = $1 WHERE projection = $2")
                    .bind(now)
                    .bind(projection)
                    .execute(&mut *conn)
                    .await?;
                Ok(())
            }
        }
    };
}

projection_ops!(
    sqlite,
    sqlx::SqliteConnection,
    for_update = "",
    feed = events::FEED_SQLITE
);
projection_ops!(
    postgres,
    sqlx::PgConnection,
    for_update = " FOR UPDATE",
    feed = events::FEED_POSTGRES
);

/// Runs `<engine>::$f(conn, args…)` in one write transaction.
macro_rules! projection_tx {
    ($ledger:expr, $f:ident ( $($arg:expr),* )) => {{
        match $ledger.store().pools() {
            Pools::Sqlite { write, .. } => {
                let mut tx = write.begin_with("BEGIN IMMEDIATE").await?;
                let out = sqlite::$f(&mut tx, $($arg),*).await?;
                tx.commit().await?;
                out
            }
            Pools::Postgres { write, .. } => {
                let mut tx = write.begin().await?;
                let out = postgres::$f(&mut tx, $($arg),*).await?;
                tx.commit().await?;
                out
            }
        }
    }};
}

/// Keeps the read models up to date with the event feed.
#[derive(Debug, Clone)]
pub struct Projector {
    ledger: Ledger,
}

impl Projector {
    /// A projector for `ledger`'s read models.
    pub fn new(ledger: Ledger) -> Self {
        Self { ledger }
    }

    async fn ensure_checkpoints(&self) -> Result<()> {
        let now = self.ledger.clock().now_ms();
        for name in PROJECTIONS {
            on_pool!(self.ledger.store(), write, pool => {
                sqlx::query("INSERT INTO ledger_checkpoints (projection, tx, seq, at) VALUES ($1, 0, 0, $2) \
                             ON CONFLICT (projection) DO NOTHING")
                    .bind(name)
                    .bind(now)
                    .execute(pool)
                    .await
                    .map(drop)
            })?;
        }
        Ok(())
    }

    /// Applies up to `limit` new events to every projection, each projection in its own
    /// transaction; returns the most events any one of them applied (0: all caught up).
    pub async fn catch_up(&self, limit: i64) -> Result<usize> {
        self.ensure_checkpoints().await?;
        let now = self.ledger.clock().now_ms();
        let mut most = 0;
        for name in PROJECTIONS {
            let applied = projection_tx!(self.ledger, advance(name, limit, now));
            metrics::counter!("ledger_projected_events_total", "projection" => name)
                .increment(applied as u64);
            most = most.max(applied);
        }
        metrics::gauge!("ledger_projection_lag_ms").set(self.lag_ms().await? as f64);
        Ok(most)
    }

    /// Catches up until every projection has applied the whole feed visible now.
    pub async fn catch_up_all(&self, batch: i64) -> Result<usize> {
        let mut total = 0;
        loop {
            let applied = self.catch_up(batch).await?;
            if applied == 0 {
                return Ok(total);
            }
            total += applied;
        }
    }

    /// Empties every read model and replays the feed from the start.
    pub async fn rebuild(&self, batch: i64) -> Result<usize> {
        self.ensure_checkpoints().await?;
        let now = self.ledger.clock().now_ms();
        for name in PROJECTIONS {
            projection_tx!(self.ledger, reset(name, now));
        }
        self.catch_up_all(batch).await
    }

    /// The oldest checkpoint: every projection has applied the feed up to here.
    pub async fn position(&self) -> Result<Position> {
        self.ensure_checkpoints().await?;
        let (tx, seq): (i64, i64) = on_pool!(self.ledger.store(), read, pool => {
            sqlx::query_as("SELECT tx, seq FROM ledger_checkpoints ORDER BY tx, seq LIMIT 1")
                .fetch_one(pool)
                .await
        })?;
        Ok(Position { tx, seq })
    }

    /// How far the slowest projection trails the write side, in milliseconds: now minus the
    /// time of the oldest event it has not applied (0 when caught up).
    pub async fn lag_ms(&self) -> Result<i64> {
        let next = self.ledger.events_after(self.position().await?, 1).await?;
        let now = self.ledger.clock().now_ms();
        Ok(next.first().map_or(0, |e| (now - e.at).max(0)))
    }

    /// An account's balance as the `balances` read model has it.
    pub async fn balance(&self, account: i64) -> Result<Option<ViewBalance>> {
        Ok(on_pool!(self.ledger.store(), read, pool => {
            sqlx::query_as("SELECT * FROM ledger_view_balances WHERE account_id = $1")
                .bind(account)
                .fetch_optional(pool)
                .await
        })?)
    }

    /// Every row of the `balances` read model, by account.
    pub async fn balances(&self) -> Result<Vec<ViewBalance>> {
        Ok(on_pool!(self.ledger.store(), read, pool => {
            sqlx::query_as("SELECT * FROM ledger_view_balances ORDER BY account_id")
                .fetch_all(pool)
                .await
        })?)
    }

    /// SHA-256 over every row of every read model, in key order (hex).
    pub async fn hash(&self) -> Result<String> {
        type Line = (i64, i64, String, i64, String, i64, i64, i64);
        let store = self.ledger.store();
        let balances = self.balances().await?;
        let entries: Vec<Line> = on_pool!(store, read, pool => {
            sqlx::query_as("SELECT account_id, seq, kind, transfer_id, side, counterparty_id, amount, at \
                            FROM ledger_view_entries ORDER BY account_id, seq")
                .fetch_all(pool)
                .await
        })?;
        let daily: Vec<(i64, String, i64, i64)> = on_pool!(store, read, pool => {
            sqlx::query_as("SELECT day, currency, transfers, amount FROM ledger_view_daily ORDER BY day, currency")
                .fetch_all(pool)
                .await
        })?;
        let mut hasher = Sha256::new();
        for b in &balances {
            hasher.update(format!(
                "b|{}|{}|{}|{}|{}|{}\n",
                b.account_id, b.currency, b.balance, b.pending_debits, b.pending_credits, b.version
            ));
        }
        for e in &entries {
            hasher.update(format!("e|{e:?}\n"));
        }
        for d in &daily {
            hasher.update(format!("d|{d:?}\n"));
        }
        Ok(hasher
            .finalize()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect())
    }
}

/// What `basis ledger rebuild` reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RebuildReport {
    /// Where the live read models stood, and their hash, before the rebuild.
    pub live: (Position, String),
    /// Where the rebuilt read models stand, and their hash.
    pub rebuilt: (Position, String),
    /// Events replayed.
    pub replayed: usize,
}

impl RebuildReport {
    /// Whether the rebuild reproduced the live read models. Only meaningful when both stand
    /// at the same feed position (no writes arrived in between).
    pub fn matches(&self) -> bool {
        self.live == self.rebuilt
    }
}

impl Projector {
    /// Catches up, fingerprints the live read models, rebuilds them from the first event and
    /// fingerprints them again.
    pub async fn rebuild_and_compare(&self, batch: i64) -> Result<RebuildReport> {
        self.catch_up_all(batch).await?;
        let live = (self.position().await?, self.hash().await?);
        let replayed = self.rebuild(batch).await?;
        let rebuilt = (self.position().await?, self.hash().await?);
        Ok(RebuildReport {
            live,
            rebuilt,
            replayed,
        })
    }
}
