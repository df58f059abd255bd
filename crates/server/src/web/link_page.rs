//! `/my/links/{code}`: one link of the signed-in person: its short URL (copy button, QR
//! code), where it goes and its limits, its statistics ([`super::stats`]), and a form that
//! edits everything `PATCH /links/{code}` can change. The form is read into the API's own
//! change body and goes through the same parser ([`manage::parse_change`]) and service
//! ([`service::change`]), so both refuse the same values with the same words; it answers
//! with a 303 back to the page, or the page again with 422 and each problem beside its field.
//!
//! A link of someone else, or none, is the 404 page: nobody learns that another person's
//! link exists.

use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, Uri};
use axum::response::Response;
use basis_auth::role::Scope;
use basis_store::links::CountedLink;
use chrono::{DateTime, Utc};
use maud::{Markup, html};
use serde::Deserialize;

use super::forms::link_fields::{click_limit, expiry, redirect_status};
use super::forms::{Field, FormErrors, optional, sentence, token};
use super::my_links::domain_of;
use super::session::{Posted, Visitor, csrf_forms};
use super::stats::{Figures, StatsQuery, TOP_REFERRERS, TOP_VISIT_PARTS, View};
use super::{page, paths, see_other, sign_in_first};
use crate::clock::day_of;
use crate::error::ApiError;
use crate::links::LinkView;
use crate::links::domains::LinkDomain;
use crate::links::link::RedirectType;
use crate::links::manage::{ChangeLink, parse_change};
use crate::links::rules::RulesInput;
use crate::links::service;
use crate::state::AppState;

/// The API's field names and the form's.
const NAMES: &[(&str, &str)] = &[
    ("longUrl", "url"),
    ("expiresAt", "expires"),
    ("maxClicks", "max_clicks"),
    ("redirectType", "redirect"),
    ("password", "password"),
    ("tags", "tags"),
    ("title", "title"),
];

/// The query of the link page.
#[derive(Debug, Default, Deserialize)]
pub struct LinkQuery {
    /// The link's domain (absent: the default one).
    pub domain: Option<String>,
    /// Set after a successful edit, to say so.
    pub saved: Option<String>,
    /// The statistics' period.
    pub period: Option<String>,
    /// `show` to show bots.
    pub bots: Option<String>,
}

/// The address of link `code`'s page on `domain`, with `extra` query pairs.
pub fn path_of(code: &str, domain: Option<&str>, extra: &[(&str, &str)]) -> String {
    let mut query = url::form_urlencoded::Serializer::new(String::new());
    if let Some(domain) = domain {
        query.append_pair("domain", domain);
    }
    for (name, value) in extra {
        query.append_pair(name, value);
    }
    let query = query.finish();
    let code = url::form_urlencoded::byte_serialize(code.as_bytes()).collect::<String>();
    if query.is_empty() {
        format!("{}/{code}", paths::MY_LINKS)
    } else {
        format!("{}/{code}?{query}", paths::MY_LINKS)
    }
}

csrf_forms!(EditForm);

/// The edit form as sent (every field text, so any input is shown back).
#[derive(Debug, Default, Deserialize)]
pub struct EditForm {
    /// The CSRF token.
    pub csrf: Option<String>,
    /// The target URL.
    #[serde(default)]
    pub url: String,
    /// The title (blank: none).
    pub title: Option<String>,
    /// Tags, separated by commas (blank: none).
    pub tags: Option<String>,
    /// The expiry as a `datetime-local` input sends it, in UTC (blank: none).
    pub expires: Option<String>,
    /// The click limit (blank: none).
    pub max_clicks: Option<String>,
    /// The redirect status.
    pub redirect: Option<String>,
    /// A new password (blank: keep the present one).
    pub password: Option<String>,
    /// `on` to remove the password.
    pub remove_password: Option<String>,
    /// Routing rules as JSON, as the API takes them (blank: none).
    pub rules: Option<String>,
}

