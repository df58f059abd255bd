//! `GET|PATCH|DELETE /links/{code}`: reading, changing and deleting a link. Who may do so
//! is decided before a body is read; the rules are in [`super::service`].

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use basis_auth::role::Scope;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Deserializer};
use utoipa::ToSchema;

use super::LinkView;
use super::domains::{DomainParam, LinkDomain};
use super::link::{ClickLimit, Expiry, LinkChange, LinkPassword, LinkTitle, RedirectType};
use super::rules::{Rules, RulesInput};
use super::service;
use crate::error::{ApiError, ApiResult, FieldError, FieldProblems, Problem};
use crate::http::extract::ApiJson;
use crate::identity::caller::Caller;
use crate::state::AppState;

/// The body of `PATCH /links/{code}` (a JSON Merge Patch: absent fields stay, `null` clears).
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ChangeLink {
    /// A new target URL (the rules of `POST /shorten`).
    #[schema(max_length = 2048, pattern = "^[Hh][Tt][Tt][Pp][Ss]?://")]
    pub long_url: Option<String>,
    /// A new expiry, or `null` for none.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<DateTime<Utc>>, pattern = "^[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt ][0-9]{2}:[0-9]{2}:[0-9]{2}(\\.[0-9]+)?([Zz]|[+-][0-9]{2}:[0-9]{2})$")]
    pub expires_at: Option<Option<DateTime<Utc>>>,
    /// A new click limit, or `null` for none.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<i64>, minimum = 1, maximum = 9_007_199_254_740_991_i64)]
    pub max_clicks: Option<Option<i64>>,
    /// A new redirect status: 301, 302, 307 or 308.
    #[schema(minimum = 301, maximum = 308)]
    pub redirect_type: Option<u16>,
    /// A new password visitors must give, or `null` for none.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>, min_length = 1, max_length = 1024)]
    pub password: Option<Option<String>>,
    /// New tags replacing all the link's tags; `[]` or `null` removes them.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<Vec<crate::http::schema::LinkTag>>, max_items = 20)]
    pub tags: Option<Option<Vec<String>>>,
    /// A new title, or `null` for none.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>, max_length = 300)]
    pub title: Option<Option<String>>,
    /// New routing rules replacing the old, or `null` for none (422 when they cannot work).
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<RulesInput>)]
    pub rules: Option<Option<RulesInput>>,
}

/// Distinguishes a member given as `null` (`Some(None)`) from an absent one (`None`).
fn present<'de, T: Deserialize<'de>, D: Deserializer<'de>>(
    d: D,
) -> Result<Option<Option<T>>, D::Error> {
    Option::<T>::deserialize(d).map(Some)
}

