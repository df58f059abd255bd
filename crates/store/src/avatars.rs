//! Avatars: uploads waiting for their thumbnails, and the thumbnails, both in the database
//! so every instance and worker reaches them.
//!
//! Uploads are ordered by id: storing the thumbnails of an upload never replaces those of a
//! newer one, and removes the upload in the same transaction, so a second delivery of the
//! job finds the upload gone and the avatar made ([`made_from`]).

use crate::{Result, Store, on_foreign_key, on_pool};

/// A stored thumbnail.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct Thumbnail {
    /// The PNG.
    pub image: Vec<u8>,
    /// Its entity tag (changes with every upload).
    pub etag: String,
}

/// Stores an upload for job `job_id`, returning its id. An account that no longer exists
/// is `MissingReference("user")`.
pub async fn insert_upload(
    store: &Store,
    user_id: &str,
    job_id: &str,
    image: &[u8],
    now: i64,
) -> Result<i64> {
    on_pool!(store, write, pool => {
        sqlx::query_scalar(
            "INSERT INTO avatar_uploads (user_id, job_id, image, created_at) \
             VALUES ($1, $2, $3, $4) RETURNING id",
        )
        .bind(user_id)
        .bind(job_id)
        .bind(image)
        .bind(now)
        .fetch_one(pool)
        .await
    })
    .map_err(|e| on_foreign_key(e, "user"))
}

/// The image of upload `id`, while it waits.
pub async fn upload(store: &Store, id: i64) -> Result<Option<Vec<u8>>> {
    Ok(on_pool!(store, read, pool => {
        sqlx::query_scalar("SELECT image FROM avatar_uploads WHERE id = $1")
            .bind(id)
            .fetch_optional(pool)
            .await
    })?)
}

/// Drops upload `id` (its job could not be submitted).
pub async fn delete_upload(store: &Store, id: i64) -> Result<()> {
    on_pool!(store, write, pool => {
        sqlx::query("DELETE FROM avatar_uploads WHERE id = $1")
            .bind(id)
            .execute(pool)
            .await
            .map(drop)
    })?;
    Ok(())
}

/// An upload still waiting for its thumbnails.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct PendingUpload {
    /// The upload's id.
    pub id: i64,
    /// Whose avatar it is.
    pub user_id: String,
    /// The thumbnail job named when it was stored.
    pub job_id: String,
}

/// Uploads stored (or last swept) before `before` (Unix ms) and still waiting, oldest first,
/// at most `limit`.
pub async fn stale_uploads(store: &Store, before: i64, limit: i64) -> Result<Vec<PendingUpload>> {
    Ok(on_pool!(store, read, pool => {
        sqlx::query_as::<_, PendingUpload>(
            "SELECT id, user_id, job_id FROM avatar_uploads \
             WHERE COALESCE(swept_at, created_at) < $1 ORDER BY id LIMIT $2",
        )
        .bind(before)
        .bind(limit)
        .fetch_all(pool)
        .await
    })?)
}

/// Notes that upload `id`'s job was enqueued again at `now`.
pub async fn mark_swept(store: &Store, id: i64, now: i64) -> Result<()> {
    on_pool!(store, write, pool => {
        sqlx::query("UPDATE avatar_uploads SET swept_at = $2 WHERE id = $1")
            .bind(id)
            .bind(now)
            .execute(pool)
            .await
            .map(drop)
    })?;
    Ok(())
}

/// Whether `user_id` has an avatar made from upload `upload_id` or a newer one.
pub async fn made_from(store: &Store, user_id: &str, upload_id: i64) -> Result<bool> {
    let found: Option<i64> = on_pool!(store, read, pool => {
        sqlx::query_scalar(
            "SELECT upload_id FROM avatars WHERE user_id = $1 AND upload_id >= $2 LIMIT 1",
        )
        .bind(user_id)
        .bind(upload_id)
        .fetch_optional(pool)
        .await
    })?;
    Ok(found.is_some())
}

/// Stores the thumbnails `(side, png)` made from upload `upload_id` of `user_id` and drops
/// the upload, in one transaction. A size already made from a newer upload is kept.
pub async fn store_thumbnails(
    store: &Store,
    user_id: &str,
    upload_id: i64,
    thumbnails: &[(u32, Vec<u8>)],
    now: i64,
) -> Result<()> {
    on_pool!(store, write, pool => {
        async {
            let mut tx = pool.begin().await?;
            for (side, png) in thumbnails {
                sqlx::query(
                    "INSERT INTO avatars (user_id, size, image, etag, upload_id, updated_at) \
                     VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (user_id, size) DO UPDATE SET \
                     image = excluded.image, etag = excluded.etag, upload_id = excluded.upload_id, \
                     updated_at = excluded.updated_at WHERE avatars.upload_id <= excluded.upload_id",
                )
                .bind(user_id)
                .bind(i64::from(*side))
                .bind(png.as_slice())
                .bind(format!("{upload_id}-{side}"))
                .bind(upload_id)
                .bind(now)
                .execute(&mut *tx)
                .await?;
            }
            sqlx::query("DELETE FROM avatar_uploads WHERE id = $1")
                .bind(upload_id)
                .execute(&mut *tx)
                .await?;
            tx.commit().await
        }
        .await
    })
    .map_err(|e| on_foreign_key(e, "user"))
}

/// The thumbnail of `user_id` at `size` pixels.
pub async fn thumbnail(store: &Store, user_id: &str, size: u32) -> Result<Option<Thumbnail>> {
    Ok(on_pool!(store, read, pool => {
        sqlx::query_as::<_, Thumbnail>("SELECT image, etag FROM avatars WHERE user_id = $1 AND size = $2")
            .bind(user_id)
            .bind(i64::from(size))
            .fetch_optional(pool)
            .await
    })?)
}
