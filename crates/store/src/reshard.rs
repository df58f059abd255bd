//! Online resharding: a new shard database joins and takes its share of the logical shards,
//! one logical shard at a time, while every instance keeps serving.
//!
//! # How a reshard runs ([`add_database`])
//!
//! 1. **Plan.** The new database is registered in the catalog under the next number, with
//!    one `link_shard_moves` row per logical shard it takes ([`ShardMap::with_database_added`]:
//!    its even share, taken from the fullest databases, about 1/N of the links). The layout
//!    version moves on, and the reshard waits until every instance has had time to reload,
//!    so all of them know the new database before any link lives there.
//! 2. **Move, shard by shard.** For each planned shard, on its source database: take the
//!    shard's exclusive advisory lock (waiting for the writes in flight, which hold it
//!    shared), mark the shard gone (later writes are refused and go elsewhere), copy its
//!    links and everything that hangs off them to the new database in one transaction
//!    (replacing whatever an interrupted attempt left there), switch the shard in the
//!    catalog's map, and let the lock go. Writes to that one logical shard (1/256 of the
//!    links) wait for the length of its copy; reads never wait, since the source keeps its
//!    rows until the end.
//! 3. **Clean up.** After one more reload period, the moved links are deleted from their
//!    old databases and the plan is removed.
//!
//! # Stopping half way
//!
//! Every step is safe to repeat, so a reshard killed at any point is finished by running
//! the same command again: the plan is in the catalog, a shard marked gone but not switched
//! is copied again (writes to it are refused meanwhile, never lost), a switched shard is
//! skipped. No link is ever in two maps at once, and none is deleted before its copy is in
//! the map.
//!
//! # What a move does not hold still
//!
//! Operations over all of an owner's links (renaming or deleting a tag, deleting an
//! account) are not held by the per-shard locks: one that runs at the moment a shard is
//! copied can miss that shard's links, and running it again finishes it. Each shard
//! database's record of applied click batches stays where it is, so a click batch that one
//! instance applied just before its shard moved and that the queue then delivers again
//! could count that shard's part twice. A visit keeps its fields but gets a new number in
//! its new database.

use std::time::{Duration, Instant};

use futures_util::TryStreamExt as _;
use sqlx::{Connection as _, PgConnection};

use crate::link_shards::{
    SHARD_LOCK_CLASS, bump_layout_version, database_name, now_ms, open_shard, postgres_pool,
    read_catalog,
};
use crate::shards::logical_shard;
use crate::{ConnectOptions, Error, Result, Store};

/// The tables that hang off a link by `link_id`, parents first, and the columns copied
/// (`None`: all of them). A visit's own id is a sequence of its database, so it is renumbered.
const CHILD_TABLES: &[(&str, Option<&str>)] = &[
    ("link_guards", None),
    ("link_daily_clicks", None),
    ("link_referrers", None),
    ("link_devices", None),
    ("link_tags", None),
    ("link_titles", None),
    (
        "link_visits",
        Some("link_id, at, referrer, device, browser, country, bot, ip"),
    ),
    ("link_exports", None),
];

/// What a reshard has done so far, handed to the progress callback after every shard.
#[derive(Debug, Clone, Default)]
pub struct Progress {
    /// Logical shards moved, this run and earlier ones.
    pub shards_done: usize,
    /// Logical shards the plan moves.
    pub shards_total: usize,
    /// Logical shards moved by this run.
    pub shards_moved_now: usize,
    /// Links copied by this run.
    pub links: u64,
    /// Rows copied by this run (links and the rows hanging off them).
    pub rows: u64,
    /// Time since this run started.
    pub elapsed: Duration,
    /// The shard just moved: its number, links, and how long its writes were held.
    pub last: Option<(u16, u64, Duration)>,
}

impl Progress {
    /// Links per second copied by this run.
    pub fn links_per_second(&self) -> f64 {
        self.links as f64 / self.elapsed.as_secs_f64().max(1e-3)
    }

