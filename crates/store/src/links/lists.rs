//! Lists of a user's links (`GET /links`) and the tags on links.
//!
//! A list is one statement: the owner's links (through the partial index `links_owner`),
//! optionally narrowed by a search over URL and alias, by a tag, and ordered by creation
//! or by stored human clicks, resuming after the last item of the previous page (keyset
//! pagination: the position is the sort key and the id, never an offset).
//!
//! Tags live in `link_tags`, one row per link and tag, and are always the owner's: renaming
//! or deleting a tag touches only the links of the owner named.

use crate::sql::{Bind, Sql, bind_all};
use crate::{Result, Store, on_pool};

use super::{CountedLink, LINK_COLUMNS, LINKS_AND_GUARDS, STORED_CLICKS};

/// The orders of a link list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkSort {
    /// Newest first (the default).
    NewestFirst,
    /// Oldest first.
    OldestFirst,
    /// Most stored human clicks first.
    MostClicked,
    /// Fewest stored human clicks first.
    LeastClicked,
}

impl LinkSort {
    fn descending(self) -> bool {
        matches!(self, Self::NewestFirst | Self::MostClicked)
    }

    fn key(self) -> &'static str {
        match self {
            Self::NewestFirst | Self::OldestFirst => "x.created_at",
            Self::MostClicked | Self::LeastClicked => "x.clicks",
        }
    }
}

/// Which links a list holds, in which order, from where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkQuery {
    /// Whose links.
    pub owner_id: String,
    /// Only links whose URL or alias contains this text (without regard to ASCII case).
    pub search: Option<String>,
    /// With a search: also the link of this id when it has no alias (the search text was
    /// a generated code, which is not stored).
    pub search_id: Option<i64>,
    /// Only links carrying this tag.
    pub tag: Option<String>,
    /// Only links of this domain: `Some(None)` the default domain, `Some(Some(name))` a
    /// named one.
    pub domain: Option<Option<String>>,
    /// The order.
    pub sort: LinkSort,
    /// The sort key and id of the previous page's last link (`None`: the first page).
    pub after: Option<(i64, i64)>,
    /// How many links at most.
    pub limit: i64,
}

/// `text` for a `LIKE … ESCAPE '\'` that matches it anywhere, lower-cased.
fn contains_pattern(text: &str) -> String {
    let mut pattern = String::with_capacity(text.len() + 2);
    pattern.push('%');
    for c in text.to_lowercase().chars() {
        if matches!(c, '%' | '_' | '\\') {
            pattern.push('\\');
        }
        pattern.push(c);
    }
    pattern.push('%');
    pattern
}

/// One page of a user's links with their stored human clicks.
///
/// Sharded, every shard database answers the same page and the pages are merged by the
/// sort key and id: the first `limit` of the union are the first `limit` overall, since
/// each shard's page holds its own first `limit`.
pub async fn list(store: &Store, query: &LinkQuery) -> Result<Vec<CountedLink>> {
    let pages = store
        .on_each_link_database(|home| async move { list_here(&home, query).await })
        .await?;
    if pages.len() == 1 {
        return Ok(pages.into_iter().flatten().collect());
    }
    let mut merged: Vec<CountedLink> = pages.into_iter().flatten().collect();
    let key = |l: &CountedLink| match query.sort {
        LinkSort::NewestFirst | LinkSort::OldestFirst => (l.row.created_at, l.row.id),
        LinkSort::MostClicked | LinkSort::LeastClicked => (l.clicks, l.row.id),
    };
    merged.sort_by_key(key);
    if query.sort.descending() {
        merged.reverse();
    }
    merged.truncate(usize::try_from(query.limit).unwrap_or(0));
    Ok(merged)
}

