//! Time as a dependency, so behaviour that depends on it is tested exactly.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use chrono::{DateTime, TimeZone, Utc};

/// Where the application reads the current time.
pub trait Clock: Send + Sync + fmt::Debug + 'static {
    /// Now, in Unix milliseconds.
    fn now_ms(&self) -> i64;
}

/// The system's wall clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> i64 {
        // Read straight from the system time: this runs on every redirect, and a calendar
        // date-time would be built only to be turned back into a number.
        let since_epoch = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        i64::try_from(since_epoch.as_millis()).unwrap_or(i64::MAX)
    }
}

/// A clock that moves only when told to (for tests).
#[derive(Debug, Default)]
pub struct ManualClock {
    now_ms: AtomicI64,
}

impl ManualClock {
    /// A clock standing at `start`.
    pub fn starting_at(start: DateTime<Utc>) -> Arc<Self> {
        Arc::new(Self {
            now_ms: AtomicI64::new(start.timestamp_millis()),
        })
    }

    /// Moves the clock forward by `ms` milliseconds.
    pub fn advance_ms(&self, ms: i64) {
        self.now_ms.fetch_add(ms, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now_ms(&self) -> i64 {
        self.now_ms.load(Ordering::SeqCst)
    }
}

/// Unix milliseconds as a UTC time (clamped into chrono's range).
pub fn to_datetime(ms: i64) -> DateTime<Utc> {
    Utc.timestamp_millis_opt(ms)
        .single()
        .unwrap_or(DateTime::<Utc>::MAX_UTC)
}

/// The UTC day (days since 1970-01-01) of Unix milliseconds.
pub fn day_of(ms: i64) -> i64 {
    ms.div_euclid(86_400_000)
}
