//! Password reset by email: a single-use token, valid one hour, stored as a digest.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use basis_auth::secret::digest;
use basis_auth::throttle::Action;
use basis_store::password_resets;
use basis_store::users;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::audit;
use crate::error::{ApiError, ApiResult};
use crate::http::extract::ApiJson;
use crate::http::extract::ClientIp;
use crate::identity::normalise_email;
use crate::state::AppState;

/// The body of `POST /auth/password-reset`.
#[derive(Debug, Deserialize, ToSchema)]
pub struct ResetRequest {
    /// The account's email.
    pub email: String,
}

/// The body of `POST /auth/password-reset/confirm`.
#[derive(Debug, Deserialize, ToSchema)]
pub struct ResetConfirm {
    /// The token from the mail's link (its `token` parameter).
    #[schema(value_type = crate::http::schema::Token)]
    pub token: String,
    /// The new password: 12 to 256 characters, not easily guessed.
    #[schema(min_length = 12, max_length = 256)]
    pub password: String,
}

/// The answer to every accepted reset request, whether or not the account exists.
#[derive(Debug, Serialize, ToSchema)]
pub struct ResetAccepted {
    /// What happens next.
    pub message: &'static str,
}

const ACCEPTED: ResetAccepted = ResetAccepted {
    message: "if an account uses this email, a reset link is on its way",
};

/// Asks for a reset mail. Always 202 with the same body; the mail is a queued job, so the
/// answer takes about the same time either way.
#[utoipa::path(post, path = "/auth/password-reset", tag = "auth", request_body = ResetRequest,
    responses((status = 202, body = ResetAccepted), (status = 400, description = "Malformed JSON or invalid fields"), (status = 413, description = "Body too large"), (status = 415, description = "Not JSON"), (status = 429)))]
pub async fn request(
    State(state): State<AppState>,
    ip: ClientIp,
    ApiJson(body): ApiJson<ResetRequest>,
) -> ApiResult<Response> {
    send_reset_mail(&state, &ip, &body.email).await?;
    Ok(crate::http::rest::no_store(StatusCode::ACCEPTED, ACCEPTED))
}

/// Asks for a reset mail to `email` (throttled per address): a mail job when an account
/// uses it, nothing otherwise. The API and the `/reset` page answer the same either way.
pub async fn send_reset_mail(state: &AppState, ip: &ClientIp, email: &str) -> ApiResult<()> {
    let email = normalise_email(email).unwrap_or_default();
    if let Err(err) = state
        .identity
        .throttle(state.clock.as_ref(), Action::PasswordReset, &email)
        .await
    {
        audit::record(state, "password_reset.throttled", None, ip, Some(&email)).await;
        return Err(err);
    }
    if let Some(user) = users::find_by_email(&state.store, &email).await? {
        // A worker makes the token and sends the mail; the answer takes the same time
        // whether or not the account exists.
        state
            .jobs
            .enqueue(crate::jobs::mail::reset_job(&user.id, &state.base_url))
            .await?;
        audit::record(state, "password_reset.requested", Some(&user.id), ip, None).await;
    }
    Ok(())
}

fn invalid_token() -> ApiError {
    ApiError::field(
        "token",
        "is invalid, used or expired; ask for a new reset mail",
    )
}

/// Sets a new password with a reset token; the token is spent and every session and
/// refresh family of the account is revoked.
#[utoipa::path(post, path = "/auth/password-reset/confirm", tag = "auth", request_body = ResetConfirm,
    responses((status = 204), (status = 400, description = "Malformed JSON or invalid fields"), (status = 413, description = "Body too large"), (status = 415, description = "Not JSON"), (status = 422, description = "The password is on the breached-password list")))]
pub async fn confirm(
    State(state): State<AppState>,
    ip: ClientIp,
    ApiJson(body): ApiJson<ResetConfirm>,
) -> ApiResult<StatusCode> {
    set_new_password(&state, &ip, &body.token, body.password).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Whether `token` is a reset token that may still be used, now.
pub async fn token_is_live(state: &AppState, token: &str) -> ApiResult<bool> {
    let now = state.clock.now_ms();
    Ok(
        password_resets::live_user(&state.store, &digest(token), now)
            .await?
            .is_some(),
    )
}

/// Spends a reset token on a new password, under the password rules. A dead token is
/// a field error on `token`; a weak or breached password one on `password`.
pub async fn set_new_password(
    state: &AppState,
    ip: &ClientIp,
    token: &str,
    password: String,
) -> ApiResult<()> {
    let now = state.clock.now_ms();
    let hash = digest(token);
    let user_id = password_resets::live_user(&state.store, &hash, now).await?;
    let user = match user_id {
        Some(id) => users::find(&state.store, &id).await?,
        None => None,
    }
    .ok_or_else(invalid_token)?;
    crate::accounts::users::refuse_breached(&password)?;
    crate::accounts::users::check_password(&password, &user.email, &user.name)
        .map_err(|e| ApiError::Invalid(vec![e]))?;
    let new_hash = state.passwords.hasher().hash(password).await?;
    // One transaction spends the token, sets the password and revokes every session and
    // refresh family: of two confirmations one wins, and none half-applies.
    if !password_resets::reset_password(&state.store, &hash, &user.id, &new_hash, now).await? {
        return Err(invalid_token());
    }
    // Access tokens issued with the old password (perhaps to whoever made the reset
    // necessary) are refused from the next request on.
    state
        .identity
        .cutoffs
        .cut(&state.store, &user.id, now)
        .await?;
    audit::record(state, "password.reset", Some(&user.id), ip, None).await;
    Ok(())
}
