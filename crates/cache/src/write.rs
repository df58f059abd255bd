//! The write side of [`Cache`]: inserts, write-through and invalidation.
//!
//! Each change is applied to L1, then L2, then announced to the other instances over
//! pub/sub so their L1s drop the old entry (see [`crate::coherence`]).

use std::future::Future;
use std::time::Duration;

use crate::cache::Cache;
use crate::coherence::{Message, Op};
use crate::error::{BoxError, Error};
use crate::key::{CacheKey, CacheValue};

impl<K: CacheKey, V: CacheValue> Cache<K, V> {
    /// Puts `value` in both tiers and evicts the key from the other instances' L1s.
    /// Use it after writing the source of truth yourself, or use
    /// [`Cache::write_through`].
    pub async fn insert(&self, key: K, value: V) {
        self.put(key, Some(value)).await;
    }

    /// Records "not found" for `key` (for the negative TTL), e.g. after a delete.
    pub async fn insert_missing(&self, key: K) {
        self.put(key, None).await;
    }

    /// Write-through: runs `store` (the write to the source of truth) and, only if it
    /// succeeded, puts `value` in the cache. On failure the key is invalidated (the store
    /// may have half-applied a write we cannot see) and the store's error is returned.
    ///
    /// The cache step itself cannot fail: L1 always takes the value, and if Redis is down
    /// the L2 write is skipped (counted in metrics) and the L2 entry expires by its TTL.
    pub async fn write_through<F, Fut, E>(&self, key: K, value: V, store: F) -> Result<(), Error>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<(), E>>,
        E: Into<BoxError>,
    {
        match store().await {
            Ok(()) => {
                self.insert(key, value).await;
                Ok(())
            }
            Err(error) => {
                self.invalidate(&key).await;
                Err(Error::store(error))
            }
        }
    }

    /// Drops `key` from L1 and L2 here and from the other instances' L1s.
    pub async fn invalidate(&self, key: &K) {
        let inner = &*self.inner;
        inner.l1.remove(key);
        if let Some(l2) = &inner.l2 {
            let text = key.key_string();
            l2.delete(&text).await;
            self.announce(Op::Key(text)).await;
        }
    }

    /// Drops every key whose textual form starts with `prefix` (e.g. `"user:42:"`), in
    /// every tier and instance. L2 is walked with SCAN: meant for rare, broad changes.
    pub async fn invalidate_prefix(&self, prefix: &str) {
        let inner = &*self.inner;
        inner.l1.remove_prefix(prefix);
        if let Some(l2) = &inner.l2 {
            l2.delete_prefix(prefix).await;
            self.announce(Op::Prefix(prefix.to_owned())).await;
        }
    }

    /// Drops everything in this namespace and version, in every tier and instance.
    pub async fn clear(&self) {
        let inner = &*self.inner;
        inner.l1.clear();
        if let Some(l2) = &inner.l2 {
            l2.delete_prefix("").await;
            self.announce(Op::All).await;
        }
    }

    async fn put(&self, key: K, value: Option<V>) {
        let (entry, ttl) = self.new_entry(value, Duration::ZERO);
        self.inner.l1.insert(key.clone(), entry.clone());
        if self.inner.l2.is_some() {
            self.write_l2(&key, &entry, ttl).await;
            self.announce(Op::Key(key.key_string())).await;
        }
    }

    async fn announce(&self, op: Op) {
        let inner = &*self.inner;
        let Some(l2) = &inner.l2 else { return };
        let message = Message {
            origin: inner.instance,
            op,
        };
        if l2.publish(message.encode()).await {
            inner.metrics.invalidations_sent.increment(1);
        }
    }
}
