//! The [`Backend`] trait on RabbitMQ, plus deduplication markers and request-reply.

use std::time::Duration;

use futures_util::StreamExt;
use lapin::options::{
    BasicConsumeOptions, BasicPublishOptions, ConfirmSelectOptions, QueueDeleteOptions,
};
use lapin::types::FieldTable;
use tracing::Instrument as _;

use super::keys::{self, KeyStore};
use super::message::{Envelope, short};
use super::topology::{self, broker, check_name};
use super::{AmqpQueue, DIRECT_REPLY, Inner, lock, new_id};
use crate::{
    Backend, ClaimedJob, DeadJob, Enqueued, Error, JobId, JobInfo, Lease, NewJob, QueueStats,
    Result, topic_queue, trace,
};

/// The outcome of trying to take a deduplication key.
pub(super) enum Key {
    /// Taken (or held by this job already).
    Taken,
    /// Another unfinished job holds it: that job's id.
    HeldBy(String),
}

impl Inner {
    /// Takes deduplication marker `marker` for job `id`, or learns which job holds it.
    /// Taking a marker that already names `id` changes nothing, so the enqueuer and the
    /// claimer of a job may both take it; `claimed` says which one asks.
    pub(super) async fn take_key(&self, marker: &str, id: &str, claimed: bool) -> Result<Key> {
        let expiry = self.config.dedup_expiry.as_millis() as u64;
        if let KeyStore::Postgres(pool) = &self.config.keys {
            let now = self.clock.now_ms();
            let expires = now.saturating_add(i64::try_from(expiry).unwrap_or(i64::MAX));
            return keys::take(pool, marker, id, (now, expires), claimed).await;
        }
        // A refused declaration closes its channel, so each attempt uses a private one.
        let ch = self
            .link()
            .await?
            .conn
            .create_channel()
            .await
            .map_err(broker)?;
        let outcome = topology::declare_key(&ch, marker, id, expiry).await;
        let _ = ch.close(200, "key checked".into()).await;
        match outcome {
            Ok(()) => {
                lock(&self.created).insert((false, marker.to_owned()));
                Ok(Key::Taken)
            }
            Err(e) => match topology::marker_holder(&e) {
                Some(holder) => Ok(Key::HeldBy(holder)),
                None => Err(broker(e)),
            },
        }
    }

    /// Frees the job's deduplication key, if it holds one. A failure is logged: the key's
    /// expiry frees it later.
    pub(super) async fn release_key(&self, env: &Envelope) {
        let Some(marker) = &env.dedup else { return };
        let done = async {
            if let KeyStore::Postgres(pool) = &self.config.keys {
                return keys::release(pool, marker, &env.id).await;
            }
            let name = short("queue", marker)?;
            self.on_admin(|admin| {
                let name = name.clone();
                async move {
                    let deleted = admin.queue_delete(name, QueueDeleteOptions::default());
                    deleted.await.map(|_| ())
                }
            })
            .await
        };
        if let Err(error) = done.await {
            tracing::warn!(%error, marker, "deduplication key not released");
        }
    }

    async fn enqueue(&self, job: NewJob) -> Result<Enqueued> {
        crate::validate(&job)?;
        let now = self.clock.now_ms();
        let mut env = Envelope::fresh(new_id(now), &job.queue, &job.kind, job.payload, now);
        env.priority = job.priority;
        env.run_at_ms = job.run_at_ms.unwrap_or(now);
        env.max_attempts = job.max_attempts;
        env.owner = job.owner;
        env.reply_to = job.reply_to;
        env.correlation_id = job.correlation_id;
        env.traceparent = job.traceparent;
        env.properties()?; // refuse over-long kinds and ids before anything is declared
        if job.queue.starts_with(DIRECT_REPLY) {
            // A reply to a waiting `request`: straight to its pseudo-queue, nothing to declare.
            self.publish_raw("", &job.queue, &env.body(), env.properties()?)
                .await?;
            return Ok(Enqueued {
                id: JobId(env.id),
                duplicate: false,
            });
        }
        self.ensure_queue(&job.queue).await?;
        let Some(key) = &job.dedup_key else {
            self.publish_job(&env).await?;
            return Ok(Enqueued {
                id: JobId(env.id),
                duplicate: false,
            });
        };
        // The job first, then its key. A crash or a broker failure between the two leaves a
        // stored job without its marker, and the job takes its key itself when claimed
        // (`admit`). The other order could leave a marker naming a job that was never
        // stored, and every later job with that key would be refused as its duplicate
        // until the marker expired, days later. The price: a copy refused here is in the
        // queue all the same; it is dropped when claimed while its key is held, and runs
        // (handlers are idempotent) only if the holder finished first.
        let marker = self.names.key(&job.queue, key);
        short("queue", &marker)?;
        env.dedup = Some(marker.clone());
        self.publish_job(&env).await?;
        Ok(match self.take_key(&marker, &env.id, false).await? {
            Key::Taken => Enqueued {
                id: JobId(env.id),
                duplicate: false,
            },
            Key::HeldBy(holder) => Enqueued {
                id: JobId(holder),
                duplicate: true,
            },
        })
    }

