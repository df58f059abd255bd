//! The post handlers. Every read answers with a strong `ETag` (a digest of the exact body),
//! `Last-Modified` and `Cache-Control`, and 304 on a matching `If-None-Match`; every write
//! takes `If-Match` and fails with 412 if the post changed since the client read it.
//! (Over 400 lines: seven handlers, each with its OpenAPI annotation, sharing the
//! visibility and conditional-request helpers at the bottom.)
//!

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use basis_auth::role::Role;
use basis_store::posts::{self, PostQuery, PostRow, PostSummaryRow, Sort};
use serde_json::json;

use super::input::{PostInput, label};
use super::list::{self, PostListParams};
use super::{PostPage, PostSummary, PostView};
use crate::error::{ApiError, ApiResult, Problem};
use crate::http::idempotency;
use crate::http::rest::{
    Caching, Representation, body_of, check_if_match, from_document, has_if_match, json_document,
    merge_patch, merge_patch_body, negotiate, parse_id, parse_json,
};
use crate::identity::caller::Caller;
use crate::state::AppState;

/// Whether `caller` may see `row`: published posts are public, drafts are their author's
/// and the admins'.
pub fn visible(caller: &Caller, author_id: &str, status: &str) -> bool {
    status == "published"
        || caller
            .principal()
            .is_some_and(|p| p.user_id == author_id || p.role.at_least(Role::Admin))
}

/// The post `id` if it exists and `caller` may see it (404 otherwise: a draft's existence
/// is not revealed).
pub async fn visible_post(state: &AppState, caller: &Caller, id: i64) -> ApiResult<PostRow> {
    posts::find(&state.store, id)
        .await?
        .filter(|row| visible(caller, &row.author_id, &row.status))
        .ok_or(ApiError::NotFound)
}

fn caching(status: &str) -> Caching {
    if status == "published" {
        Caching::Public
    } else {
        Caching::Private
    }
}

/// The response carrying the current state of post `id`.
async fn post_response(
    state: &AppState,
    headers: &HeaderMap,
    id: i64,
    status: StatusCode,
) -> ApiResult<Response> {
    let row = posts::find(&state.store, id)
        .await?
        .ok_or(ApiError::NotFound)?;
    let caching = if status == StatusCode::OK {
        caching(&row.status)
    } else {
        Caching::Private
    };
    let mut response = Representation::of(&PostView::from(&row))?.respond(
        headers,
        status,
        caching,
        Some(row.updated_at),
    );
    if status == StatusCode::CREATED
        && let Ok(location) = HeaderValue::from_str(&format!("/posts/{id}"))
    {
        response.headers_mut().insert(header::LOCATION, location);
    }
    Ok(response)
}

