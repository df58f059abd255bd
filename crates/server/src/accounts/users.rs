//! `/users` handlers.

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use basis_auth::password::check_policy;
use basis_auth::role::{Role, Scope};
use basis_auth::secret::random_id;
use basis_store::users::{self, UserRow};
use serde::Deserialize;
use utoipa::ToSchema;

use crate::audit;
use crate::error::{ApiError, ApiResult, FieldError};
use crate::http::extract::ApiJson;
use crate::http::extract::ClientIp;
use crate::http::rest::{List, Page, list_response};
use crate::identity::caller::{Authenticated, Caller, Credential, Principal};
use crate::identity::normalise_email;
use crate::identity::views::{Profile, UserView};
use crate::state::AppState;

/// The body of `POST /users`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewUser {
    /// Email (normalised: trimmed, lower-case).
    #[schema(format = Email)]
    pub email: String,
    /// 12 to 256 characters, not easily guessed.
    #[schema(min_length = 12, max_length = 256)]
    pub password: String,
    /// Display name, 1 to 100 characters.
    #[schema(value_type = crate::http::schema::DisplayName)]
    pub name: String,
}

/// The body of `PATCH /users/{id}` (merge patch).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ChangeUser {
    /// A new display name.
    #[schema(value_type = Option<crate::http::schema::DisplayName>)]
    pub name: Option<String>,
    /// A new email.
    #[schema(format = Email)]
    pub email: Option<String>,
    /// New settings (a JSON object, replacing the old).
    #[schema(value_type = Option<Object>)]
    pub settings: Option<serde_json::Value>,
    /// A new role (admins only).
    #[schema(value_type = Option<crate::http::schema::RoleName>)]
    pub role: Option<String>,
}

/// The body of `POST /users/{id}/password`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ChangePassword {
    /// The password in use (not needed when an admin sets another user's password).
    pub current_password: Option<String>,
    /// The new password: 12 to 256 characters, not easily guessed.
    #[schema(min_length = 12, max_length = 256)]
    pub new_password: String,
}

fn check_name(name: &str, errors: &mut Vec<FieldError>) -> String {
    let name = name.trim();
    if name.is_empty() || name.chars().count() > 100 || name.chars().any(char::is_control) {
        errors.push(FieldError::new(
            "name",
            "must be 1 to 100 printable characters",
        ));
    }
    name.to_owned()
}

fn check_email(email: &str, errors: &mut Vec<FieldError>) -> String {
    normalise_email(email).unwrap_or_else(|| {
        errors.push(FieldError::new("email", "must be an email address"));
        String::new()
    })
}

/// 422 naming `password` when it is on the breached-password list shipped with the
/// project: well-formed, but refused whatever its estimated strength.
pub fn refuse_breached(password: &str) -> ApiResult<()> {
    if basis_auth::breached::is_breached(password) {
        return Err(ApiError::UnprocessableFields(vec![FieldError::new(
            "password",
            "appears in lists of passwords exposed in data breaches; choose another",
        )]));
    }
    Ok(())
}

/// Checks the password policy against the user's own details.
pub fn check_password(password: &str, email: &str, name: &str) -> Result<(), FieldError> {
    check_policy(password, &[email, name]).map_err(|e| FieldError::new("password", e.to_string()))
}

/// Creates an account (sign-up). Anyone may; the role is always `user`.
#[utoipa::path(post, path = "/users", tag = "users", request_body = NewUser,
    responses((status = 201, body = UserView), (status = 400), (status = 409), (status = 413, description = "Body too large"), (status = 415, description = "Not JSON"), (status = 422, description = "The password is on the breached-password list")))]
pub async fn create(
    State(state): State<AppState>,
    ApiJson(body): ApiJson<NewUser>,
) -> ApiResult<Response> {
    let user = create_user(&state, body, Role::User).await?;
    let location = HeaderValue::from_str(&format!("/users/{}", user.id))
        .map_err(|e| ApiError::Internal(e.into()))?;
    Ok((
        StatusCode::CREATED,
        [(header::LOCATION, location)],
        Json(UserView::from(&user)),
    )
        .into_response())
}

