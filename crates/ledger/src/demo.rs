//! The guide's isolation anomalies, shown and then prevented, on SQLite and PostgreSQL
//! (`basis demo lost-update`, `basis demo last-seat`).
//!
//! The demos use their own small tables (`ledger_demo_*`, created and dropped by each run)
//! and their own pool of several connections, because the anomaly is between connections:
//! the ledger itself never writes this way. Where an anomaly depends on two transactions
//! interleaving, a barrier makes them interleave exactly as the guide describes, so each run
//! shows the same numbers instead of depending on luck.

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions};
use sqlx::{PgPool, SqlitePool};
use tokio::sync::Barrier;

/// The demo's own connections.
#[derive(Debug, Clone)]
pub enum DemoDb {
    /// A SQLite file in WAL mode, several connections.
    Sqlite(SqlitePool),
    /// A PostgreSQL database.
    Postgres(PgPool),
}

/// One row of the lost-update table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LostUpdate {
    /// How the withdrawals were written.
    pub strategy: &'static str,
    /// The balance after two concurrent $100 withdrawals from $1000.
    pub final_balance: i64,
    /// Attempts run again after a conflict.
    pub retries: u32,
}

/// One row of the last-seat table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LastSeat {
    /// How the bookings were written.
    pub strategy: &'static str,
    /// Buyers told they have a seat.
    pub winners: u32,
    /// Buyers told "sold out".
    pub sold_out: u32,
    /// Bookings stored.
    pub bookings: i64,
}

/// Starting balance and withdrawal, in dollars (the guide's numbers).
const START: i64 = 1_000;
const WITHDRAWAL: i64 = 100;
/// Concurrent buyers for the one remaining seat.
pub const BUYERS: usize = 100;

impl DemoDb {
    /// Connects to `url` (`sqlite:…` or `postgres://…`) with a pool of `connections`.
    pub async fn connect(url: &str, connections: u32) -> Result<Self, sqlx::Error> {
        if url.starts_with("sqlite:") {
            let options = SqliteConnectOptions::from_str(url)?
                .create_if_missing(true)
                .journal_mode(SqliteJournalMode::Wal)
                .busy_timeout(Duration::from_secs(30));
            let pool = SqlitePoolOptions::new()
                .max_connections(connections)
                .connect_with(options)
                .await?;
            Ok(Self::Sqlite(pool))
        } else {
            let options = PgConnectOptions::from_str(url)?.application_name("basis-demo");
            let pool = PgPoolOptions::new()
                .max_connections(connections)
                .acquire_timeout(Duration::from_secs(30))
                .connect_with(options)
                .await?;
            Ok(Self::Postgres(pool))
        }
    }

    /// `"sqlite"` or `"postgres"`.
    pub fn engine(&self) -> &'static str {
        match self {
            Self::Sqlite(_) => "sqlite",
            Self::Postgres(_) => "postgres",
        }
    }

    async fn script(&self, sql: &str) -> Result<(), sqlx::Error> {
        match self {
            Self::Sqlite(pool) => sqlx::raw_sql(sql).execute(pool).await.map(drop),
            Self::Postgres(pool) => sqlx::raw_sql(sql).execute(pool).await.map(drop),
        }
    }

    async fn count(&self, sql: &str) -> Result<i64, sqlx::Error> {
        match self {
            Self::Sqlite(pool) => sqlx::query_scalar(sql).fetch_one(pool).await,
            Self::Postgres(pool) => sqlx::query_scalar(sql).fetch_one(pool).await,
        }
    }

    async fn reset(&self) -> Result<(), sqlx::Error> {
        self.script(&format!(
            "DROP TABLE IF EXISTS ledger_demo_accounts; DROP TABLE IF EXISTS ledger_demo_bookings; \
             DROP TABLE IF EXISTS ledger_demo_events; \
             CREATE TABLE ledger_demo_accounts (id BIGINT PRIMARY KEY, balance BIGINT NOT NULL, \
                                                version BIGINT NOT NULL); \
             INSERT INTO ledger_demo_accounts VALUES (1, {START}, 0); \
             CREATE TABLE ledger_demo_events (id BIGINT PRIMARY KEY, seats_left BIGINT NOT NULL); \
             INSERT INTO ledger_demo_events VALUES (1, 1); \
             CREATE TABLE ledger_demo_bookings (buyer BIGINT PRIMARY KEY, event_id BIGINT NOT NULL);"
        ))
        .await
    }

    /// Drops the demo's tables.
    pub async fn clean_up(&self) -> Result<(), sqlx::Error> {
        self.script(
            "DROP TABLE IF EXISTS ledger_demo_accounts; DROP TABLE IF EXISTS ledger_demo_bookings; \
             DROP TABLE IF EXISTS ledger_demo_events;",
        )
        .await
    }
}