/// [`list`] on one database.
async fn list_here(store: &Store, query: &LinkQuery) -> Result<Vec<CountedLink>> {
    let mut sql = Sql::new("");
    let owner = sql.bind(Bind::Text(query.owner_id.clone()));
    let mut inner = format!(
        "SELECT {LINK_COLUMNS}, {STORED_CLICKS} FROM {LINKS_AND_GUARDS} WHERE l.owner_id = {owner}"
    );
    if let Some(search) = &query.search {
        let pattern = sql.bind(Bind::Text(contains_pattern(search)));
        inner.push_str(&format!(
            " AND (LOWER(l.long_url) LIKE {pattern} ESCAPE '\\' \
             OR LOWER(l.alias) LIKE {pattern} ESCAPE '\\'"
        ));
        if let Some(id) = query.search_id {
            let id = sql.bind(Bind::Int(id));
            inner.push_str(&format!(" OR (l.id = {id} AND l.alias IS NULL)"));
        }
        inner.push(')');
    }
    if let Some(tag) = &query.tag {
        let tag = sql.bind(Bind::Text(tag.clone()));
        inner.push_str(&format!(
            " AND EXISTS (SELECT 1 FROM link_tags t WHERE t.link_id = l.id AND t.tag = {tag})"
        ));
    }
    match &query.domain {
        None => {}
        Some(None) => inner.push_str(" AND l.domain IS NULL"),
        Some(Some(domain)) => {
            let domain = sql.bind(Bind::Text(domain.clone()));
            inner.push_str(&format!(" AND l.domain = {domain}"));
        }
    }
    let key = query.sort.key();
    let (direction, beyond) = if query.sort.descending() {
        ("DESC", "<")
    } else {
        ("ASC", ">")
    };
    let mut text = format!("SELECT * FROM ({inner}) x");
    if let Some((at, id)) = query.after {
        let at = sql.bind(Bind::Int(at));
        let id = sql.bind(Bind::Int(id));
        text.push_str(&format!(" WHERE ({key}, x.id) {beyond} ({at}, {id})"));
    }
    let limit = sql.bind(Bind::Int(query.limit));
    text.push_str(&format!(
        " ORDER BY {key} {direction}, x.id {direction} LIMIT {limit}"
    ));
    sql.push(&text);
    let rows = on_pool!(store, read, pool => {
        bind_all!(sqlx::query_as::<_, CountedLink>(&sql.text), sql)
            .fetch_all(pool)
            .await
    })?;
    Ok(rows)
}

/// The tags of each of `ids`, as `(link id, tag)` ordered by link and tag.
pub async fn tags_of(store: &Store, ids: &[i64]) -> Result<Vec<(i64, String)>> {
    let mut found: Vec<(i64, String)> = store
        .on_link_homes(
            ids.to_vec(),
            |id| *id,
            |home, ids| async move { tags_here(&home, &ids).await },
        )
        .await?
        .into_iter()
        .flatten()
        .collect();
    found.sort();
    Ok(found)
}

/// [`tags_of`] on one database.
async fn tags_here(store: &Store, ids: &[i64]) -> Result<Vec<(i64, String)>> {
    let mut found = Vec::new();
    for chunk in ids.chunks(1000) {
        let mut sql = Sql::new("");
        let marks: Vec<String> = chunk.iter().map(|id| sql.bind(Bind::Int(*id))).collect();
        sql.push(&format!(
            "SELECT link_id, tag FROM link_tags WHERE link_id IN ({}) ORDER BY link_id, tag",
            marks.join(", ")
        ));
        let rows: Vec<(i64, String)> = on_pool!(store, read, pool => {
            bind_all!(sqlx::query_as(&sql.text), sql).fetch_all(pool).await
        })?;
        found.extend(rows);
    }
    Ok(found)
}

/// The titles of those of `ids` that have one, as `(link id, title)`.
pub async fn titles_of(store: &Store, ids: &[i64]) -> Result<Vec<(i64, String)>> {
    Ok(store
        .on_link_homes(
            ids.to_vec(),
            |id| *id,
            |home, ids| async move { titles_here(&home, &ids).await },
        )
        .await?
        .into_iter()
        .flatten()
        .collect())
}

