//! Storage for Basis on two engines: SQLite (the embedded default) and PostgreSQL.
//!
//! # Where things are
//!
//! - [`Store`]: the handle every other crate holds. It owns a *write* pool and a *read* pool,
//!   so callers always say which side they need (`db_write` / `db_read` in the guide's
//!   primary/replica terms). On SQLite the write pool has exactly one connection: SQLite
//!   allows one writer at a time, and queueing writers in the pool is far cheaper than
//!   letting them collide on the file lock. On PostgreSQL both sides point at the primary
//!   until replicas are configured.
//! - [`leader`]: a `--database-url` listing a cluster's nodes (libpq's multi-host form):
//!   the pools follow whichever node is the primary, across failovers, without a restart.
//! - [`replicas`]: streaming replicas of the PostgreSQL primary: which reads go to them,
//!   their health and lag, and read-your-writes (a caller's read floor).
//! - [`link_shards`]: links spread over several PostgreSQL databases by a map of 256
//!   logical shards kept here (the catalog), and the routing of every links operation.
//! - [`reshard`]: adding a shard database while serving, moving its share of the logical
//!   shards one at a time.
//! - [`ids`]: block leasing of numeric ids, so instances never coordinate per request.
//! - [`links`]: the shortener's repository (links, their guards and click aggregates;
//!   generated codes and click counts are not stored, see the module's doc).
//! - [`posts`], [`comments`]: the blog's repositories; [`idempotency`]: stored responses of
//!   POSTs retried with an `Idempotency-Key`.
//! - Identity: [`users`] (accounts, roles, profile, password changes, deletion with all an
//!   account owns), [`sessions`] (cookie sessions), [`refresh_tokens`] (families, rotation,
//!   reuse), [`password_resets`] (single-use tokens; the reset itself), [`oidc_logins`]
//!   (pending OIDC logins, linked provider identities), [`mfa`] (TOTP enrolments, recovery
//!   codes, second-step challenges), [`api_keys`], [`audit`] (security
//!   events).
//! - Work done by jobs: [`jobs`] (the status rows owners read), [`avatars`] (uploads and
//!   thumbnails), [`exports`] (links' click CSVs), [`mail`] (mails sent, comment notices).
//! - [`outbox`]: the transactional outbox every announcing writer appends to in its own
//!   transaction (links here, the ledger's transfers, the shop's orders), the relay's reads
//!   and the consumers' processed-event records; [`webhooks`]: endpoints and their deliveries.
//! - `migrations/<engine>/`: one migration set per engine, embedded at compile time.
//! - [`Error`] (`error.rs`): what an operation ends in; a broken unique constraint is
//!   `Conflict`, a broken foreign key `MissingReference`, named by the repository.
//! - `tests/contracts/`: each repository's rules (constraints, cascades, expiry at a given
//!   time, rotation, order) checked on both engines.
//!
//! Every query of the application lives here; the server calls these functions and holds
//! no SQL (its `tests/no_sql.rs` fails otherwise). A rule that takes several statements (a
//! refresh rotation, a password reset) is one function running one transaction.
//!
//! # One set of queries for two engines
//!
//! The queries are written once, in the SQL that both engines share (`$1` placeholders,
//! `ON CONFLICT … DO UPDATE`, `RETURNING`), and run on whichever pool is configured through
//! the [`on_pool!`] macro, which expands the same query code once per engine so each copy is
//! fully typed by sqlx. Where the engines truly differ (full-text search, `SKIP LOCKED`),
//! a repository matches on [`Engine`] and keeps both versions side by side. `sqlx::Any` is
//! not used: it erases column types. Times are stored as Unix milliseconds on both engines
//! so the rows decode into the same Rust types.

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{ConnectOptions as _, PgPool, SqlitePool};

