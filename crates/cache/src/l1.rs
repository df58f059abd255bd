//! L1: the in-process tier on moka, bounded by weight in bytes.

use std::sync::Arc;
use std::time::{Duration, Instant};

use moka::Expiry;
use moka::notification::RemovalCause;
use moka::policy::EvictionPolicy;

use crate::key::CacheKey;
use crate::metrics::Metrics;
use crate::policy::Entry;

/// How L1 chooses what to evict when it is full.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Eviction {
    /// Least recently used: simple, good for recency-heavy traffic.
    Lru,
    /// Window TinyLFU (moka's default): admits by frequency, resists scans; usually the
    /// better hit ratio on skewed (Zipf-like) traffic. See `bench/cache/RESULTS.md`.
    #[default]
    TinyLfu,
}

/// Estimates the bytes a key and value hold, heap included.
pub type Weigher<K, V> = Arc<dyn Fn(&K, &V) -> u32 + Send + Sync>;

/// Bytes charged per entry for moka's bookkeeping and our `Entry` header.
const ENTRY_OVERHEAD: u32 = 96;

/// Moka counts weight in blocks of this many bytes, not single bytes: its TinyLFU sizes
/// the frequency sketch and its aging period by the capacity, and a capacity counted in
/// bytes (≈100× the entry count) degrades admission (measured: 51.7 % → 54.9 % hit ratio
/// at a 1 % cache when switching from bytes to 64-byte blocks; `bench/cache/RESULTS.md`).
const WEIGHT_UNIT: u32 = 64;

pub(crate) type Slot<V> = Arc<Entry<V>>;

/// The moka cache plus the few operations the rest of the crate needs.
pub(crate) struct L1<K, V> {
    cache: moka::sync::Cache<K, Slot<V>>,
}

impl<K, V> Clone for L1<K, V> {
    fn clone(&self) -> Self {
        Self {
            cache: self.cache.clone(),
        }
    }
}

/// Lets moka reclaim entries whose data expired, measured in real time.
struct ReclaimExpiry;

impl<K, V> Expiry<K, Slot<V>> for ReclaimExpiry {
    fn expire_after_create(&self, _: &K, entry: &Slot<V>, _: Instant) -> Option<Duration> {
        Some(entry.reclaim_after)
    }

    fn expire_after_update(
        &self,
        _: &K,
        entry: &Slot<V>,
        _: Instant,
        _: Option<Duration>,
    ) -> Option<Duration> {
        Some(entry.reclaim_after)
    }
}

impl<K: CacheKey, V: Send + Sync + 'static> L1<K, V> {
    pub(crate) fn new(
        max_bytes: u64,
        eviction: Eviction,
        weigher: Weigher<K, V>,
        metrics: &Metrics,
    ) -> Self {
        let evictions = metrics.evictions.clone();
        let policy = match eviction {
            Eviction::Lru => EvictionPolicy::lru(),
            Eviction::TinyLfu => EvictionPolicy::tiny_lfu(),
        };
        let key_weight = std::mem::size_of::<K>() as u32;
        let cache = moka::sync::Cache::builder()
            .max_capacity((max_bytes / u64::from(WEIGHT_UNIT)).max(1))
            .eviction_policy(policy)
            .weigher(move |k: &K, e: &Slot<V>| {
                let value = e.value.as_ref().map_or(key_weight, |v| weigher(k, v));
                value.saturating_add(ENTRY_OVERHEAD).div_ceil(WEIGHT_UNIT)
            })
            .expire_after(ReclaimExpiry)
            .eviction_listener(move |_k, _v, cause| {
                if cause == RemovalCause::Size {
                    evictions.increment(1);
                }
            })
            .support_invalidation_closures()
            .build();
        Self { cache }
    }

    pub(crate) fn get<Q>(&self, key: &Q) -> Option<Slot<V>>
    where
        K: std::borrow::Borrow<Q>,
        Q: std::hash::Hash + Eq + ?Sized,
    {
        self.cache.get(key)
    }

    /// Whether `key` is present, without counting a read: a second `get` for the same
    /// request would inflate the key's frequency and skew TinyLFU's admission.
    pub(crate) fn contains(&self, key: &K) -> bool {
        self.cache.contains_key(key)
    }

    pub(crate) fn insert(&self, key: K, entry: Slot<V>) {
        self.cache.insert(key, entry);
    }

    pub(crate) fn remove(&self, key: &K) {
        self.cache.invalidate(key);
    }

    /// Drops every entry whose textual key starts with `prefix`.
    pub(crate) fn remove_prefix(&self, prefix: &str) {
        if prefix.is_empty() {
            self.clear();
            return;
        }
        let prefix = prefix.to_owned();
        let predicate = move |k: &K, _: &Slot<V>| k.key_string().starts_with(&prefix);
        if self.cache.invalidate_entries_if(predicate).is_err() {
            // Only possible without `support_invalidation_closures`, which we always set.
            self.clear();
        }
    }

    pub(crate) fn clear(&self) {
        self.cache.invalidate_all();
    }

    /// Applies pending evictions now (moka batches them); used by tests and benchmarks.
    pub(crate) fn sync(&self) {
        self.cache.run_pending_tasks();
    }

    pub(crate) fn entry_count(&self) -> u64 {
        self.cache.entry_count()
    }

    /// The estimated bytes held (rounded up to whole weight units per entry).
    pub(crate) fn weighted_bytes(&self) -> u64 {
        self.cache.weighted_size() * u64::from(WEIGHT_UNIT)
    }
}