/// [`titles_of`] on one database.
async fn titles_here(store: &Store, ids: &[i64]) -> Result<Vec<(i64, String)>> {
    let mut found = Vec::new();
    for chunk in ids.chunks(1000) {
        let mut sql = Sql::new("");
        let marks: Vec<String> = chunk.iter().map(|id| sql.bind(Bind::Int(*id))).collect();
        sql.push(&format!(
            "SELECT link_id, title FROM link_titles WHERE link_id IN ({})",
            marks.join(", ")
        ));
        let rows: Vec<(i64, String)> = on_pool!(store, read, pool => {
            bind_all!(sqlx::query_as(&sql.text), sql).fetch_all(pool).await
        })?;
        found.extend(rows);
    }
    Ok(found)
}

/// Sets or (with `None`) removes the title of link `id`.
pub async fn set_title(store: &Store, id: i64, title: Option<&str>) -> Result<()> {
    store
        .retry_moved(|| async { set_title_here(&store.link_home(id), id, title).await })
        .await
}

/// [`set_title`] on one database.
async fn set_title_here(store: &Store, id: i64, title: Option<&str>) -> Result<()> {
    on_pool!(store, write, pool => {
        async {
            let mut tx = pool.begin().await?;
            crate::guard_links!(store, tx, [id]);
            match title {
                Some(title) => sqlx::query(
                    "INSERT INTO link_titles (link_id, title) VALUES ($1, $2) \
                     ON CONFLICT (link_id) DO UPDATE SET title = excluded.title",
                )
                .bind(id)
                .bind(title)
                .execute(&mut *tx)
                .await?,
                None => sqlx::query("DELETE FROM link_titles WHERE link_id = $1")
                    .bind(id)
                    .execute(&mut *tx)
                    .await?,
            };
            tx.commit().await
        }
        .await
    })?;
    Ok(())
}

/// Replaces the tags of link `id` by `tags` (already normalised and without duplicates).
pub async fn set_tags(store: &Store, id: i64, tags: &[String]) -> Result<()> {
    store
        .retry_moved(|| async { set_tags_here(&store.link_home(id), id, tags).await })
        .await
}

/// [`set_tags`] on one database.
async fn set_tags_here(store: &Store, id: i64, tags: &[String]) -> Result<()> {
    on_pool!(store, write, pool => {
        async {
            let mut tx = pool.begin().await?;
            crate::guard_links!(store, tx, [id]);
            sqlx::query("DELETE FROM link_tags WHERE link_id = $1")
                .bind(id)
                .execute(&mut *tx)
                .await?;
            for tag in tags {
                sqlx::query("INSERT INTO link_tags (link_id, tag) VALUES ($1, $2)")
                    .bind(id)
                    .bind(tag)
                    .execute(&mut *tx)
                    .await?;
            }
            tx.commit().await
        }
        .await
    })?;
    Ok(())
}

/// A tag of an owner with what it covers.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct TagStats {
    /// The tag.
    pub tag: String,
    /// How many of the owner's links carry it.
    pub links: i64,
    /// The stored human clicks of those links.
    pub clicks: i64,
}

/// Every tag on `owner_id`'s links, by name, with its links and their stored human clicks.
pub async fn tag_stats(store: &Store, owner_id: &str) -> Result<Vec<TagStats>> {
    let parts = store
        .on_each_link_database(|home| async move { tag_stats_here(&home, owner_id).await })
        .await?;
    let mut merged: std::collections::BTreeMap<String, TagStats> = Default::default();
    for stats in parts.into_iter().flatten() {
        let entry = merged.entry(stats.tag.clone()).or_insert(TagStats {
            tag: stats.tag,
            links: 0,
            clicks: 0,
        });
        entry.links += stats.links;
        entry.clicks += stats.clicks;
    }
    Ok(merged.into_values().collect())
}

/// [`tag_stats`] on one database.
async fn tag_stats_here(store: &Store, owner_id: &str) -> Result<Vec<TagStats>> {
    let rows = on_pool!(store, read, pool => {
        sqlx::query_as::<_, TagStats>(
            "SELECT x.tag, CAST(COUNT(*) AS BIGINT) AS links, \
             CAST(COALESCE(SUM(x.clicks), 0) AS BIGINT) AS clicks \
             FROM (SELECT t.tag, (SELECT COALESCE(SUM(d.clicks), 0) FROM link_daily_clicks d \
                                  WHERE d.link_id = t.link_id) AS clicks \
                   FROM link_tags t JOIN links l ON l.id = t.link_id \
                   WHERE l.owner_id = $1) x \
             GROUP BY x.tag ORDER BY x.tag",
        )
        .bind(owner_id)
        .fetch_all(pool)
        .await
    })?;
    Ok(rows)
}

