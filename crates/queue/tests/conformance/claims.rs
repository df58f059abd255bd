//! Conformance cases of one claim over several queues (`claim_from`) and of topic
//! subscriptions filtered by message kind.

use std::time::Duration;

use basis_queue::{Error, JobStatus, Message, topic_queue};
use serde_json::json;

use super::{Harness, LEASE, job, status};

fn names(queues: &[&str]) -> Vec<String> {
    queues.iter().map(|q| (*q).to_owned()).collect()
}

/// (queue, n) of each claimed job, in the order the claim gave them.
fn seen(jobs: &[basis_queue::ClaimedJob]) -> Vec<(String, i64)> {
    jobs.iter()
        .map(|j| (j.lease.queue.clone(), j.payload["n"].as_i64().unwrap()))
        .collect()
}

pub async fn claim_from_takes_ready_jobs_of_each_queue_within_the_limit(h: Harness) {
    for n in 1..=5 {
        h.backend.enqueue(job("cf-a", n)).await.unwrap();
    }
    for n in 11..=12 {
        h.backend.enqueue(job("cf-b", n)).await.unwrap();
    }
    let mut later = job("cf-d", 31);
    later.run_at_ms = Some(h.now() + 60_000);
    h.backend.enqueue(later).await.unwrap();
    let queues = names(&["cf-a", "cf-b", "cf-c", "cf-d"]);

    let first = h.backend.claim_from(&queues, LEASE, 4).await.unwrap();
    let pair = |q: &str, n| (q.to_owned(), n);
    assert_eq!(
        seen(&first),
        [
            pair("cf-a", 1),
            pair("cf-b", 11),
            pair("cf-a", 2),
            pair("cf-b", 12)
        ],
        "round-robin over the queues with ready jobs, each in its own order"
    );
    for j in &first {
        assert_eq!(j.attempt, 1);
        assert_eq!(status(&h, &j.lease.id).await, JobStatus::Running);
    }
    let rest = h.backend.claim_from(&queues, LEASE, 100).await.unwrap();
    assert_eq!(
        seen(&rest),
        [pair("cf-a", 3), pair("cf-a", 4), pair("cf-a", 5)],
        "what is left, and nothing not due"
    );
    assert!(
        h.backend
            .claim_from(&queues, LEASE, 0)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        h.backend
            .claim_from(&[], LEASE, 10)
            .await
            .unwrap()
            .is_empty()
    );

    // A queue named twice is still claimed from once per job.
    h.advance(Duration::from_secs(60));
    let twice = names(&["cf-d", "cf-d"]);
    let got = h.backend.claim_from(&twice, LEASE, 10).await.unwrap();
    assert_eq!(seen(&got), [pair("cf-d", 31)]);
    for j in first.iter().chain(&rest).chain(&got) {
        h.backend.complete(&j.lease, None).await.unwrap();
    }
}

pub async fn a_busy_queue_does_not_starve_a_quiet_one(h: Harness) {
    // The busy queue's jobs are older and of a higher priority than the quiet one's job:
    // an order by priority or age alone would hand out the whole backlog first.
    for n in 0..50 {
        let mut j = job("busy", n);
        j.priority = 5;
        h.backend.enqueue(j).await.unwrap();
    }
    h.advance(Duration::from_secs(10));
    h.backend.enqueue(job("quiet", 100)).await.unwrap();
    h.backend.enqueue(job("quiet", 101)).await.unwrap();

    let got = h
        .backend
        .claim_from(&names(&["busy", "quiet"]), LEASE, 2)
        .await
        .unwrap();
    assert_eq!(
        seen(&got),
        [("busy".to_owned(), 0), ("quiet".to_owned(), 100)],
        "a limit of two serves both queues"
    );
    // A limit of one goes to the queue named first; the caller rotates the list.
    let got = h
        .backend
        .claim_from(&names(&["quiet", "busy"]), LEASE, 1)
        .await
        .unwrap();
    assert_eq!(seen(&got), [("quiet".to_owned(), 101)]);
}

