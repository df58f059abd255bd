//! Helpers shared by the tests: Redis availability and unique key prefixes.

use std::io::Write;
use std::sync::Once;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use basis_ratelimit::{RedisConfig, RedisStore};

/// The Redis URL for engine tests, or `None` when `BASIS_TEST_REDIS_URL` is unset.
///
/// The first skipped test prints one `skipped:` line for all of them, straight to the
/// terminal: the test harness captures `println!`, and a skip must never pass silently.
pub fn redis_url(test: &str) -> Option<String> {
    static ONCE: Once = Once::new();
    match std::env::var("BASIS_TEST_REDIS_URL") {
        Ok(url) if !url.trim().is_empty() => Some(url),
        _ => {
            ONCE.call_once(|| {
                let _ = writeln!(
                    std::io::stderr(),
                    "\nskipped: Redis store tests ({test} and the rest): BASIS_TEST_REDIS_URL is not set"
                );
            });
            None
        }
    }
}

/// A key prefix no other test (or earlier run) uses.
pub fn unique_prefix(test: &str) -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!(
        "test:{test}:{}:{nanos}:{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// A Redis store with a unique prefix, coalescing decisions (the default).
pub fn redis_store(url: &str, test: &str) -> RedisStore {
    redis_store_with(url, test, true)
}

/// A Redis store with a unique prefix.
pub fn redis_store_with(url: &str, test: &str, coalesce: bool) -> RedisStore {
    RedisStore::connect_lazy(&RedisConfig {
        url: url.to_owned(),
        key_prefix: unique_prefix(test),
        coalesce,
    })
    .expect("valid Redis URL")
}
