//! The shortener's repository: links and their click aggregates.
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
//! The reuse index holds every link without an alias, keyed by a hash of the URL; a match
//! is checked against the full URL and the guards. PostgreSQL indexes the expression
//! `hashtext(long_url)`, which it computes itself. SQLite has no hash function, so this
//! module writes [`url_hash`] into a `url_hash` column whenever it writes a URL.
//!
//! Clicks never reach this module one by one. The server aggregates them in memory and
//! hands over a [`ClickBatch`], applied in one transaction: upserts of each link's per-day,
//! per-referrer and per-device counters.

use std::collections::HashSet;

use crate::{Engine, Error, Result, Store, on_pool, on_unique};

/// The columns every link query returns; `l` is `links` and `g` its `link_guards` row.
const LINK_COLUMNS: &str = "l.id, l.alias, l.long_url, l.created_at, g.expires_at, g.max_clicks, \
                            l.redirect_type, g.password_hash, l.owner_id";
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

/// A stored link.
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
}

impl LinkRow {
    /// Whether the link has an expiry, a click limit or a password (a `link_guards` row).
    pub fn is_guarded(&self) -> bool {
        guarded(self.expires_at, self.max_clicks, &self.password_hash)
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

/// A link to insert.
#[derive(Debug, Clone)]
pub struct NewLink {
    /// Internal id, from the `links` id sequence.
    pub id: i64,
    /// The custom alias, or `None` for a generated code.
    pub alias: Option<String>,
    /// Where the link redirects.
    pub long_url: String,
    /// Creation time, Unix milliseconds.
    pub created_at: i64,
    /// Expiry, Unix milliseconds.
    pub expires_at: Option<i64>,
    /// Click limit.
    pub max_clicks: Option<i64>,
    /// Redirect status.
    pub redirect_type: i16,
    /// Password hash (argon2id PHC string).
    pub password_hash: Option<String>,
    /// Owner id.
    pub owner_id: Option<String>,
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
}

fn guarded(expires_at: Option<i64>, max_clicks: Option<i64>, password: &Option<String>) -> bool {
    expires_at.is_some() || max_clicks.is_some() || password.is_some()
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

/// `(…), (…)` with `rows` groups of `columns` numbered placeholders.
fn placeholders(rows: usize, columns: usize) -> String {
    (0..rows)
        .map(|r| {
            let marks: Vec<String> = (1..=columns)
                .map(|c| format!("${}", r * columns + c))
                .collect();
            format!("({})", marks.join(", "))
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// `INSERT INTO links …` for `rows` links.
fn links_insert(rows: usize, hashed: bool) -> String {
    let (columns, count) = if hashed {
        (
            "id, created_at, redirect_type, long_url, alias, owner_id, url_hash",
            7,
        )
    } else {
        (
            "id, created_at, redirect_type, long_url, alias, owner_id",
            6,
        )
    };
    format!(
        "INSERT INTO links ({columns}) VALUES {}",
        placeholders(rows, count)
    )
}

/// `INSERT INTO link_guards …` for `rows` links.
fn guards_insert(rows: usize) -> String {
    format!(
        "INSERT INTO link_guards (link_id, expires_at, max_clicks, password_hash) VALUES {}",
        placeholders(rows, 4)
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
                .bind(&link.owner_id);
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
                .bind(&link.password_hash);
        }
        query
    }};
}

/// Inserts a link. A taken alias is [`Error::Conflict`]`("alias")`.
pub async fn insert(store: &Store, link: &NewLink) -> Result<()> {
    insert_many(store, std::slice::from_ref(link)).await
}

/// Inserts links: one statement for up to 1,000 plain links, otherwise every statement in
/// one transaction. A taken alias is [`Error::Conflict`]`("alias")` and inserts nothing.
/// [`insert`] is this for one link, so a bulk load (the storage bench) writes exactly the
/// rows the server writes.
pub async fn insert_many(store: &Store, links: &[NewLink]) -> Result<()> {
    if links.is_empty() {
        return Ok(());
    }
    let hashed = stores_url_hash(store);
    let guarded: Vec<&NewLink> = links
        .iter()
        .filter(|l| guarded(l.expires_at, l.max_clicks, &l.password_hash))
        .collect();
    on_pool!(store, write, pool => {
        async {
            if links.len() <= ROWS_PER_INSERT && guarded.is_empty() {
                let sql = links_insert(links.len(), hashed);
                bind_links!(sqlx::query(&sql), links, hashed).execute(pool).await?;
                return Ok(());
            }
            let mut tx = pool.begin().await?;
            for chunk in links.chunks(ROWS_PER_INSERT) {
                let sql = links_insert(chunk.len(), hashed);
                bind_links!(sqlx::query(&sql), chunk, hashed).execute(&mut *tx).await?;
            }
            for chunk in guarded.chunks(ROWS_PER_INSERT) {
                let sql = guards_insert(chunk.len());
                bind_guards!(sqlx::query(&sql), chunk).execute(&mut *tx).await?;
            }
            tx.commit().await
        }
        .await
    })
    .map_err(|e| on_unique(e, "alias"))
}

/// What follows `WHERE` in a lookup by `key` (conditions, and an order where two rows could
/// match), with the id and alias to bind, in that order.
fn lookup(key: LinkKey<'_>) -> (&'static str, Option<i64>, Option<&str>) {
    match key {
        LinkKey::Id(id) => ("l.id = $1 AND l.alias IS NULL", Some(id), None),
        LinkKey::Alias(alias) => ("l.alias = $1", None, Some(alias)),
        // An old alias wins over a generated code of the same text; the server never hands
        // out such an id while the alias exists, so both cannot match at once.
        LinkKey::IdOrAlias(id, alias) => (
            "(l.id = $1 AND l.alias IS NULL) OR l.alias = $2 ORDER BY l.alias IS NULL LIMIT 1",
            Some(id),
            Some(alias),
        ),
    }
}

/// The link named by `key`, if any: one indexed query (the redirect path's lookup).
pub async fn find(store: &Store, key: LinkKey<'_>) -> Result<Option<LinkRow>> {
    let (filter, id, alias) = lookup(key);
    let sql = format!("SELECT {LINK_COLUMNS} FROM {LINKS_AND_GUARDS} WHERE {filter}");
    let row = on_pool!(store, read, pool => {
        let mut query = sqlx::query_as::<_, LinkRow>(&sql);
        if let Some(id) = id {
            query = query.bind(id);
        }
        if let Some(alias) = alias {
            query = query.bind(alias);
        }
        query.fetch_optional(pool).await
    })?;
    Ok(row)
}

/// The link named by `key` with its stored human clicks, in one statement: what a click
/// limit is checked against, and what the API shows.
pub async fn find_counted(store: &Store, key: LinkKey<'_>) -> Result<Option<CountedLink>> {
    let (filter, id, alias) = lookup(key);
    let sql =
        format!("SELECT {LINK_COLUMNS}, {STORED_CLICKS} FROM {LINKS_AND_GUARDS} WHERE {filter}");
    let row = on_pool!(store, read, pool => {
        let mut query = sqlx::query_as::<_, CountedLink>(&sql);
        if let Some(id) = id {
            query = query.bind(id);
        }
        if let Some(alias) = alias {
            query = query.bind(alias);
        }
        query.fetch_optional(pool).await
    })?;
    Ok(row)
}

/// The oldest plain link of `owner` to exactly `long_url`, with its stored clicks, if one
/// exists: no alias, no expiry, click limit or password, redirect type 301. How the link
/// was created does not matter.
pub async fn find_reusable(
    store: &Store,
    long_url: &str,
    owner_id: Option<&str>,
) -> Result<Option<CountedLink>> {
    // The index finds the hash; the full URL is compared on the rows it finds.
    let (by_hash, hash) = if stores_url_hash(store) {
        ("l.url_hash = $3", Some(url_hash(long_url)))
    } else {
        ("hashtext(l.long_url) = hashtext($1)", None)
    };
    let sql = format!(
        "SELECT {LINK_COLUMNS}, {STORED_CLICKS} FROM {LINKS_AND_GUARDS} \
         WHERE {by_hash} AND l.long_url = $1 AND l.alias IS NULL AND l.redirect_type = 301 \
         AND l.owner_id IS NOT DISTINCT FROM $2 \
         AND g.expires_at IS NULL AND g.max_clicks IS NULL AND g.password_hash IS NULL \
         ORDER BY l.id LIMIT 1"
    );
    let row = on_pool!(store, read, pool => {
        let mut query = sqlx::query_as::<_, CountedLink>(&sql)
            .bind(long_url)
            .bind(owner_id);
        if let Some(hash) = hash {
            query = query.bind(hash);
        }
        query.fetch_optional(pool).await
    })?;
    Ok(row)
}

/// Replaces the mutable fields of link `id` in one transaction (its guards row is written,
/// or deleted when no guard is left); `false` when no such link exists.
pub async fn update(store: &Store, id: i64, change: &LinkUpdate) -> Result<bool> {
    let hash = stores_url_hash(store).then(|| url_hash(&change.long_url));
    let sql = if hash.is_some() {
        "UPDATE links SET long_url = $2, redirect_type = $3, url_hash = $4 WHERE id = $1"
    } else {
        "UPDATE links SET long_url = $2, redirect_type = $3 WHERE id = $1"
    };
    let guarded = guarded(change.expires_at, change.max_clicks, &change.password_hash);
    let found = on_pool!(store, write, pool => {
        async {
            let mut tx = pool.begin().await?;
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
                    "INSERT INTO link_guards (link_id, expires_at, max_clicks, password_hash) \
                     VALUES ($1, $2, $3, $4) ON CONFLICT (link_id) DO UPDATE SET \
                     expires_at = excluded.expires_at, max_clicks = excluded.max_clicks, \
                     password_hash = excluded.password_hash",
                )
                .bind(id)
                .bind(change.expires_at)
                .bind(change.max_clicks)
                .bind(&change.password_hash)
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

/// Deletes link `id` with its guards and aggregates; `false` when no such link exists.
pub async fn delete(store: &Store, id: i64) -> Result<bool> {
    let done = on_pool!(store, write, pool => {
        sqlx::query("DELETE FROM links WHERE id = $1")
            .bind(id)
            .execute(pool)
            .await
            .map(|done| done.rows_affected())
    })?;
    Ok(done == 1)
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

/// The counts of one flush, grouped by link.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClickBatch {
    /// One entry per link that was clicked since the last flush.
    pub links: Vec<LinkClicks>,
}

/// The clicks of one link since the last flush.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LinkClicks {
    /// The link.
    pub link_id: i64,
    /// Human clicks (the sum of the human clicks of `days`; they count towards `max_clicks`).
    pub humans: i64,
    /// `(day, human clicks, bot clicks)`, day = days since 1970-01-01 UTC.
    pub days: Vec<(i64, i64, i64)>,
    /// `(referrer host, human clicks)`.
    pub referrers: Vec<(String, i64)>,
    /// `(device class, clicks)`, bots included as their own class.
    pub devices: Vec<(&'static str, i64)>,
}

/// Link ids asked about per existence query when a batch is applied.
const EXISTENCE_CHUNK: usize = 500;

/// Adds to a link's per-referrer counter: `($1 link, $2 host, $3 clicks)`.
const REFERRER_UPSERT: &str = "INSERT INTO link_referrers (link_id, host, clicks) VALUES ($1, $2, $3) \
     ON CONFLICT (link_id, host) DO UPDATE SET clicks = link_referrers.clicks + excluded.clicks";
/// Adds to a link's per-device counter: `($1 link, $2 device, $3 clicks)`.
const DEVICE_UPSERT: &str = "INSERT INTO link_devices (link_id, device, clicks) VALUES ($1, $2, $3) \
     ON CONFLICT (link_id, device) DO UPDATE SET clicks = link_devices.clicks + excluded.clicks";

/// Applies a batch of clicks in one transaction. Clicks of links deleted meanwhile are
/// dropped. Returns how many links were still there.
pub async fn apply_clicks(store: &Store, batch: &ClickBatch) -> Result<usize> {
    if batch.links.is_empty() {
        return Ok(0);
    }
    Ok(apply(store, None, batch).await?.unwrap_or(0))
}

/// Applies a batch at most once: `batch_id` is recorded in the same transaction as the
/// counts, so a second delivery of the batch (a queue redelivers after a crash or a lost
/// lease) changes nothing and returns `None`. Otherwise returns how many links were still
/// there.
pub async fn apply_clicks_once(
    store: &Store,
    batch_id: &str,
    now_ms: i64,
    batch: &ClickBatch,
) -> Result<Option<usize>> {
    apply(store, Some((batch_id, now_ms)), batch).await
}

async fn apply(
    store: &Store,
    once: Option<(&str, i64)>,
    batch: &ClickBatch,
) -> Result<Option<usize>> {
    let applied = on_pool!(store, write, pool => {
        async {
            let mut tx = pool.begin().await?;
            if let Some((batch_id, now_ms)) = once {
                // Concurrent deliveries of one batch wait here on the key; the loser skips.
                let fresh = sqlx::query(
                    "INSERT INTO click_batches_applied (batch_id, applied_at) VALUES ($1, $2) \
                     ON CONFLICT (batch_id) DO NOTHING",
                )
                .bind(batch_id)
                .bind(now_ms)
                .execute(&mut *tx)
                .await?;
                if fresh.rows_affected() == 0 {
                    tx.rollback().await?;
                    return Ok(None);
                }
            }
            // Clicks of links deleted since are dropped. A link deleted between this read
            // and the upserts below fails their foreign key: the transaction, batch record
            // included, rolls back and the batch is retried, without that link.
            let mut present = HashSet::new();
            for chunk in batch.links.chunks(EXISTENCE_CHUNK) {
                let marks: Vec<String> = (1..=chunk.len()).map(|i| format!("${i}")).collect();
                let sql = format!("SELECT id FROM links WHERE id IN ({})", marks.join(", "));
                let mut query = sqlx::query_scalar::<_, i64>(&sql);
                for link in chunk {
                    query = query.bind(link.link_id);
                }
                present.extend(query.fetch_all(&mut *tx).await?);
            }
            let mut applied = 0;
            for link in &batch.links {
                if !present.contains(&link.link_id) {
                    continue;
                }
                applied += 1;
                for (day, humans, bots) in &link.days {
                    sqlx::query(
                        "INSERT INTO link_daily_clicks (link_id, day, clicks, bot_clicks) \
                         VALUES ($1, $2, $3, $4) ON CONFLICT (link_id, day) DO UPDATE SET \
                         clicks = link_daily_clicks.clicks + excluded.clicks, \
                         bot_clicks = link_daily_clicks.bot_clicks + excluded.bot_clicks",
                    )
                    .bind(link.link_id)
                    .bind(day)
                    .bind(humans)
                    .bind(bots)
                    .execute(&mut *tx)
                    .await?;
                }
                let counters = link
                    .referrers
                    .iter()
                    .map(|(host, n)| (REFERRER_UPSERT, host.as_str(), *n))
                    .chain(link.devices.iter().map(|(device, n)| (DEVICE_UPSERT, *device, *n)));
                for (upsert, key, clicks) in counters {
                    sqlx::query(upsert)
                        .bind(link.link_id)
                        .bind(key)
                        .bind(clicks)
                        .execute(&mut *tx)
                        .await?;
                }
            }
            tx.commit().await?;
            Ok::<_, sqlx::Error>(Some(applied))
        }
        .await
    })?;
    Ok(applied)
}

/// Which of `batch_ids` have been applied (at most 100 are asked about per query).
pub async fn applied_batches(store: &Store, batch_ids: &[String]) -> Result<Vec<String>> {
    let mut applied = Vec::new();
    for chunk in batch_ids.chunks(100) {
        let marks: Vec<String> = (1..=chunk.len()).map(|i| format!("${i}")).collect();
        let sql = format!(
            "SELECT batch_id FROM click_batches_applied WHERE batch_id IN ({})",
            marks.join(", ")
        );
        // The same side as link reads, so a count and its applied batches agree.
        let found: Vec<String> = on_pool!(store, read, pool => {
            let mut query = sqlx::query_scalar(&sql);
            for id in chunk {
                query = query.bind(id);
            }
            query.fetch_all(pool).await
        })?;
        applied.extend(found);
    }
    Ok(applied)
}

/// Forgets applied-batch records older than `before_ms` (a batch is redelivered within
/// minutes, never weeks, so old records only take space).
pub async fn prune_applied_batches(store: &Store, before_ms: i64) -> Result<u64> {
    let done = on_pool!(store, write, pool => {
        sqlx::query("DELETE FROM click_batches_applied WHERE applied_at < $1")
            .bind(before_ms)
            .execute(pool)
            .await
            .map(|d| d.rows_affected())
    })?;
    Ok(done)
}

/// The stored aggregates of one link.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LinkStats {
    /// `(day, human clicks, bot clicks)` for the most recent days, newest first (never
    /// [`CARRIED_DAY`]).
    pub days: Vec<(i64, i64, i64)>,
    /// All bot clicks ever.
    pub bot_clicks: i64,
    /// The most frequent referrer hosts, most clicks first.
    pub referrers: Vec<(String, i64)>,
    /// Clicks per device class.
    pub devices: Vec<(String, i64)>,
}

/// The aggregates of link `id`: the last `days` days and the top `top` referrers.
pub async fn stats(store: &Store, id: i64, days: i64, top: i64) -> Result<LinkStats> {
    let (days, bot_clicks, referrers, devices) = on_pool!(store, read, pool => {
        async {
            let per_day: Vec<(i64, i64, i64)> = sqlx::query_as(
                "SELECT day, clicks, bot_clicks FROM link_daily_clicks \
                 WHERE link_id = $1 AND day >= 0 ORDER BY day DESC LIMIT $2",
            )
            .bind(id)
            .bind(days)
            .fetch_all(pool)
            .await?;
            let bots: Option<i64> = sqlx::query_scalar(
                "SELECT CAST(SUM(bot_clicks) AS BIGINT) FROM link_daily_clicks WHERE link_id = $1",
            )
            .bind(id)
            .fetch_one(pool)
            .await?;
            let referrers: Vec<(String, i64)> = sqlx::query_as(
                "SELECT host, clicks FROM link_referrers WHERE link_id = $1 \
                 ORDER BY clicks DESC, host LIMIT $2",
            )
            .bind(id)
            .bind(top)
            .fetch_all(pool)
            .await?;
            let devices: Vec<(String, i64)> =
                sqlx::query_as("SELECT device, clicks FROM link_devices WHERE link_id = $1")
                    .bind(id)
                    .fetch_all(pool)
                    .await?;
            Ok::<_, sqlx::Error>((per_day, bots.unwrap_or(0), referrers, devices))
        }
        .await
    })?;
    Ok(LinkStats {
        days,
        bot_clicks,
        referrers,
        devices,
    })
}

/// Whether an error is the "alias already taken" conflict of [`insert`].
pub fn is_alias_conflict(err: &Error) -> bool {
    matches!(err, Error::Conflict("alias"))
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
        assert_eq!(placeholders(2, 3), "($1, $2, $3), ($4, $5, $6)");
        assert_eq!(
            links_insert(1, false),
            "INSERT INTO links (id, created_at, redirect_type, long_url, alias, owner_id) \
             VALUES ($1, $2, $3, $4, $5, $6)"
        );
    }
}
