//! The pure arithmetic of expiry: TTL jitter and XFetch early refresh.
//!
//! Kept free of I/O and of the clock so the property tests can pin every input.

use std::time::Duration;

/// A cached entry as held in L1. `value: None` is a negative entry ("the loader found
/// nothing"), cached for the short negative TTL.
#[derive(Debug)]
pub(crate) struct Entry<V> {
    /// The value, or `None` for a negative entry.
    pub value: Option<V>,
    /// When the data expires (clock time): past it, the entry is never served.
    pub expires_at: Duration,
    /// When this local copy must be dropped even though the data has not expired: bounds how
    /// long a missed invalidation can leave L1 stale when an L2 is shared.
    pub l1_until: Duration,
    /// How long the load that produced the value took: XFetch's `delta`.
    pub delta: Duration,
    /// Real-time lifetime handed to moka so it reclaims the memory of dead entries.
    pub reclaim_after: Duration,
}

/// The TTL actually used: `ttl` shortened by up to `jitter` of itself, so entries written
/// together do not all expire together. `jitter` is clamped into `[0, 1]`, `sample` into
/// `[0, 1)`. The result is always within `[ttl × (1 − jitter), ttl]`.
pub(crate) fn jittered_ttl(ttl: Duration, jitter: f64, sample: f64) -> Duration {
    let jitter = if jitter.is_nan() {
        0.0
    } else {
        jitter.clamp(0.0, 1.0)
    };
    let sample = if sample.is_nan() {
        0.0
    } else {
        sample.clamp(0.0, 1.0)
    };
    ttl.mul_f64(1.0 - jitter * sample).min(ttl)
}

/// XFetch (Vattani, Chierichetti, Lowenstein, "Optimal Probabilistic Cache Stampede
/// Prevention", VLDB 2015): refresh now if `now − delta·beta·ln(u) ≥ expiry`.
///
/// `u` is uniform in `(0, 1]`; we take `u = 1 − sample` with `sample` in `[0, 1)`. With `t`
/// the time left, the chance of an early refresh on one read is `exp(−t / (delta·beta))`: it
/// is negligible far from expiry, and rises towards 1 as expiry approaches, sooner for values
/// that are slow to recompute (large `delta`). `beta = 0` disables early refresh.
pub(crate) fn should_refresh_early(
    now: Duration,
    expires_at: Duration,
    delta: Duration,
    beta: f64,
    sample: f64,
) -> bool {
    if now >= expires_at {
        return true;
    }
    if beta <= 0.0 || delta.is_zero() || beta.is_nan() {
        return false;
    }
    let u = 1.0 - sample.clamp(0.0, 1.0 - f64::EPSILON);
    let gap = delta.as_secs_f64() * beta * -u.ln();
    let left = (expires_at - now).as_secs_f64();
    gap >= left
}

/// The chance that one read `left` before expiry triggers an early refresh.
#[cfg(test)]
pub(crate) fn early_refresh_probability(left: Duration, delta: Duration, beta: f64) -> f64 {
    (-left.as_secs_f64() / (delta.as_secs_f64() * beta)).exp()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn no_jitter_keeps_the_ttl() {
        let ttl = Duration::from_secs(60);
        assert_eq!(jittered_ttl(ttl, 0.0, 0.9), ttl);
    }

    #[test]
    fn full_sample_removes_the_whole_jitter_fraction() {
        let ttl = Duration::from_secs(100);
        let got = jittered_ttl(ttl, 0.2, 1.0);
        assert_eq!(got, Duration::from_secs(80));
    }

    #[test]
    fn early_refresh_is_off_when_beta_is_zero() {
        let d = Duration::from_secs(1);
        assert!(!should_refresh_early(
            Duration::ZERO,
            Duration::from_millis(1),
            d,
            0.0,
            0.999
        ));
    }

    #[test]
    fn an_expired_entry_always_refreshes() {
        assert!(should_refresh_early(
            Duration::from_secs(10),
            Duration::from_secs(10),
            Duration::ZERO,
            0.0,
            0.0
        ));
    }

    proptest! {
        #[test]
        fn jittered_ttl_stays_within_bounds(
            ttl_ms in 0u64..10_000_000,
            jitter in 0.0f64..=1.0,
            sample in 0.0f64..1.0,
        ) {
            let ttl = Duration::from_millis(ttl_ms);
            let got = jittered_ttl(ttl, jitter, sample);
            prop_assert!(got <= ttl);
            // One nanosecond of slack for the float round trip.
            prop_assert!(got + Duration::from_nanos(1) >= ttl.mul_f64(1.0 - jitter));
        }

        #[test]
        fn early_refresh_fires_exactly_below_the_xfetch_threshold(
            left_ms in 1u64..100_000,
            delta_ms in 1u64..10_000,
            beta in 0.1f64..4.0,
            sample in 0.0f64..1.0,
        ) {
            let left = Duration::from_millis(left_ms);
            let delta = Duration::from_millis(delta_ms);
            let now = Duration::from_secs(1_000);
            let fired = should_refresh_early(now, now + left, delta, beta, sample);
            // It fires iff u ≤ exp(−left/(delta·beta)), i.e. 1 − sample ≤ p.
            let p = early_refresh_probability(left, delta, beta);
            let u = 1.0 - sample;
            // Skip the measure-zero boundary where float rounding decides.
            prop_assume!((u - p).abs() > 1e-9);
            prop_assert_eq!(fired, u <= p);
        }

        #[test]
        fn early_refresh_is_monotonic_in_time_left(
            delta_ms in 1u64..10_000,
            beta in 0.1f64..4.0,
            sample in 0.0f64..1.0,
            a in 1u64..100_000,
            b in 1u64..100_000,
        ) {
            let (near, far) = (a.min(b), a.max(b));
            let now = Duration::from_secs(1_000);
            let delta = Duration::from_millis(delta_ms);
            let far_fires = should_refresh_early(now, now + Duration::from_millis(far), delta, beta, sample);
            let near_fires = should_refresh_early(now, now + Duration::from_millis(near), delta, beta, sample);
            // Whatever fires far from expiry also fires closer to it.
            prop_assert!(!far_fires || near_fires);
        }
    }
}
