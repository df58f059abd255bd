//! Passive outlier ejection (Envoy's outlier detection): a backend whose answers fail several
//! times in a row (5xx or no connection) is taken out for a while, longer each time it is
//! ejected again. The share of backends ejected at once is capped by the caller. Time is an
//! argument, so every rule is tested exactly.

use std::time::{Duration, Instant};

/// When to eject and for how long.
#[derive(Debug, Clone, Copy)]
pub struct OutlierPolicy {
    /// Consecutive failures that eject (0 turns ejection off).
    pub consecutive_failures: u32,
    /// The first ejection's length; the n-th lasts n times as long.
    pub base_ejection: Duration,
    /// The longest an ejection lasts.
    pub max_ejection: Duration,
}

impl Default for OutlierPolicy {
    fn default() -> Self {
        Self {
            consecutive_failures: 5,
            base_ejection: Duration::from_secs(10),
            max_ejection: Duration::from_secs(300),
        }
    }
}

/// The outcome of one request, as ejection sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Any answer below 500.
    Success,
    /// A 5xx answer, a refused or timed-out connection, or an answer that was not HTTP.
    Failure,
}

/// One backend's ejection state.
#[derive(Debug, Clone, Default)]
pub struct Outlier {
    consecutive: u32,
    /// Ejections so far (the multiplier of the next one); forgotten after a quiet period.
    ejections: u32,
    ejected_until: Option<Instant>,
    last_ejected: Option<Instant>,
}

impl Outlier {
    /// Whether the backend is out at `now`.
    pub fn is_ejected(&self, now: Instant) -> bool {
        self.ejected_until.is_some_and(|until| now < until)
    }

    /// When the current ejection ends, if there is one.
    pub fn ejected_until(&self, now: Instant) -> Option<Instant> {
        self.ejected_until.filter(|&until| now < until)
    }

    /// Ejections so far.
    pub fn ejections(&self) -> u32 {
        self.ejections
    }

    /// Records an outcome; returns the ejection's length when this one ejects the backend.
    /// `may_eject` is false when the cap on ejected backends is reached.
    pub fn record(
        &mut self,
        outcome: Outcome,
        policy: &OutlierPolicy,
        now: Instant,
        may_eject: bool,
    ) -> Option<Duration> {
        if outcome == Outcome::Success {
            self.consecutive = 0;
            return None;
        }
        self.consecutive = self.consecutive.saturating_add(1);
        if policy.consecutive_failures == 0
            || self.consecutive < policy.consecutive_failures
            || self.is_ejected(now)
            || !may_eject
        {
            return None;
        }
        // A backend quiet for a whole maximum ejection starts again from the base length.
        if self
            .last_ejected
            .is_some_and(|at| now.saturating_duration_since(at) > policy.max_ejection * 2)
        {
            self.ejections = 0;
        }
        self.ejections = self.ejections.saturating_add(1);
        let length = policy
            .base_ejection
            .saturating_mul(self.ejections)
            .min(policy.max_ejection);
        self.ejected_until = Some(now + length);
        self.last_ejected = Some(now);
        self.consecutive = 0;
        Some(length)
    }
}

/// How many of `total` backends may be ejected at once with `max_percent`: at least one,
/// so a single bad backend among two can always be taken out.
pub fn max_ejected(total: usize, max_percent: u8) -> usize {
    (total * usize::from(max_percent.min(100)) / 100).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    const POLICY: OutlierPolicy = OutlierPolicy {
        consecutive_failures: 3,
        base_ejection: Duration::from_secs(10),
        max_ejection: Duration::from_secs(25),
    };

    fn fail(o: &mut Outlier, n: u32, now: Instant) -> Option<Duration> {
        (0..n)
            .map(|_| o.record(Outcome::Failure, &POLICY, now, true))
            .last()
            .flatten()
    }

    #[test]
    fn consecutive_failures_eject_and_a_success_resets_the_count() {
        let t0 = Instant::now();
        let mut o = Outlier::default();
        assert_eq!(fail(&mut o, 2, t0), None);
        o.record(Outcome::Success, &POLICY, t0, true);
        assert_eq!(fail(&mut o, 2, t0), None);
        assert_eq!(fail(&mut o, 1, t0), Some(Duration::from_secs(10)));
        assert!(o.is_ejected(t0 + Duration::from_secs(9)));
        assert!(!o.is_ejected(t0 + Duration::from_secs(10)));
    }

    #[test]
    fn repeated_ejections_last_longer_up_to_the_maximum() {
        let t0 = Instant::now();
        let mut o = Outlier::default();
        assert_eq!(fail(&mut o, 3, t0), Some(Duration::from_secs(10)));
        let t1 = t0 + Duration::from_secs(11);
        assert_eq!(fail(&mut o, 3, t1), Some(Duration::from_secs(20)));
        let t2 = t1 + Duration::from_secs(21);
        assert_eq!(fail(&mut o, 3, t2), Some(Duration::from_secs(25)));
        // Long quiet: back to the base length.
        let t3 = t2 + Duration::from_secs(100);
        assert_eq!(fail(&mut o, 3, t3), Some(Duration::from_secs(10)));
    }

    #[test]
    fn the_cap_on_ejected_backends_keeps_a_failing_backend_in() {
        let t0 = Instant::now();
        let mut o = Outlier::default();
        for _ in 0..10 {
            assert_eq!(o.record(Outcome::Failure, &POLICY, t0, false), None);
        }
        assert!(!o.is_ejected(t0));
    }

    #[test]
    fn at_least_one_backend_may_be_ejected() {
        assert_eq!(max_ejected(2, 10), 1);
        assert_eq!(max_ejected(10, 50), 5);
        assert_eq!(max_ejected(3, 200), 3);
    }
}
