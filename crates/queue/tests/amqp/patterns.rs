//! Deduplication, topics, request-reply, stats and refused input.

use std::sync::Arc;
use std::time::Duration;

use basis_queue::amqp::{AmqpConfig, KeyStore};
use basis_queue::{Backend, Error, ManualClock, Message, NewJob, SystemClock};
use serde_json::json;

use super::{
    Keys, LEASE, amqp_url, assert_nothing_for, backend, claim_one, key_store, keyed_backend,
    namespace,
};

/// Runs each keyed case once with keys in the broker and once with keys in PostgreSQL.
macro_rules! on_both_key_stores {
    ($($name:ident),* $(,)?) => {
        mod keys_in_the_broker {
            $(#[tokio::test]
            async fn $name() {
                super::$name(super::Keys::Broker).await;
            })*
        }
        mod keys_in_postgres {
            $(#[tokio::test]
            async fn $name() {
                super::$name(super::Keys::Postgres).await;
            })*
        }
    };
}

on_both_key_stores!(
    a_deduplication_key_admits_one_unfinished_job_at_a_time,
    a_stored_job_whose_key_was_lost_takes_its_key_when_claimed,
    concurrent_enqueues_with_one_key_add_exactly_one_job,
);

async fn a_deduplication_key_admits_one_unfinished_job_at_a_time(keys: Keys) {
    let Some(url) = amqp_url() else { return };
    let Some(store) = key_store(keys).await else {
        return;
    };
    let ns = namespace();
    let q = keyed_backend(&url, &ns, &store, Arc::new(SystemClock)).await;
    let other = keyed_backend(&url, &ns, &store, Arc::new(SystemClock)).await;
    let keyed = |n| {
        let mut job = NewJob::new("work", "export", json!(n));
        job.dedup_key = Some("link-42".into());
        job
    };
    let first = q.enqueue(keyed(1)).await.expect("enqueue");
    assert!(!first.duplicate);
    // Another process sees the same key held.
    let dup = other.enqueue(keyed(2)).await.expect("enqueue");
    assert!(dup.duplicate);
    assert_eq!(dup.id, first.id);
    let job = claim_one(&q, "work", LEASE).await;
    assert_eq!(job.payload, json!(1));
    // Still unfinished while running.
    assert!(other.enqueue(keyed(3)).await.expect("enqueue").duplicate);
    q.complete(&job.lease, None).await.expect("complete");
    let after = other.enqueue(keyed(4)).await.expect("enqueue");
    assert!(!after.duplicate, "the key is free once the job finished");
    assert_eq!(claim_one(&q, "work", LEASE).await.payload, json!(4));
    q.teardown().await.expect("teardown");
    other.teardown().await.expect("teardown");
}

/// Deletes the key `key` of queue `work` behind the backend's back.
async fn lose_key(url: &str, ns: &str, store: &KeyStore, key: &str) {
    let marker = format!("{ns}.key.work.{key}");
    match store {
        KeyStore::Broker => {
            let conn = lapin::Connection::connect(url, lapin::ConnectionProperties::default())
                .await
                .expect("connect");
            let ch = conn.create_channel().await.expect("a channel");
            ch.queue_delete(
                marker.as_str().into(),
                lapin::options::QueueDeleteOptions::default(),
            )
            .await
            .expect("the marker existed");
            let _ = conn.close(200, "done".into()).await;
        }
        KeyStore::Postgres(pool) => {
            let gone = sqlx::query("DELETE FROM queue_amqp_keys WHERE marker = $1")
                .bind(&marker)
                .execute(pool)
                .await
                .expect("delete the key");
            assert_eq!(gone.rows_affected(), 1, "the key was held");
        }
    }
}

