//! The cache handle and its read path (L1 → L2 → single-flight loader).

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::Instrument as _;

use crate::error::{BoxError, Error};
use crate::flight::{self, Flights, Leader, Role};
use crate::key::{CacheKey, CacheValue};
use crate::l1::{L1, Slot};
use crate::l2::L2;
use crate::metrics::Metrics;
use crate::policy::{Entry, should_refresh_early};
use crate::random::Random;
use crate::trace;
use basis_clock::Clock;

/// A typed cache for one namespace. Cloning is cheap (one `Arc`); hold one per namespace
/// in the application state.
pub struct Cache<K, V> {
    pub(crate) inner: Arc<Inner<K, V>>,
}

impl<K, V> Clone for Cache<K, V> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
        }
    }
}

impl<K, V> std::fmt::Debug for Cache<K, V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cache")
            .field("namespace", &self.inner.namespace)
            .finish_non_exhaustive()
    }
}

/// What L1 holds for a key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cached<V> {
    /// A value.
    Value(V),
    /// A negative entry: the loader recently answered "not found".
    Missing,
}

impl<V> Cached<V> {
    /// The value, or `None` for a negative entry.
    pub fn into_option(self) -> Option<V> {
        match self {
            Cached::Value(v) => Some(v),
            Cached::Missing => None,
        }
    }
}

/// Size of L1 right now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct L1Stats {
    /// Entries held (approximate until pending maintenance runs).
    pub entries: u64,
    /// Their total weight in (estimated) bytes.
    pub bytes: u64,
}

/// Hits and misses of each tier since the cache was built: what
/// `basis_cache_hits_total` and `basis_cache_misses_total` count for its namespace.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HitCounts {
    /// L1 (in process) hits.
    pub l1_hits: u64,
    /// L1 misses.
    pub l1_misses: u64,
    /// L2 (Redis) hits.
    pub l2_hits: u64,
    /// L2 misses (an L2 that did not answer counts as neither).
    pub l2_misses: u64,
}

/// Expiry settings; see the builder for what each one means.
#[derive(Debug, Clone)]
pub(crate) struct Settings {
    pub ttl: Duration,
    pub negative_ttl: Duration,
    pub jitter: f64,
    pub beta: f64,
    pub l1_max_ttl: Duration,
}

pub(crate) struct Inner<K, V> {
    pub namespace: String,
    pub settings: Settings,
    pub l1: L1<K, V>,
    pub l2: Option<L2>,
    pub flights: Flights<K, V>,
    pub clock: Arc<dyn Clock>,
    pub random: Arc<dyn Random>,
    pub metrics: Metrics,
    /// Tags our invalidation messages so we ignore our own.
    pub instance: u64,
    pub subscribed: Arc<AtomicBool>,
    /// Dropped (or signalled) to stop the subscriber.
    pub shutdown: watch::Sender<()>,
    pub subscriber: std::sync::Mutex<Option<JoinHandle<()>>>,
}

/// Past `delta × beta × this`, the XFetch chance is below e⁻⁴⁰: skip drawing a number.
const XFETCH_HORIZON: f64 = 40.0;

enum Probe<V> {
    Fresh(Slot<V>),
    RefreshDue(Slot<V>),
    Absent,
}

impl<K: CacheKey, V: CacheValue> Cache<K, V> {
    pub(crate) fn from_inner(inner: Inner<K, V>) -> Self {
        Self {
            inner: Arc::new(inner),
        }
    }

    /// The namespace given to the builder.
    pub fn namespace(&self) -> &str {
        &self.inner.namespace
    }

