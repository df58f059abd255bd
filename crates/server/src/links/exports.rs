//! Click exports: `POST /links/{code}/exports` answers 202 with a job; the worker writes
//! the link's statistics as CSV, and the job's `result.downloadUrl`
//! (`/links/{code}/exports/{id}`) serves it to the link's owner (and admins) only.
//!
//! The CSV has one row per figure: `dimension,key,clicks,bot_clicks`, with `day` rows
//! (oldest first, `YYYY-MM-DD`, human and bot clicks), then `referrer` rows (hosts, human
//! clicks) and `device` rows (clicks per device class, bots as their own class). It holds
//! the stored aggregates when the job ran (clicks of the last flush interval come later).
//!
//! Idempotent: the export is stored under its job's id, and a second delivery finds it.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use basis_auth::role::{Role, Scope};
use basis_queue::{ClaimedJob, JobError};
use basis_store::exports;
use basis_store::links::{self, LinkRow};
use serde::Deserialize;

use super::code::ShortCode;
use super::domains::{DomainParam, LinkDomain};
use crate::clock::to_datetime;
use crate::error::{ApiError, ApiResult};
use crate::identity::caller::{Authenticated, Caller};
use crate::jobs::context::JobContext;
use crate::state::AppState;

/// The job kind.
pub const EXPORT: &str = "links.export";
/// Every day since the link was made: far more than any link has lived.
const ALL_DAYS: i64 = 100_000;
/// Referrer hosts listed.
const TOP_REFERRERS: i64 = 1_000;

/// The link behind `code` on `domain` if `caller` owns it (or is an admin); 404 for anyone
/// else, so codes and exports cannot be probed.
pub(super) async fn owned_link(
    state: &AppState,
    caller: &Caller,
    (code, domain): (&str, &LinkDomain),
) -> ApiResult<LinkRow> {
    let principal = caller.require()?;
    caller.require_scope(Scope::LinksRead)?;
    let code = ShortCode::parse(code).ok_or(ApiError::NotFound)?;
    let key = state.codes.key_of(code.as_str());
    let row = links::find_in(&state.store, key, domain.lookup())
        .await?
        .filter(|row| domain.admits(row.domain.as_deref()))
        .ok_or(ApiError::NotFound)?;
    let owner = row.owner_id.as_deref() == Some(principal.user_id.as_str());
    if owner || principal.role.at_least(Role::Admin) {
        Ok(row)
    } else {
        Err(ApiError::NotFound)
    }
}

/// Starts an export of a link's clicks (its owner or an admin): 202 with the job.
#[utoipa::path(post, path = "/links/{code}/exports", tag = "links",
    params(("code" = String, Path, description = "The short code"), DomainParam),
    responses(
        (status = 202, body = crate::jobs::JobAccepted, headers(("Location" = String, description = "The job: /jobs/{id}"))),
        (status = 400, description = "A `domain` this server does not serve", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 401, body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such link, or not yours", body = crate::error::Problem, content_type = "application/problem+json"),
    ))]
pub async fn create(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    Path(code): Path<String>,
    domain: LinkDomain,
) -> ApiResult<Response> {
    let row = owned_link(&state, &caller, (&code, &domain)).await?;
    let owner = caller.require()?.user_id.clone();
    let mut payload = serde_json::Map::new();
    payload.insert("linkId".into(), row.id.into());
    payload.insert("code".into(), state.codes.code_of(&row).into());
    let id = state
        .jobs
        .submit(crate::jobs::EXPORTS_QUEUE, EXPORT, &owner, None, payload, 5)
        .await?;
    Ok(crate::jobs::accepted(id))
}

/// Downloads a finished export (the link's owner or an admin).
#[utoipa::path(get, path = "/links/{code}/exports/{id}", tag = "links",
    params(("code" = String, Path, description = "The short code"), ("id" = String, Path, description = "The export job's id"), DomainParam),
    responses(
        (status = 200, description = "The CSV", content_type = "text/csv"),
        (status = 400, description = "A `domain` this server does not serve", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 401, body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such export (yet), or not yours", body = crate::error::Problem, content_type = "application/problem+json"),
    ))]
