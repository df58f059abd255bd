//! Who is looking at a page ([`Visitor`]), and the token each of their forms carries.
//!
//! A signed-in visitor is found by the API's own session cookie and rules
//! ([`caller::find_live`]: idle and absolute timeouts); their forms carry the session's CSRF
//! token. Before sign-in there is no session, yet the sign-in, sign-up and shorten forms
//! still need a token, or another site could post them (sign a victim into the attacker's
//! account, say): those forms carry the token of a cookie of their own ([`FORM_COOKIE`],
//! made on first sight: a double-submit token). Either way a post is checked by
//! [`caller::check_write`], the API's CSRF check: the token, and our own origin.

use axum::Form;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::Response;
use basis_auth::role::Role;
use basis_auth::secret::random_token;
use basis_auth::session::session_id_from_cookies;
use serde::de::DeserializeOwned;

use super::page;
use crate::identity::caller::{self, Caller, Credential, Principal};
use crate::state::AppState;

/// The cookie that holds the forms' token before sign-in. `__Host-`: only we can set it.
pub const FORM_COOKIE: &str = "__Host-basis_form";

/// A signed-in visitor.
#[derive(Debug, Clone)]
pub struct SignedIn {
    /// Their user id.
    pub user_id: String,
    /// Their display name.
    pub name: String,
    /// Their role.
    pub role: Role,
    /// Their session's key (the digest of its id).
    pub session_hash: String,
}

/// Whoever is looking at a page.
#[derive(Debug, Clone)]
pub struct Visitor {
    /// The signed-in person, if any.
    pub user: Option<SignedIn>,
    /// The token the page's forms carry.
    pub csrf: String,
    /// The form cookie to set, when this visitor arrived without one.
    pub set_cookie: Option<String>,
}

impl Visitor {
    /// The visitor as the API's rules see a caller (a session holds every scope).
    pub fn caller(&self) -> Caller {
        match &self.user {
            None => Caller::Anonymous,
            Some(user) => Caller::User(Principal {
                user_id: user.user_id.clone(),
                role: user.role,
                via: Credential::Session {
                    id_hash: user.session_hash.clone(),
                    csrf_token: self.csrf.clone(),
                },
            }),
        }
    }

    /// Checks a posted form's token (and origin), else the 403 page. A visitor who arrived
    /// without a form cookie fails too: their token was made just now, so no page held it.
    #[allow(
        clippy::result_large_err,
        reason = "the error is the answer itself, made once on a rare path"
    )]
    pub(crate) fn check_form(
        &self,
        presented: Option<&str>,
        headers: &HeaderMap,
        state: &AppState,
    ) -> Result<(), Response> {
        let fresh = self.user.is_none() && self.set_cookie.is_some();
        match caller::check_write(&self.csrf, presented, headers, state) {
            Ok(()) if !fresh => Ok(()),
            _ => Err(page::message(
                Some(self),
                StatusCode::FORBIDDEN,
                "This form has expired",
                "The form was sent without its security token, with an old one, or from another \
                 site. Go back, reload the page and send it again.",
            )),
        }
    }
}

/// A form that carries its page's CSRF token in the [`TOKEN_FIELD`](super::TOKEN_FIELD) field.
pub trait CsrfForm {
    /// The token as sent, if any.
    fn csrf(&self) -> Option<&str>;
}

/// Implements [`CsrfForm`] for forms whose token is their `csrf: Option<String>` field.
macro_rules! csrf_forms {
    ($($form:ty),+ $(,)?) => {
        $(impl $crate::web::session::CsrfForm for $form {
            fn csrf(&self) -> Option<&str> {
                self.csrf.as_deref()
            }
        })+
    };
}
pub(crate) use csrf_forms;

/// A posted form that was read and whose token (and origin) [`Visitor::check_form`]
/// accepted, with who sent it. As an extractor it answers for the handler when either
/// fails: 400 (the body is not this form) or 403 (the token is missing, old or foreign).
#[derive(Debug)]
pub struct Posted<T> {
    /// Who sent it.
    pub visitor: Visitor,
    /// What they sent.
    pub form: T,
}

impl<T> FromRequest<AppState> for Posted<T>
where
    T: DeserializeOwned + CsrfForm + Send,
{
    type Rejection = Response;

    async fn from_request(request: Request, state: &AppState) -> Result<Self, Response> {
        let (mut parts, body) = request.into_parts();
        let visitor = Visitor::from_request_parts(&mut parts, state).await?;
        let headers = parts.headers.clone();
        let request = Request::from_parts(parts, body);
        let Form(form) = Form::<T>::from_request(request, state)
            .await
            .map_err(|rejection| {
                page::message(
                    Some(&visitor),
                    rejection.status(),
                    "This form could not be read",
                    "Send the form from its page.",
                )
            })?;
        visitor.check_form(form.csrf(), &headers, state)?;
        Ok(Self { visitor, form })
    }
}

/// The value of cookie `name` in a request's `Cookie` headers.
pub(crate) fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|line| line.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value.trim())
}

/// A form token we could have made: what `random_token` gives (URL-safe base64).
fn is_token_shaped(token: &str) -> bool {
    (16..=128).contains(&token.len())
        && token
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// The `Set-Cookie` of a new form token: for this browsing session only.
fn form_cookie(token: &str) -> String {
    format!("{FORM_COOKIE}={token}; Path=/; Secure; HttpOnly; SameSite=Lax")
}

impl FromRequestParts<AppState> for Visitor {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Response> {
        let unavailable = || {
            page::message(
                None,
                StatusCode::SERVICE_UNAVAILABLE,
                "Please try again",
                "The service is briefly unavailable. Try again in a moment.",
            )
        };
        let session_id = parts
            .headers
            .get_all(header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .find_map(session_id_from_cookies);
        let session = match session_id {
            Some(id) => caller::find_live(state, id)
                .await
                .map_err(|_| unavailable())?,
            None => None,
        };
        if let Some(session) = session {
            let user = basis_store::users::find(&state.store, &session.user_id)
                .await
                .map_err(|_| unavailable())?;
            if let (Some(user), Ok(role)) = (user, session.role.parse()) {
                return Ok(Self {
                    user: Some(SignedIn {
                        user_id: session.user_id,
                        name: user.name,
                        role,
                        session_hash: session.id_hash,
                    }),
                    csrf: session.csrf_token,
                    set_cookie: None,
                });
            }
        }
        match cookie(&parts.headers, FORM_COOKIE).filter(|t| is_token_shaped(t)) {
            Some(token) => Ok(Self {
                user: None,
                csrf: token.to_owned(),
                set_cookie: None,
            }),
            None => {
                let token = random_token();
                Ok(Self {
                    user: None,
                    set_cookie: Some(form_cookie(&token)),
                    csrf: token,
                })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    #[test]
    fn a_cookie_is_found_among_others_by_its_exact_name() {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::COOKIE,
            HeaderValue::from_static("a=1; __Host-basis_formx=2; __Host-basis_form=abc"),
        );
        assert_eq!(cookie(&headers, FORM_COOKIE), Some("abc"));
        assert_eq!(cookie(&headers, "missing"), None);
    }

    #[test]
    fn only_tokens_of_our_shape_are_taken_from_the_cookie() {
        assert!(is_token_shaped(&random_token()));
        assert!(!is_token_shaped("short"));
        assert!(!is_token_shaped("has spaces in it, and quotes \" too"));
    }
}
