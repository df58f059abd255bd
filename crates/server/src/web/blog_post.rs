//! `/blog/{id}`: one post with its comments, a comment form for signed-in people, a delete
//! button on each comment for those the API lets delete it (its author, moderators and
//! admins), and deleting the post itself behind a confirmation page (its author, moderators
//! and admins: `GET /blog/{id}/delete` asks, its form's POST deletes).
//!
//! Everything goes through the blog API's own rules: a post through [`visible_post`] (a
//! draft is a 404 for everyone but its author and admins), comments through
//! [`add_comment`] and [`deletable`], the post's deletion through [`deletable_post`].
//!
//! A post's body is the HTML the API rendered from its Markdown and sanitised when it was
//! written; it is put through the same sanitiser again here before it is spliced into the
//! page, so a row that reached the database some other way (a restore, a migration) cannot
//! bring a script with it. Every other value, comments included, is text that maud escapes.
//!
//! [`visible_post`]: crate::blog::posts::api::visible_post
//! [`add_comment`]: crate::blog::comments::api::add_comment
//! [`deletable`]: crate::blog::comments::api::deletable
//! [`deletable_post`]: crate::blog::posts::api::deletable_post

use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, Uri};
use axum::response::Response;
use basis_store::comments::CommentRow;
use basis_store::posts::PostRow;
use maud::{Markup, PreEscaped, html};
use serde::Deserialize;

use super::blog::{author_link, date, post_path, tags};
use super::forms::{FormErrors, optional, sentence, token};
use super::session::{Posted, Visitor, csrf_forms};
use super::{page, paths, see_other, sign_in_first};
use crate::blog::comments::api::{add_comment, comments_page, deletable, may_delete};
use crate::blog::comments::{CommentInput, MAX_COMMENT_CHARS};
use crate::blog::posts::api::{deletable_post, may_delete_post, visible_post};
use crate::blog::posts::list::PageParams;
use crate::error::ApiError;
use crate::http::rest::parse_id;
use crate::state::AppState;

/// Comments per page of a post.
const COMMENTS_PER_PAGE: &str = "50";

/// The query of `/blog/{id}`.
#[derive(Debug, Default, Deserialize)]
pub struct PostQuery {
    /// Where the page of comments starts.
    pub comments: Option<String>,
    /// Set after a comment was deleted, to say so.
    pub deleted: Option<String>,
}

csrf_forms!(CommentForm, DeleteCommentForm, DeletePostForm);

/// The comment form as sent.
#[derive(Debug, Default, Deserialize)]
pub struct CommentForm {
    /// The CSRF token.
    pub csrf: Option<String>,
    /// The comment's text.
    #[serde(default)]
    pub body: String,
}

/// The delete button's form.
#[derive(Debug, Default, Deserialize)]
pub struct DeleteCommentForm {
    /// The CSRF token.
    pub csrf: Option<String>,
}

fn comment(visitor: &Visitor, post: &PostRow, comment: &CommentRow) -> Markup {
    let caller = visitor.caller();
    html! {
        li.comment id=(format!("comment-{}", comment.id)) {
            p.meta { strong { (comment.author_name) } " · " (date(comment.created_at)) }
            p.comment-body { (comment.body) }
            @if may_delete(&caller, &comment.author_id) {
                form.inline method="post" action=(format!("{}/comments/{}/delete", post_path(post.id), comment.id)) {
                    (token(&visitor.csrf))
                    button.link type="submit" { "Delete comment" span.skip { " by " (comment.author_name) } }
                }
            }
        }
    }
}

fn comment_form(visitor: &Visitor, post: &PostRow, text: &str, errors: &FormErrors) -> Markup {
    let error = errors.get("body");
    html! {
        @if visitor.user.is_some() {
            form.panel #comment-form method="post" action=(format!("{}/comments", post_path(post.id))) novalidate {
                (token(&visitor.csrf))
                div.field {
                    label for="f-body" { "Your comment" }
                    p.hint #f-body-hint { "Plain text, up to " (MAX_COMMENT_CHARS) " characters." }
                    textarea #f-body name="body" rows="5" required
                        aria-invalid=[error.map(|_| "true")]
                        aria-describedby=(if error.is_some() { "f-body-hint f-body-error" } else { "f-body-hint" }) { (text) }
                    @if let Some(error) = error { p.error #f-body-error { (sentence("Your comment", error)) } }
                }
                button type="submit" { "Post comment" }
            }
        } @else {
            @let next = url::form_urlencoded::Serializer::new(String::new()).append_pair("next", &post_path(post.id)).finish();
            p { a href=(format!("{}?{next}", paths::SIGN_IN)) { "Sign in" } " to comment." }
        }
    }
}

