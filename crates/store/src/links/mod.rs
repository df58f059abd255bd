//! The shortener's repository: links and their click aggregates.
//!
//! (Over 400 lines: every query of the links table and its guards, with the hashing rule
//! they share; clicks and migrated codes are already apart.)
//!
//! # Where a link's fields live
//!
//! `links` holds what every link has: id, creation time, redirect type, URL, alias and
//! owner. Expiry, click limit and password, which few links have, live in `link_guards`
//! (a row only while one of them is set), joined on every read. The click count is not
//! stored on the link: it is the sum of the link's per-day rows in `link_daily_clicks`
//! (human clicks; bots are counted apart), read by [`find_counted`]. So a `links` row is
//! written once and changed only by an edit. Migration 0006 gives the reasons, in bytes:
//! with every plain link in the reuse index, a PostgreSQL row must stay under 200.
//!
//! # How a link is found
//!
//! A generated code is not stored: it is the link's id through a keyed permutation, and the
//! server decodes it back to the id ([`LinkKey::Id`]), so that lookup is a primary-key
//! lookup. A custom alias is stored in `alias`, under a partial unique index that holds
//! aliased links only ([`LinkKey::Alias`]). [`LinkKey::IdOrAlias`] serves the few aliases
//! made before migration 0004 that have the shape of a generated code.
//!
//! # Reuse
//!
//! Every plain link (no alias, no guard, redirect type 301) is a reuse candidate for a
//! later request with the same URL and owner, however it was created ([`find_reusable`]).
//! A reuse request that finds none inserts through [`insert_unless_reusable`], which looks
//! again and inserts as one step, so simultaneous requests for a new URL share one link.
//! The reuse index holds every link without an alias, keyed by a hash of the URL; a match
//! is checked against the full URL and the guards. PostgreSQL indexes the expression
//! `hashtext(long_url)`, which it computes itself. SQLite has no hash function, so this
//! module writes [`url_hash`] into a `url_hash` column whenever it writes a URL.
//!
//! # Sharded links
//!
//! With shard databases ([`crate::link_shards`]), every function here routes: one link's
//! operations go to the database of its logical shard, an alias is first looked up in the
//! catalog's index ([`alias_index`]), and operations over many links ask every shard at once
//! and merge. The `*_here` functions are the single-database versions they route to.
//!
//! # Elsewhere
//!
//! The per-day, per-referrer and per-device counters are in `clicks`, the visit log (rows
//! written with the click batches) in `visits`, and the rows a migration could not finish
//! in SQL (codes of 0004, URL hashes of 0006) in `migrated`; all are re-exported here.

use std::borrow::Cow;
use std::collections::HashSet;

use crate::outbox::{self, NewEvent, OutboxConn};
use crate::{Engine, Result, Store, on_pool, on_unique};

mod alias_index;
mod clicks;
mod lists;
mod migrated;
mod visits;
pub use clicks::{
    BOT_DEVICE, ClickBatch, LINK_CLICKED, LinkClicks, LinkStats, add_to_day, applied_batches,
    applied_parts, apply_clicks, apply_clicks_once, prune_applied_batches, stats,
};
pub use lists::{
    LinkQuery, LinkSort, TagStats, delete_tag, list, rename_tag, set_tags, set_title, tag_stats,
    tags_of, taken_aliases, titles_of,
};
pub(crate) use migrated::fill_pending_hashes;
pub use migrated::{aliases_of_length, pending_codes, settle_pending_codes};
pub use visits::{
    Bots, Visit, VisitBreakdown, VisitQuery, list_visits, prune_visits, visit_breakdown,
};

/// The columns every link query returns; `l` is `links` and `g` its `link_guards` row.
const LINK_COLUMNS: &str = "l.id, l.alias, l.long_url, l.created_at, g.expires_at, g.max_clicks, \
                            l.redirect_type, g.password_hash, l.owner_id, g.rules, l.domain";
/// Links with their guards, if any.
const LINKS_AND_GUARDS: &str = "links l LEFT JOIN link_guards g ON g.link_id = l.id";
/// The stored human clicks of link `l`, as the column `clicks` of a [`CountedLink`].
const STORED_CLICKS: &str = "(SELECT CAST(COALESCE(SUM(d.clicks), 0) AS BIGINT) \
                             FROM link_daily_clicks d WHERE d.link_id = l.id) AS clicks";
