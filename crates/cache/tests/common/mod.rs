//! Helpers shared by the Redis suites.

#![allow(dead_code)]

use std::io::Write;
use std::sync::Once;
use std::sync::atomic::{AtomicU64, Ordering};

/// The Redis to test against, or `None` after printing one visible `skipped:` line.
pub fn redis_url(suite: &str) -> Option<String> {
    match std::env::var("BASIS_TEST_REDIS_URL") {
        Ok(url) if !url.is_empty() => Some(url),
        _ => {
            skip(suite, "BASIS_TEST_REDIS_URL is not set");
            None
        }
    }
}

/// Prints `skipped: <reason>` once per test binary, past the test harness's capture.
pub fn skip(suite: &str, reason: &str) {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // Written to stderr directly, not with `eprintln!`, so libtest does not capture it.
        let _ = writeln!(std::io::stderr(), "skipped: {suite}: {reason}");
    });
}

/// A namespace no other test (or earlier run) uses.
pub fn unique_namespace(name: &str) -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!(
        "t-{name}-{}-{nanos}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

pub use basis_testkit::eventually;