/// Lists posts (published by default), filtered, sorted and paginated.
#[utoipa::path(
    get, path = "/posts", tag = "posts", params(PostListParams),
    responses(
        (status = 200, description = "A page of posts", body = PostPage, headers(("ETag" = String), ("Link" = String, description = "rel=\"next\" when there is a next page"))),
        (status = 304, description = "Not modified (If-None-Match)"),
        (status = 400, description = "A bad parameter or cursor", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Drafts need signing in", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Someone else's drafts", body = Problem, content_type = "application/problem+json"),
        (status = 406, description = "JSON not acceptable", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    uri: Uri,
) -> ApiResult<Response> {
    list_posts(&state, &caller, &headers, &uri, None).await
}

/// Lists one author's posts (published by default; `status=draft` for the author or an admin).
#[utoipa::path(
    get, path = "/users/{id}/posts", tag = "posts",
    params(("id" = String, Path, description = "The author's user id"), PostListParams),
    responses(
        (status = 200, description = "A page of posts", body = PostPage, headers(("ETag" = String), ("Link" = String))),
        (status = 304, description = "Not modified (If-None-Match)"),
        (status = 400, description = "A bad parameter or cursor", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Drafts need signing in", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Someone else's drafts", body = Problem, content_type = "application/problem+json"),
        (status = 406, description = "JSON not acceptable", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn by_author(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    uri: Uri,
    Path(author): Path<String>,
) -> ApiResult<Response> {
    list_posts(&state, &caller, &headers, &uri, Some(author)).await
}

async fn list_posts(
    state: &AppState,
    caller: &Caller,
    headers: &HeaderMap,
    uri: &Uri,
    path_author: Option<String>,
) -> ApiResult<Response> {
    negotiate(headers)?;
    let (params, _) = list::parse_query(uri.query());
    let found = find_page(state, caller, params, path_author).await?;
    let last_modified = found.rows.iter().map(|r| r.updated_at).max();
    let page = PostPage {
        items: found.rows.iter().map(PostSummary::from).collect(),
        next_cursor: found.next_cursor,
    };
    let mut response = Representation::of(&page)?.respond(
        headers,
        StatusCode::OK,
        caching(found.status),
        last_modified,
    );
    if let Some(next) = &page.next_cursor {
        list::link_next(&mut response, uri.path(), uri.query(), next);
    }
    Ok(response)
}

/// One page of posts as `caller` may list them.
#[derive(Debug)]
pub struct FoundPage {
    /// The posts of the page.
    pub rows: Vec<PostSummaryRow>,
    /// The cursor of the next page, if there is one.
    pub next_cursor: Option<String>,
    /// The status listed: `published` or `draft`.
    pub status: &'static str,
}

/// The page of posts `params` asks for, by the list's rules: drafts are their author's
/// (every draft for admins), bad parameters are 400 naming the parameter. `path_author`
/// is the author of `/users/{id}/posts`. The API's lists and the blog pages both use it.
pub async fn find_page(
    state: &AppState,
    caller: &Caller,
    params: PostListParams,
    path_author: Option<String>,
) -> ApiResult<FoundPage> {
    let limit = crate::http::rest::limit_param(params.limit.as_deref())?;
    let search = params
        .q
        .as_deref()
        .map(str::trim)
        .filter(|q| !q.is_empty())
        .map(str::to_owned);
    let sort = list::sort(params.sort.as_deref())?.unwrap_or(if search.is_some() {
        Sort::Relevance
    } else {
        Sort::NewestFirst
    });
    let after = list::post_after(params.cursor.as_deref(), sort)?;
    let mut author = path_author.or(params.author);
    let status = match params.status.as_deref() {
        None | Some("published") => "published",
        Some("draft") => {
            let principal = caller.require()?;
            if !principal.role.at_least(Role::Admin) {
                match &author {
                    Some(other) if *other != principal.user_id => {
                        return Err(ApiError::Forbidden(
                            "drafts are visible only to their author".into(),
                        ));
                    }
                    _ => author = Some(principal.user_id.clone()),
                }
            }
            "draft"
        }
        Some(_) => return Err(ApiError::field("status", "must be draft or published")),
    };
    let normalise = |raw: Option<String>| raw.map(|v| label(&v).unwrap_or(v));
    let query = PostQuery {
        author,
        category: normalise(params.category),
        tag: normalise(params.tag),
        status: status.to_owned(),
        search,
        sort,
        after: after.clone(),
        limit: limit + 1,
    };
    let mut rows = posts::list(&state.store, &query).await?;
    let more = rows.len() as i64 > limit;
    rows.truncate(limit as usize);
    let next_cursor = match rows.last() {
        Some(last) if more => {
            let offset = match after {
                posts::After::Offset(o) => o + limit,
                _ => limit,
            };
            Some(list::post_cursor(
                sort,
                last.created_at,
                &last.title,
                last.id,
                offset,
            ))
        }
        _ => None,
    };
    Ok(FoundPage {
        rows,
        next_cursor,
        status,
    })
}

/// Checks `input` and stores it as a new post by `author_id`; the new post's id. The API's
/// `POST /posts` and the blog's editor both use it.
pub async fn create_post(state: &AppState, author_id: &str, input: PostInput) -> ApiResult<i64> {
    let fields = input.into_fields()?;
    Ok(posts::insert(&state.store, author_id, &fields, state.clock.now_ms()).await?)
}

/// The post `id` if `caller` may change it: visible to them (else 404), and theirs or they
/// are an admin (else 403).
pub async fn changeable(state: &AppState, caller: &Caller, id: i64) -> ApiResult<PostRow> {
    let row = visible_post(state, caller, id).await?;
    caller.act_for(&row.author_id)?;
    Ok(row)
}

/// Whether `caller` may delete a post by `author_id`: its author, moderators and admins.
pub fn may_delete_post(caller: &Caller, author_id: &str) -> bool {
    caller
        .principal()
        .is_some_and(|p| p.user_id == author_id || p.role.at_least(Role::Moderator))
}

/// The post `id` if `caller` may delete it: visible to them (else 404), and theirs or
/// they moderate (else 403).
pub async fn deletable_post(state: &AppState, caller: &Caller, id: i64) -> ApiResult<PostRow> {
    let row = visible_post(state, caller, id).await?;
    if !may_delete_post(caller, &row.author_id) {
        return Err(ApiError::Forbidden(
            "only the author, moderators and admins may delete a post".into(),
        ));
    }
    Ok(row)
}

/// Checks `input` and writes it over post `id` if the post is still at `version` (the one
/// its writer read); `false` when it changed in between, and nothing is written then.
pub async fn replace_post(
    state: &AppState,
    id: i64,
    version: i64,
    input: PostInput,
) -> ApiResult<bool> {
    let fields = input.into_fields()?;
    Ok(posts::replace(&state.store, id, version, &fields, state.clock.now_ms()).await?)
}

/// Creates a post (201 with `Location`). Honours `Idempotency-Key`.
#[utoipa::path(
    post, path = "/posts", tag = "posts", request_body = PostInput,
    params(("Idempotency-Key" = Option<String>, Header, pattern = "^[!-~]([ -~]{0,253}[!-~])?$", description = "Retries with the same key and body return the first response")),
    responses(
        (status = 201, description = "Created", body = PostView, headers(("Location" = String), ("ETag" = String))),
        (status = 400, description = "Malformed JSON or key", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Not signed in", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "API keys cannot write posts", body = Problem, content_type = "application/problem+json"),
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
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<Response> {
    negotiate(&headers)?;
    let principal = caller.require_account()?;
    let bytes = body_of(&headers, body, "application/json")?;
    idempotency::once(
        &state,
        &principal.user_id,
        &headers,
        "/posts",
        &bytes,
        || async {
            let input = from_document::<PostInput>(parse_json(&bytes)?)?;
            let id = create_post(&state, &principal.user_id, input).await?;
            post_response(&state, &headers, id, StatusCode::CREATED).await
        },
    )
    .await
}

/// Reads a post (drafts: their author and admins only).
#[utoipa::path(
    get, path = "/posts/{id}", tag = "posts", params(("id" = String, Path, description = "The post id")),
    responses(
        (status = 401, description = "Credentials given but invalid, expired or revoked", body = Problem, content_type = "application/problem+json"),
        (status = 200, description = "The post", body = PostView, headers(("ETag" = String), ("Last-Modified" = String), ("Cache-Control" = String))),
        (status = 304, description = "Not modified (If-None-Match)"),
        (status = 404, description = "No such post, or a draft you may not see", body = Problem, content_type = "application/problem+json"),
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
    let row = visible_post(&state, &caller, parse_id(&id)?).await?;
    Ok(Representation::of(&PostView::from(&row))?.respond(
        &headers,
        StatusCode::OK,
        caching(&row.status),
        Some(row.updated_at),
    ))
}

/// The post `id` for a change by `caller`: visible, and theirs (or they are an admin).
async fn editable(state: &AppState, caller: &Caller, id: i64) -> ApiResult<PostRow> {
    let row = changeable(state, caller, id).await?;
    Ok(row)
}

/// Writes `input` over `row` and answers with the new state. The input is checked before
/// `If-Match`: an invalid change is refused as such (400/422), whatever the precondition.
async fn write(
    state: &AppState,
    headers: &HeaderMap,
    row: &PostRow,
    input: PostInput,
) -> ApiResult<Response> {
    // The body is checked before the precondition: an invalid change is refused as such.
    let fields = input.into_fields()?;
    check_if_match(headers, &Representation::of(&PostView::from(row))?.etag)?;
    if !posts::replace(
        &state.store,
        row.id,
        row.version,
        &fields,
        state.clock.now_ms(),
    )
    .await?
    {
        return Err(lost_race(headers));
    }
    post_response(state, headers, row.id, StatusCode::OK).await
}

/// A write whose compare-and-set failed: someone changed the resource in between.
pub fn lost_race(headers: &HeaderMap) -> ApiError {
    if has_if_match(headers) {
        ApiError::PreconditionFailed("the resource changed since you read it".into())
    } else {
        ApiError::Conflict(
            "the resource was changed by another request at the same time; retry".into(),
        )
    }
}

/// Replaces a post: every field is written, omitted optional fields are reset.
#[utoipa::path(
    put, path = "/posts/{id}", tag = "posts", request_body = PostInput,
    params(("id" = String, Path, description = "The post id"), ("If-Match" = Option<crate::http::schema::EntityTags>, Header, description = "The ETag you read; malformed is 400")),
    responses(
        (status = 200, description = "The replaced post", body = PostView, headers(("ETag" = String))),
        (status = 400, description = "Malformed JSON", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Not signed in", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not your post", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such post", body = Problem, content_type = "application/problem+json"),
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
    // Who may change the post is settled before its body is read.
    let row = editable(&state, &caller, id).await?;
    let input = json_document::<PostInput>(&headers, body)?;
    write(&state, &headers, &row, input).await
}

/// Changes some fields of a post with a JSON Merge Patch (RFC 7396): members given are set,
/// `null` clears an optional one, absent members stay.
#[utoipa::path(
    patch, path = "/posts/{id}", tag = "posts",
    request_body(content = Object, content_type = "application/merge-patch+json", description = "Any subset of the PostInput fields"),
    params(("id" = String, Path, description = "The post id"), ("If-Match" = Option<crate::http::schema::EntityTags>, Header, description = "The ETag you read; malformed is 400")),
    responses(
        (status = 200, description = "The changed post", body = PostView, headers(("ETag" = String))),
        (status = 400, description = "Not a merge patch object", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Not signed in", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not your post", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such post", body = Problem, content_type = "application/problem+json"),
        (status = 406, description = "JSON not acceptable", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Changed concurrently", body = Problem, content_type = "application/problem+json"),
        (status = 412, description = "Changed since the If-Match ETag", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "Body too large", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "Not application/merge-patch+json", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "The patched post is invalid", body = Problem, content_type = "application/problem+json"),
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
    let row = editable(&state, &caller, id).await?;
    let patch = merge_patch_body(&headers, body, "post")?;
    let mut document = json!({
        "title": row.title,
        "body": row.body,
        "category": row.category,
        "tags": row.tags,
        "status": row.status,
    });
    merge_patch(&mut document, &patch);
    write(&state, &headers, &row, from_document(document)?).await
}

/// Deletes a post and its comments (the author, moderators and admins). Repeating it is a 404.
#[utoipa::path(
    delete, path = "/posts/{id}", tag = "posts",
    params(("id" = String, Path, description = "The post id"), ("If-Match" = Option<crate::http::schema::EntityTags>, Header, description = "The ETag you read; malformed is 400")),
    responses(
        (status = 204, description = "Deleted, with its comments"),
        (status = 400, description = "A malformed If-Match", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Not signed in", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not your post", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such post", body = Problem, content_type = "application/problem+json"),
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
    let row = deletable_post(&state, &caller, parse_id(&id)?).await?;
    check_if_match(&headers, &Representation::of(&PostView::from(&row))?.etag)?;
    if !posts::delete(&state.store, row.id, row.version).await? {
        return Err(lost_race(&headers));
    }
    Ok(StatusCode::NO_CONTENT.into_response())
}
