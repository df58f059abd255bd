//! Broker object names and declarations. Every name starts with the configured namespace,
//! so separate deployments (and tests) on one broker never touch each other's queues.
//!
//! For a job queue `q` in namespace `ns`:
//! - `ns.q.q` and `ns.hi.q`: the normal and high-priority work queues (durable quorum queues,
//!   dead-lettering to `ns.dlx` with routing key `q`, `x-delivery-limit` as a backstop);
//! - `ns.dlq.q`: its dead letters, bound to the direct exchange `ns.dlx` with key `q`;
//! - `ns.delay.<ms>` → `ns.wait.<ms>`: one wait queue per delay level, shared by all queues,
//!   whose fixed `x-message-ttl` dead-letters messages back through the default exchange to
//!   the work queue named by their routing key;
//! - `ns.topic.<topic>`: a fanout exchange per topic, bound to each group's normal queue;
//! - `ns.key.q.<key>`: a deduplication marker naming the job that holds the key.

use lapin::options::{ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions};
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use lapin::{Channel, ExchangeKind};

use super::message::short;
use crate::{Error, Result};

/// Names of one namespace's broker objects.
#[derive(Debug, Clone)]
pub(super) struct Names {
    pub ns: String,
}

impl Names {
    pub fn normal(&self, queue: &str) -> String {
        format!("{}.q.{queue}", self.ns)
    }
    pub fn high(&self, queue: &str) -> String {
        format!("{}.hi.{queue}", self.ns)
    }
    pub fn dlq(&self, queue: &str) -> String {
        format!("{}.dlq.{queue}", self.ns)
    }
    pub fn dlx(&self) -> String {
        format!("{}.dlx", self.ns)
    }
    pub fn wait(&self, level_ms: u64) -> String {
        format!("{}.wait.{level_ms}", self.ns)
    }
    pub fn delay(&self, level_ms: u64) -> String {
        format!("{}.delay.{level_ms}", self.ns)
    }
    pub fn topic(&self, topic: &str) -> String {
        format!("{}.topic.{topic}", self.ns)
    }
    /// The marker for `key` on `queue`; a key too long for a queue name is hashed.
    pub fn key(&self, queue: &str, key: &str) -> String {
        let plain = format!("{}.key.{queue}.{key}", self.ns);
        if plain.len() <= 255 {
            return plain;
        }
        use sha2::Digest;
        let digest = sha2::Sha256::digest(key.as_bytes());
        let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
        format!("{}.key.{queue}.sha256.{hex}", self.ns)
    }
}

/// A logical queue or topic name: non-empty, and short enough for every derived name.
pub(super) fn check_name(what: &str, name: &str) -> Result<()> {
    if name.is_empty() || name.len() > 180 {
        return Err(Error::Invalid(format!("{what} must be 1 to 180 bytes")));
    }
    if name.chars().any(char::is_control) {
        return Err(Error::Invalid(format!(
            "{what} contains control characters"
        )));
    }
    Ok(())
}

fn args(pairs: &[(&str, AMQPValue)]) -> FieldTable {
    let mut t = FieldTable::default();
    for (k, v) in pairs {
        t.insert((*k).into(), v.clone());
    }
    t
}

fn text(s: &str) -> AMQPValue {
    AMQPValue::LongString(LongString::from(s.as_bytes().to_vec()))
}

fn durable() -> QueueDeclareOptions {
    QueueDeclareOptions {
        durable: true,
        ..QueueDeclareOptions::default()
    }
}

