//! L2: the shared Redis tier, with a bounded timeout per call and a small circuit breaker.
//!
//! Every call either answers within `timeout` or counts as a Redis failure; failures open
//! the breaker for `cooldown`, during which L2 is skipped entirely (pass-through), then the
//! next call probes Redis again. Callers never see a Redis error.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use redis::aio::ConnectionManager;

use crate::metrics::Metrics;
use crate::random::saturating_nanos;
use basis_clock::Clock;

/// What an L2 read found.
pub(crate) enum Fetched {
    /// The stored bytes and the time Redis still keeps them (`None`: no expiry set).
    Hit(Vec<u8>, Option<Duration>),
    /// Redis answered: no such key.
    Miss,
    /// Redis is down, slow or skipped by the breaker.
    Unavailable,
}

pub(crate) struct L2 {
    conn: ConnectionManager,
    /// `<namespace>:v<version>:`, prepended to every key.
    prefix: String,
    /// The pub/sub channel carrying invalidations for this namespace and version.
    pub(crate) channel: String,
    timeout: Duration,
    cooldown: Duration,
    /// Clock time (ns) before which L2 is skipped.
    open_until: AtomicU64,
    clock: Arc<dyn Clock>,
    metrics: Metrics,
}

/// Connection settings shared by the command connection and the subscriber.
pub(crate) struct L2Settings {
    pub namespace_prefix: String,
    pub timeout: Duration,
    pub cooldown: Duration,
}

impl L2 {
    /// Creates the tier without connecting: a Redis that is down at start only means the
    /// cache starts in pass-through mode.
    pub(crate) fn new(
        client: redis::Client,
        settings: L2Settings,
        clock: Arc<dyn Clock>,
        metrics: Metrics,
    ) -> redis::RedisResult<Self> {
        let config = redis::aio::ConnectionManagerConfig::new()
            .set_connection_timeout(Some(settings.timeout.max(Duration::from_millis(200))))
            .set_response_timeout(Some(settings.timeout))
            .set_number_of_retries(2)
            .set_max_delay(Duration::from_secs(1));
        let conn = ConnectionManager::new_lazy_with_config(client, config)?;
        let channel = format!("basis-cache:{}invalidate", settings.namespace_prefix);
        Ok(Self {
            conn,
            prefix: settings.namespace_prefix,
            channel,
            timeout: settings.timeout,
            cooldown: settings.cooldown,
            open_until: AtomicU64::new(0),
            clock,
            metrics,
        })
    }

    /// The full Redis key of a cache key.
    pub(crate) fn redis_key(&self, key: &str) -> String {
        let mut out = String::with_capacity(self.prefix.len() + key.len());
        out.push_str(&self.prefix);
        out.push_str(key);
        out
    }

    pub(crate) async fn get(&self, key: &str) -> Fetched {
        let key = self.redis_key(key);
        let mut conn = self.conn.clone();
        let reply = self
            .call(async move {
                redis::pipe()
                    .get(&key)
                    .cmd("PTTL")
                    .arg(&key)
                    .query_async::<(Option<Vec<u8>>, i64)>(&mut conn)
                    .await
            })
            .await;
        match reply {
            None => Fetched::Unavailable,
            Some((Some(bytes), pttl)) if pttl != -2 => {
                let left = u64::try_from(pttl).ok().map(Duration::from_millis);
                Fetched::Hit(bytes, left)
            }
            Some(_) => Fetched::Miss,
        }
    }

    pub(crate) async fn set(&self, key: &str, bytes: Vec<u8>, ttl: Duration) {
        let key = self.redis_key(key);
        let ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1);
        let mut conn = self.conn.clone();
        self.call(async move {
            redis::cmd("SET")
                .arg(&key)
                .arg(bytes)
                .arg("PX")
                .arg(ms)
                .query_async::<()>(&mut conn)
                .await
        })
        .await;
    }

    pub(crate) async fn delete(&self, key: &str) {
        let key = self.redis_key(key);
        let mut conn = self.conn.clone();
        self.call(async move {
            redis::cmd("UNLINK")
                .arg(&key)
                .query_async::<()>(&mut conn)
                .await
        })
        .await;
    }

    /// Deletes every key of this namespace whose cache key starts with `prefix`, by SCAN:
    /// O(keys in the database), meant for rare administrative invalidations.
    pub(crate) async fn delete_prefix(&self, prefix: &str) {
        let pattern = format!("{}{}*", glob_escape(&self.prefix), glob_escape(prefix));
        let mut cursor: u64 = 0;
        loop {
            let mut conn = self.conn.clone();
            let pattern = pattern.clone();
            let page = self
                .call(async move {
                    redis::cmd("SCAN")
                        .arg(cursor)
                        .arg("MATCH")
                        .arg(&pattern)
                        .arg("COUNT")
                        .arg(1000)
                        .query_async::<(u64, Vec<String>)>(&mut conn)
                        .await
                })
                .await;
            let Some((next, keys)) = page else { return };
            if !keys.is_empty() {
                let mut conn = self.conn.clone();
                let done = self
                    .call(async move {
                        redis::cmd("UNLINK")
                            .arg(keys)
                            .query_async::<()>(&mut conn)
                            .await
                    })
                    .await;
                if done.is_none() {
                    return;
                }
            }
            if next == 0 {
                return;
            }
            cursor = next;
        }
    }

    /// Publishes an encoded invalidation; returns whether Redis took it.
    pub(crate) async fn publish(&self, message: Vec<u8>) -> bool {
        let channel = self.channel.clone();
        let mut conn = self.conn.clone();
        self.call(async move {
            redis::cmd("PUBLISH")
                .arg(&channel)
                .arg(message)
                .query_async::<i64>(&mut conn)
                .await
        })
        .await
        .is_some()
    }

    /// Runs one Redis call under the timeout and the breaker; `None` means "treat as absent".
    async fn call<T>(&self, op: impl Future<Output = redis::RedisResult<T>>) -> Option<T> {
        let now = saturating_nanos(self.clock.monotonic());
        if now < self.open_until.load(Ordering::Relaxed) {
            self.metrics.redis_skipped.increment(1);
            return None;
        }
        match tokio::time::timeout(self.timeout, op).await {
            Ok(Ok(value)) => Some(value),
            Ok(Err(error)) => {
                self.metrics.redis_errors.increment(1);
                tracing::debug!(%error, "redis call failed; cache passes through");
                self.trip();
                None
            }
            Err(_) => {
                self.metrics.redis_timeouts.increment(1);
                tracing::debug!(timeout = ?self.timeout, "redis call timed out; cache passes through");
                self.trip();
                None
            }
        }
    }

    fn trip(&self) {
        let until = saturating_nanos(self.clock.monotonic() + self.cooldown);
        self.open_until.store(until, Ordering::Relaxed);
    }
}

/// Escapes Redis glob metacharacters so a prefix matches literally.
fn glob_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::glob_escape;

    #[test]
    fn glob_metacharacters_are_escaped() {
        assert_eq!(glob_escape("a*b?[c]\\"), "a\\*b\\?\\[c\\]\\\\");
        assert_eq!(glob_escape("links:v1:"), "links:v1:");
    }
}