    async fn subscribe(&self, topic: &str, group: &str) -> Result<()> {
        check_name("topic", topic)?;
        check_name("group", group)?;
        let queue = topic_queue(topic, group);
        self.ensure_queue(&queue).await?;
        let link = self.link().await?;
        topology::declare_topic(&link.admin, &self.names, topic).await?;
        topology::bind_group(&link.admin, &self.names, topic, &queue).await?;
        self.remember(
            &format!("topic:{topic}"),
            &[(true, self.names.topic(topic))],
        );
        lock(&self.groups)
            .entry(topic.to_owned())
            .or_default()
            .insert(group.to_owned());
        Ok(())
    }

    async fn publish(
        &self,
        topic: &str,
        kind: &str,
        payload: serde_json::Value,
        traceparent: Option<String>,
    ) -> Result<usize> {
        check_name("topic", topic)?;
        let key = format!("topic:{topic}");
        if !self.is_declared(&key) {
            // Publishing to a missing exchange would close the channel; declaring is idempotent.
            let link = self.link().await?;
            topology::declare_topic(&link.admin, &self.names, topic).await?;
            self.remember(&key, &[(true, self.names.topic(topic))]);
        }
        let now = self.clock.now_ms();
        let mut env = Envelope::fresh(new_id(now), "", kind, payload, now);
        env.traceparent = traceparent;
        let exchange = self.names.topic(topic);
        let routed = self
            .publish_raw(&exchange, "", &env.body(), env.properties()?)
            .await?;
        let known: Vec<String> = lock(&self.groups)
            .get(topic)
            .map(|groups| groups.iter().cloned().collect())
            .unwrap_or_default();
        if routed {
            return Ok(known.len().max(1));
        }
        if known.is_empty() {
            return Ok(0);
        }
        // Returned although this instance bound groups to the topic: the broker lost a
        // binding (RabbitMQ can, for a queue that recovered late after a restart, keeping
        // the binding on disk but not in its routing table). Binding again repairs it; a
        // message still returned is an error, so the publisher keeps it (an outbox row stays
        // until it is routed) instead of counting it delivered to nobody.
        tracing::warn!(topic, groups = ?known, "a topic message came back unroutable; binding the groups again");
        let link = self.link().await?;
        for group in &known {
            topology::bind_group(&link.admin, &self.names, topic, &topic_queue(topic, group))
                .await?;
        }
        if self
            .publish_raw(&exchange, "", &env.body(), env.properties()?)
            .await?
        {
            Ok(known.len())
        } else {
            Err(Error::Unavailable(format!(
                "no queue of topic {topic} took the message although groups {known:?} subscribed"
            )))
        }
    }
}

impl Inner {
    async fn request(
        &self,
        queue: &str,
        kind: &str,
        payload: serde_json::Value,
        timeout: Duration,
    ) -> Result<serde_json::Value> {
        self.ensure_queue(queue).await?;
        let link = self.link().await?;
        // Direct reply-to requires publishing on the channel that consumes the replies.
        let ch = link.conn.create_channel().await.map_err(broker)?;
        let result = async {
            let mut replies = ch
                .basic_consume(
                    DIRECT_REPLY.into(),
                    "".into(),
                    BasicConsumeOptions {
                        no_ack: true,
                        ..Default::default()
                    },
                    FieldTable::default(),
                )
                .await
                .map_err(broker)?;
            ch.confirm_select(ConfirmSelectOptions::default())
                .await
                .map_err(broker)?;
            let now = self.clock.now_ms();
            let correlation = new_id(now);
            let mut env = Envelope::fresh(new_id(now), queue, kind, payload, now);
            env.reply_to = Some(DIRECT_REPLY.into());
            env.correlation_id = Some(correlation.clone());
            let confirm = ch
                .basic_publish(
                    "".into(),
                    short("queue", &self.names.normal(queue))?,
                    BasicPublishOptions {
                        mandatory: true,
                        ..Default::default()
                    },
                    &env.body(),
                    env.properties()?,
                )
                .await
                .map_err(broker)?
                .await
                .map_err(broker)?;
            if !matches!(confirm, lapin::Confirmation::Ack(None)) {
                return Err(Error::Unavailable(format!(
                    "the request to {queue} was not stored"
                )));
            }
            let wait = async {
                while let Some(reply) = replies.next().await {
                    let reply = reply.map_err(broker)?;
                    let matches = reply
                        .properties
                        .correlation_id()
                        .as_ref()
                        .map(|c| c.as_str())
                        == Some(correlation.as_str());
                    if matches {
                        return reply_outcome(&reply.data);
                    }
                }
                Err(Error::Unavailable("the reply channel closed".into()))
            };
            tokio::time::timeout(timeout, wait)
                .await
                .map_err(|_| Error::Timeout(timeout))?
        }
        .await;
        let _ = ch.close(200, "request done".into()).await;
        result
    }
}