/// Rows inserted per statement by [`insert_many`] (7 parameters each, far below either
/// engine's limit).
const ROWS_PER_INSERT: usize = 1000;

/// The day row (`day = -1`) that holds the clicks migration 0006 carried over from a stored
/// count that its per-day rows did not add up to: counted in a link's total, left out of
/// every per-day list. Real days are never negative.
pub const CARRIED_DAY: i64 = -1;

/// A link, as stored and as inserted.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow, serde::Serialize, serde::Deserialize)]
pub struct LinkRow {
    /// Internal id; a link without an alias is reached by the code derived from it.
    pub id: i64,
    /// The custom alias, if the link was created with one.
    pub alias: Option<String>,
    /// Where the link redirects.
    pub long_url: String,
    /// Creation time, Unix milliseconds.
    pub created_at: i64,
    /// When the link stops redirecting, Unix milliseconds.
    pub expires_at: Option<i64>,
    /// How many human clicks the link allows.
    pub max_clicks: Option<i64>,
    /// The redirect status: 301, 302, 307 or 308.
    pub redirect_type: i16,
    /// The argon2id PHC string of the link's password, if it has one.
    pub password_hash: Option<String>,
    /// The owning user, if the link was created by one.
    pub owner_id: Option<String>,
    /// Its routing rules (JSON the server validated), if it has any.
    pub rules: Option<String>,
    /// The domain it belongs to; `None` for the default domain (the base URL's host).
    #[serde(default)]
    pub domain: Option<String>,
}

impl LinkRow {
    /// Whether the link has an expiry, a click limit, a password or routing rules (a
    /// `link_guards` row).
    pub fn is_guarded(&self) -> bool {
        guarded(
            self.expires_at,
            self.max_clicks,
            &self.password_hash,
            &self.rules,
        )
    }
}

/// A link with its stored human clicks, read in one statement so the two agree.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct CountedLink {
    /// The link.
    #[sqlx(flatten)]
    pub row: LinkRow,
    /// Human clicks stored so far: the sum of the link's per-day rows.
    pub clicks: i64,
}

/// How a lookup names a link.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkKey<'a> {
    /// A generated code, decoded to its id: only links without an alias match.
    Id(i64),
    /// A custom alias.
    Alias(&'a str),
    /// Either of the two: for a code that decodes to an id held back for an old alias of
    /// the same shape (see the server's `links::legacy`).
    IdOrAlias(i64, &'a str),
}

/// The mutable fields of a link, written as a whole by [`update`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkUpdate {
    /// Where the link redirects.
    pub long_url: String,
    /// Expiry, Unix milliseconds.
    pub expires_at: Option<i64>,
    /// Click limit.
    pub max_clicks: Option<i64>,
    /// Redirect status.
    pub redirect_type: i16,
    /// Password hash (argon2id PHC string).
    pub password_hash: Option<String>,
    /// Routing rules (JSON).
    pub rules: Option<String>,
}

fn guarded(
    expires_at: Option<i64>,
    max_clicks: Option<i64>,
    password: &Option<String>,
    rules: &Option<String>,
) -> bool {
    expires_at.is_some() || max_clicks.is_some() || password.is_some() || rules.is_some()
}

/// The hash of a URL that SQLite's reuse index is keyed by: 64-bit FNV-1a of the URL's
/// bytes. Stable across releases and machines (unlike `std`'s hasher), since it is stored.
pub fn url_hash(url: &str) -> i64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in url.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h as i64
}

/// Whether this store writes [`url_hash`] next to each URL (SQLite; PostgreSQL hashes in
/// its index).
fn stores_url_hash(store: &Store) -> bool {
    store.engine() == Engine::Sqlite
}

