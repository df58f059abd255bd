//! The global alias index of sharded links (`link_alias_index` in the catalog).
//!
//! A generated code decodes to its link's id, which names the shard; an alias names nothing,
//! so the catalog maps `(domain, alias)` to the link's id. Each shard's own unique index
//! only sees its own links, so this index is also what keeps an alias unique across shards:
//! a link's alias is claimed here before the link is written, and released after the link
//! is deleted. A claim whose link write failed is released at once; a claim left by a crash
//! in between keeps its alias taken until an operator deletes the row (the link it names
//! does not exist, so nothing redirects).
//!
//! Used only when links are sharded ([`crate::Store::link_shards`]).

use crate::link_shards::postgres_pool;
use crate::sql::{Bind, Sql, bind_all};
use crate::{Result, Store, on_unique};

use super::{LinkRow, placeholders};

/// The index's key for the default domain.
fn domain_key(domain: Option<&str>) -> &str {
    domain.unwrap_or("")
}

/// Claims the aliases of `links` (each with an alias) for them, all or none: one taken
/// alias is [`crate::Error::Conflict`]`("alias")` and claims nothing.
pub(crate) async fn claim(catalog: &Store, links: &[&LinkRow]) -> Result<()> {
    let pool = postgres_pool(catalog);
    let mut tx = pool.begin().await?;
    for chunk in links.chunks(super::ROWS_PER_INSERT) {
        let sql = format!(
            "INSERT INTO link_alias_index (domain, alias, link_id, created_at) VALUES {}",
            placeholders(crate::Engine::Postgres, chunk.len(), 4)
        );
        let mut query = sqlx::query(&sql);
        for link in chunk {
            query = query
                .bind(domain_key(link.domain.as_deref()))
                .bind(link.alias.as_deref().unwrap_or_default())
                .bind(link.id)
                .bind(link.created_at);
        }
        query
            .execute(&mut *tx)
            .await
            .map_err(|e| on_unique(e, "alias"))?;
    }
    tx.commit().await?;
    Ok(())
}

/// Releases the claims of `(link id, alias, domain)`, each only if that link still holds it.
pub(crate) async fn release(
    catalog: &Store,
    claims: &[(i64, String, Option<String>)],
) -> Result<()> {
    if claims.is_empty() {
        return Ok(());
    }
    let ids: Vec<i64> = claims.iter().map(|c| c.0).collect();
    let aliases: Vec<&str> = claims.iter().map(|c| c.1.as_str()).collect();
    let domains: Vec<&str> = claims.iter().map(|c| domain_key(c.2.as_deref())).collect();
    sqlx::query(
        "DELETE FROM link_alias_index i USING UNNEST($1::BIGINT[], $2::TEXT[], $3::TEXT[]) \
         AS c(link_id, alias, domain) \
         WHERE i.link_id = c.link_id AND i.alias = c.alias AND i.domain = c.domain",
    )
    .bind(&ids)
    .bind(&aliases)
    .bind(&domains)
    .execute(postgres_pool(catalog))
    .await?;
    Ok(())
}

/// The id of the link holding `alias` on `domain` (`None`: the default domain), if any.
pub(crate) async fn holder(
    catalog: &Store,
    alias: &str,
    domain: Option<&str>,
) -> Result<Option<i64>> {
    let id = crate::on_pool!(catalog, read, pool => {
        sqlx::query_scalar("SELECT link_id FROM link_alias_index WHERE domain = $1 AND alias = $2")
            .bind(domain_key(domain))
            .bind(alias)
            .fetch_optional(pool)
            .await
    })?;
    Ok(id)
}

/// Which of `aliases` are taken on `domain`.
pub(crate) async fn taken(
    catalog: &Store,
    aliases: &[&str],
    domain: Option<&str>,
) -> Result<Vec<String>> {
    let mut taken = Vec::new();
    for chunk in aliases.chunks(1000) {
        let mut sql = Sql::new("");
        let domain = sql.bind(Bind::Text(domain_key(domain).to_owned()));
        let marks: Vec<String> = chunk
            .iter()
            .map(|a| sql.bind(Bind::Text((*a).to_owned())))
            .collect();
        sql.push(&format!(
            "SELECT alias FROM link_alias_index WHERE domain = {domain} AND alias IN ({})",
            marks.join(", ")
        ));
        let rows: Vec<(String,)> = crate::on_pool!(catalog, read, pool => {
            bind_all!(sqlx::query_as(&sql.text), sql).fetch_all(pool).await
        })?;
        taken.extend(rows.into_iter().map(|(a,)| a));
    }
    Ok(taken)
}
