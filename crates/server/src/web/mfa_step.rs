//! Two-step sign-in in the pages, through the API's own services ([`mfa`]).
//!
//! - After a correct password, an account with an authenticator app gets a second page
//!   ([`paths::SIGN_IN_CODE`]) that asks for the six-digit code or a recovery code. What
//!   carries the pending sign-in is the API's one-use, five-minute challenge, in a hidden
//!   field, as `POST /auth/mfa/verify` takes it: never the password.
//! - `/account/two-step` turns it on (the `otpauth://` URI as a QR code made on the server,
//!   [`qr`], and the secret as text; a first code confirms it; the recovery codes are
//!   shown once) and off (with a code).

use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use maud::{Markup, html};
use serde::Deserialize;

use super::account::signed_in;
use super::account_page::account_of;
use super::forms::{Field, FormErrors, token};
use super::session::{Posted, Visitor, csrf_forms};
use super::{local_path, page, paths, see_other, sign_in_first};
use crate::accounts::mfa;
use crate::audit;
use crate::error::ApiError;
use crate::http::extract::ClientIp;
use crate::state::AppState;

/// The code form as sent (the sign-in's second step, confirming, turning off).
#[derive(Debug, Default, Deserialize)]
pub struct CodeForm {
    /// The CSRF token.
    pub csrf: Option<String>,
    /// The pending sign-in's challenge (the second step only).
    #[serde(default)]
    pub challenge: String,
    /// A six-digit code or a recovery code.
    #[serde(default)]
    pub code: String,
    /// Where to go after signing in.
    pub next: Option<String>,
}

/// A form with only its token.
#[derive(Debug, Default, Deserialize)]
pub struct StartForm {
    /// The CSRF token.
    pub csrf: Option<String>,
}

csrf_forms!(CodeForm, StartForm);

/// The code field of every two-step form.
pub(crate) fn code_field(errors: &FormErrors) -> Markup {
    Field::new("code", "Code", "")
        .required()
        .autocomplete("one-time-code")
        .hint("The six digits your authenticator app shows now, or one of your recovery codes.")
        .render(errors)
}

/// The second step's page: the code form carrying `challenge`.
pub fn code_page(
    visitor: &Visitor,
    status: StatusCode,
    challenge: &str,
    next: Option<&str>,
    errors: &FormErrors,
) -> Response {
    let main = html! {
        (errors.summary())
        form.panel method="post" action=(paths::SIGN_IN_CODE) novalidate {
            (token(&visitor.csrf))
            input type="hidden" name="challenge" value=(challenge);
            @if let Some(next) = next.and_then(local_path) {
                input type="hidden" name="next" value=(next);
            }
            p { "Your account signs in in two steps. The password was right; now the code." }
            (code_field(errors))
            button type="submit" { "Sign in" }
        }
    };
    page::render(Some(visitor), status, "Enter your code", main)
}

/// `POST /signin/code`: finishes the pending sign-in and goes to `next`; a wrong or used
/// code gets the form again (422) with the same challenge, a dead challenge the sign-in
/// page's way back.
pub async fn finish(
    State(state): State<AppState>,
    ip: ClientIp,
    headers: HeaderMap,
    Posted { visitor, form }: Posted<CodeForm>,
) -> Response {
    let next = form.next.as_deref().and_then(local_path);
    let expired = || {
        let back = match next {
            Some(next) => format!(
                "{}?{}",
                paths::SIGN_IN,
                url::form_urlencoded::Serializer::new(String::new())
                    .append_pair("next", next)
                    .finish()
            ),
            None => paths::SIGN_IN.to_owned(),
        };
        page::render(
            Some(&visitor),
            StatusCode::UNPROCESSABLE_ENTITY,
            "Sign in again",
            html! {
                div.panel {
                    p { "This sign-in waited too long (five minutes) or was already finished." }
                    p { a href=(back) { "Sign in again" } }
                }
            },
        )
    };
    match mfa::pending_sign_in(&state, &form.challenge).await {
        Ok(true) => {}
        Ok(false) => return expired(),
        Err(err) => return page::failure(&visitor, err),
    }
    match mfa::finish_challenge(&state, &ip, &form.challenge, form.code.trim()).await {
        Ok((user, mfa::Kind::Session)) => {
            audit::record(
                &state,
                "login.succeeded",
                Some(&user.id),
                &ip,
                Some("page+mfa"),
            )
            .await;
            let next = next.unwrap_or(paths::MY_LINKS);
            match signed_in(&state, &headers, &user.id, next).await {
                Ok(response) => response,
                Err(err) => page::failure(&visitor, err),
            }
        }
        // A challenge of a token sign-in is the API's to finish.
        Ok((_, mfa::Kind::Token)) => expired(),
        Err(ApiError::Unauthorized { .. }) => {
            let mut errors = FormErrors::none();
            errors.add("code", "is not correct, has expired or was already used");
            code_page(
                &visitor,
                StatusCode::UNPROCESSABLE_ENTITY,
                &form.challenge,
                next,
                &errors,
            )
        }
        // Codes are throttled per account as the API throttles them.
        Err(ApiError::TooManyRequests { retry_after, .. }) => {
            let mut errors = FormErrors::none();
            errors.add(
                "code",
                format!(
                    "was tried too many times; wait {} and try again",
                    page::wait_text(retry_after)
                ),
            );
            let form = code_page(
                &visitor,
                StatusCode::TOO_MANY_REQUESTS,
                &form.challenge,
                next,
                &errors,
            );
            page::throttled(form, retry_after)
        }
        Err(err) => page::failure(&visitor, err),
    }
}

