//! The in-memory store: sharded, bounded, lock-free for GCRA and token buckets.
//!
//! Keys are spread over `shards` concurrent maps (`papaya`: lookups take no lock and
//! write no shared memory). Each key's state is a [`Slot`]: one atomic word for GCRA
//! and exact token buckets, updated by compare-and-swap, or the key's own mutex for the
//! other algorithms (`slot.rs`). So two threads on one GCRA key cost one contended
//! compare-and-swap, like governor's limiter, and never wait on a lock. A check of
//! several rules holds its keys in one global order, so all or none consume.
//!
//! Memory is bounded twice over:
//!
//! * **idle keys expire:** a slot knows when its state becomes indistinguishable from a
//!   fresh key; such slots are swept (at most once a second per shard, when the shard is
//!   full, or by [`MemoryStore::purge_idle`]);
//! * **a hard cap:** when a shard is still full, a new key evicts the sampled slot that
//!   goes idle soonest. A flood of fresh keys (rotating IPv6 addresses) therefore costs a
//!   bounded amount of memory (threads inserting at the same instant may each add one
//!   key past it); the price is that an evicted key starts afresh.

use std::sync::atomic::{AtomicU64, Ordering};

use papaya::{HashMap, LocalGuard};

use super::key::{BuildPassThrough, KeyRef, OwnedKey};
use super::slot::{Kill, Slot};
use super::{Check, Store};
use crate::algorithm::{Decision, Policy};
use crate::clock::{Clock, Nanos, SystemClock};
use crate::error::Error;
use crate::metrics;

/// How many slots are sampled to pick an eviction victim.
const EVICTION_SAMPLE: usize = 8;
/// Minimum time between two sweeps of the same shard.
const SWEEP_INTERVAL: Nanos = 1_000_000_000;

/// The hasher of `(rule, subject)`: foldhash, seeded per store (hashbrown's default;
/// SipHash was a third of a check's time). The seed stays in the process, which keeps
/// collision flooding impractical for callers who only see decisions.
type KeyHasher = foldhash::fast::RandomState;

/// Sizing of a [`MemoryStore`].
#[derive(Debug, Clone, Copy)]
pub struct MemoryConfig {
    /// Maximum number of keys held (over all shards).
    pub max_keys: usize,
    /// Number of shards (rounded up to a power of two).
    pub shards: usize,
}

impl Default for MemoryConfig {
    fn default() -> Self {
        Self {
            max_keys: 1_000_000,
            shards: 64,
        }
    }
}

struct Shard {
    map: HashMap<OwnedKey, Slot, BuildPassThrough>,
    next_sweep: AtomicU64,
}

/// Rate-limit state in this process. Share it with an `Arc`.
pub struct MemoryStore<C: Clock = SystemClock> {
    shards: Box<[Shard]>,
    shard_mask: usize,
    per_shard: usize,
    hasher: KeyHasher,
    clock: C,
}

impl MemoryStore<SystemClock> {
    /// A store on the system clock.
    pub fn new(config: MemoryConfig) -> Self {
        Self::with_clock(config, SystemClock::new())
    }
}

impl<C: Clock> MemoryStore<C> {
    /// A store on the given clock (a [`crate::ManualClock`] in tests).
    pub fn with_clock(config: MemoryConfig, clock: C) -> Self {
        let shards = config.shards.clamp(1, 4096).next_power_of_two();
        let per_shard = config.max_keys.div_ceil(shards).max(1);
        let shards: Box<[_]> = (0..shards)
            .map(|_| Shard {
                map: HashMap::with_hasher(BuildPassThrough),
                next_sweep: AtomicU64::new(0),
            })
            .collect();
        Self {
            shard_mask: shards.len() - 1,
            shards,
            per_shard,
            hasher: KeyHasher::default(),
            clock,
        }
    }

    /// The store's clock.
    pub fn clock(&self) -> &C {
        &self.clock
    }

    /// Checks one rule for one subject and consumes `cost` units when allowed.
    #[inline]
    pub fn check_one(&self, policy: &Policy, rule: &str, subject: &str, cost: u64) -> Decision {
        let key = KeyRef::new(&self.hasher, rule, subject);
        let now = self.clock.now();
        let shard = self.shard(&key);
        let guard = shard.map.guard();
        loop {
            let slot = self.slot(shard, key, policy, now, &guard);
            if let Some(decision) = slot.check(policy, now, cost) {
                return decision;
            }
            discard(shard, key, slot, &guard);
        }
    }

    /// Checks several rules at once: either all of them consume their cost or, when any
    /// denies, none does.
    pub fn check_many(&self, checks: &[Check<'_>]) -> Vec<Decision> {
        if let [c] = checks {
            return vec![self.check_one(c.policy, c.rule, c.subject, c.cost)];
        }
        let keys: Vec<KeyRef<'_>> = checks
            .iter()
            .map(|c| KeyRef::new(&self.hasher, c.rule, c.subject))
            .collect();
        // Each distinct key once, in the global order every multi-rule check uses, so
        // two of them can never wait on each other.
        let mut order: Vec<usize> = (0..keys.len()).collect();
        order.sort_by(|&a, &b| keys[a].order(&keys[b]));
        order.dedup_by(|a, b| keys[*a].order(&keys[*b]).is_eq());
        let at: Vec<usize> = keys
            .iter()
            .map(|k| {
                order
                    .iter()
                    .position(|&i| keys[i].order(k).is_eq())
                    .unwrap_or(0)
            })
            .collect();
        let guards: Vec<LocalGuard<'_>> = order
            .iter()
            .map(|&i| self.shard(&keys[i]).map.guard())
            .collect();
        let now = self.clock.now();
        'retry: loop {
            let mut holds = Vec::with_capacity(order.len());
            for (&i, guard) in order.iter().zip(&guards) {
                let shard = self.shard(&keys[i]);
                let slot = self.slot(shard, keys[i], checks[i].policy, now, guard);
                match slot.hold() {
                    Some(hold) => holds.push(hold),
                    None => {
                        drop(holds);
                        discard(shard, keys[i], slot, guard);
                        continue 'retry;
                    }
                }
            }
            let mut run = |apply: bool| -> Vec<Decision> {
                checks
                    .iter()
                    .zip(&at)
                    .map(|(c, &h)| holds[h].check(c.policy, now, c.cost, apply))
                    .collect()
            };
            let peek = run(false);
            return if peek.iter().all(|d| d.allowed) {
                run(true)
            } else {
                peek
            };
        }
    }

