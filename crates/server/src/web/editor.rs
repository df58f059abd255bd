//! The post editor: `/blog/new` and `/blog/{id}/edit` (title, Markdown body, category, tags,
//! draft or published). **Preview** posts the form and shows it again with the body
//! rendered below it, by the same renderer and checks the API uses, so no script is
//! needed; **Save** stores it and answers 303 to the post.
//!
//! Who may write is the API's rule: any signed-in account may write a post
//! ([`create_post`]); a post may be changed by its author and by admins ([`changeable`]:
//! someone else's draft is a 404, someone else's published post a 403). The form carries
//! the version of the post it was opened on, and saving is a compare-and-set on that
//! version ([`replace_post`]), so an edit made meanwhile (another tab, an admin) is never
//! silently overwritten: the form comes back (409) with the text kept and a message.

use axum::extract::{Path, State};
use axum::http::{StatusCode, Uri};
use axum::response::Response;
use basis_store::posts::PostRow;
use maud::{Markup, PreEscaped, html};
use serde::Deserialize;

use super::blog::post_path;
use super::forms::{Field, FormErrors, optional, sentence, token};
use super::session::{Posted, Visitor, csrf_forms};
use super::{page, paths, see_other, sign_in_first};
use crate::blog::posts::api::{changeable, create_post, replace_post};
use crate::blog::posts::input::PostInput;
use crate::error::{ApiError, FieldError};
use crate::http::rest::parse_id;
use crate::state::AppState;

csrf_forms!(EditorForm);

/// The editor as sent (every field text, so that any input is shown back).
#[derive(Debug, Default, Deserialize)]
pub struct EditorForm {
    /// The CSRF token.
    pub csrf: Option<String>,
    /// The title.
    #[serde(default)]
    pub title: String,
    /// The Markdown body.
    #[serde(default)]
    pub body: String,
    /// The category.
    pub category: Option<String>,
    /// Tags, separated by commas or spaces.
    pub tags: Option<String>,
    /// `draft` or `published`.
    pub status: Option<String>,
    /// The version of the post the editor was opened on (editing only).
    pub version: Option<String>,
    /// `preview` or `save` (the button pressed).
    pub action: Option<String>,
}

impl EditorForm {
    fn of(row: &PostRow) -> Self {
        Self {
            title: row.title.clone(),
            body: row.body.clone(),
            category: row.category.clone(),
            tags: Some(row.tags.join(", ")),
            status: Some(row.status.clone()),
            version: Some(row.version.to_string()),
            ..Self::default()
        }
    }

    fn previewing(&self) -> bool {
        self.action.as_deref() == Some("preview")
    }

    /// The API's input for this form.
    fn input(&self) -> PostInput {
        let tags = self
            .tags
            .as_deref()
            .unwrap_or_default()
            .split(|c: char| c == ',' || c.is_whitespace())
            .filter(|t| !t.is_empty())
            .map(str::to_owned)
            .collect();
        PostInput {
            title: self.title.clone(),
            body: self.body.clone(),
            category: optional(&self.category).map(str::to_owned),
            tags,
            status: Some(optional(&self.status).unwrap_or("draft").to_owned()),
        }
    }
}

/// The API's field problems as the form names its fields (`tags[3]` is the tags field).
fn problems(errors: Vec<FieldError>) -> FormErrors {
    let mut found = FormErrors::none();
    for FieldError { field, message } in errors {
        let name = if field.starts_with("tags") {
            "tags"
        } else {
            field.as_str()
        };
        found.add(name, message);
    }
    found
}

/// What the editor shows besides the form.
enum Shown {
    /// Nothing.
    Form,
    /// The rendered preview (sanitised HTML) of a valid form.
    Preview { title: String, html: String },
    /// The refusal of a save over a newer version.
    Stale { current: String },
}

fn textarea(name: &str, label: &str, hint: &str, value: &str, errors: &FormErrors) -> Markup {
    let id = format!("f-{name}");
    let hint_id = format!("{id}-hint");
    let error_id = format!("{id}-error");
    let error = errors.get(name);
    let described = match error {
        Some(_) => format!("{hint_id} {error_id}"),
        None => hint_id.clone(),
    };
    html! {
        div.field {
            label for=(id) { (label) }
            p.hint id=(hint_id) { (hint) }
            textarea id=(id) name=(name) rows="16" required
                aria-invalid=[error.map(|_| "true")] aria-describedby=(described) { (value) }
            @if let Some(error) = error { p.error id=(error_id) { (sentence(label, error)) } }
        }
    }
}