/// Whether an error is the database saying "you lost a race, run again": PostgreSQL's
/// serialization failure, or SQLite's busy (a stale snapshot cannot become a writer).
fn lost_race(err: &sqlx::Error) -> bool {
    let sqlx::Error::Database(db) = err else {
        return false;
    };
    match db.code().as_deref() {
        Some("40001" | "40P01") => true,
        Some(code) => code.parse::<i32>().is_ok_and(|c| c & 0xff == 5),
        None => false,
    }
}

/// The four ways to withdraw, as the guide tells them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Withdraw {
    Naive,
    RowLock,
    Optimistic,
    Serializable,
}

/// One withdrawal of $100. `barrier` is met once, after the read, where the anomaly lives.
macro_rules! withdraw {
    ($pool:expr, $how:expr, $barrier:expr, ($begin_lock:literal, $lock:literal), $serializable:literal) => {{
        let pool = $pool;
        let mut retries = 0u32;
        let mut first = true;
        loop {
            let wait = std::mem::take(&mut first);
            let attempt: Result<bool, sqlx::Error> = async {
                match $how {
                    Withdraw::Naive => {
                        let balance: i64 = sqlx::query_scalar("SELECT balance FROM ledger_demo_accounts WHERE id = 1")
                            .fetch_one(pool).await?;
                        $barrier.wait().await;
                        sqlx::query("UPDATE ledger_demo_accounts SET balance = $1 WHERE id = 1")
                            .bind(balance - WITHDRAWAL).execute(pool).await?;
                        Ok(true)
                    }
                    Withdraw::RowLock => {
                        // Both start together; the lock makes the second read wait for the first commit.
                        $barrier.wait().await;
                        let mut tx = pool.begin_with($begin_lock).await?;
                        let balance: i64 = sqlx::query_scalar(concat!("SELECT balance FROM ledger_demo_accounts WHERE id = 1", $lock))
                            .fetch_one(&mut *tx).await?;
                        sqlx::query("UPDATE ledger_demo_accounts SET balance = $1 WHERE id = 1")
                            .bind(balance - WITHDRAWAL).execute(&mut *tx).await?;
                        tx.commit().await?;
                        Ok(true)
                    }
                    Withdraw::Optimistic => {
                        let (balance, version): (i64, i64) = sqlx::query_as("SELECT balance, version FROM ledger_demo_accounts WHERE id = 1")
                            .fetch_one(pool).await?;
                        if wait { $barrier.wait().await; }
                        let done = sqlx::query("UPDATE ledger_demo_accounts SET balance = $1, version = version + 1 WHERE id = 1 AND version = $2")
                            .bind(balance - WITHDRAWAL).bind(version).execute(pool).await?;
                        Ok(done.rows_affected() == 1)
                    }
                    Withdraw::Serializable => {
                        let mut tx = pool.begin_with($serializable).await?;
                        let balance: i64 = sqlx::query_scalar("SELECT balance FROM ledger_demo_accounts WHERE id = 1")
                            .fetch_one(&mut *tx).await?;
                        if wait { $barrier.wait().await; }
                        sqlx::query("UPDATE ledger_demo_accounts SET balance = $1 WHERE id = 1")
                            .bind(balance - WITHDRAWAL).execute(&mut *tx).await?;
                        tx.commit().await?;
                        Ok(true)
                    }
                }
            }.await;
            match attempt {
                Ok(true) => break Ok::<u32, sqlx::Error>(retries),
                Ok(false) => retries += 1,
                Err(err) if lost_race(&err) => {
                    // Back off a little: two SQLite writers retrying in lockstep can keep
                    // stealing each other's turn.
                    retries += 1;
                    tokio::time::sleep(Duration::from_millis(u64::from(retries.min(20)))).await;
                }
                Err(err) => break Err(err),
            }
        }
    }};
}

