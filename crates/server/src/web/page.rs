//! The layout every page shares, and the headers every page carries.
//!
//! Each response gets a fresh nonce; the Content-Security-Policy allows scripts carrying
//! it and nothing inline, styles and images from our own origin only, forms posting only
//! to us, and no framing. A page is never stored by caches: it shows one person's data and
//! their forms' CSRF token.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use basis_auth::role::Role;
use maud::{DOCTYPE, Markup, html};

use super::assets::{SCRIPT, STYLESHEET};
use super::session::Visitor;
use super::{TOKEN_FIELD, paths};
use crate::error::ApiError;

/// The product's name in titles and the header.
const NAME: &str = "Basis";

/// The policy of a page whose script carries `nonce`.
pub fn content_security_policy(nonce: &str) -> String {
    format!(
        "default-src 'none'; script-src 'nonce-{nonce}'; style-src 'self'; img-src 'self'; \
         form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
    )
}

/// 128 random bits, base64: unguessable for the life of one response.
fn new_nonce() -> String {
    base64::engine::general_purpose::STANDARD.encode(rand::random::<[u8; 16]>())
}

/// A page: its status, title and main content, in the layout, seen by `visitor` (`None`
/// when nobody is known, as on the 404 page).
pub fn render(
    visitor: Option<&Visitor>,
    status: StatusCode,
    title: &str,
    main: Markup,
) -> Response {
    let nonce = new_nonce();
    let document = layout(visitor, title, &nonce, main).into_string();
    let mut response = (status, document).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if let Ok(policy) = HeaderValue::from_str(&content_security_policy(&nonce)) {
        headers.insert(header::CONTENT_SECURITY_POLICY, policy);
    }
    if let Some(cookie) = visitor.and_then(|v| v.set_cookie.as_deref())
        && let Ok(cookie) = HeaderValue::from_str(cookie)
    {
        headers.append(header::SET_COOKIE, cookie);
    }
    response
}

fn layout(visitor: Option<&Visitor>, title: &str, nonce: &str, main: Markup) -> Markup {
    let user = visitor.and_then(|v| v.user.as_ref());
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                meta name="color-scheme" content="light dark";
                title { (title) " · " (NAME) }
                link rel="stylesheet" href=(STYLESHEET.path());
            }
            body {
                a.skip href="#main" { "Skip to the content" }
                header.top {
                    a.brand href="/" { (NAME) }
                    nav aria-label="Main" {
                        ul {
                            li { a href="/" { "Shorten" } }
                            li { a href=(paths::BLOG) { "Blog" } }
                            @if let (Some(user), Some(visitor)) = (user, visitor) {
                                li { a href=(paths::MY_LINKS) { "My links" } }
                                li { a href=(paths::BLOG_NEW) { "Write" } }
                                li { a href=(paths::ACCOUNT) { "Account" } }
                                @if user.role.at_least(Role::Admin) {
                                    li { a href=(super::admin::paths::OVERVIEW) { "Admin" } }
                                }
                                li.muted { "Signed in as " (user.name) }
                                li {
                                    form method="post" action=(paths::SIGN_OUT) {
                                        input type="hidden" name=(TOKEN_FIELD) value=(visitor.csrf);
                                        button.link type="submit" { "Sign out" }
                                    }
                                }
                            } @else {
                                li { a href=(paths::SIGN_IN) { "Sign in" } }
                                li { a href=(paths::SIGN_UP) { "Sign up" } }
                            }
                        }
                    }
                }
                main #main {
                    h1 { (title) }
                    (main)
                }
                script src=(SCRIPT.path()) nonce=(nonce) defer {}
            }
        }
    }
}

/// A page that only says something: an error, or a refusal.
pub fn message(visitor: Option<&Visitor>, status: StatusCode, title: &str, text: &str) -> Response {
    render(
        visitor,
        status,
        title,
        html! {
            div.panel {
                p { (text) }
                p { a href="/" { "Back to the home page" } }
            }
        },
    )
}

/// The answer to a failure that is no fault of what was sent: a message page with the
/// error's status (5xx are logged; their cause is never shown).
pub fn failure(visitor: &Visitor, err: ApiError) -> Response {
    let (status, text) = match &err {
        ApiError::TooManyRequests { retry_after, .. } => {
            return too_many(Some(visitor), *retry_after);
        }
        ApiError::Unavailable(_) => (
            StatusCode::SERVICE_UNAVAILABLE,
            "The service is briefly unavailable. Try again in a moment.",
        ),
        _ => {
            tracing::error!(error = %err, "a page's request failed");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                "Something went wrong on our side. Try again; if it keeps happening, tell us.",
            )
        }
    };
    message(Some(visitor), status, "Something went wrong", text)
}

/// When to try again, as people say it: "40 seconds", "15 minutes".
pub fn wait_text(retry_after: u64) -> String {
    match retry_after {
        0..=1 => "a second".to_owned(),
        2..=59 => format!("{retry_after} seconds"),
        _ => match retry_after.div_ceil(60) {
            1 => "a minute".to_owned(),
            minutes => format!("{minutes} minutes"),
        },
    }
}

/// `response` (a form again, with the throttle's message in it) as the 429 it is, saying
/// when to try again in `Retry-After`.
pub fn throttled(mut response: Response, retry_after: u64) -> Response {
    *response.status_mut() = StatusCode::TOO_MANY_REQUESTS;
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(retry_after.max(1)));
    response
}

/// The page of a request refused for coming too often (429 with `Retry-After`).
pub fn too_many(visitor: Option<&Visitor>, retry_after: u64) -> Response {
    let text = format!(
        "Too many attempts in a short time. Wait {} and try again.",
        wait_text(retry_after)
    );
    throttled(
        message(
            visitor,
            StatusCode::TOO_MANY_REQUESTS,
            "Too many attempts",
            &text,
        ),
        retry_after,
    )
}

/// The 429 page for a browser refused by the rate limiter in front of every route.
pub fn rate_limited(retry_after: u64) -> Response {
    too_many(None, retry_after)
}

/// The 404 page for a known visitor (their own header).
pub fn not_found_for(visitor: &Visitor) -> Response {
    message(
        Some(visitor),
        StatusCode::NOT_FOUND,
        "Page not found",
        NOT_FOUND_TEXT,
    )
}

const NOT_FOUND_TEXT: &str = "There is nothing at this address. If you followed a short link, \
                              it may have been deleted or mistyped.";

/// The 404 page, for browsers (the middleware answers everyone else with a problem
/// document).
pub fn not_found() -> Response {
    message(
        None,
        StatusCode::NOT_FOUND,
        "Page not found",
        NOT_FOUND_TEXT,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_are_said_in_seconds_or_whole_minutes() {
        assert_eq!(wait_text(1), "a second");
        assert_eq!(wait_text(40), "40 seconds");
        assert_eq!(wait_text(60), "a minute");
        assert_eq!(wait_text(61), "2 minutes");
        assert_eq!(wait_text(899), "15 minutes");
        let page = rate_limited(30);
        assert_eq!(page.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(page.headers()[header::RETRY_AFTER], "30");
    }

    #[test]
    fn each_page_gets_its_own_nonce_and_no_inline_allowance() {
        let first = not_found();
        let second = not_found();
        let policy = |r: &Response| {
            r.headers()[header::CONTENT_SECURITY_POLICY]
                .to_str()
                .unwrap()
                .to_owned()
        };
        assert_ne!(policy(&first), policy(&second));
        assert!(!policy(&first).contains("unsafe-inline"));
        assert!(policy(&first).contains("frame-ancestors 'none'"));
    }
}
