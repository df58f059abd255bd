//! Time as a dependency: the workspace's one [`Clock`] (from `basis-clock`), and the
//! conversions the server makes from its Unix milliseconds.

use chrono::{DateTime, TimeZone, Utc};

pub use basis_clock::{Clock, ManualClock, SystemClock};

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
