//! The visit log: `GET /links/{code}/visits`, a link's individual visits (owner or admin),
//! newest first in cursor pages, or all of them as CSV (`Accept: text/csv` or
//! `?format=csv`, streamed); and the pruning of visits older than `--visit-log-days`.
//!
//! Visits are gathered by the click recorder and stored by the click worker
//! ([`super::recorder`], [`super::click_batches`]); nothing here runs on the redirect path.

use futures_util::StreamExt;
use std::time::Duration;

use axum::Json;
use axum::body::Body;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, Uri, header};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use basis_store::links::{self, Bots, VisitQuery};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::device::Device;
use super::domains::{DomainParam, LinkDomain};
use super::exports::{field, owned_link};
use super::geoip::Country;
use crate::clock::to_datetime;
use crate::error::{ApiError, ApiResult, Problem};
use crate::identity::caller::Caller;
use crate::state::AppState;

/// Rows read per query while a CSV export streams.
const CSV_CHUNK: i64 = 1_000;
/// How often the pruning job runs.
const PRUNE_EVERY: Duration = Duration::from_secs(3600);
const DAY_MS: i64 = 86_400_000;

/// The query of `GET /links/{code}/visits`.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct VisitParams {
    /// Visits at or after this time (RFC 3339).
    pub since: Option<String>,
    /// Visits before this time (RFC 3339).
    pub until: Option<String>,
    /// Only this device class: `desktop`, `mobile`, `tablet` or `bot`.
    pub device: Option<String>,
    /// Only this browser family (`chrome`, `firefox`, `safari`, `edge`, `opera`, …, `other`).
    pub browser: Option<String>,
    /// Only visits referred by this host.
    pub referrer: Option<String>,
    /// Only visits from this country (ISO 3166-1 alpha-2, e.g. `FR`; known only with
    /// `--geoip-db`).
    pub country: Option<String>,
    /// `exclude` (the default: humans only), `include` or `only`.
    #[param(pattern = "^(exclude|include|only)$")]
    pub bots: Option<String>,
    /// Page size, 1–100 (default 20); ignored by the CSV export, which holds every visit.
    #[param(value_type = Option<i64>, minimum = 1, maximum = 100)]
    pub limit: Option<String>,
    /// The `nextCursor` of the previous page.
    #[param(value_type = Option<crate::http::schema::PageCursor>)]
    pub cursor: Option<String>,
    /// `json` (the default) or `csv`; `Accept: text/csv` also asks for CSV.
    #[param(pattern = "^(json|csv)$")]
    pub format: Option<String>,
}

/// One visit.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct VisitView {
    /// When.
    pub at: DateTime<Utc>,
    /// The referring host, if the browser said.
    pub referrer: Option<String>,
    /// The device class.
    pub device: String,
    /// The browser family.
    pub browser: String,
    /// The country (ISO 3166 alpha-2), when known.
    pub country: Option<String>,
    /// Whether the client was a bot.
    pub bot: bool,
    /// The client's network: its address cut to /24 (IPv4) or /48 (IPv6).
    pub ip: Option<String>,
}

/// A page of visits.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct VisitPage {
    /// The visits, newest first.
    pub items: Vec<VisitView>,
    /// Pass as `cursor` for the next page; `null` at the end.
    pub next_cursor: Option<String>,
}

#[derive(Debug, Serialize, Deserialize)]
struct Cursor {
    at: i64,
    id: i64,
}

fn time_of(name: &str, raw: Option<&str>) -> ApiResult<Option<i64>> {
    raw.map(|text| {
        DateTime::parse_from_rfc3339(text.trim())
            .map(|t| t.timestamp_millis())
            .map_err(|_| ApiError::field(name, "must be an RFC 3339 time"))
    })
    .transpose()
}

fn word_of(name: &str, raw: Option<String>, max: usize) -> ApiResult<Option<String>> {
    match raw {
        Some(text) if text.is_empty() || text.len() > max => Err(ApiError::field(
            name,
            format!("must be 1 to {max} characters"),
        )),
        other => Ok(other.map(|t| t.to_ascii_lowercase())),
    }
}

