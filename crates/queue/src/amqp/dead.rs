//! Dead letters and stats. AMQP 0-9-1 has no "browse": dead letters are taken with
//! `basic.get` on a private channel and given back by closing it, except the one a replay
//! moves, which is acked once its replacement is confirmed. The broker requeues what a closed
//! channel held asynchronously, so each browse waits (bounded) until the queue's count is
//! back, and the next call sees every dead letter again.

use lapin::Channel;
use lapin::message::Delivery;
use lapin::options::{BasicAckOptions, BasicGetOptions, QueueDeclareOptions, QueuePurgeOptions};
use lapin::types::FieldTable;

use super::message::{Envelope, short};
use super::topology::broker;
use super::{Inner, lock};
use crate::{DeadJob, Error, JobId, QueueStats, Result};

/// The most dead letters one scan looks at per queue.
const SCAN_LIMIT: usize = 10_000;

impl Inner {
    fn queues(&self, queue: Option<&str>) -> Vec<String> {
        match queue {
            Some(q) => vec![q.to_owned()],
            None => lock(&self.known).iter().cloned().collect(),
        }
    }

    /// Takes up to `limit` dead letters of `queue` on `ch` (unacked until `ch` closes).
    async fn take_dead(&self, ch: &Channel, queue: &str, limit: usize) -> Result<Vec<Delivery>> {
        self.ensure_queue(queue).await?;
        let dlq = short("queue", &self.names.dlq(queue))?;
        let mut out = Vec::new();
        while out.len() < limit {
            match ch
                .basic_get(dlq.clone(), BasicGetOptions::default())
                .await
                .map_err(broker)?
            {
                Some(m) => out.push(m.delivery),
                None => break,
            }
        }
        Ok(out)
    }

    /// Ready dead letters of `queue`, as the broker counts them.
    async fn dead_count(&self, queue: &str) -> Result<u64> {
        let link = self.link().await?;
        let passive = QueueDeclareOptions {
            passive: true,
            ..Default::default()
        };
        link.admin
            .queue_declare(
                short("queue", &self.names.dlq(queue))?,
                passive,
                FieldTable::default(),
            )
            .await
            .map(|q| u64::from(q.message_count()))
            .map_err(broker)
    }

    /// Closes a browsing channel and waits up to 2 s until `queue` counts `expected` dead
    /// letters again (more is fine: new ones arrived; less after 2 s: someone purged).
    async fn give_back(&self, ch: Channel, queue: &str, expected: u64) {
        let _ = ch.close(200, "browsed".into()).await;
        let until = tokio::time::Instant::now() + std::time::Duration::from_secs(2);
        while tokio::time::Instant::now() < until {
            match self.dead_count(queue).await {
                Ok(n) if n < expected => {
                    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
                }
                _ => return,
            }
        }
    }

    async fn private_channel(&self) -> Result<Channel> {
        self.link()
            .await?
            .conn
            .create_channel()
            .await
            .map_err(broker)
    }

    pub(super) async fn dead_letters(
        &self,
        queue: Option<&str>,
        limit: usize,
    ) -> Result<Vec<DeadJob>> {
        let mut out = Vec::new();
        for q in self.queues(queue) {
            self.ensure_queue(&q).await?;
            let before = self.dead_count(&q).await?;
            let ch = self.private_channel().await?;
            let taken = self.take_dead(&ch, &q, limit).await;
            self.give_back(ch, &q, before).await;
            out.extend(taken?.iter().map(|d| dead_job(&q, d)));
        }
        out.sort_by_key(|d| d.died_at_ms);
        out.truncate(limit);
        Ok(out)
    }

    pub(super) async fn dead_letter(&self, id: &JobId) -> Result<Option<DeadJob>> {
        for q in self.queues(None) {
            self.ensure_queue(&q).await?;
            let before = self.dead_count(&q).await?;
            let ch = self.private_channel().await?;
            let taken = self.take_dead(&ch, &q, SCAN_LIMIT).await;
            self.give_back(ch, &q, before).await;
            if let Some(d) = taken?.iter().find(|d| message_id(d) == Some(id.0.as_str())) {
                return Ok(Some(dead_job(&q, d)));
            }
        }
        Ok(None)
    }