    /// The time left at this run's pace, once it has moved a shard.
    pub fn time_left(&self) -> Option<Duration> {
        if self.shards_moved_now == 0 {
            return None;
        }
        let remaining = self.shards_total.saturating_sub(self.shards_done) as f64;
        Some(
            self.elapsed
                .mul_f64(remaining / self.shards_moved_now as f64),
        )
    }
}

/// A finished reshard.
#[derive(Debug, Clone)]
pub struct Summary {
    /// The new database's number in the map.
    pub database: u16,
    /// Logical shards it holds now.
    pub shards: usize,
    /// The last progress report.
    pub progress: Progress,
    /// The longest time the writes of one shard were held.
    pub longest_freeze: Duration,
}

/// Adds the PostgreSQL database at `url` to `catalog`'s link shards and moves its share of
/// the logical shards to it, reporting after each shard; resumes an earlier run of the
/// same database. `settle` is how long instances are given to reload the map (at least
/// [`REFRESH_EVERY`](crate::link_shards::REFRESH_EVERY) with some margin in production).
pub async fn add_database(
    catalog: &Store,
    url: &str,
    options: &ConnectOptions,
    settle: Duration,
    mut progress: impl FnMut(&Progress),
) -> Result<Summary> {
    let Some(shards) = catalog.link_shards() else {
        return Err(Error::ShardMap(
            "links are not sharded: start with --shard-url before adding a database".into(),
        ));
    };
    let name = database_name(url)?;
    let (number, fresh) = plan(catalog, &name, url).await?;
    let target = open_shard(url, number, options).await?;
    catalog.refresh_link_shards().await?;
    if fresh {
        tokio::time::sleep(settle).await;
    }
    let moves: Vec<(i16, i16, bool)> = sqlx::query_as(
        "SELECT logical_shard, from_database, done FROM link_shard_moves ORDER BY logical_shard",
    )
    .fetch_all(postgres_pool(catalog))
    .await?;
    let started = Instant::now();
    let mut report = Progress {
        shards_total: moves.len(),
        shards_done: moves.iter().filter(|m| m.2).count(),
        ..Progress::default()
    };
    let mut longest_freeze = Duration::ZERO;
    for (shard, from, done) in &moves {
        if *done {
            continue;
        }
        let layout = shards.layout();
        let source = &layout
            .databases
            .get(*from as usize)
            .ok_or_else(|| Error::ShardMap(format!("no database {from} in the map")))?
            .store;
        let (links, rows, frozen) =
            move_shard(catalog, source, &target, *shard as u16, number).await?;
        catalog.refresh_link_shards().await?;
        longest_freeze = longest_freeze.max(frozen);
        report.shards_done += 1;
        report.shards_moved_now += 1;
        report.links += links;
        report.rows += rows;
        report.elapsed = started.elapsed();
        report.last = Some((*shard as u16, links, frozen));
        progress(&report);
    }
    // Every instance reloads before the old copies go.
    tokio::time::sleep(settle).await;
    clean_up(catalog, &moves).await?;
    let map = read_catalog(catalog)
        .await?
        .ok_or_else(|| Error::ShardMap("the catalog lost its map".into()))?
        .map;
    report.elapsed = started.elapsed();
    Ok(Summary {
        database: number,
        shards: map.owners().iter().filter(|db| **db == number).count(),
        progress: report,
        longest_freeze,
    })
}

