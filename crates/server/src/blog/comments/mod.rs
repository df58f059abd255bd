//! Comments: `/posts/{id}/comments` and `/comments/{id}`, plain text.
//!
//! - [`api`]: the handlers.
//! - [`crate::jobs::mail::CommentNotifier`]: the seam through which "new comment on your post" mail is sent.

use crate::http::routes::Routes;

use axum::response::Response;
use basis_store::comments::CommentRow;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::posts::{ALLOW_COLLECTION, ALLOW_ITEM};
use crate::clock::to_datetime;
use crate::http::rest::options;
use crate::state::AppState;

pub mod api;

/// Longest comment, in characters.
pub const MAX_COMMENT_CHARS: usize = 5_000;

/// The comment routes.
pub fn router() -> Routes<AppState> {
    Routes::new()
        .get("/posts/{id}/comments", api::list)
        .post("/posts/{id}/comments", api::create)
        .options("/posts/{id}/comments", options_comments)
        .get("/comments/{id}", api::read)
        .put("/comments/{id}", api::replace)
        .patch("/comments/{id}", api::patch)
        .delete("/comments/{id}", api::remove)
        .options("/comments/{id}", options_comment)
}

/// The methods `/posts/{id}/comments` allows.
#[utoipa::path(options, path = "/posts/{id}/comments", tag = "comments", params(("id" = String, Path, description = "The post id")),
    responses((status = 204, description = "The allowed methods", headers(("Allow" = String)))))]
pub async fn options_comments() -> Response {
    options(ALLOW_COLLECTION)
}

/// The methods `/comments/{id}` allows (and `Accept-Patch`).
#[utoipa::path(options, path = "/comments/{id}", tag = "comments", params(("id" = String, Path, description = "The comment id")),
    responses((status = 204, description = "The allowed methods", headers(("Allow" = String), ("Accept-Patch" = String)))))]
pub async fn options_comment() -> Response {
    options(ALLOW_ITEM)
}

/// The body of `POST /posts/{id}/comments` and `PUT /comments/{id}`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CommentInput {
    /// Plain text, 1–5,000 characters (shown as text, never as HTML).
    #[schema(
        example = "Thanks, this helped.",
        min_length = 1,
        max_length = 5000,
        pattern = "\\S"
    )]
    pub body: String,
}

/// A comment as the API shows it.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CommentView {
    /// The id.
    pub id: String,
    /// The post it belongs to.
    pub post_id: String,
    /// The author's user id.
    pub author_id: String,
    /// The author's display name.
    pub author_name: String,
    /// Plain text.
    pub body: String,
    /// Creation time.
    pub created_at: DateTime<Utc>,
    /// Last change.
    pub updated_at: DateTime<Utc>,
}

impl From<&CommentRow> for CommentView {
    fn from(row: &CommentRow) -> Self {
        Self {
            id: row.id.to_string(),
            post_id: row.post_id.to_string(),
            author_id: row.author_id.clone(),
            author_name: row.author_name.clone(),
            body: row.body.clone(),
            created_at: to_datetime(row.created_at),
            updated_at: to_datetime(row.updated_at),
        }
    }
}

/// One page of comments, oldest first.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CommentPage {
    /// The comments of this page.
    pub items: Vec<CommentView>,
    /// Pass as `cursor` for the next page; `null` on the last page.
    pub next_cursor: Option<String>,
}
