//! `POST /shorten`: parsing a new link's options; the rules are in [`super::service`].

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use basis_auth::role::Scope;
use chrono::{DateTime, Utc};
use serde::Deserialize;
use utoipa::ToSchema;

use super::LinkView;
use super::input::Alias;
use super::link::{ClickLimit, Expiry, LinkPassword, LinkTitle, NewLink, RedirectType};
use super::rules::{Rules, RulesInput};
use super::service::{self, Creation};
use crate::error::{ApiError, ApiResult, FieldError, FieldProblems, Problem};
use crate::http::extract::ApiJson;
use crate::identity::caller::Caller;
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
    #[schema(
        pattern = "^[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt ][0-9]{2}:[0-9]{2}:[0-9]{2}(\\.[0-9]+)?([Zz]|[+-][0-9]{2}:[0-9]{2})$"
    )]
    pub expires_at: Option<DateTime<Utc>>,
    /// How many human clicks the link allows (at least 1).
    #[schema(minimum = 1, maximum = 9_007_199_254_740_991_i64)]
    #[serde(default, deserialize_with = "crate::http::rest::optional_whole_number")]
    pub max_clicks: Option<i64>,
    /// 301 (default), 302, 307 or 308.
    #[schema(minimum = 301, maximum = 308)]
    #[serde(default, deserialize_with = "crate::http::rest::optional_whole_number")]
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
    /// Tags (each 1–50 characters of letters, digits, space, `-`, `_`, `.`, `:`; stored
    /// lower-case; at most 20). A tagged link is not plain, so not with `reuse`.
    #[serde(default)]
    #[schema(max_items = 20, value_type = Vec<crate::http::schema::LinkTag>)]
    pub tags: Vec<String>,
    /// A title for the link (1–300 characters), shown by its preview.
    #[schema(max_length = 300)]
    pub title: Option<String>,
    /// Routing rules: `split` by weight (sticky per visitor) and `targets` by device, os or
    /// language (first match wins); at most 10 in all, weights summing to a positive number
    /// (422 otherwise).
    pub rules: Option<RulesInput>,
    /// The domain the link lives on: the server's default domain (its base URL's host)
    /// when absent, else one configured with `--domain` (422 otherwise). Aliases are
    /// unique per domain.
    #[schema(example = "links.example.com")]
    pub domain: Option<String>,
}

/// Creates a short link.
#[utoipa::path(
    post, path = "/shorten", tag = "links", request_body = CreateLink,
    responses(
        (status = 401, description = "Credentials given but invalid, expired or revoked", body = Problem, content_type = "application/problem+json"),
        (status = 201, description = "Created", body = LinkView, headers(("Location" = String, description = "/links/{code}"))),
        (status = 200, description = "With `reuse`: the oldest plain link (no alias, password, expiry or click limit; redirect 301) to the same URL with the same owner, however it was made", body = LinkView),
        (status = 400, description = "Invalid fields", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The alias is taken", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Rules that cannot work (more than 10, weights that do not sum to a positive number, a country target on a server without --geoip-db), or a domain this server does not serve", body = Problem, content_type = "application/problem+json"),
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
    let reuse = body.reuse;
    let link = parse(&state, body)?;
    let owner_id = caller.user_id().map(str::to_owned);
    Ok(
        match service::create(&state, owner_id, link, reuse).await? {
            Creation::Reused(found) => {
                // A reused link is plain, so it has no tags.
                let view = LinkView::new(&state, &found.row, found.clicks);
                (StatusCode::OK, Json(view)).into_response()
            }
            Creation::Created(row, tags, title) => {
                let view = LinkView::new(&state, &row, 0).with_extras(tags, title);
                let location = HeaderValue::from_str(&format!("/links/{}", view.short_code))
                    .expect("codes are header-safe");
                (
                    StatusCode::CREATED,
                    [(header::LOCATION, location)],
                    Json(view),
                )
                    .into_response()
            }
        },
    )
}

/// Parses every option of a create, reporting all the problems at once (the home page's
/// form parses through it too).
pub(crate) fn parse(state: &AppState, mut body: CreateLink) -> ApiResult<NewLink> {
    // Rules that cannot work are 422, apart from the 400 of malformed fields.
    let rules = body
        .rules
        .take()
        .map(|rules| Rules::parse(rules, &state.url_policy, state.geoip.is_some()))
        .transpose()
        .map_err(ApiError::UnprocessableFields)?;
    // A domain that this server does not serve is well-formed but cannot be used: 422.
    let domain = body
        .domain
        .take()
        .map(|name| state.domains.parse(&name))
        .transpose()
        .map_err(|why| ApiError::UnprocessableFields(vec![FieldError::new("domain", why)]))?
        .flatten();
    let mut link = parse_fields(state, body).map_err(ApiError::Invalid)?;
    link.rules = rules;
    link.domain = domain;
    Ok(link)
}

/// Parses every option but the rules.
fn parse_fields(state: &AppState, body: CreateLink) -> Result<NewLink, Vec<FieldError>> {
    let now = state.clock.now_ms();
    // Judged on what was asked: an option given, even a refused one, makes a link not plain.
    let asked_plain = body.custom_alias.is_none()
        && body.password.is_none()
        && body.expires_at.is_none()
        && body.max_clicks.is_none()
        && body.tags.is_empty()
        && body.title.is_none()
        && body.rules.is_none();
    let mut problems = FieldProblems::default();
    let long_url = problems.check("longUrl", state.url_policy.parse(&body.long_url));
    let alias = body
        .custom_alias
        .as_deref()
        .and_then(|alias| problems.check("customAlias", Alias::parse(alias)));
    let expiry = body
        .expires_at
        .and_then(|at| problems.check("expiresAt", Expiry::parse(at, now)));
    let click_limit = body
        .max_clicks
        .and_then(|max| problems.check("maxClicks", ClickLimit::parse(max)));
    let redirect_type = match body.redirect_type {
        Some(status) => problems.check("redirectType", RedirectType::parse(status)),
        None => Some(RedirectType::default()),
    };
    let password = body
        .password
        .and_then(|password| problems.check("password", LinkPassword::parse(password)));
    let tags = problems
        .check("tags", super::tags::parse_tags(&body.tags))
        .unwrap_or_default();
    let title = body
        .title
        .as_deref()
        .and_then(|title| problems.check("title", LinkTitle::parse(title)));
    if body.reuse && !(asked_plain && redirect_type.is_none_or(|t| t == RedirectType::default())) {
        problems.add(
            "reuse",
            "applies only to plain links (no alias, password, expiry, click limit, redirect type, tags or title)",
        );
    }
    problems.finish()?;
    Ok(NewLink {
        long_url: long_url.expect("parsed when no problem was found"),
        alias,
        expiry,
        click_limit,
        redirect_type: redirect_type.unwrap_or_default(),
        password,
        tags,
        title,
        rules: None,
        domain: None,
    })
}
