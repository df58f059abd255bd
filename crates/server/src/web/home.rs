//! `/`: the shorten form (URL, alias, expiry, click limit, password, redirect type) and,
//! after a link is made, the link with a copy button and its QR code.
//!
//! The form is parsed by the API's own parser (`POST /shorten`'s), so both refuse the
//! same input with the same words. A made link is shown by a 303 to `/?created={code}`,
//! which displays it only to someone who may manage it.

use axum::extract::{Query, State};
use axum::http::{StatusCode, Uri};
use axum::response::Response;
use basis_auth::role::Scope;
use maud::{Markup, html};
use serde::Deserialize;

use super::forms::link_fields::{click_limit, expiry, redirect_status};
use super::forms::{Field, FormErrors, optional, token};
use super::session::{Posted, Visitor, csrf_forms};
use super::{page, see_other, sign_in_first};
use crate::error::ApiError;
use crate::links::create::{CreateLink, parse};
use crate::links::domains::LinkDomain;
use crate::links::link::{NewLink, RedirectType};
use crate::links::service::{self, Creation};
use crate::state::AppState;

/// The API's field names and the form's.
const NAMES: &[(&str, &str)] = &[
    ("longUrl", "url"),
    ("customAlias", "alias"),
    ("expiresAt", "expires"),
    ("maxClicks", "max_clicks"),
    ("redirectType", "redirect"),
    ("password", "password"),
];

csrf_forms!(ShortenForm);

/// The shorten form as sent (every field text, so that any input is shown back).
#[derive(Debug, Default, Deserialize)]
pub struct ShortenForm {
    /// The CSRF token.
    pub csrf: Option<String>,
    /// The long URL.
    #[serde(default)]
    pub url: String,
    /// A custom alias.
    pub alias: Option<String>,
    /// The expiry, as a `datetime-local` input sends it (`2030-01-31T12:00`), in UTC.
    pub expires: Option<String>,
    /// The click limit.
    pub max_clicks: Option<String>,
    /// The link's password.
    pub password: Option<String>,
    /// The redirect status.
    pub redirect: Option<String>,
}

/// `?created=` of the home page.
#[derive(Debug, Default, Deserialize)]
pub struct Created {
    /// The code of the link just made.
    pub created: Option<String>,
}

fn shorten_form(visitor: &Visitor, form: &ShortenForm, errors: &FormErrors) -> Markup {
    let redirect = form.redirect.as_deref().unwrap_or("301");
    let redirect_error = errors.get("redirect");
    html! {
        (errors.summary())
        form.panel method="post" action="/" novalidate {
            (token(&visitor.csrf))
            (Field::new("url", "Long URL", &form.url).kind("url").required().hint("An http or https address.").render(errors))
            details open[!errors.is_empty() && errors.get("url").is_none()] {
                summary { "Options" }
                div.grid {
                    (Field::new("alias", "Custom alias", form.alias.as_deref().unwrap_or_default())
                        .hint("Optional: 3 to 64 letters, digits, - or _.").render(errors))
                    (Field::new("expires", "Expires (UTC)", form.expires.as_deref().unwrap_or_default())
                        .kind("datetime-local").hint("Optional: the link stops working then.").render(errors))
                    (Field::new("max_clicks", "Click limit", form.max_clicks.as_deref().unwrap_or_default())
                        .kind("number").hint("Optional: the link stops working after this many clicks.").render(errors))
                    (Field::new("password", "Password", "").kind("password").autocomplete("new-password")
                        .hint("Optional: visitors must type it to follow the link.").render(errors))
                    div.field {
                        label for="f-redirect" { "Redirect type" }
                        select #f-redirect name="redirect" aria-invalid=[redirect_error.map(|_| "true")]
                            aria-describedby=[redirect_error.map(|_| "f-redirect-error")] {
                            @for kind in RedirectType::ALL {
                                @let status = kind.status().to_string();
                                option value=(status) selected[status == redirect] { (status) " " (describe(kind)) }
                            }
                        }
                        @if let Some(error) = redirect_error { p.error #f-redirect-error { (super::forms::sentence("Redirect type", error)) } }
                    }
                }
            }
            button type="submit" { "Shorten" }
        }
    }
}

/// How a redirect type reads in a form's list.
pub(super) fn describe(kind: RedirectType) -> &'static str {
    match kind {
        RedirectType::Moved => "permanent",
        RedirectType::Found => "temporary",
        RedirectType::Temporary => "temporary, keeps the method",
        RedirectType::Permanent => "permanent, keeps the method",
    }
}

