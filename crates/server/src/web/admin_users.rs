//! `/admin/users`: accounts with their roles, searched by name or email, in cursor pages
//! ([`users::list_page`], as `GET /users`); and changing a role
//! (`POST /admin/users/{id}/role`, then 303 back) through [`users::apply_change`], the
//! rule of `PATCH /users/{id}`, which also refuses older tokens and writes the audit log.

use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, Uri};
use axum::response::Response;
use basis_auth::role::Role;
use basis_store::users::UserRow;
use maud::{Markup, html};
use serde::Deserialize;

use super::admin::{AdminVisitor, paths, require_admin, section_nav, when};
use super::forms::{Field, FormErrors, optional, token};
use super::session::{Posted, csrf_forms};
use super::{page, see_other};
use crate::accounts::users::{self, ChangeUser};
use crate::error::ApiError;
use crate::http::extract::ClientIp;
use crate::state::AppState;

/// Accounts per page.
pub const PAGE_SIZE: i64 = 50;

const ROLES: [Role; 3] = [Role::User, Role::Moderator, Role::Admin];

/// The query of `/admin/users`.
#[derive(Debug, Default, Deserialize)]
pub struct UsersQuery {
    /// Text in the name or email.
    pub q: Option<String>,
    /// Where the page starts.
    pub cursor: Option<String>,
    /// The account whose role was just changed, to say so.
    pub changed: Option<String>,
}

/// The role form as sent.
#[derive(Debug, Default, Deserialize)]
pub struct RoleForm {
    /// The CSRF token.
    pub csrf: Option<String>,
    /// The new role.
    #[serde(default)]
    pub role: String,
    /// The search to go back to.
    pub q: Option<String>,
}

csrf_forms!(RoleForm);

fn list_path(q: Option<&str>, cursor: Option<&str>, changed: Option<&str>) -> String {
    let mut pairs = url::form_urlencoded::Serializer::new(String::new());
    for (name, value) in [("q", q), ("cursor", cursor), ("changed", changed)] {
        if let Some(value) = value {
            pairs.append_pair(name, value);
        }
    }
    let query = pairs.finish();
    if query.is_empty() {
        paths::USERS.to_owned()
    } else {
        format!("{}?{query}", paths::USERS)
    }
}

fn role_form(user: &UserRow, csrf: &str, q: Option<&str>) -> Markup {
    let select_id = format!("role-{}", user.id);
    html! {
        form.actions method="post" action=(format!("{}/{}/role", paths::USERS, user.id)) {
            (token(csrf))
            @if let Some(q) = q { input type="hidden" name="q" value=(q); }
            label.skip for=(select_id) { "Role of " (user.name) }
            select id=(select_id) name="role" {
                @for role in ROLES {
                    option value=(role.as_str()) selected[role.as_str() == user.role] { (role.as_str()) }
                }
            }
            button.secondary type="submit" { "Change" span.skip { " the role of " (user.name) } }
        }
    }
}

/// `GET /admin/users`.
pub async fn list(
    State(state): State<AppState>,
    AdminVisitor(visitor): AdminVisitor,
    query: Result<Query<UsersQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let Query(query) = query.unwrap_or_default();
    let q = optional(&query.q);
    let cursor = optional(&query.cursor);
    let (rows, next, errors) = match users::list_page(&state, q, cursor, PAGE_SIZE).await {
        Ok((rows, next)) => (rows, next, FormErrors::none()),
        Err(err) => match FormErrors::of_error(err, &[]) {
            Ok(errors) => (Vec::new(), None, errors),
            Err(err) => return page::failure(&visitor, err),
        },
    };
    let status = if errors.is_empty() {
        StatusCode::OK
    } else {
        StatusCode::UNPROCESSABLE_ENTITY
    };
    let changed = optional(&query.changed);
    let changed_row = changed.and_then(|id| rows.iter().find(|u| u.id == id));
    let main = html! {
        (section_nav(paths::USERS))
        @if let Some(user) = changed_row {
            p.notice role="status" { "The role of " (user.name) " is now " (user.role) "." }
        } @else if changed.is_some() {
            p.notice role="status" { "The role was changed." }
        }
        @if let Some(problem) = errors.get("cursor") {
            div.problem role="alert" { p { "This page cannot be shown (" (problem) "). " a href=(paths::USERS) { "Start again" } } }
        }
        form.search method="get" action=(paths::USERS) role="search" {
            (Field::new("q", "Name or email contains", q.unwrap_or_default()).kind("search").render(&errors))
            button.secondary type="submit" { "Search" }
        }
        @if rows.is_empty() {
            p.empty { @if q.is_some() { "No account matches." } @else { "No account." } }
        } @else {
            table {
                caption.skip { "Accounts" }
                thead { tr { th scope="col" { "Name" } th scope="col" { "Email" } th scope="col" { "Joined" } th scope="col" { "Role" } } }
                tbody {
                    @for user in &rows {
                        tr {
                            th scope="row" { (user.name) }
                            td.url { (user.email) }
                            td { (when(user.created_at)) }
                            td { (role_form(user, &visitor.csrf, q)) }
                        }
                    }
                }
            }
        }
        @if let Some(next) = next {
            nav.pager aria-label="Pages" { a.button.secondary href=(list_path(q, Some(&next), None)) rel="next" { "Next page" } }
        }
    };
    page::render(Some(&visitor), status, "Users", main)
}

/// `POST /admin/users/{id}/role`: changes the role, then 303 back to the list.
pub async fn change_role(
    State(state): State<AppState>,
    uri: Uri,
    ip: ClientIp,
    Path(id): Path<String>,
    Posted { visitor, form }: Posted<RoleForm>,
) -> Response {
    if let Err(answer) = require_admin(&visitor, &uri) {
        return answer;
    }
    let caller = visitor.caller();
    let principal = match caller.act_for(&id) {
        Ok(principal) => principal,
        Err(_) => return page::not_found_for(&visitor),
    };
    let change = ChangeUser {
        name: None,
        email: None,
        settings: None,
        role: Some(form.role),
    };
    match users::apply_change(&state, principal, &id, &change, &ip).await {
        Ok(_) => see_other(&list_path(optional(&form.q), None, Some(&id))),
        Err(ApiError::NotFound) => page::not_found_for(&visitor),
        Err(ApiError::Invalid(_)) => page::message(
            Some(&visitor),
            StatusCode::UNPROCESSABLE_ENTITY,
            "No such role",
            "Choose user, moderator or admin from the list.",
        ),
        Err(err) => page::failure(&visitor, err),
    }
}
