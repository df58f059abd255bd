//! `/signup`, `/signin` and `/signout`: accounts and sessions through the API's own rules
//! (the password policy and breached-password list, the login throttle, the audit log, the
//! session cookie).

use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::Response;
use basis_auth::role::Role;
use maud::{Markup, html};
use serde::Deserialize;

use super::forms::{Field, FormErrors, token};
use super::session::{Posted, Visitor, csrf_forms};
use super::{local_path, page, paths, see_other};
use crate::accounts::users::NewUser;
use crate::accounts::{mfa, session, tokens, users};
use crate::audit;
use crate::error::ApiError;
use crate::http::extract::ClientIp;
use crate::state::AppState;

/// Where people go after signing in or up, unless `next` says otherwise.
const AFTER_SIGN_IN: &str = paths::MY_LINKS;

/// `?next=` of the sign-in and sign-up pages.
#[derive(Debug, Default, Deserialize)]
pub struct Next {
    /// Where to go afterwards (a local path).
    pub next: Option<String>,
}

/// The sign-up form as sent.
#[derive(Debug, Default, Deserialize)]
pub struct SignUpForm {
    /// The CSRF token.
    pub csrf: Option<String>,
    /// Email.
    #[serde(default)]
    pub email: String,
    /// Display name.
    #[serde(default)]
    pub name: String,
    /// Password.
    #[serde(default)]
    pub password: String,
    /// Where to go afterwards.
    pub next: Option<String>,
}

/// The sign-in form as sent.
#[derive(Debug, Default, Deserialize)]
pub struct SignInForm {
    /// The CSRF token.
    pub csrf: Option<String>,
    /// Email.
    #[serde(default)]
    pub email: String,
    /// Password.
    #[serde(default)]
    pub password: String,
    /// Where to go afterwards.
    pub next: Option<String>,
}

csrf_forms!(SignUpForm, SignInForm, SignOutForm);

fn next_of(next: &Option<String>) -> &str {
    next.as_deref()
        .and_then(local_path)
        .unwrap_or(AFTER_SIGN_IN)
}

/// Signs `user_id` in from the browser that sent `headers`: a new session, its cookie, and
/// a 303 to `next`.
pub async fn signed_in(
    state: &AppState,
    headers: &HeaderMap,
    user_id: &str,
    next: &str,
) -> Result<Response, ApiError> {
    let agent = session::user_agent(headers);
    let (cookie, _csrf) = session::start(state, user_id, agent).await?;
    let mut response = see_other(next);
    let cookie = HeaderValue::from_str(&cookie).map_err(|e| ApiError::Internal(e.into()))?;
    response.headers_mut().append(header::SET_COOKIE, cookie);
    // Signed in, a pending enrolment of an earlier attempt no longer holds the pages back.
    if super::mfa_enrol::has_enrol_cookie(headers) {
        response
            .headers_mut()
            .append(header::SET_COOKIE, super::mfa_enrol::clear_enrol_cookie());
    }
    Ok(response)
}

fn sign_up_page(visitor: &Visitor, form: &SignUpForm, errors: &FormErrors) -> Markup {
    html! {
        (errors.summary())
        form.panel method="post" action=(paths::SIGN_UP) novalidate {
            (token(&visitor.csrf))
            @if let Some(next) = form.next.as_deref().and_then(local_path) {
                input type="hidden" name="next" value=(next);
            }
            (Field::new("email", "Email", &form.email).kind("email").required().autocomplete("email").render(errors))
            (Field::new("name", "Name", &form.name).required().autocomplete("name").hint("How others see you: 1 to 100 characters.").render(errors))
            (Field::new("password", "Password", "").kind("password").required().autocomplete("new-password")
                .hint("At least 12 characters, hard to guess.").render(errors))
            button type="submit" { "Sign up" }
        }
        p { "Have an account? " a href=(paths::SIGN_IN) { "Sign in" } }
    }
}

/// `GET /signup`.
pub async fn sign_up_form(visitor: Visitor, Query(next): Query<Next>) -> Response {
    if visitor.user.is_some() {
        return see_other(next_of(&next.next));
    }
    let form = SignUpForm {
        next: next.next,
        ..SignUpForm::default()
    };
    page::render(
        Some(&visitor),
        StatusCode::OK,
        "Sign up",
        sign_up_page(&visitor, &form, &FormErrors::none()),
    )
}

/// `POST /signup`: makes the account and signs it in, or shows the form again (422).
pub async fn sign_up(
    State(state): State<AppState>,
    headers: HeaderMap,
    Posted { visitor, form }: Posted<SignUpForm>,
) -> Response {
    let body = NewUser {
        email: form.email.clone(),
        password: form.password.clone(),
        name: form.name.clone(),
    };
    let invalid = |errors: FormErrors| {
        page::render(
            Some(&visitor),
            StatusCode::UNPROCESSABLE_ENTITY,
            "Sign up",
            sign_up_page(&visitor, &form, &errors),
        )
    };
    let user = match users::create_user(&state, body, Role::User).await {
        Ok(user) => user,
        Err(ApiError::Conflict(_)) => {
            let mut errors = FormErrors::none();
            errors.add(
                "email",
                "an account with this email exists; sign in instead",
            );
            return invalid(errors);
        }
        Err(err) => {
            return match FormErrors::of_error(err, &[]) {
                Ok(errors) => invalid(errors),
                Err(err) => page::failure(&visitor, err),
            };
        }
    };
    match signed_in(&state, &headers, &user.id, next_of(&form.next)).await {
        Ok(response) => response,
        Err(err) => page::failure(&visitor, err),
    }
}