/// Reads a link, with its click count.
#[utoipa::path(
    get, path = "/links/{code}", tag = "links",
    params(("code" = String, Path, description = "The short code"), DomainParam),
    responses(
        (status = 401, description = "Credentials given but invalid, expired or revoked", body = Problem, content_type = "application/problem+json"),
        (status = 200, description = "The link", body = LinkView),
        (status = 400, description = "A `domain` this server does not serve", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such link", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn read(
    State(state): State<AppState>,
    caller: Caller,
    Path(code): Path<String>,
    domain: LinkDomain,
) -> ApiResult<Json<LinkView>> {
    let link = service::find_managed(&state, &caller, (&code, &domain), Scope::LinksRead).await?;
    let (tags, title) = service::extras_of(&state, link.row.id).await?;
    Ok(Json(
        LinkView::new(&state, &link.row, link.clicks).with_extras(tags, title),
    ))
}

/// Changes a link's target, expiry, click limit, redirect type, password, tags, title or
/// routing rules.
#[utoipa::path(
    patch, path = "/links/{code}", tag = "links",
    params(("code" = String, Path, description = "The short code"), DomainParam),
    request_body(content = ChangeLink, content_type = "application/merge-patch+json"),
    responses(
        (status = 401, description = "Credentials given but invalid, expired or revoked", body = Problem, content_type = "application/problem+json"),
        (status = 200, description = "The changed link", body = LinkView),
        (status = 400, description = "Invalid fields, or a `domain` this server does not serve", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such link", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "Not JSON", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Rules that cannot work: more than 10, weights that do not sum to a positive number, or a country target on a server without --geoip-db", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn update(
    State(state): State<AppState>,
    caller: Caller,
    Path(code): Path<String>,
    domain: LinkDomain,
    change: Result<ApiJson<ChangeLink>, ApiError>,
) -> ApiResult<Json<LinkView>> {
    let link = service::managed(&state, &caller, (&code, &domain), Scope::LinksWrite).await?;
    let ApiJson(change) = change?;
    let change = parse_change(&state, change)?;
    let link = service::change(&state, link, change).await?;
    let (tags, title) = service::extras_of(&state, link.row.id).await?;
    Ok(Json(
        LinkView::new(&state, &link.row, link.clicks).with_extras(tags, title),
    ))
}

/// Parses a change as `PATCH /links/{code}` does (and the link page's edit form): 400 with
/// every problem of the fields, else 422 for routing rules that cannot work.
pub fn parse_change(state: &AppState, mut change: ChangeLink) -> ApiResult<LinkChange> {
    let rules = match change.rules.take() {
        Some(Some(rules)) => Some(Some(
            Rules::parse(rules, &state.url_policy, state.geoip.is_some())
                .map_err(ApiError::UnprocessableFields)?,
        )),
        Some(None) => Some(None),
        None => None,
    };
    let mut change = parse(state, change).map_err(ApiError::Invalid)?;
    change.rules = rules;
    Ok(change)
}

/// Parses every field a change gives, reporting all the problems at once.
fn parse(state: &AppState, change: ChangeLink) -> Result<LinkChange, Vec<FieldError>> {
    let now = state.clock.now_ms();
    let mut problems = FieldProblems::default();
    let long_url = change
        .long_url
        .map(|raw| problems.check("longUrl", state.url_policy.parse(&raw)));
    let expiry = change
        .expires_at
        .map(|at| at.and_then(|at| problems.check("expiresAt", Expiry::parse(at, now))));
    let click_limit = change
        .max_clicks
        .map(|max| max.and_then(|max| problems.check("maxClicks", ClickLimit::parse(max))));
    let redirect_type = change
        .redirect_type
        .map(|status| problems.check("redirectType", RedirectType::parse(status)));
    let password = change.password.map(|password| {
        password.and_then(|password| problems.check("password", LinkPassword::parse(password)))
    });
    let tags = change.tags.map(|tags| {
        problems
            .check("tags", super::tags::parse_tags(&tags.unwrap_or_default()))
            .unwrap_or_default()
    });
    let title = change
        .title
        .map(|title| title.and_then(|title| problems.check("title", LinkTitle::parse(&title))));
    problems.finish()?;
    // With no problem found, every given field parsed: the inner `None`s are "clear it".
    Ok(LinkChange {
        long_url: long_url.flatten(),
        expiry,
        click_limit,
        redirect_type: redirect_type.flatten(),
        password,
        tags,
        title,
        rules: None,
    })
}

/// Deletes a link; its code answers 404 afterwards.
#[utoipa::path(
    delete, path = "/links/{code}", tag = "links",
    params(("code" = String, Path, description = "The short code"), DomainParam),
    responses(
        (status = 401, description = "Credentials given but invalid, expired or revoked", body = Problem, content_type = "application/problem+json"),
        (status = 204, description = "Deleted"),
        (status = 400, description = "A `domain` this server does not serve", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such link", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn remove(
    State(state): State<AppState>,
    caller: Caller,
    Path(code): Path<String>,
    domain: LinkDomain,
) -> ApiResult<StatusCode> {
    service::remove(&state, &caller, (&code, &domain)).await?;
    Ok(StatusCode::NO_CONTENT)
}
