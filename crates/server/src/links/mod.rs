//! The URL shortener: creating and managing links, following them, and their analytics.
//!
//! - [`create`]: `POST /shorten`; [`manage`]: `GET|PATCH|DELETE /links/{code}`;
//!   [`analytics`]: `GET /links/{code}/stats`. Handlers parse and answer;
//! - [`service`]: the rules they call (id allocation, reuse, who may manage a link, cache
//!   invalidation, stored plus unstored clicks);
//! - [`link`]: the parsed options of a link ([`link::RedirectType`], [`link::Expiry`],
//!   [`link::ClickLimit`], [`link::LinkPassword`]) and the create and change they make up.
//! - [`redirect`]: `GET|HEAD|POST /{code}`, the hot path; [`preview`]: `GET /{code}+`;
//!   [`qr`]: `GET /{code}/qr.svg|png`, the short URL as a QR code;
//!   [`rules`]: a link's routing rules (split by weight, targets by device, system,
//!   language, country).
//! - [`code`]: ids ↔ codes (keyed permutation + base62), the code alphabet, and which
//!   lookup a code needs (generated codes are not stored).
//! - [`legacy`]: settling codes stored before migration 0004.
//! - [`input`]: target URL and alias rules.
//! - [`recorder`]: in-memory click aggregation, handed to the queue in batches;
//!   [`click_batches`]: the job that stores a batch, once.
//! - [`cache`]: the code → link lookup cache; [`domains`]: the domains links live on
//!   (`--domain`), and which one a request is for.
//! - [`device`]: device classes and referrer hosts; [`geoip`]: visitors' countries
//!   (`--geoip-db`).
//! - [`list`]: `GET /links`, the caller's links in cursor pages; [`tags`]: tags on links
//!   and `/links/tags…` (statistics, rename, delete).
//! - [`bulk`]: `POST /links/bulk`, up to 1,000 links per request (JSON or CSV, [`csv`]).
//! - [`exports`]: `POST /links/{code}/exports`, CSV exports of the clicks, made by a job.
//! - [`import`]: `basis links import`, links from Shlink, Kutt, YOURLS or Bitly exports;
//!   [`dump`]: `GET /links/export` and `basis links export`, a user's links with totals.
//! - [`visits`]: `GET /links/{code}/visits`, the visit log (`--visit-log-days`) as pages
//!   or CSV, and its pruning.

use crate::http::routes::Routes;
use axum::handler::Handler as _;
use chrono::{DateTime, Utc};
use serde::Serialize;
use utoipa::ToSchema;

use crate::clock::to_datetime;
use crate::state::AppState;
use basis_store::links::LinkRow;

pub mod analytics;
pub mod bulk;
pub mod cache;
pub mod cli;
pub mod click_batches;
pub mod code;
pub mod create;
pub mod csv;
pub mod device;
pub mod domains;
pub mod dump;
pub mod exports;
pub mod geoip;
pub mod import;
pub mod input;
pub mod legacy;
pub mod link;
pub mod list;
pub mod manage;
pub mod preview;
pub mod qr;
pub mod recorder;
pub mod redirect;
pub mod rules;
pub mod service;
pub mod tags;
pub mod visits;

/// The shortener's routes.
pub fn router() -> Routes<AppState> {
    Routes::new()
        .post("/shorten", create::create)
        .get("/links", list::list)
        .post(
            "/links/bulk",
            bulk::create.layer(axum::extract::DefaultBodyLimit::max(bulk::BODY_LIMIT)),
        )
        .get("/links/tags", tags::list)
        .get("/links/export", dump::export)
        .patch("/links/tags/{tag}", tags::rename)
        .delete("/links/tags/{tag}", tags::remove)
        .get("/links/{code}", manage::read)
        .patch("/links/{code}", manage::update)
        .delete("/links/{code}", manage::remove)
        .get("/links/{code}/stats", analytics::stats)
        .post("/links/{code}/exports", exports::create)
        .get("/links/{code}/exports/{id}", exports::download)
        .get("/links/{code}/visits", visits::list)
        .get("/{code}/qr.svg", qr::svg)
        .get("/{code}/qr.png", qr::png)
        .get("/{code}", redirect::follow)
        .post("/{code}", redirect::follow_with_form)
}

/// A link as the API shows it.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct LinkView {
    /// The code after the service's origin.
    pub short_code: String,
    /// The full short URL (on the link's domain).
    pub short_url: String,
    /// The domain the link lives on.
    pub domain: String,
    /// Where it redirects.
    pub long_url: String,
    /// When it was created.
    pub created_at: DateTime<Utc>,
    /// When it stops redirecting (410 afterwards).
    pub expires_at: Option<DateTime<Utc>>,
    /// How many human clicks it allows (410 afterwards).
    pub max_clicks: Option<i64>,
    /// The redirect status it answers with.
    pub redirect_type: u16,
    /// Whether following it needs a password.
    pub password_protected: bool,
    /// Human clicks so far (bots are counted apart).
    pub click_count: i64,
    /// Its tags, by name.
    pub tags: Vec<String>,
    /// The title its owner gave it.
    pub title: Option<String>,
    /// Its routing rules, if it has any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rules: Option<rules::RulesInput>,
}

impl LinkView {
    /// The view of `row` with `clicks` human clicks (stored and not yet stored).
    pub fn new(state: &AppState, row: &LinkRow, clicks: i64) -> Self {
        let code = state.codes.code_of(row);
        let domain = row.domain.as_deref();
        Self {
            short_url: state.domains.short_url(&state.base_url, domain, &code),
            domain: domain.unwrap_or(state.domains.default_name()).to_owned(),
            short_code: code,
            long_url: row.long_url.clone(),
            created_at: to_datetime(row.created_at),
            expires_at: row.expires_at.map(to_datetime),
            max_clicks: row.max_clicks,
            redirect_type: link::RedirectType::from_stored(row.redirect_type).status(),
            password_protected: row.password_hash.is_some(),
            click_count: clicks,
            tags: Vec::new(),
            title: None,
            rules: row
                .rules
                .as_deref()
                .and_then(rules::Rules::from_stored)
                .map(|r| r.input().clone()),
        }
    }

    /// This view with the link's tags and title.
    pub fn with_extras(self, tags: Vec<String>, title: Option<String>) -> Self {
        Self {
            tags,
            title,
            ..self
        }
    }
}

/// Why a link does not redirect right now, if it does not; `clicks` are its human clicks so
/// far, stored and not (needed only when it has a click limit).
pub fn unavailable_reason(row: &LinkRow, now_ms: i64, clicks: i64) -> Option<&'static str> {
    if row.expires_at.is_some_and(|at| now_ms >= at) {
        return Some("this link has expired");
    }
    if row.max_clicks.is_some_and(|max| clicks >= max) {
        return Some("this link has reached its click limit");
    }
    None
}
