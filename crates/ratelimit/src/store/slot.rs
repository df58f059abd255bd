//! One key's state in the memory store, and how it is updated without a shared lock.
//!
//! GCRA and exact token buckets keep their state in one [`AtomicU64`]
//! (`algorithm/word.rs`): a check reads it, computes the reference decision and
//! publishes the new word with one compare-and-swap, retrying if another thread got
//! there first. The other algorithms keep their state behind a mutex of their own, so
//! two keys never wait on each other.
//!
//! A check of several rules must consume all or nothing, so it *holds* each of its keys:
//! it sets the word's [`LOCKED`] bit (or takes the mutex) in one global key order, decides
//! on the held values, and releases them with the new values. A single check that meets
//! a held word waits for it; held words are never held for more than that one decision.
//!
//! Dropping a key first marks it [`DEAD`] (the word, or a flag beside the locked state):
//! a check that loses that race sees the mark and looks the key up again, so no update
//! can land on a state that is no longer in the map.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};

use crate::algorithm::{Algorithm, DEAD, Decision, LOCKED, Policy, State};
use crate::clock::Nanos;

/// The state of one `(rule, subject)` key.
pub(super) enum Slot {
    /// GCRA or an exact token bucket: one word, updated by compare-and-swap.
    Word {
        algorithm: Algorithm,
        word: AtomicU64,
    },
    /// Any other algorithm: its state behind the key's own mutex.
    Locked(Box<Mutex<Held>>),
}

/// A locked slot's contents.
pub(super) struct Held {
    state: State,
    idle_at: Nanos,
    dead: bool,
}

/// What an attempt to drop a slot came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kill {
    /// This call marked it dead: remove it from the map and count it.
    Killed,
    /// Someone else already did.
    AlreadyDead,
    /// It stays: still in use, or held by a check right now.
    Alive,
}

impl Slot {
    /// A fresh slot for a key under `policy`.
    pub fn new(policy: &Policy) -> Self {
        if policy.one_word() {
            Slot::Word {
                algorithm: policy.algorithm(),
                word: AtomicU64::new(0),
            }
        } else {
            Slot::Locked(Box::new(Mutex::new(Held {
                state: policy.new_state(),
                idle_at: 0,
                dead: false,
            })))
        }
    }

    /// Whether this slot holds state of the shape `policy` needs.
    #[inline]
    pub fn suits(&self, policy: &Policy) -> bool {
        match self {
            Slot::Word { algorithm, .. } => policy.one_word() && *algorithm == policy.algorithm(),
            Slot::Locked(_) => !policy.one_word(),
        }
    }

    /// Decides one check and applies it when allowed; `None` when the slot is dead.
    #[inline]
    pub fn check(&self, policy: &Policy, now: Nanos, cost: u64) -> Option<Decision> {
        match self {
            Slot::Word { word, .. } => {
                let mut current = word.load(Ordering::Acquire);
                loop {
                    if current & LOCKED != 0 {
                        current = wait_unlocked(word);
                        continue;
                    }
                    if current == DEAD {
                        return None;
                    }
                    let (decision, next) = policy.check_word(current, now, cost, true);
                    if !decision.allowed || next == current {
                        return Some(decision);
                    }
                    match word.compare_exchange_weak(
                        current,
                        next,
                        Ordering::AcqRel,
                        Ordering::Acquire,
                    ) {
                        Ok(_) => return Some(decision),
                        Err(seen) => current = seen,
                    }
                }
            }
            Slot::Locked(mutex) => {
                let mut held = lock(mutex);
                if held.dead {
                    return None;
                }
                let decision = policy.check(&mut held.state, now, cost, true);
                held.idle_at = policy.idle_at(&held.state);
                Some(decision)
            }
        }
    }