    /// Number of keys currently held.
    pub fn len(&self) -> usize {
        self.shards.iter().map(|s| s.map.len()).sum()
    }

    /// Whether no key is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Drops every key that has gone idle; returns how many were dropped. Call it from a
    /// periodic task to release memory after a burst of keys.
    pub fn purge_idle(&self) -> usize {
        let now = self.clock.now();
        let dropped = self.shards.iter().map(|s| sweep(s, now)).sum();
        metrics::memory_keys_removed(dropped);
        dropped
    }

    #[inline]
    fn shard(&self, key: &KeyRef<'_>) -> &Shard {
        // The low bits pick the bucket inside the map; use the high bits for the shard.
        &self.shards[(key.hash >> 48) as usize & self.shard_mask]
    }

    /// The live slot of `key`, of the shape `policy` needs, inserted when missing.
    #[inline]
    fn slot<'g>(
        &self,
        shard: &'g Shard,
        key: KeyRef<'_>,
        policy: &Policy,
        now: Nanos,
        guard: &'g LocalGuard<'g>,
    ) -> &'g Slot {
        loop {
            match shard.map.get(&key, guard) {
                Some(slot) if slot.suits(policy) => return slot,
                // The rule changed algorithm: the reference resets such a state too.
                Some(slot) => {
                    if slot.kill_if(|_| true) == Kill::Killed {
                        metrics::memory_keys_removed(1);
                    }
                    discard(shard, key, slot, guard);
                }
                None => {
                    self.make_room(shard, now, guard);
                    if let Ok(slot) =
                        shard
                            .map
                            .try_insert(key.to_owned_key(), Slot::new(policy), guard)
                    {
                        metrics::memory_keys_added();
                        return slot;
                    }
                }
            }
        }
    }

    fn make_room(&self, shard: &Shard, now: Nanos, guard: &LocalGuard<'_>) {
        if shard.map.len() < self.per_shard {
            return;
        }
        let due = shard.next_sweep.load(Ordering::Relaxed);
        if now >= due
            && shard
                .next_sweep
                .compare_exchange(
                    due,
                    now.saturating_add(SWEEP_INTERVAL),
                    Ordering::Relaxed,
                    Ordering::Relaxed,
                )
                .is_ok()
        {
            metrics::memory_keys_removed(sweep(shard, now));
            if shard.map.len() < self.per_shard {
                return;
            }
        }
        let victim = shard
            .map
            .iter(guard)
            .take(EVICTION_SAMPLE)
            .filter_map(|(k, slot)| Some((k, slot, slot.idle_at()?)))
            .min_by_key(|(_, _, idle_at)| *idle_at);
        if let Some((key, slot, _)) = victim
            && slot.kill_if(|_| true) == Kill::Killed
        {
            discard(shard, KeyRef::of(key), slot, guard);
            metrics::memory_keys_removed(1);
            metrics::memory_eviction();
        }
    }
}

/// Removes `slot` from the map if it is still the one stored under `key` and is dead.
fn discard(shard: &Shard, key: KeyRef<'_>, slot: &Slot, guard: &LocalGuard<'_>) {
    let _ = shard.map.remove_if(
        &key,
        |_, stored| std::ptr::eq(stored, slot) && stored.is_dead(),
        guard,
    );
}

/// Drops the shard's idle slots; returns how many this call dropped.
fn sweep(shard: &Shard, now: Nanos) -> usize {
    let mut dropped = 0;
    shard
        .map
        .pin()
        .retain(|_, slot| match slot.kill_if(|idle_at| idle_at <= now) {
            Kill::Alive => true,
            Kill::Killed => {
                dropped += 1;
                false
            }
            Kill::AlreadyDead => false,
        });
    dropped
}

impl<C: Clock> Store for MemoryStore<C> {
    async fn check(&self, checks: &[Check<'_>]) -> Result<Vec<Decision>, Error> {
        Ok(self.check_many(checks))
    }
}

impl<C: Clock> std::fmt::Debug for MemoryStore<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryStore")
            .field("shards", &self.shards.len())
            .field("per_shard", &self.per_shard)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_slot_stays_small() {
        // Documented in docs/ratelimit.md: key (hash + two boxed strs) and slot per entry.
        let entry = size_of::<OwnedKey>() + size_of::<Slot>();
        println!(
            "key {} + slot {} = {entry} bytes",
            size_of::<OwnedKey>(),
            size_of::<Slot>()
        );
        assert!(entry <= 112, "{entry} bytes per entry");
    }
}
