//! The PostgreSQL backend: claims with `FOR UPDATE SKIP LOCKED` (concurrent workers never
//! wait on each other's rows), wake-ups by `LISTEN/NOTIFY` (a trigger notifies on insert, so
//! a job enqueued inside a caller's transaction wakes workers only when it commits), and
//! finished jobs moved out of the hot table in the same statement that fences the ack.
//! (Over 400 lines: one engine's whole delivery contract, statement by statement, beside
//! `sqlite.rs`, its twin; the two read best side by side.)
//!

use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use sqlx::ConnectOptions as _;
use sqlx::Row;
use sqlx::postgres::{PgConnectOptions, PgConnection, PgListener, PgPool, PgPoolOptions, PgRow};
use tokio::sync::OnceCell;
use tracing::Instrument as _;

use crate::sqlite::DEFAULT_DONE_RETENTION;
use crate::wake::Wakers;
use crate::{
    Backend, ClaimedJob, Clock, ConnectOptions, DeadJob, Enqueued, Error, JobId, JobInfo,
    JobStatus, Lease, NewJob, QueueStats, Result, lease_id, sql_id, stored_json, trace, validate,
};

/// The NOTIFY channel; the payload is the queue name.
pub const CHANNEL: &str = "basis_queue";

/// The queue on a PostgreSQL database. Clones share the pool, the listener and wake-ups.
#[derive(Debug, Clone)]
pub struct PostgresQueue {
    pool: PgPool,
    /// Claims and acknowledgements (see [`PostgresQueue::with_ack_pool`]).
    acks: PgPool,
    clock: Arc<dyn Clock>,
    wakers: Arc<Wakers>,
    listener: Arc<OnceCell<()>>,
    completions: Arc<AtomicU64>,
    done_retention: Duration,
}

impl PostgresQueue {
    /// The queue on `pool` (the store's pool, for enqueues inside its transactions).
    pub fn new(pool: PgPool, clock: Arc<dyn Clock>) -> Self {
        Self {
            acks: pool.clone(),
            pool,
            clock,
            wakers: Arc::default(),
            listener: Arc::default(),
            completions: Arc::default(),
            done_retention: DEFAULT_DONE_RETENTION,
        }
    }

    /// Opens a pool of its own on `url`.
    pub async fn connect(url: &str, clock: Arc<dyn Clock>) -> Result<Self> {
        Self::connect_with(url, clock, ConnectOptions::default()).await
    }

    /// Opens a pool of its own on `url`, as `connect` says.
    pub async fn connect_with(
        url: &str,
        clock: Arc<dyn Clock>,
        connect: ConnectOptions,
    ) -> Result<Self> {
        let (level, threshold) = connect.slow_log();
        let options = PgConnectOptions::from_str(url)
            .map_err(|e| Error::Invalid(e.to_string()))?
            .application_name("basis-queue")
            .log_slow_statements(level, threshold);
        let pool = PgPoolOptions::new()
            .max_connections(8)
            .acquire_timeout(Duration::from_secs(10))
            .connect_with(options.clone())
            .await?;
        let acks = PgPoolOptions::new()
            .max_connections(16)
            .acquire_timeout(Duration::from_secs(10))
            .connect_with(options.options([("synchronous_commit", "off")]))
            .await?;
        Ok(Self::new(pool, clock).with_ack_pool(acks))
    }

    /// Runs claims, heartbeats and acknowledgements on `acks`, typically a pool whose
    /// sessions set `synchronous_commit = off` ([`PostgresQueue::connect`] does so). Safe for
    /// at-least-once delivery: a database crash may forget the last moments of acks, and
    /// those jobs simply run again; enqueues stay on the main pool and are durable when
    /// they return. It takes the per-job fsync off the workers' path, so enqueues flush faster.
    pub fn with_ack_pool(mut self, acks: PgPool) -> Self {
        self.acks = acks;
        self
    }

    /// How long finished jobs stay readable through [`Backend::job`].
    pub fn with_done_retention(mut self, retention: Duration) -> Self {
        self.done_retention = retention;
        self
    }

    /// The pool the queue works through.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Creates or updates the queue's tables (its own migrator, versions from 1001).
    pub async fn install(&self) -> Result<()> {
        let mut migrator = sqlx::migrate!("migrations/postgres");
        migrator.set_ignore_missing(true);
        migrator.run(&self.pool).await?;
        Ok(())
    }

