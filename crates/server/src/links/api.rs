//! Creating and managing links: `POST /shorten`, `GET|PATCH|DELETE /links/{code}` and
//! `GET /links/{code}/stats`.

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use basis_auth::role::Scope;
use basis_store::links::{self, CountedLink, LinkRow, LinkUpdate};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Deserializer, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::code::{CODE_SPACE, ShortCode};
use super::device::Device;
use super::input::Alias;
use super::{LinkView, REDIRECT_TYPES};
use crate::caller::Caller;
use crate::clock::{day_of, to_datetime};
use crate::error::{ApiError, ApiResult, FieldError, Problem};
use crate::extract::ApiJson;
use crate::passwords::MAX_PASSWORD_BYTES;
use crate::state::AppState;

/// The body of `POST /shorten`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CreateLink {
    /// Where the short link should redirect: an absolute http(s) URL with a host, at most
    /// 2048 bytes by default (`--max-url-length`).
    #[schema(
        example = "https://example.com/a/very/long/path",
        max_length = 2048,
        pattern = "^[Hh][Tt][Tt][Pp][Ss]?://"
    )]
    pub long_url: String,
    /// A code of your choice: 3–64 characters of `[A-Za-z0-9_-]`, not a route's name.
    #[schema(pattern = "^[A-Za-z0-9_-]{3,64}$")]
    pub custom_alias: Option<String>,
    /// When the link stops redirecting (RFC 3339); must be in the future.
    pub expires_at: Option<DateTime<Utc>>,
    /// How many human clicks the link allows (at least 1).
    #[schema(minimum = 1)]
    pub max_clicks: Option<i64>,
    /// 301 (default), 302, 307 or 308.
    #[schema(minimum = 301, maximum = 308)]
    pub redirect_type: Option<u16>,
    /// A password visitors must give to follow the link (1 to 1024 bytes).
    #[schema(min_length = 1, max_length = 1024)]
    pub password: Option<String>,
    /// Return an existing plain link to the same URL with the same owner (you, or no one
    /// when not signed in) with 200, instead of making a new one (201); the oldest wins. A
    /// plain link has no alias, password, expiry or click limit and redirects with 301.
    /// Every plain link counts, whether or not it was made with `reuse`, until it gets a
    /// password, expiry or click limit, another redirect type, or is deleted. Only for
    /// plain requests: with any of those options it is 400.
    #[serde(default)]
    pub reuse: bool,
}

/// The body of `PATCH /links/{code}` (a JSON Merge Patch: absent fields stay, `null` clears).
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ChangeLink {
    /// A new target URL (the rules of `POST /shorten`).
    #[schema(max_length = 2048, pattern = "^[Hh][Tt][Tt][Pp][Ss]?://")]
    pub long_url: Option<String>,
    /// A new expiry, or `null` for none.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<DateTime<Utc>>)]
    pub expires_at: Option<Option<DateTime<Utc>>>,
    /// A new click limit, or `null` for none.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<i64>, minimum = 1)]
    pub max_clicks: Option<Option<i64>>,
    /// A new redirect status: 301, 302, 307 or 308.
    #[schema(minimum = 301, maximum = 308)]
    pub redirect_type: Option<u16>,
    /// A new password visitors must give, or `null` for none.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>, min_length = 1, max_length = 1024)]
    pub password: Option<Option<String>>,
}

/// Distinguishes a member given as `null` (`Some(None)`) from an absent one (`None`).
fn present<'de, T: Deserialize<'de>, D: Deserializer<'de>>(
    d: D,
) -> Result<Option<Option<T>>, D::Error> {
    Option::<T>::deserialize(d).map(Some)
}

fn check_redirect_type(value: Option<u16>, errors: &mut Vec<FieldError>) -> i16 {
    match value {
        None => 301,
        Some(status) if REDIRECT_TYPES.contains(&status) => status as i16,
        Some(_) => {
            errors.push(FieldError::new(
                "redirectType",
                "must be 301, 302, 307 or 308",
            ));
            301
        }
    }
}

fn check_expiry(
    value: Option<DateTime<Utc>>,
    now_ms: i64,
    errors: &mut Vec<FieldError>,
) -> Option<i64> {
    let at = value?.timestamp_millis();
    if at <= now_ms {
        errors.push(FieldError::new("expiresAt", "must be in the future"));
    }
    Some(at)
}

fn check_password(value: Option<&str>, errors: &mut Vec<FieldError>) {
    if let Some(password) = value
        && (password.is_empty() || password.len() > MAX_PASSWORD_BYTES)
    {
        errors.push(FieldError::new(
            "password",
            format!("must be 1 to {MAX_PASSWORD_BYTES} bytes"),
        ));
    }
}

