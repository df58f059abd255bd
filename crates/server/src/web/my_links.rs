//! `/my/links`: the signed-in person's links, newest first (or by clicks), searched, in
//! cursor pages (`GET /links`'s own listing); and deleting one, behind a confirmation page
//! (`GET /my/links/{code}/delete` asks, its form's POST deletes), so no script is needed to
//! ask "are you sure?".

use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, Uri};
use axum::response::Response;
use basis_auth::role::Scope;
use maud::{Markup, html};
use serde::Deserialize;

use super::forms::{FormErrors, optional, token};
use super::session::{Posted, Visitor, csrf_forms};
use super::{page, paths, see_other, sign_in_first};
use crate::error::ApiError;
use crate::links::LinkView;
use crate::links::domains::LinkDomain;
use crate::links::list::{LinkListParams, page_of};
use crate::links::service;
use crate::state::AppState;

/// Links per page.
const PAGE_SIZE: &str = "20";

/// The query of `/my/links`.
#[derive(Debug, Default, Deserialize)]
pub struct ListQuery {
    /// Search text (in the URL or alias, or a whole code).
    pub q: Option<String>,
    /// `-created` (default), `created`, `-clicks` or `clicks`.
    pub sort: Option<String>,
    /// Where the page starts.
    pub cursor: Option<String>,
    /// Only links with this tag.
    pub tag: Option<String>,
    /// The code of a link just deleted, to say so.
    pub deleted: Option<String>,
    /// How many links were just deleted together, to say so.
    pub removed: Option<String>,
}

const SORTS: [(&str, &str); 4] = [
    ("-created", "Newest first"),
    ("created", "Oldest first"),
    ("-clicks", "Most clicked"),
    ("clicks", "Least clicked"),
];

fn search_form(query: &ListQuery, errors: &FormErrors) -> Markup {
    let sort = query.sort.as_deref().unwrap_or("-created");
    html! {
        form.search method="get" action=(paths::MY_LINKS) role="search" {
            (super::forms::Field::new("q", "Search", query.q.as_deref().unwrap_or_default()).kind("search").render(errors))
            (super::forms::Field::new("tag", "Tag", query.tag.as_deref().unwrap_or_default()).render(errors))
            div.field {
                label for="f-sort" { "Order" }
                select #f-sort name="sort" {
                    @for (value, label) in SORTS {
                        option value=(value) selected[value == sort] { (label) }
                    }
                }
            }
            button.secondary type="submit" { "Show" }
        }
    }
}

/// The value of a link's checkbox: its code and domain (`@` is in neither a code nor a
/// domain name).
pub fn selection_of(link: &LinkView) -> String {
    format!("{}@{}", link.short_code, link.domain)
}

fn table(links: &[LinkView]) -> Markup {
    html! {
        form method="get" action=(paths::DELETE_LINKS) {
        table {
            caption.skip { "Your links" }
            thead { tr { th scope="col" { span.skip { "Select" } } th scope="col" { "Short link" } th scope="col" { "Goes to" } th scope="col" { "Clicks" } th scope="col" { "Created" } th scope="col" { span.skip { "Actions" } } } }
            tbody {
                @for link in links {
                    tr {
                        td.select {
                            input type="checkbox" name="link" value=(selection_of(link)) id=(format!("select-{}", link.short_code))
                                aria-label=(format!("Select {}", link.short_code));
                        }
                        td data-label="Short link" {
                            a href=(super::link_page::path_of(&link.short_code, Some(&link.domain), &[])) { (link.short_url) }
                        }
                        td.url data-label="Goes to" {
                            (link.long_url)
                            @if link.password_protected { " " span.muted { "(password)" } }
                            @if !link.tags.is_empty() {
                                span.tags { @for tag in &link.tags { " " span.tag { (tag) } } }
                            }
                        }
                        td data-label="Clicks" { (link.click_count) @if let Some(max) = link.max_clicks { " / " (max) } }
                        td data-label="Created" { time datetime=(link.created_at.to_rfc3339()) { (link.created_at.format("%Y-%m-%d")) } }
                        td {
                            div.actions {
                                a href=(format!("/{}/qr.png", link.short_code)) download=(format!("{}.png", link.short_code)) { "QR" span.skip { " for " (link.short_code) } }
                                a href=(delete_path(link)) { "Delete" span.skip { " " (link.short_code) } }
                            }
                        }
                    }
                }
            }
        }
        div.actions.bulk { button.secondary type="submit" { "Delete selected" } }
        }
    }
}

fn delete_path(link: &LinkView) -> String {
    let query = url::form_urlencoded::Serializer::new(String::new())
        .append_pair("domain", &link.domain)
        .finish();
    format!("/my/links/{}/delete?{query}", link.short_code)
}

