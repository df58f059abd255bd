//! Links spread over several PostgreSQL databases: the shard databases, the shard map kept
//! in the catalog, and the routing every repository function of [`crate::links`] goes through.
//!
//! # The layout
//!
//! The *catalog* is the main database (`--database-url`): accounts, posts, the ledger, the
//! queue, and three small tables of migration 0070: the shard databases, the map of the
//! [`LOGICAL_SHARDS`] logical shards onto them ([`ShardMap`]), and the global alias index.
//! Each *shard database* (`--shard-url`) holds the links of its logical shards with
//! everything that hangs off a link: guards, click counters, visits, tags, titles, exports,
//! and the outbox events its writes announce.
//!
//! A link's logical shard is a hash of its id ([`logical_shard`]). Ids still come from the
//! catalog's id blocks, so they are unique across shards without any coordination between
//! shards. A generated code decodes to the id, so the redirect path finds the shard with no
//! lookup; an alias is looked up in the catalog's `link_alias_index` first.
//!
//! # What [`crate::links`] does with it
//!
//! Operations on one link go to its home database ([`Store::link_home`]). Operations over
//! many links (a user's list, tag statistics, pruning) ask every shard database at once
//! ([`Store::on_each_link_database`]) and merge the answers; a shard that does not answer
//! fails the whole operation with [`Error::ShardUnavailable`] naming it, so a list is never
//! silently short. A shard that is down fails only the operations that need it.
//!
//! # Outbox events
//!
//! A link's events are written in its shard's own outbox, in the same transaction as the
//! change, and each shard database runs its own relay. So that consumers can keep
//! deduplicating by event id, shard database `k` numbers its events from `(k + 1) · 2⁴⁷`
//! ([`outbox_id_base`]); the catalog's own events stay below `2⁴⁷`.
//!
//! # While a reshard runs
//!
//! `basis admin reshard --add` ([`crate::reshard`]) moves logical shards to a new database
//! one at a time. Every write to links on a shard database first takes a shared advisory
//! lock per logical shard it touches and checks that none has moved away
//! (`link_shards_gone`); the reshard holds the exclusive lock of a shard while it marks it
//! gone, copies it and switches the map, so no write slips between the copy and the switch.
//! A write that finds its shard gone fails with `ShardMoved` inside the store; the routing
//! reloads the map ([`Store::refresh_link_shards`]) and tries again on the new database
//! ([`Store::retry_moved`]). Every instance also reloads the map when the catalog's layout
//! version changes ([`REFRESH_EVERY`]), which is how reads follow a move and how a new
//! database becomes known before anything moves to it.
//!
//! # At start
//!
//! [`Store::with_link_shards`] connects and migrates every shard database, then reads the
//! map. An empty catalog gets the even map over the databases given, in the order given.
//! Otherwise every database given must be in the map (by host, port and name, in any order;
//! a new one joins only through a reshard), and the map must place all 256 logical shards;
//! anything else is refused with a message that says what differs ([`Error::ShardMap`]). A
//! database of the map that no `--shard-url` names (one a reshard added since the
//! configuration was written) is reached through the URL the catalog keeps, with a warning.

use std::borrow::Cow;
use std::future::Future;
use std::str::FromStr;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, RwLock, Weak};
use std::time::Duration;

use sqlx::postgres::PgConnectOptions;

use crate::shards::{LOGICAL_SHARDS, ShardMap, logical_shard};
use crate::{ConnectOptions, Engine, Error, Pools, Result, Store};

/// How often every instance checks the catalog's layout version.
pub const REFRESH_EVERY: Duration = Duration::from_millis(500);
/// How long a write keeps retrying while its logical shard is being moved.
const MOVE_PATIENCE: Duration = Duration::from_secs(5);
/// The advisory lock class of logical shards on a shard database (two-key form).
pub(crate) const SHARD_LOCK_CLASS: i32 = 0x7368_7264;

/// The shard databases of the links and the map onto them.
#[derive(Debug)]
pub struct LinkShards {
    layout: RwLock<Arc<Layout>>,
    /// The catalog's layout version the layout was read at.
    version: AtomicI64,
    /// Options to open a database a reshard adds while this instance runs.
    options: ConnectOptions,
}

