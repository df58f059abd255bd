//! API keys: created by their owner, shown once, stored as a digest, scoped, listed
//! without the secret, revocable.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use basis_auth::role::Scope;
use basis_auth::secret::{digest, new_api_key, random_id};
use basis_store::api_keys::{self, KeyRow};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::audit;
use crate::clock::to_datetime;
use crate::error::{ApiError, ApiResult, FieldError};
use crate::http::extract::ApiJson;
use crate::http::extract::ClientIp;
use crate::identity::caller::{Authenticated, Caller};
use crate::state::AppState;

/// Most live keys one account may hold.
const MAX_KEYS: i64 = 50;

/// The body of `POST /users/{id}/api-keys`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewKey {
    /// A label for the owner (1–100 characters).
    #[schema(value_type = crate::http::schema::DisplayName)]
    pub name: String,
    /// What the key may do: `links:read`, `links:write`, `profile:read`.
    #[schema(value_type = Vec<crate::http::schema::KeyScope>, min_items = 1)]
    pub scopes: Vec<String>,
}

/// A key as listed (never the secret).
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct KeyView {
    /// The key's id.
    pub id: String,
    /// The owner's label.
    pub name: String,
    /// The first characters of the key, to tell keys apart.
    pub hint: String,
    /// The scopes.
    pub scopes: Vec<String>,
    /// When it was made.
    pub created_at: DateTime<Utc>,
}

/// A new key: the only response that carries the secret.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CreatedKey {
    /// The secret: send as `Authorization: Bearer …` or `X-API-Key`. Shown only now.
    pub key: String,
    /// The key's details.
    #[serde(flatten)]
    pub view: KeyView,
}

impl From<KeyRow> for KeyView {
    fn from(row: KeyRow) -> Self {
        Self {
            id: row.id,
            name: row.name,
            hint: row.key_hint,
            scopes: row.scopes.split(' ').map(str::to_owned).collect(),
            created_at: to_datetime(row.created_at),
        }
    }
}

/// Creates an API key for user `id` (the owner or an admin).
#[utoipa::path(post, path = "/users/{id}/api-keys", tag = "users", request_body = NewKey,
    responses((status = 201, body = CreatedKey), (status = 400), (status = 401), (status = 403), (status = 404), (status = 413, description = "Body too large"), (status = 415, description = "Not JSON")))]
pub async fn create(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    ip: ClientIp,
    Path(id): Path<String>,
    body: Result<ApiJson<NewKey>, ApiError>,
) -> ApiResult<Response> {
    caller.require_account()?;
    caller.act_for(&id)?;
    // Whose keys these are is settled before the body is read.
    let ApiJson(body) = body?;
    let created = create_key(&state, &ip, &id, body).await?;
    let location = HeaderValue::from_str(&format!("/users/{id}/api-keys/{}", created.view.id))
        .map_err(|e| ApiError::Internal(e.into()))?;
    let mut response = crate::http::rest::no_store(StatusCode::CREATED, created);
    response.headers_mut().insert(header::LOCATION, location);
    Ok(response)
}

/// Makes a key for account `id` (the caller has settled that they may): a name of 1 to
/// 100 characters, known scopes, at most [`MAX_KEYS`] live. The answer is the only time
/// the secret is seen.
pub async fn create_key(
    state: &AppState,
    ip: &ClientIp,
    id: &str,
    body: NewKey,
) -> ApiResult<CreatedKey> {
    let mut errors = Vec::new();
    let name = body.name.trim().to_owned();
    if name.is_empty() || name.chars().count() > 100 || name.chars().any(char::is_control) {
        errors.push(FieldError::new(
            "name",
            "must be 1 to 100 printable characters",
        ));
    }
    let mut scopes = Vec::new();
    for raw in &body.scopes {
        match raw.parse::<Scope>() {
            Ok(scope) if !scopes.contains(&scope) => scopes.push(scope),
            Ok(_) => {}
            Err(message) => errors.push(FieldError::new("scopes", message)),
        }
    }
    if body.scopes.is_empty() {
        errors.push(FieldError::new("scopes", "name at least one scope"));
    }
    if !errors.is_empty() {
        return Err(ApiError::Invalid(errors));
    }
    let user_exists = basis_store::users::find(&state.store, id).await?.is_some();
    if !user_exists {
        return Err(ApiError::NotFound);
    }
    let live = api_keys::count_live(&state.store, id).await?;
    if live >= MAX_KEYS {
        return Err(ApiError::Conflict(format!(
            "at most {MAX_KEYS} live keys per account"
        )));
    }
    let key = new_api_key();
    let scopes: Vec<&str> = scopes.iter().map(|s| s.as_str()).collect();
    let row = KeyRow {
        id: random_id(),
        name,
        key_hint: key.chars().take(10).collect(),
        scopes: scopes.join(" "),
        created_at: state.clock.now_ms(),
    };
    let new_key = api_keys::NewKey {
        id: &row.id,
        user_id: id,
        name: &row.name,
        key_hash: &digest(&key),
        key_hint: &row.key_hint,
        scopes: &row.scopes,
        created_at: row.created_at,
    };
    api_keys::insert(&state.store, &new_key).await?;
    let detail = format!("key {} scopes {}", row.id, row.scopes);
    audit::record(state, "api_key.created", Some(id), ip, Some(&detail)).await;
    Ok(CreatedKey {
        key,
        view: row.into(),
    })
}

/// Lists the live keys of user `id`, without secrets.
#[utoipa::path(get, path = "/users/{id}/api-keys", tag = "users",
    responses((status = 200, body = [KeyView]), (status = 401), (status = 403)))]
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<Vec<KeyView>>> {
    caller.require_account()?;
    caller.act_for(&id)?;
    let rows = api_keys::list_live(&state.store, &id).await?;
    Ok(Json(rows.into_iter().map(KeyView::from).collect()))
}

/// Revokes a key at once.
#[utoipa::path(delete, path = "/users/{id}/api-keys/{key_id}", tag = "users",
    responses((status = 204), (status = 401), (status = 403), (status = 404)))]
pub async fn revoke(
    State(state): State<AppState>,
    caller: Caller,
    ip: ClientIp,
    Path((id, key_id)): Path<(String, String)>,
) -> ApiResult<impl IntoResponse> {
    caller.require_account()?;
    caller.act_for(&id)?;
    revoke_key(&state, &ip, &id, &key_id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Revokes key `key_id` of account `id` at once; 404 when `id` holds no such live key.
pub async fn revoke_key(state: &AppState, ip: &ClientIp, id: &str, key_id: &str) -> ApiResult<()> {
    let now = state.clock.now_ms();
    if !api_keys::revoke(&state.store, id, key_id, now).await? {
        return Err(ApiError::NotFound);
    }
    audit::record(state, "api_key.revoked", Some(id), ip, Some(key_id)).await;
    Ok(())
}
