//! Shared test setup: a ledger on a fresh SQLite file, and on a fresh PostgreSQL database
//! when `BASIS_TEST_POSTGRES_URL` is set (otherwise one visible `skipped:` line).
#![allow(dead_code)]

use std::sync::Arc;

use basis_ledger::{Clock, Currency, Ledger, ManualClock, NewAccount};
use basis_store::{ConnectOptions, Store};

/// A ledger under test and what keeps it alive.
pub struct Bench {
    pub name: &'static str,
    pub ledger: Ledger,
    pub clock: Arc<ManualClock>,
    _dir: Option<tempfile::TempDir>,
}

/// 2026-01-01T00:00:00Z, so day boundaries in the daily totals are predictable.
pub const T0: i64 = 1_767_225_600_000;

pub async fn sqlite() -> Bench {
    let dir = tempfile::tempdir().expect("temp dir");
    let url = Store::sqlite_url_in(dir.path());
    let mut bench = on_url(&url, "sqlite").await;
    bench._dir = Some(dir);
    bench
}

pub async fn postgres() -> Option<Bench> {
    let url = fresh_pg_database().await?;
    Some(on_url(&url, "postgres").await)
}

/// SQLite always, PostgreSQL when configured.
pub async fn engines() -> Vec<Bench> {
    let mut all = vec![sqlite().await];
    all.extend(postgres().await);
    all
}

async fn on_url(url: &str, name: &'static str) -> Bench {
    let options = ConnectOptions {
        max_connections: 32,
        ..ConnectOptions::default()
    };
    let store = Store::connect(url, &options).await.expect("connect");
    let clock = Arc::new(ManualClock::new(T0));
    let ledger = Ledger::new(store, clock.clone() as Arc<dyn Clock>);
    ledger.install().await.expect("install the ledger's schema");
    Bench {
        name,
        ledger,
        clock,
        _dir: None,
    }
}

pub async fn fresh_pg_database() -> Option<String> {
    let Ok(admin) = std::env::var("BASIS_TEST_POSTGRES_URL") else {
        println!("skipped: BASIS_TEST_POSTGRES_URL is not set, PostgreSQL half not run");
        return None;
    };
    let name = format!("basis_test_{:016x}", rand::random::<u64>());
    let pool = sqlx::PgPool::connect(&admin)
        .await
        .expect("connect to the test server");
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&pool)
        .await
        .expect("create database");
    pool.close().await;
    let mut url = url::Url::parse(&admin).expect("a URL");
    url.set_path(&name);
    Some(url.to_string())
}

pub fn usd() -> Currency {
    Currency::parse("USD").expect("USD")
}

pub fn eur() -> Currency {
    Currency::parse("EUR").expect("EUR")
}

/// Opens an account in `currency` and deposits `funds` into it.
pub async fn funded(ledger: &Ledger, currency: &Currency, funds: i64, overdraft: bool) -> i64 {
    let account = ledger
        .open_account(&NewAccount {
            currency: currency.clone(),
            name: None,
            owner_id: Some("1".into()),
            allow_overdraft: overdraft,
        })
        .await
        .expect("open");
    if funds > 0 {
        ledger
            .deposit(account.id, funds, currency)
            .await
            .expect("deposit");
    }
    account.id
}

/// One `i64` from a query, on either engine.
pub async fn scalar(ledger: &Ledger, sql: &str) -> i64 {
    basis_store::on_pool!(ledger.store(), read, pool => {
        sqlx::query_scalar::<_, i64>(sql).fetch_one(pool).await
    })
    .unwrap_or_else(|e| panic!("{sql}: {e}"))
}

