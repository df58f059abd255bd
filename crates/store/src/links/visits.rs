//! The visit log: individual visits of a link, kept for a configured number of days.
//!
//! Visits arrive with the click batches ([`super::ClickBatch::visits`]) and are inserted in
//! the batch's transaction, so a batch delivered twice logs its visits once. Reads are
//! keyset pages, newest first, on `(at, id)`; old rows go by [`prune_visits`].

use crate::sql::{Bind, Sql, bind_all};
use crate::{Result, Store, on_pool};

/// One visit, as logged.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct Visit {
    /// Its row id (0 before it is stored).
    pub id: i64,
    /// The link visited.
    pub link_id: i64,
    /// When, Unix milliseconds.
    pub at: i64,
    /// The referring host, if any.
    pub referrer: Option<String>,
    /// The device class (`desktop`, `mobile`, `tablet`, `bot`).
    pub device: String,
    /// The browser family.
    pub browser: String,
    /// The ISO 3166 country code, when known.
    pub country: Option<String>,
    /// Whether the client was a bot.
    pub bot: bool,
    /// The client's network: its address truncated to /24 (IPv4) or /48 (IPv6).
    pub ip: Option<String>,
}

/// Which bots a visit list holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bots {
    /// Humans only (the default).
    Exclude,
    /// Humans and bots.
    Include,
    /// Bots only.
    Only,
}

/// Which visits of a link a page holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VisitQuery {
    /// The link.
    pub link_id: i64,
    /// At or after this time (ms).
    pub since: Option<i64>,
    /// Before this time (ms).
    pub until: Option<i64>,
    /// Only this device class.
    pub device: Option<String>,
    /// Only this browser family.
    pub browser: Option<String>,
    /// Only this referring host.
    pub referrer: Option<String>,
    /// Only this country (ISO 3166 alpha-2, upper case).
    pub country: Option<String>,
    /// Bots in or out.
    pub bots: Bots,
    /// The `(at, id)` of the previous page's last visit.
    pub before: Option<(i64, i64)>,
    /// How many at most.
    pub limit: i64,
}

/// Visit rows per `INSERT` (8 parameters each, far below either engine's limit).
pub(crate) const ROWS_PER_INSERT: usize = 500;

/// The `INSERT` of `rows` visits: `(link_id, at, referrer, device, browser, country, bot,
/// ip)` per row.
pub(crate) fn insert_sql(engine: crate::Engine, rows: usize) -> String {
    format!(
        "INSERT INTO link_visits (link_id, at, referrer, device, browser, country, bot, ip) \
         VALUES {}",
        super::placeholders(engine, rows, 8)
    )
}

/// One page of a link's visits, newest first.
pub async fn list_visits(store: &Store, query: &VisitQuery) -> Result<Vec<Visit>> {
    let store = &*store.link_home(query.link_id);
    let mut sql = Sql::new("");
    let link = sql.bind(Bind::Int(query.link_id));
    let mut text = format!(
        "SELECT id, link_id, at, referrer, device, browser, country, bot, ip \
         FROM link_visits WHERE link_id = {link}"
    );
    if let Some(since) = query.since {
        let since = sql.bind(Bind::Int(since));
        text.push_str(&format!(" AND at >= {since}"));
    }
    if let Some(until) = query.until {
        let until = sql.bind(Bind::Int(until));
        text.push_str(&format!(" AND at < {until}"));
    }
    for (column, value) in [
        ("device", &query.device),
        ("browser", &query.browser),
        ("referrer", &query.referrer),
        ("country", &query.country),
    ] {
        if let Some(value) = value {
            let value = sql.bind(Bind::Text(value.clone()));
            text.push_str(&format!(" AND {column} = {value}"));
        }
    }
    match query.bots {
        Bots::Exclude => text.push_str(" AND bot = FALSE"),
        Bots::Only => text.push_str(" AND bot = TRUE"),
        Bots::Include => {}
    }
    if let Some((at, id)) = query.before {
        let at = sql.bind(Bind::Int(at));
        let id = sql.bind(Bind::Int(id));
        text.push_str(&format!(" AND (at, id) < ({at}, {id})"));
    }
    let limit = sql.bind(Bind::Int(query.limit));
    text.push_str(&format!(" ORDER BY at DESC, id DESC LIMIT {limit}"));
    sql.push(&text);
    let rows = on_pool!(store, read, pool => {
        bind_all!(sqlx::query_as::<_, Visit>(&sql.text), sql)
            .fetch_all(pool)
            .await
    })?;
    Ok(rows)
}

/// A link's logged visits since a time, counted by browser and by country.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VisitBreakdown {
    /// `(browser family, people's visits)`, most first.
    pub browsers: Vec<(String, i64)>,
    /// `(country code, people's visits)`, most first; `None` where the country is unknown.
    pub countries: Vec<(Option<String>, i64)>,
    /// Bots' visits in the same time.
    pub bot_visits: i64,
}

/// The logged visits of `link_id` at or after `since_ms`, people's counted per browser and
/// per country (the `top` largest of each), bots' counted apart. The counting is the
/// database's (`GROUP BY` on the `(link_id, at)` index), never rows loaded here.
pub async fn visit_breakdown(
    store: &Store,
    link_id: i64,
    since_ms: i64,
    top: i64,
) -> Result<VisitBreakdown> {
    let store = &*store.link_home(link_id);
    let found = on_pool!(store, read, pool => {
        async {
            let browsers: Vec<(String, i64)> = sqlx::query_as(
                "SELECT browser, COUNT(*) AS n FROM link_visits \
                 WHERE link_id = $1 AND at >= $2 AND bot = FALSE \
                 GROUP BY browser ORDER BY n DESC, browser LIMIT $3",
            )
            .bind(link_id)
            .bind(since_ms)
            .bind(top)
            .fetch_all(pool)
            .await?;
            let countries: Vec<(Option<String>, i64)> = sqlx::query_as(
                "SELECT country, COUNT(*) AS n FROM link_visits \
                 WHERE link_id = $1 AND at >= $2 AND bot = FALSE \
                 GROUP BY country ORDER BY n DESC, country LIMIT $3",
            )
            .bind(link_id)
            .bind(since_ms)
            .bind(top)
            .fetch_all(pool)
            .await?;
            let bot_visits: i64 = sqlx::query_scalar(
                "SELECT COUNT(*) FROM link_visits WHERE link_id = $1 AND at >= $2 AND bot = TRUE",
            )
            .bind(link_id)
            .bind(since_ms)
            .fetch_one(pool)
            .await?;
            Ok::<_, sqlx::Error>(VisitBreakdown {
                browsers,
                countries,
                bot_visits,
            })
        }
        .await
    })?;
    Ok(found)
}

/// Deletes the visits logged before `before_ms`; returns how many.
pub async fn prune_visits(store: &Store, before_ms: i64) -> Result<u64> {
    let parts = store
        .on_each_link_database(|home| async move {
            let done = on_pool!(home, write, pool => {
                sqlx::query("DELETE FROM link_visits WHERE at < $1")
                    .bind(before_ms)
                    .execute(pool)
                    .await
                    .map(|d| d.rows_affected())
            })?;
            Ok(done)
        })
        .await?;
    Ok(parts.into_iter().sum())
}
