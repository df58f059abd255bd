//! How a job travels on the broker: the payload is the message body (JSON), the job's
//! bookkeeping rides in AMQP properties (`message_id`, `type`, `reply_to`,
//! `correlation_id`), `basis-*` headers and the W3C `traceparent` header.

use lapin::BasicProperties;
use lapin::message::Delivery;
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};

use crate::{Error, Result};

const ATTEMPTS: &str = "basis-attempts";
const MAX_ATTEMPTS: &str = "basis-max-attempts";
const QUEUE: &str = "basis-queue";
const PRIORITY: &str = "basis-priority";
const RUN_AT: &str = "basis-run-at";
const ENQUEUED_AT: &str = "basis-enqueued-at";
const DEDUP: &str = "basis-dedup";
const OWNER: &str = "basis-owner";
const ERROR: &str = "basis-error";
const DIED_AT: &str = "basis-died-at";
const TRACEPARENT: &str = crate::trace::TRACEPARENT;
/// Set by quorum queues: how many times the broker has handed this copy out before.
const DELIVERY_COUNT: &str = "x-delivery-count";

/// One job as it sits in a queue.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Envelope {
    pub id: String,
    /// The logical queue (without the namespace).
    pub queue: String,
    pub kind: String,
    pub payload: serde_json::Value,
    pub priority: i16,
    pub run_at_ms: i64,
    pub enqueued_at_ms: i64,
    pub max_attempts: u32,
    /// Attempts that ended (retried) before this copy was published. Redeliveries of the
    /// copy itself (lease expiry, a crashed worker) are counted by the broker.
    pub attempts_done: u32,
    /// The broker name of the deduplication marker this job holds, if any.
    pub dedup: Option<String>,
    pub owner: Option<String>,
    pub reply_to: Option<String>,
    pub correlation_id: Option<String>,
    pub last_error: Option<String>,
    pub died_at_ms: Option<i64>,
    /// The trace the job continues (W3C `traceparent`).
    pub traceparent: Option<String>,
}

/// A text that must fit an AMQP short string (255 bytes): names, kinds, ids.
pub(super) fn short(what: &str, value: &str) -> Result<ShortString> {
    ShortString::try_new(value)
        .map_err(|_| Error::Invalid(format!("{what} is longer than 255 bytes")))
}

impl Envelope {
    /// A job that has not run yet.
    pub fn fresh(
        id: String,
        queue: &str,
        kind: &str,
        payload: serde_json::Value,
        now_ms: i64,
    ) -> Envelope {
        Envelope {
            id,
            queue: queue.to_owned(),
            kind: kind.to_owned(),
            payload,
            priority: 0,
            run_at_ms: now_ms,
            enqueued_at_ms: now_ms,
            max_attempts: crate::NewJob::new("", "", serde_json::Value::Null).max_attempts,
            attempts_done: 0,
            dedup: None,
            owner: None,
            reply_to: None,
            correlation_id: None,
            last_error: None,
            died_at_ms: None,
            traceparent: None,
        }
    }

    /// The AMQP properties: persistent, JSON, with the bookkeeping headers.
    pub fn properties(&self) -> Result<BasicProperties> {
        let mut h = FieldTable::default();
        h.insert(
            ATTEMPTS.into(),
            AMQPValue::LongLongInt(self.attempts_done.into()),
        );
        h.insert(
            MAX_ATTEMPTS.into(),
            AMQPValue::LongLongInt(self.max_attempts.into()),
        );
        h.insert(QUEUE.into(), long(&self.queue));
        h.insert(
            PRIORITY.into(),
            AMQPValue::LongLongInt(self.priority.into()),
        );
        h.insert(RUN_AT.into(), AMQPValue::LongLongInt(self.run_at_ms));
        h.insert(
            ENQUEUED_AT.into(),
            AMQPValue::LongLongInt(self.enqueued_at_ms),
        );
        for (key, value) in [
            (DEDUP, &self.dedup),
            (OWNER, &self.owner),
            (ERROR, &self.last_error),
            (TRACEPARENT, &self.traceparent),
        ] {
            if let Some(value) = value {
                h.insert(key.into(), long(value));
            }
        }
        if let Some(at) = self.died_at_ms {
            h.insert(DIED_AT.into(), AMQPValue::LongLongInt(at));
        }
        let mut props = BasicProperties::default()
            .with_message_id(short("job id", &self.id)?)
            .with_type(short("job kind", &self.kind)?)
            .with_content_type("application/json".into())
            .with_delivery_mode(2)
            .with_headers(h);
        if let Some(to) = &self.reply_to {
            props = props.with_reply_to(short("reply_to", to)?);
        }
        if let Some(id) = &self.correlation_id {
            props = props.with_correlation_id(short("correlation_id", id)?);
        }
        Ok(props)
    }

    /// The message body: the payload as JSON.
    pub fn body(&self) -> Vec<u8> {
        // Serialising a `Value` cannot fail.
        serde_json::to_vec(&self.payload).unwrap_or_default()
    }