pub mod api_keys;
pub mod audit;
pub mod avatars;
pub mod backup;
pub mod comments;
mod error;
pub mod exports;
pub mod idempotency;
pub mod ids;
pub mod jobs;
pub mod leader;
pub mod link_shards;
pub mod links;
pub mod mail;
pub mod mfa;
pub mod oidc_logins;
pub mod outbox;
pub mod password_resets;
pub mod posts;
pub mod refresh_tokens;
pub mod replicas;
pub mod reshard;
pub mod sessions;
pub mod shards;
mod sql;
pub mod token_cutoffs;
pub mod users;
pub mod webhooks;

pub use error::{Error, Result};
pub(crate) use error::{on_foreign_key, on_unique};

/// Runs one expression against the store's pool for the requested side, once per engine.
///
/// `on_pool!(store, read, pool => sqlx::query("…").fetch_one(pool).await)` expands to a
/// `match` whose arms share the body, so one query text serves SQLite and PostgreSQL while
/// each arm is type-checked against its own driver.
///
/// Each use is one database call in a trace: a [`db_span!`] open while the body runs.
#[macro_export]
macro_rules! on_pool {
    ($store:expr, read, $pool:ident => $body:expr) => {{
        let store: &$crate::Store = &$store;
        store.count_round_trip();
        let _span = $crate::db_span!(store, "read");
        match store.pools() {
            $crate::Pools::Sqlite { read: $pool, .. } => $body,
            $crate::Pools::Postgres { read: primary, .. } => {
                let $pool = store.route_read(primary);
                $body
            }
        }
    }};
    ($store:expr, write, $pool:ident => $body:expr) => {{
        let store: &$crate::Store = &$store;
        store.count_round_trip();
        let _span = $crate::db_span!(store, "write");
        store.note_write();
        match store.pools() {
            $crate::Pools::Sqlite { write: $pool, .. } => $body,
            $crate::Pools::Postgres { write: $pool, .. } => $body,
        }
    }};
}

/// The span of one database call (a statement or a transaction) made where the macro is
/// used, on `$store`'s `$side` pool ("read" or "write"), named by the calling module:
/// `db store::links read` (the exporter adds the calling file and line). Keep it alive for
/// as long as the call runs.
///
/// The span is created but never entered: it needs no `.await`-safe guard, so it wraps
/// any body, and its parent is the span current at the call (the request's, the job's).
/// It is at DEBUG level: without a trace exporter it is never built.
#[macro_export]
macro_rules! db_span {
    ($store:expr, $side:literal) => {
        $crate::__tracing::debug_span!(
            target: "basis_store::db",
            "db",
            otel.name = %$crate::DbSpanName(module_path!(), $side),
            otel.kind = "client",
            db.system.name = $store.engine().system_name(),
            db.pool = $side,
        )
    };
}

#[doc(hidden)]
pub use tracing as __tracing;

/// The name of a [`db_span!`]: the calling module without the crate prefix, and the side.
#[doc(hidden)]
pub struct DbSpanName(pub &'static str, pub &'static str);

impl std::fmt::Display for DbSpanName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let module = self.0.strip_prefix("basis_").unwrap_or(self.0);
        write!(f, "db {module} {}", self.1)
    }
}

/// Which database engine a [`Store`] runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Engine {
    /// A SQLite file in WAL mode.
    Sqlite,
    /// A PostgreSQL server.
    Postgres,
}

impl Engine {
    /// The engine's name in OpenTelemetry's `db.system.name`.
    pub fn system_name(self) -> &'static str {
        match self {
            Engine::Sqlite => "sqlite",
            Engine::Postgres => "postgresql",
        }
    }
}

/// The pools behind a store, by engine.
#[derive(Debug, Clone)]
pub enum Pools {
    /// SQLite: one writer connection, several readers, one file.
    Sqlite {
        /// The single-connection pool every write goes through.
        write: SqlitePool,
        /// Readers; WAL lets them run beside the writer.
        read: SqlitePool,
    },
    /// PostgreSQL: primary for writes, the same or a replica for reads.
    Postgres {
        /// The primary.
        write: PgPool,
        /// Where reads go (the primary until replicas are configured).
        read: PgPool,
    },
}

