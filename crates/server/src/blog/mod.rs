//! The blog: posts and the comments on them, one resource (a comment's rules depend on its
//! post's visibility and state).
//!
//! - [`posts`]: `/posts`, `/posts/{id}`, `/users/{id}/posts`: lists with filters, search
//!   and cursors, conditional requests, merge patch, idempotency keys;
//! - [`comments`]: `/posts/{id}/comments` and `/comments/{id}`.

use crate::http::routes::Routes;
use crate::state::AppState;

pub mod comments;
pub mod posts;

/// The blog's routes.
pub fn router() -> Routes<AppState> {
    posts::router().merge(comments::router())
}
