//! Conformance cases for the batch operations: `enqueue_many` and `complete_many` keep
//! every delivery rule of their one-job forms.

use std::time::Duration;

use basis_queue::{Enqueued, Error, JobStatus, Message, topic_queue};
use serde_json::json;

use super::{Harness, LEASE, job, status};

pub async fn enqueue_many_keeps_order_dedup_and_validation(h: Harness) {
    let q = "batch-enqueue";
    let keyed = |n: i64, key: &str| {
        let mut j = job(q, n);
        j.dedup_key = Some(key.into());
        j
    };
    let held = h.backend.enqueue(keyed(0, "held")).await.unwrap();
    let batch = vec![
        job(q, 1),
        keyed(2, "new"),
        keyed(3, "held"),
        job(q, 4),
        keyed(5, "new"),
    ];
    let got = h.backend.enqueue_many(batch).await.unwrap();
    assert_eq!(got.len(), 5);
    assert_eq!(
        got[2],
        Enqueued {
            id: held.id.clone(),
            duplicate: true
        },
        "a key held before the batch"
    );
    assert_eq!(
        got[4],
        Enqueued {
            id: got[1].id.clone(),
            duplicate: true
        },
        "a key taken earlier in the batch"
    );
    assert!([0, 1, 3].iter().all(|&i| !got[i].duplicate));

    // The new jobs come out in batch order, after the one enqueued before it.
    let claimed = h.backend.claim(q, LEASE, 10).await.unwrap();
    let ns: Vec<_> = claimed.iter().map(|c| c.payload["n"].clone()).collect();
    assert_eq!(ns, vec![json!(0), json!(1), json!(2), json!(4)]);
    let ids: Vec<_> = claimed.iter().map(|c| c.lease.id.clone()).collect();
    assert_eq!(
        ids,
        vec![
            held.id,
            got[0].id.clone(),
            got[1].id.clone(),
            got[3].id.clone()
        ]
    );

    // One invalid job refuses the whole call: nothing of it is enqueued.
    let mut bad = job(q, 7);
    bad.max_attempts = 0;
    let refused = h.backend.enqueue_many(vec![job(q, 6), bad]).await;
    assert!(matches!(refused, Err(Error::Invalid(_))), "{refused:?}");
    assert!(h.backend.claim(q, LEASE, 10).await.unwrap().is_empty());
    assert!(h.backend.enqueue_many(Vec::new()).await.unwrap().is_empty());
}

pub async fn enqueue_many_takes_a_large_batch(h: Harness) {
    let q = "batch-large";
    let jobs: Vec<_> = (0..2_500).map(|n| job(q, n)).collect();
    let got = h.backend.enqueue_many(jobs).await.unwrap();
    assert_eq!(got.len(), 2_500);
    let claimed = h.backend.claim(q, LEASE, 3_000).await.unwrap();
    assert_eq!(claimed.len(), 2_500);
    assert!(
        claimed
            .iter()
            .enumerate()
            .all(|(n, c)| c.payload["n"] == json!(n))
    );
}

pub async fn complete_many_refuses_only_the_lost_lease(h: Harness) {
    let q = "batch-complete";
    let ids: Vec<_> = h
        .backend
        .enqueue_many((0..3).map(|n| job(q, n)).collect())
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.id)
        .collect();
    // Job 0's lease runs out while jobs 1 and 2, claimed later, still hold theirs.
    let first = h.backend.claim(q, LEASE, 1).await.unwrap().remove(0);
    h.advance(Duration::from_secs(20));
    let later = h.backend.claim(q, LEASE, 2).await.unwrap();
    h.advance(Duration::from_secs(15));
    let taken_over = h.backend.claim(q, LEASE, 1).await.unwrap().remove(0);
    assert_eq!(taken_over.lease.id, ids[0]);

    let acks = vec![
        (later[0].lease.clone(), Some(json!("one"))),
        (first.lease.clone(), Some(json!("stale"))),
        (later[1].lease.clone(), None),
        (later[0].lease.clone(), None),
    ];
    let answers = h.backend.complete_many(&acks).await.unwrap();
    assert!(answers[0].is_ok() && answers[2].is_ok(), "{answers:?}");
    assert!(
        matches!(answers[1], Err(Error::LeaseLost(ref id)) if *id == ids[0]),
        "{answers:?}"
    );
    assert!(
        matches!(answers[3], Err(Error::LeaseLost(_))),
        "an attempt finishes once: {answers:?}"
    );

    let info = h.backend.job(&ids[1]).await.unwrap().unwrap();
    assert_eq!(
        (info.status, info.result),
        (JobStatus::Done, Some(json!("one")))
    );
    assert_eq!(status(&h, &ids[2]).await, JobStatus::Done);
    assert_eq!(
        status(&h, &ids[0]).await,
        JobStatus::Running,
        "the stale ack changed nothing"
    );
    let answers = h
        .backend
        .complete_many(&[(taken_over.lease, Some(json!("new")))])
        .await
        .unwrap();
    assert!(answers[0].is_ok());
    let info = h.backend.job(&ids[0]).await.unwrap().unwrap();
    assert_eq!(
        (info.status, info.result),
        (JobStatus::Done, Some(json!("new")))
    );
}

pub async fn publish_many_reaches_every_group_in_order(h: Harness) {
    const PARENT: &str = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
    let topic = "order.events";
    h.backend.subscribe(topic, "billing").await.unwrap();
    h.backend.subscribe(topic, "audit").await.unwrap();
    let message = |kind: &str, n: i64| Message {
        kind: kind.into(),
        payload: json!({ "n": n }),
        traceparent: None,
    };
    let mut batch = vec![
        message("placed", 1),
        message("paid", 2),
        message("shipped", 3),
    ];
    batch[1].traceparent = Some(PARENT.into());
    assert_eq!(h.backend.publish_many(topic, &batch).await.unwrap(), 3);
    assert_eq!(h.backend.publish_many(topic, &[]).await.unwrap(), 0);

    // A kind no job may have refuses the whole batch before anything is written.
    let refused = h
        .backend
        .publish_many(topic, &[message("late", 4), message(" ", 5)])
        .await;
    assert!(matches!(refused, Err(Error::Invalid(_))), "{refused:?}");

    for group in ["billing", "audit"] {
        let got = h
            .backend
            .claim(&topic_queue(topic, group), LEASE, 10)
            .await
            .unwrap();
        let seen: Vec<(&str, i64)> = got
            .iter()
            .map(|j| (j.kind.as_str(), j.payload["n"].as_i64().unwrap()))
            .collect();
        assert_eq!(
            seen,
            [("placed", 1), ("paid", 2), ("shipped", 3)],
            "group {group}: every message once, in order, nothing of the refused batch"
        );
        assert_eq!(got[1].traceparent.as_deref(), Some(PARENT), "its own trace");
        assert_eq!(got[0].traceparent, None, "no exporter, no context");
    }
}
