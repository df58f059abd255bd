//! Webhooks: users register endpoints that hear about their links (`link.created`,
//! `link.clicked`, `link.deleted`), and every event reaches them signed, retried for a day,
//! then dead-lettered, all of it visible in a delivery log.
//!
//! # The path of an event
//!
//! ```text
//! link written ──(same transaction)──► outbox row ──relay──► queue topic `events`
//!   ──group `webhooks`──► [`jobs::fan_out`]: one delivery row per subscribed endpoint
//!   (made with the processed-event record, so a redelivered event makes none)
//!   ──► `webhook.deliver` job per attempt, on the `webhooks` queue ──► [`deliver::attempt`]
//! ```
//!
//! `link.clicked` comes from the click worker: one event per link per applied batch, so a hot
//! link makes one delivery per flush. Attempts run in workers, never in a request, so a slow
//! receiver (cut off after `--webhook-timeout-ms`) only delays its own retries.
//!
//! - This file: the routes (`POST|GET /webhooks`, `GET|DELETE /webhooks/{id}`,
//!   `GET /webhooks/{id}/deliveries`) and the settings.
//! - [`deliver`]: the SSRF rules, the signature, one attempt, the retry schedule.
//! - [`jobs`]: the queue handlers.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use basis_queue::Backend;
use basis_store::webhooks::{self as store, Delivery, Webhook};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::clock::to_datetime;
use crate::error::{ApiError, ApiResult, FieldError, Problem};
use crate::http::rest::{
    List, Page, body_of, from_document, id_cursor, json_response, list_response, parse_id,
    parse_json,
};
use crate::http::routes::Routes;
use crate::identity::caller::Caller;
use crate::state::AppState;

pub mod deliver;
pub mod jobs;

/// The event kinds an endpoint may ask for.
pub const EVENTS: [&str; 3] = ["link.created", "link.clicked", "link.deleted"];
/// The shortest and longest signing secret.
const SECRET_CHARS: std::ops::RangeInclusive<usize> = 16..=256;
/// The longest endpoint URL.
const MAX_URL_CHARS: usize = 2048;
/// Endpoints one user may register.
const MAX_PER_USER: i64 = 20;

/// The flags.
#[derive(Debug, Clone, clap::Args)]
pub struct WebhookConfig {
    /// Accept webhook endpoints that resolve to loopback or private addresses (off: they
    /// are refused, so users cannot make the server call into its own network).
    #[arg(long, env = "BASIS_WEBHOOKS_ALLOW_PRIVATE")]
    pub webhooks_allow_private: bool,
    /// How long one webhook delivery attempt may take, in milliseconds.
    #[arg(long, env = "BASIS_WEBHOOK_TIMEOUT_MS", default_value_t = 10_000)]
    pub webhook_timeout_ms: u64,
}

impl Default for WebhookConfig {
    fn default() -> Self {
        Self {
            webhooks_allow_private: false,
            webhook_timeout_ms: 10_000,
        }
    }
}

/// What deliveries need, in the application state and the job context.
#[derive(Debug, Clone)]
pub struct Webhooks {
    /// How deliveries are made.
    pub settings: deliver::Settings,
    /// Where delivery jobs go.
    pub backend: Arc<dyn Backend>,
}

impl Webhooks {
    /// From the flags; plain `http` endpoints only in development.
    pub fn new(config: &crate::Config, backend: Arc<dyn Backend>) -> Arc<Self> {
        Arc::new(Self {
            settings: deliver::Settings {
                allow_private: config.webhooks.webhooks_allow_private,
                allow_http: config.environment == crate::Environment::Development,
                timeout: Duration::from_millis(config.webhooks.webhook_timeout_ms.max(1)),
            },
            backend,
        })
    }
}

/// The routes.
pub fn router() -> Routes<AppState> {
    Routes::new()
        .post("/webhooks", create)
        .get("/webhooks", list)
        .get("/webhooks/{id}", read)
        .delete("/webhooks/{id}", remove)
        .get("/webhooks/{id}/deliveries", deliveries)
}

