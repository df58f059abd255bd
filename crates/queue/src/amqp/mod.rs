//! The RabbitMQ backend (AMQP 0-9-1 through `lapin`), for scale-out deployments.
//!
//! # What the broker does natively
//!
//! - **Durability**: every work queue is a durable quorum queue (replicated, fsynced) and
//!   every message is persistent; [`Backend::enqueue`] returns only once the broker has
//!   confirmed the publish (publisher confirms), so an `Ok` job survives a broker restart.
//! - **Acks and leases**: consumers use manual acks. A claimed job is an unacked delivery of
//!   the worker's channel; if the process dies or its connection drops, the broker returns the
//!   delivery to the queue and counts it in `x-delivery-count`.
//! - **Dead letters**: each queue `q` has a DLQ fed by the direct exchange `<ns>.dlx` (key
//!   `q`). [`Backend::bury`] publishes the job there with its last error; the broker itself
//!   dead-letters a message whose `x-delivery-limit` (a backstop against crash loops) is
//!   exceeded, at least once (`x-dead-letter-strategy`).
//! - **Topics**: a fanout exchange per topic, bound to one queue per subscriber group. A
//!   fanout routes by no key, so a group subscribed to some kinds only still receives every
//!   kind, and its consumer ignores the others (the SQL engines filter at the fan-out).
//! - **Request-reply**: [`Backend::request`] uses RabbitMQ's direct reply-to pseudo-queue
//!   with `reply_to` and `correlation_id` properties: no reply queue is declared or polled.
//!
//! # What is built on top (RabbitMQ does not do it)
//!
//! - **Delays and retry backoff**: one wait queue per delay level (`<ns>.wait.<ms>`) with a
//!   fixed `x-message-ttl` that dead-letters back into the work queue. A delay is covered by
//!   hops through the largest level not longer than what remains; a job that arrives early
//!   (only possible with a clock that disagrees with the broker's) is parked again. A job is
//!   late by at most the smallest level. Fixed TTLs per queue mean no head-of-line blocking.
//! - **Priorities**: quorum queues have none (3.10), so each job queue is two queues: `hi`
//!   (priority > 0) and normal (priority ≤ 0); `claim` takes high first. Order holds within
//!   each queue (FIFO by arrival, so a job enqueued with a past `run_at` queues behind earlier
//!   ones rather than ahead of them); across the two only "high before normal among what this
//!   worker has been delivered" holds, and finer priority values are not ordered.
//! - **Lease expiry and fencing**: the fencing token is the delivery tag with the channel's
//!   generation in its high bits. The backend keeps each claimed delivery with its deadline;
//!   a background task gives expired ones back as a new copy with the attempt counted (so a
//!   lease that runs out on the last attempt buries the job, as on the SQL backends). An ack
//!   whose token is no longer held here, or whose channel has closed, is
//!   [`Error::LeaseLost`]. Lease expiry thus needs the worker's process to be alive; when it
//!   is not, its connection closing returns the deliveries, and those returns are not
//!   counted as attempts: the broker cannot tell a job that was running from one that was
//!   only waiting in the dead consumer's prefetch, and counting both buried jobs that never
//!   ran once a few crashes or broker restarts had passed. `x-delivery-limit` remains the
//!   backstop against a job that kills every worker running it.
//! - **Deduplication keys**: held where [`AmqpConfig::keys`] says ([`KeyStore`]). In the
//!   broker, a marker per held key, `<ns>.key.<q>.<key>`: an empty queue whose
//!   `x-dead-letter-routing-key` argument names the holding job. Queue creation is atomic
//!   in the broker; a second declaration with another holder is refused with
//!   PRECONDITION_FAILED, and RabbitMQ's refusal names the current value, so the duplicate
//!   learns the holder's id in the same round trip without consuming anything (reading the
//!   holder from the error text is the price of doing it inside the broker). Markers are
//!   metadata changes the broker makes one at a time, so a deployment with PostgreSQL keeps
//!   the keys there instead: a row per key, the same name. Either way the key is freed when
//!   the job completes or is buried, and expires when that release was lost.
//! - **Job status**: RabbitMQ keeps no per-message state; [`Backend::job`] is
//!   [`Error::Unsupported`] (the server records product-job status itself).
//!
//! # Limits, honestly
//!
//! - At least once: a retry or bury publishes the new copy, waits for the confirm, then acks
//!   the old one; a crash between the two runs the job again (handlers are idempotent).
//! - RabbitMQ 0-9-1 cannot list queues or count consumers' unacked messages: dead letters and
//!   stats cover the queues this instance has used or was told about
//!   ([`AmqpConfig::queues`]); `running` counts this instance's leases; the oldest ready job's
//!   age is reported as 0 (peeking would count as a delivery). [`Backend::publish`] reports
//!   the groups this instance knows (at least 1 when the broker routed the message, 0 when
//!   nothing was bound).
//! - Browsing dead letters takes them with `basic.get` and gives them back by closing the
//!   channel, so a concurrent browser can briefly miss some.