/// One consistent view: a map and the databases it names, by number.
#[derive(Debug)]
pub struct Layout {
    /// Which database holds each logical shard.
    pub map: ShardMap,
    /// The databases, indexed by their number in the map.
    pub databases: Vec<ShardDatabase>,
}

/// One shard database.
#[derive(Debug, Clone)]
pub struct ShardDatabase {
    /// Host, port and database name: how the catalog knows it.
    pub name: String,
    /// Its store.
    pub store: Store,
}

impl LinkShards {
    /// The current layout.
    pub fn layout(&self) -> Arc<Layout> {
        self.layout
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    /// The catalog's layout version this instance last loaded.
    pub fn version(&self) -> i64 {
        self.version.load(Ordering::Acquire)
    }
}

/// What a guarded write raises when its logical shard has moved away (see [`Error::ShardMoved`]).
#[derive(Debug)]
pub(crate) struct Moved;

impl std::fmt::Display for Moved {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the logical shard has moved to another database")
    }
}

impl std::error::Error for Moved {}

/// The error a guarded write returns from its transaction when its shard has moved.
pub(crate) fn moved() -> sqlx::Error {
    sqlx::Error::Decode(Box::new(Moved))
}

/// The two statements that guard a write on shard database `store` to the links `ids`:
/// one waits for the shared locks of their logical shards, the other counts those gone.
/// `None` unless `store` is a shard database. The shard numbers are ours, never the
/// client's, so they are written into the text.
pub(crate) fn guard_sql(
    store: &Store,
    ids: impl IntoIterator<Item = i64>,
) -> Option<(String, String)> {
    if !store.guards_links {
        return None;
    }
    let mut shards: Vec<u16> = ids.into_iter().map(|id| logical_shard(id as u64)).collect();
    shards.sort_unstable();
    shards.dedup();
    let list = shards
        .iter()
        .map(u16::to_string)
        .collect::<Vec<_>>()
        .join(",");
    Some((
        format!(
            "SELECT COUNT(pg_advisory_xact_lock_shared({SHARD_LOCK_CLASS}, s)) \
             FROM UNNEST(ARRAY[{list}]::INT[]) s"
        ),
        format!("SELECT COUNT(*) FROM link_shards_gone WHERE logical_shard IN ({list})"),
    ))
}

/// Inside a write transaction `$tx` on `$store`, before touching the links `$ids`: waits
/// while a reshard holds any of their logical shards, then returns [`moved`] from the
/// enclosing block if one of them has gone to another database. Nothing unless `$store`
/// is a shard database.
#[macro_export]
#[doc(hidden)]
macro_rules! guard_links {
    ($store:expr, $tx:expr, $ids:expr) => {
        if let Some((lock, gone)) = $crate::link_shards::guard_sql($store, $ids) {
            sqlx::query(&lock).execute(&mut *$tx).await?;
            let moved: i64 = sqlx::query_scalar(&gone).fetch_one(&mut *$tx).await?;
            if moved > 0 {
                return Err($crate::link_shards::moved());
            }
        }
    };
}

/// The first outbox event id of shard database `database`: each database numbers its
/// events in its own range of 2⁴⁷ ids, above the catalog's. Database numbers are
/// `SMALLINT`s, so the highest base is 2⁶².
pub fn outbox_id_base(database: u16) -> i64 {
    (i64::from(database.min(i16::MAX as u16)) + 1) << 47
}

/// How the catalog names a shard database: `host:port/database`, without user or password.
pub fn database_name(url: &str) -> Result<String> {
    let options = PgConnectOptions::from_str(url).map_err(|e| Error::InvalidUrl(e.to_string()))?;
    Ok(format!(
        "{}:{}/{}",
        options.get_host(),
        options.get_port(),
        options.get_database().unwrap_or("postgres")
    ))
}

