//! The blog's posts: rows, tags and categories, the filtered and sorted lists, and search.
//!
//! (Over 400 lines: the list query builder for two engines and its injection tests are most
//! of it; splitting them would separate a query from the test that pins it.)
//!
//! Reads make a fixed number of round trips whatever the page size: one for the posts
//! (author names and comment counts come from correlated subqueries in the same statement)
//! and one for the tags of every post on the page. Writes change a post, its category and
//! its tags in one transaction, guarded by the post's `version` when the caller read it first
//! (compare-and-set: the HTTP layer's `If-Match`).
//!
//! Full-text search is the one place where the engines differ: FTS5 with bm25 on SQLite,
//! a generated `tsvector` with a GIN index and `ts_rank` on PostgreSQL.

use std::collections::HashMap;

use crate::sql::{Bind, Sql, bind_all};
use crate::{Engine, Result, Store, on_foreign_key, on_pool};

/// The columns of a full post; `p` is `posts`.
const POST_COLUMNS: &str = "p.id, p.author_id, \
    (SELECT u.name FROM users u WHERE u.id = p.author_id) AS author_name, \
    p.title, p.body, p.body_html, p.category, p.status, p.created_at, p.updated_at, p.version, \
    (SELECT COUNT(*) FROM comments c WHERE c.post_id = p.id) AS comment_count";

/// How much of a body a list item carries, in characters: enough for an excerpt.
pub const BODY_START_CHARS: i64 = 400;

/// The columns of a list item (no bodies, only their start for an excerpt).
const SUMMARY_COLUMNS: &str = "p.id, p.author_id, \
    (SELECT u.name FROM users u WHERE u.id = p.author_id) AS author_name, \
    p.title, p.category, p.status, p.created_at, p.updated_at, \
    (SELECT COUNT(*) FROM comments c WHERE c.post_id = p.id) AS comment_count, \
    SUBSTR(p.body, 1, 400) AS body_start";

/// A stored post with its author's name, tags and comment count.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct PostRow {
    /// The id.
    pub id: i64,
    /// The author's user id.
    pub author_id: String,
    /// The author's display name.
    pub author_name: String,
    /// Plain-text title.
    pub title: String,
    /// Markdown body.
    pub body: String,
    /// Sanitised HTML rendered from the body.
    pub body_html: String,
    /// The category, if any.
    pub category: Option<String>,
    /// `draft` or `published`.
    pub status: String,
    /// Creation time, Unix ms.
    pub created_at: i64,
    /// Last change, Unix ms.
    pub updated_at: i64,
    /// Bumped by every change.
    pub version: i64,
    /// Comments on the post.
    pub comment_count: i64,
    /// Tags, sorted.
    #[sqlx(skip)]
    pub tags: Vec<String>,
}

/// A post as lists show it.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct PostSummaryRow {
    /// The id.
    pub id: i64,
    /// The author's user id.
    pub author_id: String,
    /// The author's display name.
    pub author_name: String,
    /// Plain-text title.
    pub title: String,
    /// The category, if any.
    pub category: Option<String>,
    /// `draft` or `published`.
    pub status: String,
    /// Creation time, Unix ms.
    pub created_at: i64,
    /// Last change, Unix ms.
    pub updated_at: i64,
    /// Comments on the post.
    pub comment_count: i64,
    /// The first [`BODY_START_CHARS`] characters of the Markdown body (for an excerpt).
    pub body_start: String,
    /// Tags, sorted.
    #[sqlx(skip)]
    pub tags: Vec<String>,
}

/// The fields a client writes (create, replace).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PostFields {
    /// Plain-text title.
    pub title: String,
    /// Markdown body.
    pub body: String,
    /// Sanitised HTML of the body.
    pub body_html: String,
    /// Category name (normalised).
    pub category: Option<String>,
    /// Tag names (normalised, distinct).
    pub tags: Vec<String>,
    /// `draft` or `published`.
    pub status: String,
}

/// The order of a list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sort {
    /// Newest first (the default).
    NewestFirst,
    /// Oldest first.
    OldestFirst,
    /// By title, A to Z.
    TitleAsc,
    /// By title, Z to A.
    TitleDesc,
    /// Best search match first (only with a search).
    Relevance,
}

/// Where a page starts: after this item of the previous page, in the list's order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum After {
    /// The first page.
    Start,
    /// After the post created at `created_at` with `id` (date orders).
    Date {
        /// Creation time of the last item seen.
        created_at: i64,
        /// Its id.
        id: i64,
    },
    /// After the post titled `title` with `id` (title orders).
    Title {
        /// Title of the last item seen.
        title: String,
        /// Its id.
        id: i64,
    },
    /// After `offset` items (relevance order, whose scores are not stable keys).
    Offset(i64),
}

