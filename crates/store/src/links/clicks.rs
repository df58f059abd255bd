//! A link's click aggregates: per day (human and bot clicks), per referrer host and per
//! device class, and the record of the click batches applied.
//!
//! Clicks never reach the store one by one. The server aggregates them in memory and hands
//! over a [`ClickBatch`], applied in one transaction: upserts of each link's counters. A
//! link's click count is the sum of its per-day human clicks (see [`super::find_counted`]).

use std::collections::HashSet;

use crate::outbox::{NewEvent, OutboxConn as _};
use crate::{Result, Store, on_pool};

/// The counts of one flush, grouped by link.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClickBatch {
    /// One entry per link that was clicked since the last flush.
    pub links: Vec<LinkClicks>,
    /// Individual visits for the visit log (empty while it is off).
    pub visits: Vec<super::Visit>,
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

/// The event kind announcing a link's clicks of one flush.
pub const LINK_CLICKED: &str = "link.clicked";

/// Applies a batch of clicks in one transaction. Clicks of links deleted meanwhile are
/// dropped. Returns how many links were still there.
pub async fn apply_clicks(store: &Store, batch: &ClickBatch) -> Result<usize> {
    if batch.links.is_empty() && batch.visits.is_empty() {
        return Ok(0);
    }
    let applied = store
        .on_link_homes(parts_of(batch), Part::link_id, |home, parts| async move {
            let part = batch_of(parts);
            Ok(apply(&home, None, &part, &Listeners::Webhooks)
                .await?
                .unwrap_or(0))
        })
        .await?;
    Ok(applied.into_iter().sum())
}

/// One link's clicks or one visit of a batch, to split a batch by shard database.
#[derive(Clone)]
enum Part {
    Clicks(LinkClicks),
    Visit(super::Visit),
}

impl Part {
    fn link_id(&self) -> i64 {
        match self {
            Part::Clicks(clicks) => clicks.link_id,
            Part::Visit(visit) => visit.link_id,
        }
    }
}

fn parts_of(batch: &ClickBatch) -> Vec<Part> {
    let clicks = batch.links.iter().cloned().map(Part::Clicks);
    clicks
        .chain(batch.visits.iter().cloned().map(Part::Visit))
        .collect()
}

fn batch_of(parts: Vec<Part>) -> ClickBatch {
    let mut batch = ClickBatch::default();
    for part in parts {
        match part {
            Part::Clicks(clicks) => batch.links.push(clicks),
            Part::Visit(visit) => batch.visits.push(visit),
        }
    }
    batch
}

/// Whose clicks are announced as `link.clicked` events.
enum Listeners {
    /// The owners of a webhook asking for them, in the same database as the links.
    Webhooks,
    /// These owners (read from the catalog, where the webhooks are, when links are sharded).
    Owners(HashSet<String>),
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
    if store.link_shards().is_none() {
        return apply(store, Some((batch_id, now_ms)), batch, &Listeners::Webhooks).await;
    }
    // Sharded: each shard database applies its part at most once (its own record of the
    // batch), and the catalog records the batch once every part is in, which is what
    // `applied_batches` reads. A retry after a partial failure applies only what is missing.
    if !applied_batches(store, &[batch_id.to_owned()])
        .await?
        .is_empty()
    {
        return Ok(None);
    }
    let listeners = &Listeners::Owners(clicked_listeners(store).await?);
    let applied = store
        .on_link_homes(parts_of(batch), Part::link_id, |home, parts| async move {
            let part = batch_of(parts);
            apply(&home, Some((batch_id, now_ms)), &part, listeners).await
        })
        .await?;
    let recorded = record_batch(store, batch_id, now_ms).await?;
    // `None` when this delivery changed nothing: every part was in already.
    let fresh = applied.iter().any(Option::is_some) || (recorded && applied.is_empty());
    Ok(fresh.then(|| applied.into_iter().flatten().sum()))
}

/// Records `batch_id` as applied in `store`; `false` when it already was.
async fn record_batch(store: &Store, batch_id: &str, now_ms: i64) -> Result<bool> {
    let fresh = on_pool!(store, write, pool => {
        sqlx::query(
            "INSERT INTO click_batches_applied (batch_id, applied_at) VALUES ($1, $2) \
             ON CONFLICT (batch_id) DO NOTHING",
        )
        .bind(batch_id)
        .bind(now_ms)
        .execute(pool)
        .await
        .map(|done| done.rows_affected())
    })?;
    Ok(fresh == 1)
}

/// The owners with a webhook that asks for `link.clicked` events.
async fn clicked_listeners(store: &Store) -> Result<HashSet<String>> {
    let owners: Vec<String> = on_pool!(store, read, pool => {
        sqlx::query_scalar(
            "SELECT DISTINCT owner_id FROM webhooks \
             WHERE (' ' || events || ' ') LIKE '% link.clicked %'",
        )
        .fetch_all(pool)
        .await
    })?;
    Ok(owners.into_iter().collect())
}

