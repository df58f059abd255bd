//! Publishing: every publish waits for the broker's confirm; a job goes to its work queue or,
//! when its run time is ahead, through a wait level.

use lapin::BasicProperties;
use lapin::Confirmation;
use lapin::options::BasicPublishOptions;

use super::message::{Envelope, short};
use super::topology::{self, broker};
use super::{DIRECT_REPLY, Inner};
use crate::{Error, Result};

/// What the broker said about a publish.
pub(super) enum Published {
    /// Stored in at least one queue.
    Routed,
    /// Returned: no queue was bound (mandatory publish).
    Returned,
    /// Refused (a full queue with `reject-publish`).
    Refused,
}

impl Inner {
    /// Where a job goes now: straight to its work queue, or through a wait level.
    pub(super) async fn route(&self, env: &Envelope) -> Result<(String, String)> {
        let target = if env.priority > 0 {
            self.names.high(&env.queue)
        } else {
            self.names.normal(&env.queue)
        };
        let remaining = env.run_at_ms.saturating_sub(self.clock.now_ms());
        if remaining <= 0 {
            return Ok((String::new(), target));
        }
        // The largest level that does not overshoot, else the smallest (late by less than it).
        let remaining = remaining as u64;
        let level = self
            .levels
            .iter()
            .rev()
            .find(|l| **l <= remaining)
            .unwrap_or(&self.levels[0]);
        let key = format!("wait:{level}");
        if !self.is_declared(&key) {
            let link = self.link().await?;
            topology::declare_wait_level(&link.admin, &self.names, *level).await?;
            self.remember(
                &key,
                &[
                    (false, self.names.wait(*level)),
                    (true, self.names.delay(*level)),
                ],
            );
        }
        Ok((self.names.delay(*level), target))
    }

    /// Publishes and waits for the broker's confirm.
    pub(super) async fn publish_confirmed(
        &self,
        exchange: &str,
        routing_key: &str,
        body: &[u8],
        props: BasicProperties,
    ) -> Result<Published> {
        let link = self.link().await?;
        // Replies to a direct reply-to queue whose requester is gone are simply dropped.
        let mandatory = !routing_key.starts_with(DIRECT_REPLY);
        let (exchange, routing_key) = (
            short("exchange", exchange)?,
            short("routing key", routing_key)?,
        );
        let publish = async {
            link.publisher
                .basic_publish(
                    exchange,
                    routing_key,
                    BasicPublishOptions {
                        mandatory,
                        ..Default::default()
                    },
                    body,
                    props,
                )
                .await
                .map_err(broker)?
                .await
                .map_err(broker)
        };
        let within = self.config.confirm_timeout;
        let confirm = tokio::time::timeout(within, publish)
            .await
            .map_err(|_| Error::Unavailable(format!("no confirm within {within:?}")))??;
        match confirm {
            Confirmation::Ack(None) => Ok(Published::Routed),
            Confirmation::Ack(Some(_)) => Ok(Published::Returned),
            Confirmation::Nack(_) => Ok(Published::Refused),
            Confirmation::NotRequested => Err(Error::Backend("publisher confirms are off".into())),
        }
    }

    /// [`Inner::publish_confirmed`] where a refusal is an error; `Ok(false)` when the
    /// message was returned unroutable.
    pub(super) async fn publish_raw(
        &self,
        exchange: &str,
        routing_key: &str,
        body: &[u8],
        props: BasicProperties,
    ) -> Result<bool> {
        match self
            .publish_confirmed(exchange, routing_key, body, props)
            .await?
        {
            Published::Routed => Ok(true),
            Published::Returned => Ok(false),
            Published::Refused => Err(Error::Unavailable("the broker refused the message".into())),
        }
    }

    /// Publishes a job to where it belongs now (its queue, or a wait level).
    pub(super) async fn publish_job(&self, env: &Envelope) -> Result<()> {
        let (exchange, key) = self.route(env).await?;
        if self
            .publish_raw(&exchange, &key, &env.body(), env.properties()?)
            .await?
        {
            Ok(())
        } else {
            Err(Error::Backend(format!(
                "no queue took job {} (queue {})",
                env.id, env.queue
            )))
        }
    }
}
