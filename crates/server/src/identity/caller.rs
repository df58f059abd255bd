//! Who is calling: authentication and the authorization checks, in one place.
//!
//! A request is authenticated by exactly one credential, looked for in this order:
//! `Authorization: Bearer <jwt | api key>`, `X-API-Key`, then the session cookie. A
//! credential that is present but invalid is a 401 (never a silent fall back to
//! anonymous), except a stale session cookie, which browsers keep sending after logout and
//! which leaves the request anonymous. A state-changing request authenticated by the
//! cookie must pass the CSRF check (token and same origin), else 403; bearer and API key
//! requests are not exposed to CSRF and skip it.
//!
//! Handlers then ask [`Caller`] for what they need: [`Caller::require`] (401),
//! [`Caller::require_role`], [`Caller::act_for`], [`Caller::may_manage`] and
//! [`Caller::require_scope`] (403 when authenticated but not allowed).

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{HeaderMap, Method, header};
use basis_auth::role::{Role, Scope};
use basis_auth::secret::{API_KEY_PREFIX, digest};
use basis_auth::session::{CSRF_HEADER, CsrfFailure, check_csrf, session_id_from_cookies};

use basis_store::sessions::{self, SessionRow};

use crate::error::{ApiError, ApiResult};
use crate::state::AppState;

/// The challenge sent when no credentials were presented.
const CHALLENGE: &str = "Bearer realm=\"basis\"";
/// The challenge sent when a presented token is unusable (RFC 6750 §3.1).
const INVALID_TOKEN: &str = "Bearer realm=\"basis\", error=\"invalid_token\"";

/// The authenticated principal of a request, or nobody.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Caller {
    /// No credentials were presented.
    Anonymous,
    /// A signed-in user.
    User(Principal),
}

/// A signed-in user and how they proved it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// The user's id.
    pub user_id: String,
    /// The user's role (from the access token, or read fresh for sessions and keys).
    pub role: Role,
    /// The credential used.
    pub via: Credential,
}

/// How a request was authenticated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Credential {
    /// A JWT access token.
    AccessToken,
    /// The session cookie.
    Session {
        /// The digest of the session id (its row's key).
        id_hash: String,
        /// The session's CSRF token.
        csrf_token: String,
    },
    /// An API key, limited to its scopes.
    ApiKey {
        /// The key's id.
        id: String,
        /// What the key may do.
        scopes: Vec<Scope>,
    },
}

fn unauthenticated(detail: &str) -> ApiError {
    ApiError::Unauthorized {
        challenge: CHALLENGE,
        detail: detail.into(),
    }
}

fn invalid_token() -> ApiError {
    ApiError::Unauthorized {
        challenge: INVALID_TOKEN,
        detail: "the credentials are invalid or expired".into(),
    }
}

impl Caller {
    /// The principal, if authenticated.
    pub fn principal(&self) -> Option<&Principal> {
        match self {
            Caller::Anonymous => None,
            Caller::User(principal) => Some(principal),
        }
    }

    /// The caller's user id, if authenticated.
    pub fn user_id(&self) -> Option<&str> {
        self.principal().map(|p| p.user_id.as_str())
    }

    /// The principal, or 401.
    pub fn require(&self) -> Result<&Principal, ApiError> {
        self.principal()
            .ok_or_else(|| unauthenticated("sign in to do this"))
    }

    /// The principal signed in with a password, token or OIDC (not an API key), or 401/403:
    /// keys act on resources within their scopes, never on the account itself.
    pub fn require_account(&self) -> Result<&Principal, ApiError> {
        let principal = self.require()?;
        match principal.via {
            Credential::ApiKey { .. } => Err(ApiError::Forbidden(
                "API keys cannot manage accounts; sign in instead".into(),
            )),
            _ => Ok(principal),
        }
    }

    /// The principal if their role is at least `role`, else 401/403.
    pub fn require_role(&self, role: Role) -> Result<&Principal, ApiError> {
        let principal = self.require_account()?;
        if principal.role.at_least(role) {
            Ok(principal)
        } else {
            Err(ApiError::Forbidden(format!("this needs the {role} role")))
        }
    }

    /// Checks an API key's scopes (other credentials hold every scope). Anonymous passes:
    /// whether anonymous callers may act is the route's decision.
    pub fn require_scope(&self, scope: Scope) -> Result<(), ApiError> {
        match self.principal().map(|p| &p.via) {
            Some(Credential::ApiKey { scopes, .. })
                if !scopes.iter().any(|held| held.grants(scope)) =>
            {
                Err(ApiError::Forbidden(format!(
                    "this API key lacks the {} scope",
                    scope.as_str()
                )))
            }
            _ => Ok(()),
        }
    }

    /// The principal if they are `user_id` or an admin, else 401/403 (no IDOR).
    pub fn act_for(&self, user_id: &str) -> Result<&Principal, ApiError> {
        let principal = self.require()?;
        if principal.user_id == user_id || principal.role.at_least(Role::Admin) {
            Ok(principal)
        } else {
            Err(ApiError::Forbidden("this belongs to another user".into()))
        }
    }

    /// Allows managing a resource owned by `owner` (`None`: created anonymously, which
    /// anyone may manage, as before accounts existed): the owner or an admin.
    pub fn may_manage(&self, owner: Option<&str>) -> Result<(), ApiError> {
        match owner {
            None => Ok(()),
            Some(owner) => self.act_for(owner).map(drop),
        }
    }
}

