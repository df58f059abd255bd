//! Routes from the TOML file given with `--config`: which requests go to which backends, each
//! route with its own algorithm and hash key. A request takes the first route whose host (if
//! given) and path prefix match; the `--backend` flags, when present, form a last route that
//! matches everything. Every mistake in the file is reported with its line and reason.
//!
//! ```toml
//! [[route]]
//! name = "api"
//! host = "api.example.com"        # optional; compared without the port
//! path_prefix = "/api/"           # default "/"
//! algorithm = "least-conn"        # default: --algorithm
//! hash_key = "cookie:session"     # default: --hash-key
//! backends = ["http://10.0.0.1:8080=2", "http://10.0.0.2:8080"]
//! ```
//!
//! In `--mode tcp` there is no host or path: each route has its own `listen` address instead
//! (one route may go without and take `--listen`; the `--backend` flags' route always does).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use serde::Deserialize;
use toml::Spanned;

use crate::backend::{BackendSpec, Pool};
use crate::balance::{Algorithm, Balancer};
use crate::config::{Config, HashKey, Mode};

/// A configuration file that cannot be used: where and why.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{path}: line {line}: {reason}")]
pub struct ConfigError {
    /// The file.
    pub path: String,
    /// 1-based line of the mistake.
    pub line: usize,
    /// What is wrong.
    pub reason: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(default)]
    route: Vec<RawRoute>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRoute {
    name: Spanned<String>,
    host: Option<Spanned<String>>,
    path_prefix: Option<Spanned<String>>,
    algorithm: Option<Spanned<String>>,
    hash_key: Option<Spanned<String>>,
    listen: Option<Spanned<String>>,
    backends: Spanned<Vec<Spanned<String>>>,
}

/// One route's rule and backends.
#[derive(Debug)]
pub struct Route {
    /// Its name in status and logs.
    pub name: String,
    /// Host to match (lower case, no port), if any.
    pub host: Option<String>,
    /// Path prefix to match.
    pub path_prefix: String,
    /// What the hashing algorithms hash.
    pub hash_key: HashKey,
    /// TCP mode: the route's own listener (`None`: `--listen`).
    pub listen: Option<SocketAddr>,
    /// Its backends and balancer.
    pub pool: Arc<Pool>,
}

impl Route {
    fn matches(&self, host: Option<&str>, path: &str) -> bool {
        let host_ok = match (&self.host, host) {
            (None, _) => true,
            (Some(want), Some(got)) => {
                let got = got.rsplit_once(':').map_or(got, |(h, _)| h);
                want.eq_ignore_ascii_case(got)
            }
            (Some(_), None) => false,
        };
        host_ok && path.starts_with(&self.path_prefix)
    }
}

/// All routes, in matching order.
#[derive(Debug)]
pub struct Routes {
    /// The routes.
    pub routes: Vec<Route>,
}

impl Routes {
    /// The route for a request, if any matches.
    pub fn select(&self, host: Option<&str>, path: &str) -> Option<&Route> {
        self.routes.iter().find(|r| r.matches(host, path))
    }

    /// The route named `name`.
    pub fn named(&self, name: &str) -> Option<&Route> {
        self.routes.iter().find(|r| r.name == name)
    }

    /// TCP mode's listeners: each route's name and its own address (`None`: `--listen`).
    pub fn listeners(&self) -> Vec<(String, Option<SocketAddr>)> {
        self.routes
            .iter()
            .map(|r| (r.name.clone(), r.listen))
            .collect()
    }

    /// The routes of `config`: those of its file (read now), then the flags' backends.
    /// Backends that a route of the same name in `previous` (the routes being replaced) also
    /// has keep their state.
    pub fn load(config: &Config, previous: Option<&Routes>) -> Result<Self, ConfigError> {
        let mut routes = match &config.config {
            Some(path) => {
                let display = path.display().to_string();
                let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
                    path: display.clone(),
                    line: 0,
                    reason: format!("cannot read: {e}"),
                })?;
                parse(&text, config, previous).map_err(|(line, reason)| ConfigError {
                    path: display,
                    line,
                    reason,
                })?
            }
            None => Vec::new(),
        };
        if !config.backends.is_empty() {
            let name = "default";
            routes.push(Route {
                name: name.into(),
                host: None,
                path_prefix: "/".into(),
                hash_key: config.hash_key.clone(),
                listen: None,
                pool: pool(name, config.algorithm, &config.backends, config, previous),
            });
        }
        if routes.is_empty() {
            return Err(ConfigError {
                path: "command line".into(),
                line: 0,
                reason: "no backend: give --backend or a --config file with routes".into(),
            });
        }
        Ok(Self { routes })
    }
}