async fn withdraw_twice(db: &DemoDb, how: Withdraw) -> Result<LostUpdate, sqlx::Error> {
    db.reset().await?;
    let barrier = Arc::new(Barrier::new(2));
    let one = || {
        let (db, barrier) = (db.clone(), barrier.clone());
        async move {
            match &db {
                DemoDb::Sqlite(pool) => withdraw!(
                    pool,
                    how,
                    barrier,
                    ("BEGIN IMMEDIATE", ""),
                    "BEGIN DEFERRED"
                ),
                DemoDb::Postgres(pool) => withdraw!(
                    pool,
                    how,
                    barrier,
                    ("BEGIN", " FOR UPDATE"),
                    "BEGIN ISOLATION LEVEL SERIALIZABLE"
                ),
            }
        }
    };
    let (a, b) = tokio::join!(tokio::spawn(one()), tokio::spawn(one()));
    let retries = a.expect("withdrawal task")? + b.expect("withdrawal task")?;
    let strategy = match (how, db) {
        (Withdraw::Naive, _) => "naive read-modify-write",
        (Withdraw::RowLock, DemoDb::Sqlite(_)) => "BEGIN IMMEDIATE (write lock first)",
        (Withdraw::RowLock, DemoDb::Postgres(_)) => "SELECT ... FOR UPDATE (row lock)",
        (Withdraw::Optimistic, _) => "optimistic version check + retry",
        (Withdraw::Serializable, DemoDb::Sqlite(_)) => {
            "deferred transaction + retry on SQLITE_BUSY"
        }
        (Withdraw::Serializable, DemoDb::Postgres(_)) => "SERIALIZABLE + retry on 40001",
    };
    Ok(LostUpdate {
        strategy,
        final_balance: db
            .count("SELECT balance FROM ledger_demo_accounts WHERE id = 1")
            .await?,
        retries,
    })
}

/// Two concurrent $100 withdrawals from $1000, naive then with each remedy.
pub async fn lost_update(db: &DemoDb) -> Result<Vec<LostUpdate>, sqlx::Error> {
    let mut rows = Vec::new();
    for how in [
        Withdraw::Naive,
        Withdraw::RowLock,
        Withdraw::Optimistic,
        Withdraw::Serializable,
    ] {
        rows.push(withdraw_twice(db, how).await?);
    }
    db.clean_up().await?;
    Ok(rows)
}

/// One buyer. Naive: read the seats left, then write what was read minus one. Guarded: one
/// conditional update that only succeeds while a seat is left, and the booking, in one
/// transaction.
macro_rules! buy {
    ($pool:expr, $buyer:expr, $guarded:expr, $barrier:expr, $begin:literal) => {{
        let pool = $pool;
        if $guarded {
            $barrier.wait().await;
            let mut tx = pool.begin_with($begin).await?;
            let won = sqlx::query("UPDATE ledger_demo_events SET seats_left = seats_left - 1 WHERE id = 1 AND seats_left > 0")
                .execute(&mut *tx).await?.rows_affected() == 1;
            if won {
                sqlx::query("INSERT INTO ledger_demo_bookings (buyer, event_id) VALUES ($1, 1)")
                    .bind($buyer).execute(&mut *tx).await?;
            }
            tx.commit().await?;
            Ok::<bool, sqlx::Error>(won)
        } else {
            let left: i64 = sqlx::query_scalar("SELECT seats_left FROM ledger_demo_events WHERE id = 1")
                .fetch_one(pool).await?;
            $barrier.wait().await;
            if left > 0 {
                sqlx::query("UPDATE ledger_demo_events SET seats_left = $1 WHERE id = 1")
                    .bind(left - 1).execute(pool).await?;
                sqlx::query("INSERT INTO ledger_demo_bookings (buyer, event_id) VALUES ($1, 1)")
                    .bind($buyer).execute(pool).await?;
            }
            Ok(left > 0)
        }
    }};
}

