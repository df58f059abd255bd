//! Following a short link: `GET|HEAD /{code}`, and `POST /{code}` with a password form.
//!
//! The hot path: parse the code (a foreign character is 404 at once), look it up in the
//! cache (the database only on a miss), check expiry, click limit and password, count the
//! click in memory and answer with the link's redirect status. No database write happens
//! here; `HEAD` is not counted as a click (link checkers use it). The client, for the visit
//! log and country targets, is the TCP peer unless the peer is one of the trusted proxies
//! (`trusted_proxies` of the rate-limit rules), whose forwarding headers then name it.
//!
//! A protected link asked for without its password answers API clients with a 401 problem
//! document; a browser (`Accept` preferring HTML) gets a page with a password form instead,
//! made by the web interface through [`PasswordPages`] (handed in at start, so this module
//! does not depend on the pages). The form posts to `POST /{code}`, the API's own form
//! path, so the same checks, counting and limits apply. Whether HTML is wanted is decided
//! only once a protected link was refused: plain redirects never look.

use std::fmt;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;

use axum::Form;
use axum::body::Body;
use axum::extract::{ConnectInfo, Path, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::Response;
use base64::Engine as _;
use basis_ratelimit::http::client_ip;
use basis_store::links;
use serde::Deserialize;

use super::cache::{CachedLink, key as cache_key};
use super::code::ShortCode;
use super::device::{Device, browser_of, referrer_host, truncated_ip};
use super::domains::Served;
use super::link::RedirectType;
use super::recorder::{Click, VisitDetails};
use super::rules::{visitor_cookie, visitor_of};
use super::unavailable_reason;
use crate::error::{ApiError, ApiResult, Problem};
use crate::http::extract::ClientIp;
use crate::passwords::MAX_PASSWORD_BYTES;
use crate::state::AppState;

/// `Cache-Control` of a plain redirect. A 301 without it may be kept by a browser forever,
/// after which its clicks never reach us and edits or deletions never reach the user. A
/// private 90-second lifetime lets a browser skip us on rapid repeat visits (counted once)
/// while changes take effect within a minute and a half, and keeps shared caches and CDNs
/// from answering in our place.
const PLAIN_CACHE_CONTROL: HeaderValue = HeaderValue::from_static("private, max-age=90");
/// `Cache-Control` of a link with an expiry, a click limit or a password: every visit must
/// reach us so that the limit is enforced and the password asked for.
const GUARDED_CACHE_CONTROL: HeaderValue = HeaderValue::from_static("no-store");

thread_local! {
    /// The redirect counter's handle, registered once per thread rather than looked up in
    /// the registry on every redirect.
    static REDIRECTS: metrics::Counter = metrics::counter!("basis_redirects_total");
}

/// Headers a redirect usually leaves with: `Location`, `Cache-Control`, the request id,
/// the security headers and `Content-Length`, with room for a cookie and rate-limit headers.
const REDIRECT_HEADERS: usize = 12;

/// The header that carries a link's password.
const PASSWORD_HEADER: &str = "x-link-password";

/// A boxed future, for the [`PasswordPages`] trait object.
pub type PageFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A browser asking for a protected link without its right password.
#[derive(Debug)]
pub struct PasswordAsk<'a> {
    /// The request's headers (who is asking: cookies, origin).
    pub headers: &'a HeaderMap,
    /// The code as asked for.
    pub code: &'a str,
    /// The link's short URL.
    pub short_url: String,
    /// Whether a password was given and was wrong.
    pub wrong: bool,
}

/// The pages a person's browser gets on a protected link.
pub trait PasswordPages: Send + Sync + fmt::Debug + 'static {
    /// The page with the password form (422 when `ask.wrong`).
    fn ask<'a>(&'a self, state: &'a AppState, ask: PasswordAsk<'a>) -> PageFuture<'a, Response>;

    /// Checks the form token of a password posted from that page: `Err` is the answer
    /// (the page saying the form expired).
    fn check<'a>(
        &'a self,
        state: &'a AppState,
        headers: &'a HeaderMap,
        token: Option<&'a str>,
    ) -> PageFuture<'a, Result<(), Response>>;
}