/// Renames tag `from` to `to` on `owner_id`'s links (a link that had both keeps one);
/// answers how many links carried `from`.
pub async fn rename_tag(store: &Store, owner_id: &str, from: &str, to: &str) -> Result<u64> {
    let parts = store
        .on_each_link_database(
            |home| async move { rename_tag_here(&home, owner_id, from, to).await },
        )
        .await?;
    Ok(parts.into_iter().sum())
}

/// [`rename_tag`] on one database.
async fn rename_tag_here(store: &Store, owner_id: &str, from: &str, to: &str) -> Result<u64> {
    let moved = on_pool!(store, write, pool => {
        async {
            let mut tx = pool.begin().await?;
            sqlx::query(
                "INSERT INTO link_tags (link_id, tag) \
                 SELECT t.link_id, $3 FROM link_tags t JOIN links l ON l.id = t.link_id \
                 WHERE l.owner_id = $1 AND t.tag = $2 \
                 ON CONFLICT (link_id, tag) DO NOTHING",
            )
            .bind(owner_id)
            .bind(from)
            .bind(to)
            .execute(&mut *tx)
            .await?;
            let moved = sqlx::query(DELETE_TAG)
                .bind(owner_id)
                .bind(from)
                .execute(&mut *tx)
                .await?
                .rows_affected();
            tx.commit().await?;
            Ok::<_, sqlx::Error>(moved)
        }
        .await
    })?;
    Ok(moved)
}

/// Removes tag `tag` from `owner_id`'s links (the links stay); answers how many had it.
pub async fn delete_tag(store: &Store, owner_id: &str, tag: &str) -> Result<u64> {
    let parts = store
        .on_each_link_database(|home| async move {
            let gone = on_pool!(home, write, pool => {
                sqlx::query(DELETE_TAG)
                    .bind(owner_id)
                    .bind(tag)
                    .execute(pool)
                    .await
                    .map(|done| done.rows_affected())
            })?;
            Ok(gone)
        })
        .await?;
    Ok(parts.into_iter().sum())
}

/// Removes tag `$2` from the links of owner `$1`.
const DELETE_TAG: &str = "DELETE FROM link_tags WHERE tag = $2 \
                          AND link_id IN (SELECT id FROM links WHERE owner_id = $1)";

/// Which of `aliases` are taken on `domain` (`None`: the default domain).
pub async fn taken_aliases(
    store: &Store,
    aliases: &[&str],
    domain: Option<&str>,
) -> Result<Vec<String>> {
    if store.link_shards().is_some() {
        return super::alias_index::taken(store, aliases, domain).await;
    }
    let mut taken = Vec::new();
    for chunk in aliases.chunks(1000) {
        let mut sql = Sql::new("");
        let marks: Vec<String> = chunk
            .iter()
            .map(|a| sql.bind(Bind::Text((*a).to_owned())))
            .collect();
        let in_domain = match domain {
            None => "domain IS NULL".to_owned(),
            Some(domain) => format!("domain = {}", sql.bind(Bind::Text(domain.to_owned()))),
        };
        sql.push(&format!(
            "SELECT alias FROM links WHERE alias IN ({}) AND {in_domain}",
            marks.join(", ")
        ));
        let rows: Vec<(String,)> = on_pool!(store, read, pool => {
            bind_all!(sqlx::query_as(&sql.text), sql).fetch_all(pool).await
        })?;
        taken.extend(rows.into_iter().map(|(a,)| a));
    }
    Ok(taken)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_search_pattern_matches_its_text_literally_anywhere() {
        assert_eq!(contains_pattern("Ab"), "%ab%");
        assert_eq!(contains_pattern("50%_off\\"), "%50\\%\\_off\\\\%");
    }
}