    pub(super) async fn replay(&self, id: &JobId) -> Result<bool> {
        for q in self.queues(None) {
            self.ensure_queue(&q).await?;
            let before = self.dead_count(&q).await?;
            let ch = self.private_channel().await?;
            let result = self.replay_from(&ch, &q, id).await;
            let moved = matches!(result, Ok(true)) as u64;
            self.give_back(ch, &q, before.saturating_sub(moved)).await;
            if result? {
                return Ok(true);
            }
        }
        Ok(false)
    }

    async fn replay_from(&self, ch: &Channel, queue: &str, id: &JobId) -> Result<bool> {
        let taken = self.take_dead(ch, queue, SCAN_LIMIT).await?;
        let Some(d) = taken.iter().find(|d| message_id(d) == Some(id.0.as_str())) else {
            return Ok(false);
        };
        let mut env = Envelope::decode(d).map_err(|reason| {
            Error::Invalid(format!(
                "dead letter {id} is not a job and cannot be replayed: {reason}"
            ))
        })?;
        env.queue = queue.to_owned();
        env.attempts_done = 0;
        env.last_error = None;
        env.died_at_ms = None;
        // Its key was released when it died; a replay does not take it again.
        env.dedup = None;
        env.run_at_ms = self.clock.now_ms();
        self.publish_job(&env).await?;
        d.acker
            .ack(BasicAckOptions::default())
            .await
            .map_err(broker)?;
        Ok(true)
    }

    pub(super) async fn purge(&self, queue: Option<&str>) -> Result<u64> {
        let mut total = 0;
        for q in self.queues(queue) {
            self.ensure_queue(&q).await?;
            let link = self.link().await?;
            let n = link
                .admin
                .queue_purge(
                    short("queue", &self.names.dlq(&q))?,
                    QueuePurgeOptions::default(),
                )
                .await
                .map_err(broker)?;
            total += u64::from(n);
        }
        Ok(total)
    }

    pub(super) async fn stats(&self) -> Result<Vec<QueueStats>> {
        let mut out = Vec::new();
        for q in self.queues(None) {
            self.ensure_queue(&q).await?;
            let link = self.link().await?;
            let count = |name: String| {
                let ch = link.admin.clone();
                async move {
                    let passive = QueueDeclareOptions {
                        passive: true,
                        ..Default::default()
                    };
                    ch.queue_declare(short("queue", &name)?, passive, FieldTable::default())
                        .await
                        .map(|q| u64::from(q.message_count()))
                        .map_err(broker)
                }
            };
            let depth = count(self.names.normal(&q)).await? + count(self.names.high(&q)).await?;
            let dead = count(self.names.dlq(&q)).await?;
            let running = lock(&self.held)
                .values()
                .filter(|h| h.env.queue == q)
                .count() as u64;
            out.push(QueueStats {
                queue: q,
                depth,
                running,
                oldest_ready_age_ms: 0,
                dead,
            });
        }
        Ok(out)
    }
}

fn message_id(d: &Delivery) -> Option<&str> {
    d.properties.message_id().as_ref().map(|s| s.as_str())
}

/// A dead letter as the API shows it; a foreign message keeps its body as text.
fn dead_job(queue: &str, d: &Delivery) -> DeadJob {
    match Envelope::decode(d) {
        Ok(env) => DeadJob {
            id: JobId(env.id),
            queue: queue.to_owned(),
            kind: env.kind,
            payload: env.payload,
            attempts: env.attempts_done + Envelope::redeliveries(d),
            last_error: env.last_error.unwrap_or_default(),
            died_at_ms: env.died_at_ms.unwrap_or(0),
            traceparent: env.traceparent,
        },
        Err(reason) => {
            let poison = Envelope::decode_lenient(d);
            DeadJob {
                id: JobId(message_id(d).unwrap_or_default().to_owned()),
                queue: queue.to_owned(),
                kind: d
                    .properties
                    .kind()
                    .as_ref()
                    .map(|k| k.to_string())
                    .unwrap_or_default(),
                payload: serde_json::Value::String(String::from_utf8_lossy(&d.data).into_owned()),
                attempts: 0,
                last_error: poison.0.unwrap_or(reason),
                died_at_ms: poison.1.unwrap_or(0),
                traceparent: None,
            }
        }
    }
}