/// A worker's reply: `{"ok": result}` or `{"error": last error}`.
fn reply_outcome(data: &[u8]) -> Result<serde_json::Value> {
    let reply: serde_json::Value = serde_json::from_slice(data)
        .map_err(|e| Error::Backend(format!("reply is not JSON: {e}")))?;
    match (reply.get("ok"), reply.get("error")) {
        (Some(ok), _) => Ok(ok.clone()),
        (None, Some(err)) => Err(Error::Remote(err.as_str().unwrap_or_default().to_owned())),
        (None, None) => Err(Error::Backend("a reply without ok or error".into())),
    }
}

#[async_trait::async_trait]
impl Backend for AmqpQueue {
    fn name(&self) -> &'static str {
        "amqp"
    }

    async fn enqueue(&self, mut job: NewJob) -> Result<Enqueued> {
        let span = trace::enqueue_span(self.name(), &job.queue, &job.kind, 1);
        trace::stamp(&span, std::slice::from_mut(&mut job));
        self.inner.enqueue(job).instrument(span).await
    }

    async fn claim(&self, queue: &str, lease: Duration, limit: usize) -> Result<Vec<ClaimedJob>> {
        self.inner.claim(queue, lease, limit).await
    }

    async fn heartbeat(&self, lease: &Lease, extend: Duration) -> Result<()> {
        self.inner.heartbeat(lease, extend)
    }

    async fn complete(&self, lease: &Lease, _result: Option<serde_json::Value>) -> Result<()> {
        // No per-job state to store the result in (see `job`); request-reply sends it.
        self.inner.complete(lease).await
    }

    async fn retry(&self, lease: &Lease, error: &str, run_at_ms: i64) -> Result<()> {
        self.inner.retry(lease, error, run_at_ms).await
    }

    async fn bury(&self, lease: &Lease, error: &str) -> Result<()> {
        self.inner.bury(lease, error).await
    }

    async fn release(&self, lease: &Lease) -> Result<()> {
        self.inner.release(lease).await
    }

    async fn wait_for_work(&self, queue: &str, timeout: Duration) {
        self.inner.wait_for_work(queue, timeout).await
    }

    async fn job(&self, _id: &JobId) -> Result<Option<JobInfo>> {
        Err(Error::Unsupported("amqp"))
    }

    /// The group's queue is bound to the topic's fanout exchange and receives every kind:
    /// routing by kind would take a direct or topic exchange, and an exchange declared
    /// already cannot change its type. `kinds` are checked, and filtering is the consumer's.
    async fn subscribe_kinds(&self, topic: &str, group: &str, kinds: &[&str]) -> Result<()> {
        crate::topic::subscription_kinds(topic, group, kinds)?;
        self.inner.subscribe(topic, group).await
    }

    async fn publish(&self, topic: &str, kind: &str, payload: serde_json::Value) -> Result<usize> {
        let span = trace::enqueue_span(self.name(), topic, kind, 1);
        let traceparent = trace::traceparent(&span);
        self.inner
            .publish(topic, kind, payload, traceparent)
            .instrument(span)
            .await
    }

    async fn publish_many(&self, topic: &str, messages: &[crate::Message]) -> Result<usize> {
        crate::topic::validate_all(topic, messages)?;
        // The broker confirms each message; a context of the message's own goes in its
        // header as it is, the others get the publish's.
        for (sent, m) in messages.iter().enumerate() {
            let span = trace::enqueue_span(self.name(), topic, &m.kind, 1);
            let traceparent = m.traceparent.clone().or_else(|| trace::traceparent(&span));
            let out = self
                .inner
                .publish(topic, &m.kind, m.payload.clone(), traceparent)
                .instrument(span)
                .await;
            if let Err(e) = out {
                return if sent == 0 { Err(e) } else { Ok(sent) };
            }
        }
        Ok(messages.len())
    }

    async fn dead_letters(&self, queue: Option<&str>, limit: usize) -> Result<Vec<DeadJob>> {
        self.inner.dead_letters(queue, limit).await
    }

    async fn dead_letter(&self, id: &JobId) -> Result<Option<DeadJob>> {
        self.inner.dead_letter(id).await
    }

    async fn replay(&self, id: &JobId) -> Result<bool> {
        self.inner.replay(id).await
    }

    async fn purge(&self, queue: Option<&str>) -> Result<u64> {
        self.inner.purge(queue).await
    }

    async fn stats(&self) -> Result<Vec<QueueStats>> {
        self.inner.stats().await
    }

    /// Request-reply over RabbitMQ's direct reply-to: the job's `reply_to` is the pseudo-queue
    /// of a private channel, so no reply queue is declared or polled; the worker's reply
    /// (`{"ok": …}` or `{"error": …}`, see [`crate::reply`]) comes straight back to it.
    async fn request(
        &self,
        queue: &str,
        kind: &str,
        payload: serde_json::Value,
        timeout: Duration,
    ) -> Result<serde_json::Value> {
        self.inner.request(queue, kind, payload, timeout).await
    }
}
