//! Claims and their leases: taking deliveries from a feed, fencing acks by token, giving back
//! deliveries whose lease ran out.

use std::sync::Arc;
use std::time::Duration;

use lapin::Acker;
use lapin::message::Delivery;
use lapin::options::{BasicAckOptions, BasicNackOptions};

use super::backend::Key;
use super::consume::Feed;
use super::message::Envelope;
use super::{Inner, lock};
use crate::{ClaimedJob, Error, JobId, Lease, Result};

/// A claimed delivery this instance holds.
pub(super) struct Held {
    pub acker: Acker,
    pub env: Envelope,
    pub attempt: u32,
    pub deadline_ms: i64,
}

/// The token of a delivery: the channel generation above 40 bits of delivery tag.
fn token(generation: u32, tag: u64) -> i64 {
    (i64::from(generation) << 40) | (tag & ((1 << 40) - 1)) as i64
}

/// Gives back expired leases every `lease_check` while the backend lives.
pub(super) fn spawn_reaper(inner: &Arc<Inner>) {
    let weak = Arc::downgrade(inner);
    let period = inner.config.lease_check;
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(period);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let Some(inner) = weak.upgrade() else { return };
            inner.expire_leases().await;
        }
    });
}

impl Inner {
    /// This queue's feed, opened (or reopened after its channel died) on demand.
    async fn feed(&self, queue: &str) -> Result<Arc<Feed>> {
        let mut feeds = self.feeds.lock().await;
        if let Some(feed) = feeds.get(queue) {
            if feed.alive() {
                return Ok(feed.clone());
            }
            // Whatever it buffered or held goes back to the queue with the channel.
            feed.close().await;
        }
        self.ensure_queue(queue).await?;
        let link = self.link().await?;
        let feed = Feed::open(
            &link.conn,
            &self.names,
            queue,
            self.config.prefetch,
            self.next_generation(),
        )
        .await?;
        feeds.insert(queue.to_owned(), feed.clone());
        Ok(feed)
    }

    pub(super) async fn claim(
        &self,
        queue: &str,
        lease: Duration,
        limit: usize,
    ) -> Result<Vec<ClaimedJob>> {
        // Leases that ran out by the clock go back first, so this claim can already see them.
        self.expire_leases().await;
        let feed = self.feed(queue).await?;
        let mut out = Vec::new();
        while out.len() < limit {
            let delivery = match feed.pop() {
                Some(d) => d,
                None => match feed.get().await? {
                    Some(d) => d,
                    None => break,
                },
            };
            if let Some(job) = self.admit(&feed, queue, delivery, lease).await? {
                out.push(job);
            }
        }
        Ok(out)
    }

