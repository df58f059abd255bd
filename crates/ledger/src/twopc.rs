//! Two-phase commit of a cross-ledger transfer, and the recovery of in-doubt ones.
//!
//! # The protocol (presumed abort)
//!
//! 1. The transfer is logged `started` in this database ([`CrossLedger::transfer`]).
//! 2. Each half is written in a transaction of its own database (the accounts locked as for
//!    any transfer), then `PREPARE TRANSACTION 'basis:<home>.<id>:<participant>'`: the
//!    database promises to commit it later whatever happens, keeping its locks meanwhile.
//! 3. Both prepared: the coordinator logs `commit` in `ledger_2pc_decisions`. That row is
//!    the commit point. No row means abort, so nothing is logged for an abort.
//! 4. `COMMIT PREPARED` on both (or `ROLLBACK PREPARED` when a half failed to prepare).
//!
//! # Recovery
//!
//! [`CrossLedger::recover`] reads `pg_prepared_xacts` on both databases (this
//! coordinator's prefix only) and settles every prepared half older than the grace it is
//! given: committed when the log says `commit`, rolled back otherwise. Before rolling back
//! an undecided transfer it logs `abort` itself, with the same insert the coordinator uses
//! to log `commit`: the primary key lets only one of them in, so a coordinator that was
//! merely slow finds `abort` when it comes to decide and rolls back too. Then it settles
//! the log: `started` rows older than the grace are aborted (2PC) or resumed (saga), and
//! committed ones get their halves' transfer ids. Run at start with no grace, and every
//! interval with the interval as grace, no prepared transaction outlives two intervals.
//!
//! # Metrics
//!
//! `ledger_prepared_transactions{participant}` and
//! `ledger_prepared_oldest_seconds{participant}` (set by every recovery pass),
//! `ledger_2pc_recovered_total{outcome}`, `ledger_cross_transfers_total{mode,outcome}`.

use std::time::{Duration, Instant};

use sqlx::pool::PoolConnection;
use sqlx::{PgPool, Postgres};

use crate::cross::{
    CrashPoint, CrossError, CrossLedger, CrossTransfer, Direction, is_refusal, micros,
};
use crate::model::{Currency, Error, TransferRequest};
use crate::write;

/// How many times the write phase runs again after losing a race (deadlock, serialization).
const MAX_ATTEMPTS: u32 = 10;

/// SQLSTATE of `COMMIT/ROLLBACK PREPARED` on a global id that no longer exists (someone else
/// settled it already).
const UNDEFINED_OBJECT: &str = "42704";

/// SQLSTATE of `COMMIT/ROLLBACK PREPARED` on a global id another session is settling at this
/// moment ("prepared transaction … is busy").
const BUSY: &str = "55000";

/// How many times [`settle`] waits for another session's settling of the same id.
const SETTLE_WAITS: u32 = 20;

/// What one recovery pass did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Recovery {
    /// Prepared halves committed.
    pub committed: usize,
    /// Prepared halves rolled back.
    pub rolled_back: usize,
    /// Logged transfers settled (aborted, finished or resumed).
    pub settled: usize,
    /// Prepared halves of this coordinator left (younger than the grace), both databases.
    pub still_prepared: usize,
}

/// A prepared half as `pg_prepared_xacts` shows it.
#[derive(Debug, sqlx::FromRow)]
struct Prepared {
    gid: String,
    age_seconds: f64,
}

impl CrossLedger {
    /// Refuses to run 2PC on a database that cannot prepare transactions.
    pub async fn check_prepared_capacity(&self) -> Result<(), CrossError> {
        for (name, pool) in self.participants() {
            let max: String = sqlx::query_scalar("SHOW max_prepared_transactions")
                .fetch_one(pool)
                .await?;
            if max.trim() == "0" {
                return Err(CrossError::NoPreparedTransactions(name.to_owned()));
            }
        }
        Ok(())
    }

    fn participants(&self) -> [(&str, &PgPool); 2] {
        [
            (self.home_name.as_str(), self.home_pool()),
            (self.remote_name.as_str(), self.remote_pool()),
        ]
    }