    /// Holds the slot for a multi-rule check; `None` when it is dead.
    pub fn hold(&self) -> Option<Hold<'_>> {
        match self {
            Slot::Word { algorithm, word } => loop {
                let current = word.load(Ordering::Acquire);
                if current & LOCKED != 0 {
                    wait_unlocked(word);
                    continue;
                }
                if current == DEAD {
                    return None;
                }
                if word
                    .compare_exchange_weak(
                        current,
                        current | LOCKED,
                        Ordering::Acquire,
                        Ordering::Relaxed,
                    )
                    .is_ok()
                {
                    return Some(Hold::Word {
                        algorithm: *algorithm,
                        word,
                        value: current,
                    });
                }
            },
            Slot::Locked(mutex) => {
                let held = lock(mutex);
                (!held.dead).then_some(Hold::Locked(held))
            }
        }
    }

    /// When the key becomes indistinguishable from a fresh one; `None` while it is held.
    pub fn idle_at(&self) -> Option<Nanos> {
        match self {
            Slot::Word { word, .. } => {
                let current = word.load(Ordering::Acquire);
                (current & LOCKED == 0).then_some(current)
            }
            Slot::Locked(mutex) => mutex.try_lock().ok().map(|held| held.idle_at),
        }
    }

    /// Marks the slot dead when `drop(idle_at)` says so and no check holds it.
    pub fn kill_if(&self, drop: impl Fn(Nanos) -> bool) -> Kill {
        match self {
            Slot::Word { word, .. } => {
                let mut current = word.load(Ordering::Acquire);
                loop {
                    if current == DEAD {
                        return Kill::AlreadyDead;
                    }
                    if current & LOCKED != 0 || !drop(current) {
                        return Kill::Alive;
                    }
                    match word.compare_exchange(current, DEAD, Ordering::AcqRel, Ordering::Acquire)
                    {
                        Ok(_) => return Kill::Killed,
                        Err(seen) => current = seen,
                    }
                }
            }
            Slot::Locked(mutex) => match mutex.try_lock() {
                Ok(held) if held.dead => Kill::AlreadyDead,
                Ok(mut held) if drop(held.idle_at) => {
                    held.dead = true;
                    Kill::Killed
                }
                _ => Kill::Alive,
            },
        }
    }

    /// Whether the slot is dead (and waits to be removed from its map).
    pub fn is_dead(&self) -> bool {
        match self {
            Slot::Word { word, .. } => word.load(Ordering::Acquire) == DEAD,
            Slot::Locked(mutex) => lock(mutex).dead,
        }
    }
}

/// A slot held by a multi-rule check; dropping it publishes the new state and releases.
pub(super) enum Hold<'a> {
    Word {
        algorithm: Algorithm,
        word: &'a AtomicU64,
        value: u64,
    },
    Locked(MutexGuard<'a, Held>),
}

impl Hold<'_> {
    /// Decides one check on the held state, applying it when `apply` and allowed.
    pub fn check(&mut self, policy: &Policy, now: Nanos, cost: u64, apply: bool) -> Decision {
        match self {
            Hold::Word {
                algorithm, value, ..
            } if policy.one_word() && *algorithm == policy.algorithm() => {
                let (decision, next) = policy.check_word(*value, now, cost, apply);
                if apply && decision.allowed {
                    *value = next;
                }
                decision
            }
            // A key is one rule, so its policy does not change shape between checks; if a
            // caller does that anyway, decide as the reference would, on a fresh state.
            Hold::Word { .. } => policy.check(&mut policy.new_state(), now, cost, apply),
            Hold::Locked(held) => {
                let decision = policy.check(&mut held.state, now, cost, apply);
                held.idle_at = policy.idle_at(&held.state);
                decision
            }
        }
    }
}

impl Drop for Hold<'_> {
    fn drop(&mut self) {
        if let Hold::Word { word, value, .. } = self {
            word.store(*value, Ordering::Release);
        }
    }
}

/// Spins (then yields) until a multi-rule check releases the word; returns its value.
#[cold]
fn wait_unlocked(word: &AtomicU64) -> u64 {
    let mut spins = 0u32;
    loop {
        let current = word.load(Ordering::Acquire);
        if current & LOCKED == 0 {
            return current;
        }
        spins += 1;
        if spins < 64 {
            std::hint::spin_loop();
        } else {
            std::thread::yield_now();
        }
    }
}

fn lock(mutex: &Mutex<Held>) -> MutexGuard<'_, Held> {
    // A panic while holding the lock cannot leave a state half-written in a way that
    // matters for limiting, so a poisoned key is still usable.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}