/// What `POST /webhooks` takes.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NewWebhook {
    /// Where to POST events: https (http only in development), on a public address.
    #[schema(format = "uri", pattern = "^[Hh][Tt][Tt][Pp][Ss]?://[^/?#]+")]
    pub url: String,
    /// Any of `link.created`, `link.clicked`, `link.deleted`.
    #[schema(value_type = Vec<crate::http::schema::WebhookEvent>, min_items = 1)]
    pub events: Vec<String>,
    /// The key that signs every delivery (16 to 256 characters); never shown back.
    #[schema(min_length = 16, max_length = 256)]
    pub secret: String,
}

/// An endpoint.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct WebhookView {
    /// Its id.
    pub id: String,
    /// Where events go.
    pub url: String,
    /// The kinds it receives.
    pub events: Vec<String>,
    /// When it was registered.
    pub created_at: DateTime<Utc>,
}

impl From<&Webhook> for WebhookView {
    fn from(w: &Webhook) -> Self {
        Self {
            id: w.id.to_string(),
            url: w.url.clone(),
            events: w.events.split(' ').map(str::to_owned).collect(),
            created_at: to_datetime(w.created_at),
        }
    }
}

/// One event's delivery to an endpoint.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DeliveryView {
    /// The delivery's id (the `Basis-Delivery` header).
    pub id: String,
    /// The event's id (`id` in the body).
    pub event_id: String,
    /// The event kind.
    #[serde(rename = "type")]
    pub kind: String,
    /// `pending` (retrying), `delivered` or `dead` (given up after a day).
    pub status: String,
    /// Attempts made.
    pub attempts: i32,
    /// The last answer's HTTP status.
    pub last_status: Option<i32>,
    /// Why the last attempt failed.
    pub last_error: Option<String>,
    /// When the next attempt is due, while pending.
    pub next_attempt_at: Option<DateTime<Utc>>,
    /// When the event was handed to this endpoint.
    pub created_at: DateTime<Utc>,
    /// When it was delivered or given up.
    pub finished_at: Option<DateTime<Utc>>,
    /// The JSON body sent.
    pub body: serde_json::Value,
}

impl From<&Delivery> for DeliveryView {
    fn from(d: &Delivery) -> Self {
        Self {
            id: d.id.to_string(),
            event_id: format!("evt_{}", d.event_id),
            kind: d.kind.clone(),
            status: d.status.clone(),
            attempts: d.attempts,
            last_status: d.last_status,
            last_error: d.last_error.clone(),
            next_attempt_at: (d.status == "pending").then(|| to_datetime(d.next_attempt_at)),
            created_at: to_datetime(d.created_at),
            finished_at: d.finished_at.map(to_datetime),
            body: serde_json::from_str(&d.body).unwrap_or(serde_json::Value::Null),
        }
    }
}

/// Checks a registration, naming every field that is wrong.
async fn validate(input: &NewWebhook, settings: &deliver::Settings) -> Result<(), ApiError> {
    let mut errors = Vec::new();
    if input.url.chars().count() > MAX_URL_CHARS {
        errors.push(FieldError::new(
            "url",
            format!("must be at most {MAX_URL_CHARS} characters"),
        ));
    } else {
        match url::Url::parse(&input.url) {
            Err(_) => errors.push(FieldError::new("url", "is not an absolute URL")),
            Ok(url) => {
                if let Err(reason) = deliver::resolve(&url, settings).await {
                    errors.push(FieldError::new("url", reason));
                }
            }
        }
    }
    if input.events.is_empty() {
        errors.push(FieldError::new("events", "must name at least one event"));
    }
    for (i, e) in input.events.iter().enumerate() {
        if !EVENTS.contains(&e.as_str()) {
            errors.push(FieldError::new(
                format!("events[{i}]"),
                format!("must be one of {}", EVENTS.join(", ")),
            ));
        } else if input.events[..i].contains(e) {
            errors.push(FieldError::new(format!("events[{i}]"), "is listed twice"));
        }
    }
    if !SECRET_CHARS.contains(&input.secret.chars().count()) {
        errors.push(FieldError::new(
            "secret",
            format!(
                "must have {} to {} characters",
                SECRET_CHARS.start(),
                SECRET_CHARS.end()
            ),
        ));
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(ApiError::UnprocessableFields(errors))
    }
}

/// The caller's endpoint `id`, or 404 (someone else's is not revealed).
async fn owned(state: &AppState, caller: &Caller, id: &str) -> ApiResult<Webhook> {
    let principal = caller.require()?;
    let id = parse_id(id)?;
    match store::get(&state.store, id).await? {
        Some(w) if w.owner_id == principal.user_id => Ok(w),
        _ => Err(ApiError::NotFound),
    }
}

