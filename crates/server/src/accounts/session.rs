//! Cookie sessions for browsers: `POST /auth/session` logs in and sets the cookie,
//! `GET` shows the session and its CSRF token, `DELETE` logs out.

use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use basis_auth::secret::{digest, random_token};
use basis_store::sessions::{self, NewSession};
use basis_store::users;
use serde::Serialize;
use utoipa::ToSchema;

use super::tokens::{Credentials, check_password};
use crate::audit;
use crate::error::{ApiError, ApiResult};
use crate::http::extract::ApiJson;
use crate::http::extract::ClientIp;
use crate::identity::caller::{Caller, Credential};
use crate::identity::views::UserView;
use crate::state::AppState;

/// A session as its owner sees it.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SessionView {
    /// Send this as `X-CSRF-Token` on every state-changing request.
    pub csrf_token: String,
    /// The signed-in user.
    pub user: UserView,
}

/// The `User-Agent` of a request, cut to 256 characters, as a session keeps it (so its
/// owner can tell their sessions apart).
pub fn user_agent(headers: &HeaderMap) -> Option<&str> {
    let agent = headers.get(header::USER_AGENT)?.to_str().ok()?.trim();
    let end = agent
        .char_indices()
        .nth(256)
        .map_or(agent.len(), |(at, _)| at);
    Some(&agent[..end]).filter(|a| !a.is_empty())
}

/// Starts a session for `user_id`: a new id every time (no fixation), a new CSRF token;
/// `user_agent` is the browser's. Returns the `Set-Cookie` value and the CSRF token.
pub async fn start(
    state: &AppState,
    user_id: &str,
    user_agent: Option<&str>,
) -> ApiResult<(String, String)> {
    let now = state.clock.now_ms();
    let session_id = random_token();
    let csrf = random_token();
    let session = NewSession {
        id_hash: &digest(&session_id),
        user_id,
        csrf_token: &csrf,
        user_agent,
        now,
    };
    sessions::insert(&state.store, &session).await?;
    Ok((state.identity.sessions.set_cookie(&session_id), csrf))
}

/// Logs in with email and password and sets the session cookie.
#[utoipa::path(post, path = "/auth/session", tag = "auth", request_body = Credentials,
    responses((status = 201, body = SessionView),
        (status = 202, description = "The account uses MFA: finish with `POST /auth/mfa/verify`", body = crate::accounts::mfa::MfaChallenge),
        (status = 400, description = "Malformed JSON or invalid fields"), (status = 401),
        (status = 403, description = "The account's role requires MFA it has not set up: enrol with the challenge given", body = crate::accounts::mfa::EnrolmentRequired, content_type = "application/problem+json"),
        (status = 413, description = "Body too large"), (status = 415, description = "Not JSON"), (status = 429)))]
pub async fn create(
    State(state): State<AppState>,
    ip: ClientIp,
    headers: HeaderMap,
    ApiJson(credentials): ApiJson<Credentials>,
) -> ApiResult<Response> {
    let user = check_password(&state, &ip, credentials).await?;
    if let Some(answer) = super::mfa::second_step(&state, &user, super::mfa::Kind::Session).await? {
        return Ok(answer);
    }
    let (cookie, csrf_token) = start(&state, &user.id, user_agent(&headers)).await?;
    audit::record(
        &state,
        "login.succeeded",
        Some(&user.id),
        &ip,
        Some("session"),
    )
    .await;
    answer(cookie, csrf_token, &user)
}

/// The 201 of a session sign-in: the cookie and the session as its owner sees it.
pub fn answer(cookie: String, csrf_token: String, user: &users::UserRow) -> ApiResult<Response> {
    let mut response = crate::http::rest::no_store(
        StatusCode::CREATED,
        SessionView {
            csrf_token,
            user: UserView::from(user),
        },
    );
    let cookie = HeaderValue::from_str(&cookie).map_err(|e| ApiError::Internal(e.into()))?;
    response.headers_mut().insert(header::SET_COOKIE, cookie);
    Ok(response)
}

fn session_of(caller: &Caller) -> ApiResult<(&str, &str)> {
    let principal = caller.require()?;
    match &principal.via {
        Credential::Session { csrf_token, .. } => Ok((&principal.user_id, csrf_token)),
        _ => Err(ApiError::Unauthorized {
            challenge: "Bearer",
            detail: "no session cookie was sent".into(),
        }),
    }
}

/// The current session and its CSRF token.
#[utoipa::path(get, path = "/auth/session", tag = "auth",
    responses((status = 200, body = SessionView), (status = 401)))]
pub async fn read(State(state): State<AppState>, caller: Caller) -> ApiResult<Response> {
    let (user_id, csrf) = session_of(&caller)?;
    let user = users::find(&state.store, user_id)
        .await?
        .ok_or(ApiError::NotFound)?;
    Ok(crate::http::rest::no_store(
        StatusCode::OK,
        SessionView {
            csrf_token: csrf.to_owned(),
            user: UserView::from(&user),
        },
    ))
}

/// Logs out: the session row is deleted and the cookie cleared.
#[utoipa::path(delete, path = "/auth/session", tag = "auth",
    responses((status = 204), (status = 401), (status = 403)))]
pub async fn remove(State(state): State<AppState>, caller: Caller) -> ApiResult<Response> {
    session_of(&caller)?;
    if let Some(Credential::Session { id_hash, .. }) = caller.principal().map(|p| &p.via) {
        sessions::delete(&state.store, id_hash).await?;
    }
    let clear = HeaderValue::from_str(&basis_auth::session::clear_cookie())
        .map_err(|e| ApiError::Internal(e.into()))?;
    Ok((StatusCode::NO_CONTENT, [(header::SET_COOKIE, clear)]).into_response())
}
