//! `/account/keys`: the visitor's API keys, through the API's services ([`keys::create_key`],
//! [`keys::revoke_key`]): made with a name and scopes and shown once, on the page that
//! answers the form; listed without their secret; revoked behind a confirmation. A key of
//! someone else is "not found", and stays as it is.

use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, Uri};
use axum::response::Response;
use basis_auth::role::Scope;
use basis_store::api_keys::{self, KeyRow};
use maud::{Markup, html};
use serde::Deserialize;

use super::account_page::{DoneQuery, done_notice};
use super::forms::{Field, FormErrors, sentence, token};
use super::session::{Posted, Visitor, csrf_forms};
use super::{page, paths, see_other, sign_in_first};
use crate::accounts::keys::{self, KeyView, NewKey};
use crate::clock::to_datetime;
use crate::error::ApiError;
use crate::http::extract::ClientIp;
use crate::state::AppState;

/// The scopes offered, with what each allows.
const SCOPES: [(Scope, &str); 3] = [
    (Scope::LinksRead, "Read your links and their statistics"),
    (Scope::LinksWrite, "Create, change and delete your links"),
    (Scope::ProfileRead, "Read your profile"),
];

/// The new-key form as sent (a checkbox per scope: forms repeat names, which this
/// decoder does not gather into a list).
#[derive(Debug, Default, Deserialize)]
pub struct KeyForm {
    /// The CSRF token.
    pub csrf: Option<String>,
    /// The key's label.
    #[serde(default)]
    pub name: String,
    /// `links:read`, when ticked.
    pub scope_links_read: Option<String>,
    /// `links:write`, when ticked.
    pub scope_links_write: Option<String>,
    /// `profile:read`, when ticked.
    pub scope_profile_read: Option<String>,
}

impl KeyForm {
    fn ticked(&self, scope: Scope) -> bool {
        match scope {
            Scope::LinksRead => self.scope_links_read.is_some(),
            Scope::LinksWrite => self.scope_links_write.is_some(),
            Scope::ProfileRead => self.scope_profile_read.is_some(),
        }
    }
}

/// The field name of a scope's checkbox.
fn field_of(scope: Scope) -> String {
    format!("scope_{}", scope.as_str().replace(':', "_"))
}

/// The revoke form as sent.
#[derive(Debug, Default, Deserialize)]
pub struct RevokeForm {
    /// The CSRF token.
    pub csrf: Option<String>,
}

csrf_forms!(KeyForm, RevokeForm);

fn list(rows: Vec<KeyRow>) -> Markup {
    let views: Vec<KeyView> = rows.into_iter().map(KeyView::from).collect();
    html! {
        @if views.is_empty() {
            p { "You have no API keys." }
        } @else {
            table {
                caption.skip { "Your API keys" }
                thead { tr { th scope="col" { "Name" } th scope="col" { "Starts with" } th scope="col" { "Scopes" } th scope="col" { "Created" } th scope="col" { span.skip { "Actions" } } } }
                tbody {
                    @for key in &views {
                        tr {
                            td { (key.name) }
                            td { code { (key.hint) "…" } }
                            td { (key.scopes.join(", ")) }
                            td { time datetime=(key.created_at.to_rfc3339()) { (key.created_at.format("%Y-%m-%d %H:%M UTC")) } }
                            td { a href=(format!("{}/{}/revoke", paths::ACCOUNT_KEYS, key.id)) { "Revoke" span.skip { " " (key.name) } } }
                        }
                    }
                }
            }
        }
    }
}

fn new_key_form(visitor: &Visitor, form: &KeyForm, errors: &FormErrors) -> Markup {
    let scope_problem = errors.get("scopes");
    html! {
        form.panel method="post" action=(paths::ACCOUNT_KEYS) novalidate {
            h2 { "Make a key" }
            (token(&visitor.csrf))
            @if let Some(problem) = errors.get("form") { div.problem role="alert" { p { (problem) } } }
            (Field::new("name", "Name", &form.name).required().hint("So you can tell your keys apart: 1 to 100 characters.").render(errors))
            fieldset aria-describedby=[scope_problem.map(|_| "f-scopes-error")] {
                legend { "What it may do" }
                @for (scope, label) in SCOPES {
                    @let field = field_of(scope);
                    div.check {
                        input type="checkbox" id=(format!("f-{field}")) name=(field) value="on" checked[form.ticked(scope)];
                        label for=(format!("f-{field}")) { (label) " " span.muted { "(" (scope.as_str()) ")" } }
                    }
                }
                @if let Some(problem) = scope_problem { p.error id="f-scopes-error" { (sentence("Scopes", problem)) } }
            }
            button type="submit" { "Make the key" }
        }
    }
}