async fn sell_last_seat(db: &DemoDb, guarded: bool) -> Result<LastSeat, sqlx::Error> {
    db.reset().await?;
    let barrier = Arc::new(Barrier::new(BUYERS));
    let buyers: Vec<_> = (0..BUYERS as i64)
        .map(|buyer| {
            let (db, barrier) = (db.clone(), barrier.clone());
            tokio::spawn(async move {
                match &db {
                    DemoDb::Sqlite(pool) => buy!(pool, buyer, guarded, barrier, "BEGIN IMMEDIATE"),
                    DemoDb::Postgres(pool) => buy!(pool, buyer, guarded, barrier, "BEGIN"),
                }
            })
        })
        .collect();
    let (mut winners, mut sold_out) = (0, 0);
    for buyer in buyers {
        if buyer.await.expect("buyer task")? {
            winners += 1;
        } else {
            sold_out += 1;
        }
    }
    Ok(LastSeat {
        strategy: if guarded {
            "conditional UPDATE ... WHERE seats_left > 0"
        } else {
            "naive check, then write"
        },
        winners,
        sold_out,
        bookings: db
            .count("SELECT COUNT(*) FROM ledger_demo_bookings")
            .await?,
    })
}

/// 100 concurrent buyers for one remaining seat, naive then guarded.
pub async fn last_seat(db: &DemoDb) -> Result<Vec<LastSeat>, sqlx::Error> {
    let rows = vec![
        sell_last_seat(db, false).await?,
        sell_last_seat(db, true).await?,
    ];
    db.clean_up().await?;
    Ok(rows)
}

/// The lost-update rows as a table.
pub fn lost_update_table(engine: &str, rows: &[LostUpdate]) -> String {
    let mut out = format!(
        "lost update on {engine}: two concurrent ${WITHDRAWAL} withdrawals from ${START} (correct: ${})\n",
        START - 2 * WITHDRAWAL
    );
    out += &format!("{:<46} {:>8} {:>8}\n", "strategy", "balance", "retries");
    for r in rows {
        out += &format!(
            "{:<46} {:>8} {:>8}\n",
            r.strategy,
            format!("${}", r.final_balance),
            r.retries
        );
    }
    out
}

/// The last-seat rows as a table.
pub fn last_seat_table(engine: &str, rows: &[LastSeat]) -> String {
    let mut out = format!("last seat on {engine}: {BUYERS} concurrent buyers, 1 seat left\n");
    out += &format!(
        "{:<46} {:>8} {:>9} {:>9}\n",
        "strategy", "winners", "sold out", "bookings"
    );
    for r in rows {
        out += &format!(
            "{:<46} {:>8} {:>9} {:>9}\n",
            r.strategy, r.winners, r.sold_out, r.bookings
        );
    }
    out
}

/// Runs the demo named `name` (`lost-update` or `last-seat`) on `url` and returns its table.
pub async fn run(name: &str, url: &str) -> Result<String, String> {
    let db = DemoDb::connect(url, 16)
        .await
        .map_err(|e| format!("cannot connect to the demo database: {e}"))?;
    let table = match name {
        "lost-update" => lost_update(&db)
            .await
            .map(|rows| lost_update_table(db.engine(), &rows)),
        "last-seat" => last_seat(&db)
            .await
            .map(|rows| last_seat_table(db.engine(), &rows)),
        other => return Err(format!("no demo called {other:?} (lost-update, last-seat)")),
    };
    table.map_err(|e| format!("the demo failed: {e}"))
}