/// The provider's sign-in, back to `next` (or the usual page) signed in: the callback sets
/// the session cookie and redirects to a local path.
fn provider_start(next: Option<&str>) -> String {
    let query = url::form_urlencoded::Serializer::new(String::new())
        .append_pair("redirect", next.unwrap_or(AFTER_SIGN_IN))
        .finish();
    format!("/auth/oidc/start?{query}")
}

fn sign_in_page(visitor: &Visitor, form: &SignInForm, errors: &FormErrors, oidc: bool) -> Markup {
    let next = form.next.as_deref().and_then(local_path);
    let sign_up = match next {
        Some(next) => format!(
            "{}?{}",
            paths::SIGN_UP,
            url::form_urlencoded::Serializer::new(String::new())
                .append_pair("next", next)
                .finish()
        ),
        None => paths::SIGN_UP.to_owned(),
    };
    html! {
        @if let Some(problem) = errors.get("form") {
            div.problem role="alert" { p { (problem) } }
        } @else {
            (errors.summary())
        }
        form.panel method="post" action=(paths::SIGN_IN) novalidate {
            (token(&visitor.csrf))
            @if let Some(next) = next {
                input type="hidden" name="next" value=(next);
            }
            (Field::new("email", "Email", &form.email).kind("email").required().autocomplete("username").render(errors))
            (Field::new("password", "Password", "").kind("password").required().autocomplete("current-password").render(errors))
            button type="submit" { "Sign in" }
        }
        @if oidc {
            p { a.button.secondary href=(provider_start(next)) { "Sign in with your organisation's account" } }
        }
        p { "No account yet? " a href=(sign_up) { "Sign up" } }
        p { "Forgot your password? " a href=(paths::RESET) { "Reset it" } }
    }
}

/// Whether an OpenID provider is configured.
fn oidc_on(state: &AppState) -> bool {
    state.identity.config.oidc_issuer.is_some()
}

/// `GET /signin`.
pub async fn sign_in_form(
    State(state): State<AppState>,
    visitor: Visitor,
    Query(next): Query<Next>,
) -> Response {
    if visitor.user.is_some() {
        return see_other(next_of(&next.next));
    }
    let form = SignInForm {
        next: next.next,
        ..SignInForm::default()
    };
    page::render(
        Some(&visitor),
        StatusCode::OK,
        "Sign in",
        sign_in_page(&visitor, &form, &FormErrors::none(), oidc_on(&state)),
    )
}

/// `POST /signin`: checks the password and starts a session, or shows the form again
/// (422) with one message whatever was wrong, as the API does.
pub async fn sign_in(
    State(state): State<AppState>,
    ip: ClientIp,
    headers: HeaderMap,
    Posted { visitor, form }: Posted<SignInForm>,
) -> Response {
    let invalid = |message: &str| {
        let mut errors = FormErrors::none();
        errors.add("form", message);
        page::render(
            Some(&visitor),
            StatusCode::UNPROCESSABLE_ENTITY,
            "Sign in",
            sign_in_page(&visitor, &form, &errors, oidc_on(&state)),
        )
    };
    if form.email.trim().is_empty() || form.password.is_empty() {
        return invalid("Enter your email and password.");
    }
    let credentials = tokens::Credentials {
        email: form.email.clone(),
        password: form.password.clone(),
    };
    let user = match tokens::check_password(&state, &ip, credentials).await {
        Ok(user) => user,
        Err(ApiError::Unauthorized { .. } | ApiError::Invalid(_)) => {
            return invalid("The email or password is not correct.");
        }
        // The API's throttle, per account and address: the form again, saying how long.
        Err(ApiError::TooManyRequests { retry_after, .. }) => {
            let message = format!(
                "Too many sign-in attempts for this account from your address. Wait {} and \
                 try again, or reset your password.",
                page::wait_text(retry_after)
            );
            return page::throttled(invalid(&message), retry_after);
        }
        Err(err) => return page::failure(&visitor, err),
    };
    // An account with an authenticator app finishes on the code page, carrying the
    // API's challenge; never the password.
    match mfa::next_step(&state, &user, mfa::Kind::Session).await {
        Ok(mfa::NextStep::Done) => {}
        Ok(mfa::NextStep::Code { challenge }) => {
            let next = form.next.as_deref().and_then(local_path);
            return super::mfa_step::code_page(
                &visitor,
                StatusCode::OK,
                &challenge,
                next,
                &FormErrors::none(),
            );
        }
        // A role that requires an app this account lacks: enrol first, with no session
        // until the app is confirmed.
        Ok(mfa::NextStep::Enrol { challenge }) => {
            return super::mfa_enrol::required(&challenge, next_of(&form.next));
        }
        Err(err) => return page::failure(&visitor, err),
    }
    audit::record(&state, "login.succeeded", Some(&user.id), &ip, Some("page")).await;
    match signed_in(&state, &headers, &user.id, next_of(&form.next)).await {
        Ok(response) => response,
        Err(err) => page::failure(&visitor, err),
    }
}

/// The sign-out form as sent.
#[derive(Debug, Default, Deserialize)]
pub struct SignOutForm {
    /// The CSRF token.
    pub csrf: Option<String>,
}

/// `POST /signout`: ends the session and clears its cookie; 303 to the home page.
pub async fn sign_out(
    State(state): State<AppState>,
    Posted { visitor, .. }: Posted<SignOutForm>,
) -> Response {
    let Some(user) = &visitor.user else {
        return see_other("/");
    };
    if let Err(err) = basis_store::sessions::delete(&state.store, &user.session_hash).await {
        return page::failure(&visitor, err.into());
    }
    let mut response = see_other("/");
    if let Ok(clear) = HeaderValue::from_str(&basis_auth::session::clear_cookie()) {
        response.headers_mut().append(header::SET_COOKIE, clear);
    }
    response
}