impl Store {
    /// This store as the catalog of links held on the shard databases at `urls`: connects
    /// and migrates each, then reads (or, on an empty catalog, writes) the shard map and
    /// checks that it matches them. See the module documentation for what is refused.
    pub async fn with_link_shards(
        mut self,
        urls: &[String],
        options: &ConnectOptions,
    ) -> Result<Store> {
        if self.engine() != Engine::Postgres {
            return Err(Error::ShardMap(
                "links are sharded only with a PostgreSQL --database-url (the catalog)".into(),
            ));
        }
        let mut given = Vec::with_capacity(urls.len());
        for url in urls {
            if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
                return Err(Error::ShardMap(format!(
                    "a shard database must be a postgres:// URL, got {:?}",
                    url.split(':').next().unwrap_or_default()
                )));
            }
            let name = database_name(url)?;
            if given.iter().any(|(known, _)| *known == name) {
                return Err(Error::ShardMap(format!("{name} is given twice")));
            }
            given.push((name, url.as_str()));
        }
        if given.is_empty() {
            return Ok(self);
        }
        let catalog = read_catalog(&self).await?;
        let catalog = match catalog {
            Some(catalog) => catalog,
            None => {
                write_even_map(&self, &given).await?;
                read_catalog(&self).await?.ok_or_else(|| {
                    Error::ShardMap("the shard map just written cannot be read back".into())
                })?
            }
        };
        for (name, _) in &given {
            if !catalog.names.contains(name) {
                return Err(Error::ShardMap(format!(
                    "{name} is not in the shard map; a database joins with `basis admin reshard --add`"
                )));
            }
        }
        let shard_options = ConnectOptions {
            replicas: Vec::new(),
            ..options.clone()
        };
        let mut databases = Vec::with_capacity(catalog.names.len());
        for (number, (name, known_url)) in catalog.names.iter().zip(&catalog.urls).enumerate() {
            let url = match given.iter().find(|(given_name, _)| given_name == name) {
                Some((_, url)) => *url,
                None => {
                    // Added by a reshard since this configuration was written.
                    tracing::warn!(
                        database = %name,
                        "the shard map places links on a database no --shard-url names; \
                         connecting to it as the catalog says (add it to --shard-url)"
                    );
                    known_url.as_str()
                }
            };
            databases.push(ShardDatabase {
                name: name.clone(),
                store: open_shard(url, number as u16, &shard_options).await?,
            });
        }
        let shards = Arc::new(LinkShards {
            layout: RwLock::new(Arc::new(Layout {
                map: catalog.map,
                databases,
            })),
            version: AtomicI64::new(catalog.version),
            options: shard_options,
        });
        self.link_shards = Some(shards.clone());
        spawn_refresh(self.catalog_only(), Arc::downgrade(&shards));
        Ok(self)
    }

    /// This store without its shard databases: the catalog alone.
    fn catalog_only(&self) -> Store {
        Store {
            link_shards: None,
            ..self.clone()
        }
    }

    /// Reloads the shard map and databases when the catalog's layout version has changed
    /// (opening a database a reshard added); `true` when it changed.
    pub async fn refresh_link_shards(&self) -> Result<bool> {
        match &self.link_shards {
            Some(shards) => refresh(&self.catalog_only(), shards).await,
            None => Ok(false),
        }
    }

    /// Runs the write `op` (which routes itself) again after reloading the map, for as
    /// long as it fails because its shard is being moved, up to a few seconds; then the
    /// [`Error::ShardMoved`] is returned.
    pub(crate) async fn retry_moved<T, F, Fut>(&self, op: F) -> Result<T>
    where
        F: Fn() -> Fut,
        Fut: Future<Output = Result<T>>,
    {
        let started = tokio::time::Instant::now();
        let mut pause = Duration::from_millis(5);
        loop {
            match op().await {
                Err(Error::ShardMoved) if started.elapsed() < MOVE_PATIENCE => {
                    if !self.refresh_link_shards().await? {
                        // Frozen, not switched yet: the move of one shard takes moments.
                        tokio::time::sleep(pause).await;
                        pause = (pause * 2).min(Duration::from_millis(100));
                    }
                }
                other => return other,
            }
        }
    }

    /// The shard databases of the links, when they are sharded.
    pub fn link_shards(&self) -> Option<&Arc<LinkShards>> {
        self.link_shards.as_ref()
    }

    /// The database holding link `id`: this store itself unless links are sharded.
    pub(crate) fn link_home(&self, id: i64) -> Cow<'_, Store> {
        match &self.link_shards {
            None => Cow::Borrowed(self),
            Some(shards) => {
                let layout = shards.layout();
                let database = layout.map.database_of_shard(logical_shard(id as u64));
                Cow::Owned(layout.databases[usize::from(database)].store.clone())
            }
        }
    }

    /// Runs `each` on every database that holds links (this store alone unless sharded),
    /// all at once, and returns their answers in database order. A shard database that is
    /// unavailable fails the whole with [`Error::ShardUnavailable`] naming it.
    pub(crate) async fn on_each_link_database<T, F, Fut>(&self, each: F) -> Result<Vec<T>>
    where
        F: Fn(Store) -> Fut,
        Fut: Future<Output = Result<T>>,
    {
        let Some(shards) = &self.link_shards else {
            return Ok(vec![each(self.clone()).await?]);
        };
        let layout = shards.layout();
        let calls = layout.databases.iter().map(|database| {
            let answer = each(database.store.clone());
            async move { answer.await.map_err(|err| on_shard(err, &database.name)) }
        });
        futures_util::future::try_join_all(calls).await
    }

    /// Groups `items` by the database holding the link each names (`id_of`), and runs `each`
    /// on every group at once (a single call on this store unless links are sharded). A
    /// group whose write finds one of its shards moved away is grouped again on the
    /// reloaded map and run again (see [`Self::retry_moved`]).
    pub(crate) async fn on_link_homes<I, T, F, Fut>(
        &self,
        items: Vec<I>,
        id_of: impl Fn(&I) -> i64 + Copy,
        each: F,
    ) -> Result<Vec<T>>
    where
        I: Clone,
        F: Fn(Store, Vec<I>) -> Fut + Copy,
        Fut: Future<Output = Result<T>>,
    {
        if self.link_shards.is_none() {
            return Ok(vec![each(self.clone(), items).await?]);
        }
        let started = tokio::time::Instant::now();
        let mut pending = items;
        let mut done = Vec::new();
        while !pending.is_empty() {
            let layout = self.link_shards.as_ref().expect("sharded").layout();
            let mut groups: Vec<Vec<I>> = layout.databases.iter().map(|_| Vec::new()).collect();
            for item in pending.drain(..) {
                let database = layout
                    .map
                    .database_of_shard(logical_shard(id_of(&item) as u64));
                groups[usize::from(database)].push(item);
            }
            let calls = layout
                .databases
                .iter()
                .zip(groups)
                .filter(|(_, group)| !group.is_empty())
                .map(|(database, group)| {
                    let answer = each(database.store.clone(), group.clone());
                    async move {
                        match answer.await {
                            Ok(value) => Ok(Ok(value)),
                            Err(Error::ShardMoved) => Ok(Err(group)),
                            Err(err) => Err(on_shard(err, &database.name)),
                        }
                    }
                });
            for answer in futures_util::future::try_join_all(calls).await? {
                match answer {
                    Ok(value) => done.push(value),
                    Err(moved) => pending.extend(moved),
                }
            }
            if !pending.is_empty() {
                if started.elapsed() >= MOVE_PATIENCE {
                    return Err(Error::ShardMoved);
                }
                if !self.refresh_link_shards().await? {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        }
        Ok(done)
    }
}

/// An unavailable database error of shard database `name`, named.
fn on_shard(err: Error, name: &str) -> Error {
    match err {
        Error::Unavailable(cause) => Error::ShardUnavailable(name.to_owned(), cause),
        other => other,
    }
}

/// Connects to shard database number `number` at `url`, migrates it and reserves its
/// outbox id range.
pub(crate) async fn open_shard(url: &str, number: u16, options: &ConnectOptions) -> Result<Store> {
    let mut store = Store::connect(url, options).await?;
    store.migrate().await?;
    reserve_outbox_ids(&store, outbox_id_base(number)).await?;
    store.guards_links = true;
    Ok(store)
}

/// Reloads `shards` from `catalog` if its layout version moved on.
async fn refresh(catalog: &Store, shards: &LinkShards) -> Result<bool> {
    let version: i64 = sqlx::query_scalar("SELECT version FROM link_shard_layout")
        .fetch_one(postgres_pool(catalog))
        .await?;
    if version == shards.version() {
        return Ok(false);
    }
    let Some(read) = read_catalog(catalog).await? else {
        return Ok(false);
    };
    let current = shards.layout();
    let mut databases = Vec::with_capacity(read.names.len());
    for (number, (name, url)) in read.names.iter().zip(&read.urls).enumerate() {
        let store = match current.databases.iter().find(|d| &d.name == name) {
            Some(known) => known.store.clone(),
            None => open_shard(url, number as u16, &shards.options).await?,
        };
        databases.push(ShardDatabase {
            name: name.clone(),
            store,
        });
    }
    *shards
        .layout
        .write()
        .unwrap_or_else(|poisoned| poisoned.into_inner()) = Arc::new(Layout {
        map: read.map,
        databases,
    });
    shards.version.store(read.version, Ordering::Release);
    tracing::info!(version = read.version, "reloaded the link shard map");
    Ok(true)
}

/// Checks the catalog's layout version every [`REFRESH_EVERY`] for as long as the shards
/// are in use and the catalog is open.
fn spawn_refresh(catalog: Store, shards: Weak<LinkShards>) {
    tokio::spawn(async move {
        let mut ticks = tokio::time::interval(REFRESH_EVERY);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            let Some(shards) = shards.upgrade() else {
                return;
            };
            match refresh(&catalog, &shards).await {
                Ok(_) => {}
                Err(Error::Unavailable(sqlx::Error::PoolClosed)) => return,
                Err(err) => tracing::warn!(error = %err, "cannot reload the link shard map"),
            }
        }
    });
}