/// A list request: every filter is optional except the status.
#[derive(Debug, Clone)]
pub struct PostQuery {
    /// Only this author's posts.
    pub author: Option<String>,
    /// Only posts in this category.
    pub category: Option<String>,
    /// Only posts with this tag.
    pub tag: Option<String>,
    /// Only posts in this status.
    pub status: String,
    /// Full-text search terms, as the user typed them.
    pub search: Option<String>,
    /// The order.
    pub sort: Sort,
    /// Where the page starts.
    pub after: After,
    /// Page size.
    pub limit: i64,
}

/// The statement that lists posts for `query`, or `None` when the search has no terms.
fn list_sql(engine: Engine, query: &PostQuery) -> Option<Sql> {
    let mut sql = Sql::new(&format!("SELECT {SUMMARY_COLUMNS} FROM posts p"));
    let terms = match &query.search {
        Some(text) => Some(match engine {
            Engine::Sqlite => fts5_terms(text)?,
            Engine::Postgres => text.clone(),
        }),
        None => None,
    };
    if terms.is_some() && engine == Engine::Sqlite {
        sql.push(" JOIN posts_fts ON posts_fts.rowid = p.id");
    }
    let status = sql.bind(Bind::Text(query.status.clone()));
    sql.push(&format!(" WHERE p.status = {status}"));
    if let Some(author) = &query.author {
        let p = sql.bind(Bind::Text(author.clone()));
        sql.push(&format!(" AND p.author_id = {p}"));
    }
    if let Some(category) = &query.category {
        let p = sql.bind(Bind::Text(category.clone()));
        sql.push(&format!(" AND p.category = {p}"));
    }
    if let Some(tag) = &query.tag {
        let p = sql.bind(Bind::Text(tag.clone()));
        sql.push(&format!(
            " AND p.id IN (SELECT t.post_id FROM post_tags t WHERE t.tag = {p})"
        ));
    }
    let mut tsquery = None;
    if let Some(terms) = terms {
        let p = sql.bind(Bind::Text(terms));
        match engine {
            Engine::Sqlite => {
                sql.push(&format!(" AND posts_fts MATCH {p}"));
            }
            Engine::Postgres => {
                sql.push(&format!(" AND p.search @@ plainto_tsquery('english', {p})"));
                tsquery = Some(p);
            }
        }
    }
    match &query.after {
        After::Start | After::Offset(_) => {}
        After::Date { created_at, id } => {
            let c = sql.bind(Bind::Int(*created_at));
            let i = sql.bind(Bind::Int(*id));
            let op = if query.sort == Sort::OldestFirst {
                ">"
            } else {
                "<"
            };
            sql.push(&format!(" AND (p.created_at, p.id) {op} ({c}, {i})"));
        }
        After::Title { title, id } => {
            let t = sql.bind(Bind::Text(title.clone()));
            let i = sql.bind(Bind::Int(*id));
            let op = if query.sort == Sort::TitleDesc {
                "<"
            } else {
                ">"
            };
            sql.push(&format!(" AND (p.title, p.id) {op} ({t}, {i})"));
        }
    }
    let order = match (query.sort, engine, &tsquery) {
        (Sort::NewestFirst, ..) => " ORDER BY p.created_at DESC, p.id DESC".to_owned(),
        (Sort::OldestFirst, ..) => " ORDER BY p.created_at, p.id".to_owned(),
        (Sort::TitleAsc, ..) => " ORDER BY p.title, p.id".to_owned(),
        (Sort::TitleDesc, ..) => " ORDER BY p.title DESC, p.id DESC".to_owned(),
        // Title matches weigh ten times body matches; bm25 is lower for better matches.
        (Sort::Relevance, Engine::Sqlite, _) => {
            " ORDER BY bm25(posts_fts, 10.0, 1.0), p.id DESC".to_owned()
        }
        (Sort::Relevance, Engine::Postgres, Some(p)) => {
            format!(" ORDER BY ts_rank(p.search, plainto_tsquery('english', {p})) DESC, p.id DESC")
        }
        (Sort::Relevance, Engine::Postgres, None) => {
            " ORDER BY p.created_at DESC, p.id DESC".to_owned()
        }
    };
    sql.push(&order);
    let limit = sql.bind(Bind::Int(query.limit));
    sql.push(&format!(" LIMIT {limit}"));
    if let After::Offset(offset) = query.after {
        let o = sql.bind(Bind::Int(offset));
        sql.push(&format!(" OFFSET {o}"));
    }
    Some(sql)
}

/// The user's words as an FTS5 query that cannot be a syntax error: each word quoted (all
/// must match, each by its stem). `None` when there is no word to look for.
fn fts5_terms(text: &str) -> Option<String> {
    let words: Vec<String> = text
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .take(32)
        .map(|w| format!("\"{w}\""))
        .collect();
    (!words.is_empty()).then(|| words.join(" "))
}

