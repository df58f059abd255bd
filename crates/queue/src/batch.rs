//! Batched enqueue and completion on the SQL engines: many jobs per statement.
//!
//! A queue drains at the rate of its statements, not of its jobs: one round trip and one
//! commit per job is the ceiling of the one-job-at-a-time API. Here an enqueue of `n` jobs
//! is one `INSERT` (PostgreSQL: any `n`, as arrays; SQLite: up to [`SQLITE_CHUNK`] jobs per
//! statement, all chunks in one transaction), and a completion of `n` attempts is one
//! fenced statement: each job moves to `queue_done` only if its lease's token is still the
//! current one, so a lease lost in the middle of a batch refuses that job's ack alone.
//! Deduplication keys apply as for single enqueues, also between jobs of the same batch.

use std::collections::{HashMap, HashSet};

use sqlx::Row;
use tracing::Instrument as _;

use crate::postgres::PostgresQueue;
use crate::sqlite::SqliteQueue;
use crate::{Enqueued, Error, JobId, Lease, NewJob, Result, lease_id, trace, validate};

/// Jobs per SQLite statement: 12 bound values each stays below SQLite's 32,766 limit.
pub(crate) const SQLITE_CHUNK: usize = 1_000;

/// One acknowledgement: the attempt's lease and the result to store.
pub type Ack = (Lease, Option<serde_json::Value>);

/// Matches the rows a batch `INSERT` returned, in id order, to the jobs that asked for
/// them: jobs are inserted in order, each new one with a larger id, and a job is skipped
/// only when its deduplication key is already held (in the table or earlier in the batch).
/// `None` marks a duplicate of a job from before the batch, to be looked up.
fn match_inserted(
    jobs: &[NewJob],
    mut rows: Vec<(i64, String, Option<String>)>,
) -> Vec<Option<Enqueued>> {
    rows.sort_by_key(|(id, _, _)| *id);
    let mut rows = rows.into_iter().peekable();
    let mut in_batch: HashMap<(&str, &str), i64> = HashMap::new();
    let mut out = Vec::with_capacity(jobs.len());
    for job in jobs {
        let fresh = |id: i64| {
            Some(Enqueued {
                id: JobId(id.to_string()),
                duplicate: false,
            })
        };
        match job.dedup_key.as_deref() {
            None => out.push(rows.next().and_then(|(id, _, _)| fresh(id))),
            Some(key) => {
                if let Some(&id) = in_batch.get(&(job.queue.as_str(), key)) {
                    out.push(Some(Enqueued {
                        id: JobId(id.to_string()),
                        duplicate: true,
                    }));
                } else if rows
                    .peek()
                    .is_some_and(|(_, q, k)| q == &job.queue && k.as_deref() == Some(key))
                {
                    let (id, _, _) = rows.next().unwrap_or_default();
                    in_batch.insert((job.queue.as_str(), key), id);
                    out.push(fresh(id));
                } else {
                    out.push(None);
                }
            }
        }
    }
    out
}

/// Fills the duplicates of jobs enqueued before the batch; a key freed in the meantime is
/// enqueued again the ordinary way (which retries such races itself).
async fn fill_duplicates<B: crate::Backend + ?Sized>(
    backend: &B,
    jobs: Vec<NewJob>,
    matched: Vec<Option<Enqueued>>,
    existing: impl AsyncLookup,
) -> Result<Vec<Enqueued>> {
    let mut out = Vec::with_capacity(jobs.len());
    for (job, got) in jobs.into_iter().zip(matched) {
        match got {
            Some(enqueued) => out.push(enqueued),
            None => match existing.lookup(&job).await? {
                Some(id) => out.push(Enqueued {
                    id: JobId(id.to_string()),
                    duplicate: true,
                }),
                None => out.push(backend.enqueue(job).await?),
            },
        }
    }
    Ok(out)
}

/// Finds the unfinished job holding a job's deduplication key.
trait AsyncLookup {
    async fn lookup(&self, job: &NewJob) -> Result<Option<i64>>;
}

impl AsyncLookup for &SqliteQueue {
    async fn lookup(&self, job: &NewJob) -> Result<Option<i64>> {
        Ok(
            sqlx::query_scalar("SELECT id FROM queue_jobs WHERE queue = ?1 AND dedup_key = ?2")
                .bind(&job.queue)
                .bind(&job.dedup_key)
                .fetch_optional(self.pool())
                .await?,
        )
    }
}

impl AsyncLookup for &PostgresQueue {
    async fn lookup(&self, job: &NewJob) -> Result<Option<i64>> {
        Ok(
            sqlx::query_scalar("SELECT id FROM queue_jobs WHERE queue = $1 AND dedup_key = $2")
                .bind(&job.queue)
                .bind(&job.dedup_key)
                .fetch_optional(self.pool())
                .await?,
        )
    }
}

