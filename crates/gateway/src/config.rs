//! `basis gateway`'s settings: every flag also reads a `BASIS_GATEWAY_*` variable. Values are
//! parsed into their types here, so a bad one stops the start with the flag and the reason.

use std::net::SocketAddr;
use std::str::FromStr;
use std::time::Duration;

use crate::backend::{BackendSpec, PoolPolicy};
use crate::balance::Algorithm;
use crate::forwarded::Cidr;
use crate::health::{CheckSettings, HealthMode};
use crate::outlier::OutlierPolicy;

/// The gateway's configuration.
#[derive(Debug, Clone, clap::Args)]
pub struct Config {
    /// Address to accept client connections on.
    #[arg(long, env = "BASIS_GATEWAY_LISTEN", default_value = "127.0.0.1:8000")]
    pub listen: SocketAddr,
    /// A backend, `http://host:port` (or `https://`, or `tcp://` in TCP mode) with an optional
    /// `=WEIGHT` (repeat the flag; in the environment, separate with commas).
    #[arg(
        long = "backend",
        env = "BASIS_GATEWAY_BACKENDS",
        value_delimiter = ',',
        required_unless_present = "config"
    )]
    pub backends: Vec<BackendSpec>,
    /// `http` (L7: requests are balanced) or `tcp` (L4: connections are balanced, bytes are
    /// passed through untouched; for PostgreSQL replicas or Redis).
    #[arg(long, env = "BASIS_GATEWAY_MODE", value_enum, default_value = "http")]
    pub mode: Mode,
    /// A TOML file of routes (see docs/gateway.md); SIGHUP reads it again, keeping the running
    /// routes if the new file is invalid.
    #[arg(long, env = "BASIS_GATEWAY_CONFIG")]
    pub config: Option<std::path::PathBuf>,
    /// How a backend is chosen.
    #[arg(
        long,
        env = "BASIS_GATEWAY_ALGORITHM",
        value_enum,
        default_value = "p2c-ewma"
    )]
    pub algorithm: Algorithm,
    /// The key of `ip-hash`/`consistent-hash`: `ip`, `path`, `header:NAME` or `cookie:NAME`.
    #[arg(long, env = "BASIS_GATEWAY_HASH_KEY", default_value = "ip")]
    pub hash_key: HashKey,
    /// Peers whose forwarding headers are believed (address or CIDR; repeat or comma-separate).
    #[arg(
        long = "trusted-proxy",
        env = "BASIS_GATEWAY_TRUSTED_PROXIES",
        value_delimiter = ','
    )]
    pub trusted_proxies: Vec<Cidr>,
    /// PEM certificate chain: the listener then speaks HTTPS (HTTP/2 or 1.1 by ALPN) and adds HSTS.
    #[arg(long, env = "BASIS_GATEWAY_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<std::path::PathBuf>,
    /// PEM private key of the certificate.
    #[arg(long, env = "BASIS_GATEWAY_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<std::path::PathBuf>,
    /// Also listen here for plain HTTP and answer every request with 301 to HTTPS.
    #[arg(long, env = "BASIS_GATEWAY_REDIRECT_HTTP", requires = "tls_cert")]
    pub redirect_http: Option<SocketAddr>,
    /// PEM file of the CA certificates that `https://` backends' certificates must chain to
    /// (a private CA); without it, the webpki roots (Mozilla's list) are trusted.
    #[arg(long, env = "BASIS_GATEWAY_BACKEND_CA")]
    pub backend_ca: Option<std::path::PathBuf>,
    /// Address for `/gateway/status` and `/metrics` (off when unset).
    #[arg(long, env = "BASIS_GATEWAY_ADMIN_LISTEN")]
    pub admin_listen: Option<SocketAddr>,

    /// Active checks: `http` (GET the health path), `tcp` (connect) or `off`.
    #[arg(
        long,
        env = "BASIS_GATEWAY_HEALTH_CHECK",
        value_enum,
        default_value = "http"
    )]
    pub health_check: HealthMode,
    /// Path of HTTP checks.
    #[arg(long, env = "BASIS_GATEWAY_HEALTH_PATH", default_value = "/readyz")]
    pub health_path: String,
    /// Milliseconds between checks.
    #[arg(long, env = "BASIS_GATEWAY_HEALTH_INTERVAL_MS", default_value_t = 1000)]
    pub health_interval_ms: u64,
    /// Milliseconds one check may take.
    #[arg(long, env = "BASIS_GATEWAY_HEALTH_TIMEOUT_MS", default_value_t = 500)]
    pub health_timeout_ms: u64,
    /// Passing checks in a row that bring a backend back.
    #[arg(long, env = "BASIS_GATEWAY_RISE", default_value_t = 2)]
    pub rise: u32,
    /// Failing checks in a row that take a backend out.
    #[arg(long, env = "BASIS_GATEWAY_FALL", default_value_t = 2)]
    pub fall: u32,

    /// Consecutive failures (5xx, no connection, timeout) that eject a backend; 0 = never.
    #[arg(long, env = "BASIS_GATEWAY_EJECT_AFTER", default_value_t = 5)]
    pub eject_after: u32,
    /// First ejection in milliseconds; the n-th lasts n times longer.
    #[arg(long, env = "BASIS_GATEWAY_EJECT_BASE_MS", default_value_t = 10_000)]
    pub eject_base_ms: u64,
    /// Longest ejection in milliseconds.
    #[arg(long, env = "BASIS_GATEWAY_EJECT_MAX_MS", default_value_t = 300_000)]
    pub eject_max_ms: u64,
    /// Most backends ejected at once, in percent (at least one may always be ejected).
    #[arg(long, env = "BASIS_GATEWAY_MAX_EJECTED_PERCENT", default_value_t = 50, value_parser = clap::value_parser!(u8).range(0..=100))]
    pub max_ejected_percent: u8,
    /// Below this percentage of healthy backends, send to all that are not draining.
    #[arg(long, env = "BASIS_GATEWAY_PANIC_THRESHOLD_PERCENT", default_value_t = 50, value_parser = clap::value_parser!(u8).range(0..=100))]
    pub panic_threshold_percent: u8,

    /// Decay time constant of the peak-EWMA latency, in milliseconds (how long a slow answer
    /// keeps weighing on a backend).
    #[arg(long, env = "BASIS_GATEWAY_EWMA_DECAY_MS", default_value_t = 10_000)]
    pub ewma_decay_ms: u64,
    /// Speak HTTP/2 (h2c, prior knowledge) to the backends: one multiplexed connection per
    /// backend instead of a pool of HTTP/1.1 connections. Off: HTTP/1.1.
    #[arg(long, env = "BASIS_GATEWAY_UPSTREAM_HTTP2")]
    pub upstream_http2: bool,
    /// Milliseconds to open an upstream connection.
    #[arg(long, env = "BASIS_GATEWAY_CONNECT_TIMEOUT_MS", default_value_t = 1000)]
    pub connect_timeout_ms: u64,
    /// Milliseconds from sending a request to the backend's response headers.
    #[arg(
        long,
        env = "BASIS_GATEWAY_HEADER_TIMEOUT_MS",
        default_value_t = 30_000
    )]
    pub header_timeout_ms: u64,
    /// Milliseconds an idle upstream keep-alive connection is kept.
    #[arg(long, env = "BASIS_GATEWAY_IDLE_TIMEOUT_MS", default_value_t = 60_000)]
    pub idle_timeout_ms: u64,
    /// Milliseconds a client has to send a request's headers.
    #[arg(
        long,
        env = "BASIS_GATEWAY_CLIENT_HEADER_TIMEOUT_MS",
        default_value_t = 10_000
    )]
    pub client_header_timeout_ms: u64,
    /// Extra attempts on other backends for a request that may be retried.
    #[arg(long, env = "BASIS_GATEWAY_RETRIES", default_value_t = 2)]
    pub retries: u32,
    /// Retries allowed, in percent of the requests of the last 10 seconds (plus 10 per window).
    #[arg(long, env = "BASIS_GATEWAY_RETRY_BUDGET_PERCENT", default_value_t = 20)]
    pub retry_budget_percent: u32,
    /// Request bodies up to this many bytes (with a Content-Length) are read before they are
    /// sent, so a refused connection can be retried elsewhere; larger bodies stream. 0: always stream.
    #[arg(
        long,
        env = "BASIS_GATEWAY_REPLAY_BODY_BYTES",
        default_value_t = 65_536
    )]
    pub replay_body_bytes: u64,
    /// Most request headers accepted.
    #[arg(long, env = "BASIS_GATEWAY_MAX_HEADERS", default_value_t = 100)]
    pub max_headers: usize,
    /// Most bytes of request line and headers accepted (at least 8192).
    #[arg(long, env = "BASIS_GATEWAY_MAX_HEADER_BYTES", default_value_t = 16_384)]
    pub max_header_bytes: usize,
    /// Milliseconds SIGTERM waits for open requests to finish.
    #[arg(long, env = "BASIS_GATEWAY_DRAIN_MS", default_value_t = 10_000)]
    pub drain_ms: u64,
}

