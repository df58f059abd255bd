//! `/reset`: a forgotten password, for people. The first page asks for the email and
//! always gives the same answer, as `POST /auth/password-reset` does; the mail links to
//! [`paths::RESET_NEW`] with the token in its query, and that page takes the new password.
//!
//! The token is a credential for an hour, so it is kept from going anywhere: the page
//! that receives it answers `Referrer-Policy: same-origin` (no request to another site
//! carries the address away; `no-referrer` would also make browsers send `Origin: null`
//! with the form, which the CSRF check rightly refuses) and `Cache-Control: no-store`; its form holds the token in a
//! hidden field and posts to the bare path, so the token never lands in a later address or
//! in history; and the request log records the path, never the query. The token stays the
//! API's: single-use, an hour long, spent in the same transaction that sets the password
//! and ends every session ([`reset::set_new_password`]).

use axum::extract::{Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::Response;
use maud::{Markup, html};
use serde::Deserialize;

use super::forms::{Field, FormErrors, token};
use super::session::{Posted, Visitor, csrf_forms};
use super::{page, paths, see_other};
use crate::accounts::reset;
use crate::error::ApiError;
use crate::http::extract::ClientIp;
use crate::identity::normalise_email;
use crate::state::AppState;

/// What the request page says once a request is accepted, whether or not the account
/// exists (the API's words).
const SENT: &str = "If an account uses this email, a reset link is on its way. It works once, \
                    within an hour.";

/// `?sent` of the request page, `?token` of the new-password page.
#[derive(Debug, Default, Deserialize)]
pub struct ResetQuery {
    /// Present once a request was accepted.
    pub sent: Option<String>,
    /// The token from the mail's link.
    pub token: Option<String>,
}

/// The request form as sent.
#[derive(Debug, Default, Deserialize)]
pub struct RequestForm {
    /// The CSRF token.
    pub csrf: Option<String>,
    /// The account's email.
    #[serde(default)]
    pub email: String,
}

/// The new-password form as sent.
#[derive(Debug, Default, Deserialize)]
pub struct NewPasswordForm {
    /// The CSRF token.
    pub csrf: Option<String>,
    /// The reset token, from the hidden field.
    #[serde(default)]
    pub token: String,
    /// The new password.
    #[serde(default)]
    pub password: String,
}

csrf_forms!(RequestForm, NewPasswordForm);

/// A response that must not pass its address on, nor be kept.
fn sealed(mut response: Response) -> Response {
    let headers = response.headers_mut();
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

fn request_page(visitor: &Visitor, email: &str, errors: &FormErrors) -> Markup {
    html! {
        (errors.summary())
        form.panel method="post" action=(paths::RESET) novalidate {
            (token(&visitor.csrf))
            p { "Enter the email of your account; we will send it a link to choose a new password." }
            (Field::new("email", "Email", email).kind("email").required().autocomplete("email").render(errors))
            button type="submit" { "Send the link" }
        }
        p { "Remembered it? " a href=(paths::SIGN_IN) { "Sign in" } }
    }
}

/// `GET /reset`: the request form, or the answer to a request.
pub async fn request_form(visitor: Visitor, Query(query): Query<ResetQuery>) -> Response {
    if query.sent.is_some() {
        return page::render(
            Some(&visitor),
            StatusCode::OK,
            "Check your mail",
            html! {
                div.panel role="status" {
                    p { (SENT) }
                    p { a href=(paths::SIGN_IN) { "Back to sign in" } }
                }
            },
        );
    }
    page::render(
        Some(&visitor),
        StatusCode::OK,
        "Reset your password",
        request_page(&visitor, "", &FormErrors::none()),
    )
}

/// `POST /reset`: asks for the mail through the API's rule (throttle, the same answer
/// either way) and shows that answer; a blank or malformed email gets the form again.
pub async fn request(
    State(state): State<AppState>,
    ip: ClientIp,
    Posted { visitor, form }: Posted<RequestForm>,
) -> Response {
    if normalise_email(&form.email).is_none() {
        let mut errors = FormErrors::none();
        errors.add("email", "must be an email address");
        return page::render(
            Some(&visitor),
            StatusCode::UNPROCESSABLE_ENTITY,
            "Reset your password",
            request_page(&visitor, &form.email, &errors),
        );
    }
    match reset::send_reset_mail(&state, &ip, &form.email).await {
        Ok(()) => see_other(&format!("{}?sent=1", paths::RESET)),
        // The API's throttle per address: the form again, saying how long.
        Err(ApiError::TooManyRequests { retry_after, .. }) => {
            let mut errors = FormErrors::none();
            errors.add(
                "email",
                format!(
                    "has had too many reset requests lately; wait {} before asking again",
                    page::wait_text(retry_after)
                ),
            );
            let form = page::render(
                Some(&visitor),
                StatusCode::TOO_MANY_REQUESTS,
                "Reset your password",
                request_page(&visitor, &form.email, &errors),
            );
            page::throttled(form, retry_after)
        }
        Err(err) => page::failure(&visitor, err),
    }
}

fn new_password_page(visitor: &Visitor, reset_token: &str, errors: &FormErrors) -> Markup {
    html! {
        (errors.summary())
        form.panel method="post" action=(paths::RESET_NEW) novalidate {
            (token(&visitor.csrf))
            input type="hidden" name="token" value=(reset_token);
            (Field::new("password", "New password", "").kind("password").required().autocomplete("new-password")
                .hint("At least 12 characters, hard to guess.").render(errors))
            button type="submit" { "Set the new password" }
        }
    }
}

/// The page of a link that no longer works (used, expired or made up).
fn dead_link(visitor: &Visitor, status: StatusCode) -> Response {
    sealed(page::render(
        Some(visitor),
        status,
        "This link no longer works",
        html! {
            div.panel {
                p { "This reset link was already used, has expired (links last an hour) or is not one of ours." }
                p { a href=(paths::RESET) { "Ask for a new link" } }
            }
        },
    ))
}

/// A reset token could be one of ours: what `random_token` makes, with room to spare.
fn plausible(reset_token: &str) -> bool {
    (16..=128).contains(&reset_token.len())
}

/// `GET /reset/new?token=…`: the new-password form for a live token, else the page of a
/// dead link (410).
pub async fn new_password_form(
    State(state): State<AppState>,
    visitor: Visitor,
    Query(query): Query<ResetQuery>,
) -> Response {
    let reset_token = query.token.unwrap_or_default();
    if !plausible(&reset_token) {
        return dead_link(&visitor, StatusCode::GONE);
    }
    match reset::token_is_live(&state, &reset_token).await {
        Ok(true) => sealed(page::render(
            Some(&visitor),
            StatusCode::OK,
            "Choose a new password",
            new_password_page(&visitor, &reset_token, &FormErrors::none()),
        )),
        Ok(false) => dead_link(&visitor, StatusCode::GONE),
        Err(err) => sealed(page::failure(&visitor, err)),
    }
}

/// `POST /reset/new`: sets the password (which spends the token and ends every session),
/// then 303 to the sign-in page; a weak or breached password gets the form again (422),
/// a dead token the dead-link page (422).
pub async fn set_new_password(
    State(state): State<AppState>,
    ip: ClientIp,
    Posted { visitor, form }: Posted<NewPasswordForm>,
) -> Response {
    if !plausible(&form.token) {
        return dead_link(&visitor, StatusCode::UNPROCESSABLE_ENTITY);
    }
    let err = match reset::set_new_password(&state, &ip, &form.token, form.password.clone()).await {
        Ok(()) => return see_other(paths::RESET_DONE),
        Err(err) => err,
    };
    match FormErrors::of_error(err, &[]) {
        Ok(errors) if errors.get("token").is_some() => {
            dead_link(&visitor, StatusCode::UNPROCESSABLE_ENTITY)
        }
        Ok(errors) => sealed(page::render(
            Some(&visitor),
            StatusCode::UNPROCESSABLE_ENTITY,
            "Choose a new password",
            new_password_page(&visitor, &form.token, &errors),
        )),
        Err(err) => sealed(page::failure(&visitor, err)),
    }
}

/// `GET /reset/done`: the password is changed; every old session has ended.
pub async fn done(visitor: Visitor) -> Response {
    page::render(
        Some(&visitor),
        StatusCode::OK,
        "Your password is changed",
        html! {
            div.panel role="status" {
                p { "Your new password is set, and every session that used the old one has ended." }
                p { a href=(paths::SIGN_IN) { "Sign in with the new password" } }
            }
        },
    )
}