/// Validates and stores a new account.
pub async fn create_user(state: &AppState, body: NewUser, role: Role) -> ApiResult<UserRow> {
    let now = state.clock.now_ms();
    insert_user(&state.store, state.passwords.hasher(), now, body, role).await
}

/// Validates and stores a new account with `role` (also used by `basis admin create-user`).
pub async fn insert_user(
    store: &basis_store::Store,
    hasher: &basis_auth::password::Hasher,
    now: i64,
    body: NewUser,
    role: Role,
) -> ApiResult<UserRow> {
    let mut errors = Vec::new();
    let email = check_email(&body.email, &mut errors);
    let name = check_name(&body.name, &mut errors);
    if errors.is_empty() {
        refuse_breached(&body.password)?;
    }
    if let Err(problem) = check_password(&body.password, &email, &name) {
        errors.push(problem);
    }
    if !errors.is_empty() {
        return Err(ApiError::Invalid(errors));
    }
    let user = UserRow {
        id: random_id(),
        email,
        name,
        password_hash: Some(hasher.hash(body.password).await?),
        role: role.as_str().to_owned(),
        settings: "{}".into(),
        created_at: now,
        updated_at: now,
    };
    users::insert(store, &user).await.map_err(|e| match e {
        basis_store::Error::Conflict(_) => {
            ApiError::Conflict("an account with this email exists".into())
        }
        other => other.into(),
    })?;
    Ok(user)
}

async fn load(state: &AppState, id: &str) -> ApiResult<UserRow> {
    users::find(&state.store, id)
        .await?
        .ok_or(ApiError::NotFound)
}

/// The public view of an account.
#[utoipa::path(get, path = "/users/{id}", tag = "users",
    responses((status = 200, body = UserView), (status = 404)))]
pub async fn read(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<Json<UserView>> {
    let view = state
        .user_views
        .get_or_load(&id, || async {
            let user = users::find(&state.store, &id).await?;
            Ok::<_, basis_store::Error>(user.as_ref().map(UserView::from))
        })
        .await?;
    Ok(Json(view.ok_or(ApiError::NotFound)?))
}

/// The owner's profile (email, settings): the owner or an admin.
#[utoipa::path(get, path = "/users/{id}/profile", tag = "users",
    responses((status = 200, body = Profile), (status = 401), (status = 403), (status = 404)))]
pub async fn profile(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<Profile>> {
    caller.act_for(&id)?;
    caller.require_scope(Scope::ProfileRead)?;
    Ok(Json(Profile::from(&load(&state, &id).await?)))
}

/// Changes name, email or settings (owner or admin) or the role (admin).
#[utoipa::path(patch, path = "/users/{id}", tag = "users", request_body = ChangeUser,
    responses((status = 200, body = Profile), (status = 400), (status = 401), (status = 403), (status = 404), (status = 409), (status = 413, description = "Body too large"), (status = 415, description = "Not JSON")))]
pub async fn update(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    ip: ClientIp,
    Path(id): Path<String>,
    change: Result<ApiJson<ChangeUser>, ApiError>,
) -> ApiResult<Json<Profile>> {
    caller.require_account()?;
    let principal = caller.act_for(&id)?;
    // Who may change the account is settled before its body is read.
    let ApiJson(change) = change?;
    let user = apply_change(&state, principal, &id, &change, &ip).await?;
    Ok(Json(Profile::from(&user)))
}