pub async fn an_expired_lease_in_any_queue_is_reclaimed_or_buried_by_claim_from(h: Harness) {
    let mut last = job("cf-exp-a", 1);
    last.max_attempts = 1;
    let last = h.backend.enqueue(last).await.unwrap().id;
    let mut again = job("cf-exp-b", 2);
    again.max_attempts = 3;
    let again = h.backend.enqueue(again).await.unwrap().id;
    let queues = names(&["cf-exp-a", "cf-exp-b"]);

    let first = h.backend.claim_from(&queues, LEASE, 10).await.unwrap();
    assert_eq!(first.len(), 2);
    assert!(
        h.backend
            .claim_from(&queues, LEASE, 10)
            .await
            .unwrap()
            .is_empty(),
        "held leases are not handed out"
    );
    // Both workers die.
    h.advance(LEASE + Duration::from_secs(1));
    let second = h.backend.claim_from(&queues, LEASE, 10).await.unwrap();
    assert_eq!(
        second.len(),
        1,
        "the job on its last attempt is not run again"
    );
    let redelivered = &second[0];
    assert_eq!(redelivered.lease.id, again);
    assert_eq!(redelivered.lease.queue, "cf-exp-b");
    assert_eq!(redelivered.attempt, 2);
    let old = first.iter().find(|j| j.lease.id == again).unwrap();
    assert!(
        redelivered.lease.token > old.lease.token,
        "a fresh fencing token"
    );
    assert!(matches!(
        h.backend.complete(&old.lease, None).await,
        Err(Error::LeaseLost(_))
    ));
    assert_eq!(status(&h, &last).await, JobStatus::Dead);
    let dead = h.backend.dead_letter(&last).await.unwrap().unwrap();
    assert_eq!(dead.queue, "cf-exp-a");
    assert!(
        dead.last_error.contains("lease expired"),
        "{}",
        dead.last_error
    );
    h.backend.complete(&redelivered.lease, None).await.unwrap();
    assert_eq!(status(&h, &again).await, JobStatus::Done);
}

pub async fn a_kind_filtered_group_receives_only_its_kinds_and_the_others_all_in_order(h: Harness) {
    let topic = "shop.events";
    h.backend.subscribe(topic, "everything").await.unwrap();
    h.backend
        .subscribe_kinds(topic, "mail", &["order.completed", "order.cancelled"])
        .await
        .unwrap();
    let message = |kind: &str, n: i64| Message {
        kind: kind.into(),
        payload: json!({ "n": n }),
        traceparent: None,
    };
    let batch = [
        message("order.placed", 1),
        message("order.completed", 2),
        message("order.paid", 3),
        message("order.cancelled", 4),
    ];
    assert_eq!(h.backend.publish_many(topic, &batch).await.unwrap(), 4);
    assert_eq!(
        h.backend
            .publish(topic, "order.completed", json!({ "n": 5 }))
            .await
            .unwrap(),
        2,
        "both groups take it"
    );
    assert_eq!(
        h.backend
            .publish(topic, "order.placed", json!({ "n": 6 }))
            .await
            .unwrap(),
        1,
        "only the unfiltered group takes it"
    );
    let kinds = |jobs: Vec<basis_queue::ClaimedJob>| -> Vec<(String, i64)> {
        jobs.into_iter()
            .map(|j| (j.kind, j.payload["n"].as_i64().unwrap()))
            .collect()
    };
    let drain = |group: &'static str| {
        let backend = h.backend.clone();
        async move {
            backend
                .claim(&topic_queue(topic, group), LEASE, 100)
                .await
                .unwrap()
        }
    };
    let k = |kind: &str, n: i64| (kind.to_owned(), n);
    assert_eq!(
        kinds(drain("everything").await),
        [
            k("order.placed", 1),
            k("order.completed", 2),
            k("order.paid", 3),
            k("order.cancelled", 4),
            k("order.completed", 5),
            k("order.placed", 6),
        ]
    );
    assert_eq!(
        kinds(drain("mail").await),
        [
            k("order.completed", 2),
            k("order.cancelled", 4),
            k("order.completed", 5)
        ]
    );

    // Subscribing again replaces the list; an empty list means every kind.
    h.backend
        .subscribe_kinds(topic, "mail", &["order.placed"])
        .await
        .unwrap();
    h.backend
        .publish_many(
            topic,
            &[message("order.completed", 7), message("order.placed", 8)],
        )
        .await
        .unwrap();
    assert_eq!(kinds(drain("mail").await), [k("order.placed", 8)]);
    h.backend.subscribe_kinds(topic, "mail", &[]).await.unwrap();
    h.backend
        .publish(topic, "order.paid", json!({ "n": 9 }))
        .await
        .unwrap();
    assert_eq!(kinds(drain("mail").await), [k("order.paid", 9)]);
    assert_eq!(drain("everything").await.len(), 3);

    let refused = h.backend.subscribe_kinds(topic, "mail", &[" "]).await;
    assert!(matches!(refused, Err(Error::Invalid(_))), "{refused:?}");
}
