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

use std::sync::Arc;
use std::time::Instant;

use serde::Deserialize;
use toml::Spanned;

use crate::backend::{BackendSpec, Pool};
use crate::balance::{Algorithm, Balancer};
use crate::config::{Config, HashKey};

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

    /// The routes of `config`: those of its file (read now), then the flags' backends.
    pub fn load(config: &Config) -> Result<Self, ConfigError> {
        let mut routes = match &config.config {
            Some(path) => {
                let display = path.display().to_string();
                let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
                    path: display.clone(),
                    line: 0,
                    reason: format!("cannot read: {e}"),
                })?;
                parse(&text, config).map_err(|(line, reason)| ConfigError {
                    path: display,
                    line,
                    reason,
                })?
            }
            None => Vec::new(),
        };
        if !config.backends.is_empty() {
            routes.push(build(
                "default",
                None,
                "/".into(),
                config.algorithm,
                config.hash_key.clone(),
                &config.backends,
                config,
            ));
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

fn build(
    name: &str,
    host: Option<String>,
    path_prefix: String,
    algorithm: Algorithm,
    hash_key: HashKey,
    backends: &[BackendSpec],
    config: &Config,
) -> Route {
    let names: Vec<String> = backends.iter().map(BackendSpec::name).collect();
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    let weights: Vec<u32> = backends.iter().map(|b| b.weight).collect();
    let balancer = Balancer::new(algorithm, &names, &weights);
    Route {
        name: name.to_owned(),
        host,
        path_prefix,
        hash_key,
        pool: Arc::new(Pool::new(
            backends,
            balancer,
            config.pool_policy(),
            Instant::now(),
        )),
    }
}

/// Parses the file's text; errors are (line, reason).
fn parse(text: &str, config: &Config) -> Result<Vec<Route>, (usize, String)> {
    let line = |offset: usize| text[..offset.min(text.len())].matches('\n').count() + 1;
    let file: File = toml::from_str(text).map_err(|e| {
        let at = e.span().map_or(0, |s| line(s.start));
        (at, e.message().to_owned())
    })?;
    let mut routes = Vec::with_capacity(file.route.len());
    for raw in file.route {
        let at = |s: std::ops::Range<usize>| line(s.start);
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
        let host = raw.host.map(|h| h.into_inner().to_ascii_lowercase());
        routes.push(build(
            raw.name.get_ref(),
            host,
            path_prefix,
            algorithm,
            hash_key,
            &backends,
            config,
        ));
    }
    Ok(routes)
}

#[cfg(test)]
mod tests;