/// Applies `change` to account `id` for `principal` (who may act for it; only an admin
/// changes a role): the rule of `PATCH /users/{id}` and of the admin's user page. A role
/// change refuses the tokens issued before it and is recorded in the audit log.
pub async fn apply_change(
    state: &AppState,
    principal: &Principal,
    id: &str,
    change: &ChangeUser,
    ip: &ClientIp,
) -> ApiResult<UserRow> {
    let mut user = load(state, id).await?;
    let mut errors = Vec::new();
    if let Some(name) = &change.name {
        user.name = check_name(name, &mut errors);
    }
    if let Some(email) = &change.email {
        user.email = check_email(email, &mut errors);
    }
    if let Some(settings) = &change.settings {
        if !settings.is_object() || settings.to_string().len() > 16 * 1024 {
            errors.push(FieldError::new(
                "settings",
                "must be a JSON object of at most 16 KiB",
            ));
        }
        user.settings = settings.to_string();
    }
    let old_role = user.role.clone();
    if let Some(role) = &change.role {
        match role.parse::<Role>() {
            Ok(role) => user.role = role.as_str().to_owned(),
            Err(message) => errors.push(FieldError::new("role", message)),
        }
    }
    if !errors.is_empty() {
        return Err(ApiError::Invalid(errors));
    }
    if user.role != old_role && !principal.role.at_least(Role::Admin) {
        return Err(ApiError::Forbidden("only admins change roles".into()));
    }
    user.updated_at = state.clock.now_ms();
    let actor = principal.user_id.clone();
    let updated = users::update(&state.store, &user).await;
    state.user_views.invalidate(&user.id).await;
    match updated {
        Ok(true) => {}
        Ok(false) => return Err(ApiError::NotFound),
        Err(basis_store::Error::Conflict(_)) => {
            return Err(ApiError::Conflict(
                "an account with this email exists".into(),
            ));
        }
        Err(other) => return Err(other.into()),
    }
    if user.role != old_role {
        // Tokens carry the role they were issued with: refuse those issued before the
        // change, so the next request (after a refresh) carries the new role.
        state
            .identity
            .cutoffs
            .cut(&state.store, &user.id, state.clock.now_ms())
            .await?;
        let detail = format!("{} {old_role} -> {} by {actor}", user.id, user.role);
        audit::record(state, "role.changed", Some(&user.id), ip, Some(&detail)).await;
    }
    Ok(user)
}

/// Deletes the account and everything it holds (sessions, tokens, keys, links).
#[utoipa::path(delete, path = "/users/{id}", tag = "users",
    responses((status = 204), (status = 401), (status = 403), (status = 404)))]
pub async fn remove(
    State(state): State<AppState>,
    caller: Caller,
    ip: ClientIp,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    caller.require_account()?;
    let actor = caller.act_for(&id)?.user_id.clone();
    let links = users::delete(&state.store, &id)
        .await?
        .ok_or(ApiError::NotFound)?;
    state
        .identity
        .cutoffs
        .cut(&state.store, &id, state.clock.now_ms())
        .await?;
    state.user_views.invalidate(&id).await;
    for link in links {
        let code = link
            .alias
            .unwrap_or_else(|| state.codes.encode(link.id as u64));
        let key = crate::links::cache::key(&code, link.domain.as_deref());
        state.link_cache.invalidate(&key).await;
    }
    audit::record(
        &state,
        "user.deleted",
        Some(&id),
        &ip,
        Some(&format!("by {actor}")),
    )
    .await;
    Ok(StatusCode::NO_CONTENT)
}

/// Query of the account list, whose cursor is an account id.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct UserPage {
    /// Items per page (1–100, default 20).
    #[param(minimum = 1, maximum = 100)]
    pub limit: Option<i64>,
    /// The `nextCursor` of the previous page.
    #[param(value_type = Option<crate::http::schema::AccountId>)]
    pub cursor: Option<String>,
    /// Only accounts whose name or email contains this text (any case).
    #[param(max_length = 100)]
    pub q: Option<String>,
}

/// Whether `raw` is an account id: 32 lowercase hex digits (`http::schema::AccountId`).
pub fn is_account_id(raw: &str) -> bool {
    raw.len() == 32 && raw.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// Lists accounts (admins).
#[utoipa::path(get, path = "/users", tag = "users", params(UserPage),
    responses((status = 200, body = List<Profile>), (status = 400, body = crate::error::Problem, content_type = "application/problem+json"), (status = 401), (status = 403)))]
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    query: Result<Query<UserPage>, axum::extract::rejection::QueryRejection>,
) -> ApiResult<Response> {
    caller.require_role(Role::Admin)?;
    let Query(query) = query.map_err(|e| ApiError::BadRequest(e.body_text()))?;
    let page = Page {
        limit: query.limit,
        cursor: None,
    };
    let limit = page.limit()?;
    let (rows, next_cursor) =
        list_page(&state, query.q.as_deref(), query.cursor.as_deref(), limit).await?;
    let items = rows.iter().map(Profile::from).collect();
    let path = match query.q.as_deref().map(str::trim).filter(|q| !q.is_empty()) {
        Some(q) => format!(
            "/users?{}",
            url::form_urlencoded::Serializer::new(String::new())
                .append_pair("q", q)
                .finish()
        ),
        None => "/users".to_owned(),
    };
    Ok(list_response(&path, limit, List { items, next_cursor }))
}