/// Options for [`Store::connect`].
#[derive(Debug, Clone)]
pub struct ConnectOptions {
    /// Connections per pool (PostgreSQL) or reader connections (SQLite).
    pub max_connections: u32,
    /// How long to wait for a connection before reporting the database unavailable.
    pub acquire_timeout: Duration,
    /// A statement that runs at least this long is logged as a warning with its SQL (never
    /// its bound values) and duration; `None` logs none.
    pub slow_statement: Option<Duration>,
    /// PostgreSQL streaming replicas of the primary that take reads (ignored on SQLite).
    pub replicas: Vec<String>,
    /// A replica lagging further behind the primary leaves the rotation.
    pub replica_max_lag: Duration,
    /// Whether a background task checks the replicas' health (every
    /// [`replicas::check_interval`]); without it, [`replicas::Replicas::check`] runs only
    /// when called.
    pub replica_checks: bool,
    /// SQLite only: the heap all of SQLite may use in this process, page caches, prepared
    /// statements and schemas together (see [`SqliteBudget`]). Ignored on PostgreSQL.
    pub sqlite_memory_bytes: u64,
}

impl Default for ConnectOptions {
    fn default() -> Self {
        Self {
            max_connections: 16,
            acquire_timeout: Duration::from_secs(5),
            slow_statement: Some(Duration::from_millis(500)),
            replicas: Vec::new(),
            replica_max_lag: Duration::from_millis(1000),
            replica_checks: true,
            sqlite_memory_bytes: SqliteBudget::DEFAULT_BYTES,
        }
    }
}

/// How SQLite's memory is split, so that it is bounded by one figure whatever the number
/// of connections: a `cache_size` of its own per connection multiplied by the pool size
/// (it was 32 MiB × 17 connections) has no useful bound.
///
/// The budget is also SQLite's process-wide soft heap limit: past it, SQLite recycles
/// pages instead of allocating more, so statements and schemas count too. The writer gets
/// half of it as page cache: in WAL mode its cache is the only one that stays warm (a
/// reader's cache is emptied whenever another connection has committed since its last
/// read). The readers share a quarter, and the last quarter is left for prepared
/// statements (sqlx caches up to 100 per connection), schemas and transient allocations.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SqliteBudget {
    /// The soft heap limit, in bytes.
    pub total_bytes: u64,
    /// The writer's page cache, in KiB.
    pub writer_cache_kib: u64,
    /// Each reader's page cache, in KiB.
    pub reader_cache_kib: u64,
}

impl SqliteBudget {
    /// The default budget: 64 MiB.
    pub const DEFAULT_BYTES: u64 = 64 * 1024 * 1024;
    /// No connection's page cache is made smaller than this (a B-tree descent plus its
    /// neighbours): a budget too small for the pool is exceeded rather than starving it.
    const MIN_CACHE_KIB: u64 = 256;

    /// Splits `total_bytes` between one writer and `readers` readers.
    pub fn split(total_bytes: u64, readers: u32) -> Self {
        let kib = total_bytes / 1024;
        Self {
            total_bytes,
            writer_cache_kib: (kib / 2).max(Self::MIN_CACHE_KIB),
            reader_cache_kib: (kib / 4 / u64::from(readers.max(1))).max(Self::MIN_CACHE_KIB),
        }
    }
}

impl ConnectOptions {
    /// sqlx's slow-statement log settings for these options.
    fn slow_log(&self) -> (log::LevelFilter, Duration) {
        match self.slow_statement {
            Some(threshold) => (log::LevelFilter::Warn, threshold),
            None => (log::LevelFilter::Off, Duration::MAX),
        }
    }
}

