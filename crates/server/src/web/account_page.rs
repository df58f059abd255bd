//! `/account`: who you are, and what you may change of it, through the API's own
//! services: the password ([`users::set_password`]: the current one, the policy and the
//! breached list; every other session ends), the avatar ([`avatar::accept_upload`], the
//! same checks and thumbnail job as `PUT /users/{id}/avatar`) and signing out everywhere
//! ([`tokens::sign_out_everywhere`]). API keys are in [`super::account_keys`], sessions in
//! [`super::account_sessions`].

use axum::body::Bytes;
use axum::extract::{Multipart, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use axum::response::Response;
use basis_store::users::UserRow;
use maud::{Markup, html};
use serde::Deserialize;

use super::forms::{Field, FormErrors, token};
use super::session::{Posted, SignedIn, Visitor, csrf_forms};
use super::{page, paths, see_other, sign_in_first};
use crate::accounts::users::ChangePassword;
use crate::accounts::{avatar, tokens, users};
use crate::error::ApiError;
use crate::http::extract::ClientIp;
use crate::identity::caller::Principal;
use crate::state::AppState;

/// `?done=` of the account pages: what just changed, to say so.
#[derive(Debug, Default, Deserialize)]
pub struct DoneQuery {
    /// `password`, `avatar`, ...
    pub done: Option<String>,
}

/// The notice for `?done=`.
pub fn done_notice(query: &DoneQuery) -> Markup {
    let text = match query.done.as_deref() {
        Some("password") => "Your password is changed. Your other sessions have ended.",
        Some("avatar") => "Your picture is uploaded; it shows here once it is resized.",
        Some("revoked") => "The key is revoked: it no longer works.",
        Some("ended") => "The session has ended.",
        Some("others") => "Every other session has ended.",
        Some("mfa-off") => "Two-step sign-in is off.",
        _ => return html! {},
    };
    html! { p.notice role="status" { (text) } }
}

/// The signed-in visitor's account row, or the answer to give instead (the sign-in page
/// when nobody is signed in; a failure page).
pub async fn account_of<'v>(
    state: &AppState,
    visitor: &'v Visitor,
    uri: &Uri,
) -> Result<(&'v SignedIn, UserRow), Response> {
    let Some(user) = &visitor.user else {
        return Err(sign_in_first(uri));
    };
    match basis_store::users::find(&state.store, &user.user_id).await {
        Ok(Some(row)) => Ok((user, row)),
        Ok(None) => Err(sign_in_first(uri)),
        Err(err) => Err(page::failure(visitor, err.into())),
    }
}

/// The visitor as a principal of the API's rules.
pub fn principal_of(visitor: &Visitor) -> Option<Principal> {
    visitor.caller().principal().cloned()
}

fn avatar_image(user: &UserRow, version: Option<&str>, size: u32) -> Markup {
    html! {
        @if let Some(version) = version {
            img.avatar src=(format!("/users/{}/avatar?size={size}&v={version}", user.id))
                width=(size) height=(size) alt="Your picture";
        } @else {
            p.muted { "No picture yet." }
        }
    }
}

async fn avatar_version(state: &AppState, user_id: &str) -> Result<Option<String>, ApiError> {
    Ok(basis_store::avatars::thumbnail(&state.store, user_id, 64)
        .await?
        .map(|t| t.etag))
}

/// `GET /account`.
pub async fn show(
    State(state): State<AppState>,
    visitor: Visitor,
    uri: Uri,
    Query(query): Query<DoneQuery>,
) -> Response {
    let (_, user) = match account_of(&state, &visitor, &uri).await {
        Ok(found) => found,
        Err(answer) => return answer,
    };
    let (version, mfa_on) = match (
        avatar_version(&state, &user.id).await,
        basis_store::mfa::find(&state.store, &user.id).await,
    ) {
        (Ok(version), Ok(mfa)) => (version, mfa.is_some_and(|m| m.confirmed_at.is_some())),
        (Err(err), _) => return page::failure(&visitor, err),
        (_, Err(err)) => return page::failure(&visitor, err.into()),
    };
    let main = html! {
        (done_notice(&query))
        section.panel aria-labelledby="who" {
            h2 #who { "Who you are" }
            div.profile {
                (avatar_image(&user, version.as_deref(), 64))
                dl {
                    dt { "Name" } dd { (user.name) }
                    dt { "Email" } dd { (user.email) }
                    dt { "Role" } dd { (user.role) }
                }
            }
        }
        section.panel aria-labelledby="manage" {
            h2 #manage { "Manage" }
            ul.menu {
                li { a href=(paths::ACCOUNT_PASSWORD) { "Change your password" } }
                li { a href=(paths::ACCOUNT_KEYS) { "API keys" } }
                li { a href=(paths::ACCOUNT_SESSIONS) { "Sessions" } }
                li { a href=(paths::ACCOUNT_AVATAR) { "Your picture" } }
                li { a href=(paths::ACCOUNT_MFA) { "Two-step sign-in" } " " span.muted { (if mfa_on { "(on)" } else { "(off)" }) } }
            }
        }
        section.panel aria-labelledby="everywhere" {
            h2 #everywhere { "Sign out everywhere" }
            p { "Ends every session of your account, this one too, and stops every token issued to apps. API keys keep working; revoke them on their page." }
            form method="post" action=(paths::ACCOUNT_SIGN_OUT_EVERYWHERE) {
                (token(&visitor.csrf))
                button.danger type="submit" { "Sign out everywhere" }
            }
        }
    };
    page::render(Some(&visitor), StatusCode::OK, "Your account", main)
}