    /// Synchronous L1 lookup: no future, no allocation, no Redis. `None` means L1 has
    /// nothing live for `key`; call [`Cache::get_or_load`] then. The key may be given in
    /// a borrowed form (`&str` for a `String` key), so a hit needs no owned key at all.
    pub fn peek<Q>(&self, key: &Q) -> Option<Cached<V>>
    where
        K: std::borrow::Borrow<Q>,
        Q: std::hash::Hash + Eq + ?Sized,
    {
        let inner = &*self.inner;
        let span = trace::l1(&inner.namespace);
        let now = inner.clock.monotonic();
        match inner.l1.get(key) {
            Some(entry) if is_live(&entry, now) => {
                trace::hit(&span, true);
                self.count_hit(&entry);
                Some(to_cached(&entry))
            }
            _ => {
                trace::hit(&span, false);
                None
            }
        }
    }

    /// Cache-aside read: L1, then L2, then `loader`, whose answer (including `Ok(None)`,
    /// "not found", cached for the negative TTL) fills both tiers.
    ///
    /// Concurrent misses on one key run `loader` once; the others wait for its outcome
    /// (an error included). A hit close to expiry may refresh early (XFetch): the one
    /// caller that draws it reloads, everyone else keeps getting the current value, and a
    /// failed refresh falls back to it.
    pub async fn get_or_load<F, Fut, E>(&self, key: &K, loader: F) -> Result<Option<V>, Error>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Option<V>, E>>,
        E: Into<BoxError>,
    {
        let span = trace::lookup(&self.inner.namespace);
        self.read_through(key, loader).instrument(span).await
    }

    /// [`Cache::get_or_load`] inside its span.
    async fn read_through<F, Fut, E>(&self, key: &K, loader: F) -> Result<Option<V>, Error>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Option<V>, E>>,
        E: Into<BoxError>,
    {
        let inner = &*self.inner;
        let l1 = trace::l1(&inner.namespace);
        let probe = self.probe(key);
        trace::hit(&l1, !matches!(probe, Probe::Absent));
        drop(l1);
        match probe {
            Probe::Fresh(entry) => {
                self.count_hit(&entry);
                return Ok(entry.value.clone());
            }
            Probe::RefreshDue(entry) => {
                self.count_hit(&entry);
                let Some(leader) = inner.flights.try_lead(key) else {
                    return Ok(entry.value.clone());
                };
                inner.metrics.early_refreshes.increment(1);
                // Another instance may have refreshed it already: then L2 has a younger copy.
                let left = entry.expires_at.saturating_sub(inner.clock.monotonic());
                if let Some(found) = self.read_l2(key, Some(left)).await {
                    leader.finish(Ok(found.clone()));
                    return Ok(found);
                }
                return match self.load(key, leader, loader).await {
                    Ok(value) => Ok(value),
                    Err(error) => {
                        tracing::warn!(namespace = %inner.namespace, %error, "early refresh failed; serving the cached value");
                        Ok(entry.value.clone())
                    }
                };
            }
            Probe::Absent => inner.metrics.l1_misses.increment(1),
        }
        loop {
            match inner.flights.join(key) {
                Role::Leader(leader) => {
                    // A flight may have finished between our probe and our join.
                    if inner.l1.contains(key)
                        && let Probe::Fresh(e) | Probe::RefreshDue(e) = self.probe(key)
                    {
                        leader.finish(Ok(e.value.clone()));
                        return Ok(e.value.clone());
                    }
                    if let Some(found) = self.read_l2(key, None).await {
                        leader.finish(Ok(found.clone()));
                        return Ok(found);
                    }
                    return self.load(key, leader, loader).await;
                }
                Role::Waiter(rx) => {
                    inner.metrics.coalesced.increment(1);
                    if let Some(outcome) = flight::wait(rx).await {
                        return outcome;
                    }
                    // The leader was cancelled: try again, maybe as the leader.
                }
            }
        }
    }

    /// L1 then L2, without loading. `None`: neither tier has a live entry.
    pub async fn get(&self, key: &K) -> Option<Cached<V>> {
        let span = trace::lookup(&self.inner.namespace);
        if let Some(found) = span.in_scope(|| self.peek(key)) {
            return Some(found);
        }
        self.inner.metrics.l1_misses.increment(1);
        self.read_l2(key, None)
            .instrument(span)
            .await
            .map(|v| v.map_or(Cached::Missing, Cached::Value))
    }

