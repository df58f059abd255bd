//! What the mail jobs read and record: which mails went out (so a redelivered job does not
//! send again) and what a "new comment" mail says.

use crate::{Result, Store, on_pool};

/// Whether mail `mail_id` was sent.
pub async fn was_sent(store: &Store, mail_id: &str) -> Result<bool> {
    let found: Option<i64> = on_pool!(store, read, pool => {
        sqlx::query_scalar("SELECT sent_at FROM mail_sent WHERE mail_id = $1")
            .bind(mail_id)
            .fetch_optional(pool)
            .await
    })?;
    Ok(found.is_some())
}

/// Records that mail `mail_id` was accepted by the mail server at `now` (again is a no-op).
pub async fn mark_sent(store: &Store, mail_id: &str, now: i64) -> Result<()> {
    on_pool!(store, write, pool => {
        sqlx::query("INSERT INTO mail_sent (mail_id, sent_at) VALUES ($1, $2) ON CONFLICT (mail_id) DO NOTHING")
            .bind(mail_id)
            .bind(now)
            .execute(pool)
            .await
            .map(drop)
    })?;
    Ok(())
}

/// What a "new comment on your post" mail needs.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct CommentNotice {
    /// The post.
    pub post_id: i64,
    /// Its title.
    pub title: String,
    /// The post's author.
    pub post_author: String,
    /// Where the mail goes: the post author's email.
    pub author_email: String,
    /// The comment's author.
    pub comment_author: String,
    /// The comment author's display name.
    pub commenter: String,
    /// The comment.
    pub body: String,
}

/// The notice for comment `comment_id` (`None` once the comment, its post or an author
/// is gone).
pub async fn comment_notice(store: &Store, comment_id: i64) -> Result<Option<CommentNotice>> {
    Ok(on_pool!(store, read, pool => {
        sqlx::query_as::<_, CommentNotice>(
            "SELECT p.id AS post_id, p.title, p.author_id AS post_author, pa.email AS author_email, \
             c.author_id AS comment_author, ca.name AS commenter, c.body \
             FROM comments c JOIN posts p ON p.id = c.post_id \
             JOIN users pa ON pa.id = p.author_id JOIN users ca ON ca.id = c.author_id \
             WHERE c.id = $1",
        )
        .bind(comment_id)
        .fetch_optional(pool)
        .await
    })?)
}
