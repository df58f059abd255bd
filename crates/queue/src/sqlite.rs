//! The SQLite backend, the embedded default: the queue's tables live in the data's own
//! database file (WAL), and every multi-statement change runs in `BEGIN IMMEDIATE` on the
//! one writer connection, so claims from several processes never interleave.
//!
//! (Over 400 lines: one engine's whole delivery contract, statement by statement, beside
//! `postgres.rs`, its twin; the two read best side by side.)
//!
//! There is no cross-process notification in SQLite: a worker polls at its interval, and is
//! woken at once by jobs enqueued through the same handle.

use std::collections::HashMap;
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use sqlx::ConnectOptions as _;
use sqlx::Row;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqlitePool, SqlitePoolOptions,
    SqliteRow, SqliteSynchronous,
};

use tracing::Instrument as _;

use crate::wake::Wakers;
use crate::{
    Backend, ClaimedJob, Clock, ConnectOptions, DeadJob, Enqueued, Error, JobId, JobInfo,
    JobStatus, Lease, NewJob, QueueStats, Result, lease_id, sql_id, stored_json, trace, validate,
};

/// How long finished jobs stay readable in `queue_done` by default.
pub const DEFAULT_DONE_RETENTION: Duration = Duration::from_secs(7 * 24 * 3600);

/// The queue on a SQLite database. Clones share the pool and the wake-ups.
#[derive(Debug, Clone)]
pub struct SqliteQueue {
    pool: SqlitePool,
    clock: Arc<dyn Clock>,
    wakers: Arc<Wakers>,
    completions: Arc<AtomicU64>,
    done_retention: Duration,
}

impl SqliteQueue {
    /// The queue on `pool`, which should be the database's writer pool (one connection).
    pub fn new(pool: SqlitePool, clock: Arc<dyn Clock>) -> Self {
        Self {
            pool,
            clock,
            wakers: Arc::default(),
            completions: Arc::default(),
            done_retention: DEFAULT_DONE_RETENTION,
        }
    }

    /// Opens `url` the way the store does (WAL, one writer connection, busy timeout).
    pub async fn connect(url: &str, clock: Arc<dyn Clock>) -> Result<Self> {
        Self::connect_with(url, clock, ConnectOptions::default()).await
    }

    /// Opens `url` as [`SqliteQueue::connect`] does, as `connect` says.
    pub async fn connect_with(
        url: &str,
        clock: Arc<dyn Clock>,
        connect: ConnectOptions,
    ) -> Result<Self> {
        let (level, threshold) = connect.slow_log();
        let options = SqliteConnectOptions::from_str(url)
            .map_err(|e| Error::Invalid(e.to_string()))?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(Duration::from_secs(10))
            .log_slow_statements(level, threshold);
        let pool = SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(options)
            .await?;
        Ok(Self::new(pool, clock))
    }

    /// How long finished jobs stay readable through [`Backend::job`].
    pub fn with_done_retention(mut self, retention: Duration) -> Self {
        self.done_retention = retention;
        self
    }