/// The time a `datetime-local` input shows for `at`.
fn local_input(at: DateTime<Utc>) -> String {
    at.format("%Y-%m-%dT%H:%M").to_string()
}

impl EditForm {
    /// The form filled in with `link`'s values.
    fn of(link: &LinkView) -> Self {
        Self {
            csrf: None,
            url: link.long_url.clone(),
            title: link.title.clone(),
            tags: Some(link.tags.join(", ")),
            expires: link.expires_at.map(local_input),
            max_clicks: link.max_clicks.map(|n| n.to_string()),
            redirect: Some(link.redirect_type.to_string()),
            password: None,
            remove_password: None,
            rules: link
                .rules
                .as_ref()
                .and_then(|r| serde_json::to_string_pretty(r).ok()),
        }
    }

    /// The API's change body for this form, with the problems of the text the API does not
    /// read itself; such a field is left out, so the API still reports the others. An
    /// expiry left as it was shown is not sent (an expiry already past could not be set
    /// again, and would stop every other edit).
    fn change(&self, link: &LinkView) -> (ChangeLink, FormErrors) {
        let mut errors = FormErrors::none();
        let expires_at = match optional(&self.expires) {
            None => Some(None),
            Some(text) if link.expires_at.map(local_input).as_deref() == Some(text) => None,
            Some(text) => expiry(text, &mut errors).map(Some),
        };
        let max_clicks = match optional(&self.max_clicks) {
            None => Some(None),
            Some(text) => click_limit(text, &mut errors).map(Some),
        };
        let redirect_type =
            optional(&self.redirect).and_then(|text| redirect_status(text, &mut errors));
        let password = if self.remove_password.is_some() {
            Some(None)
        } else {
            // A password is taken as typed: spaces may be part of it.
            self.password.clone().filter(|p| !p.is_empty()).map(Some)
        };
        let tags: Vec<String> = self
            .tags
            .as_deref()
            .unwrap_or_default()
            .split(',')
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .map(str::to_owned)
            .collect();
        let rules = match optional(&self.rules) {
            None => Some(None),
            Some(text) => match serde_json::from_str::<RulesInput>(text) {
                Ok(rules) => Some(Some(rules)),
                Err(err) => {
                    errors.add(
                        "rules",
                        format!("must be routing rules as the API takes them ({err})"),
                    );
                    None
                }
            },
        };
        let change = ChangeLink {
            long_url: Some(self.url.trim().to_owned()),
            expires_at,
            max_clicks,
            redirect_type,
            password,
            tags: Some(Some(tags)),
            title: Some(optional(&self.title).map(str::to_owned)),
            rules,
        };
        (change, errors)
    }
}

/// The link `code` names on `query`'s domain, for the visitor: `Err` is the page to show
/// (404 for a link that is missing or someone else's).
#[allow(
    clippy::result_large_err,
    reason = "the error is the answer page itself, made once on a rare path"
)]
async fn own_link(
    state: &AppState,
    visitor: &Visitor,
    code: &str,
    domain: &Option<String>,
    scope: Scope,
) -> Result<(CountedLink, LinkDomain), Response> {
    let Some(domain) = domain_of(state, domain) else {
        return Err(page::not_found_for(visitor));
    };
    let caller = visitor.caller();
    let found = match scope {
        Scope::LinksWrite => service::managed(state, &caller, (code, &domain), scope).await,
        _ => service::find_managed(state, &caller, (code, &domain), scope).await,
    };
    match found {
        Ok(link) => Ok((link, domain)),
        // Someone else's link is as good as missing.
        Err(ApiError::NotFound | ApiError::Forbidden(_) | ApiError::Unauthorized { .. }) => {
            Err(page::not_found_for(visitor))
        }
        Err(err) => Err(page::failure(visitor, err)),
    }
}

