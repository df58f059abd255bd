//! The operators' view of checkout sagas: `GET /admin/sagas`, and
//! `POST /admin/sagas/{id}/retry|compensate` (admins).

use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use basis_auth::role::Role;
use serde::Deserialize;
use utoipa::IntoParams;

use super::views::{SagaView, json_response, refusal};
use crate::error::{ApiError, ApiResult, Problem};
use crate::http::rest::{List, id_cursor, list_response, parse_id};
use crate::identity::caller::Caller;
use crate::state::AppState;

/// Which sagas to list.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct SagaQuery {
    /// `stuck`, `running`, `compensating`, `completed` or `compensated`; all when absent.
    #[param(pattern = "^(stuck|running|compensating|completed|compensated)$")]
    pub status: Option<String>,
    /// Items per page (1–100, default 20).
    #[param(minimum = 1, maximum = 100)]
    pub limit: Option<i64>,
    /// The `nextCursor` of the previous page.
    #[param(value_type = Option<crate::http::schema::IdCursor>)]
    pub cursor: Option<String>,
}

const STATUSES: [&str; 5] = [
    "running",
    "compensating",
    "completed",
    "compensated",
    "stuck",
];

/// Sagas by id, optionally of one status, in cursor pages (admins).
#[utoipa::path(get, path = "/admin/sagas", tag = "shop", params(SagaQuery),
    responses((status = 200, body = List<SagaView>),
        (status = 400, body = Problem, content_type = "application/problem+json"),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json")))]
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    query: Result<Query<SagaQuery>, QueryRejection>,
) -> ApiResult<Response> {
    caller.require_role(Role::Admin)?;
    let Query(query) = query.map_err(|e| ApiError::BadRequest(e.body_text()))?;
    let limit = match query.limit.unwrap_or(20) {
        n @ 1..=100 => n,
        _ => return Err(ApiError::field("limit", "must be between 1 and 100")),
    };
    let status = match query.status.as_deref() {
        None => None,
        Some(s) if STATUSES.contains(&s) => Some(s),
        Some(_) => {
            return Err(ApiError::field(
                "status",
                format!("must be one of {}", STATUSES.join(", ")),
            ));
        }
    };
    let after = id_cursor(query.cursor.as_deref(), 0)?;
    let rows = state
        .shop
        .checkout
        .list(status, after, limit + 1)
        .await
        .map_err(refusal)?;
    let list = List::from_rows(rows, limit, |r| r.id.to_string(), |r| SagaView::from(r));
    let path = match status {
        Some(s) => format!("/admin/sagas?status={s}"),
        None => "/admin/sagas".to_owned(),
    };
    let mut response = list_response(&path, limit, list);
    // `list_response` appends `?limit=`; with a status the link needs `&limit=`.
    if let Some(link) = response.headers().get("link").and_then(|l| l.to_str().ok()) {
        let fixed = link.replacen("?limit=", "&limit=", usize::from(status.is_some()));
        if let Ok(value) = fixed.parse() {
            response.headers_mut().insert("link", value);
        }
    }
    Ok(response)
}

/// Runs a saga's current step (or compensation) again now with fresh attempts; a `stuck`
/// saga resumes compensating (admins). 409 on a finished saga.
#[utoipa::path(post, path = "/admin/sagas/{id}/retry", tag = "shop",
    params(("id" = i64, Path, description = "The saga id (its order's)")),
    responses((status = 200, body = SagaView),
        (status = 400, body = Problem, content_type = "application/problem+json"),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The saga has finished", body = Problem, content_type = "application/problem+json")))]
pub async fn retry(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    operate(state, caller, id, false).await
}

/// Stops a saga going forward and undoes what it did, in reverse (admins). 409 on a
/// finished saga.
#[utoipa::path(post, path = "/admin/sagas/{id}/compensate", tag = "shop",
    params(("id" = i64, Path, description = "The saga id (its order's)")),
    responses((status = 200, body = SagaView),
        (status = 400, body = Problem, content_type = "application/problem+json"),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The saga has finished", body = Problem, content_type = "application/problem+json")))]
pub async fn compensate(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    operate(state, caller, id, true).await
}

async fn operate(state: AppState, caller: Caller, id: String, undo: bool) -> ApiResult<Response> {
    let principal = caller.require_role(Role::Admin)?;
    let id = parse_id(&id)?;
    let checkout = &state.shop.checkout;
    let saga = if undo {
        checkout.compensate(id).await
    } else {
        checkout.retry(id).await
    }
    .map_err(refusal)?;
    if let Err(err) = state
        .shop
        .nudge(saga.id, saga.next_run_at, saga.lease_token)
        .await
    {
        tracing::warn!(error = %err, saga = saga.id, "could not enqueue the saga; the sweeper will");
    }
    let kind = if undo {
        "shop.saga.compensate"
    } else {
        "shop.saga.retry"
    };
    crate::audit::record(
        &state,
        kind,
        Some(&principal.user_id),
        &crate::http::extract::ClientIp(None),
        Some(&format!("saga {id}")),
    )
    .await;
    json_response(StatusCode::OK, None, &SagaView::from(&saga))
}