/// Counts the rows a check query returns: every invariant query below lists violations.
const VIOLATIONS: &[(&str, &str)] = &[
    (
        "a currency whose balances do not sum to zero",
        "SELECT COUNT(*) FROM (SELECT currency FROM ledger_accounts GROUP BY currency \
         HAVING SUM(balance) <> 0) v",
    ),
    (
        "an account without overdraft below zero",
        "SELECT COUNT(*) FROM ledger_accounts WHERE NOT allow_overdraft AND balance - pending_debits < 0",
    ),
    (
        "a balance that is not its credit lines minus its debit lines",
        "SELECT COUNT(*) FROM ledger_accounts a WHERE a.balance <> \
         (SELECT CAST(COALESCE(SUM(CASE side WHEN 'credit' THEN amount ELSE -amount END), 0) AS BIGINT) \
          FROM ledger_entries e WHERE e.account_id = a.id)",
    ),
    (
        "a posted transfer without exactly one debit and one credit line of its amount",
        "SELECT COUNT(*) FROM ledger_transfers t WHERE t.status = 'posted' AND \
         (SELECT COUNT(*) FROM ledger_entries e WHERE e.transfer_id = t.id AND e.amount = t.posted_amount) <> 2",
    ),
    (
        "entry lines for a transfer that is not posted",
        "SELECT COUNT(*) FROM ledger_entries e JOIN ledger_transfers t ON t.id = e.transfer_id \
         WHERE t.status <> 'posted'",
    ),
    (
        "pending debits that are not the sum of the account's pending transfers",
        "SELECT COUNT(*) FROM ledger_accounts a WHERE a.pending_debits <> \
         (SELECT CAST(COALESCE(SUM(amount), 0) AS BIGINT) FROM ledger_transfers t \
          WHERE t.debit_account_id = a.id AND t.status = 'pending')",
    ),
    (
        "pending credits that are not the sum of the account's pending transfers",
        "SELECT COUNT(*) FROM ledger_accounts a WHERE a.pending_credits <> \
         (SELECT CAST(COALESCE(SUM(amount), 0) AS BIGINT) FROM ledger_transfers t \
          WHERE t.credit_account_id = a.id AND t.status = 'pending')",
    ),
    (
        "a resolved pending transfer without exactly one resolution",
        "SELECT COUNT(*) FROM ledger_transfers t WHERE t.resolved_at IS NOT NULL AND \
         (SELECT COUNT(*) FROM ledger_resolutions r WHERE r.transfer_id = t.id) <> 1",
    ),
    (
        "a stream whose versions are not 1..=version",
        "SELECT COUNT(*) FROM ledger_accounts a WHERE a.version <> \
         (SELECT COUNT(*) FROM ledger_events e WHERE e.account_id = a.id) OR a.version <> \
         (SELECT COALESCE(MAX(version), 0) FROM ledger_events e WHERE e.account_id = a.id)",
    ),
];

/// Asserts every ledger invariant on the stored state, and that replaying each account's
/// stream gives its stored balance, reservations and version.
pub async fn assert_invariants(ledger: &Ledger) {
    for (what, sql) in VIOLATIONS {
        assert_eq!(scalar(ledger, sql).await, 0, "found {what}");
    }
    let accounts: Vec<basis_ledger::Account> =
        basis_store::on_pool!(ledger.store(), read, pool => {
            sqlx::query_as("SELECT * FROM ledger_accounts ORDER BY id").fetch_all(pool).await
        })
        .expect("accounts");
    for account in accounts {
        let replayed = replay(&ledger.stream(account.id).await.expect("stream"));
        let stored = (
            account.balance,
            account.pending_debits,
            account.pending_credits,
            account.version,
        );
        assert_eq!(replayed, stored, "replay of account {}", account.id);
    }
}

/// Folds a stream into (balance, pending debits, pending credits, version): the state is
/// the replay of the events.
pub fn replay(stream: &[basis_ledger::Event]) -> (i64, i64, i64, i64) {
    use basis_ledger::EventKind::*;
    let mut s = (0, 0, 0, 0);
    for e in stream {
        assert_eq!(e.version, s.3 + 1, "versions follow each other");
        let debit = e.side.as_deref() == Some("debit");
        match (e.kind, debit) {
            (AccountOpened, _) => {}
            (TransferPending, true) => s.1 += e.amount,
            (TransferPending, false) => s.2 += e.amount,
            (TransferPosted, true) => {
                s.0 -= e.amount;
                s.1 -= e.released;
            }
            (TransferPosted, false) => {
                s.0 += e.amount;
                s.2 -= e.released;
            }
            (TransferVoided | TransferExpired, true) => s.1 -= e.released,
            (TransferVoided | TransferExpired, false) => s.2 -= e.released,
        }
        s.3 = e.version;
    }
    s
}