/// What the page shows besides the link: its statistics' section.
struct Page<'a> {
    view: &'a LinkView,
    form: &'a EditForm,
    errors: &'a FormErrors,
    saved: bool,
    stats: Markup,
}

fn describe_expiry(view: &LinkView) -> String {
    view.expires_at.map_or_else(
        || "Never".to_owned(),
        |at| at.format("%Y-%m-%d %H:%M UTC").to_string(),
    )
}

fn details(view: &LinkView) -> Markup {
    let code = &view.short_code;
    html! {
        section.panel aria-labelledby="link-title" {
            h2 #link-title { "Short link" }
            div.result {
                div.copy-row {
                    label.skip for="short-url" { "Short URL" }
                    input #short-url type="text" readonly value=(view.short_url);
                    button.secondary type="button" data-copy=(view.short_url) data-status="copy-status" hidden { "Copy" }
                }
                img src=(format!("/{code}/qr.svg")) width="160" height="160"
                    alt=(format!("QR code for {}", view.short_url));
            }
            p #copy-status.muted role="status" {}
            dl.facts {
                div { dt { "Goes to" } dd.url { a href=(view.long_url) rel="nofollow noopener" { (view.long_url) } } }
                @if let Some(title) = &view.title { div { dt { "Title" } dd { (title) } } }
                div { dt { "Created" } dd { time datetime=(view.created_at.to_rfc3339()) { (view.created_at.format("%Y-%m-%d %H:%M UTC")) } } }
                div { dt { "Expires" } dd { (describe_expiry(view)) } }
                div { dt { "Click limit" } dd { @if let Some(max) = view.max_clicks { (max) } @else { "None" } } }
                div { dt { "Clicks" } dd { (view.click_count) } }
                div { dt { "Redirect" } dd { (view.redirect_type) } }
                div { dt { "Password" } dd { @if view.password_protected { "Yes" } @else { "No" } } }
                div { dt { "Tags" } dd {
                    @if view.tags.is_empty() { "None" }
                    @for tag in &view.tags {
                        a.tag href=(tag_path(tag)) { (tag) }
                        " "
                    }
                } }
            }
            p.actions {
                a href=(format!("/{code}/qr.svg")) download=(format!("{code}.svg")) { "Download QR (SVG)" }
                a href=(format!("/{code}/qr.png")) download=(format!("{code}.png")) { "Download QR (PNG)" }
                a href=(format!("/{code}+")) { "Preview" }
                a href=(delete_path(view)) { "Delete this link" }
            }
        }
    }
}

fn tag_path(tag: &str) -> String {
    let query = url::form_urlencoded::Serializer::new(String::new())
        .append_pair("tag", tag)
        .finish();
    format!("{}?{query}", paths::MY_LINKS)
}

fn delete_path(view: &LinkView) -> String {
    let query = url::form_urlencoded::Serializer::new(String::new())
        .append_pair("domain", &view.domain)
        .finish();
    format!("/my/links/{}/delete?{query}", view.short_code)
}