/// Step 1 of an enrolment, on the account page and at sign-in: the key as a QR code (served
/// at `qr`) and as text.
pub(super) fn scan_panel(qr: &str, secret: &str) -> Markup {
    html! {
        section.panel aria-labelledby="scan" {
            h2 #scan { "1. Add the account to your app" }
            p { "Scan this code with an authenticator app, or type the key below into it." }
            img.qr src=(qr) width="200" height="200" alt="QR code of your two-step sign-in key";
            p { "Key: " code.secret { (secret) } }
        }
    }
}

fn enrol_page(visitor: &Visitor, secret: &str, errors: &FormErrors) -> Markup {
    html! {
        (errors.summary())
        (scan_panel(paths::ACCOUNT_MFA_QR, secret))
        form.panel method="post" action=(paths::ACCOUNT_MFA_CONFIRM) novalidate {
            h2 { "2. Confirm with a code" }
            (token(&visitor.csrf))
            (code_field(errors))
            button type="submit" { "Turn on two-step sign-in" }
        }
    }
}

/// `GET /account/two-step`: whether it is on; the form to turn it on, or off.
pub async fn show(State(state): State<AppState>, visitor: Visitor, uri: Uri) -> Response {
    let (_, user) = match account_of(&state, &visitor, &uri).await {
        Ok(found) => found,
        Err(answer) => return answer,
    };
    let on = match basis_store::mfa::find(&state.store, &user.id).await {
        Ok(row) => row.is_some_and(|r| r.confirmed_at.is_some()),
        Err(err) => return page::failure(&visitor, err.into()),
    };
    page::render(
        Some(&visitor),
        StatusCode::OK,
        "Two-step sign-in",
        status_page(&visitor, on, &FormErrors::none()),
    )
}

fn status_page(visitor: &Visitor, on: bool, errors: &FormErrors) -> Markup {
    html! {
        (errors.summary())
        @if on {
            form.panel method="post" action=(paths::ACCOUNT_MFA_DISABLE) novalidate {
                p { "Two-step sign-in is " strong { "on" } ": signing in asks for a code from your app." }
                (token(&visitor.csrf))
                (code_field(errors))
                button.danger type="submit" { "Turn it off" }
            }
        } @else {
            form.panel method="post" action=(paths::ACCOUNT_MFA_START) {
                p { "Two-step sign-in is " strong { "off" } ". With it on, signing in also asks for a code from an app on your phone, so a stolen password is not enough." }
                (token(&visitor.csrf))
                button type="submit" { "Set it up" }
            }
        }
        p { a href=(paths::ACCOUNT) { "Back to your account" } }
    }
}

/// `POST /account/two-step/start`: a new pending secret; shows its QR code and text.
pub async fn start(
    State(state): State<AppState>,
    uri: Uri,
    Posted { visitor, .. }: Posted<StartForm>,
) -> Response {
    let (_, user) = match account_of(&state, &visitor, &uri).await {
        Ok(found) => found,
        Err(answer) => return answer,
    };
    match mfa::start_enrolment(&state, &user).await {
        Ok(enrolment) => page::render(
            Some(&visitor),
            StatusCode::OK,
            "Set up two-step sign-in",
            enrol_page(&visitor, &enrolment.secret, &FormErrors::none()),
        ),
        Err(ApiError::Conflict(_)) => see_other(paths::ACCOUNT_MFA),
        Err(err) => page::failure(&visitor, err),
    }
}

