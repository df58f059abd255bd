//! Password reset by email: a single-use token, valid one hour, stored as a digest.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use basis_auth::secret::digest;
use basis_auth::throttle::Action;
use basis_store::on_pool;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{ClientIp, normalise_email};
use crate::admin::audit;
use crate::error::{ApiError, ApiResult};
use crate::extract::ApiJson;
use crate::state::AppState;
use crate::users::repo;

/// The body of `POST /auth/password-reset`.
#[derive(Debug, Deserialize, ToSchema)]
pub struct ResetRequest {
    /// The account's email.
    pub email: String,
}

/// The body of `POST /auth/password-reset/confirm`.
#[derive(Debug, Deserialize, ToSchema)]
pub struct ResetConfirm {
    /// The token from the mail.
    pub token: String,
    /// The new password.
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
    let email = normalise_email(&body.email).unwrap_or_default();
    if let Err(err) = state
        .identity
        .throttle(&state, Action::PasswordReset, &email)
        .await
    {
        audit::record(&state, "password_reset.throttled", None, &ip, Some(&email)).await;
        return Err(err);
    }
    if let Some(user) = repo::find_by_email(&state.store, &email).await? {
        // A worker makes the token and sends the mail; the answer takes the same time
        // whether or not the account exists.
        state
            .jobs
            .enqueue(crate::jobs::mail::reset_job(&user.id, &state.base_url))
            .await?;
        audit::record(
            &state,
            "password_reset.requested",
            Some(&user.id),
            &ip,
            None,
        )
        .await;
    }
    Ok(super::tokens::no_store(StatusCode::ACCEPTED, ACCEPTED))
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
    responses((status = 204), (status = 400, description = "Malformed JSON or invalid fields"), (status = 413, description = "Body too large"), (status = 415, description = "Not JSON")))]
pub async fn confirm(
    State(state): State<AppState>,
    ip: ClientIp,
    ApiJson(body): ApiJson<ResetConfirm>,
) -> ApiResult<StatusCode> {
    let now = state.clock.now_ms();
    let hash = digest(&body.token);
    let user_id: Option<String> = on_pool!(state.store, read, pool => {
        sqlx::query_scalar(
            "SELECT user_id FROM password_resets WHERE token_hash = $1 AND used_at IS NULL AND expires_at > $2",
        )
        .bind(&hash).bind(now).fetch_optional(pool).await
    })
    .map_err(basis_store::Error::from)?;
    let user = match user_id {
        Some(id) => repo::find(&state.store, &id).await?,
        None => None,
    }
    .ok_or_else(invalid_token)?;
    crate::users::api::check_password(&body.password, &user.email, &user.name)
        .map_err(|e| ApiError::Invalid(vec![e]))?;
    // Spend the token atomically: of two confirmations, one wins.
    let spent = on_pool!(state.store, write, pool => {
        sqlx::query("UPDATE password_resets SET used_at = $2 WHERE token_hash = $1 AND used_at IS NULL")
            .bind(&hash).bind(now).execute(pool).await.map(|d| d.rows_affected())
    })
    .map_err(basis_store::Error::from)?;
    if spent != 1 {
        return Err(invalid_token());
    }
    let new_hash = state.passwords.hasher().hash(body.password).await?;
    repo::set_password_hash(&state.store, &user.id, &new_hash, now).await?;
    repo::revoke_credentials(&state.store, &user.id, None, now).await?;
    audit::record(&state, "password.reset", Some(&user.id), &ip, None).await;
    Ok(StatusCode::NO_CONTENT)
}