    /// Reads a delivered message back; `Err` says why it is not a job (a poison message).
    pub fn decode(delivery: &Delivery) -> std::result::Result<Envelope, String> {
        let props = &delivery.properties;
        let empty = FieldTable::default();
        let h = props.headers().as_ref().unwrap_or(&empty);
        let payload = serde_json::from_slice(&delivery.data)
            .map_err(|e| format!("message body is not JSON: {e}"))?;
        let id = props
            .message_id()
            .as_ref()
            .map(|s| s.to_string())
            .ok_or("message has no message_id")?;
        let enqueued_at_ms = int(h, ENQUEUED_AT).unwrap_or(0);
        Ok(Envelope {
            id,
            queue: text(h, QUEUE).unwrap_or_default(),
            kind: props
                .kind()
                .as_ref()
                .map(|s| s.to_string())
                .unwrap_or_default(),
            payload,
            priority: int(h, PRIORITY)
                .unwrap_or(0)
                .clamp(i16::MIN.into(), i16::MAX.into()) as i16,
            run_at_ms: int(h, RUN_AT).unwrap_or(enqueued_at_ms),
            enqueued_at_ms,
            max_attempts: int(h, MAX_ATTEMPTS).map_or(1, |n| n.clamp(1, u32::MAX.into()) as u32),
            attempts_done: int(h, ATTEMPTS).map_or(0, |n| n.clamp(0, u32::MAX.into()) as u32),
            dedup: text(h, DEDUP),
            owner: text(h, OWNER),
            reply_to: props.reply_to().as_ref().map(|s| s.to_string()),
            correlation_id: props.correlation_id().as_ref().map(|s| s.to_string()),
            last_error: text(h, ERROR).or_else(|| broker_death_reason(h)),
            died_at_ms: int(h, DIED_AT),
            traceparent: text(h, TRACEPARENT),
        })
    }

    /// The dead-letter reason and time of a message that is not a job.
    pub fn decode_lenient(delivery: &Delivery) -> (Option<String>, Option<i64>) {
        let Some(h) = delivery.properties.headers().as_ref() else {
            return (None, None);
        };
        (
            text(h, ERROR).or_else(|| broker_death_reason(h)),
            int(h, DIED_AT),
        )
    }

    /// How many times the broker delivered this copy before (lease expiries, crashes).
    pub fn redeliveries(delivery: &Delivery) -> u32 {
        delivery
            .properties
            .headers()
            .as_ref()
            .and_then(|h| int(h, DELIVERY_COUNT))
            .map_or(0, |n| n.clamp(0, u32::MAX.into()) as u32)
    }
}

fn long(value: &str) -> AMQPValue {
    AMQPValue::LongString(LongString::from(value.as_bytes().to_vec()))
}

fn int(h: &FieldTable, key: &str) -> Option<i64> {
    match h.inner().get(key)? {
        AMQPValue::ShortShortInt(n) => Some((*n).into()),
        AMQPValue::ShortShortUInt(n) => Some((*n).into()),
        AMQPValue::ShortInt(n) => Some((*n).into()),
        AMQPValue::ShortUInt(n) => Some((*n).into()),
        AMQPValue::LongInt(n) => Some((*n).into()),
        AMQPValue::LongUInt(n) => Some((*n).into()),
        AMQPValue::LongLongInt(n) => Some(*n),
        _ => None,
    }
}

fn text(h: &FieldTable, key: &str) -> Option<String> {
    match h.inner().get(key)? {
        AMQPValue::LongString(s) => Some(String::from_utf8_lossy(s.as_bytes()).into_owned()),
        AMQPValue::ShortString(s) => Some(s.to_string()),
        _ => None,
    }
}

/// A message the broker dead-lettered by itself (its delivery limit) carries the reason in
/// `x-first-death-reason`.
fn broker_death_reason(h: &FieldTable) -> Option<String> {
    text(h, "x-first-death-reason").map(|r| format!("dead-lettered by RabbitMQ: {r}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Envelope {
        Envelope {
            id: "j1".into(),
            queue: "mail".into(),
            kind: "send".into(),
            payload: serde_json::json!({"to": "a@example.com"}),
            priority: 3,
            run_at_ms: 2_000,
            enqueued_at_ms: 1_000,
            max_attempts: 4,
            attempts_done: 2,
            dedup: Some("basis.key.mail.k".into()),
            owner: Some("u1".into()),
            reply_to: Some("replies".into()),
            correlation_id: Some("c1".into()),
            last_error: Some("smtp down".into()),
            died_at_ms: None,
            traceparent: Some("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01".into()),
        }
    }

    fn delivered(env: &Envelope) -> Delivery {
        Delivery::mock(1, "".into(), "q".into(), false, env.body())
    }

    #[test]
    fn an_envelope_survives_the_trip_through_properties_and_body() {
        let env = sample();
        let mut delivery = delivered(&env);
        delivery.properties = env.properties().expect("properties");
        assert_eq!(Envelope::decode(&delivery), Ok(env));
    }

    #[test]
    fn a_body_that_is_not_json_is_reported_as_poison() {
        let env = sample();
        let mut delivery = Delivery::mock(1, "".into(), "q".into(), false, b"{not json".to_vec());
        delivery.properties = env.properties().expect("properties");
        let err = Envelope::decode(&delivery).expect_err("poison");
        assert!(err.contains("not JSON"), "{err}");
    }

    #[test]
    fn a_kind_longer_than_a_short_string_is_refused_not_a_panic() {
        let mut env = sample();
        env.kind = "k".repeat(300);
        assert!(matches!(env.properties(), Err(Error::Invalid(_))));
    }
}