/// `(…), (…)` with `rows` groups of `columns` placeholders: numbered (`$1, $2, …`) on
/// PostgreSQL, anonymous (`?`) on SQLite. SQLite finds a numbered parameter's name by a
/// linear scan and the driver asks for every parameter's name as it binds, so thousands of
/// numbered parameters in one statement cost time quadratic in their count (half of the
/// server's time in a 1,000-link bulk insert); anonymous ones have no name to look up.
pub(crate) fn placeholders(engine: Engine, rows: usize, columns: usize) -> String {
    (0..rows)
        .map(|r| {
            let marks: Vec<String> = (1..=columns)
                .map(|c| match engine {
                    Engine::Sqlite => "?".to_owned(),
                    Engine::Postgres => format!("${}", r * columns + c),
                })
                .collect();
            format!("({})", marks.join(", "))
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// `INSERT INTO links …` for `rows` links.
fn links_insert(engine: Engine, rows: usize, hashed: bool) -> String {
    let (columns, count) = if hashed {
        (
            "id, created_at, redirect_type, long_url, alias, owner_id, domain, url_hash",
            8,
        )
    } else {
        (
            "id, created_at, redirect_type, long_url, alias, owner_id, domain",
            7,
        )
    };
    format!(
        "INSERT INTO links ({columns}) VALUES {}",
        placeholders(engine, rows, count)
    )
}

/// `INSERT INTO link_guards …` for `rows` links.
fn guards_insert(engine: Engine, rows: usize) -> String {
    format!(
        "INSERT INTO link_guards (link_id, expires_at, max_clicks, password_hash, rules) \
         VALUES {}",
        placeholders(engine, rows, 5)
    )
}

/// Binds the `links` columns of each link of `$chunk`, in [`links_insert`]'s order.
macro_rules! bind_links {
    ($query:expr, $chunk:expr, $hashed:expr) => {{
        let mut query = $query;
        for link in $chunk {
            query = query
                .bind(link.id)
                .bind(link.created_at)
                .bind(link.redirect_type)
                .bind(&link.long_url)
                .bind(&link.alias)
                .bind(&link.owner_id)
                .bind(&link.domain);
            if $hashed {
                query = query.bind(url_hash(&link.long_url));
            }
        }
        query
    }};
}

/// Binds the `link_guards` columns of each link of `$chunk`, in [`guards_insert`]'s order.
macro_rules! bind_guards {
    ($query:expr, $chunk:expr) => {{
        let mut query = $query;
        for link in $chunk {
            query = query
                .bind(link.id)
                .bind(link.expires_at)
                .bind(link.max_clicks)
                .bind(&link.password_hash)
                .bind(&link.rules);
        }
        query
    }};
}

/// Binds [`reusable_query`]'s parameters: the URL, the owner, the domain and, on SQLite,
/// the hash.
macro_rules! bind_reusable {
    ($query:expr, $url:expr, $owner:expr, $domain:expr, $hash:expr) => {{
        let query = $query.bind($url).bind($owner).bind($domain);
        match $hash {
            Some(hash) => query.bind(hash),
            None => query,
        }
    }};
}

/// Inserts a link. A taken alias is [`Error::Conflict`]`("alias")`.
pub async fn insert(store: &Store, link: &LinkRow) -> Result<()> {
    insert_many(store, std::slice::from_ref(link)).await
}

/// Inserts links in one transaction, with a `link.created` outbox event per link. A taken alias is [`Error::Conflict`]`("alias")` and inserts nothing.
/// [`insert`] is this for one link, so a bulk load (the storage bench) writes exactly the
/// rows the server writes.
pub async fn insert_many(store: &Store, links: &[LinkRow]) -> Result<()> {
    insert_with(store, links, &Extras::default()).await
}

/// What a link may have beside its row, written with it by [`insert_with`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Extras {
    /// `(link id, tag)`, no duplicates.
    pub tags: Vec<(i64, String)>,
    /// `(link id, title)`, one per link at most.
    pub titles: Vec<(i64, String)>,
}

/// [`insert_many`], with the links' `extras` written in the same transaction: all of it or
/// none.
///
/// Sharded, the aliases are claimed in the catalog first (a taken one refuses the whole and
/// writes nothing), then each shard database writes its links in one transaction. When one
/// of them fails, the links the others wrote are deleted again (announced as deleted) and
/// the aliases released, so a refused batch leaves nothing behind.
pub async fn insert_with(store: &Store, links: &[LinkRow], extras: &Extras) -> Result<()> {
    if links.is_empty() {
        return Ok(());
    }
    if store.link_shards().is_none() {
        return insert_here(store, links, extras).await;
    }
    let aliased: Vec<&LinkRow> = links.iter().filter(|l| l.alias.is_some()).collect();
    if !aliased.is_empty() {
        alias_index::claim(store, &aliased).await?;
    }
    let written = store
        .on_link_homes(
            links.to_vec(),
            |l| l.id,
            |home, group| async move {
                let ids: HashSet<i64> = group.iter().map(|l| l.id).collect();
                let mine = |pairs: &[(i64, String)]| -> Vec<(i64, String)> {
                    pairs
                        .iter()
                        .filter(|(id, _)| ids.contains(id))
                        .cloned()
                        .collect()
                };
                let extras = Extras {
                    tags: mine(&extras.tags),
                    titles: mine(&extras.titles),
                };
                insert_here(&home, &group, &extras).await
            },
        )
        .await;
    if let Err(err) = written {
        let ids: Vec<i64> = links.iter().map(|l| l.id).collect();
        let now = links.iter().map(|l| l.created_at).max().unwrap_or_default();
        // Best effort: the error that matters is the one being returned.
        let _ = store
            .on_link_homes(
                ids,
                |id| *id,
                |home, ids| async move {
                    for id in ids {
                        delete_here(&home, id, now).await?;
                    }
                    Ok(())
                },
            )
            .await;
        let claims: Vec<(i64, String, Option<String>)> = aliased
            .iter()
            .map(|l| (l.id, l.alias.clone().unwrap_or_default(), l.domain.clone()))
            .collect();
        let _ = alias_index::release(store, &claims).await;
        return Err(err);
    }
    Ok(())
}

/// [`insert_with`] on one database.
async fn insert_here(store: &Store, links: &[LinkRow], extras: &Extras) -> Result<()> {
    let (tags, titles) = (&extras.tags, &extras.titles);
    let engine = store.engine();
    let hashed = stores_url_hash(store);
    let guarded: Vec<&LinkRow> = links.iter().filter(|l| l.is_guarded()).collect();
    on_pool!(store, write, pool => {
        async {
            let mut tx = pool.begin().await?;
            crate::guard_links!(store, tx, links.iter().map(|l| l.id));
            for chunk in links.chunks(ROWS_PER_INSERT) {
                let sql = links_insert(engine, chunk.len(), hashed);
                bind_links!(sqlx::query(&sql), chunk, hashed).execute(&mut *tx).await?;
            }
            for chunk in guarded.chunks(ROWS_PER_INSERT) {
                let sql = guards_insert(engine, chunk.len());
                bind_guards!(sqlx::query(&sql), chunk).execute(&mut *tx).await?;
            }
            for (table, pairs) in [("link_tags (link_id, tag)", tags), ("link_titles (link_id, title)", titles)] {
                for chunk in pairs.chunks(ROWS_PER_INSERT) {
                    let sql = format!(
                        "INSERT INTO {table} VALUES {}",
                        placeholders(engine, chunk.len(), 2)
                    );
                    let mut query = sqlx::query(&sql);
                    for (id, text) in chunk {
                        query = query.bind(*id).bind(text.as_str());
                    }
                    query.execute(&mut *tx).await?;
                }
            }
            let events: Vec<NewEvent> = links.iter().map(created_event).collect();
            tx.append_many(&events).await?;
            tx.commit().await
        }
        .await
    })
    .map_err(|e| on_unique(e, "alias"))
}

/// What follows `WHERE` in a lookup by `key` on `domain` (conditions, and an order where
/// two rows could match), with the id, alias and domain to bind, in that order. Aliases are
/// unique per domain; a generated code is an id, unique everywhere, so it is found whatever
/// its domain (the redirect path compares the domain itself).
fn lookup<'a>(
    key: LinkKey<'a>,
    domain: Option<&'a str>,
) -> (String, Option<i64>, Option<&'a str>, Option<&'a str>) {
    // The domain's placeholder follows the id and alias the key binds.
    let in_domain = |mark: &str| match domain {
        None => "l.domain IS NULL".to_owned(),
        Some(_) => format!("l.domain = {mark}"),
    };
    match key {
        LinkKey::Id(id) => (
            "l.id = $1 AND l.alias IS NULL".to_owned(),
            Some(id),
            None,
            None,
        ),
        LinkKey::Alias(alias) => (
            format!("l.alias = $1 AND {}", in_domain("$2")),
            None,
            Some(alias),
            domain,
        ),
        // An old alias wins over a generated code of the same text; the server never hands
        // out such an id while the alias exists, so both cannot match at once.
        LinkKey::IdOrAlias(id, alias) => (
            format!(
                "(l.id = $1 AND l.alias IS NULL) OR (l.alias = $2 AND {}) \
                 ORDER BY l.alias IS NULL LIMIT 1",
                in_domain("$3")
            ),
            Some(id),
            Some(alias),
            domain,
        ),
    }
}

/// The database that would hold the link named by `key` on `domain`: this store unless
/// links are sharded; `None` when the key is an alias nobody holds.
async fn key_home<'s>(
    store: &'s Store,
    key: LinkKey<'_>,
    domain: Option<&str>,
) -> Result<Option<Cow<'s, Store>>> {
    if store.link_shards().is_none() {
        return Ok(Some(Cow::Borrowed(store)));
    }
    Ok(match key {
        LinkKey::Id(id) => Some(store.link_home(id)),
        LinkKey::Alias(alias) => alias_index::holder(store, alias, domain)
            .await?
            .map(|id| store.link_home(id)),
        LinkKey::IdOrAlias(id, alias) => {
            let holder = alias_index::holder(store, alias, domain).await?;
            Some(store.link_home(holder.unwrap_or(id)))
        }
    })
}

