//! Filling the tiers: building entries, reading L2 into L1, writing L2.

use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tracing::Instrument as _;

use crate::cache::Cache;
use crate::key::{CacheKey, CacheValue};
use crate::l1::Slot;
use crate::l2::Fetched;
use crate::policy::{Entry, jittered_ttl};
use crate::trace;

/// The L2 payload. Borrowing on write avoids cloning the value to serialise it.
#[derive(Serialize)]
pub(crate) struct RecordRef<'a, V> {
    pub value: Option<&'a V>,
    pub delta_micros: u64,
}

#[derive(Deserialize)]
struct Record<V> {
    value: Option<V>,
    delta_micros: u64,
}

impl<K: CacheKey, V: CacheValue> Cache<K, V> {
    /// Reads L2 and, on a hit, fills L1 for no longer than Redis keeps the entry.
    /// `Some(None)` is a negative entry.
    ///
    /// With `outliving: Some(left)`, only a copy that lives at least twice as long as
    /// `left` counts: an early refresh uses it to pick up another instance's refresh
    /// instead of querying the database again, and ignores the copy it already has.
    pub(crate) async fn read_l2(&self, key: &K, outliving: Option<Duration>) -> Option<Option<V>> {
        let inner = &*self.inner;
        let l2 = inner.l2.as_ref()?;
        let span = trace::l2(&inner.namespace);
        let (bytes, left) = match l2.get(&key.key_string()).instrument(span.clone()).await {
            Fetched::Hit(bytes, left) => (bytes, left),
            Fetched::Miss => {
                trace::hit(&span, false);
                inner.metrics.l2_misses.increment(1);
                return None;
            }
            Fetched::Unavailable => {
                trace::unavailable(&span);
                return None;
            }
        };
        let Ok(record) = postcard::from_bytes::<Record<V>>(&bytes) else {
            // An old or foreign shape: a miss, and the load below overwrites it.
            trace::hit(&span, false);
            inner.metrics.decode_errors.increment(1);
            inner.metrics.l2_misses.increment(1);
            return None;
        };
        let left = left.unwrap_or(inner.settings.ttl);
        if outliving.is_some_and(|ours| left < ours * 2) {
            trace::hit(&span, false);
            return None;
        }
        trace::hit(&span, true);
        inner.metrics.l2_hits.increment(1);
        let now = inner.clock.monotonic();
        let l1_life = left.min(inner.settings.l1_max_ttl);
        let entry = Entry {
            value: record.value.clone(),
            expires_at: now + left,
            l1_until: now + l1_life,
            delta: Duration::from_micros(record.delta_micros),
            reclaim_after: l1_life,
        };
        inner.l1.insert(key.clone(), Arc::new(entry));
        Some(record.value)
    }

    /// A fresh entry with a jittered TTL; returns it with that TTL (for L2).
    pub(crate) fn new_entry(&self, value: Option<V>, delta: Duration) -> (Slot<V>, Duration) {
        let inner = &*self.inner;
        let s = &inner.settings;
        let base = if value.is_some() {
            s.ttl
        } else {
            s.negative_ttl
        };
        let ttl = jittered_ttl(base, s.jitter, inner.random.next_f64());
        let now = inner.clock.monotonic();
        let l1_life = if inner.l2.is_some() {
            ttl.min(s.l1_max_ttl)
        } else {
            ttl
        };
        let entry = Entry {
            value,
            expires_at: now + ttl,
            l1_until: now + l1_life,
            delta,
            reclaim_after: l1_life,
        };
        (Arc::new(entry), ttl)
    }

    pub(crate) async fn write_l2(&self, key: &K, entry: &Entry<V>, ttl: Duration) {
        let Some(l2) = &self.inner.l2 else { return };
        let record = RecordRef {
            value: entry.value.as_ref(),
            delta_micros: u64::try_from(entry.delta.as_micros()).unwrap_or(u64::MAX),
        };
        match postcard::to_allocvec(&record) {
            Ok(bytes) => l2.set(&key.key_string(), bytes, ttl).await,
            Err(error) => tracing::warn!(%error, "value does not serialise; kept in L1 only"),
        }
    }
}