/// The made link: the short URL to copy, its QR code and downloads.
fn result(code: &str, short_url: &str) -> Markup {
    html! {
        section.panel aria-labelledby="made" {
            h2 #made { "Your short link" }
            div.result {
                div.copy-row {
                    label.skip for="short-url" { "Short URL" }
                    input #short-url type="text" readonly value=(short_url);
                    button.secondary type="button" data-copy=(short_url) data-status="copy-status" hidden { "Copy" }
                }
                img src=(format!("/{code}/qr.svg")) width="160" height="160"
                    alt=(format!("QR code for {short_url}"));
            }
            p #copy-status.muted role="status" {}
            p.actions {
                a href=(format!("/{code}/qr.svg")) download=(format!("{code}.svg")) { "Download QR (SVG)" }
                a href=(format!("/{code}/qr.png")) download=(format!("{code}.png")) { "Download QR (PNG)" }
                a href=(format!("/{code}+")) { "Preview" }
            }
        }
    }
}

/// The short URL of `code`, when the visitor may manage that link (others see nothing).
async fn made(state: &AppState, visitor: &Visitor, code: &str) -> Option<String> {
    let link = service::managed(
        state,
        &visitor.caller(),
        (code, &LinkDomain::default()),
        Scope::LinksRead,
    )
    .await
    .ok()?;
    let row = &link.row;
    Some(state.domains.short_url(
        &state.base_url,
        row.domain.as_deref(),
        &state.codes.code_of(row),
    ))
}

fn home(
    visitor: &Visitor,
    status: StatusCode,
    made: Option<(&str, &str)>,
    form: &ShortenForm,
    errors: &FormErrors,
) -> Response {
    let main = html! {
        @if let Some((code, url)) = made { (result(code, url)) }
        (shorten_form(visitor, form, errors))
        @if visitor.user.is_none() {
            p.muted { a href=(super::paths::SIGN_IN) { "Sign in" } " to keep a list of your links." }
        }
    };
    page::render(Some(visitor), status, "Shorten a link", main)
}

/// `GET /`.
pub async fn show(
    State(state): State<AppState>,
    visitor: Visitor,
    uri: Uri,
    Query(created): Query<Created>,
) -> Response {
    if state.identity.config.require_auth_for_links && visitor.user.is_none() {
        return sign_in_first(&uri);
    }
    let code = created.created.as_deref();
    let short_url = match code {
        Some(code) => made(&state, &visitor, code).await,
        None => None,
    };
    let made = code.zip(short_url.as_deref());
    home(
        &visitor,
        StatusCode::OK,
        made,
        &ShortenForm::default(),
        &FormErrors::none(),
    )
}

/// The form's values as the API's create body, with the problems of the text the API does
/// not read itself (the expiry's, the click limit's and the redirect type's); such a field
/// is left out of the body, so the API's parser still reports the others.
fn body_of(form: &ShortenForm) -> (CreateLink, FormErrors) {
    let mut errors = FormErrors::none();
    let expires_at = optional(&form.expires).and_then(|text| expiry(text, &mut errors));
    let max_clicks = optional(&form.max_clicks).and_then(|text| click_limit(text, &mut errors));
    let redirect_type =
        optional(&form.redirect).and_then(|text| redirect_status(text, &mut errors));
    let body = CreateLink {
        long_url: form.url.trim().to_owned(),
        custom_alias: optional(&form.alias).map(str::to_owned),
        expires_at,
        max_clicks,
        redirect_type,
        // A password is taken as typed: spaces may be part of it.
        password: form.password.clone().filter(|p| !p.is_empty()),
        reuse: false,
        tags: Vec::new(),
        title: None,
        rules: None,
        domain: None,
    };
    (body, errors)
}