async fn keys_page(
    state: &AppState,
    visitor: &Visitor,
    user_id: &str,
    status: StatusCode,
    form: &KeyForm,
    errors: &FormErrors,
    notice: Markup,
) -> Response {
    let rows = match api_keys::list_live(&state.store, user_id).await {
        Ok(rows) => rows,
        Err(err) => return page::failure(visitor, err.into()),
    };
    let main = html! {
        (notice)
        (errors.summary())
        section.panel aria-labelledby="yours" {
            h2 #yours { "Your keys" }
            p.muted { "A key acts for you in scripts and apps: send it as " code { "Authorization: Bearer …" } "." }
            (list(rows))
        }
        (new_key_form(visitor, form, errors))
        p { a href=(paths::ACCOUNT) { "Back to your account" } }
    };
    page::render(Some(visitor), status, "API keys", main)
}

/// `GET /account/keys`.
pub async fn show(
    State(state): State<AppState>,
    visitor: Visitor,
    uri: Uri,
    Query(query): Query<DoneQuery>,
) -> Response {
    let Some(user) = &visitor.user else {
        return sign_in_first(&uri);
    };
    keys_page(
        &state,
        &visitor,
        &user.user_id,
        StatusCode::OK,
        &KeyForm::default(),
        &FormErrors::none(),
        done_notice(&query),
    )
    .await
}

/// `POST /account/keys`: makes the key and shows it, once; a missing name or scope gets
/// the form again (422).
pub async fn create(
    State(state): State<AppState>,
    ip: ClientIp,
    uri: Uri,
    Posted { visitor, form }: Posted<KeyForm>,
) -> Response {
    let Some(user) = &visitor.user else {
        return sign_in_first(&uri);
    };
    let body = NewKey {
        name: form.name.clone(),
        scopes: SCOPES
            .iter()
            .filter(|(scope, _)| form.ticked(*scope))
            .map(|(scope, _)| scope.as_str().to_owned())
            .collect(),
    };
    let errors = match keys::create_key(&state, &ip, &user.user_id, body).await {
        Ok(created) => {
            let main = html! {
                div.panel {
                    p.notice role="status" { "Your key " strong { (created.view.name) } " is made. Copy it now: it is shown only this once." }
                    div.copy-row {
                        label for="new-key" { "The key" }
                        input #new-key type="text" readonly value=(created.key);
                        button.secondary type="button" data-copy=(created.key) data-status="copy-status" hidden { "Copy" }
                        span #copy-status.muted role="status" {}
                    }
                    p { a href=(paths::ACCOUNT_KEYS) { "Done: back to your keys" } }
                }
            };
            return page::render(
                Some(&visitor),
                StatusCode::CREATED,
                "Your new API key",
                main,
            );
        }
        Err(ApiError::Conflict(message)) => {
            let mut errors = FormErrors::none();
            errors.add("form", message);
            errors
        }
        Err(err) => match FormErrors::of_error(err, &[]) {
            Ok(errors) => errors,
            Err(err) => return page::failure(&visitor, err),
        },
    };
    keys_page(
        &state,
        &visitor,
        &user.user_id,
        StatusCode::UNPROCESSABLE_ENTITY,
        &form,
        &errors,
        html! {},
    )
    .await
}

/// `GET /account/keys/{id}/revoke`: asks first. Someone else's key is "not found".
pub async fn confirm_revoke(
    State(state): State<AppState>,
    visitor: Visitor,
    uri: Uri,
    Path(key_id): Path<String>,
) -> Response {
    let Some(user) = &visitor.user else {
        return sign_in_first(&uri);
    };
    let key = match api_keys::list_live(&state.store, &user.user_id).await {
        Ok(rows) => rows.into_iter().find(|row| row.id == key_id),
        Err(err) => return page::failure(&visitor, err.into()),
    };
    let Some(key) = key else {
        return page::not_found_for(&visitor);
    };
    let main = html! {
        div.panel {
            p { "Revoke the key " strong { (key.name) } " (starts with " code { (key.key_hint) } ", made " (to_datetime(key.created_at).format("%Y-%m-%d")) ")?" }
            p { "Anything that uses it is refused from now on. This cannot be undone." }
            form method="post" action=(uri.path()) {
                (token(&visitor.csrf))
                div.actions {
                    button.danger type="submit" { "Revoke" }
                    a.button.secondary href=(paths::ACCOUNT_KEYS) { "Cancel" }
                }
            }
        }
    };
    page::render(Some(&visitor), StatusCode::OK, "Revoke this key?", main)
}

/// `POST /account/keys/{id}/revoke`: revokes, then 303 to the list; 404 for a key that is
/// not the visitor's (or no longer live).
pub async fn revoke(
    State(state): State<AppState>,
    ip: ClientIp,
    uri: Uri,
    Path(key_id): Path<String>,
    Posted { visitor, .. }: Posted<RevokeForm>,
) -> Response {
    let Some(user) = &visitor.user else {
        return sign_in_first(&uri);
    };
    match keys::revoke_key(&state, &ip, &user.user_id, &key_id).await {
        Ok(()) => see_other(&format!("{}?done=revoked", paths::ACCOUNT_KEYS)),
        Err(ApiError::NotFound) => page::not_found_for(&visitor),
        Err(err) => page::failure(&visitor, err),
    }
}
