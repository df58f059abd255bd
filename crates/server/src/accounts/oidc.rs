//! "Log in with …": OpenID Connect authorization code flow with PKCE.
//!
//! `GET /auth/oidc/start?redirect=…` stores the flow's secrets under its `state` and sends
//! the browser to the provider; `GET /auth/oidc/callback` takes them back (once), checks
//! the ID token, links or creates the account, starts a cookie session and sends the
//! browser to the allow-listed `redirect`.

use axum::extract::{Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use basis_auth::oidc::{Identity as OidcIdentity, Pending, Provider};
use basis_auth::role::Role;
use basis_auth::secret::random_id;
use basis_store::oidc_logins::{self, PendingLogin};
use basis_store::users::{self, UserRow};
use serde::Deserialize;

use crate::audit;
use crate::error::{ApiError, ApiResult};
use crate::http::extract::ClientIp;
use crate::identity::normalise_email;
use crate::state::AppState;

/// How long a started login may take at the provider (ms).
const FLOW_TTL_MS: i64 = 10 * 60 * 1000;

/// Query of `/auth/oidc/start`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StartQuery {
    /// Where to go after login: a path on this site or an allow-listed URL.
    pub redirect: Option<String>,
    /// Passed to the provider as `login_hint`.
    pub login_hint: Option<String>,
}

/// Query of `/auth/oidc/callback`.
#[derive(Debug, Deserialize)]
pub struct CallbackQuery {
    /// The authorization code.
    pub code: Option<String>,
    /// The state we sent.
    pub state: Option<String>,
    /// Set by the provider when the user declined or something failed.
    pub error: Option<String>,
}

async fn provider(state: &AppState) -> ApiResult<&Provider> {
    let identity = &state.identity;
    let (Some(issuer), Some(client_id)) = (
        identity.config.oidc_issuer.as_deref(),
        identity.config.oidc_client_id.as_deref(),
    ) else {
        return Err(ApiError::NotFound);
    };
    let callback = format!("{}/auth/oidc/callback", state.base_url);
    identity
        .oidc
        .get_or_try_init(|| {
            Provider::discover(
                issuer,
                client_id,
                identity.oidc_secret.as_deref(),
                &callback,
            )
        })
        .await
        .map_err(|e| ApiError::Unavailable(e.to_string()))
}

/// Whether the browser may be sent to `target` after login.
pub fn redirect_allowed(target: &str, own_origin: &str, allowlist: &[String]) -> bool {
    if target.starts_with('/') {
        // A path on our origin; `//host` and `/\host` would leave it.
        return !target.starts_with("//") && !target.contains('\\');
    }
    let Ok(url) = url::Url::parse(target) else {
        return false;
    };
    let origin = url.origin().ascii_serialization();
    origin == own_origin
        || allowlist.iter().any(|allowed| {
            let allowed = allowed.trim();
            !allowed.is_empty()
                && (origin == allowed.trim_end_matches('/')
                    || (allowed.ends_with('/') && url.as_str().starts_with(allowed)))
        })
}

/// Starts a login at the provider.
#[utoipa::path(get, path = "/auth/oidc/start", tag = "auth",
    params(("redirect" = Option<crate::http::schema::RedirectTarget>, Query, description = "Where to go after login"),
           ("loginHint" = Option<String>, Query, description = "Passed to the provider")),
    responses((status = 302, description = "To the provider"), (status = 400), (status = 404, description = "OIDC is not configured")))]
pub async fn start(
    State(state): State<AppState>,
    query: Result<Query<StartQuery>, axum::extract::rejection::QueryRejection>,
) -> ApiResult<Response> {
    let Query(query) = query.map_err(|e| ApiError::BadRequest(e.body_text()))?;
    let redirect = query.redirect.unwrap_or_else(|| "/".into());
    if !redirect_allowed(
        &redirect,
        &state.base_url,
        &state.identity.config.oidc_redirect_allowlist,
    ) {
        return Err(ApiError::field(
            "redirect",
            "is not an allowed redirect target",
        ));
    }
    let provider = provider(&state).await?;
    let (url, pending) = provider.begin(query.login_hint.as_deref());
    let login = PendingLogin {
        state: pending.state,
        nonce: pending.nonce,
        pkce_verifier: pending.pkce_verifier,
        redirect_to: redirect,
        expires_at: state.clock.now_ms() + FLOW_TTL_MS,
    };
    oidc_logins::start(&state.store, &login).await?;
    let location = HeaderValue::from_str(&url).map_err(|e| ApiError::Internal(e.into()))?;
    Ok((
        StatusCode::FOUND,
        [
            (header::LOCATION, location),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
        ],
    )
        .into_response())
}

/// Finishes a login: checks state, code and ID token, signs the user in.
#[utoipa::path(get, path = "/auth/oidc/callback", tag = "auth",
    params(("code" = crate::http::schema::Token, Query, description = "The authorization code"),
           ("state" = crate::http::schema::Token, Query, description = "The state sent at start")),
    responses((status = 303, description = "Signed in; to the redirect target"), (status = 400), (status = 401), (status = 404, description = "OIDC is not configured")))]