mod backend;
mod consume;
mod dead;
mod keys;
mod lease;
mod message;
mod publish;
mod topology;

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use lapin::options::{ConfirmSelectOptions, ExchangeDeleteOptions, QueueDeleteOptions};
use lapin::{Channel, Connection, ConnectionProperties};

pub use self::keys::KeyStore;

use self::consume::Feed;
use self::lease::Held;
use self::message::short;
use self::topology::{Names, broker, check_name};
use crate::{Clock, Error, Result};

/// The prefix of RabbitMQ's direct reply-to pseudo-queues; jobs addressed there are replies.
const DIRECT_REPLY: &str = "amq.rabbitmq.reply-to";

/// How the RabbitMQ backend lays out and paces its work.
#[derive(Debug, Clone)]
pub struct AmqpConfig {
    /// Prefix of every broker object this backend declares.
    pub namespace: String,
    /// Unacked deliveries a worker's channel may hold per work queue.
    pub prefetch: u16,
    /// The wait queues' TTLs; delays are covered by hops through them.
    pub delay_levels: Vec<Duration>,
    /// `x-delivery-limit`: returns of one copy by dead consumers (crashes, lost connections)
    /// before the broker dead-letters it on its own: the backstop against a job that kills
    /// its worker. Attempts that end in a live worker count against `max_attempts` instead.
    /// Every copy a consumer had prefetched counts when its worker dies or the broker
    /// restarts, run or not, so the limit is far above what outages return: a 30-minute
    /// chaos drill (a fault every few seconds) took waiting jobs past 20. It is fixed when
    /// the queue is made; a queue made with another limit keeps its own (with a warning).
    pub delivery_limit: u32,
    /// Where deduplication keys are held ([`KeyStore`]).
    pub keys: KeyStore,
    /// How long a deduplication key lives unreleased (`x-expires` of a marker queue).
    pub dedup_expiry: Duration,
    /// How often expired leases are looked for.
    pub lease_check: Duration,
    /// How long opening a connection may take: a broker that accepts TCP and never answers
    /// (one still booting, a network dropping packets) would otherwise hold every queue
    /// operation, and the lock on the link, forever.
    pub connect_timeout: Duration,
    /// How long a publish may wait for the broker's confirm before it fails as
    /// [`Error::Unavailable`]: an ambiguous failure, which callers retry and deduplication
    /// keys or consumers absorb.
    pub confirm_timeout: Duration,
    /// Queues to include in dead letters and stats besides those used by this instance.
    pub queues: Vec<String>,
}

impl Default for AmqpConfig {
    fn default() -> Self {
        let ms = Duration::from_millis;
        let min = |m: u64| Duration::from_secs(60 * m);
        Self {
            namespace: "basis".into(),
            prefetch: 64,
            delay_levels: vec![
                ms(250),
                ms(1_000),
                ms(5_000),
                ms(30_000),
                min(2),
                min(10),
                min(60),
                min(360),
                min(1_440),
            ],
            delivery_limit: 100,
            keys: KeyStore::Broker,
            dedup_expiry: Duration::from_secs(7 * 86_400),
            lease_check: ms(100),
            connect_timeout: Duration::from_secs(5),
            confirm_timeout: Duration::from_secs(10),
            queues: Vec::new(),
        }
    }
}

