//! Enrolling in two-step sign-in when the role requires it (`PUT /admin/mfa-policy`).
//!
//! A sign-in whose password is right but whose role needs an authenticator app the account
//! has not set up gets no session: as in the API, it gets the one-use, five-minute
//! enrolment challenge ([`mfa::next_step`]), here in an HttpOnly cookie ([`ENROL_COOKIE`]),
//! and a 303 to [`paths::SIGN_IN_ENROL`]. That page shows the QR code and the key, and a
//! first code confirms the app ([`mfa::confirm_enrolment`]); only then does the session
//! start, and the recovery codes are shown once with the way on to where the person was
//! going. While the challenge lives, every other page sends its visitor back there
//! ([`gate`]): nothing else comes first.

use axum::extract::{Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::Response;
use basis_auth::role::Role;
use maud::{Markup, html};

use super::account::Next as NextQuery;
use super::forms::{FormErrors, token};
use super::mfa_step::{CodeForm, code_field, svg_answer};
use super::session::{Posted, SignedIn, Visitor, cookie};
use super::{local_path, page, paths, see_other};
use crate::accounts::mfa::{self, CHALLENGE_TTL_MS};
use crate::accounts::session;
use crate::audit;
use crate::error::ApiError;
use crate::http::extract::ClientIp;
use crate::state::AppState;

/// The cookie that carries a pending enrolment's challenge. `__Host-`: only we set it.
pub const ENROL_COOKIE: &str = "__Host-basis_enrol";

/// Where people go once enrolled, unless `next` says otherwise.
const AFTER: &str = paths::MY_LINKS;

fn enrol_cookie(challenge: &str) -> String {
    format!(
        "{ENROL_COOKIE}={challenge}; Path=/; Max-Age={}; Secure; HttpOnly; SameSite=Lax",
        CHALLENGE_TTL_MS / 1000
    )
}

/// The `Set-Cookie` that forgets a pending enrolment.
pub fn clear_enrol_cookie() -> HeaderValue {
    HeaderValue::from_static(
        "__Host-basis_enrol=; Path=/; Max-Age=0; Secure; HttpOnly; SameSite=Lax",
    )
}

/// Whether a request carries a pending enrolment's cookie.
pub fn has_enrol_cookie(headers: &HeaderMap) -> bool {
    cookie(headers, ENROL_COOKIE).is_some()
}

fn page_path(next: &str) -> String {
    let query = url::form_urlencoded::Serializer::new(String::new())
        .append_pair("next", next)
        .finish();
    format!("{}?{query}", paths::SIGN_IN_ENROL)
}

/// The answer to a sign-in refused for lacking two-step sign-in its role requires: the
/// challenge in the cookie, and a 303 to the enrolment page, then on to `next`.
pub fn required(challenge: &str, next: &str) -> Response {
    let mut response = see_other(&page_path(next));
    if let Ok(cookie) = HeaderValue::from_str(&enrol_cookie(challenge)) {
        response.headers_mut().append(header::SET_COOKIE, cookie);
    }
    response
}

/// Sends every page but the sign-in's own (and the assets) to the enrolment page while a
/// live enrolment challenge is pending in this browser.
pub async fn gate(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let path = request.uri().path();
    let exempt =
        path.starts_with(paths::SIGN_IN) || path.starts_with("/assets/") || path == paths::SIGN_OUT;
    let challenge = match cookie(request.headers(), ENROL_COOKIE) {
        Some(challenge) if !exempt => challenge,
        _ => return next.run(request).await,
    };
    // A dead challenge holds no one back: the page answers as if it were not there.
    if mfa::enrolment_user(&state, challenge).await.is_err() {
        return next.run(request).await;
    }
    let back = request
        .uri()
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .to_owned();
    see_other(&page_path(local_path(&back).unwrap_or(AFTER)))
}

/// What the enrolment page's handlers find: the account the challenge belongs to, or the
/// page to answer (sign in first, or again).
#[allow(
    clippy::result_large_err,
    reason = "the error is the answer itself, made once on a rare path"
)]
async fn enrolling(
    state: &AppState,
    visitor: &Visitor,
    headers: &HeaderMap,
    next: &str,
) -> Result<(String, basis_store::users::UserRow), Response> {
    let again = || {
        let query = url::form_urlencoded::Serializer::new(String::new())
            .append_pair("next", next)
            .finish();
        let mut response = see_other(&format!("{}?{query}", paths::SIGN_IN));
        response
            .headers_mut()
            .append(header::SET_COOKIE, clear_enrol_cookie());
        response
    };
    let Some(challenge) = cookie(headers, ENROL_COOKIE) else {
        return Err(again());
    };
    match mfa::enrolment_user(state, challenge).await {
        Ok(user) => Ok((challenge.to_owned(), user)),
        Err(ApiError::Unauthorized { .. }) => Err(again()),
        Err(err) => Err(page::failure(visitor, err)),
    }
}

fn enrol_page(visitor: &Visitor, secret: &str, next: &str, errors: &FormErrors) -> Markup {
    html! {
        (errors.summary())
        p.notice role="status" { "Your role requires two-step sign-in. Set it up now to finish signing in: it takes a minute, and an app on your phone." }
        (super::mfa_step::scan_panel(paths::SIGN_IN_ENROL_QR, secret))
        form.panel method="post" action=(paths::SIGN_IN_ENROL) novalidate {
            h2 { "2. Confirm with a code" }
            (token(&visitor.csrf))
            input type="hidden" name="next" value=(next);
            (code_field(errors))
            button type="submit" { "Turn on two-step sign-in and continue" }
        }
    }
}