/// The storage handle: cheap to clone, shared by every request.
#[derive(Debug, Clone)]
pub struct Store {
    pools: Pools,
    /// Database round trips made through [`on_pool!`] (one statement, or one transaction).
    round_trips: std::sync::Arc<std::sync::atomic::AtomicU64>,
    /// The PostgreSQL replicas that take reads, when configured.
    replicas: Option<std::sync::Arc<replicas::Replicas>>,
    /// The cluster whose primary the pools follow, when the URL lists its nodes.
    leader: Option<std::sync::Arc<leader::Leader>>,
    /// The databases the links are spread over, when they are sharded (this store is then
    /// their catalog).
    link_shards: Option<std::sync::Arc<link_shards::LinkShards>>,
    /// Whether this store is a shard database of the links: its link writes then take the
    /// guard of [`guard_links!`] against a reshard moving their logical shards.
    guards_links: bool,
}

impl Store {
    /// Connects to `url` (`sqlite:…` or `postgres://…`) and checks that it answers.
    ///
    /// On PostgreSQL, `options.replicas` are opened too (see [`replicas`]); on SQLite they
    /// are ignored (the caller warns).
    pub async fn connect(url: &str, options: &ConnectOptions) -> Result<Self> {
        let mut replica_set = None;
        let mut leader = None;
        let pools = if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            let (level, threshold) = options.slow_log();
            let tune = |connect: PgConnectOptions| {
                connect
                    .application_name("basis")
                    .log_slow_statements(level, threshold)
            };
            let pool = match leader::ClusterUrl::parse(url)? {
                Some(cluster) => {
                    let (pool, follower) = leader::Leader::connect(
                        cluster.map_options(tune),
                        options.max_connections,
                        options.acquire_timeout,
                    )
                    .await?;
                    leader = Some(follower);
                    pool
                }
                None => {
                    let connect = PgConnectOptions::from_str(url)
                        .map_err(|e| Error::InvalidUrl(e.to_string()))?;
                    PgPoolOptions::new()
                        .max_connections(options.max_connections)
                        .acquire_timeout(options.acquire_timeout)
                        .connect_with(tune(connect))
                        .await
                        .map_err(Error::Unavailable)?
                }
            };
            if !options.replicas.is_empty() {
                let set = replicas::Replicas::connect(
                    pool.clone(),
                    &options.replicas,
                    options.replica_max_lag,
                    options,
                )
                .await?;
                if options.replica_checks {
                    set.spawn_checks(replicas::check_interval(options.replica_max_lag));
                }
                replica_set = Some(set);
            }
            Pools::Postgres {
                write: pool.clone(),
                read: pool,
            }
        } else if url.starts_with("sqlite:") {
            let (level, threshold) = options.slow_log();
            let readers = options.max_connections.max(2);
            let budget = SqliteBudget::split(options.sqlite_memory_bytes, readers);
            // A negative cache_size is in KiB rather than pages.
            let cache = |kib: u64| format!("-{kib}");
            let connect = SqliteConnectOptions::from_str(url)
                .map_err(|e| Error::InvalidUrl(e.to_string()))?
                .create_if_missing(true)
                .journal_mode(SqliteJournalMode::Wal)
                // In WAL mode NORMAL loses no committed transaction on an application crash,
                // only possibly the last ones on power loss, and avoids an fsync per commit.
                .synchronous(SqliteSynchronous::Normal)
                .foreign_keys(true)
                .busy_timeout(Duration::from_secs(5))
                .pragma("temp_store", "memory")
                // Process-wide: every connection sets the same figure.
                .pragma("soft_heap_limit", budget.total_bytes.to_string())
                .log_slow_statements(level, threshold);
            // A SQLite connection lives as long as its pool. Each one is a worker thread
            // whose page cache glibc keeps in that thread's arena: when a connection is
            // replaced, the old cache's memory is freed but stays resident, and the new one
            // fills another arena (the soak lost 36 MiB per replaced writer). sqlx replaced
            // connections in three ways: after 10 idle minutes, after 30 minutes, and
            // whenever an acquire timed out or was cancelled while pinging the idle
            // connection it had taken (a 5 s stall of the process was enough). An
            // in-process connection has no network to test, so it is not pinged.
            let write = SqlitePoolOptions::new()
                .max_connections(1)
                .acquire_timeout(options.acquire_timeout)
                .test_before_acquire(false)
                .max_lifetime(None)
                .idle_timeout(None)
                .connect_with(
                    connect
                        .clone()
                        .pragma("cache_size", cache(budget.writer_cache_kib)),
                )
                .await
                .map_err(Error::Unavailable)?;
            let read = SqlitePoolOptions::new()
                .max_connections(readers)
                .acquire_timeout(options.acquire_timeout)
                .test_before_acquire(false)
                .max_lifetime(None)
                .idle_timeout(None)
                .connect_with(
                    connect
                        .read_only(true)
                        .pragma("cache_size", cache(budget.reader_cache_kib)),
                )
                .await
                .map_err(Error::Unavailable)?;
            Pools::Sqlite { write, read }
        } else {
            return Err(Error::InvalidUrl(format!(
                "expected a sqlite: or postgres:// URL, got {:?}",
                url.split(':').next().unwrap_or_default()
            )));
        };
        Ok(Self {
            pools,
            round_trips: Default::default(),
            replicas: replica_set,
            leader,
            link_shards: None,
            guards_links: false,
        })
    }

    /// Counts one round trip (called by [`on_pool!`]).
    #[doc(hidden)]
    pub fn count_round_trip(&self) {
        self.round_trips
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }

    /// The PostgreSQL pool a read goes to (called by [`on_pool!`]): the primary, or a
    /// replica chosen by [`replicas`] when some are configured.
    #[doc(hidden)]
    pub fn route_read<'a>(&'a self, primary: &'a PgPool) -> &'a PgPool {
        match &self.replicas {
            Some(set) => set.route(),
            None => primary,
        }
    }

    /// Marks the current caller scope as having written (called by [`on_pool!`]).
    #[doc(hidden)]
    pub fn note_write(&self) {
        if self.replicas.is_some() {
            replicas::note_write();
        }
    }

    /// The replicas taking reads, when configured (PostgreSQL only).
    pub fn replicas(&self) -> Option<&std::sync::Arc<replicas::Replicas>> {
        self.replicas.as_ref()
    }

    /// The cluster whose primary the pools follow, when the URL lists its nodes.
    pub fn leader(&self) -> Option<&std::sync::Arc<leader::Leader>> {
        self.leader.as_ref()
    }

    /// How many round trips every clone of this store has made through [`on_pool!`] so far:
    /// the "no N+1" tests read it before and after a request.
    pub fn round_trips(&self) -> u64 {
        self.round_trips.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The SQLite URL for a database file inside `data_dir`.
    pub fn sqlite_url_in(data_dir: &Path) -> String {
        format!("sqlite://{}", data_dir.join("basis.db").display())
    }

    /// Applies the migrations of this store's engine that are not applied yet, then the
    /// one step SQL cannot do: hashing the URLs SQLite's migration 0006 left unhashed.
    ///
    /// Other crates keep their own migrators in the same database (the queue's versions start
    /// at 1001), so versions this store does not know are ignored, not refused.
    pub async fn migrate(&self) -> Result<()> {
        match &self.pools {
            Pools::Sqlite { write, .. } => {
                let mut migrator = sqlx::migrate!("migrations/sqlite");
                migrator.set_ignore_missing(true);
                migrator.run(write).await?
            }
            Pools::Postgres { write, .. } => {
                let mut migrator = sqlx::migrate!("migrations/postgres");
                migrator.set_ignore_missing(true);
                migrator.run(write).await?
            }
        }
        let hashed = links::fill_pending_hashes(self).await?;
        if hashed > 0 {
            tracing::info!(
                links = hashed,
                "hashed the URLs of links made before migration 0006"
            );
        }
        Ok(())
    }

    /// Applies only the migrations numbered below `version`: a database in an older shape,
    /// for tests that prove a later migration carries existing rows over.
    pub async fn migrate_before(&self, version: i64) -> Result<()> {
        use sqlx::migrate::{Migrate, Migrator};
        async fn apply<C: Migrate>(conn: &mut C, set: &Migrator, version: i64) -> Result<()> {
            conn.ensure_migrations_table().await?;
            for migration in set.iter().filter(|m| m.version < version) {
                conn.apply(migration).await?;
            }
            Ok(())
        }
        match &self.pools {
            Pools::Sqlite { write, .. } => {
                let mut conn = write.acquire().await?;
                apply(&mut *conn, &sqlx::migrate!("migrations/sqlite"), version).await
            }
            Pools::Postgres { write, .. } => {
                let mut conn = write.acquire().await?;
                apply(&mut *conn, &sqlx::migrate!("migrations/postgres"), version).await
            }
        }
    }

    /// The engine this store runs on.
    pub fn engine(&self) -> Engine {
        match self.pools {
            Pools::Sqlite { .. } => Engine::Sqlite,
            Pools::Postgres { .. } => Engine::Postgres,
        }
    }

    /// The pools, for repositories (through [`on_pool!`]).
    pub fn pools(&self) -> &Pools {
        &self.pools
    }

    /// Checks that the read side answers a trivial query.
    pub async fn ping(&self) -> Result<()> {
        on_pool!(self, read, pool => sqlx::query("SELECT 1").execute(pool).await.map(drop))?;
        Ok(())
    }

    /// Connections open and idle in the (read, write) pools, for metrics.
    pub fn pool_usage(&self) -> PoolUsage {
        fn usage<DB: sqlx::Database>(pool: &sqlx::Pool<DB>) -> (u32, u32) {
            (pool.size(), pool.num_idle() as u32)
        }
        let ((read_size, read_idle), (write_size, write_idle)) = match &self.pools {
            Pools::Sqlite { write, read } => (usage(read), usage(write)),
            Pools::Postgres { write, read } => (usage(read), usage(write)),
        };
        PoolUsage {
            read_size,
            read_idle,
            write_size,
            write_idle,
        }
    }

    /// Reads an installation-wide setting, creating it with `init()` on first use.
    ///
    /// Every instance sharing the database gets the same value, whoever created it.
    pub async fn setting_or_init(
        &self,
        name: &str,
        init: impl FnOnce() -> String,
    ) -> Result<String> {
        let value = init();
        on_pool!(self, write, pool => {
            sqlx::query("INSERT INTO settings (name, value) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING")
                .bind(name)
                .bind(&value)
                .execute(pool)
                .await
                .map(drop)
        })?;
        let stored: String = on_pool!(self, write, pool => {
            sqlx::query_scalar("SELECT value FROM settings WHERE name = $1")
                .bind(name)
                .fetch_one(pool)
                .await
        })?;
        Ok(stored)
    }

    /// Closes every pool, waiting for connections in use to be returned.
    pub async fn close(&self) {
        match &self.pools {
            Pools::Sqlite { write, read } => {
                read.close().await;
                write.close().await;
            }
            Pools::Postgres { write, read } => {
                if let Some(set) = &self.replicas {
                    set.close().await;
                }
                if let Some(shards) = &self.link_shards {
                    for database in &shards.layout().databases {
                        // Boxed: a shard's store is a store, and this is its close.
                        Box::pin(database.store.close()).await;
                    }
                }
                read.close().await;
                write.close().await;
            }
        }
    }
}