pub async fn callback(
    State(state): State<AppState>,
    ip: ClientIp,
    headers: axum::http::HeaderMap,
    query: Result<Query<CallbackQuery>, axum::extract::rejection::QueryRejection>,
) -> ApiResult<Response> {
    let Query(query) = query.map_err(|e| ApiError::BadRequest(e.body_text()))?;
    if let Some(error) = query.error {
        return Err(ApiError::Unauthorized {
            challenge: "Bearer",
            detail: format!("the provider refused the login: {error}"),
        });
    }
    let (Some(code), Some(flow_state)) = (query.code, query.state) else {
        return Err(ApiError::BadRequest("code and state are required".into()));
    };
    let provider = provider(&state).await?;
    // Taken once: a replayed or forged state finds nothing.
    let Some(login) = oidc_logins::take(&state.store, &flow_state).await? else {
        return Err(ApiError::field(
            "state",
            "is unknown or was already used; start again",
        ));
    };
    if state.clock.now_ms() >= login.expires_at {
        return Err(ApiError::field("state", "has expired; start again"));
    }
    let pending = Pending {
        state: login.state,
        nonce: login.nonce,
        pkce_verifier: login.pkce_verifier,
    };
    let redirect_to = login.redirect_to;
    let who = provider.finish(&code, &pending).await.map_err(|err| {
        tracing::warn!(error = %err, "OIDC login rejected");
        ApiError::Unauthorized {
            challenge: "Bearer",
            detail: "the provider's answer could not be verified".into(),
        }
    })?;
    let user = link_account(&state, &who).await?;
    let agent = super::session::user_agent(&headers);
    let (cookie, _) = super::session::start(&state, &user.id, agent).await?;
    audit::record(&state, "login.succeeded", Some(&user.id), &ip, Some("oidc")).await;
    let cookie = HeaderValue::from_str(&cookie).map_err(|e| ApiError::Internal(e.into()))?;
    let location = HeaderValue::from_str(&redirect_to).map_err(|e| ApiError::Internal(e.into()))?;
    Ok((
        StatusCode::SEE_OTHER,
        [
            (header::SET_COOKIE, cookie),
            (header::LOCATION, location),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
        ],
    )
        .into_response())
}

/// The account for a provider identity: linked by subject, else by a verified email,
/// else a new account without a password.
async fn link_account(state: &AppState, who: &OidcIdentity) -> ApiResult<UserRow> {
    let linked = oidc_logins::linked_user(&state.store, &who.issuer, &who.subject).await?;
    if let Some(id) = linked
        && let Some(user) = users::find(&state.store, &id).await?
    {
        return Ok(user);
    }
    let email = who
        .email
        .as_deref()
        .and_then(normalise_email)
        .ok_or_else(|| {
            ApiError::Unprocessable("the provider did not share an email address".into())
        })?;
    let user = match users::find_by_email(&state.store, &email).await? {
        Some(user) if who.email_verified => user,
        Some(_) => {
            return Err(ApiError::Conflict(
                "an account uses this email, which the provider has not verified; sign in with your password".into(),
            ));
        }
        None => {
            let now = state.clock.now_ms();
            let user = UserRow {
                id: random_id(),
                name: who.name.clone().unwrap_or_else(|| email.clone()),
                email,
                password_hash: None,
                role: Role::User.as_str().to_owned(),
                settings: "{}".into(),
                created_at: now,
                updated_at: now,
            };
            users::insert(&state.store, &user).await?;
            user
        }
    };
    let now = state.clock.now_ms();
    oidc_logins::link(&state.store, &who.issuer, &who.subject, &user.id, now).await?;
    Ok(user)
}

#[cfg(test)]
mod tests {
    use super::redirect_allowed;

    #[test]
    fn only_local_paths_and_allow_listed_origins_are_redirect_targets() {
        let allow = vec![
            "https://app.example.com".to_owned(),
            "https://docs.example.com/basis/".to_owned(),
        ];
        let me = "https://basis.test";
        assert!(redirect_allowed("/dashboard", me, &allow));
        assert!(!redirect_allowed("//evil.test/x", me, &allow));
        assert!(!redirect_allowed("/\\evil.test", me, &allow));
        assert!(redirect_allowed("https://basis.test/x", me, &allow));
        assert!(redirect_allowed("https://app.example.com/home", me, &allow));
        assert!(redirect_allowed(
            "https://docs.example.com/basis/page",
            me,
            &allow
        ));
        assert!(!redirect_allowed(
            "https://docs.example.com/other",
            me,
            &allow
        ));
        assert!(!redirect_allowed(
            "https://app.example.com.evil.test/",
            me,
            &allow
        ));
        assert!(!redirect_allowed("javascript:alert(1)", me, &allow));
    }
}