/// Declares `q`'s work queues, dead-letter exchange and DLQ (idempotent).
pub(super) async fn declare_queue(
    ch: &Channel,
    names: &Names,
    queue: &str,
    delivery_limit: u32,
) -> Result<Declared> {
    let dlx = names.dlx();
    ch.exchange_declare(
        short("exchange", &dlx)?,
        ExchangeKind::Direct,
        ExchangeDeclareOptions {
            durable: true,
            ..ExchangeDeclareOptions::default()
        },
        FieldTable::default(),
    )
    .await
    .map_err(broker)?;
    let dlq = names.dlq(queue);
    ch.queue_declare(
        short("queue", &dlq)?,
        durable(),
        args(&[("x-queue-type", text("quorum"))]),
    )
    .await
    .map_err(broker)?;
    ch.queue_bind(
        short("queue", &dlq)?,
        short("exchange", &dlx)?,
        short("queue", queue)?,
        QueueBindOptions::default(),
        FieldTable::default(),
    )
    .await
    .map_err(broker)?;
    let work = work_args(names, queue, delivery_limit);
    for name in [names.normal(queue), names.high(queue)] {
        match ch
            .queue_declare(short("queue", &name)?, durable(), work.clone())
            .await
        {
            Ok(_) => {}
            Err(err) if other_delivery_limit(&err) => {
                return Ok(Declared::OtherDeliveryLimit(err.to_string()));
            }
            Err(err) => return Err(broker(err)),
        }
    }
    Ok(Declared::AsAsked)
}

/// What [`declare_queue`] found.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Declared {
    /// Every object exists with the arguments asked for.
    AsAsked,
    /// A work queue exists with another `x-delivery-limit` (RabbitMQ's words); the broker
    /// closed the channel. Queue arguments never change once made, so the caller keeps the
    /// queues as they are ([`declare_work_queues_as_they_are`]).
    OtherDeliveryLimit(String),
}

/// Whether RabbitMQ refused a declaration because the queue exists with another delivery
/// limit.
fn other_delivery_limit(err: &lapin::Error) -> bool {
    let text = err.to_string();
    text.contains("PRECONDITION_FAILED") && text.contains("'x-delivery-limit'")
}

/// Declares `q`'s work queues with `delivery_limit` where they are missing, and accepts
/// those that exist whatever their limit (a passive declaration checks only that they
/// exist). Uses `ch`, a channel of its own: each refusal closes the channel it came on.
pub(super) async fn declare_work_queues_as_they_are(
    conn: &lapin::Connection,
    names: &Names,
    queue: &str,
    delivery_limit: u32,
) -> Result<()> {
    let mut ch = conn.create_channel().await.map_err(broker)?;
    let asked = work_args(names, queue, delivery_limit);
    for name in [names.normal(queue), names.high(queue)] {
        let name = short("queue", &name)?;
        let passive = QueueDeclareOptions {
            passive: true,
            ..durable()
        };
        match ch
            .queue_declare(name.clone(), passive, FieldTable::default())
            .await
        {
            Ok(_) => continue,
            Err(_) => ch = conn.create_channel().await.map_err(broker)?, // missing: make it
        }
        ch.queue_declare(name, durable(), asked.clone())
            .await
            .map_err(broker)?;
    }
    let _ = ch.close(200, "declared".into()).await;
    Ok(())
}

/// The arguments of `q`'s work queues.
fn work_args(names: &Names, queue: &str, delivery_limit: u32) -> FieldTable {
    args(&[
        ("x-queue-type", text("quorum")),
        ("x-dead-letter-exchange", text(&names.dlx())),
        ("x-dead-letter-routing-key", text(queue)),
        // Quorum queues dead-letter at most once unless told otherwise; this keeps a
        // dead letter until the DLQ has confirmed it (it needs reject-publish overflow).
        ("x-dead-letter-strategy", text("at-least-once")),
        ("x-overflow", text("reject-publish")),
        (
            "x-delivery-limit",
            AMQPValue::LongLongInt(delivery_limit.into()),
        ),
    ])
}

/// Declares the wait queue of one delay level and the exchange that feeds it.
pub(super) async fn declare_wait_level(ch: &Channel, names: &Names, level_ms: u64) -> Result<()> {
    let exchange = names.delay(level_ms);
    let wait = names.wait(level_ms);
    ch.exchange_declare(
        short("exchange", &exchange)?,
        ExchangeKind::Fanout,
        ExchangeDeclareOptions {
            durable: true,
            ..ExchangeDeclareOptions::default()
        },
        FieldTable::default(),
    )
    .await
    .map_err(broker)?;
    // One fixed TTL per queue: messages expire in arrival order, so a long delay never holds
    // up a short one (a quorum queue only expires messages at its head).
    let wait_args = args(&[
        ("x-queue-type", text("quorum")),
        (
            "x-message-ttl",
            AMQPValue::LongLongInt(level_ms.min(i64::MAX as u64) as i64),
        ),
        // Default exchange, original routing key: straight back to the work queue.
        ("x-dead-letter-exchange", text("")),
        ("x-dead-letter-strategy", text("at-least-once")),
        ("x-overflow", text("reject-publish")),
    ]);
    ch.queue_declare(short("queue", &wait)?, durable(), wait_args)
        .await
        .map_err(broker)?;
    ch.queue_bind(
        short("queue", &wait)?,
        short("exchange", &exchange)?,
        "".into(),
        QueueBindOptions::default(),
        FieldTable::default(),
    )
    .await
    .map_err(broker)?;
    Ok(())
}

