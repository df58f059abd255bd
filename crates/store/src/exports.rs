//! Finished click exports of links (CSV), stored under their job's id so a second delivery
//! of the job finds the export made. They go with their link (foreign key), on the link's
//! shard database when links are sharded.

use crate::{Result, Store, on_foreign_key, on_pool};

/// Stores the export `id` of `link_id`; an export already stored under `id` is kept. A link
/// that no longer exists is `MissingReference("link")`.
pub async fn insert(
    store: &Store,
    id: &str,
    link_id: i64,
    csv: &str,
    rows: i64,
    now: i64,
) -> Result<()> {
    store
        .retry_moved(|| async {
            let store = &*store.link_home(link_id);
            on_pool!(store, write, pool => {
                async {
                    let mut tx = pool.begin().await?;
                    crate::guard_links!(store, tx, [link_id]);
                    sqlx::query(
                        "INSERT INTO link_exports (id, link_id, csv, rows, created_at) \
                         VALUES ($1, $2, $3, $4, $5) ON CONFLICT (id) DO NOTHING",
                    )
                    .bind(id)
                    .bind(link_id)
                    .bind(csv)
                    .bind(rows)
                    .bind(now)
                    .execute(&mut *tx)
                    .await?;
                    tx.commit().await
                }
                .await
            })
            .map_err(|e| on_foreign_key(e, "link"))
        })
        .await
}

/// The number of data rows of export `id` of `link_id`, if it is stored.
pub async fn rows(store: &Store, id: &str, link_id: i64) -> Result<Option<i64>> {
    let store = &*store.link_home(link_id);
    Ok(on_pool!(store, read, pool => {
        sqlx::query_scalar("SELECT rows FROM link_exports WHERE id = $1")
            .bind(id)
            .fetch_optional(pool)
            .await
    })?)
}

/// The CSV of export `id`, if it is stored and belongs to `link_id`.
pub async fn csv(store: &Store, id: &str, link_id: i64) -> Result<Option<String>> {
    let store = &*store.link_home(link_id);
    Ok(on_pool!(store, read, pool => {
        sqlx::query_scalar("SELECT csv FROM link_exports WHERE id = $1 AND link_id = $2")
            .bind(id)
            .bind(link_id)
            .fetch_optional(pool)
            .await
    })?)
}