    /// Runs the protocol for a freshly logged transfer.
    pub(crate) async fn two_phase(&self, row: CrossTransfer) -> Result<CrossTransfer, CrossError> {
        let id = row.id;
        let currency = Currency::parse(&row.currency)?;
        let ((payer, payer_name), (payee, payee_name)) = self.sides(&row.direction);
        let payer_funding = payer.funding_account(&currency).await?;
        let payee_funding = payee.funding_account(&currency).await?;
        let debit =
            TransferRequest::posted(row.from_account, payer_funding.id, row.amount, &currency)
                .once_for(self.half_key(id, payer_name));
        let credit =
            TransferRequest::posted(payee_funding.id, row.to_account, row.amount, &currency)
                .once_for(self.half_key(id, payee_name));
        let (local_req, remote_req) = if row.direction == Direction::Incoming.as_str() {
            (credit, debit)
        } else {
            (debit, credit)
        };
        let local_gid = self.half_key(id, &self.home_name);
        let remote_gid = self.half_key(id, &self.remote_name);

        let mut local = self.home_pool().acquire().await?;
        let mut remote = self.remote_pool().acquire().await?;
        let mut attempt = 1;
        let locked = loop {
            let locked = Instant::now();
            let written = self
                .write_halves(&mut local, &mut remote, &local_req, &remote_req)
                .await;
            match written {
                Ok(()) => break locked,
                Err(err) => {
                    rollback(&mut local).await;
                    rollback(&mut remote).await;
                    if err.is_retryable() && attempt < MAX_ATTEMPTS {
                        attempt += 1;
                        metrics::counter!("ledger_retries_total").increment(1);
                        continue;
                    }
                    if is_refusal(&err) {
                        self.finish(id, "aborted", Some(err.to_string()), None)
                            .await?;
                    }
                    return Err(err.into());
                }
            }
        };
        if let Err(err) = self.checkpoint(CrashPoint::BeforePrepare).await {
            return Err(crash(err, local, remote));
        }

        if let Err(err) = prepare(&mut local, &local_gid).await {
            rollback(&mut remote).await;
            return Err(self.abort_prepared(id, &[], err).await);
        }
        self.step(id, "prepared-local").await?;
        if let Err(err) = self.checkpoint(CrashPoint::AfterFirstPrepare).await {
            return Err(crash(err, local, remote));
        }
        if let Err(err) = prepare(&mut remote, &remote_gid).await {
            return Err(self.abort_prepared(id, &[&local_gid], err).await);
        }
        self.step(id, "prepared").await?;
        if let Err(err) = self.checkpoint(CrashPoint::AfterBothPrepares).await {
            return Err(crash(err, local, remote));
        }

        if self.decide(id, "commit").await? != "commit" {
            // Recovery found this transfer undecided and aborted it first.
            settle(&mut local, "ROLLBACK", &local_gid).await?;
            settle(&mut remote, "ROLLBACK", &remote_gid).await?;
            self.finish(id, "aborted", Some("aborted by recovery".into()), None)
                .await?;
            return Err(CrossError::Aborted(id));
        }
        if let Err(err) = self.checkpoint(CrashPoint::AfterDecision).await {
            return Err(crash(err, local, remote));
        }
        settle(&mut local, "COMMIT", &local_gid).await?;
        settle(&mut remote, "COMMIT", &remote_gid).await?;
        let hold = micros(locked.elapsed());
        self.finish(id, "committed", None, Some(hold)).await
    }

    /// Writes both halves, each in an open transaction of its connection.
    async fn write_halves(
        &self,
        local: &mut PoolConnection<Postgres>,
        remote: &mut PoolConnection<Postgres>,
        local_req: &TransferRequest,
        remote_req: &TransferRequest,
    ) -> Result<(), Error> {
        let now = self.clock().now_ms();
        sqlx::query("BEGIN").execute(&mut **local).await?;
        sqlx::query("BEGIN").execute(&mut **remote).await?;
        let (_, new) = write::postgres::transfer(local, now, local_req).await?;
        let (_, new_remote) = write::postgres::transfer(remote, now, remote_req).await?;
        if !(new && new_remote) {
            // A half with this key exists already: only a second coordinator on the same
            // log could have made it. Refuse rather than prepare nothing.
            return Err(Error::RequestKeyReused(
                local_req.request_key.clone().unwrap_or_default(),
            ));
        }
        Ok(())
    }

    /// Rolls back the halves in `prepared` after a failed prepare, records the abort, and
    /// returns what to tell the caller.
    async fn abort_prepared(&self, id: i64, prepared: &[&str], err: sqlx::Error) -> CrossError {
        for gid in prepared {
            let pool = if gid.ends_with(&format!(":{}", self.home_name)) {
                self.home_pool()
            } else {
                self.remote_pool()
            };
            match pool.acquire().await {
                Ok(mut conn) => {
                    if let Err(e) = settle(&mut conn, "ROLLBACK", gid).await {
                        tracing::warn!(error = %e, gid, "rollback of a prepared half failed; recovery will");
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, gid, "rollback of a prepared half failed; recovery will")
                }
            }
        }
        let err: Error = err.into();
        if let Err(e) = self
            .finish(id, "aborted", Some(format!("prepare failed: {err}")), None)
            .await
        {
            tracing::warn!(error = %e, id, "cannot record the abort; recovery will");
        }
        err.into()
    }