    /// Turns a delivery into a claimed job, or deals with it when it must not run now.
    async fn admit(
        &self,
        feed: &Feed,
        queue: &str,
        delivery: Delivery,
        lease: Duration,
    ) -> Result<Option<ClaimedJob>> {
        let mut env = match Envelope::decode(&delivery) {
            Ok(env) => env,
            Err(reason) => {
                // A poison message never loops: straight to the dead letters.
                self.dead_letter_raw(queue, &delivery, &reason).await?;
                return Ok(None);
            }
        };
        env.queue = queue.to_owned();
        let now = self.clock.now_ms();
        if env.run_at_ms > now {
            // Early (the clocks disagree): park it again for what remains.
            self.publish_job(&env).await?;
            let _ = delivery.acker.ack(BasicAckOptions::default()).await;
            return Ok(None);
        }
        // Only attempts that ended here count: a run, a retry, or a lease that ran out
        // (`expire_leases` republishes those with the attempt counted). A redelivery (a
        // worker or broker that died) does not, as the broker cannot say whether the copy
        // was running or only waiting in a consumer's prefetch; `x-delivery-limit` stops a
        // job that kills every worker that runs it.
        let redeliveries = Envelope::redeliveries(&delivery);
        if redeliveries > 0 {
            metrics::counter!("queue_redeliveries_total", "queue" => queue.to_owned()).increment(1);
        }
        let attempt = env.attempts_done + 1;
        if attempt > env.max_attempts {
            // Its lease ran out on the final attempt.
            let reason = match &env.last_error {
                Some(before) => format!("lease expired on the last attempt (before: {before})"),
                None => "lease expired on the last attempt".to_owned(),
            };
            self.bury_env(env, attempt - 1, &reason, &delivery.acker)
                .await?;
            return Ok(None);
        }
        if let Some(marker) = &env.dedup {
            // The key, taken here when its enqueuer could not (see `enqueue`). A copy whose
            // key another job holds is one its enqueuer was told is a duplicate: dropped.
            match self.take_key(marker, &env.id, true).await {
                Ok(Key::Taken) => {}
                Ok(Key::HeldBy(holder)) => {
                    tracing::debug!(job = %env.id, %holder, "a duplicate of a keyed job dropped");
                    let _ = delivery.acker.ack(BasicAckOptions::default()).await;
                    return Ok(None);
                }
                Err(e) => {
                    let requeue = BasicNackOptions {
                        requeue: true,
                        ..Default::default()
                    };
                    let _ = delivery.acker.nack(requeue).await;
                    return Err(e);
                }
            }
        }
        let token = token(feed.generation, delivery.delivery_tag);
        let job = ClaimedJob {
            lease: Lease {
                id: JobId(env.id.clone()),
                queue: queue.to_owned(),
                token,
            },
            kind: env.kind.clone(),
            payload: env.payload.clone(),
            attempt,
            max_attempts: env.max_attempts,
            enqueued_at_ms: env.enqueued_at_ms,
            run_at_ms: env.run_at_ms,
            reply_to: env.reply_to.clone(),
            correlation_id: env.correlation_id.clone(),
            owner: env.owner.clone(),
            traceparent: env.traceparent.clone(),
        };
        let deadline_ms = now.saturating_add(lease.as_millis() as i64);
        lock(&self.held).insert(
            token,
            Held {
                acker: delivery.acker,
                env,
                attempt,
                deadline_ms,
            },
        );
        Ok(Some(job))
    }

    /// Takes the held delivery `lease` names, or says the lease is lost.
    fn take(&self, lease: &Lease) -> Result<Held> {
        let mut held = lock(&self.held);
        match held.get(&lease.token) {
            Some(h) if h.env.id == lease.id.0 && h.acker.usable() => {}
            Some(h) if h.env.id == lease.id.0 => {
                // Its channel closed: the broker has already put the job back.
                held.remove(&lease.token);
                return Err(Error::LeaseLost(lease.id.clone()));
            }
            _ => return Err(Error::LeaseLost(lease.id.clone())),
        }
        held.remove(&lease.token)
            .ok_or_else(|| Error::LeaseLost(lease.id.clone()))
    }

    pub(super) fn heartbeat(&self, lease: &Lease, extend: Duration) -> Result<()> {
        let mut held = lock(&self.held);
        match held.get_mut(&lease.token) {
            Some(h) if h.env.id == lease.id.0 && h.acker.usable() => {
                h.deadline_ms = self
                    .clock
                    .now_ms()
                    .saturating_add(extend.as_millis() as i64);
                Ok(())
            }
            _ => Err(Error::LeaseLost(lease.id.clone())),
        }
    }

    pub(super) async fn complete(&self, lease: &Lease) -> Result<()> {
        let held = self.take(lease)?;
        // The key before the ack: a crash between the two runs the job once more (its copy
        // takes the key again when claimed), where the other order would leave the key held
        // by a finished job until the marker expired.
        self.release_key(&held.env).await;
        ack(&held.acker, lease).await
    }

    pub(super) async fn retry(&self, lease: &Lease, error: &str, run_at_ms: i64) -> Result<()> {
        let held = self.take(lease)?;
        let mut env = held.env;
        env.attempts_done = held.attempt;
        env.last_error = Some(error.to_owned());
        env.run_at_ms = run_at_ms;
        self.replace(&held.acker, &env, lease).await
    }

    pub(super) async fn release(&self, lease: &Lease) -> Result<()> {
        let held = self.take(lease)?;
        let mut env = held.env;
        // Given back unfinished: this attempt is not held against the job.
        env.attempts_done = held.attempt - 1;
        env.run_at_ms = env.run_at_ms.min(self.clock.now_ms());
        self.replace(&held.acker, &env, lease).await
    }

    pub(super) async fn bury(&self, lease: &Lease, error: &str) -> Result<()> {
        let held = self.take(lease)?;
        self.bury_env(held.env, held.attempt, error, &held.acker)
            .await
    }