async fn apply(
    store: &Store,
    once: Option<(&str, i64)>,
    batch: &ClickBatch,
    listeners: &Listeners,
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
            crate::guard_links!(
                store,
                tx,
                batch.links.iter().map(|l| l.link_id).chain(batch.visits.iter().map(|v| v.link_id))
            );
            // Clicks of links deleted since are dropped. A link deleted between this read
            // and the upserts below fails their foreign key: the transaction, batch record
            // included, rolls back and the batch is retried, without that link.
            let mut asked: Vec<i64> = batch.links.iter().map(|l| l.link_id).collect();
            asked.extend(batch.visits.iter().map(|v| v.link_id));
            asked.sort_unstable();
            asked.dedup();
            let mut present = HashSet::new();
            for chunk in asked.chunks(EXISTENCE_CHUNK) {
                let marks: Vec<String> = (1..=chunk.len()).map(|i| format!("${i}")).collect();
                let sql = format!("SELECT id FROM links WHERE id IN ({})", marks.join(", "));
                let mut query = sqlx::query_scalar::<_, i64>(&sql);
                for id in chunk {
                    query = query.bind(*id);
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
            let logged: Vec<&super::Visit> = batch
                .visits
                .iter()
                .filter(|v| present.contains(&v.link_id))
                .collect();
            for chunk in logged.chunks(super::visits::ROWS_PER_INSERT) {
                let sql = super::visits::insert_sql(store.engine(), chunk.len());
                let mut query = sqlx::query(&sql);
                for v in chunk {
                    query = query
                        .bind(v.link_id)
                        .bind(v.at)
                        .bind(v.referrer.as_deref())
                        .bind(v.device.as_str())
                        .bind(v.browser.as_str())
                        .bind(v.country.as_deref())
                        .bind(v.bot)
                        .bind(v.ip.as_deref());
                }
                query.execute(&mut *tx).await?;
            }
            // On the worker's path (`once`): one `link.clicked` outbox event per link of this
            // flush whose owner has a webhook asking for it (most have none, and nothing is
            // written), so a hot link makes one delivery per flush, never one per click.
            let nobody_listens = matches!(listeners, Listeners::Owners(owners) if owners.is_empty());
            if let Some((_, now_ms)) = once.filter(|_| !nobody_listens) {
                let clicked: Vec<&LinkClicks> =
                    batch.links.iter().filter(|l| present.contains(&l.link_id)).collect();
                for chunk in clicked.chunks(EXISTENCE_CHUNK) {
                    let marks: Vec<String> = (1..=chunk.len()).map(|i| format!("${i}")).collect();
                    let heard_by = match listeners {
                        Listeners::Webhooks => format!(
                            "EXISTS (SELECT 1 FROM webhooks w WHERE w.owner_id = l.owner_id \
                             AND (' ' || w.events || ' ') LIKE '% {LINK_CLICKED} %')"
                        ),
                        Listeners::Owners(_) => "l.owner_id IS NOT NULL".to_owned(),
                    };
                    let sql = format!(
                        "SELECT l.id, l.owner_id FROM links l WHERE l.id IN ({}) AND {heard_by}",
                        marks.join(", ")
                    );
                    let mut query = sqlx::query_as::<_, (i64, String)>(&sql);
                    for link in chunk {
                        query = query.bind(link.link_id);
                    }
                    let heard = query.fetch_all(&mut *tx).await?;
                    let events: Vec<NewEvent> = heard
                        .into_iter()
                        .filter(|(_, owner)| match listeners {
                            Listeners::Webhooks => true,
                            Listeners::Owners(owners) => owners.contains(owner),
                        })
                        .filter_map(|(id, owner)| {
                            let link = chunk.iter().find(|l| l.link_id == id)?;
                            let bots: i64 = link.days.iter().map(|d| d.2).sum();
                            Some(NewEvent {
                                kind: LINK_CLICKED,
                                aggregate: format!("link:{id}"),
                                payload: serde_json::json!({
                                    "linkId": id, "ownerId": owner,
                                    "clicks": link.humans, "botClicks": bots,
                                }),
                                at: now_ms,
                            })
                        })
                        .collect();
                    tx.append_many(&events).await?;
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

/// Which of the `(link, batch)` pairs are stored: the batch's part that holds the link has
/// been applied where the link lives.
///
/// With links sharded, a shard database records its part of a batch in the same transaction
/// as that part's counts, and the catalog records the whole batch only after every part is
/// in ([`apply_clicks_once`]). A count read from a shard can therefore include a batch that
/// [`applied_batches`] does not report yet; asked here, the link's own database answers in
/// step with the count read from it. Without shards this is [`applied_batches`] per pair.
/// One query per database holding some of the links.
pub async fn applied_parts(store: &Store, parts: Vec<(i64, String)>) -> Result<Vec<(i64, String)>> {
    let found = store
        .on_link_homes(
            parts,
            |(link, _)| *link,
            |home, parts| async move {
                let mut ids: Vec<String> = parts.iter().map(|(_, batch)| batch.clone()).collect();
                ids.sort_unstable();
                ids.dedup();
                let applied: HashSet<String> =
                    applied_batches(&home, &ids).await?.into_iter().collect();
                Ok(parts
                    .into_iter()
                    .filter(|(_, batch)| applied.contains(batch))
                    .collect::<Vec<_>>())
            },
        )
        .await?;
    Ok(found.into_iter().flatten().collect())
}

/// Forgets applied-batch records older than `before_ms` (a batch is redelivered within
/// minutes, never weeks, so old records only take space). Returns how many batches were
/// forgotten; when links are sharded, the shard databases' records of their parts go too.
pub async fn prune_applied_batches(store: &Store, before_ms: i64) -> Result<u64> {
    if store.link_shards().is_some() {
        store
            .on_each_link_database(|home| async move { prune_batches_here(&home, before_ms).await })
            .await?;
    }
    prune_batches_here(store, before_ms).await
}

async fn prune_batches_here(store: &Store, before_ms: i64) -> Result<u64> {
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
    /// [`super::CARRIED_DAY`]).
    pub days: Vec<(i64, i64, i64)>,
    /// All bot clicks ever.
    pub bot_clicks: i64,
    /// The most frequent referrer hosts, most clicks first.
    pub referrers: Vec<(String, i64)>,
    /// Clicks per device class.
    pub devices: Vec<(String, i64)>,
}

impl LinkStats {
    /// Adds clicks not yet stored (of the same link), keeping each list's order: days
    /// newest first, referrers by clicks then host.
    pub fn add(&mut self, unstored: &LinkClicks) {
        for &(day, humans, bots) in &unstored.days {
            add_to_day(&mut self.days, day, humans, bots);
        }
        self.days
            .sort_unstable_by_key(|&(day, _, _)| std::cmp::Reverse(day));
        for (host, n) in &unstored.referrers {
            match self.referrers.iter_mut().find(|(h, _)| h == host) {
                Some(entry) => entry.1 += n,
                None => self.referrers.push((host.clone(), *n)),
            }
        }
        self.referrers
            .sort_unstable_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        for &(device, n) in &unstored.devices {
            match self.devices.iter_mut().find(|(d, _)| d == device) {
                Some(entry) => entry.1 += n,
                None => self.devices.push((device.to_owned(), n)),
            }
            if device == BOT_DEVICE {
                self.bot_clicks += n;
            }
        }
    }
}

/// The device class under which bot clicks are counted.
pub const BOT_DEVICE: &str = "bot";

/// Adds clicks to `day`'s entry of a `(day, humans, bots)` list, or appends one.
pub fn add_to_day(days: &mut Vec<(i64, i64, i64)>, day: i64, humans: i64, bots: i64) {
    match days.iter_mut().find(|(d, _, _)| *d == day) {
        Some(entry) => {
            entry.1 += humans;
            entry.2 += bots;
        }
        None => days.push((day, humans, bots)),
    }
}

/// The aggregates of link `id`: the last `days` days and the top `top` referrers.
pub async fn stats(store: &Store, id: i64, days: i64, top: i64) -> Result<LinkStats> {
    let store = &*store.link_home(id);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unstored_clicks_add_to_stored_statistics_in_order() {
        let mut stats = LinkStats {
            days: vec![(10, 5, 1), (9, 2, 0)],
            bot_clicks: 1,
            referrers: vec![("a.example".into(), 4), ("b.example".into(), 3)],
            devices: vec![("desktop".into(), 7), ("bot".into(), 1)],
        };
        stats.add(&LinkClicks {
            link_id: 1,
            humans: 4,
            days: vec![(11, 1, 0), (10, 3, 2)],
            referrers: vec![("b.example".into(), 2), ("c.example".into(), 1)],
            devices: vec![("mobile", 4), ("bot", 2)],
        });
        assert_eq!(stats.days, vec![(11, 1, 0), (10, 8, 3), (9, 2, 0)]);
        assert_eq!(stats.bot_clicks, 3);
        assert_eq!(
            stats.referrers,
            vec![
                ("b.example".to_owned(), 5),
                ("a.example".to_owned(), 4),
                ("c.example".to_owned(), 1)
            ]
        );
        assert_eq!(
            stats.devices,
            vec![
                ("desktop".to_owned(), 7),
                ("bot".to_owned(), 3),
                ("mobile".to_owned(), 4)
            ]
        );
    }
}