/// The whole page of a post: the post, a page of its comments and the comment form.
async fn post_page(
    state: &AppState,
    visitor: &Visitor,
    post: &PostRow,
    query: &PostQuery,
    form: (&str, &FormErrors),
    status: StatusCode,
) -> Response {
    let params = PageParams {
        limit: Some(COMMENTS_PER_PAGE.to_owned()),
        cursor: optional(&query.comments).map(str::to_owned),
    };
    let (rows, next) = match comments_page(state, post.id, &params).await {
        Ok(found) => found,
        Err(ApiError::Invalid(_)) => return page::not_found_for(visitor),
        Err(err) => return page::failure(visitor, err),
    };
    let caller = visitor.caller();
    let may_edit = caller.act_for(&post.author_id).is_ok();
    let may_delete = may_delete_post(&caller, &post.author_id);
    // Cleaned again as shown: posts stored before a rule changed follow it too.
    let body = crate::blog::posts::input::clean(&post.body_html);
    let main = html! {
        @if post.status == "draft" {
            p.notice role="status" { "This is a draft: only you and the administrators can see it." }
        }
        p.meta {
            "By " a href=(author_link(&post.author_id)) { (post.author_name) }
            " · " (date(post.created_at))
            @if post.updated_at > post.created_at { " · updated " (date(post.updated_at)) }
        }
        (tags(&post.tags))
        @if may_edit || may_delete {
            p.actions {
                @if may_edit { a.button.secondary href=(format!("{}/edit", post_path(post.id))) { "Edit" span.skip { " “" (post.title) "”" } } }
                @if may_delete { a.button.secondary href=(format!("{}/delete", post_path(post.id))) { "Delete" span.skip { " “" (post.title) "”" } } }
            }
        }
        article.post-body { (PreEscaped(body)) }
        section #comments aria-labelledby="comments-heading" {
            h2 #comments-heading { "Comments (" (post.comment_count) ")" }
            @if optional(&query.deleted).is_some() { p.notice role="status" { "The comment was deleted." } }
            @if rows.is_empty() { p.muted { "No comments yet." } }
            @else {
                ol.comments { @for row in &rows { (comment(visitor, post, row)) } }
            }
            @if let Some(next) = next {
                @let query = url::form_urlencoded::Serializer::new(String::new()).append_pair("comments", &next).finish();
                nav.pager aria-label="Comment pages" { a.button.secondary href=(format!("{}?{query}#comments", post_path(post.id))) rel="next" { "Later comments" } }
            }
            @if optional(&query.comments).is_some() {
                p { a href=(format!("{}#comments", post_path(post.id))) { "First comments" } }
            }
            h2 { "Add a comment" }
            @if !form.1.is_empty() { (form.1.summary()) }
            (comment_form(visitor, post, form.0, form.1))
        }
    };
    page::render(Some(visitor), status, &post.title, main)
}

/// The post `id` as `visitor` may see it, else the answer to give (the 404 page for a
/// missing post or someone else's draft).
async fn visible(state: &AppState, visitor: &Visitor, id: &str) -> Result<PostRow, Response> {
    let found = match parse_id(id) {
        Ok(id) => visible_post(state, &visitor.caller(), id).await,
        Err(err) => Err(err),
    };
    found.map_err(|err| match err {
        ApiError::NotFound => page::not_found_for(visitor),
        err => page::failure(visitor, err),
    })
}

/// `GET /blog/{id}`.
pub async fn show(
    State(state): State<AppState>,
    visitor: Visitor,
    Path(id): Path<String>,
    query: Result<Query<PostQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let Query(query) = query.unwrap_or_default();
    let post = match visible(&state, &visitor, &id).await {
        Ok(post) => post,
        Err(response) => return response,
    };
    post_page(
        &state,
        &visitor,
        &post,
        &query,
        ("", &FormErrors::none()),
        StatusCode::OK,
    )
    .await
}

/// `POST /blog/{id}/comments`: adds the comment, then 303 back to the comments; or the
/// page again (422) with the text kept and the problem beside it.
pub async fn add(
    State(state): State<AppState>,
    uri: Uri,
    Path(id): Path<String>,
    Posted { visitor, form }: Posted<CommentForm>,
) -> Response {
    if visitor.user.is_none() {
        return sign_in_first(&uri);
    }
    let post = match visible(&state, &visitor, &id).await {
        Ok(post) => post,
        Err(response) => return response,
    };
    let input = CommentInput {
        body: form.body.clone(),
    };
    match add_comment(&state, &visitor.caller(), post.id, input).await {
        Ok(_) => see_other(&format!("{}#comments", post_path(post.id))),
        Err(ApiError::NotFound) => page::not_found_for(&visitor),
        Err(err) => match FormErrors::of_error(err, &[]) {
            Ok(errors) => {
                post_page(
                    &state,
                    &visitor,
                    &post,
                    &PostQuery::default(),
                    (&form.body, &errors),
                    StatusCode::UNPROCESSABLE_ENTITY,
                )
                .await
            }
            Err(err) => page::failure(&visitor, err),
        },
    }
}

