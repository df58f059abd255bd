//! The in-memory store: sharded, bounded, safe under contention.
//!
//! Keys are spread over `shards` maps, each behind its own `std::sync::Mutex`; a
//! decision holds one lock (or, for several rules, the few it needs, always taken in
//! ascending order so two decisions can never deadlock) for a few hundred nanoseconds
//! and never across an `.await`. Memory is bounded twice over:
//!
//! * **idle keys expire:** every slot records when its state becomes indistinguishable
//!   from a fresh key; such slots are swept (at most once a second per shard, when the
//!   shard is full, or by [`MemoryStore::purge_idle`]);
//! * **a hard cap:** when a shard is still full, a new key evicts the sampled slot that
//!   goes idle soonest. A flood of fresh keys (rotating IPv6 addresses) therefore costs a
//!   bounded amount of memory; the price is that an evicted key starts afresh.

use std::collections::HashMap;
use std::collections::hash_map::RandomState;
use std::sync::{Mutex, MutexGuard, PoisonError};

use super::key::{BuildPassThrough, KeyRef, KeyView, OwnedKey};
use super::{Check, Store};
use crate::algorithm::{Decision, Policy, State};
use crate::clock::{Clock, Nanos, SystemClock};
use crate::error::Error;
use crate::metrics;

/// How many slots are sampled to pick an eviction victim.
const EVICTION_SAMPLE: usize = 8;
/// Minimum time between two sweeps of the same shard.
const SWEEP_INTERVAL: Nanos = 1_000_000_000;

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

struct Slot {
    state: State,
    idle_at: Nanos,
}

struct Shard {
    map: HashMap<OwnedKey, Slot, BuildPassThrough>,
    next_sweep: Nanos,
}

/// Rate-limit state in this process. Share it with an `Arc`.
pub struct MemoryStore<C: Clock = SystemClock> {
    shards: Box<[Mutex<Shard>]>,
    shard_mask: usize,
    per_shard: usize,
    hasher: RandomState,
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
            .map(|_| {
                Mutex::new(Shard {
                    map: HashMap::with_hasher(BuildPassThrough),
                    next_sweep: 0,
                })
            })
            .collect();
        Self {
            shard_mask: shards.len() - 1,
            shards,
            per_shard,
            hasher: RandomState::new(),
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
        let mut shard = self.lock(self.shard_of(&key));
        self.decide(&mut shard, &key, policy, now, cost, true)
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
        let mut order: Vec<usize> = keys.iter().map(|k| self.shard_of(k)).collect();
        order.sort_unstable();
        order.dedup();
        let now = self.clock.now();
        // Locks in ascending shard order: no two callers can wait on each other.
        let mut guards: Vec<(usize, MutexGuard<'_, Shard>)> =
            order.iter().map(|&i| (i, self.lock(i))).collect();
        let mut run = |apply: bool| -> Vec<Decision> {
            checks
                .iter()
                .zip(&keys)
                .map(|(c, k)| {
                    let i = self.shard_of(k);
                    let pos = guards.iter().position(|(g, _)| *g == i).unwrap_or(0);
                    self.decide(&mut guards[pos].1, k, c.policy, now, c.cost, apply)
                })
                .collect()
        };
        let peek = run(false);
        if peek.iter().all(|d| d.allowed) {
            run(true)
        } else {
            peek
        }
    }

    /// Number of keys currently held.
    pub fn len(&self) -> usize {
        (0..self.shards.len()).map(|i| self.lock(i).map.len()).sum()
    }

    /// Whether no key is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Drops every key that has gone idle; returns how many were dropped. Call it from a
    /// periodic task to release memory after a burst of keys.
    pub fn purge_idle(&self) -> usize {
        let now = self.clock.now();
        let dropped = (0..self.shards.len())
            .map(|i| sweep(&mut self.lock(i), now))
            .sum();
        metrics::memory_keys_removed(dropped);
        dropped
    }

    fn shard_of(&self, key: &KeyRef<'_>) -> usize {
        // The low bits pick the bucket inside the map; use the high bits for the shard.
        (key.hash >> 48) as usize & self.shard_mask
    }

    fn lock(&self, i: usize) -> MutexGuard<'_, Shard> {
        // A panic while holding the lock cannot leave a slot half-written in a way that
        // matters for limiting, so a poisoned shard is still usable.
        self.shards[i]
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn decide(
        &self,
        shard: &mut Shard,
        key: &KeyRef<'_>,
        policy: &Policy,
        now: Nanos,
        cost: u64,
        apply: bool,
    ) -> Decision {
        if let Some(slot) = shard.map.get_mut(key as &dyn KeyView) {
            let decision = policy.check(&mut slot.state, now, cost, apply);
            slot.idle_at = policy.idle_at(&slot.state);
            return decision;
        }
        let mut state = policy.new_state();
        let decision = policy.check(&mut state, now, cost, apply);
        if apply {
            self.make_room(shard, now);
            let idle_at = policy.idle_at(&state);
            shard
                .map
                .insert(key.to_owned_key(), Slot { state, idle_at });
            metrics::memory_keys_added();
        }
        decision
    }

    fn make_room(&self, shard: &mut Shard, now: Nanos) {
        if shard.map.len() < self.per_shard {
            return;
        }
        if now >= shard.next_sweep {
            shard.next_sweep = now.saturating_add(SWEEP_INTERVAL);
            metrics::memory_keys_removed(sweep(shard, now));
            if shard.map.len() < self.per_shard {
                return;
            }
        }
        let victim = shard
            .map
            .iter()
            .take(EVICTION_SAMPLE)
            .min_by_key(|(_, slot)| slot.idle_at)
            .map(|(k, _)| {
                let (hash, rule, subject) = k.parts();
                KeyRef {
                    hash,
                    rule,
                    subject,
                }
                .to_owned_key()
            });
        if let Some(victim) = victim {
            shard.map.remove(&victim);
            metrics::memory_keys_removed(1);
            metrics::memory_eviction();
        }
    }
}

fn sweep(shard: &mut Shard, now: Nanos) -> usize {
    let before = shard.map.len();
    shard.map.retain(|_, slot| slot.idle_at > now);
    before - shard.map.len()
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