/// The catalog's shard databases by number, its map and its layout version.
pub(crate) struct Catalog {
    pub(crate) names: Vec<String>,
    pub(crate) urls: Vec<String>,
    pub(crate) map: ShardMap,
    pub(crate) version: i64,
}

/// The PostgreSQL write pool of a store known to be PostgreSQL (the catalog once links are
/// sharded, or a shard database), for the statements only PostgreSQL runs (arrays, `UNNEST`,
/// `COPY`).
pub(crate) fn postgres_pool(store: &Store) -> &sqlx::PgPool {
    match store.pools() {
        Pools::Postgres { write, .. } => write,
        Pools::Sqlite { .. } => unreachable!("the catalog is checked to be PostgreSQL"),
    }
}

/// The catalog's map, or `None` when no database was ever registered.
pub(crate) async fn read_catalog(store: &Store) -> Result<Option<Catalog>> {
    let pool = postgres_pool(store);
    let mut tx = pool.begin().await?;
    sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        .execute(&mut *tx)
        .await?;
    let version: i64 = sqlx::query_scalar("SELECT version FROM link_shard_layout")
        .fetch_one(&mut *tx)
        .await?;
    let databases: Vec<(i16, String, String)> =
        sqlx::query_as("SELECT database, name, url FROM link_shard_databases ORDER BY database")
            .fetch_all(&mut *tx)
            .await?;
    if databases.is_empty() {
        return Ok(None);
    }
    for (expected, (number, name, _)) in databases.iter().enumerate() {
        if usize::try_from(*number).ok() != Some(expected) {
            return Err(Error::ShardMap(format!(
                "the shard databases are not numbered 0, 1, 2…: {name} is number {number}"
            )));
        }
    }
    let rows: Vec<(i16, i16)> =
        sqlx::query_as("SELECT logical_shard, database FROM link_shard_map ORDER BY logical_shard")
            .fetch_all(&mut *tx)
            .await?;
    tx.commit().await?;
    let mut owner = Vec::with_capacity(rows.len());
    for (expected, (shard, database)) in rows.iter().enumerate() {
        if usize::try_from(*shard).ok() != Some(expected) {
            return Err(Error::ShardMap(format!(
                "the map covers {} of the {LOGICAL_SHARDS} logical shards (shard {expected} is missing)",
                rows.len()
            )));
        }
        owner.push(*database as u16);
    }
    let map = ShardMap::from_owners(owner, databases.len() as u16).map_err(Error::ShardMap)?;
    let (names, urls) = databases
        .into_iter()
        .map(|(_, name, url)| (name, url))
        .unzip();
    Ok(Some(Catalog {
        names,
        urls,
        map,
        version,
    }))
}