/// `GET /my/links`.
pub async fn list(
    State(state): State<AppState>,
    visitor: Visitor,
    uri: Uri,
    query: Result<Query<ListQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let Some(user) = &visitor.user else {
        return sign_in_first(&uri);
    };
    let Query(query) = query.unwrap_or_default();
    let params = LinkListParams {
        q: optional(&query.q).map(str::to_owned),
        sort: optional(&query.sort).map(str::to_owned),
        cursor: optional(&query.cursor).map(str::to_owned),
        tag: optional(&query.tag).map(str::to_owned),
        limit: Some(PAGE_SIZE.to_owned()),
        ..LinkListParams::default()
    };
    let (links, next, errors) = match page_of(&state, user.user_id.clone(), &params).await {
        Ok(page) => (page.items, page.next_cursor, FormErrors::none()),
        Err(err) => match FormErrors::of_error(err, &[]) {
            Ok(errors) => (Vec::new(), None, errors),
            Err(err) => return page::failure(&visitor, err),
        },
    };
    let next = next.map(|cursor| {
        let mut pairs = url::form_urlencoded::Serializer::new(String::new());
        for (name, value) in [
            ("q", &params.q),
            ("tag", &params.tag),
            ("sort", &params.sort),
        ] {
            if let Some(value) = value {
                pairs.append_pair(name, value);
            }
        }
        pairs.append_pair("cursor", &cursor);
        format!("{}?{}", paths::MY_LINKS, pairs.finish())
    });
    let status = if errors.is_empty() {
        StatusCode::OK
    } else {
        StatusCode::UNPROCESSABLE_ENTITY
    };
    let main = html! {
        @if let Some(code) = optional(&query.deleted) {
            p.notice role="status" { "Deleted " (code) "." }
        }
        @if let Some(n) = optional(&query.removed).and_then(|n| n.parse::<u32>().ok()) {
            p.notice role="status" { "Deleted " (n) @if n == 1 { " link." } @else { " links." } }
        }
        @if let Some(problem) = errors.get("cursor").or(errors.get("sort")).or(errors.get("tag")) {
            div.problem role="alert" { p { "This page of links cannot be shown (" (problem) "). " a href=(paths::MY_LINKS) { "Start again" } } }
        }
        (search_form(&query, &errors))
        @if links.is_empty() {
            div.panel {
                @if params.q.is_some() || params.tag.is_some() { p { "No link matches." } }
                @else { p { "You have no links yet. " a href="/" { "Shorten one" } "." } }
            }
        } @else {
            (table(&links))
        }
        @if let Some(next) = next {
            nav.pager aria-label="Pages" { a.button.secondary href=(next) rel="next" { "Next page" } }
        }
    };
    page::render(Some(&visitor), status, "My links", main)
}

/// `?domain=` of the delete pages: which link of that code.
#[derive(Debug, Default, Deserialize)]
pub struct DomainQuery {
    /// The link's domain.
    pub domain: Option<String>,
}

/// The link domain a page's `domain` parameter names (blank: the default one), or `None`
/// for a name this server does not serve.
pub(super) fn domain_of(state: &AppState, domain: &Option<String>) -> Option<LinkDomain> {
    match optional(domain) {
        None => Some(LinkDomain::default()),
        Some(name) => state.domains.parse(name).ok().map(LinkDomain::named),
    }
}

/// `GET /my/links/{code}/delete`: asks before deleting.
pub async fn confirm_delete(
    State(state): State<AppState>,
    visitor: Visitor,
    uri: Uri,
    Path(code): Path<String>,
    Query(query): Query<DomainQuery>,
) -> Response {
    if visitor.user.is_none() {
        return sign_in_first(&uri);
    }
    let Some(domain) = domain_of(&state, &query.domain) else {
        return page::not_found_for(&visitor);
    };
    let caller = visitor.caller();
    let link = match service::managed(&state, &caller, (&code, &domain), Scope::LinksWrite).await {
        Ok(link) => link,
        // Someone else's link is as good as missing.
        Err(ApiError::NotFound | ApiError::Forbidden(_) | ApiError::Unauthorized { .. }) => {
            return page::not_found_for(&visitor);
        }
        Err(err) => return page::failure(&visitor, err),
    };
    let view = LinkView::new(&state, &link.row, link.clicks);
    let main = html! {
        div.panel {
            p { "Delete " strong { (view.short_url) } "? It goes to " span.url { (view.long_url) } "." }
            p { "Anyone who follows it afterwards gets “not found”. Its statistics are deleted with it. This cannot be undone." }
            form method="post" action=(uri.path_and_query().map_or(uri.path(), |p| p.as_str())) {
                (token(&visitor.csrf))
                div.actions {
                    button.danger type="submit" { "Delete" }
                    a.button.secondary href=(paths::MY_LINKS) { "Cancel" }
                }
            }
        }
    };
    page::render(Some(&visitor), StatusCode::OK, "Delete this link?", main)
}

csrf_forms!(DeleteForm);

/// The delete form as sent.
#[derive(Debug, Default, Deserialize)]
pub struct DeleteForm {
    /// The CSRF token.
    pub csrf: Option<String>,
}

/// `POST /my/links/{code}/delete`: deletes, then 303 to the list.
pub async fn delete(
    State(state): State<AppState>,
    uri: Uri,
    Path(code): Path<String>,
    Query(query): Query<DomainQuery>,
    Posted { visitor, .. }: Posted<DeleteForm>,
) -> Response {
    if visitor.user.is_none() {
        return sign_in_first(&uri);
    }
    let Some(domain) = domain_of(&state, &query.domain) else {
        return page::not_found_for(&visitor);
    };
    match service::remove(&state, &visitor.caller(), (&code, &domain)).await {
        Ok(()) => {
            let query = url::form_urlencoded::Serializer::new(String::new())
                .append_pair("deleted", &code)
                .finish();
            see_other(&format!("{}?{query}", paths::MY_LINKS))
        }
        Err(ApiError::NotFound | ApiError::Forbidden(_) | ApiError::Unauthorized { .. }) => {
            page::not_found_for(&visitor)
        }
        Err(err) => page::failure(&visitor, err),
    }
}
