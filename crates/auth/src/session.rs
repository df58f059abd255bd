//! Cookie sessions for browsers: the cookie, the timeouts, and the CSRF checks.
//!
//! The cookie holds a random session id; the server keeps the session row (found by the
//! id's digest) so a session can be revoked at once. A write authenticated by the cookie
//! must carry the session's CSRF token in `X-CSRF-Token` and come from our own origin
//! (`Origin`, or `Sec-Fetch-Site: same-origin` when a browser omits `Origin`).

use crate::secret::constant_time_eq;

/// The cookie's name. The `__Host-` prefix makes browsers insist on `Secure`, `Path=/`
/// and no `Domain`, so a sibling subdomain cannot set or shadow it.
pub const COOKIE_NAME: &str = "__Host-basis_session";

/// The header a cookie-authenticated write must carry.
pub const CSRF_HEADER: &str = "x-csrf-token";

/// How long sessions live.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionPolicy {
    /// A session unused this long (ms) ends.
    pub idle_ms: i64,
    /// A session ends this long (ms) after login, however active.
    pub absolute_ms: i64,
}

impl Default for SessionPolicy {
    /// 30 minutes idle, 12 hours absolute (OWASP session management cheat sheet ranges).
    fn default() -> Self {
        Self {
            idle_ms: 30 * 60 * 1000,
            absolute_ms: 12 * 60 * 60 * 1000,
        }
    }
}

impl SessionPolicy {
    /// Whether a session created at `created_ms` and last used at `last_seen_ms` is still
    /// valid at `now_ms`.
    pub fn is_live(&self, created_ms: i64, last_seen_ms: i64, now_ms: i64) -> bool {
        now_ms < created_ms + self.absolute_ms && now_ms < last_seen_ms + self.idle_ms
    }

    /// The `Set-Cookie` value that stores `session_id`. `Max-Age` is the absolute timeout:
    /// the idle timeout is enforced on the server.
    pub fn set_cookie(&self, session_id: &str) -> String {
        format!(
            "{COOKIE_NAME}={session_id}; Path=/; Secure; HttpOnly; SameSite=Lax; Max-Age={}",
            self.absolute_ms / 1000
        )
    }
}

/// The `Set-Cookie` value that removes the session cookie.
pub fn clear_cookie() -> String {
    format!("{COOKIE_NAME}=; Path=/; Secure; HttpOnly; SameSite=Lax; Max-Age=0")
}

/// The session id in a `Cookie` header, if any.
pub fn session_id_from_cookies(cookie_header: &str) -> Option<&str> {
    cookie_header
        .split(';')
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE_NAME)
        .map(|(_, value)| value.trim())
        .filter(|value| !value.is_empty())
}

/// Why a cookie-authenticated write was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CsrfFailure {
    /// `X-CSRF-Token` missing or not the session's token.
    Token,
    /// The request came from another site.
    Origin,
}

/// Checks a cookie-authenticated state-changing request.
///
/// `origin` and `fetch_site` are the request's `Origin` and `Sec-Fetch-Site` headers;
/// `own_origin` is ours (`https://host[:port]`, no trailing slash). A request with neither
/// header is not from a modern browser's cross-site context; the token check still applies.
pub fn check_csrf(
    expected_token: &str,
    presented_token: Option<&str>,
    origin: Option<&str>,
    fetch_site: Option<&str>,
    own_origin: &str,
) -> Result<(), CsrfFailure> {
    match (origin, fetch_site) {
        (Some(origin), _) if origin.trim_end_matches('/') != own_origin => {
            return Err(CsrfFailure::Origin);
        }
        (None, Some(site)) if site != "same-origin" && site != "none" => {
            return Err(CsrfFailure::Origin);
        }
        _ => {}
    }
    match presented_token {
        Some(token) if constant_time_eq(token, expected_token) => Ok(()),
        _ => Err(CsrfFailure::Token),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ME: &str = "https://basis.test";

    #[test]
    fn sessions_end_after_idle_or_absolute_timeouts() {
        let policy = SessionPolicy {
            idle_ms: 10,
            absolute_ms: 100,
        };
        assert!(policy.is_live(0, 0, 9));
        assert!(!policy.is_live(0, 0, 10));
        assert!(policy.is_live(0, 95, 99));
        assert!(!policy.is_live(0, 95, 100));
    }

    #[test]
    fn the_cookie_has_the_host_prefix_attributes() {
        let cookie = SessionPolicy::default().set_cookie("abc");
        assert!(
            cookie.starts_with("__Host-basis_session=abc; Path=/; Secure; HttpOnly; SameSite=Lax")
        );
        assert!(!cookie.contains("Domain"));
        assert_eq!(
            session_id_from_cookies("a=b; __Host-basis_session=xyz; c=d"),
            Some("xyz")
        );
        assert_eq!(session_id_from_cookies("basis_session=xyz"), None);
    }

    #[test]
    fn csrf_needs_the_token_and_our_origin() {
        assert_eq!(check_csrf("t", Some("t"), Some(ME), None, ME), Ok(()));
        assert_eq!(
            check_csrf("t", Some("t"), None, Some("same-origin"), ME),
            Ok(())
        );
        assert_eq!(check_csrf("t", Some("t"), None, None, ME), Ok(()));
        assert_eq!(
            check_csrf("t", None, Some(ME), None, ME),
            Err(CsrfFailure::Token)
        );
        assert_eq!(
            check_csrf("t", Some("u"), Some(ME), None, ME),
            Err(CsrfFailure::Token)
        );
        assert_eq!(
            check_csrf("t", Some("t"), Some("https://evil.test"), None, ME),
            Err(CsrfFailure::Origin)
        );
        assert_eq!(
            check_csrf("t", Some("t"), None, Some("cross-site"), ME),
            Err(CsrfFailure::Origin)
        );
    }
}