pub async fn download(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    Path((code, id)): Path<(String, String)>,
    domain: LinkDomain,
) -> ApiResult<Response> {
    let row = owned_link(&state, &caller, (&code, &domain)).await?;
    let csv = exports::csv(&state.store, &id, row.id)
        .await?
        .ok_or(ApiError::NotFound)?;
    let disposition = HeaderValue::from_str(&format!(
        "attachment; filename=\"{}-clicks.csv\"",
        state.codes.code_of(&row)
    ))
    .map_err(|e| ApiError::Internal(e.into()))?;
    let mut response = csv.into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/csv; charset=utf-8"),
    );
    headers.insert(header::CONTENT_DISPOSITION, disposition);
    headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("private, no-store"),
    );
    Ok(response)
}

/// One CSV field: quoted when needed, and never read as a formula by a spreadsheet.
pub(super) fn field(text: &str) -> String {
    let text = if text.starts_with(['=', '+', '-', '@']) {
        format!("'{text}")
    } else {
        text.to_owned()
    };
    if text.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text
    }
}

/// The CSV of a link's stored statistics; returns it with its number of data rows.
pub fn render(stats: &links::LinkStats) -> (String, usize) {
    let mut csv = String::from("dimension,key,clicks,bot_clicks\n");
    let mut rows = 0;
    for (day, clicks, bots) in stats.days.iter().rev() {
        let date = to_datetime(day * 86_400_000).format("%Y-%m-%d");
        csv.push_str(&format!("day,{date},{clicks},{bots}\n"));
        rows += 1;
    }
    for (host, clicks) in &stats.referrers {
        csv.push_str(&format!("referrer,{},{clicks},\n", field(host)));
        rows += 1;
    }
    for (device, clicks) in &stats.devices {
        csv.push_str(&format!("device,{},{clicks},\n", field(device)));
        rows += 1;
    }
    (csv, rows)
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ExportJob {
    job_id: String,
    link_id: i64,
    code: String,
}

fn retry(err: impl std::fmt::Display) -> JobError {
    JobError::Retry(err.to_string())
}

/// The worker side: writes the CSV once per job.
pub async fn export(
    ctx: Arc<JobContext>,
    job: ClaimedJob,
) -> Result<Option<serde_json::Value>, JobError> {
    let task: ExportJob = serde_json::from_value(job.payload).map_err(JobError::bad_payload)?;
    let result = |rows: i64| {
        serde_json::json!({
            "downloadUrl": format!("/links/{}/exports/{}", task.code, task.job_id),
            "rows": rows,
        })
    };
    let existing = exports::rows(&ctx.store, &task.job_id, task.link_id)
        .await
        .map_err(retry)?;
    if let Some(rows) = existing {
        return Ok(Some(result(rows)));
    }
    let stats = links::stats(&ctx.store, task.link_id, ALL_DAYS, TOP_REFERRERS)
        .await
        .map_err(retry)?;
    let (csv, rows) = render(&stats);
    let rows = rows as i64;
    let now = ctx.clock.now_ms();
    match exports::insert(&ctx.store, &task.job_id, task.link_id, &csv, rows, now).await {
        Ok(()) => Ok(Some(result(rows))),
        // The link was deleted meanwhile: there is nothing left to export.
        Err(basis_store::Error::MissingReference(_)) => {
            Err(JobError::Fatal("the link no longer exists".into()))
        }
        Err(err) => Err(retry(err)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_that_could_break_the_csv_or_run_as_formulas_are_neutralised() {
        assert_eq!(field("news.example"), "news.example");
        assert_eq!(field("a,b"), "\"a,b\"");
        assert_eq!(field("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(field("=HYPERLINK(1)"), "'=HYPERLINK(1)");
    }

    #[test]
    fn days_come_oldest_first_then_referrers_and_devices() {
        let stats = links::LinkStats {
            days: vec![(1, 5, 1), (0, 2, 0)],
            bot_clicks: 1,
            referrers: vec![("news.example".into(), 4)],
            devices: vec![("desktop".into(), 6), ("bot".into(), 1)],
        };
        let (csv, rows) = render(&stats);
        assert_eq!(rows, 5);
        assert_eq!(
            csv,
            "dimension,key,clicks,bot_clicks\nday,1970-01-01,2,0\nday,1970-01-02,5,1\n\
             referrer,news.example,4,\ndevice,desktop,6,\ndevice,bot,1,\n"
        );
    }
}
