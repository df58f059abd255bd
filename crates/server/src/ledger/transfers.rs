//! `POST /transfers`, `GET /transfers/{id}`, `POST /transfers/{id}/post|void` and the event
//! feed `GET /ledger/events`.

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use basis_auth::role::Role;
use basis_ledger::{AccountRef, Currency, Position, TransferRequest};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};

use super::service::{self, is_admin, json_response, refusal, visible_transfer};
use super::views::{EventPage, EventView, TransferView};
use crate::error::{ApiError, ApiResult, Problem};
use crate::http::extract::ClientIp;
use crate::http::idempotency;
use crate::http::rest::{body_of, from_document, parse_id, parse_json};
use crate::identity::caller::{Caller, Principal};
use crate::state::AppState;

/// What `POST /transfers` takes.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TransferBody {
    /// The account debited (the caller's own; admins may use a funding account): an id of
    /// this bank, or `participant:id` for the caller's own account at another bank.
    pub from: AccountTarget,
    /// The account credited: an id of this bank, or `participant:id` for an account of
    /// another bank (`--ledger-remote-url`).
    pub to: AccountTarget,
    /// Minor units, a JSON integer of at least 1.
    #[schema(value_type = i64, minimum = 1)]
    pub amount: Value,
    /// ISO 4217 code of both accounts.
    #[schema(schema_with = crate::ledger::service::currency_schema)]
    pub currency: String,
    /// Reserve the amount until posted or voided (default false).
    pub pending: Option<bool>,
    /// For a pending transfer only: void it after this many seconds.
    #[schema(value_type = Option<i64>, minimum = 1)]
    pub timeout_seconds: Option<Value>,
    /// Free text kept with the transfer.
    #[schema(max_length = 200)]
    pub reference: Option<String>,
}

/// An account of `POST /transfers`.
#[derive(Debug, ToSchema)]
#[serde(untagged)] // for the schema: one of the two, as the hand-written `Deserialize` reads
pub enum AccountTarget {
    /// An account of this bank.
    Local(i64),
    /// `42` (this bank) or `remote:42` (the participant called `remote`).
    #[schema(value_type = crate::http::schema::LedgerAccount)]
    Named(String),
}

/// A JSON integer (`5.0` included) or a string; anything else is refused naming what it
/// must be, where an untagged enum would only say that no variant matched.
impl<'de> Deserialize<'de> for AccountTarget {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        match Value::deserialize(deserializer)? {
            Value::String(name) => Ok(Self::Named(name)),
            number @ Value::Number(_) => crate::http::rest::json_integer(&number)
                .map(Self::Local)
                .ok_or_else(|| {
                    serde::de::Error::custom(format!(
                        "must be an account id from 1 to {}, or participant:id",
                        i64::MAX
                    ))
                }),
            _ => Err(serde::de::Error::custom(
                "must be an account id (a number) or participant:id (a string)",
            )),
        }
    }
}

impl AccountTarget {
    /// The reference it names, or a 422 naming `field`.
    fn parse(&self, field: &str) -> Result<AccountRef, ApiError> {
        match self {
            Self::Local(id) => Ok(AccountRef {
                participant: None,
                id: *id,
            }),
            Self::Named(s) => s
                .parse()
                .map_err(|e: String| ApiError::unprocessable(field, e)),
        }
    }
}

/// The longest reference.
const MAX_REFERENCE_CHARS: usize = 200;

/// The header every money-moving POST needs.
const KEY_PARAM: &str = "Required; a retry with the same key and body returns the first response";

/// Moves money from the caller's account, or reserves it (`pending`). Needs an
/// `Idempotency-Key`.
#[utoipa::path(post, path = "/transfers", tag = "ledger", request_body = TransferBody,
    params(("Idempotency-Key" = String, Header, pattern = "^[!-~]([ -~]{0,253}[!-~])?$", description = KEY_PARAM)),
    responses((status = 201, description = "The transfer (a CrossTransferView when `to` names another bank)", body = CreatedTransfer, headers(("Location" = String))),
        (status = 400, description = "No or bad Idempotency-Key, malformed JSON", body = Problem, content_type = "application/problem+json"),
        (status = 401, body = Problem, content_type = "application/problem+json"), (status = 404, description = "Unknown or foreign account", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The same key is still running; or a transfer to another bank was aborted by recovery", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid amount, currency mismatch, same account, insufficient funds, a reused key; or `to` names another bank that is not configured or the ledger is on SQLite", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "A database of a transfer to another bank is unavailable", body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 413, body = Problem, content_type = "application/problem+json"),
        (status = 415, body = Problem, content_type = "application/problem+json")))]
pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    ip: ClientIp,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<Response> {
    let principal = caller.require_account()?;
    let bytes = body_of(&headers, body, "application/json")?;
    idempotency::required(
        &state,
        &principal.user_id,
        &headers,
        "/transfers",
        &bytes,
        || async {
            let input: TransferBody = from_document(parse_json(&bytes)?)?;
            let amount = service::amount("amount", &input.amount)?;
            let currency = Currency::parse(&input.currency).map_err(refusal)?;
            let timeout_ms = match &input.timeout_seconds {
                None => None,
                Some(_) if input.pending != Some(true) => {
                    return Err(ApiError::unprocessable(
                        "timeoutSeconds",
                        "applies to pending transfers only",
                    ));
                }
                Some(value) => Some(
                    service::amount("timeoutSeconds", value)?
                        .checked_mul(1000)
                        .ok_or_else(|| ApiError::unprocessable("timeoutSeconds", "is too large"))?,
                ),
            };
            if input
                .reference
                .as_ref()
                .is_some_and(|r| r.chars().count() > MAX_REFERENCE_CHARS)
            {
                return Err(ApiError::unprocessable(
                    "reference",
                    format!("must be at most {MAX_REFERENCE_CHARS} characters"),
                ));
            }
            let ledger = &state.ledger.ledger;
            let source = input.from.parse("from")?;
            let target = input.to.parse("to")?;
            if source.participant.is_some() || target.participant.is_some() {
                let cross = super::cross::CrossInput {
                    from: source,
                    to: target,
                    amount,
                    currency,
                    pending: input.pending == Some(true),
                    reference: input.reference,
                    request_key: idempotency::scoped_key(&principal.user_id, &headers),
                };
                return super::cross::create(&state, principal, &ip, cross).await;
            }
            let from = debitable(&state, principal, source.id).await?;
            let to = ledger.account(target.id).await.map_err(refusal)?;
            if to.is_funding && !is_admin(principal) {
                return Err(ApiError::NotFound);
            }
            let mut request = TransferRequest::posted(from.id, to.id, amount, &currency);
            request.request_key = idempotency::scoped_key(&principal.user_id, &headers);
            if input.pending == Some(true) {
                request = request.pending(timeout_ms);
            }
            request.reference = input.reference;
            let t = ledger.transfer(&request).await.map_err(refusal)?;
            service::moved(&state, principal, &ip, "ledger.transfer", &t).await;
            json_response(
                StatusCode::CREATED,
                Some(format!("/transfers/{}", t.id)),
                &TransferView::from(&t),
            )
        },
    )
    .await
}

/// Account `id` of this bank, if `principal` may move money out of it: only the owner
/// may; money enters through the funding account, which only admins may debit. Anything
/// else looks like no account at all (404).
pub(super) async fn debitable(
    state: &AppState,
    principal: &Principal,
    id: i64,
) -> Result<basis_ledger::Account, ApiError> {
    let from = state.ledger.ledger.account(id).await.map_err(refusal)?;
    let owns = from.owner_id.as_deref() == Some(principal.user_id.as_str());
    if owns || (from.is_funding && is_admin(principal)) {
        Ok(from)
    } else {
        Err(ApiError::NotFound)
    }
}

/// What `POST /transfers` answers with.
#[derive(Debug, Serialize, ToSchema)]
#[serde(untagged)]
pub enum CreatedTransfer {
    /// A transfer within this bank.
    Local(TransferView),
    /// A transfer to another bank.
    Cross(super::cross::CrossTransferView),
}

/// A transfer (either side's owner, or an admin; others 404).
#[utoipa::path(get, path = "/transfers/{id}", tag = "ledger", params(("id" = i64, Path, description = "The transfer id")),
    responses((status = 200, body = TransferView), (status = 401, body = Problem, content_type = "application/problem+json"), (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 400, body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json")))]
pub async fn read(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    let principal = caller.require_account()?;
    let t = visible_transfer(&state, principal, parse_id(&id)?).await?;
    json_response(StatusCode::OK, None, &TransferView::from(&t))
}

/// What `POST /transfers/{id}/post` may take.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PostBody {
    /// Post less than was reserved (the rest is released).
    #[schema(value_type = Option<i64>, minimum = 1)]
    pub amount: Option<Value>,
}

/// What `POST /transfers/{id}/void` may take, for the document: nothing (or `{}`).
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct VoidBody {}

/// Posts a pending transfer: all it reserved, or a smaller `amount` (409 if not pending).
#[utoipa::path(post, path = "/transfers/{id}/post", tag = "ledger", request_body(content = Option<PostBody>),
    params(("id" = i64, Path, description = "The transfer id"), ("Idempotency-Key" = String, Header, pattern = "^[!-~]([ -~]{0,253}[!-~])?$", description = KEY_PARAM)),
    responses((status = 200, body = TransferView), (status = 400, body = Problem, content_type = "application/problem+json"), (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"), (status = 409, description = "Not pending (or the same key is running)", body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 413, body = Problem, content_type = "application/problem+json"),
        (status = 415, body = Problem, content_type = "application/problem+json")))]