/// `GET /signin/two-step`: the pending enrolment's QR code and key (a new one when none is
/// pending) and the form for the first code.
pub async fn show(
    State(state): State<AppState>,
    visitor: Visitor,
    headers: HeaderMap,
    Query(query): Query<NextQuery>,
) -> Response {
    let next = query.next.as_deref().and_then(local_path).unwrap_or(AFTER);
    let (_, user) = match enrolling(&state, &visitor, &headers, next).await {
        Ok(found) => found,
        Err(answer) => return answer,
    };
    let secret = match basis_store::mfa::find(&state.store, &user.id).await {
        Ok(Some(row)) if row.confirmed_at.is_none() => row.secret,
        Ok(_) => match mfa::start_enrolment(&state, &user).await {
            Ok(enrolment) => enrolment.secret,
            // Enrolled meanwhile (another tab): the sign-in now asks for a code.
            Err(ApiError::Conflict(_)) => {
                let mut response = see_other(paths::SIGN_IN);
                response
                    .headers_mut()
                    .append(header::SET_COOKIE, clear_enrol_cookie());
                return response;
            }
            Err(err) => return page::failure(&visitor, err),
        },
        Err(err) => return page::failure(&visitor, err.into()),
    };
    page::render(
        Some(&visitor),
        StatusCode::OK,
        "Set up two-step sign-in",
        enrol_page(&visitor, &secret, next, &FormErrors::none()),
    )
}

/// `GET /signin/two-step/qr.svg`: the pending enrolment's QR code (never cached).
pub async fn qr(State(state): State<AppState>, visitor: Visitor, headers: HeaderMap) -> Response {
    let (_, user) = match enrolling(&state, &visitor, &headers, AFTER).await {
        Ok(found) => found,
        Err(answer) => return answer,
    };
    svg_answer(&visitor, mfa::pending_uri(&state, &user).await)
}

/// `POST /signin/two-step`: turns two-step sign-in on with the app's first code, spends
/// the challenge, starts the session and shows the recovery codes once, with the way on;
/// a wrong code gets the form again (422).
pub async fn confirm(
    State(state): State<AppState>,
    ip: ClientIp,
    headers: HeaderMap,
    Posted { visitor, form }: Posted<CodeForm>,
) -> Response {
    let next = form.next.as_deref().and_then(local_path).unwrap_or(AFTER);
    let (challenge, user) = match enrolling(&state, &visitor, &headers, next).await {
        Ok(found) => found,
        Err(answer) => return answer,
    };
    let codes = match mfa::confirm_enrolment(&state, &ip, &user.id, form.code.trim()).await {
        Ok(codes) => codes,
        Err(ApiError::Unauthorized { .. }) => {
            let secret = match basis_store::mfa::find(&state.store, &user.id).await {
                Ok(Some(row)) if row.confirmed_at.is_none() => row.secret,
                Ok(_) => return see_other(&page_path(next)),
                Err(err) => return page::failure(&visitor, err.into()),
            };
            let mut errors = FormErrors::none();
            errors.add("code", "is not correct; enter the code your app shows now");
            return page::render(
                Some(&visitor),
                StatusCode::UNPROCESSABLE_ENTITY,
                "Set up two-step sign-in",
                enrol_page(&visitor, &secret, next, &errors),
            );
        }
        Err(ApiError::Conflict(_)) => return see_other(&page_path(next)),
        Err(err) => return page::failure(&visitor, err),
    };
    if let Err(err) = mfa::spend_enrolment(&state, &challenge).await {
        return page::failure(&visitor, err);
    }
    let agent = session::user_agent(&headers);
    let (cookie, csrf) = match session::start(&state, &user.id, agent).await {
        Ok(started) => started,
        Err(err) => return page::failure(&visitor, err),
    };
    audit::record(
        &state,
        "login.succeeded",
        Some(&user.id),
        &ip,
        Some("page+enrol"),
    )
    .await;
    let signed_in = Visitor {
        user: Some(SignedIn {
            user_id: user.id.clone(),
            name: user.name.clone(),
            role: user.role.parse().unwrap_or(Role::User),
            session_hash: String::new(),
        }),
        csrf,
        set_cookie: None,
    };
    let mut response = page::render(
        Some(&signed_in),
        StatusCode::OK,
        "Two-step sign-in is on",
        html! {
            div.panel {
                p.notice role="status" { "Two-step sign-in is on, and you are signed in. Keep these recovery codes somewhere safe: each signs you in once without your app. They are shown only now." }
                ul.codes { @for code in &codes { li { code { (code) } } } }
                p { a.button href=(next) { "Continue" } }
            }
        },
    );
    let headers = response.headers_mut();
    headers.append(header::SET_COOKIE, clear_enrol_cookie());
    match HeaderValue::from_str(&cookie) {
        Ok(cookie) => {
            headers.append(header::SET_COOKIE, cookie);
            response
        }
        Err(err) => page::failure(&visitor, ApiError::Internal(err.into())),
    }
}