/// The store's query for `params` (without cursor and limit).
fn query_of(link_id: i64, params: VisitParams) -> ApiResult<(VisitQuery, bool)> {
    let since = time_of("since", params.since.as_deref())?;
    let until = time_of("until", params.until.as_deref())?;
    let device = word_of("device", params.device, 16)?;
    if device
        .as_deref()
        .is_some_and(|d| !Device::ALL.iter().any(|c| c.as_str() == d))
    {
        return Err(ApiError::field(
            "device",
            "must be one of desktop, mobile, tablet, bot",
        ));
    }
    let bots = match params.bots.as_deref() {
        None | Some("exclude") => Bots::Exclude,
        Some("include") => Bots::Include,
        Some("only") => Bots::Only,
        Some(_) => {
            return Err(ApiError::field(
                "bots",
                "must be one of exclude, include, only",
            ));
        }
    };
    let csv = match params.format.as_deref() {
        None | Some("json") => false,
        Some("csv") => true,
        Some(_) => return Err(ApiError::field("format", "must be json or csv")),
    };
    let limit = crate::http::rest::limit_param(params.limit.as_deref())?;
    let before = params
        .cursor
        .as_deref()
        .map(|raw| {
            base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(raw.trim())
                .ok()
                .and_then(|bytes| serde_json::from_slice::<Cursor>(&bytes).ok())
                .map(|c| (c.at, c.id))
                .ok_or_else(|| ApiError::field("cursor", "is not a cursor of this list"))
        })
        .transpose()?;
    Ok((
        VisitQuery {
            link_id,
            since,
            until,
            device,
            browser: word_of("browser", params.browser, 32)?,
            referrer: word_of("referrer", params.referrer, 253)?,
            country: params
                .country
                .map(|raw| {
                    Country::parse(&raw)
                        .map(|c| c.as_str().to_owned())
                        .ok_or_else(|| {
                            ApiError::field("country", "must be an ISO 3166-1 alpha-2 code (FR)")
                        })
                })
                .transpose()?,
            bots,
            before,
            limit,
        },
        csv,
    ))
}

fn view_of(visit: links::Visit) -> VisitView {
    VisitView {
        at: to_datetime(visit.at),
        referrer: visit.referrer,
        device: visit.device,
        browser: visit.browser,
        country: visit.country,
        bot: visit.bot,
        ip: visit.ip,
    }
}

fn wants_csv(headers: &HeaderMap) -> bool {
    headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|accept| accept.contains("text/csv"))
}

/// Lists a link's visits (its owner or an admin), or exports them as CSV.
#[utoipa::path(
    get, path = "/links/{code}/visits", tag = "links",
    params(("code" = String, Path, description = "The short code"), VisitParams, DomainParam),
    responses(
        (status = 200, description = "A page of visits, newest first; or every matching visit as CSV", content((VisitPage = "application/json"), (String = "text/csv")), headers(("Link" = String, description = "rel=\"next\" when there is a next page"))),
        (status = 400, description = "A bad filter or cursor, or a `domain` this server does not serve", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Not signed in", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such link, or not yours", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The visit log is off on this server", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    Path(code): Path<String>,
    domain: LinkDomain,
    uri: Uri,
    headers: HeaderMap,
    params: Result<Query<VisitParams>, QueryRejection>,
) -> ApiResult<Response> {
    let row = owned_link(&state, &caller, (&code, &domain)).await?;
    let Query(params) = params.map_err(|e| ApiError::BadRequest(e.body_text()))?;
    if state.clicks.visit_log_days().is_none() {
        return Err(ApiError::Conflict(
            "the visit log is off on this server (--visit-log-days)".into(),
        ));
    }
    let (mut query, csv) = query_of(row.id, params)?;
    if csv || wants_csv(&headers) {
        let code = state.codes.code_of(&row);
        return Ok(csv_response(state, query, &code));
    }
    let limit = query.limit;
    query.limit += 1;
    let mut rows = links::list_visits(&state.store, &query).await?;
    let more = rows.len() as i64 > limit;
    rows.truncate(limit as usize);
    let next_cursor = rows.last().filter(|_| more).map(|last| {
        let json = serde_json::to_vec(&Cursor {
            at: last.at,
            id: last.id,
        })
        .unwrap_or_default();
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(json)
    });
    let link = next_cursor.as_ref().and_then(|next| {
        let mut pairs = url::form_urlencoded::Serializer::new(String::new());
        for (name, value) in url::form_urlencoded::parse(uri.query().unwrap_or_default().as_bytes())
        {
            if name != "cursor" {
                pairs.append_pair(&name, &value);
            }
        }
        pairs.append_pair("cursor", next);
        HeaderValue::from_str(&format!(
            "<{}?{}>; rel=\"next\"",
            uri.path(),
            pairs.finish()
        ))
        .ok()
    });
    let page = VisitPage {
        items: rows.into_iter().map(view_of).collect(),
        next_cursor,
    };
    let mut response = Json(page).into_response();
    if let Some(link) = link {
        response.headers_mut().insert(header::LINK, link);
    }
    Ok(response)
}

/// The CSV header of a visit export.
pub const CSV_HEADER: &str = "time,referrer,device,browser,country,bot,ip\n";

fn csv_row(visit: &links::Visit) -> String {
    format!(
        "{},{},{},{},{},{},{}\n",
        to_datetime(visit.at).to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        field(visit.referrer.as_deref().unwrap_or("")),
        field(&visit.device),
        field(&visit.browser),
        field(visit.country.as_deref().unwrap_or("")),
        visit.bot,
        field(visit.ip.as_deref().unwrap_or("")),
    )
}

/// Every visit `query` matches, as CSV streamed a chunk at a time (a failure midway ends
/// the body early, which the client sees as a broken transfer rather than a short file).
fn csv_response(state: AppState, mut query: VisitQuery, code: &str) -> Response {
    query.limit = CSV_CHUNK;
    query.before = None;
    let chunks = futures_util::stream::unfold(
        (state, Some(query), true),
        |(state, query, first)| async move {
            let mut query = query?;
            let rows = match links::list_visits(&state.store, &query).await {
                Ok(rows) => rows,
                Err(err) => {
                    tracing::warn!(error = %err, "visit export failed midway");
                    return Some((
                        Err(std::io::Error::other(err.to_string())),
                        (state, None, false),
                    ));
                }
            };
            let mut text = String::new();
            if first {
                text.push_str(CSV_HEADER);
            }
            for visit in &rows {
                text.push_str(&csv_row(visit));
            }
            let next = (rows.len() as i64 == query.limit).then(|| {
                let last = rows.last().expect("a full chunk has a last row");
                query.before = Some((last.at, last.id));
                query
            });
            if text.is_empty() {
                return None;
            }
            Some((Ok::<_, std::io::Error>(text), (state, next, false)))
        },
    );
    // Fused: the compression layer may poll again after the end, which an unfold forbids.
    let mut response = Body::from_stream(chunks.fuse()).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/csv; charset=utf-8"),
    );
    if let Ok(disposition) =
        HeaderValue::from_str(&format!("attachment; filename=\"{code}-visits.csv\""))
    {
        headers.insert(header::CONTENT_DISPOSITION, disposition);
    }
    headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("private, no-store"),
    );
    response
}