async fn a_stored_job_whose_key_was_lost_takes_its_key_when_claimed(keys: Keys) {
    let Some(url) = amqp_url() else { return };
    let Some(store) = key_store(keys).await else {
        return;
    };
    let ns = namespace();
    let q = keyed_backend(&url, &ns, &store, Arc::new(SystemClock)).await;
    let keyed = |n| {
        let mut job = NewJob::new("work", "export", json!(n));
        job.dedup_key = Some("link-7".into());
        job
    };
    let first = q.enqueue(keyed(1)).await.expect("enqueue");
    assert!(!first.duplicate);
    // What an enqueuer that died (or lost the broker) right after storing the job leaves: the
    // job without its key.
    lose_key(&url, &ns, &store, "link-7").await;
    let job = claim_one(&q, "work", LEASE).await;
    assert_eq!(job.payload, json!(1));
    // Claimed, it holds its key again: a second job with the key is its duplicate, and that
    // copy is dropped, not run, while the first is unfinished.
    let dup = q.enqueue(keyed(2)).await.expect("enqueue");
    assert!(dup.duplicate, "the running job holds its key");
    assert_eq!(dup.id, first.id);
    assert_nothing_for(&q, "work", std::time::Duration::from_millis(300)).await;
    q.complete(&job.lease, None).await.expect("complete");
    let after = q.enqueue(keyed(3)).await.expect("enqueue");
    assert!(!after.duplicate, "the key is free once the job finished");
    assert_eq!(claim_one(&q, "work", LEASE).await.payload, json!(3));
    q.teardown().await.expect("teardown");
}

async fn concurrent_enqueues_with_one_key_add_exactly_one_job(keys: Keys) {
    let Some(url) = amqp_url() else { return };
    let Some(store) = key_store(keys).await else {
        return;
    };
    let q = keyed_backend(&url, &namespace(), &store, Arc::new(SystemClock)).await;
    let tries = (0..8).map(|n| {
        let q = q.clone();
        async move {
            let mut job = NewJob::new("work", "once", json!(n));
            job.dedup_key = Some("k".into());
            q.enqueue(job).await.expect("enqueue")
        }
    });
    let results = futures_util::future::join_all(tries).await;
    let winners: Vec<_> = results.iter().filter(|r| !r.duplicate).collect();
    assert_eq!(winners.len(), 1);
    assert!(
        results.iter().all(|r| r.id == winners[0].id),
        "every duplicate names the holder"
    );
    let claimed = q.claim("work", LEASE, 10).await.expect("claim");
    assert_eq!(claimed.len(), 1, "one job in the queue");
    assert_eq!(claimed[0].lease.id, winners[0].id);
    assert_nothing_for(&q, "work", std::time::Duration::from_millis(200)).await;
    q.teardown().await.expect("teardown");
}

#[tokio::test]
async fn a_key_held_in_postgres_past_its_expiry_is_taken_over() {
    let Some(url) = amqp_url() else { return };
    let Some(store) = key_store(Keys::Postgres).await else {
        return;
    };
    let clock = Arc::new(ManualClock::new(1_700_000_000_000));
    let ns = namespace();
    let q = keyed_backend(&url, &ns, &store, clock.clone()).await;
    let keyed = |n| {
        let mut job = NewJob::new("work", "export", json!(n));
        job.dedup_key = Some("stuck".into());
        job
    };
    let first = q.enqueue(keyed(1)).await.expect("enqueue");
    let job = claim_one(&q, "work", LEASE).await;
    assert_eq!(job.lease.id, first.id);
    // The holder's release is lost (its process died after the ack, say): the key stays
    // held until it expires, and only then does another job take it.
    assert!(q.enqueue(keyed(2)).await.expect("enqueue").duplicate);
    clock.advance(AmqpConfig::default().dedup_expiry + Duration::from_secs(1));
    let later = q.enqueue(keyed(3)).await.expect("enqueue");
    assert!(!later.duplicate, "an expired key is taken over");
    assert_ne!(later.id, first.id);
    q.teardown().await.expect("teardown");
}

#[tokio::test]
async fn a_topic_message_reaches_every_subscriber_group_once() {
    let Some(url) = amqp_url() else { return };
    let q = backend(&url, &namespace()).await;
    q.subscribe("clicks", "analytics").await.expect("subscribe");
    q.subscribe("clicks", "audit").await.expect("subscribe");
    assert_eq!(
        q.publish("nobody-listens", "x", json!(0))
            .await
            .expect("publish"),
        0
    );
    assert_eq!(
        q.publish("clicks", "click", json!({"code": "abc"}))
            .await
            .expect("publish"),
        2
    );
    for group in ["analytics", "audit"] {
        let queue = basis_queue::topic_queue("clicks", group);
        let job = claim_one(&q, &queue, LEASE).await;
        assert_eq!(
            (job.kind.as_str(), job.payload.clone()),
            ("click", json!({"code": "abc"}))
        );
        q.complete(&job.lease, None).await.expect("complete");
        assert!(q.claim(&queue, LEASE, 10).await.expect("claim").is_empty());
    }
    q.teardown().await.expect("teardown");
}

