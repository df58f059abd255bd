//! The configured backends and what the gateway knows of each: load in flight, latency,
//! active health and passive ejection. [`Pool::candidates`] turns that into the list the
//! balancer chooses from, applying the panic threshold.

use std::str::FromStr;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use http::uri::Authority;

use crate::balance::{Algorithm, Balancer, Candidate};
use crate::ewma::PeakEwma;
use crate::health::{Check, HealthState};
use crate::outlier::{Outcome, Outlier, OutlierPolicy, max_ejected};

/// `--backend URL[=WEIGHT]` as written on the command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackendSpec {
    /// `host:port` to connect to.
    pub authority: Authority,
    /// Relative share of requests (1 when not given).
    pub weight: u32,
    /// `http`, `https`, or `tcp` for an L4 backend.
    pub scheme: &'static str,
}

impl BackendSpec {
    /// The backend's name in status, metrics and on the hash ring: `http://host:port`
    /// (`tcp://host:port` for L4 backends).
    pub fn name(&self) -> String {
        format!("{}://{}", self.scheme, self.authority)
    }
}

impl FromStr for BackendSpec {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let (url, weight) = match text.rsplit_once('=') {
            Some((url, weight)) => {
                let weight: u32 = weight
                    .parse()
                    .map_err(|_| format!("weight `{weight}` is not a whole number"))?;
                if !(1..=1000).contains(&weight) {
                    return Err(format!("weight {weight} is outside 1..=1000"));
                }
                (url, weight)
            }
            None => (text, 1),
        };
        let (scheme, rest) = match url.split_once("://") {
            Some(("http", rest)) => ("http", rest),
            Some(("https", rest)) => ("https", rest),
            Some(("tcp", rest)) => ("tcp", rest),
            Some((scheme, _)) => {
                return Err(format!(
                    "scheme `{scheme}` is not supported (http://, https:// or, in TCP mode, tcp://)"
                ));
            }
            None => ("http", url),
        };
        let rest = rest.strip_suffix('/').unwrap_or(rest);
        if rest.contains(['/', '?', '#', '@']) {
            return Err(format!(
                "`{url}` must be http://host:port, without path or query"
            ));
        }
        let authority: Authority = rest
            .parse()
            .map_err(|_| format!("`{rest}` is not a host:port"))?;
        if authority.port_u16().is_none() {
            return Err(format!("`{url}` needs a port"));
        }
        Ok(Self {
            authority,
            weight,
            scheme,
        })
    }
}

/// Health and selection settings shared by the pool.
#[derive(Debug, Clone, Copy)]
pub struct PoolPolicy {
    /// Passive ejection rules.
    pub outlier: OutlierPolicy,
    /// The most backends ejected at once, in percent of all.
    pub max_ejected_percent: u8,
    /// Below this share of healthy backends (percent), all non-draining backends are used.
    pub panic_threshold_percent: u8,
    /// Consecutive passing checks that bring a backend back.
    pub rise: u32,
    /// Consecutive failing checks that take a backend out.
    pub fall: u32,
    /// The peak-EWMA decay time constant.
    pub ewma_tau: Duration,
}

/// Mutable per-backend state; one short lock, never held across I/O.
#[derive(Debug)]
pub struct BackendState {
    /// Latency estimate.
    pub ewma: PeakEwma,
    /// Passive ejection.
    pub outlier: Outlier,
    /// Active checks.
    pub health: HealthState,
}

/// One backend as configured, and its [`Live`] state.
#[derive(Debug)]
pub struct Backend {
    /// `http://host:port`.
    pub name: String,
    /// Where requests go.
    pub authority: Authority,
    /// Relative share.
    pub weight: u32,
    /// Requests go over TLS (`https://`).
    pub tls: bool,
    /// What the gateway has learnt of it; shared with the next configuration if a reload
    /// keeps the backend.
    pub live: Arc<Live>,
}

/// A backend's counters, health and idle connections, which outlive a reload that keeps it.
#[derive(Debug)]
pub struct Live {
    /// The key of its idle connections (unique in the process).
    pub key: u64,
    /// Requests sent whose responses have not finished.
    pub in_flight: AtomicU32,
    /// Requests sent (including retries).
    pub requests: AtomicU64,
    /// Failed requests (5xx, connect errors, timeouts).
    pub failures: AtomicU64,
    state: Mutex<BackendState>,
}

impl Live {
    fn new(policy: &PoolPolicy, now: Instant) -> Self {
        static KEYS: AtomicU64 = AtomicU64::new(1);
        Self {
            key: KEYS.fetch_add(1, Ordering::Relaxed),
            in_flight: AtomicU32::new(0),
            requests: AtomicU64::new(0),
            failures: AtomicU64::new(0),
            state: Mutex::new(BackendState {
                ewma: PeakEwma::new(Duration::from_millis(1), policy.ewma_tau, now),
                outlier: Outlier::default(),
                health: HealthState::default(),
            }),
        }
    }

    /// The backend's state.
    pub fn state(&self) -> MutexGuard<'_, BackendState> {
        // Only counters live under the lock; a panicked holder leaves them usable.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl std::ops::Deref for Backend {
    type Target = Live;