/// Registers `names` as databases 0, 1, … with the even map over them, unless another
/// instance starting at the same moment did so first (the table lock orders them).
async fn write_even_map(store: &Store, given: &[(String, &str)]) -> Result<()> {
    let pool = postgres_pool(store);
    let mut tx = pool.begin().await?;
    sqlx::query("LOCK TABLE link_shard_databases IN EXCLUSIVE MODE")
        .execute(&mut *tx)
        .await?;
    let registered: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM link_shard_databases")
        .fetch_one(&mut *tx)
        .await?;
    if registered == 0 {
        let now = now_ms();
        for (number, (name, url)) in given.iter().enumerate() {
            sqlx::query(
                "INSERT INTO link_shard_databases (database, name, url, added_at) \
                 VALUES ($1, $2, $3, $4)",
            )
            .bind(number as i16)
            .bind(name)
            .bind(*url)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        }
        let map = ShardMap::even(given.len() as u16);
        let shards: Vec<i16> = (0..LOGICAL_SHARDS as i16).collect();
        let owners: Vec<i16> = map.owners().iter().map(|db| *db as i16).collect();
        sqlx::query(
            "INSERT INTO link_shard_map (logical_shard, database) \
             SELECT * FROM UNNEST($1::SMALLINT[], $2::SMALLINT[])",
        )
        .bind(&shards)
        .bind(&owners)
        .execute(&mut *tx)
        .await?;
        bump_layout_version(&mut tx).await?;
    }
    tx.commit().await?;
    Ok(())
}

