//! The shortener's repository: links and their click aggregates.
//!
//! # How a link is found
//!
//! A generated code is not stored: it is the link's id through a keyed permutation, and the
//! server decodes it back to the id ([`LinkKey::Id`]), so that lookup is a primary-key
//! lookup. A custom alias is stored in `alias`, under a partial unique index that holds
//! aliased links only ([`LinkKey::Alias`]). [`LinkKey::IdOrAlias`] serves the few aliases
//! made before migration 0004 that have the shape of a generated code.
//!
//! Clicks never reach this module one by one. The server aggregates them in memory and
//! hands over a [`ClickBatch`], applied in one transaction: one `UPDATE` per link plus
//! upserts of its per-day, per-referrer and per-device counters.

use crate::{Error, Result, Store, on_pool, on_unique};

/// The columns every link query returns.
const LINK_COLUMNS: &str = "id, alias, long_url, created_at, expires_at, max_clicks, \
                            redirect_type, password_hash, owner_id, click_count";

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
    pub redirect_type: i32,
    /// The argon2id PHC string of the link's password, if it has one.
    pub password_hash: Option<String>,
    /// The owning user, if the link was created by one.
    pub owner_id: Option<String>,
    /// Human clicks flushed so far.
    pub click_count: i64,
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
    /// Hash of `long_url` when the link is a reuse candidate (plain, created with `reuse`).
    pub url_hash: Option<i64>,
    /// Creation time, Unix milliseconds.
    pub created_at: i64,
    /// Expiry, Unix milliseconds.
    pub expires_at: Option<i64>,
    /// Click limit.
    pub max_clicks: Option<i64>,
    /// Redirect status.
    pub redirect_type: i32,
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
    /// Hash of the new `long_url`; stored only if the link is a reuse candidate already.
    pub url_hash: i64,
    /// Expiry, Unix milliseconds.
    pub expires_at: Option<i64>,
    /// Click limit.
    pub max_clicks: Option<i64>,
    /// Redirect status.
    pub redirect_type: i32,
}

/// Inserts a link. A taken alias is [`Error::Conflict`]`("alias")`.
pub async fn insert(store: &Store, link: &NewLink) -> Result<()> {
    on_pool!(store, write, pool => {
        sqlx::query(
            "INSERT INTO links (id, alias, long_url, url_hash, created_at, expires_at, max_clicks, \
             redirect_type, password_hash, owner_id) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
        )
        .bind(link.id)
        .bind(&link.alias)
        .bind(&link.long_url)
        .bind(link.url_hash)
        .bind(link.created_at)
        .bind(link.expires_at)
        .bind(link.max_clicks)
        .bind(link.redirect_type)
        .bind(&link.password_hash)
        .bind(&link.owner_id)
        .execute(pool)
        .await
        .map(|done| done.rows_affected())
    })
    .map_err(|e| on_unique(e, "alias"))?;
    Ok(())
}

/// The link named by `key`, if any: one indexed query.
pub async fn find(store: &Store, key: LinkKey<'_>) -> Result<Option<LinkRow>> {
    let (id, alias, sql) = match key {
        LinkKey::Id(id) => (
            Some(id),
            None,
            format!("SELECT {LINK_COLUMNS} FROM links WHERE id = $1 AND alias IS NULL"),
        ),
        LinkKey::Alias(alias) => (
            None,
            Some(alias),
            format!("SELECT {LINK_COLUMNS} FROM links WHERE alias = $1"),
        ),
        // An old alias wins over a generated code of the same text; the server never hands
        // out such an id while the alias exists, so both cannot match at once.
        LinkKey::IdOrAlias(id, alias) => (
            Some(id),
            Some(alias),
            format!(
                "SELECT {LINK_COLUMNS} FROM links WHERE (id = $1 AND alias IS NULL) OR alias = $2 \
                 ORDER BY alias IS NULL LIMIT 1"
            ),
        ),
    };
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

/// A reuse candidate of `owner` for exactly `long_url`, if one exists: a link created with
/// `reuse` that is still plain (no alias, password, expiry, click limit or redirect type).
pub async fn find_reusable(
    store: &Store,
    url_hash: i64,
    long_url: &str,
    owner_id: Option<&str>,
) -> Result<Option<LinkRow>> {
    let sql = format!(
        "SELECT {LINK_COLUMNS} FROM links \
         WHERE url_hash = $1 AND long_url = $2 AND owner_id IS NOT DISTINCT FROM $3 \
         AND alias IS NULL AND password_hash IS NULL AND expires_at IS NULL \
         AND max_clicks IS NULL AND redirect_type = 301 \
         ORDER BY id LIMIT 1"
    );
    let row = on_pool!(store, read, pool => {
        sqlx::query_as::<_, LinkRow>(&sql)
            .bind(url_hash)
            .bind(long_url)
            .bind(owner_id)
            .fetch_optional(pool)
            .await
    })?;
    Ok(row)
}

/// Replaces the mutable fields of link `id`; `false` when no such link exists.
pub async fn update(store: &Store, id: i64, change: &LinkUpdate) -> Result<bool> {
    let done = on_pool!(store, write, pool => {
        sqlx::query(
            "UPDATE links SET long_url = $2, \
             url_hash = CASE WHEN url_hash IS NULL THEN NULL ELSE $3 END, \
             expires_at = $4, max_clicks = $5, redirect_type = $6 WHERE id = $1",
        )
        .bind(id)
        .bind(&change.long_url)
        .bind(change.url_hash)
        .bind(change.expires_at)
        .bind(change.max_clicks)
        .bind(change.redirect_type)
        .execute(pool)
        .await
        .map(|done| done.rows_affected())
    })?;
    Ok(done == 1)
}

/// Deletes link `id` with its aggregates; `false` when no such link exists.
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
    /// Human clicks (they count towards `click_count` and `max_clicks`).
    pub humans: i64,
    /// `(day, human clicks, bot clicks)`, day = days since 1970-01-01 UTC.
    pub days: Vec<(i64, i64, i64)>,
    /// `(referrer host, human clicks)`.
    pub referrers: Vec<(String, i64)>,
    /// `(device class, clicks)`, bots included as their own class.
    pub devices: Vec<(&'static str, i64)>,
}

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
            let mut applied = 0;
            for link in &batch.links {
                let found = sqlx::query("UPDATE links SET click_count = click_count + $2 WHERE id = $1")
                    .bind(link.link_id)
                    .bind(link.humans)
                    .execute(&mut *tx)
                    .await?;
                if found.rows_affected() == 0 {
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
    /// `(day, human clicks, bot clicks)` for the most recent days, newest first.
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
                "SELECT day, clicks, bot_clicks FROM link_daily_clicks WHERE link_id = $1 \
                 ORDER BY day DESC LIMIT $2",
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
