//! Comments on posts: plain text, listed oldest first with keyset pagination.

use crate::{Result, Store, on_foreign_key, on_pool};

/// The columns of a comment; `c` is `comments`.
const COMMENT_COLUMNS: &str = "c.id, c.post_id, c.author_id, \
    (SELECT u.name FROM users u WHERE u.id = c.author_id) AS author_name, \
    c.body, c.created_at, c.updated_at, c.version";

/// A stored comment with its author's name.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct CommentRow {
    /// The id.
    pub id: i64,
    /// The post it belongs to.
    pub post_id: i64,
    /// The author's user id.
    pub author_id: String,
    /// The author's display name.
    pub author_name: String,
    /// Plain text.
    pub body: String,
    /// Creation time, Unix ms.
    pub created_at: i64,
    /// Last change, Unix ms.
    pub updated_at: i64,
    /// Bumped by every change.
    pub version: i64,
}

/// Up to `limit` comments of `post_id` after (`created_at`, `id`), oldest first.
pub async fn list(
    store: &Store,
    post_id: i64,
    after: Option<(i64, i64)>,
    limit: i64,
) -> Result<Vec<CommentRow>> {
    let (created_at, id) = after.unwrap_or((i64::MIN, i64::MIN));
    let sql = format!(
        "SELECT {COMMENT_COLUMNS} FROM comments c WHERE c.post_id = $1 \
         AND (c.created_at, c.id) > ($2, $3) ORDER BY c.created_at, c.id LIMIT $4"
    );
    Ok(on_pool!(store, read, pool => {
        sqlx::query_as::<_, CommentRow>(&sql)
            .bind(post_id)
            .bind(created_at)
            .bind(id)
            .bind(limit)
            .fetch_all(pool)
            .await
    })?)
}

/// The comment with this id.
pub async fn find(store: &Store, id: i64) -> Result<Option<CommentRow>> {
    let sql = format!("SELECT {COMMENT_COLUMNS} FROM comments c WHERE c.id = $1");
    Ok(on_pool!(store, write, pool => {
        sqlx::query_as::<_, CommentRow>(&sql).bind(id).fetch_optional(pool).await
    })?)
}

/// Inserts a comment, returning its id, or `None` when the post is gone. An author that no
/// longer exists is `MissingReference("author")`.
pub async fn insert(
    store: &Store,
    post_id: i64,
    author_id: &str,
    body: &str,
    now: i64,
) -> Result<Option<i64>> {
    // Inserting from a SELECT of the post makes "the post still exists" part of the write.
    on_pool!(store, write, pool => {
        sqlx::query_scalar::<_, i64>(
            "INSERT INTO comments (post_id, author_id, body, created_at, updated_at) \
             SELECT p.id, $2, $3, $4, $4 FROM posts p WHERE p.id = $1 RETURNING id",
        )
        .bind(post_id)
        .bind(author_id)
        .bind(body)
        .bind(now)
        .fetch_optional(pool)
        .await
    })
    .map_err(|e| on_foreign_key(e, "author"))
}

/// Replaces the body of comment `id` if it is still at `version`.
pub async fn replace(store: &Store, id: i64, version: i64, body: &str, now: i64) -> Result<bool> {
    let done = on_pool!(store, write, pool => {
        sqlx::query(
            "UPDATE comments SET body = $3, updated_at = $4, version = version + 1 \
             WHERE id = $1 AND version = $2",
        )
        .bind(id)
        .bind(version)
        .bind(body)
        .bind(now)
        .execute(pool)
        .await
        .map(|done| done.rows_affected())
    })?;
    Ok(done > 0)
}

/// Deletes comment `id` if it is still at `version`.
pub async fn delete(store: &Store, id: i64, version: i64) -> Result<bool> {
    let done = on_pool!(store, write, pool => {
        sqlx::query("DELETE FROM comments WHERE id = $1 AND version = $2")
            .bind(id)
            .bind(version)
            .execute(pool)
            .await
            .map(|done| done.rows_affected())
    })?;
    Ok(done > 0)
}
