//! Security audit events: appended, never changed, listed newest first by id.

use crate::{Result, Store, on_pool};

/// An event to record (never a secret in it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewEvent<'a> {
    /// When, Unix ms.
    pub at: i64,
    /// What happened (`login.failed`, `role.changed`, …).
    pub kind: &'a str,
    /// The account concerned, if known.
    pub user_id: Option<&'a str>,
    /// The client's address.
    pub ip: Option<&'a str>,
    /// Context.
    pub detail: Option<&'a str>,
}

/// A recorded event.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct EventRow {
    /// Increasing with time of recording.
    pub id: i64,
    /// When, Unix ms.
    pub at: i64,
    /// What happened.
    pub kind: String,
    /// The account concerned.
    pub user_id: Option<String>,
    /// The client's address.
    pub ip: Option<String>,
    /// Context.
    pub detail: Option<String>,
}

/// Appends an event. Events outlive the accounts they name (no foreign key).
pub async fn record(store: &Store, event: &NewEvent<'_>) -> Result<()> {
    on_pool!(store, write, pool => {
        sqlx::query("INSERT INTO audit_events (at, kind, user_id, ip, detail) VALUES ($1, $2, $3, $4, $5)")
            .bind(event.at)
            .bind(event.kind)
            .bind(event.user_id)
            .bind(event.ip)
            .bind(event.detail)
            .execute(pool)
            .await
            .map(drop)
    })?;
    Ok(())
}

/// Up to `limit` events with ids below `before`, newest first.
pub async fn list(store: &Store, before: i64, limit: i64) -> Result<Vec<EventRow>> {
    Ok(on_pool!(store, read, pool => {
        sqlx::query_as::<_, EventRow>(
            "SELECT id, at, kind, user_id, ip, detail FROM audit_events \
             WHERE id < $1 ORDER BY id DESC LIMIT $2",
        )
        .bind(before)
        .bind(limit)
        .fetch_all(pool)
        .await
    })?)
}
