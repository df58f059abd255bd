//! The RabbitMQ backend against a real broker (`BASIS_TEST_AMQP_URL`). Each test works in
//! its own namespace and deletes what it declared. Broker TTLs are real time, so waits are
//! bounded polls on `wait_for_work`, never sleeps.

use std::io::Write as _;
use std::sync::Arc;
use std::time::{Duration, Instant};

use basis_queue::amqp::{AmqpConfig, AmqpQueue, KeyStore};
use basis_queue::{Backend, ClaimedJob, Clock, Error, NewJob, SystemClock};
use serde_json::json;

pub(crate) fn amqp_url() -> Option<String> {
    match std::env::var("BASIS_TEST_AMQP_URL") {
        Ok(url) if !url.is_empty() => Some(url),
        _ => {
            let _ = writeln!(std::io::stderr(), "skipped: BASIS_TEST_AMQP_URL is not set");
            None
        }
    }
}

/// A fresh namespace with short delay levels and a fast lease check.
pub(crate) fn config(ns: &str) -> AmqpConfig {
    AmqpConfig {
        namespace: ns.to_owned(),
        delay_levels: vec![
            Duration::from_millis(100),
            Duration::from_millis(400),
            Duration::from_secs(2),
        ],
        lease_check: Duration::from_millis(20),
        ..AmqpConfig::default()
    }
}

pub(crate) async fn backend(url: &str, ns: &str) -> AmqpQueue {
    AmqpQueue::connect_with(url, Arc::new(SystemClock), config(ns))
        .await
        .expect("connect to RabbitMQ")
}

/// Where a test keeps deduplication keys: the keyed tests run on both stores.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Keys {
    Broker,
    Postgres,
}

/// The key store for `keys`: PostgreSQL keys live in a fresh database; `None` when the
/// test server is not configured.
pub(crate) async fn key_store(keys: Keys) -> Option<KeyStore> {
    match keys {
        Keys::Broker => Some(KeyStore::Broker),
        Keys::Postgres => {
            let url = pg_util::fresh_database().await?;
            let pool = sqlx::PgPool::connect(&url)
                .await
                .expect("connect to the key database");
            Some(KeyStore::Postgres(pool))
        }
    }
}

/// A backend on namespace `ns` keeping keys in `keys`, on `clock`.
pub(crate) async fn keyed_backend(
    url: &str,
    ns: &str,
    keys: &KeyStore,
    clock: Arc<dyn Clock>,
) -> AmqpQueue {
    let config = AmqpConfig {
        keys: keys.clone(),
        ..config(ns)
    };
    AmqpQueue::connect_with(url, clock, config)
        .await
        .expect("connect to RabbitMQ")
}

pub(crate) fn namespace() -> String {
    format!("basis-test-{:012x}", rand::random::<u64>() >> 16)
}

pub(crate) const LEASE: Duration = Duration::from_secs(30);
pub(crate) const PATIENCE: Duration = Duration::from_secs(10);

/// Claims until `n` jobs came back or `PATIENCE` runs out.
pub(crate) async fn claim_n(
    q: &dyn Backend,
    queue: &str,
    lease: Duration,
    n: usize,
) -> Vec<ClaimedJob> {
    let deadline = Instant::now() + PATIENCE;
    let mut out = Vec::new();
    while out.len() < n && Instant::now() < deadline {
        out.extend(q.claim(queue, lease, n - out.len()).await.expect("claim"));
        if out.len() < n {
            q.wait_for_work(queue, Duration::from_millis(50)).await;
        }
    }
    out
}

pub(crate) async fn claim_one(q: &dyn Backend, queue: &str, lease: Duration) -> ClaimedJob {
    claim_n(q, queue, lease, 1)
        .await
        .pop()
        .expect("a job within the patience")
}