/// The password page for a browser that wants HTML, when the pages are served.
fn password_pages<'a>(state: &'a AppState, headers: &HeaderMap) -> Option<&'a dyn PasswordPages> {
    state
        .password_pages
        .as_deref()
        .filter(|_| crate::http::rest::wants_html(headers))
}

/// Follows a short link; with `+` after the code, shows where it goes instead.
#[utoipa::path(
    get, path = "/{code}", tag = "redirect",
    params(
        ("code" = String, Path, description = "The short code"),
        ("X-Link-Password" = Option<String>, Header, description = "The password of a protected link"),
    ),
    responses(
        (status = 200, description = "The preview, for `/{code}+` (the code followed by `+`): where the link goes, without counting or redirecting; HTML for browsers", content((super::preview::LinkPreview = "application/json"), (String = "text/html"))),
        (status = 301, description = "Moved permanently (the default redirect type); also 302, 307 or 308 as configured on the link", headers(("Location" = String, description = "The long URL"), ("Cache-Control" = String, description = "How long a client may reuse the redirect"))),
        (status = 401, description = "The link needs a password", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such link on this host's domain", body = Problem, content_type = "application/problem+json"),
        (status = 410, description = "Expired or out of clicks", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn follow(
    State(state): State<AppState>,
    Path(code): Path<String>,
    request: Request,
) -> ApiResult<Response> {
    let domain = match state.domains.served(request.headers(), request.uri()) {
        Served::Default => None,
        Served::Named(name) => Some(name),
        Served::Unknown => return unknown_domain(&state),
    };
    // `/{code}+` is the link's preview (the router cannot match a suffix, so it is here).
    if let Some(code) = code.strip_suffix('+') {
        // Boxed, like every rare branch here: inline, its state would enlarge the future of
        // every redirect, which the layers above move and copy several times.
        return Box::pin(super::preview::show(
            &state,
            code,
            domain,
            request.headers(),
        ))
        .await;
    }
    // The request is taken whole rather than as a cloned `HeaderMap`: this is the hot path.
    let link = find(&state, &code, domain).await?;
    let headers = request.headers();
    let count = request.method() != Method::HEAD;
    let peer = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(addr)| *addr);
    let visitor = client_ip(peer, headers, &state.trusted_proxies);
    let protected = link.0.row.password_hash.is_some();
    let offered = offered_password(headers);
    let wrong = offered.is_some();
    let answer = respond(&state, link, offered, (headers, visitor), count, None).await;
    if let Err(ApiError::Unauthorized { .. }) = answer
        && protected
        && let Some(pages) = password_pages(&state, headers)
    {
        let short_url = state.domains.short_url(&state.base_url, domain, &code);
        let ask = PasswordAsk {
            headers,
            code: &code,
            short_url,
            wrong,
        };
        return Ok(pages.ask(&state, ask).await);
    }
    answer
}

/// The password form a browser posts to a protected link.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct PasswordForm {
    /// The link's password (a form without it is a wrong password: 401).
    #[serde(default)]
    pub password: Option<String>,
    /// The form token of the password page, which a browser's form carries (checked only
    /// for browsers, which get the page again instead of a 401).
    #[serde(default)]
    pub csrf: Option<String>,
}

/// Follows a protected link with its password posted as a form (answers 303 to the target).
#[utoipa::path(
    post, path = "/{code}", tag = "redirect",
    params(("code" = String, Path, description = "The short code")),
    request_body(content = PasswordForm, content_type = "application/x-www-form-urlencoded"),
    responses(
        (status = 303, description = "See the long URL", headers(("Location" = String, description = "The long URL"))),
        (status = 302, description = "A host that is none of the domains, with `--unknown-domain-redirect`", headers(("Location" = String, description = "The fallback URL"))),
        (status = 400, description = "A body that does not decode as a form", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Wrong or missing password", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such link on this host's domain", body = Problem, content_type = "application/problem+json"),
        (status = 410, description = "Expired or out of clicks", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "Body too large", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "Not a form", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn follow_with_form(
    State(state): State<AppState>,
    Path(code): Path<String>,
    ClientIp(peer): ClientIp,
    uri: axum::http::Uri,
    headers: HeaderMap,
    form: Result<Form<PasswordForm>, axum::extract::rejection::FormRejection>,
) -> ApiResult<Response> {
    let domain = match state.domains.served(&headers, &uri) {
        Served::Default => None,
        Served::Named(name) => Some(name),
        Served::Unknown => return unknown_domain(&state),
    };
    let link = find(&state, &code, domain).await?;
    let Form(form) = form.map_err(|rejection| match rejection.status() {
        StatusCode::UNSUPPORTED_MEDIA_TYPE => ApiError::UnsupportedMediaType(
            "post the password as application/x-www-form-urlencoded".into(),
        ),
        StatusCode::PAYLOAD_TOO_LARGE => ApiError::PayloadTooLarge,
        _ => ApiError::BadRequest(rejection.body_text()),
    })?;
    let visitor = client_ip(
        peer.map(|ip| SocketAddr::new(ip, 0)),
        &headers,
        &state.trusted_proxies,
    );
    let pages = password_pages(&state, &headers).filter(|_| link.0.row.password_hash.is_some());
    if let Some(pages) = pages
        && let Err(refused) = pages.check(&state, &headers, form.csrf.as_deref()).await
    {
        return Ok(refused);
    }
    let answer = respond(
        &state,
        link,
        form.password,
        (&headers, visitor),
        true,
        Some(StatusCode::SEE_OTHER),
    )
    .await;
    match (answer, pages) {
        (Err(ApiError::Unauthorized { .. }), Some(pages)) => {
            let short_url = state.domains.short_url(&state.base_url, domain, &code);
            let ask = PasswordAsk {
                headers: &headers,
                code: &code,
                short_url,
                wrong: true,
            };
            Ok(pages.ask(&state, ask).await)
        }
        (answer, _) => answer,
    }
}

/// The answer to a short-link request on a host that is none of the domains: the
/// configured fallback redirect, else 404.
fn unknown_domain(state: &AppState) -> ApiResult<Response> {
    let Some(fallback) = state.domains.fallback() else {
        return Err(ApiError::NotFound);
    };
    let mut response = Response::new(Body::empty());
    *response.status_mut() = StatusCode::FOUND;
    response
        .headers_mut()
        .insert(header::LOCATION, fallback.clone());
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, GUARDED_CACHE_CONTROL);
    Ok(response)
}

/// The link behind `code` on `domain` (`None`: the default one), through the lookup
/// cache, with its human clicks so far, stored and not (counted only for links with a
/// click limit; 0 for the others).
pub(super) async fn find(
    state: &AppState,
    code: &str,
    domain: Option<&str>,
) -> ApiResult<(Arc<CachedLink>, i64)> {
    let code = ShortCode::parse(code).ok_or(ApiError::NotFound)?;
    let key = state.codes.key_of(code.as_str());
    let link = state
        .link_cache
        .find(&state.store, &cache_key(code.as_str(), domain), key, domain)
        .await?
        .ok_or(ApiError::NotFound)?;
    // A generated code is found whatever its domain: on another one, it is not there.
    if link.row.domain.as_deref() != domain {
        return Err(ApiError::NotFound);
    }
    if link.row.max_clicks.is_none() {
        return Ok((link, 0));
    }
    // A link with a click limit is read fresh, with its stored clicks (the sum of its
    // per-day rows, read in the same statement) and the clicks not stored yet: the stored
    // count moves with every batch applied, and a cached copy would let it overshoot.
    // (Boxed: the query's state stays out of the plain redirect's future.)
    let (found, unflushed) = Box::pin(state.clicks.read_with_unstored(
        || links::find_counted_in(&state.store, key, domain),
        |clicks, found| {
            found
                .as_ref()
                .map_or(0, |f| clicks.unflushed_humans(f.row.id))
        },
    ))
    .await?;
    let found = found.ok_or(ApiError::NotFound)?;
    let clicks = found.clicks + unflushed;
    let link = CachedLink::new(found.row).ok_or(ApiError::NotFound)?;
    Ok((link, clicks))
}

async fn respond(
    state: &AppState,
    (link, clicks): (Arc<CachedLink>, i64),
    offered_password: Option<String>,
    (headers, client): (&HeaderMap, Option<IpAddr>),
    count: bool,
    status_override: Option<StatusCode>,
) -> ApiResult<Response> {
    let row = &link.row;
    let now = state.clock.now_ms();
    if let Some(reason) = unavailable_reason(row, now, clicks) {
        return Err(ApiError::Gone(reason.into()));
    }
    if let Some(hash) = &row.password_hash {
        let denied = || ApiError::Unauthorized {
            challenge: r#"Basic realm="protected link", charset="UTF-8""#,
            detail:
                "this link needs its password: send it in X-Link-Password, as Basic credentials, \
                     or post it as a form field named password"
                    .into(),
        };
        let offered = offered_password
            .filter(|p| p.len() <= MAX_PASSWORD_BYTES)
            .ok_or_else(denied)?;
        if !Box::pin(state.passwords.verify(hash.clone(), offered)).await? {
            return Err(denied());
        }
    }
    // Looked up only with a GeoIP database, and only when the visit log or the link's
    // rules need it: without `--geoip-db` this is one test of an `Option`.
    let country = match (&state.geoip, client) {
        (Some(geoip), Some(ip))
            if (count && state.clicks.logs_visits())
                || link.rules.as_ref().is_some_and(|r| r.targets_countries()) =>
        {
            geoip.country_of(ip)
        }
        _ => None,
    };
    if count {
        let header = |name| headers.get(name).and_then(|v| v.to_str().ok());
        let user_agent = header(header::USER_AGENT);
        // Only with the visit log on: its details cost a little more than the counters.
        let visit = state.clicks.logs_visits().then(|| VisitDetails {
            browser: browser_of(user_agent),
            network: client.map(truncated_ip),
            country,
        });
        state.clicks.record(Click {
            link_id: row.id,
            at_ms: now,
            device: Device::classify(user_agent),
            referrer: referrer_host(header(header::REFERER)),
            visit,
        });
    }
    REDIRECTS.with(|redirects| redirects.increment(1));

    let status = status_override
        .or_else(|| {
            StatusCode::from_u16(RedirectType::from_stored(row.redirect_type).status()).ok()
        })
        .unwrap_or(StatusCode::MOVED_PERMANENTLY);
    let guarded = row.is_guarded();
    let mut response = Response::new(Body::empty());
    *response.status_mut() = status;
    let response_headers = response.headers_mut();
    // Room for every header the answer leaves with (the middleware's and the router's
    // `Content-Length` too), so the map is allocated once instead of grown and rehashed.
    *response_headers = HeaderMap::with_capacity(REDIRECT_HEADERS);
    // A link without rules pays one test of an `Option` here.
    let location = match &link.rules {
        None => &link.location,
        Some(rules) => {
            let known = rules.splits().then(|| visitor_of(headers)).flatten();
            let visitor = known.unwrap_or_else(rand::random);
            if rules.splits() && known.is_none() {
                response_headers.insert(header::SET_COOKIE, visitor_cookie(visitor));
            }
            rules
                .choose(headers, country, row.id, visitor)
                .unwrap_or(&link.location)
        }
    };
    response_headers.insert(header::LOCATION, location.clone());
    response_headers.insert(
        header::CACHE_CONTROL,
        if guarded {
            GUARDED_CACHE_CONTROL
        } else {
            PLAIN_CACHE_CONTROL
        },
    );
    Ok(response)
}

/// The password offered in `X-Link-Password` or as the password of Basic credentials.
fn offered_password(headers: &HeaderMap) -> Option<String> {
    if let Some(value) = headers.get(PASSWORD_HEADER) {
        return value.to_str().ok().map(str::to_owned);
    }
    let basic = headers
        .get(header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .strip_prefix("Basic ")?;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(basic.trim())
        .ok()?;
    let credentials = String::from_utf8(decoded).ok()?;
    credentials
        .split_once(':')
        .map(|(_, password)| password.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_password_from_the_header_or_basic_credentials() {
        let mut headers = HeaderMap::new();
        assert_eq!(offered_password(&headers), None);
        headers.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Basic dXNlcjpzM2NyZXQ="),
        );
        assert_eq!(offered_password(&headers).as_deref(), Some("s3cret"));
        headers.insert(PASSWORD_HEADER, HeaderValue::from_static("from-header"));
        assert_eq!(offered_password(&headers).as_deref(), Some("from-header"));
    }
}