/// Moves the catalog's layout version on, in the transaction that changed the databases or
/// the map, so every instance reloads them.
pub(crate) async fn bump_layout_version(tx: &mut sqlx::PgConnection) -> sqlx::Result<()> {
    sqlx::query("UPDATE link_shard_layout SET version = version + 1")
        .execute(tx)
        .await
        .map(drop)
}

/// The wall-clock time in Unix milliseconds, for the catalog's records of when things
/// happened (never for a decision).
pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or_default()
}

/// Moves the outbox id sequence of a shard database up to `base`, unless it is there already.
async fn reserve_outbox_ids(store: &Store, base: i64) -> Result<()> {
    sqlx::query(
        "SELECT setval(pg_get_serial_sequence('outbox', 'id'), $1, false) \
         WHERE COALESCE((SELECT MAX(id) FROM outbox), 0) < $1 \
         AND (SELECT COALESCE(s.last_value, 0) FROM pg_sequences s \
              WHERE format('%I.%I', s.schemaname, s.sequencename)::regclass \
                    = pg_get_serial_sequence('outbox', 'id')::regclass) < $1",
    )
    .bind(base)
    .execute(postgres_pool(store))
    .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_shard_database_is_named_by_host_port_and_database_never_by_its_password() {
        assert_eq!(
            database_name("postgres://basis:secret@db1.internal:6432/links_a").unwrap(),
            "db1.internal:6432/links_a"
        );
        assert_eq!(
            database_name("postgres://127.0.0.1/x").unwrap(),
            "127.0.0.1:5432/x"
        );
    }

    #[test]
    fn each_shard_database_numbers_its_events_in_its_own_range_above_the_catalog() {
        assert_eq!(outbox_id_base(0), 1 << 47);
        assert_eq!(outbox_id_base(1) - outbox_id_base(0), 1 << 47);
        assert_eq!(outbox_id_base(i16::MAX as u16), 1 << 62, "no overflow");
    }
}
