//! `/admin/audit-log`: the security audit log, newest first, in cursor pages
//! ([`crate::admin::audit_log::events`], as `GET /admin/audit`). Why the page is not at
//! `/admin/audit` itself: see [`super::admin`].

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use maud::html;
use serde::Deserialize;

use super::admin::{AdminVisitor, paths, section_nav};
use super::forms::{FormErrors, optional};
use super::page;
use crate::admin::audit_log::events;
use crate::state::AppState;

/// Events per page.
pub const PAGE_SIZE: i64 = 50;

/// The query of `/admin/audit-log`.
#[derive(Debug, Default, Deserialize)]
pub struct AuditQuery {
    /// Where the page starts.
    pub cursor: Option<String>,
}

/// `GET /admin/audit-log`.
pub async fn show(
    State(state): State<AppState>,
    AdminVisitor(visitor): AdminVisitor,
    query: Result<Query<AuditQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let Query(query) = query.unwrap_or_default();
    let (list, errors) = match events(&state, optional(&query.cursor), PAGE_SIZE).await {
        Ok(list) => (Some(list), FormErrors::none()),
        Err(err) => match FormErrors::of_error(err, &[]) {
            Ok(errors) => (None, errors),
            Err(err) => return page::failure(&visitor, err),
        },
    };
    let status = if list.is_some() {
        StatusCode::OK
    } else {
        StatusCode::UNPROCESSABLE_ENTITY
    };
    let main = html! {
        (section_nav(paths::AUDIT))
        @if let Some(problem) = errors.get("cursor") {
            div.problem role="alert" { p { "This page cannot be shown (" (problem) "). " a href=(paths::AUDIT) { "Start again" } } }
        }
        @if let Some(list) = &list {
            @if list.items.is_empty() {
                p.empty { "No event." }
            } @else {
                table {
                    caption.skip { "Audit events, newest first" }
                    thead { tr { th scope="col" { "When" } th scope="col" { "Event" } th scope="col" { "Account" } th scope="col" { "Address" } th scope="col" { "Detail" } } }
                    tbody {
                        @for e in &list.items {
                            tr {
                                td { time datetime=(e.at.to_rfc3339()) { (e.at.format("%Y-%m-%d %H:%M:%S")) } }
                                td { code { (e.kind) } }
                                td.url { (e.user_id.as_deref().unwrap_or("—")) }
                                td { (e.ip.as_deref().unwrap_or("—")) }
                                td.url { (e.detail.as_deref().unwrap_or("")) }
                            }
                        }
                    }
                }
            }
            @if let Some(next) = &list.next_cursor {
                nav.pager aria-label="Pages" {
                    a.button.secondary href=(format!("{}?cursor={}", paths::AUDIT, url::form_urlencoded::byte_serialize(next.as_bytes()).collect::<String>())) rel="next" { "Older events" }
                }
            }
        }
    };
    page::render(Some(&visitor), status, "Audit log", main)
}