/// A caller that must be signed in: the extractor rejects anonymous requests with 401
/// before the body is read, so a protected route never answers 400 to a stranger.
#[derive(Debug, Clone)]
pub struct Authenticated(pub Caller);

impl FromRequestParts<AppState> for Authenticated {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let caller = Caller::from_request_parts(parts, state).await?;
        caller.require()?;
        Ok(Self(caller))
    }
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        // Several extractors in one handler authenticate once.
        if let Some(caller) = parts.extensions.get::<Caller>() {
            return Ok(caller.clone());
        }
        let caller = authenticate(&parts.method, &parts.headers, state).await?;
        if let Some(user_id) = caller.user_id() {
            crate::http::read_floor::identify(&state.store, user_id).await;
        }
        parts.extensions.insert(caller.clone());
        Ok(caller)
    }
}

/// Finds and checks the request's credential.
pub async fn authenticate(
    method: &Method,
    headers: &HeaderMap,
    state: &AppState,
) -> Result<Caller, ApiError> {
    if let Some(value) = headers.get(header::AUTHORIZATION) {
        let value = value.to_str().map_err(|_| invalid_token())?;
        let (scheme, token) = value.split_once(' ').ok_or_else(invalid_token)?;
        if !scheme.eq_ignore_ascii_case("bearer") {
            return Err(invalid_token());
        }
        let token = token.trim();
        return if token.starts_with(API_KEY_PREFIX) {
            api_key(state, token).await
        } else {
            let now = state.clock.now_ms() / 1000;
            let access = state.identity.keys.verify(token, now).map_err(|err| {
                tracing::debug!(error = %err, "access token rejected");
                invalid_token()
            })?;
            // Deleted, demoted or signed out everywhere since the token was issued.
            if state
                .identity
                .cutoffs
                .refuses(&access.user_id, access.issued_at_ms)
            {
                return Err(invalid_token());
            }
            Ok(Caller::User(Principal {
                user_id: access.user_id,
                role: access.role,
                via: Credential::AccessToken,
            }))
        };
    }
    if let Some(value) = headers.get("x-api-key") {
        let key = value.to_str().map_err(|_| invalid_token())?;
        return api_key(state, key.trim()).await;
    }
    let cookies = headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok());
    let Some(session_id) = cookies.filter_map(session_id_from_cookies).next() else {
        return Ok(Caller::Anonymous);
    };
    let Some(session) = find_live(state, session_id).await? else {
        return Ok(Caller::Anonymous);
    };
    if !matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS) {
        let presented = headers.get(CSRF_HEADER).and_then(|v| v.to_str().ok());
        check_write(&session.csrf_token, presented, headers, state).map_err(|failure| {
            ApiError::Forbidden(match failure {
                CsrfFailure::Token => "missing or wrong X-CSRF-Token for this session".into(),
                CsrfFailure::Origin => "cross-site requests may not use the session".into(),
            })
        })?;
    }
    let role = session.role.parse().map_err(|_| invalid_token())?;
    Ok(Caller::User(Principal {
        user_id: session.user_id,
        role,
        via: Credential::Session {
            id_hash: session.id_hash,
            csrf_token: session.csrf_token,
        },
    }))
}

/// The CSRF check of a cookie-authenticated write: `presented` must be `expected` (the
/// session's token; for the pages' forms before sign-in, the token of their own cookie),
/// and the request must come from our origin. The API reads the token from `X-CSRF-Token`,
/// the pages' forms from a hidden field.
pub fn check_write(
    expected: &str,
    presented: Option<&str>,
    headers: &HeaderMap,
    state: &AppState,
) -> Result<(), CsrfFailure> {
    let text = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    check_csrf(
        expected,
        presented,
        text("origin"),
        text("sec-fetch-site"),
        &state.base_url,
    )
}

/// Looks up a live API key by its digest.
async fn api_key(state: &AppState, key: &str) -> Result<Caller, ApiError> {
    if !key.starts_with(API_KEY_PREFIX) || key.len() > 128 {
        return Err(invalid_token());
    }
    let key = basis_store::api_keys::find_live(&state.store, &digest(key))
        .await?
        .ok_or_else(invalid_token)?;
    Ok(Caller::User(Principal {
        user_id: key.user_id,
        role: key.role.parse().map_err(|_| invalid_token())?,
        via: Credential::ApiKey {
            id: key.id,
            scopes: key
                .scopes
                .split(' ')
                .filter_map(|s| s.parse().ok())
                .collect(),
        },
    }))
}
/// Finds the session whose id is `session_id`, if it is live at `now`; marks it used.
pub async fn find_live(state: &AppState, session_id: &str) -> ApiResult<Option<SessionRow>> {
    let now = state.clock.now_ms();
    let hash = digest(session_id);
    let row = sessions::find(&state.store, &hash).await?;
    let Some(row) = row else { return Ok(None) };
    let policy = state.identity.sessions;
    if !policy.is_live(row.created_at, row.last_seen_at, now) {
        sessions::delete(&state.store, &hash).await?;
        return Ok(None);
    }
    // Writing on every request would serialise reads behind the writer; a minute of
    // precision is plenty for a 30-minute idle timeout.
    if now - row.last_seen_at > 60_000 {
        sessions::touch(&state.store, &hash, now).await?;
    }
    Ok(Some(row))
}
