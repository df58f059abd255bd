//! The blog's posts: `/posts`, `/posts/{id}` and `/users/{id}/posts`.
//!
//! - [`api`]: the handlers (create, read, replace, patch, delete, lists).
//! - [`input`]: the writable fields, their checks and the Markdown rendering.
//! - [`list`]: list parameters, cursors and the `Link` header.
//!
//! Comments live in [`crate::blog::comments`]; the HTTP rules both share (ETags, 304/412, 406,
//! 415, merge patch) in [`crate::http::rest`].

use crate::http::routes::Routes;
use axum::response::Response;
use basis_store::posts::{PostRow, PostSummaryRow};
use chrono::{DateTime, Utc};
use serde::Serialize;
use utoipa::ToSchema;

use crate::clock::to_datetime;
use crate::http::rest::options;
use crate::state::AppState;

pub mod api;
pub mod input;
pub mod list;

/// `Allow` of the collection.
pub const ALLOW_COLLECTION: &str = "GET, HEAD, POST, OPTIONS";
/// `Allow` of one post or comment.
pub const ALLOW_ITEM: &str = "GET, HEAD, PUT, PATCH, DELETE, OPTIONS";
/// `Allow` of read-only lists.
pub const ALLOW_READ: &str = "GET, HEAD, OPTIONS";

/// The post routes.
pub fn router() -> Routes<AppState> {
    Routes::new()
        .get("/posts", api::list)
        .post("/posts", api::create)
        .options("/posts", options_posts)
        .get("/posts/{id}", api::read)
        .put("/posts/{id}", api::replace)
        .patch("/posts/{id}", api::patch)
        .delete("/posts/{id}", api::remove)
        .options("/posts/{id}", options_post)
        .get("/users/{id}/posts", api::by_author)
        .options("/users/{id}/posts", options_author_posts)
}

/// The methods `/posts` allows.
#[utoipa::path(options, path = "/posts", tag = "posts",
    responses((status = 204, description = "The allowed methods", headers(("Allow" = String)))))]
pub async fn options_posts() -> Response {
    options(ALLOW_COLLECTION)
}

/// The methods `/posts/{id}` allows (and `Accept-Patch`).
#[utoipa::path(options, path = "/posts/{id}", tag = "posts", params(("id" = String, Path, description = "The post id")),
    responses((status = 204, description = "The allowed methods", headers(("Allow" = String), ("Accept-Patch" = String)))))]
pub async fn options_post() -> Response {
    options(ALLOW_ITEM)
}

/// The methods `/users/{id}/posts` allows.
#[utoipa::path(options, path = "/users/{id}/posts", tag = "posts", params(("id" = String, Path, description = "The author's user id")),
    responses((status = 204, description = "The allowed methods", headers(("Allow" = String)))))]
pub async fn options_author_posts() -> Response {
    options(ALLOW_READ)
}

/// A post as `GET /posts/{id}` shows it.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PostView {
    /// The id (a decimal number, as a string).
    pub id: String,
    /// Plain-text title.
    pub title: String,
    /// Markdown as written.
    pub body: String,
    /// The body rendered to HTML and sanitised: safe to insert into a page.
    pub body_html: String,
    /// The category, if any.
    pub category: Option<String>,
    /// Tags, sorted.
    pub tags: Vec<String>,
    /// `draft` or `published`.
    pub status: input::Status,
    /// The author's user id.
    pub author_id: String,
    /// The author's display name.
    pub author_name: String,
    /// How many comments the post has.
    pub comment_count: i64,
    /// Creation time.
    pub created_at: DateTime<Utc>,
    /// Last change.
    pub updated_at: DateTime<Utc>,
}

fn status_of(stored: &str) -> input::Status {
    if stored == "published" {
        input::Status::Published
    } else {
        input::Status::Draft
    }
}

impl From<&PostRow> for PostView {
    fn from(row: &PostRow) -> Self {
        Self {
            id: row.id.to_string(),
            title: row.title.clone(),
            body: row.body.clone(),
            body_html: row.body_html.clone(),
            category: row.category.clone(),
            tags: row.tags.clone(),
            status: status_of(&row.status),
            author_id: row.author_id.clone(),
            author_name: row.author_name.clone(),
            comment_count: row.comment_count,
            created_at: to_datetime(row.created_at),
            updated_at: to_datetime(row.updated_at),
        }
    }
}

/// A post as lists show it (without the body).
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PostSummary {
    /// The id.
    pub id: String,
    /// Plain-text title.
    pub title: String,
    /// The category, if any.
    pub category: Option<String>,
    /// Tags, sorted.
    pub tags: Vec<String>,
    /// `draft` or `published`.
    pub status: input::Status,
    /// The author's user id.
    pub author_id: String,
    /// The author's display name.
    pub author_name: String,
    /// How many comments the post has.
    pub comment_count: i64,
    /// Creation time.
    pub created_at: DateTime<Utc>,
    /// Last change.
    pub updated_at: DateTime<Utc>,
}

impl From<&PostSummaryRow> for PostSummary {
    fn from(row: &PostSummaryRow) -> Self {
        Self {
            id: row.id.to_string(),
            title: row.title.clone(),
            category: row.category.clone(),
            tags: row.tags.clone(),
            status: status_of(&row.status),
            author_id: row.author_id.clone(),
            author_name: row.author_name.clone(),
            comment_count: row.comment_count,
            created_at: to_datetime(row.created_at),
            updated_at: to_datetime(row.updated_at),
        }
    }
}

/// One page of posts.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PostPage {
    /// The posts of this page.
    pub items: Vec<PostSummary>,
    /// Pass as `cursor` for the next page; `null` on the last page.
    pub next_cursor: Option<String>,
}