/// The password form as sent.
#[derive(Debug, Default, Deserialize)]
pub struct PasswordForm {
    /// The CSRF token.
    pub csrf: Option<String>,
    /// The password in use.
    #[serde(default)]
    pub current_password: String,
    /// The new one.
    #[serde(default)]
    pub new_password: String,
}

/// A form that carries only its token.
#[derive(Debug, Default, Deserialize)]
pub struct TokenOnly {
    /// The CSRF token.
    pub csrf: Option<String>,
}

csrf_forms!(PasswordForm, TokenOnly);

fn password_page(visitor: &Visitor, errors: &FormErrors) -> Markup {
    html! {
        (errors.summary())
        form.panel method="post" action=(paths::ACCOUNT_PASSWORD) novalidate {
            (token(&visitor.csrf))
            (Field::new("current_password", "Current password", "").kind("password").required().autocomplete("current-password").render(errors))
            (Field::new("new_password", "New password", "").kind("password").required().autocomplete("new-password")
                .hint("At least 12 characters, hard to guess. Your other sessions end when it changes.").render(errors))
            div.actions {
                button type="submit" { "Change the password" }
                a.button.secondary href=(paths::ACCOUNT) { "Cancel" }
            }
        }
    }
}

/// `GET /account/password`.
pub async fn password_form(visitor: Visitor, uri: Uri) -> Response {
    if visitor.user.is_none() {
        return sign_in_first(&uri);
    }
    page::render(
        Some(&visitor),
        StatusCode::OK,
        "Change your password",
        password_page(&visitor, &FormErrors::none()),
    )
}

/// `POST /account/password`: 303 to `/account` once changed; a wrong current password or
/// a weak or breached new one gets the form again (422) with the problem beside its field.
pub async fn change_password(
    State(state): State<AppState>,
    ip: ClientIp,
    uri: Uri,
    Posted { visitor, form }: Posted<PasswordForm>,
) -> Response {
    let Some(principal) = principal_of(&visitor) else {
        return sign_in_first(&uri);
    };
    let body = ChangePassword {
        current_password: Some(form.current_password.clone()),
        new_password: form.new_password.clone(),
    };
    let user_id = principal.user_id.clone();
    let errors = match users::set_password(&state, &ip, &principal, &user_id, body).await {
        Ok(()) => return see_other(&format!("{}?done=password", paths::ACCOUNT)),
        Err(ApiError::Forbidden(_)) => {
            let mut errors = FormErrors::none();
            errors.add("current_password", "is not correct");
            errors
        }
        Err(err) => match FormErrors::of_error(err, &[("password", "new_password")]) {
            Ok(errors) => errors,
            Err(err) => return page::failure(&visitor, err),
        },
    };
    page::render(
        Some(&visitor),
        StatusCode::UNPROCESSABLE_ENTITY,
        "Change your password",
        password_page(&visitor, &errors),
    )
}

/// `POST /account/sign-out-everywhere`: every session and token of the account ends;
/// the cookie is cleared and the visitor goes home.
pub async fn sign_out_everywhere(
    State(state): State<AppState>,
    uri: Uri,
    Posted { visitor, .. }: Posted<TokenOnly>,
) -> Response {
    let Some(user) = &visitor.user else {
        return sign_in_first(&uri);
    };
    if let Err(err) = tokens::sign_out_everywhere(&state, &user.user_id).await {
        return page::failure(&visitor, err);
    }
    let mut response = see_other("/");
    if let Ok(clear) = HeaderValue::from_str(&basis_auth::session::clear_cookie()) {
        response.headers_mut().append(header::SET_COOKIE, clear);
    }
    response
}