/// Route `name`'s pool over `backends`, carrying over the state of backends that the route
/// of the same name in `previous` has.
fn pool(
    name: &str,
    algorithm: Algorithm,
    backends: &[BackendSpec],
    config: &Config,
    previous: Option<&Routes>,
) -> Arc<Pool> {
    let names: Vec<String> = backends.iter().map(BackendSpec::name).collect();
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    let weights: Vec<u32> = backends.iter().map(|b| b.weight).collect();
    let balancer = Balancer::new(algorithm, &names, &weights);
    let before = previous.and_then(|p| p.named(name));
    Arc::new(Pool::new(
        backends,
        balancer,
        config.pool_policy(),
        Instant::now(),
        before.map(|r| &*r.pool),
    ))
}

/// Parses the file's text; errors are (line, reason).
fn parse(
    text: &str,
    config: &Config,
    previous: Option<&Routes>,
) -> Result<Vec<Route>, (usize, String)> {
    let line = |offset: usize| text[..offset.min(text.len())].matches('\n').count() + 1;
    let file: File = toml::from_str(text).map_err(|e| {
        let at = e.span().map_or(0, |s| line(s.start));
        (at, e.message().to_owned())
    })?;
    let mut routes: Vec<Route> = Vec::with_capacity(file.route.len());
    // TCP mode: the flags' route, if any, takes --listen; one file route may take it otherwise.
    let mut on_main_listener = !config.backends.is_empty();
    for raw in file.route {
        let at = |s: std::ops::Range<usize>| line(s.start);
        if routes.iter().any(|r| r.name == *raw.name.get_ref()) {
            return Err((
                at(raw.name.span()),
                format!("a route named `{}` comes earlier", raw.name.get_ref()),
            ));
        }
        let listen = match (&raw.listen, config.mode) {
            (Some(l), Mode::Http) => {
                return Err((
                    at(l.span()),
                    "`listen` is for --mode tcp routes; HTTP routes share --listen".into(),
                ));
            }
            (Some(l), Mode::Tcp) => {
                let address: SocketAddr = l.get_ref().parse().map_err(|_| {
                    (
                        at(l.span()),
                        format!("`{}` is not an address:port", l.get_ref()),
                    )
                })?;
                // Port 0 (any free port, in tests) cannot clash.
                let taken =
                    routes.iter().any(|r| r.listen == Some(address)) || address == config.listen;
                if taken && address.port() != 0 {
                    return Err((at(l.span()), format!("{address} is already a listener")));
                }
                Some(address)
            }
            (None, Mode::Tcp) if on_main_listener => {
                return Err((
                    at(raw.name.span()),
                    format!(
                        "route `{}` needs a `listen` address: in TCP mode only one route may use --listen",
                        raw.name.get_ref()
                    ),
                ));
            }
            (None, Mode::Tcp) => {
                on_main_listener = true;
                None
            }
            (None, Mode::Http) => None,
        };
        let algorithm = match &raw.algorithm {
            Some(a) => <Algorithm as clap::ValueEnum>::from_str(a.get_ref(), false)
                .map_err(|_| (at(a.span()), format!("unknown algorithm `{}`", a.get_ref())))?,
            None => config.algorithm,
        };
        let hash_key = match &raw.hash_key {
            Some(k) => k.get_ref().parse().map_err(|e| (at(k.span()), e))?,
            None => config.hash_key.clone(),
        };
        let path_prefix = match &raw.path_prefix {
            Some(p) if !p.get_ref().starts_with('/') => {
                return Err((at(p.span()), "path_prefix must start with `/`".into()));
            }
            Some(p) => p.get_ref().clone(),
            None => "/".into(),
        };
        if raw.backends.get_ref().is_empty() {
            return Err((
                at(raw.backends.span()),
                format!("route `{}` has no backends", raw.name.get_ref()),
            ));
        }
        let backends = raw
            .backends
            .get_ref()
            .iter()
            .map(|b| {
                b.get_ref()
                    .parse::<BackendSpec>()
                    .map_err(|e| (at(b.span()), e))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let name = raw.name.into_inner();
        routes.push(Route {
            pool: pool(&name, algorithm, &backends, config, previous),
            name,
            host: raw.host.map(|h| h.into_inner().to_ascii_lowercase()),
            path_prefix,
            hash_key,
            listen,
        });
    }
    Ok(routes)
}

#[cfg(test)]
mod tests;