fn check_max_clicks(value: Option<i64>, errors: &mut Vec<FieldError>) -> Option<i64> {
    let max = value?;
    if max < 1 {
        errors.push(FieldError::new("maxClicks", "must be at least 1"));
    }
    Some(max)
}

/// Creates a short link.
#[utoipa::path(
    post, path = "/shorten", tag = "links", request_body = CreateLink,
    responses(
        (status = 201, description = "Created", body = LinkView, headers(("Location" = String, description = "/links/{code}"))),
        (status = 200, description = "With `reuse`: the oldest plain link (no alias, password, expiry or click limit; redirect 301) to the same URL with the same owner, however it was made", body = LinkView),
        (status = 400, description = "Invalid fields", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The alias is taken", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "Body too large", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "Not JSON", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    body: Result<ApiJson<CreateLink>, ApiError>,
) -> ApiResult<Response> {
    // Who may create is decided before the body is looked at.
    if state.identity.config.require_auth_for_links {
        caller.require()?;
    }
    caller.require_scope(Scope::LinksWrite)?;
    let ApiJson(body) = body?;
    let now = state.clock.now_ms();
    let mut errors = Vec::new();
    let long_url = state
        .url_policy
        .parse(&body.long_url)
        .map_err(|m| errors.push(FieldError::new("longUrl", m)))
        .ok();
    let alias = body
        .custom_alias
        .as_deref()
        .map(Alias::parse)
        .transpose()
        .map_err(|m| errors.push(FieldError::new("customAlias", m)))
        .ok()
        .flatten();
    let expires_at = check_expiry(body.expires_at, now, &mut errors);
    let max_clicks = check_max_clicks(body.max_clicks, &mut errors);
    let redirect_type = check_redirect_type(body.redirect_type, &mut errors);
    check_password(body.password.as_deref(), &mut errors);
    let plain = body.custom_alias.is_none()
        && body.password.is_none()
        && expires_at.is_none()
        && max_clicks.is_none()
        && redirect_type == 301;
    if body.reuse && !plain {
        errors.push(FieldError::new(
            "reuse",
            "applies only to plain links (no alias, password, expiry, click limit or redirect type)",
        ));
    }
    let Some(long_url) = long_url.filter(|_| errors.is_empty()) else {
        return Err(ApiError::Invalid(errors));
    };

    let owner_id = caller.user_id().map(str::to_owned);
    // Every plain link is a reuse candidate, however it was made: the store indexes them all.
    if body.reuse
        && let Some(found) = reused(&state, long_url.as_str(), owner_id.as_deref()).await?
    {
        return Ok(found);
    }
    let password_hash = match body.password {
        Some(password) => Some(state.passwords.hash(password).await?),
        None => None,
    };

    let mut link = LinkRow {
        id: 0,
        alias: alias.map(Alias::into_string),
        long_url: long_url.as_str().to_owned(),
        created_at: now,
        expires_at,
        max_clicks,
        redirect_type,
        password_hash,
        owner_id,
    };
    link.id = loop {
        let id = state.ids.next_id().await?;
        // The generated code of a held id is an old alias's text: never hand it out.
        if !state.codes.is_held(id as u64) {
            break id;
        }
        tracing::info!(id, "skipped an id whose code is an old alias");
    };
    if link.alias.is_none() && link.id as u64 >= CODE_SPACE {
        // 3.5 trillion links: longer codes would need a rule to tell them from aliases.
        return Err(ApiError::Internal(anyhow::anyhow!(
            "the 7-character code space is exhausted"
        )));
    }
    if body.reuse {
        // The store looks again and inserts in one step; a link that a concurrent request
        // made since the look above is answered as that look would have answered it.
        while !links::insert_unless_reusable(&state.store, &link).await? {
            if let Some(found) = reused(&state, &link.long_url, link.owner_id.as_deref()).await? {
                return Ok(found);
            }
        }
        return Ok(created(&state, link).await);
    }
    match links::insert(&state.store, &link).await {
        Ok(()) => Ok(created(&state, link).await),
        Err(err) if links::is_alias_conflict(&err) => Err(ApiError::Conflict(format!(
            "the alias '{}' is already taken",
            link.alias.unwrap_or_default()
        ))),
        Err(err) => Err(err.into()),
    }
}

/// The 200 answer of a `reuse` request: the oldest plain link of `owner_id` to `long_url`
/// with its clicks, stored and not yet stored, if there is one.
async fn reused(
    state: &AppState,
    long_url: &str,
    owner_id: Option<&str>,
) -> Result<Option<Response>, ApiError> {
    let (found, unflushed) = state
        .clicks
        .read_with_unstored(
            || links::find_reusable(&state.store, long_url, owner_id),
            |clicks, found| {
                found
                    .as_ref()
                    .map_or(0, |f| clicks.unflushed_humans(f.row.id))
            },
        )
        .await?;
    Ok(found.map(|found| {
        let view = LinkView::new(state, &found.row, found.clicks + unflushed);
        (StatusCode::OK, Json(view)).into_response()
    }))
}

async fn created(state: &AppState, row: LinkRow) -> Response {
    let code = state.codes.code_of(&row);
    // A negative entry for this code may be cached from before it existed.
    state.link_cache.invalidate(&code).await;
    let location = HeaderValue::from_str(&format!("/links/{code}")).expect("codes are header-safe");
    (
        StatusCode::CREATED,
        [(header::LOCATION, location)],
        Json(LinkView::new(state, &row, 0)),
    )
        .into_response()
}

/// Loads a link the caller may manage with `scope`, with its stored clicks: 404 if unknown,
/// 401 if owned and the caller is anonymous, 403 if owned by someone else or the API key
/// lacks the scope.
async fn managed_link(
    state: &AppState,
    caller: &Caller,
    code: &str,
    scope: Scope,
) -> ApiResult<CountedLink> {
    let code = ShortCode::parse(code).ok_or(ApiError::NotFound)?;
    let link = links::find_counted(&state.store, state.codes.key_of(code.as_str()))
        .await?
        .ok_or(ApiError::NotFound)?;
    caller.may_manage(link.row.owner_id.as_deref())?;
    caller.require_scope(scope)?;
    Ok(link)
}

/// Reads a link, with its click count.
#[utoipa::path(
    get, path = "/links/{code}", tag = "links",
    params(("code" = String, Path, description = "The short code")),
    responses(
        (status = 200, description = "The link", body = LinkView),
        (status = 404, description = "No such link", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn read(
    State(state): State<AppState>,
    caller: Caller,
    Path(code): Path<String>,
) -> ApiResult<Json<LinkView>> {
    let (link, unflushed) = state
        .clicks
        .read_with_unstored(
            || managed_link(&state, &caller, &code, Scope::LinksRead),
            |clicks, link| clicks.unflushed_humans(link.row.id),
        )
        .await?;
    Ok(Json(LinkView::new(
        &state,
        &link.row,
        link.clicks + unflushed,
    )))
}

/// Changes a link's target, expiry, click limit, redirect type or password.
#[utoipa::path(
    patch, path = "/links/{code}", tag = "links",
    params(("code" = String, Path, description = "The short code")),
    request_body(content = ChangeLink, content_type = "application/merge-patch+json"),
    responses(
        (status = 200, description = "The changed link", body = LinkView),
        (status = 400, description = "Invalid fields", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such link", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "Not JSON", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn update(
    State(state): State<AppState>,
    caller: Caller,
    Path(code): Path<String>,
    change: Result<ApiJson<ChangeLink>, ApiError>,
) -> ApiResult<Json<LinkView>> {
    let CountedLink { row, clicks } =
        managed_link(&state, &caller, &code, Scope::LinksWrite).await?;
    let ApiJson(change) = change?;
    let now = state.clock.now_ms();
    let mut errors = Vec::new();
    let long_url = match &change.long_url {
        Some(raw) => state
            .url_policy
            .parse(raw)
            .map_err(|m| errors.push(FieldError::new("longUrl", m)))
            .ok(),
        None => None,
    };
    let expires_at = match change.expires_at {
        Some(value) => check_expiry(value, now, &mut errors),
        None => row.expires_at,
    };
    let max_clicks = match change.max_clicks {
        Some(value) => check_max_clicks(value, &mut errors),
        None => row.max_clicks,
    };
    let redirect_type = match change.redirect_type {
        Some(value) => check_redirect_type(Some(value), &mut errors),
        None => row.redirect_type,
    };
    if let Some(password) = &change.password {
        check_password(password.as_deref(), &mut errors);
    }
    if !errors.is_empty() {
        return Err(ApiError::Invalid(errors));
    }
    let long_url_text = long_url
        .as_ref()
        .map_or(row.long_url.as_str(), |u| u.as_str());
    let password_hash = match change.password {
        Some(Some(password)) => Some(state.passwords.hash(password).await?),
        Some(None) => None,
        None => row.password_hash.clone(),
    };
    // A password, expiry or click limit takes the link out of reuse (the store looks for
    // plain links only), and clearing them all puts it back.
    let update = LinkUpdate {
        long_url: long_url_text.to_owned(),
        expires_at,
        max_clicks,
        redirect_type,
        password_hash,
    };
    if !links::update(&state.store, row.id, &update).await? {
        return Err(ApiError::NotFound);
    }
    state
        .link_cache
        .invalidate(&state.codes.code_of(&row))
        .await;
    let row = LinkRow {
        long_url: update.long_url,
        expires_at,
        max_clicks,
        redirect_type,
        password_hash: update.password_hash,
        ..row
    };
    state.clicks.settle_or_warn().await;
    let unflushed = state.clicks.unflushed_humans(row.id);
    Ok(Json(LinkView::new(&state, &row, clicks + unflushed)))
}

/// Deletes a link; its code answers 404 afterwards.
#[utoipa::path(
    delete, path = "/links/{code}", tag = "links",
    params(("code" = String, Path, description = "The short code")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 404, description = "No such link", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn remove(
    State(state): State<AppState>,
    caller: Caller,
    Path(code): Path<String>,
) -> ApiResult<StatusCode> {
    let row = managed_link(&state, &caller, &code, Scope::LinksWrite)
        .await?
        .row;
    if !links::delete(&state.store, row.id).await? {
        return Err(ApiError::NotFound);
    }
    state
        .link_cache
        .invalidate(&state.codes.code_of(&row))
        .await;
    Ok(StatusCode::NO_CONTENT)
}

/// Query of `GET /links/{code}/stats`.
#[derive(Debug, Deserialize, IntoParams)]
pub struct StatsQuery {
    /// How many recent days to list (1–366, default 30).
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
    params(("code" = String, Path, description = "The short code"), StatsQuery),
    responses(
        (status = 200, description = "Statistics", body = LinkStats),
        (status = 400, description = "Invalid query", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such link", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn stats(
    State(state): State<AppState>,
    caller: Caller,
    Path(code): Path<String>,
    query: Result<Query<StatsQuery>, axum::extract::rejection::QueryRejection>,
) -> ApiResult<Json<LinkStats>> {
    let Query(query) = query.map_err(|e| ApiError::BadRequest(e.body_text()))?;
    let days = query.days.unwrap_or(30);
    if !(1..=366).contains(&days) {
        return Err(ApiError::field("days", "must be between 1 and 366"));
    }
    let ((link, stored), pending) = state
        .clicks
        .read_with_unstored(
            || async {
                let link = managed_link(&state, &caller, &code, Scope::LinksRead).await?;
                let stored =
                    links::stats(&state.store, link.row.id, days, TOP_REFERRERS as i64 * 4).await?;
                Ok::<_, ApiError>((link, stored))
            },
            |clicks, (link, _)| clicks.unflushed(link.row.id).unwrap_or_default(),
        )
        .await?;
    let today = day_of(state.clock.now_ms());

    let mut per_day = stored.days;
    for &(day, h, b) in &pending.days {
        match per_day.iter_mut().find(|(d, _, _)| *d == day) {
            Some(entry) => {
                entry.1 += h;
                entry.2 += b;
            }
            None => per_day.push((day, h, b)),
        }
    }
    per_day.retain(|(day, _, _)| *day > today - days);
    per_day.sort_unstable_by_key(|entry| std::cmp::Reverse(entry.0));

    let mut referrers = stored.referrers;
    for (host, n) in pending.referrers {
        match referrers.iter_mut().find(|(h, _)| *h == host) {
            Some(entry) => entry.1 += n,
            None => referrers.push((host, n)),
        }
    }
    referrers.sort_unstable_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    referrers.truncate(TOP_REFERRERS);

    let mut devices = DeviceClicks::default();
    let stored_devices = stored.devices.iter().map(|(d, n)| (d.as_str(), *n));
    for (name, n) in stored_devices.chain(pending.devices.iter().map(|(d, n)| (*d, *n))) {
        match name {
            "desktop" => devices.desktop += n,
            "mobile" => devices.mobile += n,
            "tablet" => devices.tablet += n,
            _ => devices.bot += n,
        }
    }
    let pending_bots = pending
        .devices
        .iter()
        .find(|(d, _)| *d == Device::Bot.as_str())
        .map_or(0, |(_, n)| *n);

    Ok(Json(LinkStats {
        short_code: state.codes.code_of(&link.row),
        total_clicks: link.clicks + pending.humans,
        bot_clicks: stored.bot_clicks + pending_bots,
        clicks_per_day: per_day
            .into_iter()
            .map(|(day, clicks, bot_clicks)| DayClicks {
                date: to_datetime(day * 86_400_000).format("%Y-%m-%d").to_string(),
                clicks,
                bot_clicks,
            })
            .collect(),
        top_referrers: referrers
            .into_iter()
            .map(|(host, clicks)| ReferrerClicks { host, clicks })
            .collect(),
        devices,
    }))
}
