//! Peak-EWMA latency (Linkerd's and tower's load signal): a slower answer than the estimate
//! replaces it at once, faster ones pull it down with a decay of time constant `tau`, and with
//! no answers the estimate decays toward zero, so a backend that was slow is tried again.
//! Time is passed in, never read here.

use std::time::{Duration, Instant};

/// The estimate for one backend.
#[derive(Debug, Clone)]
pub struct PeakEwma {
    estimate_ns: f64,
    updated: Instant,
    tau_ns: f64,
}

impl PeakEwma {
    /// A new estimate starting at `initial` (used until the first answer).
    pub fn new(initial: Duration, tau: Duration, now: Instant) -> Self {
        Self {
            estimate_ns: initial.as_nanos() as f64,
            updated: now,
            tau_ns: (tau.as_nanos() as f64).max(1.0),
        }
    }

    /// Records one answer's latency.
    pub fn observe(&mut self, latency: Duration, now: Instant) {
        let sample = latency.as_nanos() as f64;
        let decayed = self.decayed(now);
        self.estimate_ns = if sample > decayed {
            sample
        } else {
            let w = self.weight(now);
            decayed * w + sample * (1.0 - w)
        };
        self.updated = now;
    }

    /// The estimate at `now`, decayed for the time since the last answer.
    pub fn cost(&self, now: Instant) -> f64 {
        self.decayed(now)
    }

    fn weight(&self, now: Instant) -> f64 {
        let elapsed = now.saturating_duration_since(self.updated).as_nanos() as f64;
        (-elapsed / self.tau_ns).exp()
    }

    fn decayed(&self, now: Instant) -> f64 {
        self.estimate_ns * self.weight(now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn a_slow_answer_raises_the_estimate_at_once() {
        let t0 = Instant::now();
        let mut e = PeakEwma::new(MS, Duration::from_secs(10), t0);
        e.observe(100 * MS, t0);
        assert_eq!(e.cost(t0), 100e6);
    }

    #[test]
    fn fast_answers_pull_the_estimate_down_gradually() {
        let t0 = Instant::now();
        let mut e = PeakEwma::new(MS, Duration::from_secs(1), t0);
        e.observe(100 * MS, t0);
        let t1 = t0 + Duration::from_millis(500);
        e.observe(MS, t1);
        let cost = e.cost(t1);
        // Half a time constant later: between the fast sample and the decayed peak.
        assert!(cost > 1e6 && cost < 100e6 * (-0.5f64).exp(), "{cost}");
    }

    #[test]
    fn with_no_answers_the_estimate_decays_toward_zero() {
        let t0 = Instant::now();
        let mut e = PeakEwma::new(MS, Duration::from_secs(1), t0);
        e.observe(100 * MS, t0);
        assert!(e.cost(t0 + Duration::from_secs(10)) < 0.01e6);
    }
}