/// The link named by `key` on the default domain (an alias) or anywhere (a generated code),
/// if any.
pub async fn find(store: &Store, key: LinkKey<'_>) -> Result<Option<LinkRow>> {
    find_in(store, key, None).await
}

/// The link named by `key` on `domain` (`None`: the default one), if any: one indexed
/// query (the redirect path's lookup).
pub async fn find_in(
    store: &Store,
    key: LinkKey<'_>,
    domain: Option<&str>,
) -> Result<Option<LinkRow>> {
    let found = find_in_home(store, key, domain).await?;
    if found.is_none() && store.refresh_link_shards().await? {
        // A miss on a map that has just changed: the link may have moved.
        return find_in_home(store, key, domain).await;
    }
    Ok(found)
}

/// [`find_in`] on the database the current map names.
async fn find_in_home(
    store: &Store,
    key: LinkKey<'_>,
    domain: Option<&str>,
) -> Result<Option<LinkRow>> {
    fetch_by_key(store, key, domain, LINK_COLUMNS).await
}

/// The row of `columns` (from links and guards) of the link `key` names on `domain`, read
/// on the database the current map names: what both lookups share.
async fn fetch_by_key<T>(
    store: &Store,
    key: LinkKey<'_>,
    domain: Option<&str>,
    columns: &str,
) -> Result<Option<T>>
where
    T: for<'r> sqlx::FromRow<'r, sqlx::sqlite::SqliteRow>
        + for<'r> sqlx::FromRow<'r, sqlx::postgres::PgRow>
        + Send
        + Unpin,
{
    let Some(store) = key_home(store, key, domain).await? else {
        return Ok(None);
    };
    let store = &*store;
    let (filter, id, alias, domain) = lookup(key, domain);
    let sql = format!("SELECT {columns} FROM {LINKS_AND_GUARDS} WHERE {filter}");
    let row = on_pool!(store, read, pool => {
        let mut query = sqlx::query_as::<_, T>(&sql);
        if let Some(id) = id {
            query = query.bind(id);
        }
        if let Some(alias) = alias {
            query = query.bind(alias);
        }
        if let Some(domain) = domain {
            query = query.bind(domain);
        }
        query.fetch_optional(pool).await
    })?;
    Ok(row)
}

