//! The comment handlers: the same HTTP rules as posts (ETags, 304, 412, 406, 415, merge
//! patch, idempotency keys). A comment is visible wherever its post is.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use basis_auth::role::Role;
use basis_store::comments::{self, CommentRow};
use basis_store::posts::PostRow;
use serde_json::json;

use super::{CommentInput, CommentPage, CommentView, MAX_COMMENT_CHARS};
use crate::blog::posts::api::{lost_race, visible_post};
use crate::blog::posts::list::{self, PageParams};
use crate::error::{ApiError, ApiResult, FieldError, Problem};
use crate::http::idempotency;
use crate::http::rest::{
    Caching, Representation, body_of, check_if_match, from_document, json_document, merge_patch,
    merge_patch_body, negotiate, parse_id, parse_json,
};
use crate::identity::caller::Caller;
use crate::jobs::mail::CommentAdded;
use crate::state::AppState;

fn caching(post_status: &str) -> Caching {
    if post_status == "published" {
        Caching::Public
    } else {
        Caching::Private
    }
}

/// The comment text, trimmed, or 422.
fn checked(input: CommentInput) -> ApiResult<String> {
    let body = input.body.trim().to_owned();
    let bad_char = body
        .chars()
        .any(|c| c.is_control() && !matches!(c, '\n' | '\r' | '\t'));
    if body.is_empty() || body.chars().count() > MAX_COMMENT_CHARS || bad_char {
        return Err(ApiError::UnprocessableFields(vec![FieldError::new(
            "body",
            format!("must be 1 to {MAX_COMMENT_CHARS} characters of text"),
        )]));
    }
    Ok(body)
}

/// The comment `id` with the status of its post, if `caller` may see the post.
async fn visible_comment(
    state: &AppState,
    caller: &Caller,
    id: i64,
) -> ApiResult<(CommentRow, String)> {
    let row = comments::find(&state.store, id)
        .await?
        .ok_or(ApiError::NotFound)?;
    let post = visible_post(state, caller, row.post_id).await?;
    Ok((row, post.status))
}

async fn comment_response(
    state: &AppState,
    headers: &HeaderMap,
    id: i64,
    status: StatusCode,
    post_status: &str,
) -> ApiResult<Response> {
    let row = comments::find(&state.store, id)
        .await?
        .ok_or(ApiError::NotFound)?;
    let caching = if status == StatusCode::OK {
        caching(post_status)
    } else {
        Caching::Private
    };
    let mut response = Representation::of(&CommentView::from(&row))?.respond(
        headers,
        status,
        caching,
        Some(row.updated_at),
    );
    if status == StatusCode::CREATED
        && let Ok(location) = HeaderValue::from_str(&format!("/comments/{id}"))
    {
        response.headers_mut().insert(header::LOCATION, location);
    }
    Ok(response)
}

/// One page of the comments on post `post_id` (which the caller may see), oldest first,
/// and the cursor of the next page: the API's list and the post's page both use it.
pub async fn comments_page(
    state: &AppState,
    post_id: i64,
    params: &PageParams,
) -> ApiResult<(Vec<CommentRow>, Option<String>)> {
    let limit = crate::http::rest::limit_param(params.limit.as_deref())?;
    let after = list::comment_after(params.cursor.as_deref())?;
    let mut rows = comments::list(&state.store, post_id, after, limit + 1).await?;
    let more = rows.len() as i64 > limit;
    rows.truncate(limit as usize);
    let next_cursor = rows
        .last()
        .filter(|_| more)
        .map(|last| list::comment_cursor(last.created_at, last.id));
    Ok((rows, next_cursor))
}

/// Adds `caller`'s comment to post `post_id` (404 if they may not see it, 422 for bad
/// text) and tells the post's author; the comment's id and the post. The API's
/// `POST /posts/{id}/comments` and the post's page both use it.
pub async fn add_comment(
    state: &AppState,
    caller: &Caller,
    post_id: i64,
    input: CommentInput,
) -> ApiResult<(i64, PostRow)> {
    let principal = caller.require_account()?;
    let text = checked(input)?;
    let post = visible_post(state, caller, post_id).await?;
    let id = comments::insert(
        &state.store,
        post_id,
        &principal.user_id,
        &text,
        state.clock.now_ms(),
    )
    .await?
    .ok_or(ApiError::NotFound)?;
    state
        .comment_notifier
        .comment_added(CommentAdded {
            post_id,
            post_author_id: post.author_id.clone(),
            comment_id: id,
            comment_author_id: principal.user_id.clone(),
        })
        .await;
    Ok((id, post))
}

