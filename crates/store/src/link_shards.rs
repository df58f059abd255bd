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
//! # At start
//!
//! [`Store::with_link_shards`] connects and migrates every shard database, then reads the
//! map. An empty catalog gets the even map over the databases given, in the order given.
//! Otherwise the databases given must be exactly those of the map (by host, port and name,
//! in any order) and the map must place all 256 logical shards; anything else is refused
//! with a message that says what differs ([`Error::ShardMap`]).

use std::borrow::Cow;
use std::future::Future;
use std::str::FromStr;
use std::sync::{Arc, RwLock};

use sqlx::postgres::PgConnectOptions;

use crate::shards::{LOGICAL_SHARDS, ShardMap, logical_shard};
use crate::{ConnectOptions, Engine, Error, Pools, Result, Store};

/// The shard databases of the links and the map onto them.
#[derive(Debug)]
pub struct LinkShards {
    layout: RwLock<Arc<Layout>>,
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
                let names: Vec<&str> = given.iter().map(|(name, _)| name.as_str()).collect();
                write_even_map(&self, &names).await?;
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
        for (number, name) in catalog.names.iter().enumerate() {
            let Some((_, url)) = given.iter().find(|(given_name, _)| given_name == name) else {
                return Err(Error::ShardMap(format!(
                    "the shard map places links on {name} (database {number}), which no --shard-url names"
                )));
            };
            let store = Store::connect(url, &shard_options).await?;
            store.migrate().await?;
            reserve_outbox_ids(&store, outbox_id_base(number as u16)).await?;
            databases.push(ShardDatabase {
                name: name.clone(),
                store,
            });
        }
        self.link_shards = Some(Arc::new(LinkShards {
            layout: RwLock::new(Arc::new(Layout {
                map: catalog.map,
                databases,
            })),
        }));
        Ok(self)
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
    /// on every group at once (a single call on this store unless links are sharded).
    pub(crate) async fn on_link_homes<I, T, F, Fut>(
        &self,
        items: Vec<I>,
        id_of: impl Fn(&I) -> i64,
        each: F,
    ) -> Result<Vec<T>>
    where
        F: Fn(Store, Vec<I>) -> Fut,
        Fut: Future<Output = Result<T>>,
    {
        let Some(shards) = &self.link_shards else {
            return Ok(vec![each(self.clone(), items).await?]);
        };
        let layout = shards.layout();
        let mut groups: Vec<Vec<I>> = layout.databases.iter().map(|_| Vec::new()).collect();
        for item in items {
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
                let answer = each(database.store.clone(), group);
                async move { answer.await.map_err(|err| on_shard(err, &database.name)) }
            });
        futures_util::future::try_join_all(calls).await
    }
}

/// An unavailable database error of shard database `name`, named.
fn on_shard(err: Error, name: &str) -> Error {
    match err {
        Error::Unavailable(cause) => Error::ShardUnavailable(name.to_owned(), cause),
        other => other,
    }
}

/// The catalog's shard databases by number, and its map.
struct Catalog {
    names: Vec<String>,
    map: ShardMap,
}

/// The PostgreSQL write pool of the catalog, for the statements only PostgreSQL runs
/// (arrays, `UNNEST`); the store is known to be PostgreSQL once links are sharded.
pub(crate) fn catalog_write(store: &Store) -> &sqlx::PgPool {
    match store.pools() {
        Pools::Postgres { write, .. } => write,
        Pools::Sqlite { .. } => unreachable!("the catalog is checked to be PostgreSQL"),
    }
}

/// The catalog's map, or `None` when no database was ever registered.
async fn read_catalog(store: &Store) -> Result<Option<Catalog>> {
    let pool = catalog_write(store);
    let databases: Vec<(i16, String)> =
        sqlx::query_as("SELECT database, name FROM link_shard_databases ORDER BY database")
            .fetch_all(pool)
            .await?;
    if databases.is_empty() {
        return Ok(None);
    }
    for (expected, (number, name)) in databases.iter().enumerate() {
        if usize::try_from(*number).ok() != Some(expected) {
            return Err(Error::ShardMap(format!(
                "the shard databases are not numbered 0, 1, 2…: {name} is number {number}"
            )));
        }
    }
    let rows: Vec<(i16, i16)> =
        sqlx::query_as("SELECT logical_shard, database FROM link_shard_map ORDER BY logical_shard")
            .fetch_all(pool)
            .await?;
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
    Ok(Some(Catalog {
        names: databases.into_iter().map(|(_, name)| name).collect(),
        map,
    }))
}

/// Registers `names` as databases 0, 1, … with the even map over them, unless another
/// instance starting at the same moment did so first (the table lock orders them).
async fn write_even_map(store: &Store, names: &[&str]) -> Result<()> {
    let pool = catalog_write(store);
    let mut tx = pool.begin().await?;
    sqlx::query("LOCK TABLE link_shard_databases IN EXCLUSIVE MODE")
        .execute(&mut *tx)
        .await?;
    let registered: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM link_shard_databases")
        .fetch_one(&mut *tx)
        .await?;
    if registered == 0 {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or_default();
        for (number, name) in names.iter().enumerate() {
            sqlx::query(
                "INSERT INTO link_shard_databases (database, name, added_at) VALUES ($1, $2, $3)",
            )
            .bind(number as i16)
            .bind(*name)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        }
        let map = ShardMap::even(names.len() as u16);
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
    }
    tx.commit().await?;
    Ok(())
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
    .execute(catalog_write(store))
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
