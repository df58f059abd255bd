//! Token login: a 15-minute JWT access token and a 7-day opaque refresh token that rotates
//! on every use. Presenting a spent refresh token again is taken as theft: its whole family
//! (every token descended from the same login) is revoked.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use basis_auth::jwt::ACCESS_TOKEN_SECONDS;
use basis_auth::password::MAX_PASSWORD_BYTES;
use basis_auth::role::Role;
use basis_auth::secret::{digest, random_id, random_token};
use basis_auth::throttle::Action;
use basis_store::refresh_tokens::{self, NewToken, RevokedFamily};
use basis_store::token_cutoffs;
use basis_store::users::{self, UserRow};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::audit;
use crate::error::{ApiError, ApiResult};
use crate::http::extract::ApiJson;
use crate::http::extract::ClientIp;
use crate::http::rest::no_store;
use crate::identity::caller::{Authenticated, Caller};
use crate::identity::views::UserView;
use crate::identity::{REFRESH_TTL_MS, normalise_email};
use crate::state::AppState;

/// An email and password.
#[derive(Debug, Deserialize, ToSchema)]
pub struct Credentials {
    /// The account's email.
    pub email: String,
    /// The password.
    pub password: String,
}

/// The body of `/auth/refresh` and `/auth/logout`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RefreshRequest {
    /// The refresh token from the last login or refresh.
    pub refresh_token: String,
}

/// A token pair.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TokenPair {
    /// The JWT to send as `Authorization: Bearer …`.
    pub access_token: String,
    /// The opaque token that buys the next pair (once).
    pub refresh_token: String,
    /// Always `Bearer`.
    pub token_type: &'static str,
    /// Seconds until the access token expires.
    pub expires_in: i64,
}

/// The one answer to a failed password login, whatever failed.
pub fn bad_credentials() -> ApiError {
    ApiError::Unauthorized {
        challenge: "Bearer",
        detail: "the email or password is not correct".into(),
    }
}

/// Checks an email and password (throttled per account and address), rehashing the
/// stored hash when its parameters are out of date. Unknown accounts cost the same time.
pub async fn check_password(
    state: &AppState,
    ip: &ClientIp,
    credentials: Credentials,
) -> ApiResult<UserRow> {
    if credentials.password.len() > MAX_PASSWORD_BYTES {
        return Err(ApiError::field(
            "password",
            format!("must be at most {MAX_PASSWORD_BYTES} bytes"),
        ));
    }
    let email = normalise_email(&credentials.email).unwrap_or_default();
    let subject = format!("{email}|{}", ip.text());
    if let Err(err) = state
        .identity
        .throttle(state.clock.as_ref(), Action::Login, &subject)
        .await
    {
        audit::record(state, "login.throttled", None, ip, Some(&email)).await;
        return Err(err);
    }
    let user = match email.is_empty() {
        true => None,
        false => users::find_by_email(&state.store, &email).await?,
    };
    let hasher = state.passwords.hasher();
    let verified = hasher
        .verify(
            user.as_ref().and_then(|u| u.password_hash.clone()),
            credentials.password.clone(),
        )
        .await?;
    let Some(user) = user.filter(|_| verified.matched) else {
        audit::record(state, "login.failed", None, ip, Some(&email)).await;
        return Err(bad_credentials());
    };
    if verified.needs_rehash {
        let hash = hasher.hash(credentials.password).await?;
        users::set_password_hash(&state.store, &user.id, &hash, state.clock.now_ms()).await?;
        tracing::info!(user = %user.id, "password rehashed with the current parameters");
    }
    Ok(user)
}

/// Logs in with email and password; answers a token pair.
#[utoipa::path(post, path = "/auth/login", tag = "auth", request_body = Credentials,
    responses((status = 200, body = TokenPair),
        (status = 202, description = "The account uses MFA: finish with `POST /auth/mfa/verify`", body = crate::accounts::mfa::MfaChallenge),
        (status = 400, description = "Malformed JSON or invalid fields"), (status = 401),
        (status = 403, description = "The account's role requires MFA it has not set up: enrol with the challenge given", body = crate::accounts::mfa::EnrolmentRequired, content_type = "application/problem+json"),
        (status = 413, description = "Body too large"), (status = 415, description = "Not JSON"), (status = 429)))]
pub async fn login(
    State(state): State<AppState>,
    ip: ClientIp,
    ApiJson(credentials): ApiJson<Credentials>,
) -> ApiResult<Response> {
    let user = check_password(&state, &ip, credentials).await?;
    if let Some(answer) = super::mfa::second_step(&state, &user, super::mfa::Kind::Token).await? {
        return Ok(answer);
    }
    let role = parse_role(&user.role)?;
    let pair = issue_pair(&state, &user.id, role).await?;
    audit::record(
        &state,
        "login.succeeded",
        Some(&user.id),
        &ip,
        Some("token"),
    )
    .await;
    Ok(no_store(StatusCode::OK, pair))
}

pub(crate) fn parse_role(role: &str) -> ApiResult<Role> {
    role.parse()
        .map_err(|e: String| ApiError::Internal(anyhow::anyhow!(e)))
}