/// A fanout exchange routes by no key: a group subscribed to some kinds still receives the
/// others, and its consumer ignores them (the SQL engines filter at the fan-out).
#[tokio::test]
async fn a_kind_filtered_group_on_rabbitmq_receives_every_kind_for_its_consumer_to_filter() {
    let Some(url) = amqp_url() else { return };
    let q = backend(&url, &namespace()).await;
    let refused = q.subscribe_kinds("shop", "mail", &[""]).await;
    assert!(matches!(refused, Err(Error::Invalid(_))), "{refused:?}");
    q.subscribe_kinds("shop", "mail", &["order.completed"])
        .await
        .expect("subscribe");
    assert_eq!(
        q.publish("shop", "order.placed", json!(1))
            .await
            .expect("publish"),
        1
    );
    let job = claim_one(&q, &basis_queue::topic_queue("shop", "mail"), LEASE).await;
    assert_eq!(job.kind, "order.placed");
    q.complete(&job.lease, None).await.expect("complete");
    q.teardown().await.expect("teardown");
}

#[tokio::test]
async fn a_batch_published_to_a_topic_reaches_every_group_in_order() {
    const PARENT: &str = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
    let Some(url) = amqp_url() else { return };
    let q = backend(&url, &namespace()).await;
    q.subscribe("orders", "billing").await.expect("subscribe");
    q.subscribe("orders", "audit").await.expect("subscribe");
    let mut batch: Vec<Message> = (1..=3)
        .map(|n| Message {
            kind: format!("step-{n}"),
            payload: json!({ "n": n }),
            traceparent: None,
        })
        .collect();
    batch[1].traceparent = Some(PARENT.into());
    assert_eq!(q.publish_many("orders", &batch).await.expect("publish"), 3);
    let refused = q
        .publish_many(
            "orders",
            &[
                batch[0].clone(),
                Message {
                    kind: String::new(),
                    ..batch[0].clone()
                },
            ],
        )
        .await;
    assert!(matches!(refused, Err(Error::Invalid(_))), "{refused:?}");
    for group in ["billing", "audit"] {
        let queue = basis_queue::topic_queue("orders", group);
        for n in 1..=3 {
            let job = claim_one(&q, &queue, LEASE).await;
            assert_eq!(job.payload, json!({ "n": n }), "group {group}: in order");
            if n == 2 {
                assert_eq!(job.traceparent.as_deref(), Some(PARENT));
            }
            q.complete(&job.lease, None).await.expect("complete");
        }
        assert!(q.claim(&queue, LEASE, 10).await.expect("claim").is_empty());
    }
    q.teardown().await.expect("teardown");
}

/// RabbitMQ can come back from a restart with a binding on disk but missing from its
/// routing table (a queue that recovered late): a topic message is then returned as
/// unroutable. The publisher binds its groups again and the message arrives; it is never
/// counted as delivered to nobody.
#[tokio::test]
async fn a_topic_message_returned_by_a_lost_binding_still_reaches_its_group() {
    let Some(url) = amqp_url() else { return };
    let ns = namespace();
    let q = backend(&url, &ns).await;
    q.subscribe("events", "webhooks").await.expect("subscribe");
    let queue = basis_queue::topic_queue("events", "webhooks");
    // The broker forgets the binding.
    let conn = lapin::Connection::connect(&url, lapin::ConnectionProperties::default())
        .await
        .expect("connect");
    let ch = conn.create_channel().await.expect("a channel");
    ch.queue_unbind(
        format!("{ns}.q.{queue}").as_str().into(),
        format!("{ns}.topic.events").as_str().into(),
        "".into(),
        lapin::types::FieldTable::default(),
    )
    .await
    .expect("unbind");
    assert_eq!(
        q.publish("events", "link.created", json!({"id": 1}))
            .await
            .expect("publish"),
        1,
        "the group took the message"
    );
    let job = claim_one(&q, &queue, LEASE).await;
    assert_eq!(job.payload, json!({"id": 1}));
    q.complete(&job.lease, None).await.expect("complete");
    q.teardown().await.expect("teardown");
}