/// The RabbitMQ [`Backend`](crate::Backend). Cheap to clone.
#[derive(Debug, Clone)]
pub struct AmqpQueue {
    inner: Arc<Inner>,
}

/// An open connection and its shared channels.
#[derive(Clone)]
struct Link {
    conn: Arc<Connection>,
    /// Confirm-mode channel every publish goes through.
    publisher: Channel,
    /// Channel for declarations and deletions.
    admin: Channel,
}

struct Inner {
    url: String,
    clock: Arc<dyn Clock>,
    config: AmqpConfig,
    names: Names,
    /// Delay levels in milliseconds, ascending.
    levels: Vec<u64>,
    link: tokio::sync::Mutex<Option<Link>>,
    /// Topology already declared by this instance (`q:<queue>`, `wait:<ms>`, `topic:<t>`…).
    declared: Mutex<HashSet<String>>,
    /// Broker objects this instance declared, for [`AmqpQueue::teardown`]: (is_exchange, name).
    created: Mutex<BTreeSet<(bool, String)>>,
    /// Logical queues for dead letters and stats.
    known: Mutex<BTreeSet<String>>,
    /// Subscriber groups per topic known to this instance.
    groups: Mutex<HashMap<String, BTreeSet<String>>>,
    feeds: tokio::sync::Mutex<HashMap<String, Arc<Feed>>>,
    held: Mutex<HashMap<i64, Held>>,
    generation: AtomicU32,
}

impl std::fmt::Debug for Inner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AmqpQueue")
            .field("namespace", &self.names.ns)
            .finish_non_exhaustive()
    }
}

/// Locks a std mutex that guards plain bookkeeping (no `.await` is ever held under it).
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl AmqpQueue {
    /// Connects to `url` (`amqp://user:pass@host:port/vhost`) with the default layout.
    pub async fn connect(url: &str, clock: Arc<dyn Clock>) -> Result<Self> {
        Self::connect_with(url, clock, AmqpConfig::default()).await
    }

    /// Connects with an explicit layout.
    pub async fn connect_with(
        url: &str,
        clock: Arc<dyn Clock>,
        config: AmqpConfig,
    ) -> Result<Self> {
        check_name("namespace", &config.namespace)?;
        let mut levels: Vec<u64> = config
            .delay_levels
            .iter()
            .map(|d| d.as_millis().max(1) as u64)
            .collect();
        levels.sort_unstable();
        levels.dedup();
        if levels.is_empty() {
            return Err(Error::Invalid("at least one delay level is needed".into()));
        }
        let inner = Arc::new(Inner {
            url: url.to_owned(),
            clock,
            names: Names {
                ns: config.namespace.clone(),
            },
            known: Mutex::new(config.queues.iter().cloned().collect()),
            config,
            levels,
            link: tokio::sync::Mutex::new(None),
            declared: Mutex::default(),
            created: Mutex::default(),
            groups: Mutex::default(),
            feeds: tokio::sync::Mutex::default(),
            held: Mutex::default(),
            generation: AtomicU32::new(0),
        });
        if let KeyStore::Postgres(pool) = &inner.config.keys {
            keys::install(pool, &inner.clock).await?;
        }
        inner.link().await?;
        lease::spawn_reaper(&inner);
        Ok(Self { inner })
    }

    /// Deletes every queue and exchange this instance declared, and the namespace's
    /// deduplication keys (tests, decommissioning).
    pub async fn teardown(&self) -> Result<()> {
        for feed in self.inner.feeds.lock().await.drain().map(|(_, f)| f) {
            feed.close().await;
        }
        if let KeyStore::Postgres(pool) = &self.inner.config.keys {
            keys::release_namespace(pool, &self.inner.names.ns).await?;
        }
        let created = std::mem::take(&mut *lock(&self.inner.created));
        for (exchange, name) in created {
            let name = short("name", &name)?;
            self.inner
                .on_admin(|admin| {
                    let name = name.clone();
                    async move {
                        if exchange {
                            admin
                                .exchange_delete(name, ExchangeDeleteOptions::default())
                                .await
                        } else {
                            admin
                                .queue_delete(name, QueueDeleteOptions::default())
                                .await
                                .map(|_| ())
                        }
                    }
                })
                .await?;
        }
        lock(&self.inner.declared).clear();
        Ok(())
    }

    /// Closes the connection; unfinished deliveries go back to their queues.
    pub async fn close(&self) {
        if let Some(link) = self.inner.link.lock().await.take() {
            let _ = link.conn.close(200, "closing".into()).await;
        }
    }
}