/// Registers an endpoint for the caller's links (201, `Location: /webhooks/{id}`).
#[utoipa::path(post, path = "/webhooks", tag = "webhooks", request_body = NewWebhook,
    responses((status = 201, body = WebhookView, headers(("Location" = String))),
        (status = 400, body = Problem, content_type = "application/problem+json"),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 409, body = Problem, content_type = "application/problem+json"),
        (status = 413, body = Problem, content_type = "application/problem+json"),
        (status = 415, body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json")))]
pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<Response> {
    let principal = caller.require()?;
    let bytes = body_of(&headers, body, "application/json")?;
    let input: NewWebhook = from_document(parse_json(&bytes)?)?;
    validate(&input, &state.webhooks.settings).await?;
    let existing = store::list(&state.store, &principal.user_id, 0, MAX_PER_USER).await?;
    if existing.len() as i64 >= MAX_PER_USER {
        return Err(ApiError::Conflict(format!(
            "at most {MAX_PER_USER} webhooks per account; delete one first"
        )));
    }
    let events: Vec<&str> = input.events.iter().map(String::as_str).collect();
    let hook = store::create(
        &state.store,
        &principal.user_id,
        &input.url,
        &events,
        &input.secret,
        state.clock.now_ms(),
    )
    .await?;
    json_response(
        StatusCode::CREATED,
        Some(format!("/webhooks/{}", hook.id)),
        &WebhookView::from(&hook),
    )
}

/// The caller's endpoints, oldest first, in cursor pages.
#[utoipa::path(get, path = "/webhooks", tag = "webhooks", params(Page),
    responses((status = 200, body = List<WebhookView>),
        (status = 400, body = Problem, content_type = "application/problem+json"),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json")))]
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    query: Result<Query<Page>, QueryRejection>,
) -> ApiResult<Response> {
    let principal = caller.require()?;
    let Query(page) = query.map_err(|e| ApiError::BadRequest(e.body_text()))?;
    let limit = page.limit()?;
    let after = id_cursor(page.cursor.as_deref(), 0)?;
    let rows = store::list(&state.store, &principal.user_id, after, limit + 1).await?;
    let list = List::from_rows(rows, limit, |r| r.id.to_string(), |r| WebhookView::from(r));
    Ok(list_response("/webhooks", limit, list))
}

/// One of the caller's endpoints.
#[utoipa::path(get, path = "/webhooks/{id}", tag = "webhooks",
    params(("id" = String, Path, description = "The webhook's id")),
    responses((status = 200, body = WebhookView),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json")))]
pub async fn read(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    let hook = owned(&state, &caller, &id).await?;
    json_response(StatusCode::OK, None, &WebhookView::from(&hook))
}

/// Removes one of the caller's endpoints with its delivery log (204).
#[utoipa::path(delete, path = "/webhooks/{id}", tag = "webhooks",
    params(("id" = String, Path, description = "The webhook's id")),
    responses((status = 204),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json")))]
pub async fn remove(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    let hook = owned(&state, &caller, &id).await?;
    if !store::delete(&state.store, hook.id).await? {
        return Err(ApiError::NotFound);
    }
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// The endpoint's deliveries, newest first, in cursor pages: what was sent, the attempts,
/// and the dead letters (`status: dead`).
#[utoipa::path(get, path = "/webhooks/{id}/deliveries", tag = "webhooks",
    params(("id" = String, Path, description = "The webhook's id"), Page),
    responses((status = 200, body = List<DeliveryView>),
        (status = 400, body = Problem, content_type = "application/problem+json"),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json")))]
pub async fn deliveries(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    query: Result<Query<Page>, QueryRejection>,
) -> ApiResult<Response> {
    let hook = owned(&state, &caller, &id).await?;
    let Query(page) = query.map_err(|e| ApiError::BadRequest(e.body_text()))?;
    let limit = page.limit()?;
    let before = id_cursor(page.cursor.as_deref(), i64::MAX)?;
    let rows = store::deliveries(&state.store, hook.id, before, limit + 1).await?;
    let list = List::from_rows(rows, limit, |r| r.id.to_string(), |r| DeliveryView::from(r));
    Ok(list_response(
        &format!("/webhooks/{}/deliveries", hook.id),
        limit,
        list,
    ))
}