    /// The pool the queue writes through.
    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }

    /// Creates or updates the queue's tables (its own migrator, versions from 1001).
    pub async fn install(&self) -> Result<()> {
        let mut migrator = sqlx::migrate!("migrations/sqlite");
        migrator.set_ignore_missing(true);
        migrator.run(&self.pool).await?;
        Ok(())
    }

    /// Enqueues on `conn`, inside the caller's transaction if one is open there: the job
    /// exists exactly when the caller's data does.
    pub async fn enqueue_in(
        &self,
        conn: &mut SqliteConnection,
        mut job: NewJob,
    ) -> Result<Enqueued> {
        validate(&job)?;
        let span = trace::enqueue_span(self.name(), &job.queue, &job.kind, 1);
        trace::stamp(&span, std::slice::from_mut(&mut job));
        self.insert_job(conn, job).instrument(span).await
    }

    async fn insert_job(&self, conn: &mut SqliteConnection, job: NewJob) -> Result<Enqueued> {
        let now = self.clock.now_ms();
        let payload = job.payload.to_string();
        for _ in 0..3 {
            let inserted = sqlx::query(
                "INSERT INTO queue_jobs (queue, kind, payload, priority, status, max_attempts,
                     run_at, enqueued_at, dedup_key, owner, reply_to, correlation_id, traceparent)
                 VALUES (?1, ?2, ?3, ?4, 'queued', ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)
                 ON CONFLICT (queue, dedup_key) WHERE dedup_key IS NOT NULL DO NOTHING
                 RETURNING id",
            )
            .bind(&job.queue)
            .bind(&job.kind)
            .bind(&payload)
            .bind(job.priority)
            .bind(job.max_attempts)
            .bind(job.run_at_ms.unwrap_or(now))
            .bind(now)
            .bind(&job.dedup_key)
            .bind(&job.owner)
            .bind(&job.reply_to)
            .bind(&job.correlation_id)
            .bind(&job.traceparent)
            .fetch_optional(&mut *conn)
            .await?;
            if let Some(row) = inserted {
                self.wakers.wake(&job.queue);
                let id: i64 = row.try_get(0)?;
                return Ok(Enqueued {
                    id: JobId(id.to_string()),
                    duplicate: false,
                });
            }
            let existing: Option<i64> =
                sqlx::query_scalar("SELECT id FROM queue_jobs WHERE queue = ?1 AND dedup_key = ?2")
                    .bind(&job.queue)
                    .bind(&job.dedup_key)
                    .fetch_optional(&mut *conn)
                    .await?;
            if let Some(id) = existing {
                return Ok(Enqueued {
                    id: JobId(id.to_string()),
                    duplicate: true,
                });
            }
            // The holder finished between the two statements: the key is free again.
        }
        Err(Error::Backend(
            "deduplication key kept changing hands".into(),
        ))
    }

    async fn immediate(&self) -> Result<sqlx::Transaction<'static, sqlx::Sqlite>> {
        Ok(self.pool.begin_with("BEGIN IMMEDIATE").await?)
    }

    /// Moves a fenced job to the dead letters; false when the lease is not held.
    async fn bury_in(
        conn: &mut SqliteConnection,
        lease: &Lease,
        error: &str,
        now: i64,
    ) -> Result<bool> {
        let id = lease_id(lease)?;
        let moved = sqlx::query(
            "INSERT INTO queue_dead (id, queue, kind, payload, priority, attempts, max_attempts,
                 dedup_key, owner, reply_to, correlation_id, last_error, token, enqueued_at, died_at,
                 traceparent)
             SELECT id, queue, kind, payload, priority, attempts, max_attempts, dedup_key, owner,
                 reply_to, correlation_id, ?3, token, enqueued_at, ?4, traceparent
             FROM queue_jobs WHERE id = ?1 AND token = ?2 AND status = 'running'",
        )
        .bind(id)
        .bind(lease.token)
        .bind(error)
        .bind(now)
        .execute(&mut *conn)
        .await?
        .rows_affected();
        if moved == 1 {
            sqlx::query("DELETE FROM queue_jobs WHERE id = ?1")
                .bind(id)
                .execute(&mut *conn)
                .await?;
        }
        Ok(moved == 1)
    }

    pub(crate) fn now_ms(&self) -> i64 {
        self.clock.now_ms()
    }

    pub(crate) fn wake(&self, queue: &str) {
        self.wakers.wake(queue);
    }

    /// Counts `n` completions; prunes old finished jobs every 512 of them.
    pub(crate) async fn completed(&self, n: u64, now: i64) -> Result<()> {
        let before = self.completions.fetch_add(n, Ordering::Relaxed);
        if before / 512 != (before + n) / 512 {
            self.prune_done(now).await?;
        }
        Ok(())
    }

    async fn prune_done(&self, now: i64) -> Result<()> {
        let before = now - self.done_retention.as_millis() as i64;
        sqlx::query("DELETE FROM queue_done WHERE finished_at < ?1")
            .bind(before)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn fenced_update(&self, sql: &str, lease: &Lease, a: i64, b: Option<&str>) -> Result<()> {
        let done = sqlx::query(sql)
            .bind(lease_id(lease)?)
            .bind(lease.token)
            .bind(a)
            .bind(b)
            .execute(&self.pool)
            .await?
            .rows_affected();
        if done == 1 {
            Ok(())
        } else {
            Err(Error::LeaseLost(lease.id.clone()))
        }
    }
}