/// One page of posts for `query`, with their tags (two round trips).
pub async fn list(store: &Store, query: &PostQuery) -> Result<Vec<PostSummaryRow>> {
    let Some(sql) = list_sql(store.engine(), query) else {
        return Ok(Vec::new());
    };
    let mut rows: Vec<PostSummaryRow> = on_pool!(store, read, pool => {
        bind_all!(sqlx::query_as::<_, PostSummaryRow>(&sql.text), sql).fetch_all(pool).await
    })?;
    let ids: Vec<i64> = rows.iter().map(|r| r.id).collect();
    let mut tags = tags_of(store, &ids).await?;
    for row in &mut rows {
        row.tags = tags.remove(&row.id).unwrap_or_default();
    }
    Ok(rows)
}

/// The planner's description of the list statement for `query` (`EXPLAIN QUERY PLAN` on
/// SQLite; `EXPLAIN` with sequential scans discouraged on PostgreSQL, so the plan shows
/// whether an index *can* serve the query rather than what a tiny table makes cheapest).
pub async fn explain_list(store: &Store, query: &PostQuery) -> Result<Vec<String>> {
    let Some(sql) = list_sql(store.engine(), query) else {
        return Ok(Vec::new());
    };
    let lines = match store.pools() {
        crate::Pools::Sqlite { read, .. } => {
            let text = format!("EXPLAIN QUERY PLAN {}", sql.text);
            let rows: Vec<(i64, i64, i64, String)> = bind_all!(sqlx::query_as(&text), sql)
                .fetch_all(read)
                .await?;
            rows.into_iter().map(|r| r.3).collect()
        }
        crate::Pools::Postgres { read, .. } => {
            let mut tx = read.begin().await?;
            sqlx::query("SET LOCAL enable_seqscan = off")
                .execute(&mut *tx)
                .await?;
            let text = format!("EXPLAIN {}", sql.text);
            let rows: Vec<(String,)> = bind_all!(sqlx::query_as(&text), sql)
                .fetch_all(&mut *tx)
                .await?;
            tx.rollback().await?;
            rows.into_iter().map(|r| r.0).collect()
        }
    };
    Ok(lines)
}

/// The tags of each post in `ids`, sorted (one round trip; none for an empty page).
async fn tags_of(store: &Store, ids: &[i64]) -> Result<HashMap<i64, Vec<String>>> {
    let mut tags: HashMap<i64, Vec<String>> = HashMap::new();
    if ids.is_empty() {
        return Ok(tags);
    }
    let mut sql = Sql::new("SELECT post_id, tag FROM post_tags WHERE post_id IN (");
    for (n, id) in ids.iter().enumerate() {
        let p = sql.bind(Bind::Int(*id));
        sql.push(if n == 0 { "" } else { ", " }).push(&p);
    }
    sql.push(") ORDER BY post_id, tag");
    let rows: Vec<(i64, String)> = on_pool!(store, read, pool => {
        bind_all!(sqlx::query_as(&sql.text), sql).fetch_all(pool).await
    })?;
    for (post_id, tag) in rows {
        tags.entry(post_id).or_default().push(tag);
    }
    Ok(tags)
}

/// The post with this id, with its tags.
pub async fn find(store: &Store, id: i64) -> Result<Option<PostRow>> {
    let sql = format!("SELECT {POST_COLUMNS} FROM posts p WHERE p.id = $1");
    let row: Option<PostRow> = on_pool!(store, write, pool => {
        sqlx::query_as::<_, PostRow>(&sql).bind(id).fetch_optional(pool).await
    })?;
    let Some(mut row) = row else {
        return Ok(None);
    };
    row.tags = tags_of(store, &[id]).await?.remove(&id).unwrap_or_default();
    Ok(Some(row))
}

