//! `POST|GET /accounts`, `GET /accounts/{id}`, `GET /accounts/{id}/entries` and
//! `POST /accounts/{id}/deposits`.

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::Response;
use basis_auth::role::Role;
use basis_ledger::{Currency, NewAccount};
use serde::Deserialize;
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};

use super::service::{self, json_response, refusal, visible_account};
use super::views::{AccountView, EntryView, TransferView};
use crate::error::{ApiError, ApiResult, Problem};
use crate::http::extract::ClientIp;
use crate::http::idempotency;
use crate::http::rest::{List, Page, id_cursor, list_response};
use crate::http::rest::{body_of, from_document, parse_id, parse_json};
use crate::identity::caller::Caller;
use crate::state::AppState;

/// What `POST /accounts` takes.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NewAccountBody {
    /// ISO 4217 code, upper case.
    #[schema(schema_with = crate::ledger::service::currency_schema)]
    pub currency: String,
    /// A label.
    #[schema(max_length = 100)]
    pub name: Option<String>,
    /// Allow the balance to go below zero (default false).
    pub allow_overdraft: Option<bool>,
}

/// The longest account label.
const MAX_NAME_CHARS: usize = 100;

/// Opens an account for the caller (201, `Location: /accounts/{id}`).
#[utoipa::path(post, path = "/accounts", tag = "ledger", request_body = NewAccountBody,
    responses((status = 201, body = AccountView, headers(("Location" = String))),
        (status = 401, body = Problem, content_type = "application/problem+json"), (status = 415, body = Problem, content_type = "application/problem+json"), (status = 422, body = Problem, content_type = "application/problem+json"),
        (status = 400, body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 409, body = Problem, content_type = "application/problem+json"),
        (status = 413, body = Problem, content_type = "application/problem+json")))]
pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<Response> {
    let principal = caller.require_account()?;
    let bytes = body_of(&headers, body, "application/json")?;
    let input: NewAccountBody = from_document(parse_json(&bytes)?)?;
    let currency = Currency::parse(&input.currency).map_err(refusal)?;
    if input
        .name
        .as_ref()
        .is_some_and(|n| n.chars().count() > MAX_NAME_CHARS)
    {
        return Err(ApiError::unprocessable(
            "name",
            format!("must be at most {MAX_NAME_CHARS} characters"),
        ));
    }
    let account = state
        .ledger
        .ledger
        .open_account(&NewAccount {
            currency,
            name: input.name,
            owner_id: Some(principal.user_id.clone()),
            allow_overdraft: input.allow_overdraft.unwrap_or(false),
        })
        .await
        .map_err(refusal)?;
    state.ledger.written();
    let location = format!("/accounts/{}", account.id);
    json_response(
        StatusCode::CREATED,
        Some(location),
        &AccountView::strong(&account),
    )
}

/// The caller's accounts, by id, in cursor pages (`Link: rel="next"`).
#[utoipa::path(get, path = "/accounts", tag = "ledger", params(Page),
    responses((status = 200, body = List<AccountView>), (status = 400, body = Problem, content_type = "application/problem+json"), (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json")))]
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    query: Result<Query<Page>, QueryRejection>,
) -> ApiResult<Response> {
    let principal = caller.require_account()?;
    let Query(page) = query.map_err(|e| ApiError::BadRequest(e.body_text()))?;
    let limit = page.limit()?;
    let after = id_cursor(page.cursor.as_deref(), 0)?;
    let ledger = &state.ledger.ledger;
    let rows = ledger
        .accounts_of(&principal.user_id, after, limit + 1)
        .await
        .map_err(refusal)?;
    let list = List::from_rows(rows, limit, |r| r.id.to_string(), AccountView::strong);
    Ok(list_response("/accounts", limit, list))
}

/// How fresh a read must be.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ReadQuery {
    /// `strong` reads the write side; the default reads the projection (see `X-Projection-Lag`).
    #[param(pattern = "^(strong|projected)$")]
    pub consistency: Option<String>,
}