/// Claims for `window` and expects nothing.
pub(crate) async fn assert_nothing_for(q: &dyn Backend, queue: &str, window: Duration) {
    let until = Instant::now() + window;
    while Instant::now() < until {
        let got = q.claim(queue, LEASE, 10).await.expect("claim");
        assert!(got.is_empty(), "expected no job yet, got {got:?}");
        q.wait_for_work(queue, Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn a_confirmed_job_is_claimed_once_and_gone_after_completion() {
    let Some(url) = amqp_url() else { return };
    let q = backend(&url, &namespace()).await;
    let done = q
        .enqueue(NewJob::new("mail", "send", json!({"to": "a@example.com"})))
        .await
        .expect("enqueue");
    assert!(!done.duplicate);
    let job = claim_one(&q, "mail", LEASE).await;
    assert_eq!(job.lease.id, done.id);
    assert_eq!((job.kind.as_str(), job.attempt), ("send", 1));
    assert_eq!(job.payload, json!({"to": "a@example.com"}));
    q.complete(&job.lease, None).await.expect("complete");
    assert!(matches!(
        q.complete(&job.lease, None).await,
        Err(Error::LeaseLost(_))
    ));
    assert_nothing_for(&q, "mail", Duration::from_millis(200)).await;
    q.teardown().await.expect("teardown");
}

/// RabbitMQ never changes a queue's arguments: a deployment that raises the delivery limit
/// keeps the queues an older one made, and goes on using them.
#[tokio::test]
async fn a_queue_made_with_another_delivery_limit_is_kept_and_goes_on_working() {
    let Some(url) = amqp_url() else { return };
    let ns = namespace();
    let with_limit = |limit: u32| AmqpConfig {
        delivery_limit: limit,
        ..config(&ns)
    };
    let older = AmqpQueue::connect_with(&url, Arc::new(SystemClock), with_limit(20))
        .await
        .expect("connect");
    older
        .enqueue(NewJob::new("work", "n", json!(1)))
        .await
        .expect("the first deployment makes the queue");
    let newer = AmqpQueue::connect_with(&url, Arc::new(SystemClock), with_limit(100))
        .await
        .expect("connect");
    newer
        .enqueue(NewJob::new("work", "n", json!(2)))
        .await
        .expect("the next deployment keeps the queue as it is");
    let jobs = claim_n(&newer, "work", LEASE, 2).await;
    let mut got: Vec<_> = jobs.iter().map(|j| j.payload.clone()).collect();
    got.sort_by_key(|v| v.as_i64());
    assert_eq!(got, vec![json!(1), json!(2)]);
    for job in &jobs {
        newer.complete(&job.lease, None).await.expect("complete");
    }
    newer.teardown().await.expect("teardown");
}

#[tokio::test]
async fn jobs_come_out_in_order_with_high_priority_first() {
    let Some(url) = amqp_url() else { return };
    let q = backend(&url, &namespace()).await;
    for i in 0..5 {
        q.enqueue(NewJob::new("work", "n", json!(i)))
            .await
            .expect("enqueue");
    }
    let mut urgent = NewJob::new("work", "n", json!("urgent"));
    urgent.priority = 5;
    q.enqueue(urgent).await.expect("enqueue");
    // Let every message reach the worker's buffers before the first claim.
    let deadline = Instant::now() + PATIENCE;
    while q.stats().await.expect("stats")[0].depth > 0 && Instant::now() < deadline {
        q.wait_for_work("work", Duration::from_millis(20)).await;
    }
    let jobs = claim_n(&q, "work", LEASE, 6).await;
    let order: Vec<_> = jobs.iter().map(|j| j.payload.clone()).collect();
    assert_eq!(
        order,
        vec![
            json!("urgent"),
            json!(0),
            json!(1),
            json!(2),
            json!(3),
            json!(4)
        ]
    );
    q.teardown().await.expect("teardown");
}

#[tokio::test]
async fn an_expired_lease_redelivers_the_job_and_fences_the_stale_worker() {
    let Some(url) = amqp_url() else { return };
    let q = backend(&url, &namespace()).await;
    q.enqueue(NewJob::new("work", "slow", json!({})))
        .await
        .expect("enqueue");
    let stale = claim_one(&q, "work", Duration::from_millis(100)).await;
    let fresh = claim_one(&q, "work", LEASE).await;
    assert_eq!(fresh.lease.id, stale.lease.id);
    assert_eq!(fresh.attempt, 2, "the expired lease counted as an attempt");
    assert_ne!(fresh.lease.token, stale.lease.token);
    assert!(matches!(
        q.complete(&stale.lease, None).await,
        Err(Error::LeaseLost(_))
    ));
    assert!(matches!(
        q.heartbeat(&stale.lease, LEASE).await,
        Err(Error::LeaseLost(_))
    ));
    assert!(matches!(
        q.retry(&stale.lease, "late", 0).await,
        Err(Error::LeaseLost(_))
    ));
    q.complete(&fresh.lease, None)
        .await
        .expect("the current holder completes");
    q.teardown().await.expect("teardown");
}

#[tokio::test]
async fn a_heartbeat_keeps_the_lease_past_its_first_deadline() {
    let Some(url) = amqp_url() else { return };
    let q = backend(&url, &namespace()).await;
    q.enqueue(NewJob::new("work", "long", json!({})))
        .await
        .expect("enqueue");
    let job = claim_one(&q, "work", Duration::from_millis(150)).await;
    let until = Instant::now() + Duration::from_millis(600);
    while Instant::now() < until {
        q.heartbeat(&job.lease, Duration::from_millis(150))
            .await
            .expect("heartbeat");
        assert_nothing_for(&q, "work", Duration::from_millis(50)).await;
    }
    q.complete(&job.lease, None).await.expect("still held");
    q.teardown().await.expect("teardown");
}

#[tokio::test]
async fn a_worker_whose_connection_dies_loses_nothing() {
    let Some(url) = amqp_url() else { return };
    let ns = namespace();
    let doomed = backend(&url, &ns).await;
    let survivor = backend(&url, &ns).await;
    for i in 0..3 {
        // One attempt each: a return by a dead consumer must not use it up.
        let mut job = NewJob::new("work", "n", json!(i));
        job.max_attempts = 1;
        doomed.enqueue(job).await.expect("enqueue");
    }
    let held = claim_n(&doomed, "work", LEASE, 3).await;
    assert_eq!(held.len(), 3);
    doomed.close().await;
    let mut again = claim_n(&survivor, "work", LEASE, 3).await;
    again.sort_by_key(|j| j.payload.as_i64());
    assert_eq!(
        again.iter().map(|j| j.payload.clone()).collect::<Vec<_>>(),
        vec![json!(0), json!(1), json!(2)]
    );
    // The broker returned them because their consumer went away; it cannot say whether
    // they ran or only waited in its prefetch, so the return is not an attempt.
    assert!(again.iter().all(|j| j.attempt == 1), "{again:?}");
    survivor.teardown().await.expect("teardown");
}

#[tokio::test]
async fn a_retry_waits_for_its_run_time_and_counts_the_attempt() {
    let Some(url) = amqp_url() else { return };
    let q = backend(&url, &namespace()).await;
    q.enqueue(NewJob::new("work", "flaky", json!({})))
        .await
        .expect("enqueue");
    let first = claim_one(&q, "work", LEASE).await;
    let started = Instant::now();
    let run_at = SystemClock.now_ms() + 500;
    q.retry(&first.lease, "smtp down", run_at)
        .await
        .expect("retry");
    assert_nothing_for(&q, "work", Duration::from_millis(350)).await;
    let second = claim_one(&q, "work", LEASE).await;
    assert!(
        started.elapsed() >= Duration::from_millis(480),
        "ran after {:?}",
        started.elapsed()
    );
    assert!(SystemClock.now_ms() >= run_at);
    assert_eq!(second.attempt, 2);
    assert_eq!(second.lease.id, first.lease.id);
    q.complete(&second.lease, None).await.expect("complete");
    q.teardown().await.expect("teardown");
}

#[tokio::test]
async fn a_short_delay_is_not_held_up_behind_a_long_one() {
    let Some(url) = amqp_url() else { return };
    let q = backend(&url, &namespace()).await;
    let now = SystemClock.now_ms();
    let mut long = NewJob::new("work", "later", json!("long"));
    long.run_at_ms = Some(now + 5_000);
    q.enqueue(long).await.expect("enqueue");
    let mut short = NewJob::new("work", "soon", json!("short"));
    short.run_at_ms = Some(now + 150);
    q.enqueue(short).await.expect("enqueue");
    let job = claim_one(&q, "work", LEASE).await;
    assert_eq!(job.payload, json!("short"));
    assert!(SystemClock.now_ms() >= now + 150);
    q.complete(&job.lease, None).await.expect("complete");
    assert_nothing_for(&q, "work", Duration::from_millis(300)).await;
    q.teardown().await.expect("teardown");
}

mod conformance;
#[path = "amqp/crash.rs"]
mod crash;
mod pg_util;

#[path = "amqp/dead.rs"]
mod dead;
#[path = "amqp/patterns.rs"]
mod patterns;
#[path = "amqp/shared.rs"]
mod shared;
#[path = "amqp/silent.rs"]
mod silent;
#[path = "amqp/workers.rs"]
mod workers;
