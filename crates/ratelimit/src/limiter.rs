//! [`Limiter`]: a store plus the outage policy, the one thing callers decide through.
//!
//! The memory store cannot fail. For Redis every decision is bounded by a timeout
//! (default 50 ms); when Redis errors or is late, the configured [`OutagePolicy`]
//! answers instead, the outage is logged once (and its end once) and counted in
//! metrics, and the next decision simply tries Redis again: the connection manager
//! reconnects on its own, so limiting resumes without anyone stepping in.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde::Deserialize;

use crate::algorithm::Decision;
use crate::clock::{Clock, Nanos};
use crate::error::Error;
use crate::metrics;
use crate::store::{Check, MemoryConfig, MemoryStore, RedisStore, Store};

/// A clock shared behind a pointer, so one [`Limiter`] type serves tests and production.
pub type SharedClock = Arc<dyn Clock>;

impl Clock for SharedClock {
    #[inline]
    fn now(&self) -> Nanos {
        (**self).now()
    }
}

/// What to answer when the shared store cannot decide in time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OutagePolicy {
    /// Let requests through (availability first).
    #[default]
    FailOpen,
    /// Refuse requests with 429 (protection first, e.g. for login).
    FailClosed,
    /// Decide with a local in-memory limiter using the same rules: limits stay enforced,
    /// per instance, until the store is back.
    Fallback,
}

/// The decision timeout and the policy applied when it is exceeded.
#[derive(Debug, Clone, Copy)]
pub struct OutageConfig {
    /// How long one decision may wait for the store.
    pub timeout: Duration,
    /// What to answer when the store fails or is late.
    pub policy: OutagePolicy,
}

impl Default for OutageConfig {
    fn default() -> Self {
        Self {
            timeout: Duration::from_millis(50),
            policy: OutagePolicy::FailOpen,
        }
    }
}

/// Who answered a [`Verdict`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// The configured store.
    Store,
    /// The local fallback limiter, because the store failed.
    Fallback,
    /// Nobody: the store failed and the policy let the request pass.
    FailedOpen,
    /// Nobody: the store failed and the policy refused the request.
    FailedClosed,
}

/// The answer for a set of checks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    /// One decision per check, in order.
    pub decisions: Vec<Decision>,
    /// Who decided.
    pub source: Source,
}

impl Verdict {
    /// Whether every check passed.
    pub fn allowed(&self) -> bool {
        self.decisions.iter().all(|d| d.allowed)
    }
}

/// Decides rate limits through a store. Cheap to clone (one `Arc`).
#[derive(Clone, Debug)]
pub struct Limiter {
    inner: Arc<Backend>,
}

#[derive(Debug)]
enum Backend {
    Memory(MemoryStore<SharedClock>),
    Redis {
        store: RedisStore,
        outage: OutageConfig,
        fallback: Option<MemoryStore<SharedClock>>,
        degraded: AtomicBool,
    },
}

impl Limiter {
    /// A limiter holding its state in this process, on the system clock.
    pub fn in_memory(config: MemoryConfig) -> Self {
        Self::in_memory_with_clock(config, system_clock())
    }

    /// A limiter holding its state in this process, on `clock`.
    pub fn in_memory_with_clock(config: MemoryConfig, clock: SharedClock) -> Self {
        Self {
            inner: Arc::new(Backend::Memory(MemoryStore::with_clock(config, clock))),
        }
    }

    /// A limiter sharing its state through Redis, with `outage` applied when Redis fails.
    /// The fallback (when the policy asks for one) is sized by `fallback`.
    pub fn redis(store: RedisStore, outage: OutageConfig, fallback: MemoryConfig) -> Self {
        let fallback = (outage.policy == OutagePolicy::Fallback)
            .then(|| MemoryStore::with_clock(fallback, system_clock()));
        Self {
            inner: Arc::new(Backend::Redis {
                store,
                outage,
                fallback,
                degraded: AtomicBool::new(false),
            }),
        }
    }

    /// Decides `checks`. Never fails: a store failure is answered by the outage policy.
    pub async fn check(&self, checks: &[Check<'_>]) -> Verdict {
        match &*self.inner {
            Backend::Memory(store) => Verdict {
                decisions: store.check_many(checks),
                source: Source::Store,
            },
            Backend::Redis {
                store,
                outage,
                fallback,
                degraded,
            } => {
                let start = Instant::now();
                let result = match tokio::time::timeout(outage.timeout, store.check(checks)).await {
                    Ok(result) => result,
                    Err(_) => Err(Error::Timeout(outage.timeout)),
                };
                metrics::store_latency("redis", start.elapsed());
                match result {
                    Ok(decisions) => {
                        if degraded.swap(false, Ordering::Relaxed) {
                            tracing::info!("rate-limit store is back; limiting through Redis");
                            metrics::store_degraded("redis", false);
                        }
                        Verdict {
                            decisions,
                            source: Source::Store,
                        }
                    }
                    Err(error) => {
                        let kind = if matches!(error, Error::Timeout(_)) {
                            "timeout"
                        } else {
                            "error"
                        };
                        metrics::store_error("redis", kind);
                        if !degraded.swap(true, Ordering::Relaxed) {
                            tracing::warn!(%error, policy = ?outage.policy,
                                "rate-limit store unavailable; applying the outage policy");
                            metrics::store_degraded("redis", true);
                        } else {
                            tracing::debug!(%error, "rate-limit store still unavailable");
                        }
                        on_outage(outage.policy, fallback.as_ref(), checks)
                    }
                }
            }
        }
    }

    /// Drops idle keys of in-memory state (the store, or the Redis fallback); returns how
    /// many. The server may call this from a periodic task.
    pub fn purge_idle(&self) -> usize {
        match &*self.inner {
            Backend::Memory(store) => store.purge_idle(),
            Backend::Redis { fallback, .. } => fallback.as_ref().map_or(0, |f| f.purge_idle()),
        }
    }
}

fn system_clock() -> SharedClock {
    Arc::new(crate::SystemClock::new())
}

fn on_outage(
    policy: OutagePolicy,
    fallback: Option<&MemoryStore<SharedClock>>,
    checks: &[Check<'_>],
) -> Verdict {
    match (policy, fallback) {
        (OutagePolicy::Fallback, Some(store)) => Verdict {
            decisions: store.check_many(checks),
            source: Source::Fallback,
        },
        (OutagePolicy::FailClosed, _) => Verdict {
            decisions: checks
                .iter()
                .map(|c| Decision {
                    allowed: false,
                    limit: c.policy.limit(),
                    remaining: 0,
                    reset_after: Duration::from_secs(1),
                    retry_after: Duration::from_secs(1),
                })
                .collect(),
            source: Source::FailedClosed,
        },
        _ => Verdict {
            decisions: checks
                .iter()
                .map(|c| Decision {
                    allowed: true,
                    limit: c.policy.limit(),
                    remaining: c.policy.limit(),
                    reset_after: Duration::ZERO,
                    retry_after: Duration::ZERO,
                })
                .collect(),
            source: Source::FailedOpen,
        },
    }
}