    /// Whether this cache uses a Redis L2.
    pub fn has_l2(&self) -> bool {
        self.inner.l2.is_some()
    }

    /// Whether peers' invalidations currently reach this instance: always true without an
    /// L2, otherwise true while the pub/sub subscription is up. Useful in a readiness check.
    pub fn is_coherent(&self) -> bool {
        self.inner.l2.is_none() || self.inner.subscribed.load(Ordering::SeqCst)
    }

    /// The current size of L1, after applying pending maintenance.
    pub fn l1_stats(&self) -> L1Stats {
        self.inner.l1.sync();
        L1Stats {
            entries: self.inner.l1.entry_count(),
            bytes: self.inner.l1.weighted_bytes(),
        }
    }

    /// Hits and misses per tier so far.
    pub fn hit_counts(&self) -> HitCounts {
        let m = &self.inner.metrics;
        HitCounts {
            l1_hits: m.l1_hits.get(),
            l1_misses: m.l1_misses.get(),
            l2_hits: m.l2_hits.get(),
            l2_misses: m.l2_misses.get(),
        }
    }

    /// Stops the invalidation subscriber and waits for it. The cache keeps working as a
    /// local cache with L2; dropping the last handle has the same effect without the wait.
    pub async fn shutdown(&self) {
        self.inner.shutdown.send_replace(());
        let task = self
            .inner
            .subscriber
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .take();
        if let Some(task) = task {
            // The task only ends by returning; a join error would be a panic already logged.
            let _ = task.await;
        }
    }

    fn count_hit(&self, entry: &Entry<V>) {
        self.inner.metrics.l1_hits.increment(1);
        if entry.value.is_none() {
            self.inner.metrics.negative_hits.increment(1);
        }
    }

    fn probe(&self, key: &K) -> Probe<V> {
        let inner = &*self.inner;
        let now = inner.clock.monotonic();
        let Some(entry) = inner.l1.get(key) else {
            return Probe::Absent;
        };
        if !is_live(&entry, now) {
            return Probe::Absent;
        }
        let s = &inner.settings;
        let horizon = entry.delta.as_secs_f64() * s.beta * XFETCH_HORIZON;
        let left = (entry.expires_at - now).as_secs_f64();
        if left > horizon {
            return Probe::Fresh(entry);
        }
        let sample = inner.random.next_f64();
        if should_refresh_early(now, entry.expires_at, entry.delta, s.beta, sample) {
            Probe::RefreshDue(entry)
        } else {
            Probe::Fresh(entry)
        }
    }

    /// Runs the loader as the flight's leader and fills both tiers.
    async fn load<F, Fut, E>(
        &self,
        key: &K,
        leader: Leader<'_, K, V>,
        loader: F,
    ) -> Result<Option<V>, Error>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Option<V>, E>>,
        E: Into<BoxError>,
    {
        let inner = &*self.inner;
        inner.metrics.loads.increment(1);
        let started = inner.clock.monotonic();
        let result = loader().instrument(trace::load(&inner.namespace)).await;
        let delta = inner.clock.monotonic().saturating_sub(started);
        match result {
            Ok(value) => {
                let (entry, ttl) = self.new_entry(value.clone(), delta);
                inner.l1.insert(key.clone(), entry.clone());
                // Release the waiters before the Redis write: they need not wait for it.
                leader.finish(Ok(value.clone()));
                self.write_l2(key, &entry, ttl).await;
                Ok(value)
            }
            Err(error) => {
                inner.metrics.load_errors.increment(1);
                let error = Error::load(error);
                leader.finish(Err(error.clone()));
                Err(error)
            }
        }
    }
}

pub(crate) fn is_live<V>(entry: &Entry<V>, now: Duration) -> bool {
    now < entry.expires_at && now < entry.l1_until
}

fn to_cached<V: Clone>(entry: &Entry<V>) -> Cached<V> {
    entry.value.clone().map_or(Cached::Missing, Cached::Value)
}
