//! Metric handles, registered once per cache so the hit path only bumps a counter.
//!
//! Every series carries a `namespace` label. The server installs the Prometheus recorder;
//! install it before building caches, as handles are bound to the recorder present at
//! registration.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use metrics::{Counter, counter};

/// A Prometheus counter that also keeps its own count, for the figures the cache reports
/// about itself ([`crate::Cache::hit_counts`]) without reading the exporter's text.
#[derive(Clone)]
pub(crate) struct Tally {
    counter: Counter,
    seen: Arc<AtomicU64>,
}

impl Tally {
    fn new(counter: Counter) -> Self {
        Self {
            counter,
            seen: Arc::default(),
        }
    }

    /// Adds `n` to both counts.
    pub(crate) fn increment(&self, n: u64) {
        self.counter.increment(n);
        self.seen.fetch_add(n, Ordering::Relaxed);
    }

    /// The count so far (this cache handle's, since it was built).
    pub(crate) fn get(&self) -> u64 {
        self.seen.load(Ordering::Relaxed)
    }
}

/// The counters of one cache namespace.
#[derive(Clone)]
pub(crate) struct Metrics {
    pub l1_hits: Tally,
    pub l1_misses: Tally,
    pub l2_hits: Tally,
    pub l2_misses: Tally,
    pub negative_hits: Counter,
    pub loads: Counter,
    pub load_errors: Counter,
    pub coalesced: Counter,
    pub early_refreshes: Counter,
    pub evictions: Counter,
    pub invalidations_sent: Counter,
    pub invalidations_received: Counter,
    pub l1_resyncs: Counter,
    pub redis_errors: Counter,
    pub redis_timeouts: Counter,
    pub redis_skipped: Counter,
    pub decode_errors: Counter,
    pub wb_flushes: Counter,
    pub wb_flushed_items: Counter,
    pub wb_flush_errors: Counter,
}

impl Metrics {
    pub(crate) fn new(namespace: &str) -> Self {
        let ns = namespace.to_owned();
        let tier = |name: &'static str, tier: &'static str| {
            Tally::new(counter!(name, "namespace" => ns.clone(), "tier" => tier))
        };
        let plain = |name: &'static str| counter!(name, "namespace" => ns.clone());
        Self {
            l1_hits: tier("basis_cache_hits_total", "l1"),
            l1_misses: tier("basis_cache_misses_total", "l1"),
            l2_hits: tier("basis_cache_hits_total", "l2"),
            l2_misses: tier("basis_cache_misses_total", "l2"),
            negative_hits: plain("basis_cache_negative_hits_total"),
            loads: plain("basis_cache_loads_total"),
            load_errors: plain("basis_cache_load_errors_total"),
            coalesced: plain("basis_cache_coalesced_waiters_total"),
            early_refreshes: plain("basis_cache_early_refreshes_total"),
            evictions: plain("basis_cache_evictions_total"),
            invalidations_sent: plain("basis_cache_invalidations_sent_total"),
            invalidations_received: plain("basis_cache_invalidations_received_total"),
            l1_resyncs: plain("basis_cache_l1_resyncs_total"),
            redis_errors: plain("basis_cache_redis_errors_total"),
            redis_timeouts: plain("basis_cache_redis_timeouts_total"),
            redis_skipped: plain("basis_cache_redis_skipped_total"),
            decode_errors: plain("basis_cache_decode_errors_total"),
            wb_flushes: plain("basis_cache_write_behind_flushes_total"),
            wb_flushed_items: plain("basis_cache_write_behind_items_total"),
            wb_flush_errors: plain("basis_cache_write_behind_flush_errors_total"),
        }
    }
}
