//! Security audit events: stored without secrets, readable by admins.

use axum::extract::{Query, State};
use axum::response::Response;
use basis_auth::role::Role;
use basis_store::on_pool;
use chrono::{DateTime, Utc};
use serde::Serialize;
use utoipa::ToSchema;

use crate::auth::ClientIp;
use crate::caller::Caller;
use crate::clock::to_datetime;
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;
use crate::users::api::{List, Page, list_response};

/// One event.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AuditEvent {
    /// The event's id (the list is newest first).
    pub id: String,
    /// When it happened.
    pub at: DateTime<Utc>,
    /// What happened: `login.succeeded`, `login.failed`, `login.throttled`,
    /// `refresh.reused`, `role.changed`, `api_key.created`, `password.changed`, …
    pub kind: String,
    /// The account concerned, if known.
    pub user_id: Option<String>,
    /// The client's address.
    pub ip: Option<String>,
    /// Context (never a secret).
    pub detail: Option<String>,
}

/// Records an event. A failure to record is logged, not returned: the audit log must not
/// turn a successful login into an error.
pub async fn record(
    state: &AppState,
    kind: &str,
    user_id: Option<&str>,
    ip: &ClientIp,
    detail: Option<&str>,
) {
    let now = state.clock.now_ms();
    let ip = ip.text();
    let result = on_pool!(state.store, write, pool => {
        sqlx::query("INSERT INTO audit_events (at, kind, user_id, ip, detail) VALUES ($1, $2, $3, $4, $5)")
            .bind(now).bind(kind).bind(user_id).bind(&ip).bind(detail)
            .execute(pool).await.map(drop)
    });
    tracing::info!(kind, user_id, ip, detail, "audit");
    if let Err(err) = result {
        tracing::error!(error = %err, kind, "cannot record an audit event");
    }
}

#[derive(sqlx::FromRow)]
struct Row {
    id: i64,
    at: i64,
    kind: String,
    user_id: Option<String>,
    ip: Option<String>,
    detail: Option<String>,
}

/// The audit log, newest first (admins).
#[utoipa::path(get, path = "/admin/audit", tag = "admin", params(Page),
    responses((status = 200, body = List<AuditEvent>), (status = 401), (status = 403)))]
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    query: Result<Query<Page>, axum::extract::rejection::QueryRejection>,
) -> ApiResult<Response> {
    caller.require_role(Role::Admin)?;
    let Query(page) = query.map_err(|e| ApiError::BadRequest(e.body_text()))?;
    let limit = page.limit()?;
    let before = match page.cursor.as_deref() {
        None => i64::MAX,
        Some(c) => c
            .parse()
            .map_err(|_| ApiError::field("cursor", "is not a cursor from this list"))?,
    };
    let mut rows = on_pool!(state.store, read, pool => {
        sqlx::query_as::<_, Row>(
            "SELECT id, at, kind, user_id, ip, detail FROM audit_events WHERE id < $1 ORDER BY id DESC LIMIT $2",
        )
        .bind(before).bind(limit + 1).fetch_all(pool).await
    })
    .map_err(basis_store::Error::from)?;
    let next_cursor = (rows.len() as i64 > limit).then(|| {
        rows.truncate(limit as usize);
        rows.last().map(|r| r.id.to_string()).unwrap_or_default()
    });
    let items = rows
        .into_iter()
        .map(|r| AuditEvent {
            id: r.id.to_string(),
            at: to_datetime(r.at),
            kind: r.kind,
            user_id: r.user_id,
            ip: r.ip,
            detail: r.detail,
        })
        .collect();
    Ok(list_response(
        "/admin/audit",
        limit,
        List { items, next_cursor },
    ))
}
