//! L1 coherence across instances through Redis pub/sub.
//!
//! Every write or invalidation publishes a small postcard message on the namespace's
//! channel; every other instance evicts the named L1 entries. Messages carry the sender's
//! instance id so an instance ignores its own.
//!
//! Bound: a peer's L1 drops the entry one pub/sub delivery after the writer's call returns
//! (sub-millisecond on a LAN). Pub/sub is fire-and-forget, so a subscriber that was
//! disconnected may have missed messages: on every resubscription it clears its whole L1.
//! Whatever slips through (a half-open TCP connection before the keep-alive ping notices)
//! is bounded by the L1 lifetime cap (`CacheBuilder::l1_max_ttl`).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use crate::key::CacheKey;
use crate::l1::L1;
use crate::metrics::Metrics;

/// One invalidation on the wire.
#[derive(Debug, Serialize, Deserialize, PartialEq, Eq)]
pub(crate) struct Message {
    /// The instance that made the change.
    pub origin: u64,
    /// What to evict.
    pub op: Op,
}

/// What a peer must evict from its L1.
#[derive(Debug, Serialize, Deserialize, PartialEq, Eq)]
pub(crate) enum Op {
    /// One key, in its textual form.
    Key(String),
    /// Every key whose textual form starts with this.
    Prefix(String),
    /// Everything in the namespace.
    All,
}

impl Message {
    pub(crate) fn encode(&self) -> Vec<u8> {
        // Serialising a struct of an integer and a string into a Vec cannot fail.
        postcard::to_allocvec(self).unwrap_or_default()
    }
}

const MIN_BACKOFF: Duration = Duration::from_millis(50);
const MAX_BACKOFF: Duration = Duration::from_secs(5);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
const KEEPALIVE: Duration = Duration::from_secs(5);

/// Everything the subscriber task needs; it holds no reference to the cache itself, so
/// dropping the last cache handle ends it (through `shutdown`).
pub(crate) struct Subscriber<K, V> {
    pub client: redis::Client,
    pub channel: String,
    pub instance: u64,
    pub l1: L1<K, V>,
    pub metrics: Metrics,
    pub subscribed: Arc<AtomicBool>,
    pub shutdown: watch::Receiver<()>,
}

impl<K: CacheKey, V: Send + Sync + 'static> Subscriber<K, V> {
    /// Subscribes, applies peers' invalidations, and resubscribes with backoff forever
    /// (until shutdown).
    pub(crate) async fn run(mut self) {
        let mut backoff = MIN_BACKOFF;
        // Whether messages may have been lost since the last time we were subscribed.
        let mut may_have_missed = false;
        loop {
            let attempt = tokio::select! {
                r = tokio::time::timeout(CONNECT_TIMEOUT, subscribe(&self.client, &self.channel)) => r,
                _ = self.shutdown.changed() => return,
            };
            match attempt {
                Ok(Ok(pubsub)) => {
                    if may_have_missed {
                        self.l1.clear();
                        self.metrics.l1_resyncs.increment(1);
                        tracing::info!(channel = %self.channel, "resubscribed; cleared L1");
                    }
                    backoff = MIN_BACKOFF;
                    self.subscribed.store(true, Ordering::SeqCst);
                    let stop = self.listen(pubsub).await;
                    self.subscribed.store(false, Ordering::SeqCst);
                    if stop {
                        return;
                    }
                    tracing::warn!(channel = %self.channel, "lost the invalidation subscription");
                }
                Ok(Err(error)) => tracing::debug!(%error, "subscribing to invalidations failed"),
                Err(_) => tracing::debug!("subscribing to invalidations timed out"),
            }
            may_have_missed = true;
            tokio::select! {
                _ = tokio::time::sleep(backoff) => {}
                _ = self.shutdown.changed() => return,
            }
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    }

    /// Applies messages until the connection fails (returns `false`) or shutdown (`true`).
    async fn listen(&mut self, pubsub: redis::aio::PubSub) -> bool {
        let (mut sink, mut stream) = pubsub.split();
        let mut keepalive = tokio::time::interval(KEEPALIVE);
        keepalive.tick().await;
        loop {
            tokio::select! {
                msg = stream.next() => match msg {
                    Some(msg) => self.apply(msg.get_payload_bytes()),
                    None => return false,
                },
                _ = keepalive.tick() => {
                    let ping = tokio::time::timeout(CONNECT_TIMEOUT, sink.ping::<redis::Value>()).await;
                    if !matches!(ping, Ok(Ok(_))) {
                        return false;
                    }
                }
                _ = self.shutdown.changed() => return true,
            }
        }
    }

    fn apply(&self, payload: &[u8]) {
        let Ok(message) = postcard::from_bytes::<Message>(payload) else {
            tracing::debug!("ignoring an undecodable invalidation message");
            return;
        };
        if message.origin == self.instance {
            return;
        }
        self.metrics.invalidations_received.increment(1);
        match message.op {
            Op::Key(text) => {
                if let Some(key) = K::parse_key(&text) {
                    self.l1.remove(&key);
                }
            }
            Op::Prefix(prefix) => self.l1.remove_prefix(&prefix),
            Op::All => self.l1.clear(),
        }
    }
}

async fn subscribe(
    client: &redis::Client,
    channel: &str,
) -> redis::RedisResult<redis::aio::PubSub> {
    let mut pubsub = client.get_async_pubsub().await?;
    pubsub.subscribe(channel).await?;
    Ok(pubsub)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_round_trip_through_postcard() {
        let message = Message {
            origin: 42,
            op: Op::Prefix("user:".into()),
        };
        let back: Message = postcard::from_bytes(&message.encode()).expect("decodes");
        assert_eq!(back, message);
    }
}