    /// Enqueues on `conn`, inside the caller's transaction if one is open there (the outbox
    /// pattern): the job exists, and workers hear of it, exactly when the caller commits.
    pub async fn enqueue_in(&self, conn: &mut PgConnection, mut job: NewJob) -> Result<Enqueued> {
        validate(&job)?;
        let span = trace::enqueue_span(self.name(), &job.queue, &job.kind, 1);
        trace::stamp(&span, std::slice::from_mut(&mut job));
        self.insert_job(conn, job).instrument(span).await
    }

    async fn insert_job(&self, conn: &mut PgConnection, job: NewJob) -> Result<Enqueued> {
        let now = self.clock.now_ms();
        let payload = job.payload.to_string();
        for _ in 0..3 {
            let inserted: Option<i64> = sqlx::query_scalar(
                "INSERT INTO queue_jobs (queue, kind, payload, priority, status, max_attempts,
                     run_at, enqueued_at, dedup_key, owner, reply_to, correlation_id, traceparent)
                 VALUES ($1, $2, $3::jsonb, $4, 'queued', $5, $6, $7, $8, $9, $10, $11, $12)
                 ON CONFLICT (queue, dedup_key) WHERE dedup_key IS NOT NULL DO NOTHING
                 RETURNING id",
            )
            .bind(&job.queue)
            .bind(&job.kind)
            .bind(&payload)
            .bind(job.priority)
            .bind(i32::try_from(job.max_attempts).unwrap_or(i32::MAX))
            .bind(job.run_at_ms.unwrap_or(now))
            .bind(now)
            .bind(&job.dedup_key)
            .bind(&job.owner)
            .bind(&job.reply_to)
            .bind(&job.correlation_id)
            .bind(&job.traceparent)
            .fetch_optional(&mut *conn)
            .await?;
            if let Some(id) = inserted {
                self.wakers.wake(&job.queue);
                return Ok(Enqueued {
                    id: JobId(id.to_string()),
                    duplicate: false,
                });
            }
            let existing: Option<i64> =
                sqlx::query_scalar("SELECT id FROM queue_jobs WHERE queue = $1 AND dedup_key = $2")
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
        }
        Err(Error::Backend(
            "deduplication key kept changing hands".into(),
        ))
    }

    pub(crate) fn now_ms(&self) -> i64 {
        self.clock.now_ms()
    }

    pub(crate) fn wake(&self, queue: &str) {
        self.wakers.wake(queue);
    }

    pub(crate) fn acks_pool(&self) -> &PgPool {
        &self.acks
    }

    /// Counts `n` completions; prunes old finished jobs every 512 of them.
    pub(crate) async fn completed(&self, n: u64, now: i64) -> Result<()> {
        let before = self.completions.fetch_add(n, Ordering::Relaxed);
        if before / 512 != (before + n) / 512 {
            let before = now - self.done_retention.as_millis() as i64;
            sqlx::query("DELETE FROM queue_done WHERE finished_at < $1")
                .bind(before)
                .execute(&self.pool)
                .await?;
        }
        Ok(())
    }

    /// Starts the LISTEN task once; it forwards each notification to the waiters of its
    /// queue and ends when the last handle is dropped.
    async fn ensure_listener(&self) {
        let pool = self.pool.clone();
        let wakers: Weak<Wakers> = Arc::downgrade(&self.wakers);
        self.listener
            .get_or_init(|| async move {
                tokio::spawn(async move {
                    let mut listener = loop {
                        if let Ok(mut l) = PgListener::connect_with(&pool).await
                            && l.listen(CHANNEL).await.is_ok()
                        {
                            break l;
                        }
                        if wakers.strong_count() == 0 {
                            return;
                        }
                        tokio::time::sleep(Duration::from_secs(1)).await;
                    };
                    loop {
                        // After a lost connection `try_recv` reconnects and re-listens.
                        let next = listener.try_recv().await;
                        let Some(wakers) = wakers.upgrade() else {
                            return;
                        };
                        match next {
                            Ok(Some(n)) => wakers.wake(n.payload()),
                            Ok(None) => {} // reconnected: waiters fall back to their poll
                            Err(e) => {
                                tracing::warn!(error = %e, "queue listener lost its connection");
                                tokio::time::sleep(Duration::from_secs(1)).await;
                            }
                        }
                    }
                });
            })
            .await;
    }

    async fn fenced(&self, sql: &str, lease: &Lease, a: i64, b: Option<&str>) -> Result<()> {
        let done = sqlx::query(sql)
            .bind(lease_id(lease)?)
            .bind(lease.token)
            .bind(a)
            .bind(b)
            .execute(&self.acks)
            .await?
            .rows_affected();
        if done == 1 {
            Ok(())
        } else {
            Err(Error::LeaseLost(lease.id.clone()))
        }
    }
}