/// `POST /blog/{id}/comments/{comment}/delete`: deletes the comment (its author, moderators
/// and admins), then 303 back to the comments.
pub async fn delete_comment(
    State(state): State<AppState>,
    uri: Uri,
    Path((id, comment)): Path<(String, String)>,
    Posted { visitor, .. }: Posted<DeleteCommentForm>,
) -> Response {
    if visitor.user.is_none() {
        return sign_in_first(&uri);
    }
    let post = match visible(&state, &visitor, &id).await {
        Ok(post) => post,
        Err(response) => return response,
    };
    let found = match parse_id(&comment) {
        Ok(comment) => deletable(&state, &visitor.caller(), comment).await,
        Err(err) => Err(err),
    };
    let row = match found {
        Ok(row) if row.post_id == post.id => row,
        Ok(_) | Err(ApiError::NotFound) => return page::not_found_for(&visitor),
        Err(ApiError::Forbidden(_)) => {
            return page::message(
                Some(&visitor),
                StatusCode::FORBIDDEN,
                "You may not delete this comment",
                "Only its author, moderators and administrators may delete a comment.",
            );
        }
        Err(err) => return page::failure(&visitor, err),
    };
    match basis_store::comments::delete(&state.store, row.id, row.version).await {
        Ok(true) => see_other(&format!("{}?deleted=1#comments", post_path(post.id))),
        // Changed or deleted by someone else in between: show the comments as they are now.
        Ok(false) => see_other(&format!("{}#comments", post_path(post.id))),
        Err(err) => page::failure(&visitor, err.into()),
    }
}

/// The post-delete form as sent.
#[derive(Debug, Default, Deserialize)]
pub struct DeletePostForm {
    /// The CSRF token.
    pub csrf: Option<String>,
    /// The version of the post the confirmation showed.
    pub version: Option<String>,
}

/// The post `id` if `visitor` may delete it, else the answer to give.
async fn deletable_by(
    state: &AppState,
    visitor: &Visitor,
    uri: &Uri,
    id: &str,
) -> Result<PostRow, Response> {
    if visitor.user.is_none() {
        return Err(sign_in_first(uri));
    }
    let found = match parse_id(id) {
        Ok(id) => deletable_post(state, &visitor.caller(), id).await,
        Err(err) => Err(err),
    };
    found.map_err(|err| match err {
        ApiError::NotFound => page::not_found_for(visitor),
        ApiError::Forbidden(_) => page::message(
            Some(visitor),
            StatusCode::FORBIDDEN,
            "You may not delete this post",
            "Only its author, moderators and administrators may delete a post.",
        ),
        err => page::failure(visitor, err),
    })
}

/// `GET /blog/{id}/delete`: asks before deleting.
pub async fn confirm_delete(
    State(state): State<AppState>,
    visitor: Visitor,
    uri: Uri,
    Path(id): Path<String>,
) -> Response {
    let post = match deletable_by(&state, &visitor, &uri, &id).await {
        Ok(post) => post,
        Err(response) => return response,
    };
    let main = html! {
        div.panel {
            p { "Delete " strong { "“" (post.title) "”" } " by " (post.author_name) "?" }
            p {
                @if post.comment_count == 1 { "Its comment is deleted with it. " }
                @else if post.comment_count > 1 { "Its " (post.comment_count) " comments are deleted with it. " }
                "This cannot be undone."
            }
            form method="post" action=(format!("{}/delete", post_path(post.id))) {
                (token(&visitor.csrf))
                input type="hidden" name="version" value=(post.version);
                div.actions {
                    button.danger type="submit" { "Delete the post" }
                    a.button.secondary href=(post_path(post.id)) { "Cancel" }
                }
            }
        }
    };
    page::render(Some(&visitor), StatusCode::OK, "Delete this post?", main)
}

/// `POST /blog/{id}/delete`: deletes the post (and its comments) if it is still the version
/// the confirmation showed, then 303 to the blog.
pub async fn delete_post(
    State(state): State<AppState>,
    uri: Uri,
    Path(id): Path<String>,
    Posted { visitor, form }: Posted<DeletePostForm>,
) -> Response {
    let post = match deletable_by(&state, &visitor, &uri, &id).await {
        Ok(post) => post,
        Err(response) => return response,
    };
    let changed = || {
        page::message(
            Some(&visitor),
            StatusCode::CONFLICT,
            "This post has changed",
            "The post was changed after you were asked to confirm, so it was not deleted. \
             Look at it again and decide.",
        )
    };
    let Some(version) = optional(&form.version).and_then(|v| v.parse::<i64>().ok()) else {
        return changed();
    };
    match basis_store::posts::delete(&state.store, post.id, version).await {
        Ok(true) => see_other(&format!("{}?deleted=1", paths::BLOG)),
        Ok(false) => changed(),
        Err(err) => page::failure(&visitor, err.into()),
    }
}
