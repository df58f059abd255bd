//! Sliding window log: the timestamp of every admitted unit within the last period.
//!
//! **Memory per key:** 16 bytes per admitted request still inside the window (requests
//! arriving in the same nanosecond share an entry), so up to `limit` entries: the most
//! expensive algorithm, by far, for large limits. In Redis: a sorted set.
//!
//! **Accuracy at window edges:** exact. In every window `(t − period, t]` at most
//! `limit` units pass; there is no boundary to exploit.

use std::collections::VecDeque;

use super::{Decision, Policy};
use crate::clock::Nanos;

/// State of one sliding log: admitted `(time, cost)` pairs, oldest first.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SlidingLogState {
    entries: VecDeque<(Nanos, u64)>,
    total: u64,
}

impl SlidingLogState {
    pub(super) fn check(&mut self, p: &Policy, now: Nanos, cost: u64, apply: bool) -> Decision {
        let period = p.period_nanos();
        // Keep the log ordered even if the clock was read a hair behind the last time.
        let now = self.entries.back().map_or(now, |&(t, _)| now.max(t));
        // An entry admitted at `t` counts while `now < t + period`.
        while let Some(&(t, c)) = self.entries.front() {
            if t.saturating_add(period) > now {
                break;
            }
            self.entries.pop_front();
            self.total -= c;
        }
        if self.total.saturating_add(cost) <= p.limit() {
            if apply {
                match self.entries.back_mut() {
                    Some((t, c)) if *t == now => *c += cost,
                    _ => self.entries.push_back((now, cost)),
                }
                self.total += cost;
            }
            Decision::allowed(p.limit(), p.limit() - self.total, self.reset(p, now))
        } else {
            let retry = if cost > p.limit() {
                period
            } else {
                // Wait until enough of the oldest entries have left the window.
                let mut freed = 0;
                let mut at = now;
                for &(t, c) in &self.entries {
                    freed += c;
                    at = t + period;
                    if self.total - freed + cost <= p.limit() {
                        break;
                    }
                }
                at - now
            };
            Decision::denied(p.limit(), p.limit() - self.total, self.reset(p, now), retry)
        }
    }

    fn reset(&self, p: &Policy, now: Nanos) -> Nanos {
        self.entries
            .back()
            .map_or(0, |&(t, _)| t + p.period_nanos() - now)
    }

    pub(super) fn idle_at(&self, p: &Policy) -> Nanos {
        self.entries
            .back()
            .map_or(0, |&(t, _)| t.saturating_add(p.period_nanos()))
    }
}