fn dead_job(row: &PgRow) -> Result<DeadJob> {
    Ok(DeadJob {
        id: JobId(row.try_get::<i64, _>("id")?.to_string()),
        queue: row.try_get("queue")?,
        kind: row.try_get("kind")?,
        payload: stored_json(&row.try_get::<String, _>("payload")?),
        attempts: row.try_get::<i32, _>("attempts")?.max(0) as u32,
        last_error: row.try_get("last_error")?,
        died_at_ms: row.try_get("died_at")?,
        traceparent: row.try_get("traceparent")?,
    })
}

const DEAD_COLS: &str =
    "id, queue, kind, payload::text AS payload, attempts, last_error, died_at, traceparent";

const BURY: &str = "WITH moved AS (
        DELETE FROM queue_jobs WHERE id = $1 AND token = $2 AND status = 'running' RETURNING *)
    INSERT INTO queue_dead (id, queue, kind, payload, priority, attempts, max_attempts, dedup_key,
        owner, reply_to, correlation_id, last_error, token, enqueued_at, died_at, traceparent)
    SELECT id, queue, kind, payload, priority, attempts, max_attempts, dedup_key, owner,
        reply_to, correlation_id, $4, token, enqueued_at, $3, traceparent FROM moved";

#[async_trait::async_trait]
impl Backend for PostgresQueue {
    fn name(&self) -> &'static str {
        "postgres"
    }

    async fn enqueue(&self, job: NewJob) -> Result<Enqueued> {
        let mut conn = self.pool.acquire().await?;
        self.enqueue_in(&mut conn, job).await
    }

    async fn enqueue_many(&self, jobs: Vec<NewJob>) -> Result<Vec<Enqueued>> {
        crate::batch::postgres_enqueue_many(self, jobs).await
    }

    async fn complete_many(&self, acks: &[crate::Ack]) -> Result<Vec<Result<()>>> {
        crate::batch::postgres_complete_many(self, acks).await
    }

    async fn claim(&self, queue: &str, lease: Duration, limit: usize) -> Result<Vec<ClaimedJob>> {
        self.claim_from(&[queue.to_owned()], lease, limit).await
    }

    /// One statement for all the queues: each queue's best ready jobs are locked (`SKIP
    /// LOCKED`, one index range each), numbered within their queue, and the first `limit`
    /// by (number, queue position) are taken. Candidates locked but not taken are free
    /// again when the statement commits.
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
        let rows = sqlx::query(
            "WITH wanted AS (
                 SELECT name, pos FROM unnest($1::text[]) WITH ORDINALITY AS w(name, pos)),
             due AS (
                 SELECT head.id, head.status, head.run_at, wanted.pos, head.rn
                 FROM wanted CROSS JOIN LATERAL (
                     SELECT c.*, row_number() OVER (ORDER BY c.priority DESC, c.run_at, c.id) AS rn
                     FROM (SELECT id, status, run_at, priority FROM queue_jobs
                           WHERE queue = wanted.name AND run_at <= $2
                           ORDER BY priority DESC, run_at, id
                           LIMIT $3 FOR UPDATE SKIP LOCKED) c) head
                 ORDER BY head.rn, wanted.pos
                 LIMIT $3)
             UPDATE queue_jobs j SET status = 'running', attempts = j.attempts + 1,
                 token = j.token + 1, run_at = $4
             FROM due WHERE j.id = due.id
             RETURNING j.id, j.queue, j.kind, j.payload::text AS payload, j.attempts,
                 j.max_attempts, j.enqueued_at, j.token, j.owner, j.reply_to, j.correlation_id,
                 j.traceparent, due.status AS prev_status, due.run_at AS due_at,
                 due.rn, due.pos",
        )
        .bind(&queues)
        .bind(now)
        .bind(limit as i64)
        .bind(now + lease.as_millis() as i64)
        .fetch_all(&self.acks)
        .await?;
        let mut claimed = Vec::with_capacity(rows.len());
        let mut expired = vec![0u64; queues.len()];
        for row in rows {
            let id: i64 = row.try_get("id")?;
            let pos: i64 = row.try_get("pos")?;
            let lease = Lease {
                id: JobId(id.to_string()),
                queue: row.try_get("queue")?,
                token: row.try_get("token")?,
            };
            let attempt = row.try_get::<i32, _>("attempts")?.max(0) as u32;
            let max_attempts = row.try_get::<i32, _>("max_attempts")?.max(0) as u32;
            if row.try_get::<String, _>("prev_status")? == "running" {
                if let Some(n) = usize::try_from(pos - 1)
                    .ok()
                    .and_then(|q| expired.get_mut(q))
                {
                    *n += 1;
                }
                if attempt > max_attempts {
                    let why = "the lease expired on the last attempt (the worker died or hung)";
                    self.bury(&lease, why).await?;
                    continue;
                }
            }
            let rn: i64 = row.try_get("rn")?;
            claimed.push((
                (rn, pos),
                ClaimedJob {
                    lease,
                    kind: row.try_get("kind")?,
                    payload: stored_json(&row.try_get::<String, _>("payload")?),
                    attempt,
                    max_attempts,
                    enqueued_at_ms: row.try_get("enqueued_at")?,
                    run_at_ms: row.try_get("due_at")?,
                    reply_to: row.try_get("reply_to")?,
                    correlation_id: row.try_get("correlation_id")?,
                    owner: row.try_get("owner")?,
                    traceparent: row.try_get("traceparent")?,
                },
            ));
        }
        for (queue, n) in queues.iter().zip(expired) {
            if n > 0 {
                ::metrics::counter!("queue_lease_expiries_total", "queue" => (*queue).to_owned())
                    .increment(n);
            }
        }
        // RETURNING has no order: restore the round-robin order of the claim.
        claimed.sort_by_key(|(order, _)| *order);
        Ok(claimed.into_iter().map(|(_, job)| job).collect())
    }

    async fn heartbeat(&self, lease: &Lease, extend: Duration) -> Result<()> {
        let until = self.clock.now_ms() + extend.as_millis() as i64;
        let sql = "UPDATE queue_jobs SET run_at = $3
                   WHERE id = $1 AND token = $2 AND status = 'running' AND $4::text IS NULL";
        self.fenced(sql, lease, until, None).await
    }

    async fn complete(&self, lease: &Lease, result: Option<serde_json::Value>) -> Result<()> {
        let now = self.clock.now_ms();
        let sql = "WITH moved AS (
                DELETE FROM queue_jobs WHERE id = $1 AND token = $2 AND status = 'running'
                RETURNING id, queue, kind, attempts, owner, enqueued_at)
            INSERT INTO queue_done (id, queue, kind, attempts, result, owner, enqueued_at, finished_at)
            SELECT id, queue, kind, attempts, $4::jsonb, owner, enqueued_at, $3 FROM moved";
        let result = result.map(|r| r.to_string());
        self.fenced(sql, lease, now, result.as_deref()).await?;
        if self.completions.fetch_add(1, Ordering::Relaxed) % 512 == 511 {
            let before = now - self.done_retention.as_millis() as i64;
            sqlx::query("DELETE FROM queue_done WHERE finished_at < $1")
                .bind(before)
                .execute(&self.pool)
                .await?;
        }
        Ok(())
    }

    async fn retry(&self, lease: &Lease, error: &str, run_at_ms: i64) -> Result<()> {
        let sql = "UPDATE queue_jobs SET status = 'failed', run_at = $3, last_error = $4
                   WHERE id = $1 AND token = $2 AND status = 'running'";
        self.fenced(sql, lease, run_at_ms, Some(error)).await
    }

    async fn bury(&self, lease: &Lease, error: &str) -> Result<()> {
        self.fenced(BURY, lease, self.clock.now_ms(), Some(error))
            .await
    }

    async fn release(&self, lease: &Lease) -> Result<()> {
        let sql = "UPDATE queue_jobs SET attempts = GREATEST(attempts - 1, 0), run_at = $3,
                       status = CASE WHEN attempts > 1 THEN 'failed' ELSE 'queued' END
                   WHERE id = $1 AND token = $2 AND status = 'running' AND $4::text IS NULL";
        self.fenced(sql, lease, self.clock.now_ms(), None).await?;
        sqlx::query("SELECT pg_notify($1, $2)")
            .bind(CHANNEL)
            .bind(&lease.queue)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn wait_for_work(&self, queue: &str, timeout: Duration) {
        self.ensure_listener().await;
        self.wakers.wait(queue, timeout).await;
    }

    async fn job(&self, id: &JobId) -> Result<Option<JobInfo>> {
        let Some(id) = sql_id(id) else {
            return Ok(None);
        };
        let row = sqlx::query(
            "SELECT queue, kind, status, attempts, NULL::text AS result, last_error, owner FROM queue_jobs WHERE id = $1
             UNION ALL SELECT queue, kind, 'done', attempts, result::text, NULL, owner FROM queue_done WHERE id = $1
             UNION ALL SELECT queue, kind, 'dead', attempts, NULL, last_error, owner FROM queue_dead WHERE id = $1",
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
            attempts: row.try_get::<i32, _>("attempts")?.max(0) as u32,
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
            "INSERT INTO queue_subscriptions (topic, grp, kinds) VALUES ($1, $2, $3)
             ON CONFLICT (topic, grp) DO UPDATE SET kinds = excluded.kinds",
        )
        .bind(topic)
        .bind(group)
        .bind(kinds)
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
             SELECT topic || '.' || grp, $2, $3::jsonb, 'queued', 5, $4, $4, $5
             FROM queue_subscriptions WHERE topic = $1 AND (kinds IS NULL OR $2 = ANY (kinds))
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
        crate::topic::postgres_publish_many(self, topic, messages).await
    }

    async fn dead_letters(&self, queue: Option<&str>, limit: usize) -> Result<Vec<DeadJob>> {
        let sql = format!(
            "SELECT {DEAD_COLS} FROM queue_dead WHERE $1::text IS NULL OR queue = $1
             ORDER BY died_at, id LIMIT $2"
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
        let sql = format!("SELECT {DEAD_COLS} FROM queue_dead WHERE id = $1");
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
        let queue: Option<String> = sqlx::query_scalar(
            "WITH moved AS (DELETE FROM queue_dead WHERE id = $1 RETURNING *)
             INSERT INTO queue_jobs (id, queue, kind, payload, priority, status, attempts,
                 max_attempts, run_at, enqueued_at, token, dedup_key, owner, reply_to,
                 correlation_id, last_error, traceparent)
             SELECT id, queue, kind, payload, priority, 'queued', 0, max_attempts, $2,
                 enqueued_at, token,
                 CASE WHEN EXISTS (SELECT 1 FROM queue_jobs j WHERE j.queue = moved.queue
                     AND j.dedup_key = moved.dedup_key) THEN NULL ELSE dedup_key END,
                 owner, reply_to, correlation_id, last_error, traceparent
             FROM moved RETURNING queue",
        )
        .bind(id)
        .bind(self.clock.now_ms())
        .fetch_optional(&self.pool)
        .await?;
        if let Some(q) = &queue {
            self.wakers.wake(q);
        }
        Ok(queue.is_some())
    }

    async fn purge(&self, queue: Option<&str>) -> Result<u64> {
        let done = sqlx::query("DELETE FROM queue_dead WHERE $1::text IS NULL OR queue = $1")
            .bind(queue)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected())
    }

    async fn stats(&self) -> Result<Vec<QueueStats>> {
        let now = self.clock.now_ms();
        let live: Vec<(String, i64, i64, Option<i64>)> = sqlx::query_as(
            "SELECT queue, COUNT(*) FILTER (WHERE status <> 'running'),
                 COUNT(*) FILTER (WHERE status = 'running'),
                 MIN(run_at) FILTER (WHERE status <> 'running' AND run_at <= $1)
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