/// Answers per ack from the ids the fenced statement moved: each moved id acknowledges
/// its first ack; every other ack lost its lease.
fn ack_results(acks: &[Ack], moved: impl IntoIterator<Item = i64>) -> Vec<Result<()>> {
    let mut moved: HashSet<i64> = moved.into_iter().collect();
    acks.iter()
        .map(|(lease, _)| match lease_id(lease) {
            Ok(id) if moved.remove(&id) => Ok(()),
            _ => Err(Error::LeaseLost(lease.id.clone())),
        })
        .collect()
}

pub(crate) async fn sqlite_enqueue_many(
    q: &SqliteQueue,
    mut jobs: Vec<NewJob>,
) -> Result<Vec<Enqueued>> {
    for job in &jobs {
        validate(job)?;
    }
    let span = trace::enqueue_many_span(crate::Backend::name(q), &jobs);
    trace::stamp(&span, &mut jobs);
    sqlite_insert_many(q, jobs).instrument(span).await
}

async fn sqlite_insert_many(q: &SqliteQueue, jobs: Vec<NewJob>) -> Result<Vec<Enqueued>> {
    let now = q.now_ms();
    let mut tx = q.pool().begin_with("BEGIN IMMEDIATE").await?;
    let mut rows = Vec::with_capacity(jobs.len());
    for chunk in jobs.chunks(SQLITE_CHUNK) {
        let values = vec!["(?, ?, ?, ?, 'queued', ?, ?, ?, ?, ?, ?, ?, ?)"; chunk.len()].join(", ");
        let sql = format!(
            "INSERT INTO queue_jobs (queue, kind, payload, priority, status, max_attempts,
                 run_at, enqueued_at, dedup_key, owner, reply_to, correlation_id, traceparent)
             VALUES {values}
             ON CONFLICT (queue, dedup_key) WHERE dedup_key IS NOT NULL DO NOTHING
             RETURNING id, queue, dedup_key"
        );
        let mut query = sqlx::query(&sql);
        for job in chunk {
            query = query
                .bind(&job.queue)
                .bind(&job.kind)
                .bind(job.payload.to_string())
                .bind(job.priority)
                .bind(job.max_attempts)
                .bind(job.run_at_ms.unwrap_or(now))
                .bind(now)
                .bind(&job.dedup_key)
                .bind(&job.owner)
                .bind(&job.reply_to)
                .bind(&job.correlation_id)
                .bind(&job.traceparent);
        }
        for row in query.fetch_all(&mut *tx).await? {
            rows.push((row.try_get(0)?, row.try_get(1)?, row.try_get(2)?));
        }
    }
    tx.commit().await?;
    wake_each(jobs.iter().map(|j| j.queue.as_str()), |queue| q.wake(queue));
    let matched = match_inserted(&jobs, rows);
    fill_duplicates(q, jobs, matched, q).await
}

pub(crate) async fn sqlite_complete_many(q: &SqliteQueue, acks: &[Ack]) -> Result<Vec<Result<()>>> {
    let now = q.now_ms();
    let mut tx = q.pool().begin_with("BEGIN IMMEDIATE").await?;
    let mut moved = Vec::with_capacity(acks.len());
    // One ack per job: a second ack of the same attempt would insert its row twice.
    let mut seen = HashSet::new();
    let unique: Vec<&Ack> = acks
        .iter()
        .filter(|(lease, _)| seen.insert(lease_id(lease).unwrap_or(-1)))
        .collect();
    for chunk in unique.chunks(SQLITE_CHUNK) {
        let values = vec!["(?, ?, ?)"; chunk.len()].join(", ");
        let sql = format!(
            "WITH acks (id, token, result) AS (VALUES {values})
             INSERT INTO queue_done (id, queue, kind, attempts, result, owner, enqueued_at, finished_at)
             SELECT j.id, j.queue, j.kind, j.attempts, a.result, j.owner, j.enqueued_at, ?
             FROM acks a JOIN queue_jobs j ON j.id = a.id AND j.token = a.token
             WHERE j.status = 'running'
             RETURNING id"
        );
        let mut query = sqlx::query(&sql);
        for (lease, result) in chunk.iter().copied() {
            // An id that cannot be ours matches no row (-1 is never an id).
            query = query
                .bind(lease_id(lease).unwrap_or(-1))
                .bind(lease.token)
                .bind(result.as_ref().map(|r| r.to_string()));
        }
        let ids: Vec<i64> = query
            .bind(now)
            .fetch_all(&mut *tx)
            .await?
            .iter()
            .map(|row| row.try_get(0))
            .collect::<Result<_, _>>()?;
        let list = vec!["?"; ids.len()].join(", ");
        if !ids.is_empty() {
            let sql = format!("DELETE FROM queue_jobs WHERE id IN ({list})");
            let mut delete = sqlx::query(&sql);
            for id in &ids {
                delete = delete.bind(id);
            }
            delete.execute(&mut *tx).await?;
        }
        moved.extend(ids);
    }
    tx.commit().await?;
    q.completed(moved.len() as u64, now).await?;
    Ok(ack_results(acks, moved))
}

pub(crate) async fn postgres_enqueue_many(
    q: &PostgresQueue,
    mut jobs: Vec<NewJob>,
) -> Result<Vec<Enqueued>> {
    for job in &jobs {
        validate(job)?;
    }
    let span = trace::enqueue_many_span(crate::Backend::name(q), &jobs);
    trace::stamp(&span, &mut jobs);
    postgres_insert_many(q, jobs).instrument(span).await
}