/// Inserts a post by `author_id` at `now`, returning its id. An author that no longer exists
/// (an account deleted while its access token lives on) is `MissingReference("author")`.
pub async fn insert(store: &Store, author_id: &str, fields: &PostFields, now: i64) -> Result<i64> {
    let id = on_pool!(store, write, pool => {
        async {
            let mut tx = pool.begin().await?;
            if let Some(category) = &fields.category {
                sqlx::query("INSERT INTO categories (name) VALUES ($1) ON CONFLICT (name) DO NOTHING")
                    .bind(category)
                    .execute(&mut *tx)
                    .await?;
            }
            let id: i64 = sqlx::query_scalar(
                "INSERT INTO posts (author_id, title, body, body_html, category, status, created_at, updated_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $7) RETURNING id",
            )
            .bind(author_id)
            .bind(&fields.title)
            .bind(&fields.body)
            .bind(&fields.body_html)
            .bind(&fields.category)
            .bind(&fields.status)
            .bind(now)
            .fetch_one(&mut *tx)
            .await?;
            for tag in &fields.tags {
                sqlx::query("INSERT INTO tags (name) VALUES ($1) ON CONFLICT (name) DO NOTHING")
                    .bind(tag)
                    .execute(&mut *tx)
                    .await?;
                sqlx::query("INSERT INTO post_tags (post_id, tag) VALUES ($1, $2)")
                    .bind(id)
                    .bind(tag)
                    .execute(&mut *tx)
                    .await?;
            }
            tx.commit().await?;
            Ok::<_, sqlx::Error>(id)
        }
        .await
    })
    .map_err(|e| on_foreign_key(e, "author"))?;
    Ok(id)
}

/// Replaces the fields of post `id` if it is still at `version`. Returns `false` when the
/// post is gone or was changed meanwhile (nothing is written then).
pub async fn replace(
    store: &Store,
    id: i64,
    version: i64,
    fields: &PostFields,
    now: i64,
) -> Result<bool> {
    let replaced = on_pool!(store, write, pool => {
        async {
            let mut tx = pool.begin().await?;
            if let Some(category) = &fields.category {
                sqlx::query("INSERT INTO categories (name) VALUES ($1) ON CONFLICT (name) DO NOTHING")
                    .bind(category)
                    .execute(&mut *tx)
                    .await?;
            }
            let updated = sqlx::query(
                "UPDATE posts SET title = $3, body = $4, body_html = $5, category = $6, status = $7, \
                 updated_at = $8, version = version + 1 WHERE id = $1 AND version = $2",
            )
            .bind(id)
            .bind(version)
            .bind(&fields.title)
            .bind(&fields.body)
            .bind(&fields.body_html)
            .bind(&fields.category)
            .bind(&fields.status)
            .bind(now)
            .execute(&mut *tx)
            .await?;
            if updated.rows_affected() == 0 {
                tx.rollback().await?;
                return Ok::<_, sqlx::Error>(false);
            }
            sqlx::query("DELETE FROM post_tags WHERE post_id = $1")
                .bind(id)
                .execute(&mut *tx)
                .await?;
            for tag in &fields.tags {
                sqlx::query("INSERT INTO tags (name) VALUES ($1) ON CONFLICT (name) DO NOTHING")
                    .bind(tag)
                    .execute(&mut *tx)
                    .await?;
                sqlx::query("INSERT INTO post_tags (post_id, tag) VALUES ($1, $2)")
                    .bind(id)
                    .bind(tag)
                    .execute(&mut *tx)
                    .await?;
            }
            tx.commit().await?;
            Ok(true)
        }
        .await
    })?;
    Ok(replaced)
}

/// Deletes post `id` (and, by cascade, its comments and tag links) if it is still at
/// `version`. Returns whether a post was deleted.
pub async fn delete(store: &Store, id: i64, version: i64) -> Result<bool> {
    let done = on_pool!(store, write, pool => {
        sqlx::query("DELETE FROM posts WHERE id = $1 AND version = $2")
            .bind(id)
            .bind(version)
            .execute(pool)
            .await
            .map(|done| done.rows_affected())
    })?;
    Ok(done > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn list_items_carry_as_much_of_the_body_as_the_constant_says() {
        assert!(SUMMARY_COLUMNS.contains(&format!("SUBSTR(p.body, 1, {BODY_START_CHARS})")));
    }

    #[test]
    fn search_words_are_quoted_so_operators_are_plain_words() {
        assert_eq!(
            fts5_terms("rust OR \"x\" NEAR(a b) col:val*").as_deref(),
            Some("\"rust\" \"OR\" \"x\" \"NEAR\" \"a\" \"b\" \"col\" \"val\"")
        );
        assert_eq!(fts5_terms("' -- ;"), None);
    }

    #[test]
    fn every_user_value_in_a_list_is_a_bound_parameter() {
        let evil = "admin' OR '1'='1".to_owned();
        let query = PostQuery {
            author: Some(evil.clone()),
            category: Some(evil.clone()),
            tag: Some(evil.clone()),
            status: evil.clone(),
            search: Some(evil.clone()),
            sort: Sort::TitleAsc,
            after: After::Title {
                title: evil.clone(),
                id: 1,
            },
            limit: 20,
        };
        for engine in [Engine::Sqlite, Engine::Postgres] {
            let sql = list_sql(engine, &query).expect("a statement");
            assert!(!sql.text.contains("admin"), "{}", sql.text);
            assert!(sql.binds.contains(&Bind::Text(evil.clone())));
        }
    }
}