/// The link named by `key` with its stored human clicks, in one statement: what a click
/// limit is checked against, and what the API shows.
pub async fn find_counted(store: &Store, key: LinkKey<'_>) -> Result<Option<CountedLink>> {
    find_counted_in(store, key, None).await
}

/// [`find_counted`] on `domain` (`None`: the default one).
pub async fn find_counted_in(
    store: &Store,
    key: LinkKey<'_>,
    domain: Option<&str>,
) -> Result<Option<CountedLink>> {
    let found = find_counted_in_home(store, key, domain).await?;
    if found.is_none() && store.refresh_link_shards().await? {
        return find_counted_in_home(store, key, domain).await;
    }
    Ok(found)
}

/// [`find_counted_in`] on the database the current map names.
async fn find_counted_in_home(
    store: &Store,
    key: LinkKey<'_>,
    domain: Option<&str>,
) -> Result<Option<CountedLink>> {
    let columns = format!("{LINK_COLUMNS}, {STORED_CLICKS}");
    fetch_by_key(store, key, domain, &columns).await
}

/// The oldest plain link of `owner` on `domain` (`None`: the default one) to exactly
/// `long_url`, with its stored clicks, if one
/// exists: no alias, no expiry, click limit or password, redirect type 301. How the link
/// was created does not matter.
pub async fn find_reusable(
    store: &Store,
    long_url: &str,
    owner_id: Option<&str>,
    domain: Option<&str>,
) -> Result<Option<CountedLink>> {
    let found = store
        .on_each_link_database(|home| async move {
            find_reusable_here(&home, long_url, owner_id, domain).await
        })
        .await?;
    // The oldest of the shards' candidates: the one a single database would have found.
    Ok(found.into_iter().flatten().min_by_key(|l| l.row.id))
}