impl Config {
    /// A configuration with the defaults and these backends (for tests and embedding).
    pub fn with_backends(listen: SocketAddr, backends: Vec<BackendSpec>) -> Self {
        use clap::{Args as _, FromArgMatches as _};
        let command = Self::augment_args(clap::Command::new("gateway").no_binary_name(true));
        // Defaults only: parsing an empty line with one backend cannot fail.
        let matches = command
            .try_get_matches_from(["--backend", "http://127.0.0.1:1"])
            .expect("defaults parse");
        let mut config = Self::from_arg_matches(&matches).expect("defaults parse");
        config.listen = listen;
        config.backends = backends;
        config
    }

    pub(crate) fn pool_policy(&self) -> PoolPolicy {
        PoolPolicy {
            outlier: OutlierPolicy {
                consecutive_failures: self.eject_after,
                base_ejection: Duration::from_millis(self.eject_base_ms),
                max_ejection: Duration::from_millis(self.eject_max_ms.max(self.eject_base_ms)),
            },
            max_ejected_percent: self.max_ejected_percent,
            panic_threshold_percent: self.panic_threshold_percent,
            rise: self.rise,
            fall: self.fall,
            ewma_tau: Duration::from_millis(self.ewma_decay_ms.max(1)),
        }
    }

    pub(crate) fn check_settings(&self) -> CheckSettings {
        CheckSettings {
            // A TCP backend has no HTTP health path: its check is a connect.
            mode: match (self.mode, self.health_check) {
                (Mode::Tcp, HealthMode::Http) => HealthMode::Tcp,
                (_, mode) => mode,
            },
            path: self.health_path.clone(),
            interval: Duration::from_millis(self.health_interval_ms.max(10)),
            timeout: Duration::from_millis(self.health_timeout_ms.max(1)),
        }
    }
}

/// The layer the gateway balances at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Mode {
    /// HTTP requests (L7).
    Http,
    /// TCP connections (L4).
    Tcp,
}

/// What `ip-hash` and `consistent-hash` hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HashKey {
    /// The client address (after trusted-proxy resolution).
    Ip,
    /// The request path.
    Path,
    /// A request header's value (the client address when absent).
    Header(http::HeaderName),
    /// A cookie's value (the client address when absent).
    Cookie(String),
}

impl FromStr for HashKey {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text.split_once(':') {
            None if text == "ip" => Ok(Self::Ip),
            None if text == "path" => Ok(Self::Path),
            Some(("header", name)) => http::HeaderName::from_str(name)
                .map(Self::Header)
                .map_err(|_| format!("`{name}` is not a header name")),
            Some(("cookie", name)) if !name.is_empty() && !name.contains([';', '=', ' ']) => {
                Ok(Self::Cookie(name.to_owned()))
            }
            _ => Err(format!(
                "`{text}` is not one of ip, path, header:NAME, cookie:NAME"
            )),
        }
    }
}
