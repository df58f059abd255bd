//! Typed configuration, parsed once at start (from flags or `BASIS_*` variables).

use crate::identity::Environment;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use url::Url;

/// Everything `basis serve` needs to know.
#[derive(Debug, Clone, clap::Args)]
pub struct Config {
    /// Address to listen on.
    #[arg(long, env = "BASIS_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,

    /// Directory for the SQLite database and generated files (created if missing).
    #[arg(long, env = "BASIS_DATA_DIR", default_value = "./data")]
    pub data_dir: PathBuf,

    /// Database URL: a `sqlite:` file (default: `basis.db` in the data directory) or a
    /// `postgres://` server.
    #[arg(long, env = "DATABASE_URL")]
    pub database_url: Option<String>,

    /// A PostgreSQL streaming replica of the primary that takes reads which tolerate lag
    /// (repeatable, or comma-separated in `DATABASE_REPLICA_URLS`); a caller's reads after
    /// its own write go to a replica only once it has replayed that write. Ignored, with a
    /// warning, on SQLite.
    #[arg(
        long = "database-replica-url",
        env = "DATABASE_REPLICA_URLS",
        value_delimiter = ','
    )]
    pub database_replica_urls: Vec<String>,

    /// A PostgreSQL database that holds a share of the links (repeatable, or comma-separated
    /// in `BASIS_SHARD_URLS`): links and their clicks are spread over these by a map of 256
    /// logical shards kept in the main database (`--database-url`, then the catalog), which
    /// must be PostgreSQL. Empty: links stay in the main database.
    #[arg(long = "shard-url", env = "BASIS_SHARD_URLS", value_delimiter = ',')]
    pub shard_urls: Vec<String>,

    /// A replica lagging further behind the primary than this many milliseconds, or failing
    /// its health check, leaves the rotation until it catches up.
    #[arg(long, env = "BASIS_REPLICA_MAX_LAG_MS", default_value_t = 1000)]
    pub replica_max_lag_ms: u64,

    /// Connections per database pool.
    #[arg(long, env = "BASIS_DB_POOL_SIZE", default_value_t = 16)]
    pub db_pool_size: u32,

    /// Memory SQLite may use in total, in MiB: its page caches (half to the writer, a
    /// quarter shared by the readers), prepared statements and schemas. Ignored on
    /// PostgreSQL.
    #[arg(long, env = "BASIS_SQLITE_MEMORY_MB", default_value_t = 64)]
    pub sqlite_memory_mb: u64,

    /// Log a warning with the SQL (never its bound values) and duration of every statement
    /// that runs at least this many milliseconds; 0 turns the slow-query log off.
    #[arg(long, env = "BASIS_SLOW_QUERY_MS", default_value_t = 500)]
    pub slow_query_ms: u64,

    /// Public origin used to build `shortUrl` (default: `http://<listen>`).
    #[arg(long, env = "BASIS_BASE_URL")]
    pub base_url: Option<Url>,

    /// Deployment environment.
    #[arg(
        long = "env",
        env = "BASIS_ENV",
        value_enum,
        default_value = "development"
    )]
    pub environment: Environment,

    /// Longest accepted `longUrl`, in bytes.
    #[arg(long, env = "BASIS_MAX_URL_LENGTH", default_value_t = 2048)]
    pub max_url_length: usize,

    /// A file of hosts (one per line, `#` comments) that links may not point to; a listed
    /// host also blocks its subdomains.
    #[arg(long, env = "BASIS_HOST_BLOCKLIST")]
    pub host_blocklist: Option<PathBuf>,

    /// How often aggregated clicks are written to the database, in milliseconds.
    #[arg(long, env = "BASIS_CLICK_FLUSH_MS", default_value_t = 1000)]
    pub click_flush_ms: u64,

    /// A further domain short links may live on (repeatable, or comma-separated in
    /// `BASIS_DOMAINS`); the base URL's host is always one.
    #[arg(long = "domain", env = "BASIS_DOMAINS", value_delimiter = ',')]
    pub domains: Vec<String>,

    /// Where a short-link request on a host that is none of the domains is redirected
    /// (default: 404).
    #[arg(long, env = "BASIS_UNKNOWN_DOMAIN_REDIRECT")]
    pub unknown_domain_redirect: Option<Url>,

    /// Keep a log of individual visits for this many days (off when unset or 0).
    #[arg(long, env = "BASIS_VISIT_LOG_DAYS")]
    pub visit_log_days: Option<u32>,

    /// A MaxMind-format database (`.mmdb`, e.g. GeoLite2-Country) giving visitors'
    /// countries to the visit log and to routing rules that target countries.
    #[arg(long, env = "BASIS_GEOIP_DB")]
    pub geoip_db: Option<PathBuf>,

    /// Largest accepted request body, in bytes.
    #[arg(long, env = "BASIS_BODY_LIMIT", default_value_t = 64 * 1024)]
    pub body_limit: usize,

    /// Longest time a request may take before it is answered with 503, in milliseconds.
    #[arg(long, env = "BASIS_REQUEST_TIMEOUT_MS", default_value_t = 10_000)]
    pub request_timeout_ms: u64,

    /// Memory the in-process link cache may use, in MiB.
    #[arg(long, env = "BASIS_LINK_CACHE_MB", default_value_t = 64)]
    pub link_cache_mb: u64,

    /// Redis URL: when set, rate-limit state and the cache's second tier live in Redis,
    /// shared by every instance.
    #[arg(long, env = "REDIS_URL")]
    pub redis_url: Option<String>,

    /// A TOML file of rate-limit rules (default: the built-in rules).
    #[arg(long, env = "BASIS_RATE_LIMIT_CONFIG")]
    pub rate_limit_config: Option<PathBuf>,

    /// `off` turns every rate-limit rule off (for load tests).
    #[arg(long, env = "BASIS_RATE_LIMITS")]
    pub rate_limits: Option<String>,

    /// Longest time a graceful stop waits for open requests, in milliseconds.
    #[arg(long, env = "BASIS_SHUTDOWN_GRACE_MS", default_value_t = 30_000)]
    pub shutdown_grace_ms: u64,

    /// Identity: JWT keys, mail, OpenID Connect.
    #[command(flatten)]
    pub auth: crate::identity::AuthConfig,

    /// TLS, the HTTP redirector and CORS.
    #[command(flatten)]
    pub transport: crate::http::transport::TransportConfig,

    /// Connection limits and timeouts, load shedding.
    #[command(flatten)]
    pub conn: crate::http::conn::ConnConfig,

    /// The job queue and its workers.
    #[command(flatten)]
    pub jobs: crate::jobs::JobsConfig,

    /// The shop's checkout: the payment provider and the saga's timing.
    #[command(flatten)]
    pub shop: crate::shop::handle::ShopConfig,

    /// Webhooks: which endpoints are accepted and how long an attempt may take.
    #[command(flatten)]
    pub webhooks: crate::webhooks::WebhookConfig,
    /// Transfers to another bank's ledger: its database, names, 2PC or saga.
    #[command(flatten)]
    pub cross: crate::ledger::cross::CrossConfig,
}