fn avatar_page(
    visitor: &Visitor,
    user: &UserRow,
    version: Option<&str>,
    errors: &FormErrors,
) -> Markup {
    html! {
        (errors.summary())
        section.panel aria-labelledby="current" {
            h2 #current { "Now" }
            (avatar_image(user, version, 256))
        }
        form.panel method="post" action=(paths::ACCOUNT_AVATAR) enctype="multipart/form-data" novalidate {
            (token(&visitor.csrf))
            (Field::new("avatar", "A new picture", "").kind("file").required()
                .hint("PNG, JPEG or WebP, at most 5 MB; it is cut square.").render(errors))
            div.actions {
                button type="submit" { "Upload" }
                a.button.secondary href=(paths::ACCOUNT) { "Back to your account" }
            }
        }
    }
}

/// `GET /account/avatar`.
pub async fn avatar_form(
    State(state): State<AppState>,
    visitor: Visitor,
    uri: Uri,
    Query(query): Query<DoneQuery>,
) -> Response {
    let (_, user) = match account_of(&state, &visitor, &uri).await {
        Ok(found) => found,
        Err(answer) => return answer,
    };
    match avatar_version(&state, &user.id).await {
        Ok(version) => page::render(
            Some(&visitor),
            StatusCode::OK,
            "Your picture",
            html! { (done_notice(&query)) (avatar_page(&visitor, &user, version.as_deref(), &FormErrors::none())) },
        ),
        Err(err) => page::failure(&visitor, err),
    }
}

/// What the upload form sent: its token and the file.
async fn read_upload(
    mut multipart: Multipart,
) -> Result<(Option<String>, Option<Bytes>), StatusCode> {
    let (mut csrf, mut file) = (None, None);
    while let Some(field) = multipart.next_field().await.map_err(|e| e.status())? {
        match field.name() {
            Some("csrf") => csrf = Some(field.text().await.map_err(|e| e.status())?),
            Some("avatar") => file = Some(field.bytes().await.map_err(|e| e.status())?),
            _ => {}
        }
    }
    Ok((csrf, file.filter(|bytes| !bytes.is_empty())))
}

/// `POST /account/avatar` (`multipart/form-data`): the avatar service checks and stores
/// the image and queues its thumbnails; 303 back. A file that is not an image, cannot be
/// decoded or is too large gets the form again with the problem beside the field.
pub async fn upload_avatar(
    State(state): State<AppState>,
    visitor: Visitor,
    uri: Uri,
    headers: HeaderMap,
    multipart: Result<Multipart, axum::extract::multipart::MultipartRejection>,
) -> Response {
    let read = match multipart {
        Ok(multipart) => read_upload(multipart).await,
        Err(rejection) => Err(rejection.status()),
    };
    let too_large = matches!(read, Err(StatusCode::PAYLOAD_TOO_LARGE));
    let (csrf, file) = read.unwrap_or_default();
    // The token is checked first, whatever else was wrong with the form.
    if let Err(refused) = visitor.check_form(csrf.as_deref(), &headers, &state) {
        return refused;
    }
    let (_, user) = match account_of(&state, &visitor, &uri).await {
        Ok(found) => found,
        Err(answer) => return answer,
    };
    let problem = match (too_large, file) {
        (true, _) => "must be at most 5 MB".to_owned(),
        (false, None) => "Choose an image file.".to_owned(),
        (false, Some(bytes)) => {
            match avatar::accept_upload(&state, &user.id, &user.id, bytes).await {
                Ok(_job) => return see_other(&format!("{}?done=avatar", paths::ACCOUNT_AVATAR)),
                Err(ApiError::UnsupportedMediaType(_)) => {
                    "must be a PNG, JPEG or WebP image".to_owned()
                }
                Err(ApiError::Unprocessable(detail)) => detail,
                Err(ApiError::PayloadTooLarge) => "must be at most 5 MB".to_owned(),
                Err(err) => return page::failure(&visitor, err),
            }
        }
    };
    let mut errors = FormErrors::none();
    errors.add("avatar", problem);
    let version = avatar_version(&state, &user.id).await.ok().flatten();
    page::render(
        Some(&visitor),
        StatusCode::UNPROCESSABLE_ENTITY,
        "Your picture",
        avatar_page(&visitor, &user, version.as_deref(), &errors),
    )
}