/// A page of at most `limit` accounts in id order after `cursor` (an account id), those
/// matching `q` only when it is given; with the next page's cursor, if there is one. The
/// admin list of the API and of the admin pages.
pub async fn list_page(
    state: &AppState,
    q: Option<&str>,
    cursor: Option<&str>,
    limit: i64,
) -> ApiResult<(Vec<UserRow>, Option<String>)> {
    let after = match cursor {
        None => "",
        Some(c) if is_account_id(c) => c,
        Some(_) => return Err(ApiError::field("cursor", "is not a cursor from this list")),
    };
    let q = q.map(str::trim).filter(|q| !q.is_empty());
    if q.is_some_and(|q| q.chars().count() > 100) {
        return Err(ApiError::field("q", "must be at most 100 characters"));
    }
    let mut rows = match q {
        None => users::list(&state.store, after, limit + 1).await?,
        Some(q) => users::search(&state.store, q, after, limit + 1).await?,
    };
    let next_cursor = (rows.len() as i64 > limit).then(|| {
        rows.truncate(limit as usize);
        rows.last().map(|u| u.id.clone()).unwrap_or_default()
    });
    Ok((rows, next_cursor))
}

/// Changes the password; every other session and every refresh family is revoked.
#[utoipa::path(post, path = "/users/{id}/password", tag = "users", request_body = ChangePassword,
    responses((status = 204), (status = 400), (status = 401), (status = 403), (status = 404), (status = 413, description = "Body too large"), (status = 415, description = "Not JSON"), (status = 422, description = "The new password is on the breached-password list")))]
pub async fn change_password(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    ip: ClientIp,
    Path(id): Path<String>,
    body: Result<ApiJson<ChangePassword>, ApiError>,
) -> ApiResult<StatusCode> {
    caller.require_account()?;
    let principal = caller.act_for(&id)?;
    let ApiJson(body) = body?;
    set_password(&state, &ip, principal, &id, body).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Sets account `id`'s password for `principal` (who may act for it): the new one must
/// pass the policy and not be breached, and one's own change needs the current password
/// (else 403). Every other session and refresh family ends; the caller's own session, if
/// that is how they came, is kept.
pub async fn set_password(
    state: &AppState,
    ip: &ClientIp,
    principal: &Principal,
    id: &str,
    body: ChangePassword,
) -> ApiResult<()> {
    let user = load(state, id).await?;
    refuse_breached(&body.new_password)?;
    check_password(&body.new_password, &user.email, &user.name)
        .map_err(|e| ApiError::Invalid(vec![e]))?;
    let hasher = state.passwords.hasher();
    // Admins may set another user's password; one's own needs the current one.
    if principal.user_id == id && user.password_hash.is_some() {
        let current = body.current_password.unwrap_or_default();
        if current.len() > basis_auth::password::MAX_PASSWORD_BYTES
            || !hasher
                .verify(user.password_hash.clone(), current)
                .await?
                .matched
        {
            return Err(ApiError::Forbidden(
                "the current password is not correct".into(),
            ));
        }
    }
    let now = state.clock.now_ms();
    let hash = hasher.hash(body.new_password).await?;
    let keep = match &principal.via {
        Credential::Session { id_hash, .. } if principal.user_id == id => Some(id_hash.as_str()),
        _ => None,
    };
    // One transaction: no session made with the old password outlives the change.
    if !users::change_password(&state.store, id, &hash, keep, now).await? {
        return Err(ApiError::NotFound);
    }
    // Nor does an access token issued before it (the caller's own included: a bearer
    // caller signs in again with the new password; the kept session is not a token).
    state.identity.cutoffs.cut(&state.store, id, now).await?;
    audit::record(state, "password.changed", Some(id), ip, None).await;
    Ok(())
}
