//! Deduplication, topics, request-reply, stats and refused input.

use std::time::Duration;

use basis_queue::{Backend, Error, NewJob};
use serde_json::json;

use super::{LEASE, amqp_url, backend, claim_one, namespace};

#[tokio::test]
async fn a_deduplication_key_admits_one_unfinished_job_at_a_time() {
    let Some(url) = amqp_url() else { return };
    let ns = namespace();
    let q = backend(&url, &ns).await;
    let other = backend(&url, &ns).await;
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

#[tokio::test]
async fn concurrent_enqueues_with_one_key_add_exactly_one_job() {
    let Some(url) = amqp_url() else { return };
    let q = backend(&url, &namespace()).await;
    let tries = (0..8).map(|n| {
        let q = q.clone();
        async move {
            let mut job = NewJob::new("work", "once", json!(n));
            job.dedup_key = Some("k".into());
            q.enqueue(job).await.expect("enqueue")
        }
    });
    let results = futures_util::future::join_all(tries).await;
    assert_eq!(results.iter().filter(|r| !r.duplicate).count(), 1);
    assert_eq!(
        q.stats().await.expect("stats")[0].depth
            + q.claim("work", LEASE, 10).await.expect("claim").len() as u64,
        1
    );
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

#[tokio::test]
async fn a_request_gets_the_reply_that_carries_its_correlation_id() {
    let Some(url) = amqp_url() else { return };
    let ns = namespace();
    let client = backend(&url, &ns).await;
    let server = backend(&url, &ns).await;
    let answer = tokio::spawn({
        let server = server.clone();
        async move {
            let job = claim_one(&server, "math", LEASE).await;
            let sum =
                job.payload["a"].as_i64().unwrap_or(0) + job.payload["b"].as_i64().unwrap_or(0);
            let mut reply = NewJob::new(
                job.reply_to.clone().expect("reply_to"),
                "reply",
                json!({"sum": sum}),
            );
            reply.correlation_id = job.correlation_id.clone();
            server.enqueue(reply).await.expect("reply");
            server.complete(&job.lease, None).await.expect("complete");
        }
    });
    let got = client
        .request(
            "math",
            "add",
            json!({"a": 2, "b": 3}),
            Duration::from_secs(10),
        )
        .await
        .expect("reply");
    assert_eq!(got, json!({"sum": 5}));
    answer.await.expect("server task");
    client.teardown().await.expect("teardown");
}

#[tokio::test]
async fn a_request_nobody_answers_times_out() {
    let Some(url) = amqp_url() else { return };
    let q = backend(&url, &namespace()).await;
    let err = q
        .request("nobody", "ping", json!({}), Duration::from_millis(200))
        .await
        .expect_err("timeout");
    assert!(
        matches!(err, Error::Unavailable(ref m) if m.contains("no reply")),
        "{err}"
    );
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