    fn deref(&self) -> &Live {
        &self.live
    }
}

/// All backends and the balancer over them.
#[derive(Debug)]
pub struct Pool {
    /// The backends, in configuration order (their ids).
    pub backends: Vec<Backend>,
    /// The selection algorithm.
    pub balancer: Balancer,
    /// Health rules.
    pub policy: PoolPolicy,
}

impl Pool {
    /// A pool over `specs`. A backend that `previous` (the pool this one replaces) also has,
    /// by name, keeps its state: health, ejection, latency estimate, requests in flight and
    /// idle connections. The others start up with a 1 ms latency guess.
    pub fn new(
        specs: &[BackendSpec],
        balancer: Balancer,
        policy: PoolPolicy,
        now: Instant,
        previous: Option<&Pool>,
    ) -> Self {
        let backends = specs
            .iter()
            .map(|spec| {
                let name = spec.name();
                let live = previous
                    .and_then(|p| p.backends.iter().find(|b| b.name == name))
                    .map_or_else(|| Arc::new(Live::new(&policy, now)), |b| b.live.clone());
                Backend {
                    name,
                    authority: spec.authority.clone(),
                    weight: spec.weight,
                    tls: spec.scheme == "https",
                    live,
                }
            })
            .collect();
        Self {
            backends,
            balancer,
            policy,
        }
    }

    /// The backends a request may go to at `now`, skipping `exclude` (those already tried).
    /// Healthy means: passing active checks and not ejected. When fewer than the panic
    /// threshold are healthy, every backend that is not draining is used instead, because
    /// sending to a possibly-bad backend beats overloading the few that remain.
    pub fn candidates(&self, now: Instant, exclude: &[usize]) -> Vec<Candidate> {
        // Only P2C-EWMA reads latency; skip the decay (an `exp`) for the others.
        let wants_latency = self.balancer.algorithm() == Algorithm::P2cEwma;
        let mut usable = Vec::with_capacity(self.backends.len());
        let mut healthy_total = 0;
        let mut unhealthy_usable = 0;
        for (id, backend) in self.backends.iter().enumerate() {
            let state = backend.state();
            if state.health.is_draining() {
                continue;
            }
            let is_healthy = state.health.is_up() && !state.outlier.is_ejected(now);
            healthy_total += usize::from(is_healthy);
            if exclude.contains(&id) {
                continue;
            }
            unhealthy_usable += usize::from(!is_healthy);
            usable.push((
                Candidate {
                    id,
                    weight: backend.weight,
                    in_flight: backend.in_flight.load(Ordering::Relaxed),
                    latency_ns: if wants_latency {
                        state.ewma.cost(now)
                    } else {
                        0.0
                    },
                },
                is_healthy,
            ));
        }
        let threshold = self.backends.len() * usize::from(self.policy.panic_threshold_percent);
        let panic = healthy_total * 100 < threshold;
        if !panic && unhealthy_usable > 0 {
            usable.retain(|(_, healthy)| *healthy);
        }
        usable.into_iter().map(|(c, _)| c).collect()
    }

    /// Records a request's outcome on backend `id`: latency for P2C, failures for ejection.
    pub fn record(&self, id: usize, outcome: Outcome, latency: Option<Duration>, now: Instant) {
        let Some(backend) = self.backends.get(id) else {
            return;
        };
        if outcome == Outcome::Failure {
            backend.failures.fetch_add(1, Ordering::Relaxed);
        }
        let may_eject = outcome == Outcome::Failure && self.ejected(now) < self.max_ejected();
        let mut state = backend.state();
        if let Some(latency) = latency {
            state.ewma.observe(latency, now);
        }
        if let Some(length) = state
            .outlier
            .record(outcome, &self.policy.outlier, now, may_eject)
        {
            tracing::warn!(backend = %backend.name, seconds = length.as_secs_f64(), "backend ejected");
            metrics::counter!("gateway_ejections_total", "backend" => backend.name.clone())
                .increment(1);
        }
    }

    /// Records an active check's result on backend `id`.
    pub fn record_check(&self, id: usize, check: Check) {
        let Some(backend) = self.backends.get(id) else {
            return;
        };
        let mut state = backend.state();
        let before = state.health.label();
        if state
            .health
            .record(check, self.policy.rise, self.policy.fall)
        {
            tracing::info!(backend = %backend.name, from = before, to = state.health.label(), "health changed");
        }
    }

    /// Backends ejected at `now`.
    pub fn ejected(&self, now: Instant) -> usize {
        self.backends
            .iter()
            .filter(|b| b.state().outlier.is_ejected(now))
            .count()
    }

    fn max_ejected(&self) -> usize {
        max_ejected(self.backends.len(), self.policy.max_ejected_percent)
    }

    /// Seconds a client should wait before trying again when nothing is available: until the
    /// first ejection ends, at least 1.
    pub fn retry_after(&self, now: Instant) -> u64 {
        self.backends
            .iter()
            .filter_map(|b| b.state().outlier.ejected_until(now))
            .min()
            .map_or(1, |until| {
                until.saturating_duration_since(now).as_secs().max(1)
            })
    }
}

#[cfg(test)]
mod tests;