    /// Publishes the job's next copy (confirmed), then acks the delivery it replaces.
    async fn replace(&self, acker: &Acker, env: &Envelope, lease: &Lease) -> Result<()> {
        if let Err(e) = self.publish_job(env).await {
            // Nothing was published: give the delivery back rather than lose the attempt.
            let _ = acker
                .nack(BasicNackOptions {
                    requeue: true,
                    ..Default::default()
                })
                .await;
            return Err(e);
        }
        ack(acker, lease).await
    }

    /// Moves a job to its queue's dead letters with `error`, then acks the delivery.
    async fn bury_env(
        &self,
        mut env: Envelope,
        attempts: u32,
        error: &str,
        acker: &Acker,
    ) -> Result<()> {
        env.attempts_done = attempts;
        env.last_error = Some(error.to_owned());
        env.died_at_ms = Some(self.clock.now_ms());
        let routed = self
            .publish_raw(
                &self.names.dlx(),
                &env.queue,
                &env.body(),
                env.properties()?,
            )
            .await?;
        if !routed {
            return Err(Error::Backend(format!(
                "no dead-letter queue for {}",
                env.queue
            )));
        }
        let _ = acker.ack(BasicAckOptions::default()).await;
        self.release_key(&env).await;
        Ok(())
    }

    /// A message that is not a job: dead-lettered as it is, with the reason in a header.
    async fn dead_letter_raw(&self, queue: &str, delivery: &Delivery, reason: &str) -> Result<()> {
        use lapin::types::{AMQPValue, LongString};
        let mut headers = delivery.properties.headers().clone().unwrap_or_default();
        headers.insert(
            "basis-error".into(),
            AMQPValue::LongString(LongString::from(reason.as_bytes().to_vec())),
        );
        headers.insert(
            "basis-died-at".into(),
            AMQPValue::LongLongInt(self.clock.now_ms()),
        );
        let props = delivery.properties.clone().with_headers(headers);
        self.publish_raw(&self.names.dlx(), queue, &delivery.data, props)
            .await?;
        let _ = delivery.acker.ack(BasicAckOptions::default()).await;
        tracing::warn!(queue, reason, "poison message dead-lettered");
        Ok(())
    }

    /// Gives back every delivery whose lease ran out, as a new copy with the attempt
    /// counted (the next claim buries it if that was the last).
    pub(super) async fn expire_leases(&self) {
        let now = self.clock.now_ms();
        let expired: Vec<Held> = {
            let mut held = lock(&self.held);
            let tokens: Vec<i64> = held
                .iter()
                .filter(|(_, h)| h.deadline_ms <= now)
                .map(|(t, _)| *t)
                .collect();
            tokens.iter().filter_map(|t| held.remove(t)).collect()
        };
        for h in expired {
            metrics::counter!("queue_lease_expiries_total", "queue" => h.env.queue.clone())
                .increment(1);
            let lease = Lease {
                id: JobId(h.env.id.clone()),
                queue: h.env.queue.clone(),
                token: 0,
            };
            let mut env = h.env;
            env.attempts_done = h.attempt;
            // On failure `replace` has handed the delivery back to the broker instead.
            let _ = self.replace(&h.acker, &env, &lease).await;
        }
    }

    pub(super) async fn wait_for_work(&self, queue: &str, timeout: Duration) {
        let feed = match self.feed(queue).await {
            Ok(feed) => feed.start().await.map(|()| feed),
            Err(e) => Err(e),
        };
        match feed {
            Ok(feed) => feed.wait(timeout).await,
            // The broker is unreachable: this is the worker's poll interval, not a test wait.
            Err(_) => tokio::time::sleep(timeout).await,
        }
    }
}

/// Acks a held delivery; an ack its channel can no longer carry means the lease is lost.
async fn ack(acker: &Acker, lease: &Lease) -> Result<()> {
    match acker.ack(BasicAckOptions::default()).await {
        Ok(true) => Ok(()),
        _ => Err(Error::LeaseLost(lease.id.clone())),
    }
}

#[cfg(test)]
mod tests {
    use super::token;

    #[test]
    fn tokens_of_a_later_channel_are_larger_than_any_of_an_earlier_one() {
        assert!(token(2, 1) > token(1, (1 << 40) - 1));
        assert!(token(1, 2) > token(1, 1));
        assert!(token(u32::MAX >> 9, 5) > 0);
    }
}