/// An account (owner or admin; others 404). By default from the read model, with
/// `X-Projection-Lag` in milliseconds; `?consistency=strong` reads the write side.
#[utoipa::path(get, path = "/accounts/{id}", tag = "ledger",
    params(("id" = i64, Path, description = "The account id"), ReadQuery),
    responses((status = 200, body = AccountView, headers(("X-Projection-Lag" = i64))),
        (status = 400, body = Problem, content_type = "application/problem+json"), (status = 401, body = Problem, content_type = "application/problem+json"), (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json")))]
pub async fn read(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    query: Result<Query<ReadQuery>, QueryRejection>,
) -> ApiResult<Response> {
    let principal = caller.require_account()?;
    let Query(query) = query.map_err(|e| ApiError::BadRequest(e.body_text()))?;
    let strong = match query.consistency.as_deref() {
        None | Some("projected") => false,
        Some("strong") => true,
        Some(_) => {
            return Err(ApiError::field(
                "consistency",
                "must be strong or projected",
            ));
        }
    };
    let account = visible_account(&state, principal, parse_id(&id)?).await?;
    let mut view = AccountView::strong(&account);
    if strong {
        return json_response(StatusCode::OK, None, &view);
    }
    let projector = &state.ledger.projector;
    let lag = projector.lag_ms().await.map_err(refusal)?;
    // Not projected yet: the read model knows nothing of it beyond its opening.
    let projected = projector.balance(account.id).await.map_err(refusal)?;
    view.balance = projected.as_ref().map_or(0, |b| b.balance);
    view.pending = projected.as_ref().map_or(0, |b| b.pending_debits);
    view.pending_credits = projected.as_ref().map_or(0, |b| b.pending_credits);
    view.version = projected.as_ref().map_or(0, |b| b.version);
    let mut response = json_response(StatusCode::OK, None, &view)?;
    response
        .headers_mut()
        .insert("x-projection-lag", HeaderValue::from(lag));
    Ok(response)
}

/// An account's entry lines (debits and credits of posted transfers), newest first.
#[utoipa::path(get, path = "/accounts/{id}/entries", tag = "ledger",
    params(("id" = i64, Path, description = "The account id"), Page),
    responses((status = 200, body = List<EntryView>), (status = 401, body = Problem, content_type = "application/problem+json"), (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 400, body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json")))]
pub async fn entries(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    query: Result<Query<Page>, QueryRejection>,
) -> ApiResult<Response> {
    let principal = caller.require_account()?;
    let Query(page) = query.map_err(|e| ApiError::BadRequest(e.body_text()))?;
    let limit = page.limit()?;
    let before = id_cursor(page.cursor.as_deref(), i64::MAX)?;
    let account = visible_account(&state, principal, parse_id(&id)?).await?;
    let ledger = &state.ledger.ledger;
    let rows = ledger
        .entries(account.id, before, limit + 1)
        .await
        .map_err(refusal)?;
    let list = List::from_rows(rows, limit, |r| r.id.to_string(), |r| EntryView::from(r));
    let path = format!("/accounts/{}/entries", account.id);
    Ok(list_response(&path, limit, list))
}

/// What `POST /accounts/{id}/deposits` takes.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DepositBody {
    /// Minor units, a JSON integer of at least 1.
    #[schema(value_type = i64, minimum = 1)]
    pub amount: Value,
}

/// Deposits money into an account (admins): a posted transfer from the currency's funding
/// account. Needs an `Idempotency-Key`.
#[utoipa::path(post, path = "/accounts/{id}/deposits", tag = "ledger", request_body = DepositBody,
    params(("id" = i64, Path, description = "The account id"),
        ("Idempotency-Key" = String, Header, pattern = "^[!-~]([ -~]{0,253}[!-~])?$", description = "Required; a retry with the same key and body returns the first response")),
    responses((status = 201, body = TransferView, headers(("Location" = String))),
        (status = 400, body = Problem, content_type = "application/problem+json"), (status = 401, body = Problem, content_type = "application/problem+json"), (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"), (status = 409, body = Problem, content_type = "application/problem+json"), (status = 422, body = Problem, content_type = "application/problem+json"),
        (status = 413, body = Problem, content_type = "application/problem+json"),
        (status = 415, body = Problem, content_type = "application/problem+json")))]
pub async fn deposit(
    State(state): State<AppState>,
    caller: Caller,
    ip: ClientIp,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<Response> {
    let principal = caller.require_role(Role::Admin)?;
    let id = parse_id(&id)?;
    let bytes = body_of(&headers, body, "application/json")?;
    let path = format!("/accounts/{id}/deposits");
    idempotency::required(
        &state,
        &principal.user_id,
        &headers,
        &path,
        &bytes,
        || async {
            let input: DepositBody = from_document(parse_json(&bytes)?)?;
            let amount = service::amount("amount", &input.amount)?;
            let ledger = &state.ledger.ledger;
            let account = ledger.account(id).await.map_err(refusal)?;
            if account.is_funding {
                return Err(ApiError::NotFound);
            }
            let currency = Currency::parse(&account.currency).map_err(refusal)?;
            let t = ledger
                .deposit_once(
                    account.id,
                    amount,
                    &currency,
                    idempotency::scoped_key(&principal.user_id, &headers),
                )
                .await
                .map_err(refusal)?;
            service::moved(&state, principal, &ip, "ledger.deposit", &t).await;
            json_response(
                StatusCode::CREATED,
                Some(format!("/transfers/{}", t.id)),
                &TransferView::from(&t),
            )
        },
    )
    .await
}