async fn postgres_insert_many(q: &PostgresQueue, jobs: Vec<NewJob>) -> Result<Vec<Enqueued>> {
    let now = q.now_ms();
    let col = |f: fn(&NewJob) -> Option<String>| jobs.iter().map(f).collect::<Vec<_>>();
    // Ids are drawn before the insert, so each job's row (or its conflict) maps back to it.
    let rows = sqlx::query(
        "WITH input AS (
             SELECT t.*, nextval('queue_job_ids') AS id
             FROM unnest($1::text[], $2::text[], $3::text[], $4::smallint[], $5::int[],
                         $6::bigint[], $7::text[], $8::text[], $9::text[], $10::text[],
                         $12::text[])
                  WITH ORDINALITY AS t(queue, kind, payload, priority, max_attempts, run_at,
                                       dedup_key, owner, reply_to, correlation_id, traceparent,
                                       n)),
         inserted AS (
             INSERT INTO queue_jobs (id, queue, kind, payload, priority, status, max_attempts,
                 run_at, enqueued_at, dedup_key, owner, reply_to, correlation_id, traceparent)
             SELECT id, queue, kind, payload::jsonb, priority, 'queued', max_attempts, run_at,
                 $11, dedup_key, owner, reply_to, correlation_id, traceparent
             FROM input ORDER BY n
             ON CONFLICT (queue, dedup_key) WHERE dedup_key IS NOT NULL DO NOTHING
             RETURNING id)
         SELECT input.id, input.queue, input.dedup_key, inserted.id IS NOT NULL AS fresh
         FROM input LEFT JOIN inserted USING (id) ORDER BY input.n",
    )
    .bind(col(|j| Some(j.queue.clone())))
    .bind(col(|j| Some(j.kind.clone())))
    .bind(col(|j| Some(j.payload.to_string())))
    .bind(jobs.iter().map(|j| j.priority).collect::<Vec<_>>())
    .bind(
        jobs.iter()
            .map(|j| i32::try_from(j.max_attempts).unwrap_or(i32::MAX))
            .collect::<Vec<_>>(),
    )
    .bind(
        jobs.iter()
            .map(|j| j.run_at_ms.unwrap_or(now))
            .collect::<Vec<_>>(),
    )
    .bind(col(|j| j.dedup_key.clone()))
    .bind(col(|j| j.owner.clone()))
    .bind(col(|j| j.reply_to.clone()))
    .bind(col(|j| j.correlation_id.clone()))
    .bind(now)
    .bind(col(|j| j.traceparent.clone()))
    .fetch_all(q.pool())
    .await?;
    let mut inserted = Vec::with_capacity(rows.len());
    for row in &rows {
        if row.try_get::<bool, _>("fresh")? {
            inserted.push((
                row.try_get("id")?,
                row.try_get("queue")?,
                row.try_get("dedup_key")?,
            ));
        }
    }
    wake_each(jobs.iter().map(|j| j.queue.as_str()), |queue| q.wake(queue));
    let matched = match_inserted(&jobs, inserted);
    fill_duplicates(q, jobs, matched, q).await
}

pub(crate) async fn postgres_complete_many(
    q: &PostgresQueue,
    acks: &[Ack],
) -> Result<Vec<Result<()>>> {
    let now = q.now_ms();
    let ids: Vec<i64> = acks
        .iter()
        .map(|(l, _)| lease_id(l).unwrap_or(-1))
        .collect();
    let tokens: Vec<i64> = acks.iter().map(|(l, _)| l.token).collect();
    let results: Vec<Option<String>> = acks
        .iter()
        .map(|(_, r)| r.as_ref().map(|r| r.to_string()))
        .collect();
    let moved: Vec<i64> = sqlx::query_scalar(
        "WITH acks AS (
             SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::text[]) AS a(id, token, result)),
         moved AS (
             DELETE FROM queue_jobs j USING acks a
             WHERE j.id = a.id AND j.token = a.token AND j.status = 'running'
             RETURNING j.id, j.queue, j.kind, j.attempts, j.owner, j.enqueued_at, a.result)
         INSERT INTO queue_done (id, queue, kind, attempts, result, owner, enqueued_at, finished_at)
         SELECT id, queue, kind, attempts, result::jsonb, owner, enqueued_at, $4 FROM moved
         RETURNING id",
    )
    .bind(&ids)
    .bind(&tokens)
    .bind(&results)
    .bind(now)
    .fetch_all(q.acks_pool())
    .await?;
    q.completed(moved.len() as u64, now).await?;
    Ok(ack_results(acks, moved))
}

/// Wakes each of `queues` once, however often it is named.
pub(crate) fn wake_each<'a>(queues: impl IntoIterator<Item = &'a str>, mut wake: impl FnMut(&str)) {
    let mut woken = HashSet::new();
    for queue in queues {
        if woken.insert(queue) {
            wake(queue);
        }
    }
}