/// Issues an access token and a refresh token in a new family (a login).
pub async fn issue_pair(state: &AppState, user_id: &str, role: Role) -> ApiResult<TokenPair> {
    let now = state.clock.now_ms();
    let refresh_token = random_token();
    let first = NewToken {
        token_hash: &digest(&refresh_token),
        issued_at: now,
        expires_at: now + REFRESH_TTL_MS,
    };
    refresh_tokens::start_family(&state.store, &random_id(), user_id, &first).await?;
    token_pair(state, user_id, role, refresh_token, now)
}

/// The pair of a fresh access token and `refresh_token` (stored already).
fn token_pair(
    state: &AppState,
    user_id: &str,
    role: Role,
    refresh_token: String,
    now: i64,
) -> ApiResult<TokenPair> {
    let (access_token, _) = state.identity.keys.issue_ms(user_id, role, now)?;
    Ok(TokenPair {
        access_token,
        refresh_token,
        token_type: "Bearer",
        expires_in: ACCESS_TOKEN_SECONDS,
    })
}

fn invalid_refresh() -> ApiError {
    ApiError::Unauthorized {
        challenge: "Bearer error=\"invalid_token\"",
        detail: "the refresh token is not valid; log in again".into(),
    }
}

/// Trades a refresh token for a new pair; the presented token is spent.
#[utoipa::path(post, path = "/auth/refresh", tag = "auth", request_body = RefreshRequest,
    responses((status = 200, body = TokenPair), (status = 400, description = "Malformed JSON or invalid fields"), (status = 401), (status = 413, description = "Body too large"), (status = 415, description = "Not JSON")))]
pub async fn refresh(
    State(state): State<AppState>,
    ip: ClientIp,
    ApiJson(body): ApiJson<RefreshRequest>,
) -> ApiResult<Response> {
    let now = state.clock.now_ms();
    let hash = digest(&body.refresh_token);
    let next_token = random_token();
    let next = NewToken {
        token_hash: &digest(&next_token),
        issued_at: now,
        expires_at: now + REFRESH_TTL_MS,
    };
    // Spending the presented token and storing its successor is one transaction.
    let Some(rotation) = refresh_tokens::rotate(&state.store, &hash, &next, now).await? else {
        let revoked = refresh_tokens::revoke_family_of(&state.store, &hash, now).await?;
        if let Some(RevokedFamily {
            family_id: family,
            user_id: user,
            token_was_spent: true,
        }) = revoked
        {
            tracing::warn!(%family, %user, "a spent refresh token was presented again; family revoked");
            audit::record(&state, "refresh.reused", Some(&user), &ip, Some(&family)).await;
        }
        return Err(invalid_refresh());
    };
    let user = users::find(&state.store, &rotation.user_id)
        .await?
        .ok_or_else(invalid_refresh)?;
    let pair = token_pair(&state, &user.id, parse_role(&user.role)?, next_token, now)?;
    Ok(no_store(StatusCode::OK, pair))
}

/// Ends a token login: the refresh token's family is revoked. Always 204, so the answer
/// says nothing about the token.
#[utoipa::path(post, path = "/auth/logout", tag = "auth", request_body = RefreshRequest,
    responses((status = 204), (status = 400, description = "Malformed JSON or invalid fields"), (status = 413, description = "Body too large"), (status = 415, description = "Not JSON")))]
pub async fn logout(
    State(state): State<AppState>,
    ApiJson(body): ApiJson<RefreshRequest>,
) -> ApiResult<StatusCode> {
    let now = state.clock.now_ms();
    refresh_tokens::revoke_family_of(&state.store, &digest(&body.refresh_token), now).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Signs the caller out everywhere: every session and refresh token of the account is
/// revoked, and every access token issued until now is refused from the next request on.
#[utoipa::path(post, path = "/auth/logout-all", tag = "auth",
    responses((status = 204, description = "Signed out everywhere"),
        (status = 401, description = "Not signed in", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 403, description = "An API key or a failed CSRF check", body = crate::error::Problem, content_type = "application/problem+json")))]
pub async fn logout_all(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
) -> ApiResult<StatusCode> {
    let principal = caller.require_account()?;
    sign_out_everywhere(&state, &principal.user_id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Revokes every session and refresh token of `user_id`, and refuses every access token
/// issued until now.
pub async fn sign_out_everywhere(state: &AppState, user_id: &str) -> ApiResult<()> {
    let now = state.clock.now_ms();
    token_cutoffs::sign_out_everywhere(&state.store, user_id, now).await?;
    state.identity.cutoffs.applied(user_id, now).await;
    Ok(())
}

/// Who is calling.
#[utoipa::path(get, path = "/auth/me", tag = "auth",
    responses((status = 200, body = UserView), (status = 401)))]
pub async fn me(State(state): State<AppState>, caller: Caller) -> ApiResult<Json<UserView>> {
    let principal = caller.require()?;
    let user = users::find(&state.store, &principal.user_id)
        .await?
        .ok_or_else(|| ApiError::Unauthorized {
            challenge: "Bearer",
            detail: "the account no longer exists".into(),
        })?;
    Ok(Json(UserView::from(&user)))
}