/// Registers the database named `name` and plans its moves, unless an earlier run did:
/// its number, and whether it was registered just now.
async fn plan(catalog: &Store, name: &str, url: &str) -> Result<(u16, bool)> {
    let pool = postgres_pool(catalog);
    let mut tx = pool.begin().await?;
    sqlx::query("LOCK TABLE link_shard_databases IN EXCLUSIVE MODE")
        .execute(&mut *tx)
        .await?;
    let known: Option<i16> =
        sqlx::query_scalar("SELECT database FROM link_shard_databases WHERE name = $1")
            .bind(name)
            .fetch_optional(&mut *tx)
            .await?;
    if let Some(number) = known {
        let planned: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM link_shard_moves WHERE to_database = $1")
                .bind(number)
                .fetch_one(&mut *tx)
                .await?;
        let holds: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM link_shard_map WHERE database = $1")
                .bind(number)
                .fetch_one(&mut *tx)
                .await?;
        if planned == 0 && holds > 0 {
            return Err(Error::ShardMap(format!(
                "{name} is already shard database {number}, with {holds} logical shards"
            )));
        }
        tx.commit().await?;
        return Ok((number as u16, false));
    }
    let unfinished: Option<String> = sqlx::query_scalar(
        "SELECT d.name FROM link_shard_moves m JOIN link_shard_databases d \
         ON d.database = m.to_database LIMIT 1",
    )
    .fetch_optional(&mut *tx)
    .await?;
    if let Some(other) = unfinished {
        return Err(Error::ShardMap(format!(
            "a reshard adding {other} is unfinished; run it again with that database to finish it first"
        )));
    }
    drop(tx);
    let current = read_catalog(catalog)
        .await?
        .ok_or_else(|| Error::ShardMap("the catalog has no shard map".into()))?;
    let (_, moved) = current.map.with_database_added();
    let number = current.map.databases();
    let mut tx = pool.begin().await?;
    sqlx::query("LOCK TABLE link_shard_databases IN EXCLUSIVE MODE")
        .execute(&mut *tx)
        .await?;
    let now = now_ms();
    sqlx::query(
        "INSERT INTO link_shard_databases (database, name, url, added_at) VALUES ($1, $2, $3, $4)",
    )
    .bind(number as i16)
    .bind(name)
    .bind(url)
    .bind(now)
    .execute(&mut *tx)
    .await
    .map_err(|e| crate::on_unique(e, "shard database"))?;
    for shard in moved {
        sqlx::query(
            "INSERT INTO link_shard_moves (logical_shard, from_database, to_database) \
             VALUES ($1, $2, $3)",
        )
        .bind(shard as i16)
        .bind(current.map.database_of_shard(shard) as i16)
        .bind(number as i16)
        .execute(&mut *tx)
        .await?;
    }
    bump_layout_version(&mut tx).await?;
    tx.commit().await?;
    Ok((number, true))
}

/// Moves logical shard `shard` from `source` to `target` (database `number`): the links
/// and rows copied, and how long the shard's writes were held.
async fn move_shard(
    catalog: &Store,
    source: &Store,
    target: &Store,
    shard: u16,
    number: u16,
) -> Result<(u64, u64, Duration)> {
    // A connection of its own, not the pool's: if this process dies or this future is
    // dropped, the connection closes and the server lets the lock go with it.
    let mut held = PgConnection::connect_with(&postgres_pool(source).connect_options()).await?;
    sqlx::query("SELECT pg_advisory_lock($1, $2)")
        .bind(SHARD_LOCK_CLASS)
        .bind(i32::from(shard))
        .execute(&mut held)
        .await?;
    let frozen = Instant::now();
    let moved = async {
        sqlx::query(
            "INSERT INTO link_shards_gone (logical_shard, gone_at) VALUES ($1, $2) \
             ON CONFLICT (logical_shard) DO NOTHING",
        )
        .bind(shard as i16)
        .bind(now_ms())
        .execute(&mut held)
        .await?;
        let ids = ids_of_shards(&mut held, &[shard]).await?;
        let rows = copy_links(&mut held, target, &ids).await?;
        let mut tx = postgres_pool(catalog).begin().await?;
        sqlx::query("UPDATE link_shard_map SET database = $2 WHERE logical_shard = $1")
            .bind(shard as i16)
            .bind(number as i16)
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "UPDATE link_shard_moves SET done = TRUE, links = $2, rows_copied = $3, \
             frozen_ms = $4, finished_at = $5 WHERE logical_shard = $1",
        )
        .bind(shard as i16)
        .bind(ids.len() as i64)
        .bind(rows as i64)
        .bind(frozen.elapsed().as_millis() as i64)
        .bind(now_ms())
        .execute(&mut *tx)
        .await?;
        bump_layout_version(&mut tx).await?;
        tx.commit().await?;
        Ok::<_, Error>((ids.len() as u64, rows))
    }
    .await;
    let frozen = frozen.elapsed();
    // On failure too: the gone mark keeps writes out until a rerun finishes the shard.
    let _ = held.close().await;
    let (links, rows) = moved?;
    Ok((links, rows, frozen))
}