/// [`find_reusable`] on one database.
async fn find_reusable_here(
    store: &Store,
    long_url: &str,
    owner_id: Option<&str>,
    domain: Option<&str>,
) -> Result<Option<CountedLink>> {
    let (sql, hash) = reusable_query(store, long_url);
    let row = on_pool!(store, read, pool => {
        bind_reusable!(sqlx::query_as::<_, CountedLink>(&sql), long_url, owner_id, domain, hash)
            .fetch_optional(pool)
            .await
    })?;
    Ok(row)
}

/// The advisory lock class under which PostgreSQL serialises [`insert_unless_reusable`]
/// per URL hash (the two-key form, so it shares no key with a one-key lock).
const REUSE_LOCK_CLASS: i32 = 0x6C69_6E6B;

/// Inserts the plain link `link` unless [`find_reusable`] finds one for its URL and owner;
/// `false` when it found one and inserted nothing. The look and the insert are one step:
/// two requests for a URL that has no link yet agree on one link rather than making two.
/// SQLite has a single writer; PostgreSQL takes a transaction-scoped advisory lock on the
/// URL's hash, so only requests for the same URL wait for each other.
///
/// Sharded, the catalog holds the same lock while every shard is asked and the link is
/// written to its own.
pub async fn insert_unless_reusable(store: &Store, link: &LinkRow) -> Result<bool> {
    debug_assert!(link.alias.is_none() && !link.is_guarded() && link.redirect_type == 301);
    if store.link_shards().is_none() {
        return insert_unless_reusable_here(store, link).await;
    }
    let mut lock = crate::link_shards::postgres_pool(store).begin().await?;
    sqlx::query("SELECT pg_advisory_xact_lock($1, hashtext($2))")
        .bind(REUSE_LOCK_CLASS)
        .bind(&link.long_url)
        .execute(&mut *lock)
        .await?;
    let found = find_reusable(
        store,
        &link.long_url,
        link.owner_id.as_deref(),
        link.domain.as_deref(),
    )
    .await?;
    if found.is_none() {
        insert_here(
            &store.link_home(link.id),
            std::slice::from_ref(link),
            &Extras::default(),
        )
        .await?;
    }
    lock.commit().await?;
    Ok(found.is_none())
}