/// Whether `caller` may delete a comment by `author_id`: its author, moderators and admins.
pub fn may_delete(caller: &Caller, author_id: &str) -> bool {
    caller
        .principal()
        .is_some_and(|p| p.user_id == author_id || p.role.at_least(Role::Moderator))
}

/// The comment `id` if `caller` may delete it (404 if they may not see it, 403 if it is
/// not theirs to delete).
pub async fn deletable(state: &AppState, caller: &Caller, id: i64) -> ApiResult<CommentRow> {
    let (row, _) = visible_comment(state, caller, id).await?;
    if !may_delete(caller, &row.author_id) {
        return Err(ApiError::Forbidden(
            "only the author, moderators and admins may delete a comment".into(),
        ));
    }
    Ok(row)
}

/// Lists a post's comments, oldest first.
#[utoipa::path(
    get, path = "/posts/{id}/comments", tag = "comments",
    params(("id" = String, Path, description = "The post id"), PageParams),
    responses(
        (status = 401, description = "Credentials given but invalid, expired or revoked", body = Problem, content_type = "application/problem+json"),
        (status = 200, description = "A page of comments", body = CommentPage, headers(("ETag" = String), ("Link" = String))),
        (status = 304, description = "Not modified (If-None-Match)"),
        (status = 400, description = "A bad limit or cursor", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such post", body = Problem, content_type = "application/problem+json"),
        (status = 406, description = "JSON not acceptable", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    uri: Uri,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    negotiate(&headers)?;
    let post = visible_post(&state, &caller, parse_id(&id)?).await?;
    let (_, params) = list::parse_query(uri.query());
    let (rows, next_cursor) = comments_page(&state, post.id, &params).await?;
    let last_modified = rows.iter().map(|r| r.updated_at).max();
    let page = CommentPage {
        items: rows.iter().map(CommentView::from).collect(),
        next_cursor,
    };
    let mut response = Representation::of(&page)?.respond(
        &headers,
        StatusCode::OK,
        caching(&post.status),
        last_modified,
    );
    if let Some(next) = &page.next_cursor {
        list::link_next(&mut response, uri.path(), uri.query(), next);
    }
    Ok(response)
}

/// Comments on a post (201 with `Location`). Honours `Idempotency-Key`.
#[utoipa::path(
    post, path = "/posts/{id}/comments", tag = "comments", request_body = CommentInput,
    params(("id" = String, Path, description = "The post id"), ("Idempotency-Key" = Option<String>, Header, pattern = "^[!-~]([ -~]{0,253}[!-~])?$", description = "Retries with the same key and body return the first response")),
    responses(
        (status = 201, description = "Created", body = CommentView, headers(("Location" = String), ("ETag" = String))),
        (status = 400, description = "Malformed JSON or key", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Not signed in", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "API keys cannot comment", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such post", body = Problem, content_type = "application/problem+json"),
        (status = 406, description = "JSON not acceptable", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The same key is in progress", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "Body too large", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "Not application/json", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Missing or invalid fields, or a reused key", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<Response> {
    negotiate(&headers)?;
    let principal = caller.require_account()?;
    let post_id = parse_id(&id)?;
    let bytes = body_of(&headers, body, "application/json")?;
    let path = format!("/posts/{post_id}/comments");
    idempotency::once(
        &state,
        &principal.user_id,
        &headers,
        &path,
        &bytes,
        || async {
            let input = from_document::<CommentInput>(parse_json(&bytes)?)?;
            let (id, post) = add_comment(&state, &caller, post_id, input).await?;
            comment_response(&state, &headers, id, StatusCode::CREATED, &post.status).await
        },
    )
    .await
}

/// Reads a comment.
#[utoipa::path(
    get, path = "/comments/{id}", tag = "comments", params(("id" = String, Path, description = "The comment id")),
    responses(
        (status = 401, description = "Credentials given but invalid, expired or revoked", body = Problem, content_type = "application/problem+json"),
        (status = 200, description = "The comment", body = CommentView, headers(("ETag" = String), ("Last-Modified" = String), ("Cache-Control" = String))),
        (status = 304, description = "Not modified (If-None-Match)"),
        (status = 404, description = "No such comment", body = Problem, content_type = "application/problem+json"),
        (status = 406, description = "JSON not acceptable", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn read(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    negotiate(&headers)?;
    let (row, post_status) = visible_comment(&state, &caller, parse_id(&id)?).await?;
    Ok(Representation::of(&CommentView::from(&row))?.respond(
        &headers,
        StatusCode::OK,
        caching(&post_status),
        Some(row.updated_at),
    ))
}

/// The comment `id` for a change by its author (or an admin).
async fn editable(state: &AppState, caller: &Caller, id: i64) -> ApiResult<(CommentRow, String)> {
    let (row, post_status) = visible_comment(state, caller, id).await?;
    caller.act_for(&row.author_id)?;
    Ok((row, post_status))
}

/// Writes `input` over `row`; the input is checked before `If-Match` (an invalid change is
/// refused as such, whatever the precondition).
async fn write(
    state: &AppState,
    headers: &HeaderMap,
    row: &CommentRow,
    post_status: &str,
    input: CommentInput,
) -> ApiResult<Response> {
    let text = checked(input)?;
    check_if_match(headers, &Representation::of(&CommentView::from(row))?.etag)?;
    if !comments::replace(
        &state.store,
        row.id,
        row.version,
        &text,
        state.clock.now_ms(),
    )
    .await?
    {
        return Err(lost_race(headers));
    }
    comment_response(state, headers, row.id, StatusCode::OK, post_status).await
}

/// Replaces a comment's text.
#[utoipa::path(
    put, path = "/comments/{id}", tag = "comments", request_body = CommentInput,
    params(("id" = String, Path, description = "The comment id"), ("If-Match" = Option<crate::http::schema::EntityTags>, Header, description = "The ETag you read; malformed is 400")),
    responses(
        (status = 200, description = "The replaced comment", body = CommentView, headers(("ETag" = String))),
        (status = 400, description = "Malformed JSON", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Not signed in", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not your comment", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such comment", body = Problem, content_type = "application/problem+json"),
        (status = 406, description = "JSON not acceptable", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Changed concurrently", body = Problem, content_type = "application/problem+json"),
        (status = 412, description = "Changed since the If-Match ETag", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "Body too large", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "Not application/json", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Missing or invalid fields", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn replace(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<Response> {
    negotiate(&headers)?;
    caller.require_account()?;
    let id = parse_id(&id)?;
    // Who may change the comment is settled before its body is read.
    let (row, post_status) = editable(&state, &caller, id).await?;
    let input = json_document::<CommentInput>(&headers, body)?;
    write(&state, &headers, &row, &post_status, input).await
}

/// Changes a comment with a JSON Merge Patch.
#[utoipa::path(
    patch, path = "/comments/{id}", tag = "comments",
    request_body(content = Object, content_type = "application/merge-patch+json", description = "Any subset of the CommentInput fields"),
    params(("id" = String, Path, description = "The comment id"), ("If-Match" = Option<crate::http::schema::EntityTags>, Header, description = "The ETag you read; malformed is 400")),
    responses(
        (status = 200, description = "The changed comment", body = CommentView, headers(("ETag" = String))),
        (status = 400, description = "Not a merge patch object", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Not signed in", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not your comment", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such comment", body = Problem, content_type = "application/problem+json"),
        (status = 406, description = "JSON not acceptable", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Changed concurrently", body = Problem, content_type = "application/problem+json"),
        (status = 412, description = "Changed since the If-Match ETag", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "Body too large", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "Not application/merge-patch+json", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "The patched comment is invalid", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn patch(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<Response> {
    negotiate(&headers)?;
    caller.require_account()?;
    let id = parse_id(&id)?;
    let (row, post_status) = editable(&state, &caller, id).await?;
    let patch = merge_patch_body(&headers, body, "comment")?;
    let mut document = json!({ "body": row.body });
    merge_patch(&mut document, &patch);
    write(
        &state,
        &headers,
        &row,
        &post_status,
        from_document(document)?,
    )
    .await
}

/// Deletes a comment (its author, moderators and admins). Repeating it is a 404.
#[utoipa::path(
    delete, path = "/comments/{id}", tag = "comments",
    params(("id" = String, Path, description = "The comment id"), ("If-Match" = Option<crate::http::schema::EntityTags>, Header, description = "The ETag you read; malformed is 400")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 400, description = "A malformed If-Match", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Not signed in", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not your comment", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such comment", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Changed concurrently", body = Problem, content_type = "application/problem+json"),
        (status = 412, description = "Changed since the If-Match ETag", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn remove(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    caller.require_account()?;
    let row = deletable(&state, &caller, parse_id(&id)?).await?;
    check_if_match(
        &headers,
        &Representation::of(&CommentView::from(&row))?.etag,
    )?;
    if !comments::delete(&state.store, row.id, row.version).await? {
        return Err(lost_race(&headers));
    }
    Ok(StatusCode::NO_CONTENT.into_response())
}
