//! Injected randomness.
//!
//! Everything in this crate that depends on chance (TTL jitter, XFetch's early refresh) reads
//! it through [`Random`], so tests pass a [`FixedRandom`] and are exact. Time comes from
//! `basis_clock::Clock` (its monotonic side).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// A source of uniform numbers in `[0, 1)`.
pub trait Random: Send + Sync + 'static {
    /// The next uniform sample in `[0, 1)`.
    fn next_f64(&self) -> f64;
}

/// A lock-free SplitMix64 generator: fast, statistically sound for jitter and XFetch,
/// and not for secrets.
#[derive(Debug)]
pub struct SplitMix {
    state: AtomicU64,
}

impl SplitMix {
    /// A generator started from `seed`.
    pub fn seeded(seed: u64) -> Self {
        Self {
            state: AtomicU64::new(seed),
        }
    }

    /// A generator seeded from the system clock and the address of a local.
    pub fn from_entropy() -> Self {
        let local = 0u8;
        let addr = std::ptr::addr_of!(local) as u64;
        let time = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        Self::seeded(time ^ addr.rotate_left(32))
    }

    /// The next 64 random bits.
    pub fn next_u64(&self) -> u64 {
        // SplitMix's state only ever moves by a constant, so one atomic add is the whole update.
        let mut z = self
            .state
            .fetch_add(0x9E37_79B9_7F4A_7C15, Ordering::Relaxed)
            .wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

impl Random for SplitMix {
    fn next_f64(&self) -> f64 {
        // 53 random mantissa bits → uniform in [0, 1).
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }
}

/// A "random" source that always returns the same value (clamped into `[0, 1)`).
#[derive(Debug)]
pub struct FixedRandom {
    bits: AtomicU64,
}

impl FixedRandom {
    /// A source returning `value` until [`FixedRandom::set`] changes it.
    pub fn new(value: f64) -> Self {
        Self {
            bits: AtomicU64::new(clamp_unit(value).to_bits()),
        }
    }

    /// Changes the value returned from now on.
    pub fn set(&self, value: f64) {
        self.bits
            .store(clamp_unit(value).to_bits(), Ordering::SeqCst);
    }
}

impl Random for FixedRandom {
    fn next_f64(&self) -> f64 {
        f64::from_bits(self.bits.load(Ordering::SeqCst))
    }
}

fn clamp_unit(value: f64) -> f64 {
    if value.is_nan() {
        0.0
    } else {
        value.clamp(0.0, 1.0 - f64::EPSILON)
    }
}

pub(crate) fn saturating_nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splitmix_samples_stay_in_the_unit_interval_and_look_uniform() {
        let rng = SplitMix::seeded(7);
        let n = 100_000;
        let mut sum = 0.0;
        for _ in 0..n {
            let x = rng.next_f64();
            assert!((0.0..1.0).contains(&x));
            sum += x;
        }
        let mean = sum / f64::from(n);
        assert!((mean - 0.5).abs() < 0.01, "mean {mean}");
    }

    #[test]
    fn fixed_random_clamps_into_the_unit_interval() {
        assert_eq!(FixedRandom::new(-1.0).next_f64(), 0.0);
        assert!(FixedRandom::new(2.0).next_f64() < 1.0);
    }
}
