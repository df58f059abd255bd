//! The consuming side: one channel per job queue. `claim` takes what the consumers have
//! pushed into local buffers, then pulls with `basic.get`; the consumers (on the high and the
//! normal work queue) start at the first `wait_for_work`, so a process that only claims now
//! and then never has deliveries pushed to it, and a claim right after an enqueue sees the job.
//!
//! A delivery belongs to the channel it arrived on: only that channel can ack it, and when
//! the channel closes (worker crash, connection loss) the broker puts every unacked delivery
//! back. The channel's generation, taken from a counter of the whole backend, is the high
//! half of each fencing token.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use futures_util::StreamExt;
use lapin::message::Delivery;
use lapin::options::{BasicConsumeOptions, BasicGetOptions, BasicQosOptions};
use lapin::types::FieldTable;
use lapin::{Channel, Connection, Consumer};
use tokio::sync::Notify;

use super::message::short;
use super::topology::{Names, broker};
use crate::Result;

/// Deliveries buffered for one job queue.
#[derive(Debug, Default)]
struct Buffers {
    high: VecDeque<Delivery>,
    normal: VecDeque<Delivery>,
    /// Messages pulled with `basic.get` so far.
    pulled: u32,
    /// Consumers started, and still running.
    started: bool,
    running: u8,
}

/// One job queue's consuming channel.
pub(super) struct Feed {
    pub generation: u32,
    pub channel: Channel,
    /// Pulls after which the consumers take over.
    pull_limit: u32,
    high: String,
    normal: String,
    buffers: Mutex<Buffers>,
    notify: Notify,
}

impl std::fmt::Debug for Feed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Feed")
            .field("generation", &self.generation)
            .field("normal", &self.normal)
            .finish()
    }
}

impl Feed {
    /// Opens a channel with `prefetch` unacked deliveries at most per consumer, and starts
    /// consuming `queue`'s two work queues.
    pub async fn open(
        conn: &Connection,
        names: &Names,
        queue: &str,
        prefetch: u16,
        generation: u32,
    ) -> Result<Arc<Feed>> {
        let channel = conn.create_channel().await.map_err(broker)?;
        channel
            .basic_qos(prefetch, BasicQosOptions::default())
            .await
            .map_err(broker)?;
        Ok(Arc::new(Feed {
            generation,
            channel,
            pull_limit: prefetch.into(),
            high: names.high(queue),
            normal: names.normal(queue),
            buffers: Mutex::new(Buffers::default()),
            notify: Notify::new(),
        }))
    }

    /// Starts the two consumers, once.
    pub async fn start(self: &Arc<Self>) -> Result<()> {
        {
            let mut b = self.lock();
            if b.started {
                return Ok(());
            }
            (b.started, b.running) = (true, 2);
        }
        for high in [true, false] {
            let name = if high { &self.high } else { &self.normal };
            let consumer = self
                .channel
                .basic_consume(
                    short("queue", name)?,
                    "".into(),
                    BasicConsumeOptions::default(),
                    FieldTable::default(),
                )
                .await
                .map_err(broker)?;
            tokio::spawn(pump(Arc::downgrade(self), consumer, high));
        }
        Ok(())
    }

    /// The next buffered delivery, high priority first.
    pub fn pop(&self) -> Option<Delivery> {
        let mut b = self.lock();
        b.high.pop_front().or_else(|| b.normal.pop_front())
    }

    /// Fetches one message (high first) on this channel, so it is acked and fenced like a
    /// pushed one; `None` when both queues are empty. Once the consumers run it fetches
    /// nothing: they are fed by push, and on a quorum queue each `basic.get` is a replicated
    /// log entry (milliseconds), which would throttle a busy worker. A worker that starts on
    /// a backlog never goes idle, so after `prefetch` pulls the consumers take over too.
    pub async fn get(self: &Arc<Self>) -> Result<Option<Delivery>> {
        let pulled = {
            let b = self.lock();
            if b.started {
                return Ok(None);
            }
            b.pulled
        };
        if pulled >= self.pull_limit {
            self.start().await?;
            return Ok(None);
        }
        for name in [&self.high, &self.normal] {
            let got = self
                .channel
                .basic_get(short("queue", name)?, BasicGetOptions::default())
                .await
                .map_err(broker)?;
            if let Some(message) = got {
                self.lock().pulled += 1;
                return Ok(Some(message.delivery));
            }
        }
        Ok(None)
    }

    /// Whether a delivery is waiting in the buffers.
    pub fn ready(&self) -> bool {
        let b = self.lock();
        !b.high.is_empty() || !b.normal.is_empty()
    }

    /// Whether the channel is open and, once started, both consumers still run.
    pub fn alive(&self) -> bool {
        let b = self.lock();
        (!b.started || b.running == 2) && self.channel.status().connected()
    }

    /// Waits until a delivery is buffered, the feed dies, or `timeout` passes.
    pub async fn wait(&self, timeout: Duration) {
        let notified = self.notify.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        if self.ready() || !self.alive() {
            return;
        }
        let _ = tokio::time::timeout(timeout, notified).await;
    }

    /// Closes the channel: the broker requeues everything buffered or held on it.
    pub async fn close(&self) {
        let _ = self.channel.close(200, "feed closed".into()).await;
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Buffers> {
        // The buffers stay consistent even if a holder panicked: each step is one push/pop.
        self.buffers.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Moves deliveries from a consumer into its feed's buffer, in arrival order.
async fn pump(feed: Weak<Feed>, mut consumer: Consumer, high: bool) {
    while let Some(next) = consumer.next().await {
        let Some(feed) = feed.upgrade() else { return };
        match next {
            Ok(delivery) => {
                let mut b = feed.lock();
                if high {
                    b.high.push_back(delivery)
                } else {
                    b.normal.push_back(delivery)
                }
                drop(b);
                feed.notify.notify_waiters();
            }
            Err(error) => {
                tracing::warn!(%error, "queue consumer failed");
                break;
            }
        }
    }
    if let Some(feed) = feed.upgrade() {
        let mut b = feed.lock();
        b.running = b.running.saturating_sub(1);
        drop(b);
        feed.notify.notify_waiters();
    }
}