#[tokio::test]
async fn a_released_job_comes_back_without_losing_an_attempt() {
    let Some(url) = amqp_url() else { return };
    let q = backend(&url, &namespace()).await;
    q.enqueue(NewJob::new("work", "k", json!(1)))
        .await
        .expect("enqueue");
    let first = claim_one(&q, "work", LEASE).await;
    q.release(&first.lease).await.expect("release");
    let again = claim_one(&q, "work", LEASE).await;
    assert_eq!(
        (again.lease.id.clone(), again.attempt),
        (first.lease.id.clone(), 1)
    );
    assert!(again.lease.token > first.lease.token);
    q.complete(&again.lease, None).await.expect("complete");
    q.teardown().await.expect("teardown");
}

#[tokio::test]
async fn stats_count_waiting_running_and_dead_jobs() {
    let Some(url) = amqp_url() else { return };
    let q = backend(&url, &namespace()).await;
    for n in 0..3 {
        q.enqueue(NewJob::new("stats", "k", json!(n)))
            .await
            .expect("enqueue");
    }
    let running = claim_one(&q, "stats", LEASE).await;
    let dead = claim_one(&q, "stats", LEASE).await;
    q.bury(&dead.lease, "no").await.expect("bury");
    let s = q
        .stats()
        .await
        .expect("stats")
        .into_iter()
        .find(|s| s.queue == "stats")
        .expect("listed");
    assert_eq!((s.depth, s.running, s.dead), (1, 1, 1));
    q.complete(&running.lease, None).await.expect("complete");
    q.teardown().await.expect("teardown");
}

#[tokio::test]
async fn bad_names_and_attempt_counts_are_refused_before_anything_is_sent() {
    let Some(url) = amqp_url() else { return };
    let q = backend(&url, &namespace()).await;
    for job in [
        NewJob::new("", "k", json!(0)),
        NewJob::new("q".repeat(200), "k", json!(0)),
        NewJob::new("work", "k".repeat(300), json!(0)),
        NewJob {
            max_attempts: 0,
            ..NewJob::new("work", "k", json!(0))
        },
    ] {
        assert!(matches!(q.enqueue(job).await, Err(Error::Invalid(_))));
    }
    assert!(matches!(q.subscribe("t", "").await, Err(Error::Invalid(_))));
    assert!(matches!(
        q.job(&basis_queue::JobId("x".into())).await,
        Err(Error::Unsupported("amqp"))
    ));
    q.teardown().await.expect("teardown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_claimers_in_two_processes_never_share_a_job() {
    let Some(url) = amqp_url() else { return };
    let ns = namespace();
    let (a, b) = (backend(&url, &ns).await, backend(&url, &ns).await);
    for n in 0..300 {
        a.enqueue(NewJob::new("race", "k", json!(n)))
            .await
            .expect("enqueue");
    }
    let mut claimers = tokio::task::JoinSet::new();
    for i in 0..4 {
        let q = if i % 2 == 0 { a.clone() } else { b.clone() };
        claimers.spawn(async move {
            let mut mine = Vec::new();
            let deadline = std::time::Instant::now() + super::PATIENCE;
            // Until the queue is drained: an empty claim may only mean "still being pushed".
            while std::time::Instant::now() < deadline {
                let got = q.claim("race", LEASE, 7).await.expect("claim");
                let idle = got.is_empty();
                for job in got {
                    q.complete(&job.lease, None).await.expect("complete");
                    mine.push(job.lease.id);
                }
                if idle {
                    let drained = q.stats().await.expect("stats")[0].depth == 0;
                    q.wait_for_work("race", std::time::Duration::from_millis(100))
                        .await;
                    let last = q.claim("race", LEASE, 7).await.expect("claim");
                    if drained && last.is_empty() {
                        break;
                    }
                    for job in last {
                        q.complete(&job.lease, None).await.expect("complete");
                        mine.push(job.lease.id);
                    }
                }
            }
            mine
        });
    }
    let mut seen = std::collections::HashSet::new();
    while let Some(mine) = claimers.join_next().await {
        for id in mine.expect("claimer") {
            assert!(seen.insert(id.clone()), "{id} handed out twice");
        }
    }
    assert_eq!(seen.len(), 300);
    a.teardown().await.expect("teardown");
}
