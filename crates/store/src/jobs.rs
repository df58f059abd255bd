//! The status of submitted jobs as their owners see it (`GET /jobs/{id}`): one row per job,
//! written when it is submitted and around every attempt. The queue itself keeps its own
//! tables (basis-queue); this is the record that outlives delivery.

use crate::{Result, Store, on_foreign_key, on_pool};

/// Where a job stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobStatus {
    /// Waiting for a worker.
    Queued,
    /// An attempt is running.
    Running,
    /// Finished with a result.
    Done,
    /// The last attempt failed; another will follow.
    Failed,
    /// Gave up.
    Dead,
}

impl JobStatus {
    /// The stored (and shown) name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::Running => "running",
            Self::Done => "done",
            Self::Failed => "failed",
            Self::Dead => "dead",
        }
    }
}

/// A job's status row.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct JobRow {
    /// The job's id.
    pub id: String,
    /// What it does.
    pub kind: String,
    /// Who submitted it.
    pub owner_id: Option<String>,
    /// `queued`, `running`, `done`, `failed` or `dead` (see [`JobStatus`]).
    pub status: String,
    /// Attempts started so far.
    pub attempts: i64,
    /// The result, JSON text, once done.
    pub result: Option<String>,
    /// Why the last attempt failed.
    pub error: Option<String>,
}

/// A change of a job's status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusChange<'a> {
    /// The new status.
    pub status: JobStatus,
    /// The attempts so far, when known (else unchanged).
    pub attempts: Option<u32>,
    /// The result as JSON text (else unchanged).
    pub result: Option<&'a str>,
    /// Why the attempt failed (cleared when `None`).
    pub error: Option<&'a str>,
}

impl StatusChange<'_> {
    /// A change to `status` that keeps attempts and result and clears the error.
    pub fn to(status: JobStatus) -> Self {
        Self {
            status,
            attempts: None,
            result: None,
            error: None,
        }
    }
}

/// Records a submitted job as queued. An owner that no longer exists is
/// `MissingReference("user")`.
pub async fn create(
    store: &Store,
    id: &str,
    kind: &str,
    owner: Option<&str>,
    now: i64,
) -> Result<()> {
    on_pool!(store, write, pool => {
        sqlx::query(
            "INSERT INTO jobs (id, kind, owner_id, status, attempts, created_at, updated_at) \
             VALUES ($1, $2, $3, 'queued', 0, $4, $4)",
        )
        .bind(id)
        .bind(kind)
        .bind(owner)
        .bind(now)
        .execute(pool)
        .await
        .map(drop)
    })
    .map_err(|e| on_foreign_key(e, "user"))
}

/// Removes the record of a job that could not be enqueued.
pub async fn forget(store: &Store, id: &str) -> Result<()> {
    on_pool!(store, write, pool => {
        sqlx::query("DELETE FROM jobs WHERE id = $1")
            .bind(id)
            .execute(pool)
            .await
            .map(drop)
    })?;
    Ok(())
}

/// Applies `change` to job `id` at `now` (nothing happens for an unknown id).
pub async fn set_status(
    store: &Store,
    id: &str,
    change: &StatusChange<'_>,
    now: i64,
) -> Result<()> {
    on_pool!(store, write, pool => {
        sqlx::query(
            "UPDATE jobs SET status = $2, attempts = COALESCE($3, attempts), \
             result = COALESCE($4, result), error = $5, updated_at = $6 WHERE id = $1",
        )
        .bind(id)
        .bind(change.status.as_str())
        .bind(change.attempts.map(i64::from))
        .bind(change.result)
        .bind(change.error)
        .bind(now)
        .execute(pool)
        .await
        .map(drop)
    })?;
    Ok(())
}

/// The status row of job `id`.
pub async fn find(store: &Store, id: &str) -> Result<Option<JobRow>> {
    Ok(on_pool!(store, read, pool => {
        sqlx::query_as::<_, JobRow>(
            "SELECT id, kind, owner_id, status, attempts, result, error FROM jobs WHERE id = $1",
        )
        .bind(id)
        .fetch_optional(pool)
        .await
    })?)
}