/// Declares a topic's fanout exchange.
pub(super) async fn declare_topic(ch: &Channel, names: &Names, topic: &str) -> Result<()> {
    ch.exchange_declare(
        short("exchange", &names.topic(topic))?,
        ExchangeKind::Fanout,
        ExchangeDeclareOptions {
            durable: true,
            ..ExchangeDeclareOptions::default()
        },
        FieldTable::default(),
    )
    .await
    .map_err(broker)
}

/// Binds a group's normal queue to its topic's exchange.
pub(super) async fn bind_group(
    ch: &Channel,
    names: &Names,
    topic: &str,
    queue: &str,
) -> Result<()> {
    ch.queue_bind(
        short("queue", &names.normal(queue))?,
        short("exchange", &names.topic(topic))?,
        "".into(),
        QueueBindOptions::default(),
        FieldTable::default(),
    )
    .await
    .map_err(broker)
}

/// Declares the deduplication marker `name` for job `holder`: an empty queue whose
/// `x-dead-letter-routing-key` argument records the holder. Queue creation is atomic in the
/// broker, and redeclaring with another holder fails with PRECONDITION_FAILED naming the
/// current one, which [`marker_holder`] reads back: one round trip, nothing consumed.
pub(super) async fn declare_key(
    ch: &Channel,
    name: &str,
    holder: &str,
    expires_ms: u64,
) -> Result<(), lapin::Error> {
    let key_args = args(&[
        ("x-queue-type", text("classic")),
        // The routing-key argument is only accepted next to an exchange; nothing is ever
        // dead-lettered (the marker never holds a message).
        ("x-dead-letter-exchange", text("")),
        ("x-dead-letter-routing-key", text(holder)),
        // A marker whose release was lost (a crash between ack and delete) frees itself.
        (
            "x-expires",
            AMQPValue::LongLongInt(expires_ms.min(i64::MAX as u64) as i64),
        ),
    ]);
    let name = ShortString::try_new(name).unwrap_or_default();
    ch.queue_declare(name, durable(), key_args)
        .await
        .map(|_| ())
}

/// The holder named by a refused marker declaration ("… but current is '<id>'").
pub(super) fn marker_holder(error: &lapin::Error) -> Option<String> {
    let lapin::ErrorKind::ProtocolError(e) = error.kind() else {
        return None;
    };
    let text = e.to_string();
    if !text.contains("PRECONDITION_FAILED") || !text.contains("x-dead-letter-routing-key") {
        return None;
    }
    let rest = &text[text.rfind("current is '")? + "current is '".len()..];
    Some(rest[..rest.find('\'')?].to_owned())
}

/// A broker or connection failure.
pub(super) fn broker(e: lapin::Error) -> Error {
    Error::Unavailable(e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use lapin::protocol::{AMQPError, AMQPErrorKind, AMQPSoftError};

    #[test]
    fn the_holder_is_read_from_rabbitmqs_refusal() {
        let message = "PRECONDITION_FAILED - inequivalent arg 'x-dead-letter-routing-key' for queue \
                       'basis.key.q.k' in vhost '/': received 'new' but current is '018c2f'";
        let error = lapin::Error::from(lapin::ErrorKind::ProtocolError(AMQPError::new(
            AMQPErrorKind::Soft(AMQPSoftError::PRECONDITIONFAILED),
            message.into(),
        )));
        assert_eq!(marker_holder(&error).as_deref(), Some("018c2f"));
    }
}
