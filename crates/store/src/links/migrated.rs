//! Rows a migration could not finish in SQL: codes stored before 0004 that only the code
//! key can classify (settled by the server's `links::legacy` at start), and URLs of SQLite
//! links that 0006 found without a reuse hash (filled in by `Store::migrate`).

use super::url_hash;
use crate::{Result, Store, on_pool};

/// Up to `limit` codes stored before migration 0004 that SQL could not classify (seven
/// letters and digits: generated, or an alias of that shape), as `(link id, code)`.
pub async fn pending_codes(store: &Store, limit: i64) -> Result<Vec<(i64, String)>> {
    let rows = on_pool!(store, write, pool => {
        sqlx::query_as::<_, (i64, String)>(
            "SELECT link_id, code FROM links_pending_codes ORDER BY link_id LIMIT $1",
        )
        .bind(limit)
        .fetch_all(pool)
        .await
    })?;
    Ok(rows)
}

/// Settles pending codes: each `(link id, alias)` of `aliases` gets its alias back, and
/// every pending code of a link up to `through` is forgotten, in one transaction.
pub async fn settle_pending_codes(
    store: &Store,
    aliases: &[(i64, String)],
    through: i64,
) -> Result<()> {
    on_pool!(store, write, pool => {
        async {
            let mut tx = pool.begin().await?;
            for (id, alias) in aliases {
                sqlx::query("UPDATE links SET alias = $2 WHERE id = $1")
                    .bind(id)
                    .bind(alias)
                    .execute(&mut *tx)
                    .await?;
            }
            sqlx::query("DELETE FROM links_pending_codes WHERE link_id <= $1")
                .bind(through)
                .execute(&mut *tx)
                .await?;
            tx.commit().await
        }
        .await
    })?;
    Ok(())
}

/// Every alias of exactly `len` characters, with its link's id.
pub async fn aliases_of_length(store: &Store, len: i64) -> Result<Vec<(i64, String)>> {
    let rows = on_pool!(store, read, pool => {
        sqlx::query_as::<_, (i64, String)>(
            "SELECT id, alias FROM links WHERE alias IS NOT NULL AND length(alias) = $1",
        )
        .bind(len)
        .fetch_all(pool)
        .await
    })?;
    Ok(rows)
}

/// Computes [`url_hash`] for the SQLite links that migration 0006 found without one (SQL
/// cannot compute it), a batch per transaction; nothing to do on PostgreSQL or once done.
/// Idempotent, so instances that start together on one database do no harm.
pub(crate) async fn fill_pending_hashes(store: &Store) -> Result<u64> {
    const BATCH: i64 = 5_000;
    let crate::Pools::Sqlite { write: pool, .. } = store.pools() else {
        return Ok(0);
    };
    let mut filled = 0;
    loop {
        let batch: Vec<(i64, Option<String>)> = sqlx::query_as(
            "SELECT p.link_id, l.long_url FROM links_pending_hashes p \
             LEFT JOIN links l ON l.id = p.link_id ORDER BY p.link_id LIMIT $1",
        )
        .bind(BATCH)
        .fetch_all(pool)
        .await?;
        let Some(&(through, _)) = batch.last() else {
            return Ok(filled);
        };
        let mut tx = pool.begin().await?;
        for (id, url) in &batch {
            if let Some(url) = url {
                sqlx::query("UPDATE links SET url_hash = $2 WHERE id = $1")
                    .bind(id)
                    .bind(url_hash(url))
                    .execute(&mut *tx)
                    .await?;
            }
        }
        sqlx::query("DELETE FROM links_pending_hashes WHERE link_id <= $1")
            .bind(through)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        filled += batch.len() as u64;
    }
}