pub async fn post(
    State(state): State<AppState>,
    caller: Caller,
    ip: ClientIp,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<Response> {
    resolve(state, caller, ip, headers, id, body, true).await
}

/// Voids a pending transfer, releasing what it reserved (409 if not pending).
#[utoipa::path(post, path = "/transfers/{id}/void", tag = "ledger",
    request_body(content = Option<VoidBody>, description = "Nothing: a void takes no amount"),
    params(("id" = i64, Path, description = "The transfer id"), ("Idempotency-Key" = String, Header, pattern = "^[!-~]([ -~]{0,253}[!-~])?$", description = KEY_PARAM)),
    responses((status = 200, body = TransferView), (status = 400, body = Problem, content_type = "application/problem+json"), (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"), (status = 409, description = "Not pending (or the same key is running)", body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 413, body = Problem, content_type = "application/problem+json"),
        (status = 415, body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json")))]
pub async fn void(
    State(state): State<AppState>,
    caller: Caller,
    ip: ClientIp,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<Response> {
    resolve(state, caller, ip, headers, id, body, false).await
}

async fn resolve(
    state: AppState,
    caller: Caller,
    ip: ClientIp,
    headers: HeaderMap,
    id: String,
    body: Result<Bytes, BytesRejection>,
    post: bool,
) -> ApiResult<Response> {
    let principal = caller.require_account()?;
    let id = parse_id(&id)?;
    let bytes = body.map_err(|e| ApiError::BadRequest(e.body_text()))?;
    let bytes = if bytes.is_empty() {
        bytes
    } else {
        body_of(&headers, Ok(bytes), "application/json")?
    };
    let action = if post { "post" } else { "void" };
    let path = format!("/transfers/{id}/{action}");
    idempotency::required(
        &state,
        &principal.user_id,
        &headers,
        &path,
        &bytes,
        || async {
            // The body is optional: none, or `null` as the document allows, is an empty one.
            let document = if bytes.is_empty() {
                serde_json::Value::Null
            } else {
                parse_json(&bytes)?
            };
            let input: PostBody = if document.is_null() {
                PostBody::default()
            } else {
                from_document(document)?
            };
            let amount = match (&input.amount, post) {
                (None, _) => None,
                (Some(_), false) => {
                    return Err(ApiError::unprocessable("amount", "a void takes no amount"));
                }
                (Some(value), true) => Some(service::amount("amount", value)?),
            };
            visible_transfer(&state, principal, id).await?;
            let ledger = &state.ledger.ledger;
            let t = if post {
                ledger.post(id, amount).await
            } else {
                ledger.void(id).await
            }
            .map_err(refusal)?;
            service::moved(
                &state,
                principal,
                &ip,
                &format!("ledger.transfer.{action}"),
                &t,
            )
            .await;
            json_response(StatusCode::OK, None, &TransferView::from(&t))
        },
    )
    .await
}

/// Where to read the feed from.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct FeedQuery {
    /// A position (`tx.seq`) from a previous page's `next`; the start when absent.
    #[param(value_type = Option<crate::http::schema::FeedPosition>)]
    pub after: Option<String>,
    /// Events per page (1–1000, default 100).
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<i64>,
}

/// Whether `raw` is `tx.seq` in decimal digits (`http::schema::FEED_POSITION_PATTERN`).
fn is_feed_position(raw: &str) -> bool {
    let digits =
        |part: &str| (1..=18).contains(&part.len()) && part.bytes().all(|b| b.is_ascii_digit());
    raw.split_once('.')
        .is_some_and(|(tx, seq)| digits(tx) && digits(seq))
}

/// The ledger's global event feed, in order (admins).
#[utoipa::path(get, path = "/ledger/events", tag = "ledger", params(FeedQuery),
    responses((status = 200, body = EventPage), (status = 400, body = Problem, content_type = "application/problem+json"), (status = 401, body = Problem, content_type = "application/problem+json"), (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json")))]
pub async fn events(
    State(state): State<AppState>,
    caller: Caller,
    query: Result<Query<FeedQuery>, QueryRejection>,
) -> ApiResult<Response> {
    caller.require_role(Role::Admin)?;
    let Query(query) = query.map_err(|e| ApiError::BadRequest(e.body_text()))?;
    let after = match query.after.as_deref() {
        None => Position::START,
        Some(raw) => Some(raw)
            .filter(|raw| is_feed_position(raw))
            .and_then(|raw| raw.parse().ok())
            .ok_or_else(|| ApiError::field("after", "is not a feed position (tx.seq)"))?,
    };
    let limit = match query.limit.unwrap_or(100) {
        n @ 1..=1000 => n,
        _ => return Err(ApiError::field("limit", "must be between 1 and 1000")),
    };
    let events = state
        .ledger
        .ledger
        .events_after(after, limit)
        .await
        .map_err(refusal)?;
    let next = events.last().map_or(after, |e| e.position()).to_string();
    let items = events.iter().map(EventView::from).collect();
    json_response(StatusCode::OK, None, &EventPage { items, next })
}