fn dead_job(row: &SqliteRow) -> Result<DeadJob> {
    Ok(DeadJob {
        id: JobId(row.try_get::<i64, _>("id")?.to_string()),
        queue: row.try_get("queue")?,
        kind: row.try_get("kind")?,
        payload: stored_json(&row.try_get::<String, _>("payload")?),
        attempts: row.try_get::<i64, _>("attempts")? as u32,
        last_error: row.try_get("last_error")?,
        died_at_ms: row.try_get("died_at")?,
        traceparent: row.try_get("traceparent")?,
    })
}

const DEAD_COLS: &str = "id, queue, kind, payload, attempts, last_error, died_at, traceparent";

#[async_trait::async_trait]
impl Backend for SqliteQueue {
    fn name(&self) -> &'static str {
        "sqlite"
    }

    async fn enqueue(&self, job: NewJob) -> Result<Enqueued> {
        let mut conn = self.pool.acquire().await?;
        self.enqueue_in(&mut conn, job).await
    }

    async fn enqueue_many(&self, jobs: Vec<NewJob>) -> Result<Vec<Enqueued>> {
        crate::batch::sqlite_enqueue_many(self, jobs).await
    }

    async fn complete_many(&self, acks: &[crate::Ack]) -> Result<Vec<Result<()>>> {
        crate::batch::sqlite_complete_many(self, acks).await
    }

    async fn claim(&self, queue: &str, lease: Duration, limit: usize) -> Result<Vec<ClaimedJob>> {
        self.claim_from(&[queue.to_owned()], lease, limit).await
    }

    /// One `BEGIN IMMEDIATE` for all the queues: one turn at the writer, which the store's
    /// writes share, instead of one turn per queue.
    async fn claim_from(
        &self,
        queues: &[String],
        lease: Duration,
        limit: usize,
    ) -> Result<Vec<ClaimedJob>> {
        let Some(queues) = crate::fair::to_claim(queues, limit) else {
            return Ok(Vec::new());
        };
        let now = self.clock.now_ms();
        let until = now + lease.as_millis() as i64;
        let mut tx = self.immediate().await?;
        // Each queue's best `limit` ready jobs, through the claim index one seek each; the
        // writer is held anyway, and a statement here costs no round trip to a server.
        let mut heads = Vec::with_capacity(queues.len());
        for queue in &queues {
            let due: Vec<(i64, String, i64)> = sqlx::query_as(
                "SELECT id, status, run_at FROM queue_jobs WHERE queue = ?1 AND run_at <= ?2
                 ORDER BY priority DESC, run_at, id LIMIT ?3",
            )
            .bind(queue)
            .bind(now)
            .bind(limit as i64)
            .fetch_all(&mut *tx)
            .await?;
            heads.push(due);
        }
        let picked = crate::fair::round_robin(heads, limit);
        if picked.is_empty() {
            tx.commit().await?;
            return Ok(Vec::new());
        }
        // One statement takes every picked job (the ids as a JSON array): a statement per
        // job would hold the shared writer longer for a large claim. A single job is taken
        // by its id, which costs less than reading an array.
        macro_rules! take {
            ($which:literal) => {
                concat!(
                    "UPDATE queue_jobs SET status = 'running', attempts = attempts + 1,
                         token = token + 1, run_at = ?2 WHERE ",
                    $which,
                    " RETURNING id, kind, payload, attempts, max_attempts, enqueued_at, token,
                         owner, reply_to, correlation_id, traceparent"
                )
            };
        }
        let ids: Vec<i64> = picked.iter().map(|(_, (id, _, _))| *id).collect();
        let take = match ids.as_slice() {
            [id] => sqlx::query(take!("id = ?1")).bind(*id),
            _ => sqlx::query(take!("id IN (SELECT value FROM json_each(?1))"))
                .bind(serde_json::Value::from(ids).to_string()),
        };
        let rows = take.bind(until).fetch_all(&mut *tx).await?;
        let mut taken: HashMap<i64, SqliteRow> = HashMap::with_capacity(rows.len());
        for row in rows {
            taken.insert(row.try_get("id")?, row);
        }
        let mut claimed = Vec::with_capacity(picked.len());
        let mut expired = vec![0u64; queues.len()];
        // In the order picked (RETURNING has none): round-robin over the queues.
        for (q, (id, status, run_at)) in picked {
            // Selected in this transaction, so updated by it: a missing row is impossible
            // while the writer is held, and skipped rather than trusted if it ever happens.
            let Some(row) = taken.remove(&id) else {
                continue;
            };
            let lease = Lease {
                id: JobId(id.to_string()),
                queue: queues[q].to_owned(),
                token: row.try_get("token")?,
            };
            let attempt = row.try_get::<i64, _>("attempts")? as u32;
            let max_attempts = row.try_get::<i64, _>("max_attempts")? as u32;
            if status == "running" {
                expired[q] += 1;
                if attempt > max_attempts {
                    let why = "the lease expired on the last attempt (the worker died or hung)";
                    Self::bury_in(&mut tx, &lease, why, now).await?;
                    continue;
                }
            }
            claimed.push(ClaimedJob {
                lease,
                kind: row.try_get("kind")?,
                payload: stored_json(&row.try_get::<String, _>("payload")?),
                attempt,
                max_attempts,
                enqueued_at_ms: row.try_get("enqueued_at")?,
                run_at_ms: run_at,
                reply_to: row.try_get("reply_to")?,
                correlation_id: row.try_get("correlation_id")?,
                owner: row.try_get("owner")?,
                traceparent: row.try_get("traceparent")?,
            });
        }
        tx.commit().await?;
        for (queue, n) in queues.iter().zip(expired) {
            if n > 0 {
                ::metrics::counter!("queue_lease_expiries_total", "queue" => (*queue).to_owned())
                    .increment(n);
            }
        }
        Ok(claimed)
    }

    async fn heartbeat(&self, lease: &Lease, extend: Duration) -> Result<()> {
        let until = self.clock.now_ms() + extend.as_millis() as i64;
        let sql = "UPDATE queue_jobs SET run_at = ?3 WHERE id = ?1 AND token = ?2 AND status = 'running' AND ?4 IS NULL";
        self.fenced_update(sql, lease, until, None).await
    }

    async fn complete(&self, lease: &Lease, result: Option<serde_json::Value>) -> Result<()> {
        let now = self.clock.now_ms();
        let id = lease_id(lease)?;
        let mut tx = self.immediate().await?;
        let moved = sqlx::query(
            "INSERT INTO queue_done (id, queue, kind, attempts, result, owner, enqueued_at, finished_at)
             SELECT id, queue, kind, attempts, ?3, owner, enqueued_at, ?4
             FROM queue_jobs WHERE id = ?1 AND token = ?2 AND status = 'running'",
        )
        .bind(id)
        .bind(lease.token)
        .bind(result.map(|r| r.to_string()))
        .bind(now)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if moved != 1 {
            return Err(Error::LeaseLost(lease.id.clone()));
        }
        sqlx::query("DELETE FROM queue_jobs WHERE id = ?1")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        if self.completions.fetch_add(1, Ordering::Relaxed) % 512 == 511 {
            self.prune_done(now).await?;
        }
        Ok(())
    }

    async fn retry(&self, lease: &Lease, error: &str, run_at_ms: i64) -> Result<()> {
        let sql = "UPDATE queue_jobs SET status = 'failed', run_at = ?3, last_error = ?4
                   WHERE id = ?1 AND token = ?2 AND status = 'running'";
        self.fenced_update(sql, lease, run_at_ms, Some(error)).await
    }

    async fn bury(&self, lease: &Lease, error: &str) -> Result<()> {
        let mut tx = self.immediate().await?;
        if !Self::bury_in(&mut tx, lease, error, self.clock.now_ms()).await? {
            return Err(Error::LeaseLost(lease.id.clone()));
        }
        tx.commit().await?;
        Ok(())
    }

    async fn release(&self, lease: &Lease) -> Result<()> {
        let sql = "UPDATE queue_jobs SET attempts = MAX(attempts - 1, 0), run_at = ?3,
                       status = CASE WHEN attempts > 1 THEN 'failed' ELSE 'queued' END
                   WHERE id = ?1 AND token = ?2 AND status = 'running' AND ?4 IS NULL";
        self.fenced_update(sql, lease, self.clock.now_ms(), None)
            .await?;
        self.wakers.wake(&lease.queue);
        Ok(())
    }

    async fn wait_for_work(&self, queue: &str, timeout: Duration) {
        self.wakers.wait(queue, timeout).await;
    }

    async fn job(&self, id: &JobId) -> Result<Option<JobInfo>> {
        let Some(id) = sql_id(id) else {
            return Ok(None);
        };
        let row = sqlx::query(
            "SELECT id, queue, kind, status, attempts, NULL AS result, last_error, owner FROM queue_jobs WHERE id = ?1
             UNION ALL SELECT id, queue, kind, 'done', attempts, result, NULL, owner FROM queue_done WHERE id = ?1
             UNION ALL SELECT id, queue, kind, 'dead', attempts, NULL, last_error, owner FROM queue_dead WHERE id = ?1",
        )
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        let Some(row) = row else { return Ok(None) };
        let status = match row.try_get::<String, _>("status")?.as_str() {
            "queued" => JobStatus::Queued,
            "running" => JobStatus::Running,
            "failed" => JobStatus::Failed,
            "done" => JobStatus::Done,
            _ => JobStatus::Dead,
        };
        Ok(Some(JobInfo {
            id: JobId(id.to_string()),
            queue: row.try_get("queue")?,
            kind: row.try_get("kind")?,
            status,
            attempts: row.try_get::<i64, _>("attempts")? as u32,
            result: row
                .try_get::<Option<String>, _>("result")?
                .map(|r| stored_json(&r)),
            last_error: row.try_get("last_error")?,
            owner: row.try_get("owner")?,
        }))
    }

    async fn subscribe_kinds(&self, topic: &str, group: &str, kinds: &[&str]) -> Result<()> {
        let kinds = crate::topic::subscription_kinds(topic, group, kinds)?;
        sqlx::query(
            "INSERT INTO queue_subscriptions (topic, grp, kinds) VALUES (?1, ?2, ?3)
             ON CONFLICT (topic, grp) DO UPDATE SET kinds = excluded.kinds",
        )
        .bind(topic)
        .bind(group)
        .bind(kinds.map(|k| serde_json::Value::from(k).to_string()))
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn publish(&self, topic: &str, kind: &str, payload: serde_json::Value) -> Result<usize> {
        validate(&NewJob::new(topic, kind, serde_json::Value::Null))?;
        let now = self.clock.now_ms();
        let span = trace::enqueue_span(self.name(), topic, kind, 1);
        let traceparent = trace::traceparent(&span);
        let queues: Vec<String> = sqlx::query_scalar(
            "INSERT INTO queue_jobs (queue, kind, payload, status, max_attempts, run_at, enqueued_at,
                 traceparent)
             SELECT topic || '.' || grp, ?2, ?3, 'queued', 5, ?4, ?4, ?5
             FROM queue_subscriptions WHERE topic = ?1 AND (kinds IS NULL
                 OR EXISTS (SELECT 1 FROM json_each(kinds) WHERE json_each.value = ?2))
             RETURNING queue",
        )
        .bind(topic)
        .bind(kind)
        .bind(payload.to_string())
        .bind(now)
        .bind(traceparent)
        .fetch_all(&self.pool)
        .instrument(span)
        .await?;
        for q in &queues {
            self.wakers.wake(q);
        }
        Ok(queues.len())
    }

    async fn publish_many(&self, topic: &str, messages: &[crate::Message]) -> Result<usize> {
        crate::topic::sqlite_publish_many(self, topic, messages).await
    }

    async fn dead_letters(&self, queue: Option<&str>, limit: usize) -> Result<Vec<DeadJob>> {
        let sql = format!(
            "SELECT {DEAD_COLS} FROM queue_dead WHERE ?1 IS NULL OR queue = ?1 ORDER BY died_at, id LIMIT ?2"
        );
        let rows = sqlx::query(&sql)
            .bind(queue)
            .bind(limit as i64)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(dead_job).collect()
    }

    async fn dead_letter(&self, id: &JobId) -> Result<Option<DeadJob>> {
        let Some(id) = sql_id(id) else {
            return Ok(None);
        };
        let sql = format!("SELECT {DEAD_COLS} FROM queue_dead WHERE id = ?1");
        let row = sqlx::query(&sql)
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(dead_job).transpose()
    }

    async fn replay(&self, id: &JobId) -> Result<bool> {
        let Some(id) = sql_id(id) else {
            return Ok(false);
        };
        let mut tx = self.immediate().await?;
        let queue: Option<String> = sqlx::query_scalar(
            "INSERT INTO queue_jobs (id, queue, kind, payload, priority, status, attempts,
                 max_attempts, run_at, enqueued_at, token, dedup_key, owner, reply_to,
                 correlation_id, last_error, traceparent)
             SELECT id, queue, kind, payload, priority, 'queued', 0, max_attempts, ?2,
                 enqueued_at, token,
                 CASE WHEN EXISTS (SELECT 1 FROM queue_jobs j WHERE j.queue = d.queue
                     AND j.dedup_key = d.dedup_key) THEN NULL ELSE dedup_key END,
                 owner, reply_to, correlation_id, last_error, traceparent
             FROM queue_dead d WHERE id = ?1
             RETURNING queue",
        )
        .bind(id)
        .bind(self.clock.now_ms())
        .fetch_optional(&mut *tx)
        .await?;
        let Some(queue) = queue else { return Ok(false) };
        sqlx::query("DELETE FROM queue_dead WHERE id = ?1")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        self.wakers.wake(&queue);
        Ok(true)
    }

    async fn purge(&self, queue: Option<&str>) -> Result<u64> {
        let done = sqlx::query("DELETE FROM queue_dead WHERE ?1 IS NULL OR queue = ?1")
            .bind(queue)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected())
    }

    async fn stats(&self) -> Result<Vec<QueueStats>> {
        let now = self.clock.now_ms();
        let live: Vec<(String, i64, i64, Option<i64>)> = sqlx::query_as(
            "SELECT queue, SUM(status <> 'running'), SUM(status = 'running'),
                 MIN(CASE WHEN status <> 'running' AND run_at <= ?1 THEN run_at END)
             FROM queue_jobs GROUP BY queue",
        )
        .bind(now)
        .fetch_all(&self.pool)
        .await?;
        let dead: Vec<(String, i64)> =
            sqlx::query_as("SELECT queue, COUNT(*) FROM queue_dead GROUP BY queue")
                .fetch_all(&self.pool)
                .await?;
        Ok(crate::metrics::merge_stats(now, live, dead))
    }
}
