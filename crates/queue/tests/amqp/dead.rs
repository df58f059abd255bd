//! Dead letters: bury, attempts running out, poison messages, replay and purge.

use std::time::Duration;

use basis_queue::{Backend, Error, NewJob};
use lapin::options::BasicPublishOptions;
use serde_json::json;

use super::{LEASE, amqp_url, assert_nothing_for, backend, claim_one, namespace};

#[tokio::test]
async fn a_buried_job_is_listed_with_its_error_and_can_be_replayed_once() {
    let Some(url) = amqp_url() else { return };
    let q = backend(&url, &namespace()).await;
    let id = q
        .enqueue(NewJob::new("work", "image", json!({"n": 1})))
        .await
        .expect("enqueue")
        .id;
    let job = claim_one(&q, "work", LEASE).await;
    q.bury(&job.lease, "not an image").await.expect("bury");
    assert!(matches!(
        q.complete(&job.lease, None).await,
        Err(Error::LeaseLost(_))
    ));

    let dead = q.dead_letters(Some("work"), 10).await.expect("list");
    assert_eq!(dead.len(), 1);
    assert_eq!(
        (
            dead[0].id.clone(),
            dead[0].last_error.as_str(),
            dead[0].attempts
        ),
        (id.clone(), "not an image", 1)
    );
    assert_eq!(dead[0].payload, json!({"n": 1}));
    assert!(dead[0].died_at_ms > 0);
    // Listing gives them back: a second look sees the same.
    assert_eq!(
        q.dead_letter(&id).await.expect("show").map(|d| d.kind),
        Some("image".into())
    );
    assert_eq!(q.stats().await.expect("stats")[0].dead, 1);

    assert!(q.replay(&id).await.expect("replay"));
    assert!(!q.replay(&id).await.expect("second replay finds nothing"));
    let again = claim_one(&q, "work", LEASE).await;
    assert_eq!(
        (again.lease.id.clone(), again.attempt),
        (id, 1),
        "a replay starts the attempts afresh"
    );
    q.complete(&again.lease, None).await.expect("complete");
    assert!(q.dead_letters(None, 10).await.expect("list").is_empty());
    q.teardown().await.expect("teardown");
}

#[tokio::test]
async fn a_lease_that_expires_on_the_last_attempt_dead_letters_the_job() {
    let Some(url) = amqp_url() else { return };
    let q = backend(&url, &namespace()).await;
    let mut job = NewJob::new("work", "hang", json!({}));
    job.max_attempts = 2;
    let id = q.enqueue(job).await.expect("enqueue").id;
    let first = claim_one(&q, "work", Duration::from_millis(80)).await;
    q.retry(&first.lease, "timeout talking to S3", 0)
        .await
        .expect("retry");
    let second = claim_one(&q, "work", Duration::from_millis(80)).await;
    assert_eq!(second.attempt, 2);
    // Its lease runs out; the next claim finds it out of attempts and buries it.
    assert_nothing_for(&q, "work", Duration::from_millis(400)).await;
    let dead = q.dead_letters(Some("work"), 10).await.expect("list");
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].id, id);
    assert_eq!(
        dead[0].last_error,
        "lease expired on the last attempt (before: timeout talking to S3)"
    );
    assert_eq!(dead[0].attempts, 2);
    assert_eq!(q.purge(Some("work")).await.expect("purge"), 1);
    assert!(
        q.dead_letters(Some("work"), 10)
            .await
            .expect("list")
            .is_empty()
    );
    q.teardown().await.expect("teardown");
}

#[tokio::test]
async fn a_message_that_is_not_a_job_goes_to_the_dead_letters_with_the_reason() {
    let Some(url) = amqp_url() else { return };
    let ns = namespace();
    let q = backend(&url, &ns).await;
    q.enqueue(NewJob::new("work", "ok", json!(1)))
        .await
        .expect("declare the queue");
    let good = claim_one(&q, "work", LEASE).await;
    q.complete(&good.lease, None).await.expect("complete");

    // Something else publishes garbage straight into the work queue.
    let conn = lapin::Connection::connect(&url, lapin::ConnectionProperties::default())
        .await
        .expect("connect");
    let ch = conn.create_channel().await.expect("channel");
    ch.basic_publish(
        "".into(),
        format!("{ns}.q.work").as_str().into(),
        BasicPublishOptions::default(),
        b"\xff not json",
        lapin::BasicProperties::default().with_message_id("garbage-1".into()),
    )
    .await
    .expect("publish")
    .await
    .expect("sent");
    assert_nothing_for(&q, "work", Duration::from_millis(300)).await;
    let dead = q.dead_letters(Some("work"), 10).await.expect("list");
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].id.0, "garbage-1");
    assert!(
        dead[0].last_error.contains("not JSON"),
        "{}",
        dead[0].last_error
    );
    let _ = conn.close(200, "done".into()).await;
    q.teardown().await.expect("teardown");
}

#[tokio::test]
async fn dead_letters_of_every_queue_are_listed_oldest_first_and_purged() {
    let Some(url) = amqp_url() else { return };
    let q = backend(&url, &namespace()).await;
    let mut buried = Vec::new();
    for (queue, n) in [("dlq-a", 1), ("dlq-b", 2), ("dlq-a", 3)] {
        q.enqueue(NewJob::new(queue, "work", json!(n)))
            .await
            .expect("enqueue");
        let job = claim_one(&q, queue, LEASE).await;
        q.bury(&job.lease, &format!("broken {n}"))
            .await
            .expect("bury");
        buried.push(job.lease.id);
    }
    let all = q.dead_letters(None, 10).await.expect("list");
    assert_eq!(
        all.iter().map(|d| d.id.clone()).collect::<Vec<_>>(),
        buried,
        "oldest first"
    );
    assert_eq!(q.dead_letters(None, 2).await.expect("list").len(), 2);
    assert_eq!(
        q.dead_letters(Some("dlq-a"), 10).await.expect("list").len(),
        2
    );
    assert!(
        q.dead_letter(&basis_queue::JobId("no-such-job".into()))
            .await
            .expect("show")
            .is_none()
    );
    assert_eq!(q.purge(Some("dlq-b")).await.expect("purge"), 1);
    assert_eq!(q.purge(None).await.expect("purge"), 2);
    assert!(q.dead_letters(None, 10).await.expect("list").is_empty());
    q.teardown().await.expect("teardown");
}