impl Inner {
    /// Runs `op`, which must be idempotent, on the shared admin channel. Another task's
    /// refused operation makes the broker close that channel, and the notice can arrive
    /// after [`Inner::link`] checked it; `op` then runs again on the fresh channel `link`
    /// opens (three attempts at most).
    async fn on_admin<T, F, Fut>(&self, op: F) -> Result<T>
    where
        F: Fn(Channel) -> Fut,
        Fut: std::future::Future<Output = lapin::Result<T>>,
    {
        let mut attempts = 0;
        loop {
            let admin = self.link().await?.admin;
            attempts += 1;
            match op(admin.clone()).await {
                Err(error) if attempts < 3 && !admin.status().connected() => {
                    tracing::debug!(%error, "admin channel closed under an operation; again");
                }
                done => return done.map_err(broker),
            }
        }
    }

    /// The live connection, reconnecting if it dropped.
    async fn link(&self) -> Result<Link> {
        let mut slot = self.link.lock().await;
        if let Some(link) = slot.as_mut()
            && link.conn.status().connected()
        {
            if !link.publisher.status().connected() {
                link.publisher = confirm_channel(&link.conn).await?;
            }
            if !link.admin.status().connected() {
                link.admin = link.conn.create_channel().await.map_err(broker)?;
            }
            return Ok(link.clone());
        }
        let within = self.config.connect_timeout;
        let conn = tokio::time::timeout(
            within,
            Connection::connect(&self.url, ConnectionProperties::default()),
        )
        .await
        .map_err(|_| Error::Unavailable(format!("no connection within {within:?}")))?
        .map_err(broker)?;
        let link = Link {
            publisher: confirm_channel(&conn).await?,
            admin: conn.create_channel().await.map_err(broker)?,
            conn: Arc::new(conn),
        };
        *slot = Some(link.clone());
        Ok(link)
    }

    fn next_generation(&self) -> u32 {
        self.generation.fetch_add(1, Ordering::Relaxed) + 1
    }

    fn remember(&self, key: &str, objects: &[(bool, String)]) {
        lock(&self.declared).insert(key.to_owned());
        lock(&self.created).extend(objects.iter().cloned());
    }

    fn is_declared(&self, key: &str) -> bool {
        lock(&self.declared).contains(key)
    }

    /// Declares `queue`'s topology once per instance.
    async fn ensure_queue(&self, queue: &str) -> Result<()> {
        let key = format!("q:{queue}");
        if self.is_declared(&key) {
            return Ok(());
        }
        check_name("queue name", queue)?;
        let link = self.link().await?;
        let limit = self.config.delivery_limit;
        if let topology::Declared::OtherDeliveryLimit(refusal) =
            topology::declare_queue(&link.admin, &self.names, queue, limit).await?
        {
            tracing::warn!(
                queue,
                limit,
                %refusal,
                "the queue was made with another delivery limit, which RabbitMQ never changes; \
                 it keeps its own (delete the empty queue, or set a policy, to change it)"
            );
            topology::declare_work_queues_as_they_are(&link.conn, &self.names, queue, limit)
                .await?;
        }
        let n = &self.names;
        self.remember(
            &key,
            &[
                (false, n.normal(queue)),
                (false, n.high(queue)),
                (false, n.dlq(queue)),
                (true, n.dlx()),
            ],
        );
        lock(&self.known).insert(queue.to_owned());
        Ok(())
    }
}

async fn confirm_channel(conn: &Connection) -> Result<Channel> {
    let ch = conn.create_channel().await.map_err(broker)?;
    ch.confirm_select(ConfirmSelectOptions::default())
        .await
        .map_err(broker)?;
    Ok(ch)
}

/// A fresh job id: time-ordered, with 64 random bits.
fn new_id(now_ms: i64) -> String {
    format!("{now_ms:012x}{:016x}", rand::random::<u64>())
}