/// [`insert_unless_reusable`] on one database.
async fn insert_unless_reusable_here(store: &Store, link: &LinkRow) -> Result<bool> {
    let hashed = stores_url_hash(store);
    let (find_sql, hash) = reusable_query(store, &link.long_url);
    let insert_sql = links_insert(store.engine(), 1, hashed);
    let (url, owner, domain) = (
        link.long_url.as_str(),
        link.owner_id.as_deref(),
        link.domain.as_deref(),
    );
    let inserted = on_pool!(store, write, pool => {
        async {
            let mut tx = pool.begin().await?;
            crate::guard_links!(store, tx, [link.id]);
            if store.engine() == Engine::Postgres {
                sqlx::query("SELECT pg_advisory_xact_lock($1, hashtext($2))")
                    .bind(REUSE_LOCK_CLASS)
                    .bind(url)
                    .execute(&mut *tx)
                    .await?;
            }
            let found = bind_reusable!(sqlx::query_as::<_, CountedLink>(&find_sql), url, owner, domain, hash)
                .fetch_optional(&mut *tx)
                .await?;
            if found.is_none() {
                bind_links!(sqlx::query(&insert_sql), [link], hashed)
                    .execute(&mut *tx)
                    .await?;
                outbox::append(&mut *tx, &created_event(link)).await?;
            }
            tx.commit().await?;
            Ok::<_, sqlx::Error>(found.is_none())
        }
        .await
    })?;
    Ok(inserted)
}

/// [`find_reusable`]'s statement, and the URL hash it binds on SQLite.
fn reusable_query(store: &Store, long_url: &str) -> (String, Option<i64>) {
    // The index finds the hash; the full URL is compared on the rows it finds.
    let (by_hash, hash) = if stores_url_hash(store) {
        ("l.url_hash = $4", Some(url_hash(long_url)))
    } else {
        ("hashtext(l.long_url) = hashtext($1)", None)
    };
    let sql = format!(
        "SELECT {LINK_COLUMNS}, {STORED_CLICKS} FROM {LINKS_AND_GUARDS} \
         WHERE {by_hash} AND l.long_url = $1 AND l.alias IS NULL AND l.redirect_type = 301 \
         AND l.owner_id IS NOT DISTINCT FROM $2 AND l.domain IS NOT DISTINCT FROM $3 \
         AND g.expires_at IS NULL AND g.max_clicks IS NULL AND g.password_hash IS NULL \
         AND g.rules IS NULL \
         ORDER BY l.id LIMIT 1"
    );
    (sql, hash)
}

/// Replaces the mutable fields of link `id` in one transaction (its guards row is written,
/// or deleted when no guard is left); `false` when no such link exists.
pub async fn update(store: &Store, id: i64, change: &LinkUpdate) -> Result<bool> {
    store
        .retry_moved(|| async { update_here(&store.link_home(id), id, change).await })
        .await
}

/// [`update`] on one database.
async fn update_here(store: &Store, id: i64, change: &LinkUpdate) -> Result<bool> {
    let hash = stores_url_hash(store).then(|| url_hash(&change.long_url));
    let sql = if hash.is_some() {
        "UPDATE links SET long_url = $2, redirect_type = $3, url_hash = $4 WHERE id = $1"
    } else {
        "UPDATE links SET long_url = $2, redirect_type = $3 WHERE id = $1"
    };
    let guarded = guarded(
        change.expires_at,
        change.max_clicks,
        &change.password_hash,
        &change.rules,
    );
    let found = on_pool!(store, write, pool => {
        async {
            let mut tx = pool.begin().await?;
            crate::guard_links!(store, tx, [id]);
            let mut query = sqlx::query(sql)
                .bind(id)
                .bind(&change.long_url)
                .bind(change.redirect_type);
            if let Some(hash) = hash {
                query = query.bind(hash);
            }
            if query.execute(&mut *tx).await?.rows_affected() == 0 {
                tx.rollback().await?;
                return Ok(false);
            }
            if guarded {
                sqlx::query(
                    "INSERT INTO link_guards (link_id, expires_at, max_clicks, password_hash, rules) \
                     VALUES ($1, $2, $3, $4, $5) ON CONFLICT (link_id) DO UPDATE SET \
                     expires_at = excluded.expires_at, max_clicks = excluded.max_clicks, \
                     password_hash = excluded.password_hash, rules = excluded.rules",
                )
                .bind(id)
                .bind(change.expires_at)
                .bind(change.max_clicks)
                .bind(&change.password_hash)
                .bind(&change.rules)
                .execute(&mut *tx)
                .await?;
            } else {
                sqlx::query("DELETE FROM link_guards WHERE link_id = $1")
                    .bind(id)
                    .execute(&mut *tx)
                    .await?;
            }
            tx.commit().await?;
            Ok::<_, sqlx::Error>(true)
        }
        .await
    })?;
    Ok(found)
}

