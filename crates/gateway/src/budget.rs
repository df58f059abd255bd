//! The retry budget (Envoy's and Finagle's rule): retries may add at most `ratio` of the
//! requests seen in the last `window`, plus a small floor so a quiet gateway can still retry.
//! During an outage every request fails; without a budget each would be retried and the load
//! on the surviving backends would multiply exactly when they can least take it.

use std::time::{Duration, Instant};

const BUCKETS: usize = 10;

/// Requests and retries counted in ten time buckets covering the window.
#[derive(Debug, Clone)]
pub struct RetryBudget {
    ratio: f64,
    min_retries: u32,
    bucket_len: Duration,
    /// The start of the bucket grid (the first time the budget was used).
    origin: Option<Instant>,
    /// (bucket start, requests, retries) per slot.
    slots: [(Option<Instant>, u32, u32); BUCKETS],
}

impl RetryBudget {
    /// Retries up to `ratio` × requests in `window`, and `min_retries` per window regardless.
    pub fn new(ratio: f64, min_retries: u32, window: Duration) -> Self {
        Self {
            ratio: ratio.max(0.0),
            min_retries,
            bucket_len: (window / BUCKETS as u32).max(Duration::from_millis(1)),
            origin: None,
            slots: [(None, 0, 0); BUCKETS],
        }
    }

    /// Counts one original request.
    pub fn request(&mut self, now: Instant) {
        let slot = self.slot(now);
        slot.1 = slot.1.saturating_add(1);
    }

    /// Takes one retry from the budget, or says no.
    pub fn try_retry(&mut self, now: Instant) -> bool {
        self.slot(now);
        let (requests, retries) = self.totals(now);
        let allowed = f64::from(self.min_retries) + self.ratio * f64::from(requests);
        if f64::from(retries) + 1.0 > allowed {
            return false;
        }
        let slot = self.slot(now);
        slot.2 = slot.2.saturating_add(1);
        true
    }

    fn index(&self, now: Instant, origin: Instant) -> u128 {
        now.saturating_duration_since(origin).as_nanos() / self.bucket_len.as_nanos()
    }

    /// The slot for `now`, cleared if it held an older bucket.
    fn slot(&mut self, now: Instant) -> &mut (Option<Instant>, u32, u32) {
        let origin = *self.origin.get_or_insert(now);
        let n = self.index(now, origin);
        let start = origin + self.bucket_len * (n as u32);
        let slot = &mut self.slots[(n % BUCKETS as u128) as usize];
        if slot.0 != Some(start) {
            *slot = (Some(start), 0, 0);
        }
        slot
    }

    fn totals(&self, now: Instant) -> (u32, u32) {
        let window = self.bucket_len * BUCKETS as u32;
        self.slots
            .iter()
            .filter(|s| {
                s.0.is_some_and(|start| now.saturating_duration_since(start) < window)
            })
            .fold((0, 0), |(q, r), s| (q + s.1, r + s.2))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_are_capped_at_the_ratio_of_recent_requests() {
        let t0 = Instant::now();
        let mut b = RetryBudget::new(0.2, 0, Duration::from_secs(10));
        for _ in 0..100 {
            b.request(t0);
        }
        let granted = (0..50).filter(|_| b.try_retry(t0)).count();
        assert_eq!(granted, 20);
    }

    #[test]
    fn the_floor_allows_a_few_retries_with_no_traffic() {
        let t0 = Instant::now();
        let mut b = RetryBudget::new(0.2, 3, Duration::from_secs(10));
        let granted = (0..10).filter(|_| b.try_retry(t0)).count();
        assert_eq!(granted, 3);
    }

    #[test]
    fn the_budget_refills_once_old_requests_and_retries_leave_the_window() {
        let t0 = Instant::now();
        let mut b = RetryBudget::new(0.5, 0, Duration::from_secs(10));
        for _ in 0..10 {
            b.request(t0);
        }
        assert_eq!((0..10).filter(|_| b.try_retry(t0)).count(), 5);
        // 11 s later the old requests no longer count: no traffic, no retries.
        let t1 = t0 + Duration::from_secs(11);
        assert!(!b.try_retry(t1));
        for _ in 0..4 {
            b.request(t1);
        }
        assert_eq!((0..10).filter(|_| b.try_retry(t1)).count(), 2);
    }
}