    async fn step(&self, id: i64, step: &str) -> Result<(), CrossError> {
        sqlx::query("UPDATE ledger_cross_transfers SET step = $2 WHERE id = $1")
            .bind(id)
            .bind(step)
            .execute(self.home_pool())
            .await?;
        Ok(())
    }

    /// Logs `outcome` for `id` unless an outcome is logged already; returns the one that
    /// holds. Coordinator ('commit') and recovery ('abort') race here, one row wins.
    async fn decide(&self, id: i64, outcome: &str) -> Result<String, CrossError> {
        let now = self.clock().now_ms();
        let mut tx = self.home_pool().begin().await?;
        let held: String = sqlx::query_scalar(
            "INSERT INTO ledger_2pc_decisions (transfer_id, outcome, decided_at) \
             VALUES ($1, $2, $3) \
             ON CONFLICT (transfer_id) DO UPDATE SET outcome = ledger_2pc_decisions.outcome \
             RETURNING outcome",
        )
        .bind(id)
        .bind(outcome)
        .bind(now)
        .fetch_one(&mut *tx)
        .await?;
        if held == "commit" {
            sqlx::query(
                "UPDATE ledger_cross_transfers SET status = 'committed', step = 'decided', \
                 decided_at = $2 WHERE id = $1 AND status = 'started'",
            )
            .bind(id)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(held)
    }

    /// Settles what stopped coordinators left: prepared halves older than `grace` are
    /// committed or rolled back by the decision log, `started` transfers older than
    /// `grace` are aborted (2PC) or resumed (saga), committed ones are finished. Also sets
    /// the prepared-transaction gauges.
    pub async fn recover(&self, grace: Duration) -> Result<Recovery, CrossError> {
        let mut report = Recovery::default();
        let prefix = self.key_prefix();
        let pattern = format!("{}%", prefix.replace('_', "\\_"));
        let due = self.clock().now_ms() - i64::try_from(grace.as_millis()).unwrap_or(i64::MAX);
        for (name, pool) in self.participants() {
            let prepared: Vec<Prepared> = sqlx::query_as(
                "SELECT gid, EXTRACT(EPOCH FROM now() - prepared)::float8 AS age_seconds \
                 FROM pg_prepared_xacts WHERE database = current_database() AND gid LIKE $1 \
                 ORDER BY prepared",
            )
            .bind(&pattern)
            .fetch_all(pool)
            .await?;
            let mut left = 0usize;
            let mut oldest = 0f64;
            for p in prepared {
                let id = p
                    .gid
                    .strip_prefix(&prefix)
                    .and_then(|rest| rest.split_once(':'))
                    .and_then(|(id, _)| id.parse::<i64>().ok());
                let Some(id) = id else {
                    tracing::warn!(
                        gid = p.gid,
                        "a prepared transaction with this coordinator's prefix that it did not name; left alone"
                    );
                    continue;
                };
                // Young by the injected clock (the transfer's log row), so tests and the
                // periodic pass agree on one time source.
                let created: Option<i64> = sqlx::query_scalar(
                    "SELECT created_at FROM ledger_cross_transfers WHERE id = $1",
                )
                .bind(id)
                .fetch_optional(self.home_pool())
                .await?;
                if created.is_some_and(|at| at > due) {
                    left += 1;
                    oldest = oldest.max(p.age_seconds);
                    continue;
                }
                let outcome = self.decide(id, "abort").await?;
                let verb = if outcome == "commit" {
                    report.committed += 1;
                    "COMMIT"
                } else {
                    report.rolled_back += 1;
                    "ROLLBACK"
                };
                let mut conn = pool.acquire().await?;
                settle(&mut conn, verb, &p.gid).await?;
                metrics::counter!("ledger_2pc_recovered_total", "outcome" => verb.to_lowercase())
                    .increment(1);
                tracing::info!(
                    gid = p.gid,
                    outcome = verb,
                    "settled an in-doubt prepared transaction"
                );
            }
            report.still_prepared += left;
            metrics::gauge!("ledger_prepared_transactions", "participant" => name.to_owned())
                .set(left as f64);
            metrics::gauge!("ledger_prepared_oldest_seconds", "participant" => name.to_owned())
                .set(oldest);
        }

        let open: Vec<CrossTransfer> = sqlx::query_as(
            "SELECT * FROM ledger_cross_transfers \
             WHERE (status = 'started' OR finished_at IS NULL) AND created_at <= $1 \
             ORDER BY id LIMIT 500",
        )
        .bind(due)
        .fetch_all(self.home_pool())
        .await?;
        for row in open {
            let id = row.id;
            let (mode, status) = (row.mode.clone(), row.status.clone());
            let result = match (mode.as_str(), status.as_str()) {
                ("saga", "started") => self.saga(row).await.map(|_| ()),
                ("2pc", _) if self.has_prepared(id).await? => continue,
                ("2pc", "started") => {
                    if self.decide(id, "abort").await? == "commit" {
                        self.finish(id, "committed", None, None).await.map(|_| ())
                    } else {
                        let why = "the coordinator stopped before deciding";
                        self.finish(id, "aborted", Some(why.into()), None)
                            .await
                            .map(|_| ())
                    }
                }
                (_, status) => self.finish(id, status, None, None).await.map(|_| ()),
            };
            match result {
                Ok(()) => report.settled += 1,
                Err(err @ CrossError::Ledger(_)) | Err(err @ CrossError::Aborted(_)) => {
                    // A refusal ended the saga (logged by it); a database failure waits for
                    // the next pass.
                    tracing::debug!(error = %err, id, "recovery of a cross-ledger transfer");
                    report.settled += 1;
                }
                Err(err) => return Err(err),
            }
        }
        Ok(report)
    }

    /// Whether a half of `id` is still prepared on either database.
    async fn has_prepared(&self, id: i64) -> Result<bool, CrossError> {
        for (name, pool) in self.participants() {
            let found: Option<i32> =
                sqlx::query_scalar("SELECT 1 FROM pg_prepared_xacts WHERE gid = $1")
                    .bind(self.half_key(id, name))
                    .fetch_optional(pool)
                    .await?;
            if found.is_some() {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// Prepared halves of this coordinator on both databases, and the oldest one's age.
    pub async fn prepared(&self) -> Result<(i64, f64), CrossError> {
        let pattern = format!("{}%", self.key_prefix().replace('_', "\\_"));
        let mut count = 0;
        let mut oldest = 0f64;
        for (_, pool) in self.participants() {
            let (n, age): (i64, Option<f64>) = sqlx::query_as(
                "SELECT count(*), MAX(EXTRACT(EPOCH FROM now() - prepared))::float8 \
                 FROM pg_prepared_xacts WHERE database = current_database() AND gid LIKE $1",
            )
            .bind(&pattern)
            .fetch_one(pool)
            .await?;
            count += n;
            oldest = oldest.max(age.unwrap_or(0.0));
        }
        Ok((count, oldest))
    }
}

/// `PREPARE TRANSACTION` of the open transaction on `conn`. The global id is built from
/// a number and validated participant names, so it needs no escaping beyond the quotes.
async fn prepare(conn: &mut PoolConnection<Postgres>, gid: &str) -> Result<(), sqlx::Error> {
    sqlx::query(&format!("PREPARE TRANSACTION '{gid}'"))
        .execute(&mut **conn)
        .await?;
    Ok(())
}

/// `COMMIT PREPARED` or `ROLLBACK PREPARED`; a global id already settled is fine. The
/// coordinator and recovery may settle the same id at the same moment (both read the same
/// decision, so with the same verb): the later one is told the id is busy, waits for the
/// other to finish, and then finds it gone.
async fn settle(
    conn: &mut PoolConnection<Postgres>,
    verb: &str,
    gid: &str,
) -> Result<(), CrossError> {
    let mut waits = 0;
    loop {
        match sqlx::query(&format!("{verb} PREPARED '{gid}'"))
            .execute(&mut **conn)
            .await
        {
            Ok(_) => return Ok(()),
            Err(sqlx::Error::Database(db)) if db.code().as_deref() == Some(UNDEFINED_OBJECT) => {
                return Ok(());
            }
            Err(sqlx::Error::Database(db))
                if db.code().as_deref() == Some(BUSY) && waits < SETTLE_WAITS =>
            {
                waits += 1;
                tokio::time::sleep(Duration::from_millis(2 << waits.min(6))).await;
            }
            Err(err) => return Err(err.into()),
        }
    }
}

/// Ends whatever transaction `conn` has open (a failed statement leaves it aborted).
async fn rollback(conn: &mut PoolConnection<Postgres>) {
    if let Err(err) = sqlx::query("ROLLBACK").execute(&mut **conn).await {
        tracing::debug!(error = %err, "rollback of a half's transaction");
    }
}

/// Stops dead: the connections are closed without a word, as by a killed process (an open
/// transaction dies with its connection, a prepared one stays).
fn crash(
    err: CrossError,
    local: PoolConnection<Postgres>,
    remote: PoolConnection<Postgres>,
) -> CrossError {
    drop(local.detach());
    drop(remote.detach());
    err
}