/// A snapshot of pool usage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolUsage {
    /// Open connections in the read pool.
    pub read_size: u32,
    /// Idle connections in the read pool.
    pub read_idle: u32,
    /// Open connections in the write pool.
    pub write_size: u32,
    /// Idle connections in the write pool.
    pub write_idle: u32,
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1024 * 1024;

    #[test]
    fn the_default_sqlite_budget_gives_the_writer_half_and_the_readers_a_quarter() {
        let budget = SqliteBudget::split(SqliteBudget::DEFAULT_BYTES, 16);
        assert_eq!(budget.writer_cache_kib, 32 * 1024);
        assert_eq!(budget.reader_cache_kib, 1024);
    }

    #[test]
    fn the_page_caches_stay_within_the_budget_down_to_the_smallest_useful_cache() {
        // 64 readers get 256 KiB each from 64 MiB: the floor, not yet above it.
        for readers in [1, 2, 16, 64] {
            let budget = SqliteBudget::split(64 * MIB, readers);
            let caches_kib = budget.writer_cache_kib + u64::from(readers) * budget.reader_cache_kib;
            assert!(
                caches_kib * 1024 <= 64 * MIB * 3 / 4,
                "{readers} readers: {caches_kib} KiB of page cache"
            );
        }
    }

    #[test]
    fn a_tiny_sqlite_budget_still_leaves_every_connection_a_working_cache() {
        let budget = SqliteBudget::split(MIB, 16);
        assert_eq!(budget.writer_cache_kib, 512);
        assert_eq!(budget.reader_cache_kib, SqliteBudget::MIN_CACHE_KIB);
    }

    #[tokio::test]
    async fn every_sqlite_connection_takes_its_share_of_the_budget() {
        let dir = tempfile::tempdir().expect("temporary directory");
        let options = ConnectOptions {
            max_connections: 4,
            ..ConnectOptions::default()
        };
        let store = Store::connect(&Store::sqlite_url_in(dir.path()), &options)
            .await
            .expect("SQLite opens");
        let Pools::Sqlite { write, read } = store.pools() else {
            unreachable!("a sqlite URL opens SQLite")
        };
        let pragma = |pool: &SqlitePool, name: &'static str| {
            let pool = pool.clone();
            async move {
                sqlx::query_scalar::<_, i64>(&format!("PRAGMA {name}"))
                    .fetch_one(&pool)
                    .await
                    .expect("pragma answers")
            }
        };
        // Negative: KiB. 64 MiB: the writer 32 MiB, four readers sharing 16 MiB.
        assert_eq!(pragma(write, "cache_size").await, -32 * 1024);
        assert_eq!(pragma(read, "cache_size").await, -4 * 1024);
        assert_eq!(pragma(read, "soft_heap_limit").await, 64 * MIB as i64);
        store.close().await;
    }

    /// An acquire dropped before it finishes (a timed-out or cancelled request) must not
    /// cost the pool its connection: a replaced SQLite connection leaves its page cache
    /// resident in its dead thread's malloc arena (see `Store::connect`).
    #[tokio::test]
    async fn a_dropped_acquire_leaves_the_sqlite_connections_in_the_pool() {
        let dir = tempfile::tempdir().expect("temporary directory");
        let store = Store::connect(
            &Store::sqlite_url_in(dir.path()),
            &ConnectOptions::default(),
        )
        .await
        .expect("SQLite opens");
        let Pools::Sqlite { write, read } = store.pools() else {
            unreachable!("a sqlite URL opens SQLite")
        };
        for pool in [write, read] {
            // The settings themselves: whether the poll below stops at a ping depends on
            // how fast the connection's thread answers, so it can pass without them.
            let settings = pool.options();
            assert!(!settings.get_test_before_acquire());
            assert_eq!(settings.get_max_lifetime(), None);
            assert_eq!(settings.get_idle_timeout(), None);
            sqlx::query("SELECT 1")
                .execute(pool)
                .await
                .expect("query runs");
            while pool.num_idle() == 0 {
                tokio::task::yield_now().await;
            }
            let open = pool.size();
            // One poll, then dropped: with a ping before handing out an idle connection,
            // the poll stops at the ping and the drop closes the connection.
            let mut acquire = std::pin::pin!(pool.acquire());
            let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
            let polled = std::future::Future::poll(acquire.as_mut(), &mut cx);
            assert!(
                polled.is_ready(),
                "an idle connection is handed out at once"
            );
            drop(polled);
            assert_eq!(pool.size(), open, "no connection was closed");
            // Handing it back pings it on the connection's worker thread: wait for that.
            for _ in 0..500 {
                if pool.num_idle() == open as usize {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            assert_eq!(pool.num_idle(), open as usize, "the connection went back");
        }
        store.close().await;
    }
}