/// The ids of the links of the logical shards `shards` held by the database of `conn`: a
/// scan of the primary key, the shard being a hash of the id computed here, not in SQL.
async fn ids_of_shards(conn: &mut PgConnection, shards: &[u16]) -> Result<Vec<i64>> {
    let mut ids = Vec::new();
    let mut all = sqlx::query_scalar::<_, i64>("SELECT id FROM links").fetch(&mut *conn);
    while let Some(id) = all.try_next().await? {
        if shards.contains(&logical_shard(id as u64)) {
            ids.push(id);
        }
    }
    Ok(ids)
}

/// `ARRAY[…]::BIGINT[]` of `ids`: our own numbers, written into the statement.
fn id_array(ids: &[i64]) -> String {
    let list = ids.iter().map(i64::to_string).collect::<Vec<_>>().join(",");
    format!("ARRAY[{list}]::BIGINT[]")
}

/// Copies links `ids` with their rows from the database of `source` to `target` in one
/// transaction, replacing what `target` holds of them; returns the rows copied.
async fn copy_links(source: &mut PgConnection, target: &Store, ids: &[i64]) -> Result<u64> {
    let mut tx = postgres_pool(target).begin().await?;
    let ids_sql = id_array(ids);
    // Whatever an interrupted attempt copied goes first (its children by cascade).
    sqlx::query(&format!("DELETE FROM links WHERE id = ANY({ids_sql})"))
        .execute(&mut *tx)
        .await?;
    let mut rows = 0;
    let tables = std::iter::once(("links", None, "id")).chain(
        CHILD_TABLES
            .iter()
            .map(|(table, columns)| (*table, *columns, "link_id")),
    );
    for (table, columns, key) in tables {
        let columns = columns.unwrap_or("*");
        let target_columns = match columns {
            "*" => String::new(),
            list => format!(" ({list})"),
        };
        let mut out = source
            .copy_out_raw(&format!(
                "COPY (SELECT {columns} FROM {table} WHERE {key} = ANY({ids_sql})) \
                 TO STDOUT (FORMAT binary)"
            ))
            .await?;
        let mut copy_in = tx
            .copy_in_raw(&format!(
                "COPY {table}{target_columns} FROM STDIN (FORMAT binary)"
            ))
            .await?;
        while let Some(chunk) = out.try_next().await? {
            copy_in.send(chunk).await?;
        }
        drop(out);
        rows += copy_in.finish().await?;
    }
    tx.commit().await?;
    Ok(rows)
}

/// Deletes the moved links from the databases they left, then forgets the plan.
async fn clean_up(catalog: &Store, moves: &[(i16, i16, bool)]) -> Result<()> {
    let Some(shards) = catalog.link_shards() else {
        return Ok(());
    };
    let layout = shards.layout();
    let mut sources: Vec<i16> = moves.iter().map(|m| m.1).collect();
    sources.sort_unstable();
    sources.dedup();
    for from in sources {
        let Some(database) = layout.databases.get(from as usize) else {
            continue;
        };
        let gone: Vec<u16> = moves
            .iter()
            .filter(|m| m.1 == from)
            .map(|m| m.0 as u16)
            .collect();
        let mut conn = postgres_pool(&database.store).acquire().await?;
        let stale = ids_of_shards(&mut conn, &gone).await?;
        for chunk in stale.chunks(5000) {
            sqlx::query(&format!(
                "DELETE FROM links WHERE id = ANY({})",
                id_array(chunk)
            ))
            .execute(&mut *conn)
            .await?;
        }
    }
    sqlx::query("DELETE FROM link_shard_moves")
        .execute(postgres_pool(catalog))
        .await?;
    Ok(())
}
