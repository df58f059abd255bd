//! `GET /links/{code}/stats`: a link's clicks per day, top referrers and devices, with
//! the clicks not yet stored added (by [`super::service::analytics`]).

use axum::Json;
use axum::extract::{Path, Query, State};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::domains::{DomainParam, LinkDomain};
use super::service;
use crate::clock::to_datetime;
use crate::error::{ApiError, ApiResult, Problem};
use crate::identity::caller::Caller;
use crate::state::AppState;

/// Query of `GET /links/{code}/stats`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct StatsQuery {
    /// How many recent days to list (1–366, default 30).
    #[param(minimum = 1, maximum = 366)]
    pub days: Option<i64>,
}

/// A link's analytics.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct LinkStats {
    /// The link's code.
    pub short_code: String,
    /// Human clicks.
    pub total_clicks: i64,
    /// Clicks by bots, crawlers and HTTP libraries (not in `totalClicks`).
    pub bot_clicks: i64,
    /// Human and bot clicks per UTC day, newest first.
    pub clicks_per_day: Vec<DayClicks>,
    /// The referring hosts with the most human clicks.
    pub top_referrers: Vec<ReferrerClicks>,
    /// Clicks per device class: desktop, mobile, tablet, bot.
    pub devices: DeviceClicks,
}

/// Clicks on one day.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DayClicks {
    /// The UTC date, `YYYY-MM-DD`.
    pub date: String,
    /// Human clicks.
    pub clicks: i64,
    /// Bot clicks.
    pub bot_clicks: i64,
}

/// Clicks from one referring host.
#[derive(Debug, Serialize, ToSchema)]
pub struct ReferrerClicks {
    /// The host.
    pub host: String,
    /// Human clicks.
    pub clicks: i64,
}

/// Clicks per device class.
#[derive(Debug, Default, Serialize, ToSchema)]
pub struct DeviceClicks {
    /// Desktop browsers.
    pub desktop: i64,
    /// Phones.
    pub mobile: i64,
    /// Tablets.
    pub tablet: i64,
    /// Bots.
    pub bot: i64,
}

const TOP_REFERRERS: usize = 10;

/// Reads a link's click statistics.
#[utoipa::path(
    get, path = "/links/{code}/stats", tag = "links",
    params(("code" = String, Path, description = "The short code"), StatsQuery, DomainParam),
    responses(
        (status = 401, description = "Credentials given but invalid, expired or revoked", body = Problem, content_type = "application/problem+json"),
        (status = 200, description = "Statistics", body = LinkStats),
        (status = 400, description = "Invalid query (`days`, or a `domain` this server does not serve)", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such link", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn stats(
    State(state): State<AppState>,
    caller: Caller,
    Path(code): Path<String>,
    domain: LinkDomain,
    query: Result<Query<StatsQuery>, axum::extract::rejection::QueryRejection>,
) -> ApiResult<Json<LinkStats>> {
    let Query(query) = query.map_err(|e| ApiError::BadRequest(e.body_text()))?;
    let days = query.days.unwrap_or(30);
    if !(1..=366).contains(&days) {
        return Err(ApiError::field("days", "must be between 1 and 366"));
    }
    let service::Analytics { link, stats } =
        service::analytics(&state, &caller, (&code, &domain), days, TOP_REFERRERS).await?;
    let mut devices = DeviceClicks::default();
    for (name, n) in &stats.devices {
        match name.as_str() {
            "desktop" => devices.desktop += n,
            "mobile" => devices.mobile += n,
            "tablet" => devices.tablet += n,
            _ => devices.bot += n,
        }
    }
    Ok(Json(LinkStats {
        short_code: state.codes.code_of(&link.row),
        total_clicks: link.clicks,
        bot_clicks: stats.bot_clicks,
        clicks_per_day: stats
            .days
            .into_iter()
            .map(|(day, clicks, bot_clicks)| DayClicks {
                date: to_datetime(day * 86_400_000).format("%Y-%m-%d").to_string(),
                clicks,
                bot_clicks,
            })
            .collect(),
        top_referrers: stats
            .referrers
            .into_iter()
            .map(|(host, clicks)| ReferrerClicks { host, clicks })
            .collect(),
        devices,
    }))
}
