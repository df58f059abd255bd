//! Time as a dependency.
//!
//! Everything in Basis whose behaviour depends on "now" (token expiry, leases, backoff, cache
//! TTLs, click days) reads it through [`Clock`], so tests drive time with [`ManualClock`] and
//! are exact without sleeping. The server, the queue and the cache share this one trait; it
//! lives in a leaf crate so those libraries stay independent of each other.
//!
//! A clock answers two questions:
//! - [`Clock::now_ms`]: the wall-clock time in Unix milliseconds, for anything stored or shown
//!   (expiry dates, lease deadlines written to a database, days of statistics);
//! - [`Clock::monotonic`]: time since an origin fixed for the clock's lifetime, which never goes
//!   back when the system's wall clock is stepped, for in-process durations (TTLs, cool-downs).
//!
//! The rate limiter keeps its own faster clock (a TSC read through `quanta`): it runs on every
//! request, and the few nanoseconds a system call-free counter saves there are measured in its
//! benchmarks.

use std::fmt;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Where time is read.
pub trait Clock: Send + Sync + fmt::Debug + 'static {
    /// The wall-clock time, in Unix milliseconds.
    fn now_ms(&self) -> i64;

    /// Time since this clock's origin; never decreases.
    fn monotonic(&self) -> Duration;
}

/// The system's clocks: `SystemTime` for the wall, `Instant` for monotonic time.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

/// The monotonic origin shared by every [`SystemClock`] of the process.
fn process_origin() -> Instant {
    static ORIGIN: OnceLock<Instant> = OnceLock::new();
    *ORIGIN.get_or_init(Instant::now)
}

impl Clock for SystemClock {
    fn now_ms(&self) -> i64 {
        // Straight from the system time: this runs on every redirect.
        let since_epoch = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        i64::try_from(since_epoch.as_millis()).unwrap_or(i64::MAX)
    }

    fn monotonic(&self) -> Duration {
        process_origin().elapsed()
    }
}

/// A clock that moves only when told to. Clones share one time, so a test keeps a handle
/// while the code under test holds another.
#[derive(Debug, Clone, Default)]
pub struct ManualClock {
    /// Nanoseconds since the clock's origin.
    elapsed_ns: Arc<AtomicI64>,
    /// The wall time at the origin, in Unix milliseconds.
    origin_ms: i64,
}

impl ManualClock {
    /// A clock whose wall time starts at `now_ms` (Unix milliseconds) and whose monotonic
    /// time starts at zero.
    pub fn new(now_ms: i64) -> Self {
        Self {
            elapsed_ns: Arc::default(),
            origin_ms: now_ms,
        }
    }

    /// A clock starting at the system's current wall time.
    pub fn starting_now() -> Self {
        Self::new(SystemClock.now_ms())
    }

    /// Moves the clock forward by `by` (saturating).
    pub fn advance(&self, by: Duration) {
        let ns = i64::try_from(by.as_nanos()).unwrap_or(i64::MAX);
        // fetch_update rather than fetch_add so a huge step saturates instead of wrapping.
        let _ = self
            .elapsed_ns
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |t| {
                Some(t.saturating_add(ns))
            });
    }

    /// Moves the clock forward by `ms` milliseconds.
    pub fn advance_ms(&self, ms: u64) {
        self.advance(Duration::from_millis(ms));
    }
}

impl Clock for ManualClock {
    fn now_ms(&self) -> i64 {
        self.origin_ms
            .saturating_add(self.elapsed_ns.load(Ordering::SeqCst) / 1_000_000)
    }

    fn monotonic(&self) -> Duration {
        Duration::from_nanos(self.elapsed_ns.load(Ordering::SeqCst).unsigned_abs())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_manual_clock_moves_only_when_advanced_and_its_clones_share_the_time() {
        let clock = ManualClock::new(1_000);
        let handle = clock.clone();
        assert_eq!((clock.now_ms(), clock.monotonic()), (1_000, Duration::ZERO));
        handle.advance(Duration::from_micros(2_500));
        assert_eq!(clock.now_ms(), 1_002);
        assert_eq!(clock.monotonic(), Duration::from_micros(2_500));
        handle.advance_ms(998);
        assert_eq!(clock.now_ms(), 2_000);
    }

    #[test]
    fn a_huge_step_saturates_instead_of_wrapping() {
        let clock = ManualClock::new(0);
        clock.advance(Duration::MAX);
        clock.advance(Duration::MAX);
        assert!(clock.now_ms() > 0);
        assert!(clock.monotonic() > Duration::from_secs(1 << 32));
    }

    #[test]
    fn the_system_clock_is_near_the_system_time_and_monotonic() {
        let wall = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_millis() as i64;
        assert!((SystemClock.now_ms() - wall).abs() < 1_000);
        let (a, b) = (SystemClock.monotonic(), SystemClock.monotonic());
        assert!(b >= a);
    }
}
