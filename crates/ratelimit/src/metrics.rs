//! The metrics this crate emits, through the `metrics` facade (the server installs the
//! Prometheus recorder; without one these calls cost next to nothing).
//!
//! | name | kind | labels |
//! |---|---|---|
//! | `ratelimit_decisions_total` | counter | `rule`, `outcome` = allowed / denied / failed_open / failed_closed |
//! | `ratelimit_store_duration_seconds` | histogram | `store` = redis (a memory decision takes ~100 ns; timing it would cost as much) |
//! | `ratelimit_store_errors_total` | counter | `store`, `kind` = timeout / error |
//! | `ratelimit_store_degraded` | gauge | `store`: 1 while the outage policy is in force |
//! | `ratelimit_memory_keys` | gauge | keys held by in-memory stores |
//! | `ratelimit_memory_evictions_total` | counter | keys evicted because a store was full |

use std::time::Duration;

use metrics::{Key, Label, Level, Metadata, counter, gauge, histogram};

/// Outcome label of a decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The store answered and the request passed.
    Allowed = 0,
    /// The store answered and the request was refused.
    Denied = 1,
    /// The store failed and the fail-open policy let the request pass.
    FailedOpen = 2,
    /// The store failed and the fail-closed policy refused the request.
    FailedClosed = 3,
}

impl Outcome {
    fn label(self) -> &'static str {
        match self {
            Outcome::Allowed => "allowed",
            Outcome::Denied => "denied",
            Outcome::FailedOpen => "failed_open",
            Outcome::FailedClosed => "failed_closed",
        }
    }
}

static METADATA: Metadata<'static> =
    Metadata::new(module_path!(), Level::INFO, Some(module_path!()));

/// The `ratelimit_decisions_total` keys of one rule, built once so that counting a
/// decision allocates nothing. The recorder is looked up at each increment, so it may be
/// installed after the layer is built.
#[derive(Debug, Clone)]
pub(crate) struct DecisionCounters([Key; 4]);

impl DecisionCounters {
    pub(crate) fn new(rule: &str) -> Self {
        let key = |outcome: Outcome| {
            Key::from_parts(
                "ratelimit_decisions_total",
                vec![
                    Label::new("rule", rule.to_owned()),
                    Label::from_static_parts("outcome", outcome.label()),
                ],
            )
        };
        Self([
            key(Outcome::Allowed),
            key(Outcome::Denied),
            key(Outcome::FailedOpen),
            key(Outcome::FailedClosed),
        ])
    }

    pub(crate) fn record(&self, outcome: Outcome) {
        let key = &self.0[outcome as usize];
        metrics::with_recorder(|r| r.register_counter(key, &METADATA).increment(1));
    }
}

pub(crate) fn store_latency(store: &'static str, took: Duration) {
    histogram!("ratelimit_store_duration_seconds", "store" => store).record(took.as_secs_f64());
}

pub(crate) fn store_error(store: &'static str, kind: &'static str) {
    counter!("ratelimit_store_errors_total", "store" => store, "kind" => kind).increment(1);
}

pub(crate) fn store_degraded(store: &'static str, degraded: bool) {
    gauge!("ratelimit_store_degraded", "store" => store).set(if degraded { 1.0 } else { 0.0 });
}

pub(crate) fn memory_keys_added() {
    gauge!("ratelimit_memory_keys").increment(1.0);
}

pub(crate) fn memory_keys_removed(n: usize) {
    if n > 0 {
        gauge!("ratelimit_memory_keys").decrement(n as f64);
    }
}

pub(crate) fn memory_eviction() {
    counter!("ratelimit_memory_evictions_total").increment(1);
}