/// Deletes the visits older than the configured number of days (by the app's clock);
/// returns how many. Nothing when the visit log is off.
pub async fn prune(state: &AppState) -> Result<u64, basis_store::Error> {
    let Some(days) = state.clicks.visit_log_days() else {
        return Ok(0);
    };
    let cutoff = state.clock.now_ms() - i64::from(days) * DAY_MS;
    links::prune_visits(&state.store, cutoff).await
}

/// The scheduled pruning: [`prune`] every hour until told to stop (not started while the
/// visit log is off).
pub async fn prune_periodically(state: AppState, mut stop: tokio::sync::watch::Receiver<bool>) {
    if state.clicks.visit_log_days().is_none() {
        return;
    }
    let mut ticks = tokio::time::interval(PRUNE_EVERY);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticks.tick() => match prune(&state).await {
                Ok(0) => {}
                Ok(pruned) => tracing::debug!(pruned, "old visits deleted"),
                Err(err) => tracing::warn!(error = %err, "pruning the visit log failed; will retry"),
            },
            _ = stop.changed() => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_are_read_and_bad_ones_named() {
        let params = VisitParams {
            since: Some("2026-01-01T00:00:00Z".into()),
            device: Some("Mobile".into()),
            bots: Some("only".into()),
            ..Default::default()
        };
        let (query, csv) = query_of(1, params).unwrap();
        assert_eq!(query.since, Some(1_767_225_600_000));
        assert_eq!(query.device.as_deref(), Some("mobile"));
        assert_eq!(query.bots, Bots::Only);
        assert!(!csv);
        for bad in [
            VisitParams {
                device: Some("toaster".into()),
                ..Default::default()
            },
            VisitParams {
                since: Some("yesterday".into()),
                ..Default::default()
            },
            VisitParams {
                bots: Some("maybe".into()),
                ..Default::default()
            },
            VisitParams {
                cursor: Some("!!".into()),
                ..Default::default()
            },
        ] {
            assert!(query_of(1, bad).is_err());
        }
    }

    #[test]
    fn a_csv_row_quotes_what_needs_it() {
        let visit = links::Visit {
            id: 1,
            link_id: 1,
            at: 0,
            referrer: Some("=evil.example".into()),
            device: "desktop".into(),
            browser: "chrome".into(),
            country: None,
            bot: false,
            ip: Some("203.0.113.0".into()),
        };
        assert_eq!(
            csv_row(&visit),
            "1970-01-01T00:00:00.000Z,'=evil.example,desktop,chrome,,false,203.0.113.0\n"
        );
    }
}