/// Deletes link `id` with its guards and aggregates, announcing `link.deleted` in the same
/// transaction; `false` when no such link exists. Sharded, its alias is released after.
pub async fn delete(store: &Store, id: i64, now: i64) -> Result<bool> {
    let gone = store
        .retry_moved(|| async { delete_here(&store.link_home(id), id, now).await })
        .await?;
    if store.link_shards().is_some()
        && let Some((Some(alias), domain)) = &gone
    {
        alias_index::release(store, &[(id, alias.clone(), domain.clone())]).await?;
    }
    Ok(gone.is_some())
}

/// What [`delete_here`] reads of the row it deletes.
#[derive(sqlx::FromRow)]
struct DeletedRow {
    id: i64,
    alias: Option<String>,
    long_url: String,
    owner_id: Option<String>,
    domain: Option<String>,
}

/// [`delete`] on one database: the deleted link's alias and domain, if it existed.
async fn delete_here(
    store: &Store,
    id: i64,
    now: i64,
) -> Result<Option<(Option<String>, Option<String>)>> {
    let done = on_pool!(store, write, pool => {
        async {
            let mut tx = pool.begin().await?;
            crate::guard_links!(store, tx, [id]);
            let gone: Option<DeletedRow> = sqlx::query_as(
                "DELETE FROM links WHERE id = $1 \
                 RETURNING id, alias, long_url, owner_id, domain",
            )
            .bind(id)
            .fetch_optional(&mut *tx)
            .await?;
            let Some(DeletedRow { id, alias, long_url, owner_id, domain }) = gone else {
                return Ok::<_, sqlx::Error>(None);
            };
            let event = NewEvent {
                kind: LINK_DELETED,
                aggregate: format!("link:{id}"),
                payload: serde_json::json!({
                    "linkId": id, "alias": alias, "longUrl": long_url, "ownerId": owner_id,
                }),
                at: now,
            };
            outbox::append(&mut *tx, &event).await?;
            tx.commit().await?;
            Ok(Some((alias, domain)))
        }
        .await
    })?;
    Ok(done)
}

/// Releases the aliases of deleted links `(id, alias, domain)` in the catalog's index
/// (nothing unless links are sharded).
pub(crate) async fn release_aliases(
    store: &Store,
    gone: &[(i64, Option<String>, Option<String>)],
) -> Result<()> {
    if store.link_shards().is_none() {
        return Ok(());
    }
    let claims: Vec<(i64, String, Option<String>)> = gone
        .iter()
        .filter_map(|(id, alias, domain)| Some((*id, alias.clone()?, domain.clone())))
        .collect();
    alias_index::release(store, &claims).await
}

/// The event kind announcing a new link.
pub const LINK_CREATED: &str = "link.created";
/// The event kind announcing a deleted link.
pub const LINK_DELETED: &str = "link.deleted";

/// The outbox event of a link just inserted (its owner is who hears about it).
fn created_event(link: &LinkRow) -> NewEvent {
    NewEvent {
        kind: LINK_CREATED,
        aggregate: format!("link:{}", link.id),
        payload: serde_json::json!({
            "linkId": link.id,
            "alias": link.alias,
            "longUrl": link.long_url,
            "ownerId": link.owner_id,
            "createdAt": link.created_at,
        }),
        at: link.created_at,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_url_hash_is_64_bit_fnv_1a_and_never_changes() {
        // Stored values: a change here would hide every SQLite link from reuse.
        assert_eq!(url_hash(""), 0xcbf2_9ce4_8422_2325_u64 as i64);
        assert_eq!(url_hash("a"), 0xaf63_dc4c_8601_ec8c_u64 as i64);
        assert_ne!(
            url_hash("https://example.com/x"),
            url_hash("https://example.com/y")
        );
    }

    #[test]
    fn placeholders_number_every_row_on() {
        assert_eq!(
            placeholders(Engine::Postgres, 2, 3),
            "($1, $2, $3), ($4, $5, $6)"
        );
        assert_eq!(placeholders(Engine::Sqlite, 2, 2), "(?, ?), (?, ?)");
        assert_eq!(
            links_insert(Engine::Postgres, 1, false),
            "INSERT INTO links (id, created_at, redirect_type, long_url, alias, owner_id, domain) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)"
        );
    }
}