/// Why the form made no link.
enum Refusal {
    /// Problems with what was typed: the form again.
    Fields(FormErrors),
    /// Anything else.
    Failed(ApiError),
}

/// The link the form describes, or every problem with it.
fn link_of(state: &AppState, form: &ShortenForm) -> Result<NewLink, Refusal> {
    let (body, mut errors) = body_of(form);
    match parse(state, body) {
        Ok(link) if errors.is_empty() => Ok(link),
        Ok(_) => Err(Refusal::Fields(errors)),
        Err(err) => {
            errors.extend(FormErrors::of_error(err, NAMES).map_err(Refusal::Failed)?);
            Err(Refusal::Fields(errors))
        }
    }
}

/// `POST /`: makes the link and shows it (303), or shows the form again (422).
pub async fn shorten(
    State(state): State<AppState>,
    uri: Uri,
    Posted { visitor, form }: Posted<ShortenForm>,
) -> Response {
    if state.identity.config.require_auth_for_links && visitor.user.is_none() {
        return sign_in_first(&uri);
    }
    let invalid = |errors: FormErrors| {
        home(
            &visitor,
            StatusCode::UNPROCESSABLE_ENTITY,
            None,
            &form,
            &errors,
        )
    };
    let link = match link_of(&state, &form) {
        Ok(link) => link,
        Err(Refusal::Fields(errors)) => return invalid(errors),
        Err(Refusal::Failed(err)) => return page::failure(&visitor, err),
    };
    let owner = visitor.user.as_ref().map(|u| u.user_id.clone());
    match service::create(&state, owner, link, false).await {
        Ok(Creation::Created(row, ..)) => {
            let code = state.codes.code_of(&row);
            let query = url::form_urlencoded::Serializer::new(String::new())
                .append_pair("created", &code)
                .finish();
            see_other(&format!("/?{query}"))
        }
        Ok(Creation::Reused(_)) => page::failure(
            &visitor,
            ApiError::Internal(anyhow::anyhow!("the form never asks for reuse")),
        ),
        Err(ApiError::Conflict(message)) => {
            let mut errors = FormErrors::none();
            errors.add("alias", format!("{message}; choose another"));
            invalid(errors)
        }
        Err(err) => page::failure(&visitor, err),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_forms_text_becomes_the_apis_values() {
        let form = ShortenForm {
            url: " https://example.com/a ".into(),
            alias: Some("  ".into()),
            expires: Some("2030-01-31T12:00".into()),
            max_clicks: Some("5".into()),
            redirect: Some("302".into()),
            password: Some(String::new()),
            ..ShortenForm::default()
        };
        let (body, errors) = body_of(&form);
        assert!(errors.is_empty());
        assert_eq!(body.long_url, "https://example.com/a");
        assert_eq!(body.custom_alias, None);
        assert_eq!(
            body.expires_at.unwrap().to_rfc3339(),
            "2030-01-31T12:00:00+00:00"
        );
        assert_eq!(body.max_clicks, Some(5));
        assert_eq!(body.redirect_type, Some(302));
        assert_eq!(body.password, None);
    }

    #[test]
    fn text_that_is_no_number_or_date_is_named() {
        let form = ShortenForm {
            expires: Some("tomorrow".into()),
            max_clicks: Some("many".into()),
            ..ShortenForm::default()
        };
        let (body, errors) = body_of(&form);
        assert_eq!(body.max_clicks, None);
        assert!(errors.get("expires").is_some());
        assert!(errors.get("max_clicks").is_some());
    }
}