impl Config {
    /// A development configuration with every default, storing data in `data_dir`.
    pub fn with_data_dir(data_dir: impl AsRef<Path>) -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            data_dir: data_dir.as_ref().to_path_buf(),
            database_url: None,
            database_replica_urls: Vec::new(),
            shard_urls: Vec::new(),
            replica_max_lag_ms: 1000,
            db_pool_size: 16,
            sqlite_memory_mb: 64,
            slow_query_ms: 500,
            base_url: None,
            environment: Environment::Development,
            max_url_length: 2048,
            host_blocklist: None,
            click_flush_ms: 1000,
            visit_log_days: None,
            geoip_db: None,
            domains: Vec::new(),
            unknown_domain_redirect: None,
            body_limit: 64 * 1024,
            request_timeout_ms: 10_000,
            link_cache_mb: 64,
            redis_url: None,
            rate_limit_config: None,
            rate_limits: None,
            shutdown_grace_ms: 30_000,
            auth: crate::identity::AuthConfig {
                mail_from: "Basis <no-reply@localhost>".into(),
                ..Default::default()
            },
            transport: Default::default(),
            conn: Default::default(),
            jobs: Default::default(),
            shop: Default::default(),
            webhooks: Default::default(),
            cross: Default::default(),
        }
    }

    /// The Redis URL in effect (an empty value means none).
    pub fn redis_url(&self) -> Option<&str> {
        self.redis_url.as_deref().filter(|url| !url.is_empty())
    }

    /// The database URL in effect.
    pub fn database_url(&self) -> String {
        self.database_url
            .clone()
            .unwrap_or_else(|| basis_store::Store::sqlite_url_in(&self.data_dir))
    }

    /// The replica URLs in effect (empty values dropped).
    pub fn replica_urls(&self) -> Vec<String> {
        self.database_replica_urls
            .iter()
            .map(|url| url.trim())
            .filter(|url| !url.is_empty())
            .map(str::to_owned)
            .collect()
    }

    /// The shard database URLs in effect (empty values dropped).
    pub fn shard_urls(&self) -> Vec<String> {
        self.shard_urls
            .iter()
            .map(|url| url.trim())
            .filter(|url| !url.is_empty())
            .map(str::to_owned)
            .collect()
    }

    /// The replica lag limit.
    pub fn replica_max_lag(&self) -> Duration {
        Duration::from_millis(self.replica_max_lag_ms)
    }

    /// The public origin in effect for an app bound to `bound`.
    pub fn base_url_for(&self, bound: SocketAddr) -> Url {
        self.base_url.clone().unwrap_or_else(|| {
            Url::parse(&format!("http://{bound}")).expect("a socket address forms a valid URL")
        })
    }

    /// The slow-statement threshold in effect (`None`: off).
    pub fn slow_statement(&self) -> Option<Duration> {
        (self.slow_query_ms > 0).then(|| Duration::from_millis(self.slow_query_ms))
    }

    /// The click flush interval.
    pub fn click_flush_interval(&self) -> Duration {
        Duration::from_millis(self.click_flush_ms.max(10))
    }

    /// The request timeout.
    pub fn request_timeout(&self) -> Duration {
        Duration::from_millis(self.request_timeout_ms.max(1))
    }

    /// The graceful stop deadline.
    pub fn shutdown_grace(&self) -> Duration {
        Duration::from_millis(self.shutdown_grace_ms)
    }
}