fn editor(
    visitor: &Visitor,
    action: &str,
    form: &EditorForm,
    errors: &FormErrors,
    shown: &Shown,
) -> Markup {
    let status = optional(&form.status).unwrap_or("draft");
    let status_error = errors.get("status");
    html! {
        @match shown {
            Shown::Stale { current } => {
                div.problem role="alert" {
                    p { "This post was changed after you opened the editor, so your version was not saved. Your text is kept below." }
                    p { "Open " a href=(current) { "the saved post" } " in another tab, copy what you need into this form's text, then reload the editor to edit the saved version." }
                }
            }
            _ => { (errors.summary()) }
        }
        form.panel.editor method="post" action=(action) novalidate {
            (token(&visitor.csrf))
            @if let Some(version) = optional(&form.version) { input type="hidden" name="version" value=(version); }
            (Field::new("title", "Title", &form.title).required().hint("Plain text, up to 200 characters.").render(errors))
            (textarea("body", "Body", "Markdown: **bold**, *italic*, [links](https://example.com), lists, code. Raw HTML and scripts are removed.", &form.body, errors))
            div.grid {
                (Field::new("category", "Category", form.category.as_deref().unwrap_or_default())
                    .hint("Optional: one word (letters, digits, -).").render(errors))
                (Field::new("tags", "Tags", form.tags.as_deref().unwrap_or_default())
                    .hint(TAGS_HINT).render(errors))
            }
            fieldset.field aria-describedby=[status_error.map(|_| "f-status-error")] {
                legend { "Visibility" }
                label.choice { input type="radio" name="status" value="draft" checked[status != "published"]; " Draft: only you can see it" }
                label.choice { input type="radio" name="status" value="published" checked[status == "published"]; " Published: everyone can read it" }
                @if let Some(error) = status_error { p.error #f-status-error { (sentence("Visibility", error)) } }
            }
            div.actions {
                button.secondary type="submit" name="action" value="preview" { "Preview" }
                button type="submit" name="action" value="save" { "Save" }
            }
        }
        @if let Shown::Preview { title, html } = shown {
            section.panel.preview aria-labelledby="preview-heading" {
                h2 #preview-heading { "Preview" }
                p.hint { "Not saved yet: this is how the post will look." }
                h3 { (title) }
                div.post-body { (PreEscaped(html)) }
            }
        }
    }
}

const TAGS_HINT: &str = "Optional: up to 10, separated by commas; letters, digits and -.";

fn editor_page(
    visitor: &Visitor,
    status: StatusCode,
    title: &str,
    action: &str,
    form: &EditorForm,
    errors: &FormErrors,
    shown: &Shown,
) -> Response {
    page::render(
        Some(visitor),
        status,
        title,
        editor(visitor, action, form, errors, shown),
    )
}

/// Previews `form`: the form again with the rendered body (200), or with its problems
/// (422), exactly as saving would find them.
fn preview(visitor: &Visitor, title: &str, action: &str, form: &EditorForm) -> Response {
    match form.input().into_fields() {
        Ok(fields) => editor_page(
            visitor,
            StatusCode::OK,
            title,
            action,
            form,
            &FormErrors::none(),
            &Shown::Preview {
                title: fields.title,
                html: fields.body_html,
            },
        ),
        Err(err) => refused(visitor, title, action, form, err),
    }
}

/// The form again with the problems of `err` (422), or the failure page.
fn refused(
    visitor: &Visitor,
    title: &str,
    action: &str,
    form: &EditorForm,
    err: ApiError,
) -> Response {
    match err {
        ApiError::Invalid(errors) | ApiError::UnprocessableFields(errors) => {
            let errors = problems(errors);
            editor_page(
                visitor,
                StatusCode::UNPROCESSABLE_ENTITY,
                title,
                action,
                form,
                &errors,
                &Shown::Form,
            )
        }
        err => page::failure(visitor, err),
    }
}

/// `GET /blog/new`.
pub async fn new_form(visitor: Visitor, uri: Uri) -> Response {
    if visitor.user.is_none() {
        return sign_in_first(&uri);
    }
    let form = EditorForm::default();
    editor_page(
        &visitor,
        StatusCode::OK,
        "Write a post",
        paths::BLOG_NEW,
        &form,
        &FormErrors::none(),
        &Shown::Form,
    )
}

/// `POST /blog/new`: previews, or creates the post and 303 to it.
pub async fn create(
    State(state): State<AppState>,
    uri: Uri,
    Posted { visitor, form }: Posted<EditorForm>,
) -> Response {
    let Some(user) = &visitor.user else {
        return sign_in_first(&uri);
    };
    let title = "Write a post";
    if form.previewing() {
        return preview(&visitor, title, paths::BLOG_NEW, &form);
    }
    match create_post(&state, &user.user_id, form.input()).await {
        Ok(id) => see_other(&post_path(id)),
        Err(err) => refused(&visitor, title, paths::BLOG_NEW, &form, err),
    }
}

/// The post `id` if `visitor` may change it, else the answer to give.
async fn own_post(
    state: &AppState,
    visitor: &Visitor,
    uri: &Uri,
    id: &str,
) -> Result<PostRow, Response> {
    let found = match parse_id(id) {
        Ok(id) => changeable(state, &visitor.caller(), id).await,
        Err(err) => Err(err),
    };
    found.map_err(|err| match err {
        ApiError::NotFound => page::not_found_for(visitor),
        ApiError::Unauthorized { .. } => sign_in_first(uri),
        ApiError::Forbidden(_) => page::message(
            Some(visitor),
            StatusCode::FORBIDDEN,
            "You may not edit this post",
            "Only its author and the administrators may change a post.",
        ),
        err => page::failure(visitor, err),
    })
}

/// `GET /blog/{id}/edit`.
pub async fn edit_form(
    State(state): State<AppState>,
    visitor: Visitor,
    uri: Uri,
    Path(id): Path<String>,
) -> Response {
    if visitor.user.is_none() {
        return sign_in_first(&uri);
    }
    let row = match own_post(&state, &visitor, &uri, &id).await {
        Ok(row) => row,
        Err(response) => return response,
    };
    let action = format!("{}/edit", post_path(row.id));
    editor_page(
        &visitor,
        StatusCode::OK,
        "Edit the post",
        &action,
        &EditorForm::of(&row),
        &FormErrors::none(),
        &Shown::Form,
    )
}

/// `POST /blog/{id}/edit`: previews, or saves over the version the editor was opened on
/// and 303 to the post; a newer version is never overwritten (409, the text kept).
pub async fn update(
    State(state): State<AppState>,
    uri: Uri,
    Path(id): Path<String>,
    Posted { visitor, form }: Posted<EditorForm>,
) -> Response {
    if visitor.user.is_none() {
        return sign_in_first(&uri);
    }
    let row = match own_post(&state, &visitor, &uri, &id).await {
        Ok(row) => row,
        Err(response) => return response,
    };
    let title = "Edit the post";
    let action = format!("{}/edit", post_path(row.id));
    if form.previewing() {
        return preview(&visitor, title, &action, &form);
    }
    let stale = || {
        editor_page(
            &visitor,
            StatusCode::CONFLICT,
            title,
            &action,
            &form,
            &FormErrors::none(),
            &Shown::Stale {
                current: post_path(row.id),
            },
        )
    };
    // A form without a readable version cannot show which version it edits: refuse it too.
    let Some(version) = optional(&form.version).and_then(|v| v.parse::<i64>().ok()) else {
        return stale();
    };
    if version != row.version {
        return stale();
    }
    match replace_post(&state, row.id, version, form.input()).await {
        Ok(true) => see_other(&post_path(row.id)),
        Ok(false) => stale(),
        Err(err) => refused(&visitor, title, &action, &form, err),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_are_split_on_commas_and_spaces() {
        let form = EditorForm {
            tags: Some(" rust, web  http,,".into()),
            ..EditorForm::default()
        };
        assert_eq!(form.input().tags, ["rust", "web", "http"]);
        assert_eq!(form.input().status.as_deref(), Some("draft"));
    }

    #[test]
    fn every_tag_problem_lands_on_the_tags_field() {
        let errors = problems(vec![
            FieldError::new("tags[2]", "may hold only letters, digits and '-'"),
            FieldError::new("title", "must be 1 to 200 characters"),
        ]);
        assert!(errors.get("tags").is_some());
        assert!(errors.get("title").is_some());
    }
}