fn edit_form(visitor: &Visitor, action: &str, page: &Page<'_>) -> Markup {
    let form = page.form;
    let errors = page.errors;
    let redirect = form.redirect.as_deref().unwrap_or("301");
    let redirect_error = errors.get("redirect");
    let rules_error = errors.get("rules");
    html! {
        section.panel aria-labelledby="edit-title" {
            h2 #edit-title { "Edit" }
            (errors.summary())
            form method="post" action=(action) novalidate {
                (token(&visitor.csrf))
                (Field::new("url", "Long URL", &form.url).kind("url").required().hint("An http or https address.").render(errors))
                div.grid {
                    (Field::new("title", "Title", form.title.as_deref().unwrap_or_default())
                        .hint("Optional: a name for you, shown in previews.").render(errors))
                    (Field::new("tags", "Tags", form.tags.as_deref().unwrap_or_default())
                        .hint("Optional: separated by commas.").render(errors))
                    (Field::new("expires", "Expires (UTC)", form.expires.as_deref().unwrap_or_default())
                        .kind("datetime-local").hint("Blank: never.").render(errors))
                    (Field::new("max_clicks", "Click limit", form.max_clicks.as_deref().unwrap_or_default())
                        .kind("number").hint("Blank: no limit.").render(errors))
                    div.field {
                        label for="f-redirect" { "Redirect type" }
                        select #f-redirect name="redirect" aria-invalid=[redirect_error.map(|_| "true")]
                            aria-describedby=[redirect_error.map(|_| "f-redirect-error")] {
                            @for kind in RedirectType::ALL {
                                @let status = kind.status().to_string();
                                option value=(status) selected[status == redirect] { (status) " " (super::home::describe(kind)) }
                            }
                        }
                        @if let Some(error) = redirect_error { p.error #f-redirect-error { (sentence("Redirect type", error)) } }
                    }
                    (Field::new("password", "New password", "").kind("password").autocomplete("new-password")
                        .hint(if page.view.password_protected { "Blank: keep the present password." } else { "Optional: visitors must type it." })
                        .render(errors))
                }
                @if page.view.password_protected {
                    div.field.check {
                        input #f-remove_password type="checkbox" name="remove_password" value="on" checked[form.remove_password.is_some()];
                        label for="f-remove_password" { "Remove the password" }
                    }
                }
                details open[rules_error.is_some()] {
                    summary { "Routing rules" }
                    div.field {
                        label for="f-rules" { "Rules (JSON)" }
                        p.hint #f-rules-hint { "Optional: destinations by weight (" code { "split" } ") or by device, system, language or country (" code { "targets" } "), as the API takes them." }
                        textarea #f-rules name="rules" rows="6" spellcheck="false"
                            aria-invalid=[rules_error.map(|_| "true")]
                            aria-describedby=(if rules_error.is_some() { "f-rules-hint f-rules-error" } else { "f-rules-hint" }) {
                            (form.rules.as_deref().unwrap_or_default())
                        }
                        @if let Some(error) = rules_error { p.error #f-rules-error { (sentence("Rules", error)) } }
                    }
                }
                button type="submit" { "Save changes" }
            }
        }
    }
}

fn render_page(visitor: &Visitor, status: StatusCode, action: &str, page: &Page<'_>) -> Response {
    let main = html! {
        p { a href=(paths::MY_LINKS) { "← All my links" } }
        @if page.saved { p.notice role="status" { "Saved." } }
        (details(page.view))
        (page.stats)
        (edit_form(visitor, action, page))
    };
    let title = format!("Link {}", page.view.short_code);
    page::render(Some(visitor), status, &title, main)
}

/// The statistics section of `link` for `view`.
async fn stats_of(
    state: &AppState,
    visitor: &Visitor,
    (code, domain): (&str, &LinkDomain),
    view: View,
    href: &(dyn Fn(View) -> String + Sync),
) -> Result<Markup, ApiError> {
    let analytics = service::analytics(
        state,
        &visitor.caller(),
        (code, domain),
        view.days_to_read(),
        TOP_REFERRERS,
    )
    .await?;
    // The period, or the days the visit log keeps if fewer.
    let visit_days = state
        .clicks
        .visit_log_days()
        .map_or(view.period, |kept| view.period.min(i64::from(kept)));
    let visits =
        service::visit_breakdown(state, analytics.link.row.id, visit_days, TOP_VISIT_PARTS).await?;
    let today = day_of(state.clock.now_ms());
    let figures = Figures::new(&analytics.stats, analytics.link.clicks, today, view)
        .with_visits(visits.as_ref(), visit_days);
    Ok(super::stats::section(&figures, href))
}

/// `GET /my/links/{code}`.
pub async fn show(
    State(state): State<AppState>,
    visitor: Visitor,
    uri: Uri,
    Path(code): Path<String>,
    query: Result<Query<LinkQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    if visitor.user.is_none() {
        return sign_in_first(&uri);
    }
    let Query(query) = query.unwrap_or_default();
    let (link, domain) =
        match own_link(&state, &visitor, &code, &query.domain, Scope::LinksRead).await {
            Ok(found) => found,
            Err(page) => return page,
        };
    let (tags, title) = match service::extras_of(&state, link.row.id).await {
        Ok(extras) => extras,
        Err(err) => return page::failure(&visitor, err),
    };
    let view = LinkView::new(&state, &link.row, link.clicks).with_extras(tags, title);
    let stats_view = View::of(&StatsQuery {
        period: query.period.clone(),
        bots: query.bots.clone(),
    });
    let domain_name = query.domain.as_deref();
    let href = |v: View| {
        let period = v.period.to_string();
        let mut extra = vec![("period", period.as_str())];
        if v.bots {
            extra.push(("bots", "show"));
        }
        format!("{}#stats", path_of(&code, domain_name, &extra))
    };
    let stats = match stats_of(&state, &visitor, (&code, &domain), stats_view, &href).await {
        Ok(stats) => stats,
        Err(err) => return page::failure(&visitor, err),
    };
    let form = EditForm::of(&view);
    let page = Page {
        view: &view,
        form: &form,
        errors: &FormErrors::none(),
        saved: query.saved.is_some(),
        stats,
    };
    render_page(
        &visitor,
        StatusCode::OK,
        &path_of(&code, domain_name, &[]),
        &page,
    )
}

/// `POST /my/links/{code}`: saves the edit (303 back to the page) or shows the form again
/// with its problems (422).
pub async fn edit(
    State(state): State<AppState>,
    uri: Uri,
    Path(code): Path<String>,
    Query(query): Query<LinkQuery>,
    Posted { visitor, form }: Posted<EditForm>,
) -> Response {
    if visitor.user.is_none() {
        return sign_in_first(&uri);
    }
    let (link, domain) =
        match own_link(&state, &visitor, &code, &query.domain, Scope::LinksWrite).await {
            Ok(found) => found,
            Err(page) => return page,
        };
    let domain_name = query.domain.as_deref();
    let (tags, title) = match service::extras_of(&state, link.row.id).await {
        Ok(extras) => extras,
        Err(err) => return page::failure(&visitor, err),
    };
    let before = LinkView::new(&state, &link.row, link.clicks).with_extras(tags, title);
    let (change, mut errors) = form.change(&before);
    let refused = match parse_change(&state, change) {
        Ok(_) if !errors.is_empty() => None,
        Ok(change) => match service::change(&state, link, change).await {
            Ok(_) => return see_other(&path_of(&code, domain_name, &[("saved", "1")])),
            Err(err) => Some(err),
        },
        Err(err) => Some(err),
    };
    if let Some(err) = refused {
        match FormErrors::of_error(err, NAMES) {
            Ok(found) => errors.extend(found.grouped("rules")),
            Err(ApiError::NotFound) => return page::not_found_for(&visitor),
            Err(err) => return page::failure(&visitor, err),
        }
    }
    let href = |v: View| {
        let period = v.period.to_string();
        format!(
            "{}#stats",
            path_of(&code, domain_name, &[("period", period.as_str())])
        )
    };
    let stats = match stats_of(
        &state,
        &visitor,
        (&code, &domain),
        View::of(&StatsQuery::default()),
        &href,
    )
    .await
    {
        Ok(stats) => stats,
        Err(err) => return page::failure(&visitor, err),
    };
    let page = Page {
        view: &before,
        form: &form,
        errors: &errors,
        saved: false,
        stats,
    };
    render_page(
        &visitor,
        StatusCode::UNPROCESSABLE_ENTITY,
        &path_of(&code, domain_name, &[]),
        &page,
    )
}