/// `GET /account/two-step/qr.svg`: the pending enrolment's `otpauth://` URI as a QR code
/// (404 when none is pending). Never cached: it holds the secret.
pub async fn qr(State(state): State<AppState>, visitor: Visitor, uri: Uri) -> Response {
    let (_, user) = match account_of(&state, &visitor, &uri).await {
        Ok(found) => found,
        Err(answer) => return answer,
    };
    svg_answer(&visitor, mfa::pending_uri(&state, &user).await)
}

/// A pending enrolment's `otpauth://` URI as a QR code (404 when none is pending). Never
/// cached: it holds the secret.
pub(crate) fn svg_answer(visitor: &Visitor, otpauth: Result<Option<String>, ApiError>) -> Response {
    let svg = match otpauth {
        Ok(Some(otpauth)) => basis_auth::totp::qr_svg(&otpauth),
        Ok(None) => return page::not_found_for(visitor),
        Err(err) => return page::failure(visitor, err),
    };
    match svg {
        Ok(svg) => {
            let mut response = svg.into_response();
            let headers = response.headers_mut();
            headers.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("image/svg+xml"),
            );
            headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            response
        }
        Err(err) => page::failure(visitor, ApiError::Internal(err.into())),
    }
}

/// `POST /account/two-step/confirm`: turns it on with the app's first code and shows the
/// recovery codes, once; a wrong code gets the form again (422).
pub async fn confirm(
    State(state): State<AppState>,
    ip: ClientIp,
    uri: Uri,
    Posted { visitor, form }: Posted<CodeForm>,
) -> Response {
    let (_, user) = match account_of(&state, &visitor, &uri).await {
        Ok(found) => found,
        Err(answer) => return answer,
    };
    match mfa::confirm_enrolment(&state, &ip, &user.id, form.code.trim()).await {
        Ok(codes) => page::render(
            Some(&visitor),
            StatusCode::OK,
            "Two-step sign-in is on",
            html! {
                div.panel {
                    p.notice role="status" { "Two-step sign-in is on. Keep these recovery codes somewhere safe: each signs you in once without your app. They are shown only now." }
                    ul.codes { @for code in &codes { li { code { (code) } } } }
                    p { a href=(paths::ACCOUNT) { "Done: back to your account" } }
                }
            },
        ),
        Err(ApiError::Unauthorized { .. }) => {
            let secret = match basis_store::mfa::find(&state.store, &user.id).await {
                Ok(Some(row)) if row.confirmed_at.is_none() => row.secret,
                Ok(_) => return see_other(paths::ACCOUNT_MFA),
                Err(err) => return page::failure(&visitor, err.into()),
            };
            let mut errors = FormErrors::none();
            errors.add("code", "is not correct; enter the code your app shows now");
            page::render(
                Some(&visitor),
                StatusCode::UNPROCESSABLE_ENTITY,
                "Set up two-step sign-in",
                enrol_page(&visitor, &secret, &errors),
            )
        }
        Err(ApiError::Conflict(_)) => see_other(paths::ACCOUNT_MFA),
        Err(err) => page::failure(&visitor, err),
    }
}

/// `POST /account/two-step/disable`: turns it off with a code; a wrong one gets the form
/// again (422).
pub async fn disable(
    State(state): State<AppState>,
    ip: ClientIp,
    uri: Uri,
    Posted { visitor, form }: Posted<CodeForm>,
) -> Response {
    let Some(user) = &visitor.user else {
        return sign_in_first(&uri);
    };
    match mfa::disable_for(&state, &ip, &user.user_id, form.code.trim()).await {
        Ok(()) => see_other(&format!("{}?done=mfa-off", paths::ACCOUNT)),
        Err(ApiError::Unauthorized { .. }) => {
            let mut errors = FormErrors::none();
            errors.add("code", "is not correct, has expired or was already used");
            page::render(
                Some(&visitor),
                StatusCode::UNPROCESSABLE_ENTITY,
                "Two-step sign-in",
                status_page(&visitor, true, &errors),
            )
        }
        Err(err) => page::failure(&visitor, err),
    }
}
