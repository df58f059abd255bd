//! The conformance suite every backend runs: the delivery rules of `basis_queue`, checked
//! through the `Backend` trait and the worker alone. Time moves by advancing the harness's
//! clock, never by sleeping; waits for a worker poll a real condition in a bounded loop.
//!
//! Use: build a [`Harness`] per test and expand [`conformance_suite!`] with the function
//! that makes it (returning `None` prints a skip line).

#![allow(dead_code)]

mod batches;
mod claims;
mod workers;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use basis_queue::{Backend, ClaimedJob, Error, JobStatus, ManualClock, NewJob, topic_queue};
use futures_util::future::BoxFuture;
use serde_json::json;

// tests/amqp.rs runs its own cases and uses none of these.
#[allow(unused_imports)]
pub use batches::*;
#[allow(unused_imports)]
pub use claims::*;
pub use workers::*;

/// Opens the same queue again, as a restarted process would.
pub type Reopen = Box<dyn Fn() -> BoxFuture<'static, Arc<dyn Backend>> + Send + Sync>;

/// One test's backend and the clock it reads.
pub struct Harness {
    pub backend: Arc<dyn Backend>,
    pub clock: Arc<ManualClock>,
    reopen: Reopen,
}

impl Harness {
    pub fn new(backend: Arc<dyn Backend>, clock: Arc<ManualClock>, reopen: Reopen) -> Self {
        Self {
            backend,
            clock,
            reopen,
        }
    }

    /// Drops this handle and opens the queue anew.
    pub async fn restart(&mut self) {
        self.backend = (self.reopen)().await;
    }

    pub fn advance(&self, by: Duration) {
        self.clock.advance(by);
    }

    pub fn now(&self) -> i64 {
        use basis_queue::Clock;
        self.clock.now_ms()
    }
}

pub const LEASE: Duration = Duration::from_secs(30);

pub fn job(queue: &str, n: i64) -> NewJob {
    NewJob::new(queue, "work", json!({ "n": n }))
}

pub async fn status(h: &Harness, id: &basis_queue::JobId) -> JobStatus {
    h.backend
        .job(id)
        .await
        .expect("job lookup")
        .expect("job exists")
        .status
}

/// Expands one `#[tokio::test]` per conformance case, each on a harness from `$make`.
#[macro_export]
macro_rules! conformance_suite {
    ($make:path) => {
        $crate::conformance_suite!(@cases $make;
            ready_jobs_come_out_by_priority_then_due_time_then_enqueue_order => ordering,
            a_delayed_job_is_not_claimed_before_its_time => delayed,
            no_job_is_lost_across_a_restart => restart,
            an_unrenewed_lease_expires_and_the_job_is_delivered_again => redelivery,
            a_heartbeat_keeps_the_lease => heartbeat_keeps_lease,
            a_stale_token_cannot_complete_retry_bury_or_heartbeat => fencing,
            a_job_whose_lease_expires_on_its_last_attempt_goes_to_the_dead_letters => expiry_on_last_attempt,
            a_deduplication_key_admits_one_unfinished_job => dedup,
            a_retry_keeps_its_persisted_run_time_and_last_error => retry_schedule,
            a_released_job_does_not_lose_an_attempt => release,
            concurrent_claims_never_hand_out_the_same_job => concurrent_claims,
            every_subscriber_group_receives_every_published_message => topics,
            dead_letters_can_be_listed_shown_replayed_and_purged => dead_letter_admin,
            stats_count_waiting_running_and_dead_jobs => stats,
            invalid_jobs_are_refused => invalid,
            the_worker_completes_jobs_and_stores_their_result => worker_completes,
            the_worker_dead_letters_a_job_after_its_maximum_attempts => worker_max_attempts,
            a_poison_payload_goes_straight_to_the_dead_letters => worker_poison,
            a_handler_panic_counts_as_a_failed_attempt => worker_panic,
            request_reply_returns_the_handlers_result => request_reply,
            request_reply_times_out_without_a_responder => request_timeout,
            request_reply_reports_a_request_that_died => request_remote_failure,
            graceful_shutdown_finishes_in_flight_work_and_releases_the_rest => graceful_shutdown,
            a_worker_claims_ahead_of_its_slots_and_releases_what_waited_half_a_lease => worker_claims_ahead,
            enqueue_many_keeps_order_dedup_and_validation => enqueue_many_keeps_order_dedup_and_validation,
            enqueue_many_takes_a_large_batch => enqueue_many_takes_a_large_batch,
            complete_many_refuses_only_the_lost_lease => complete_many_refuses_only_the_lost_lease,
            publish_many_reaches_every_group_in_order => publish_many_reaches_every_group_in_order,
            a_job_carries_its_trace_context_through_claims_retries_batches_and_dead_letters => trace_context,
            claim_from_takes_ready_jobs_of_each_queue_within_the_limit => claim_from_takes_ready_jobs_of_each_queue_within_the_limit,
            a_busy_queue_does_not_starve_a_quiet_one => a_busy_queue_does_not_starve_a_quiet_one,
            an_expired_lease_in_any_queue_is_reclaimed_or_buried_by_claim_from => an_expired_lease_in_any_queue_is_reclaimed_or_buried_by_claim_from,
            a_kind_filtered_group_receives_only_its_kinds_and_the_others_all_in_order => a_kind_filtered_group_receives_only_its_kinds_and_the_others_all_in_order,
        );
    };
    (@cases $make:path; $($name:ident => $case:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                let Some(harness) = $make().await else { return };
                conformance::$case(harness).await;
            }
        )*
    };
}

pub async fn ordering(h: Harness) {
    let q = "ordering";
    let low1 = h.backend.enqueue(job(q, 1)).await.unwrap().id;
    let low2 = h.backend.enqueue(job(q, 2)).await.unwrap().id;
    let mut high = job(q, 3);
    high.priority = 5;
    let high = h.backend.enqueue(high).await.unwrap().id;
    let mut early = job(q, 4);
    early.run_at_ms = Some(h.now() - 10_000);
    let early = h.backend.enqueue(early).await.unwrap().id;
    let order: Vec<_> = h
        .backend
        .claim(q, LEASE, 10)
        .await
        .unwrap()
        .into_iter()
        .map(|j| j.lease.id)
        .collect();
    assert_eq!(order, vec![high, early, low1, low2]);

    for n in 0..10 {
        h.backend.enqueue(job(q, n)).await.unwrap();
    }
    for n in 0..10 {
        let got = h.backend.claim(q, LEASE, 1).await.unwrap();
        assert_eq!(got.len(), 1);
        assert_eq!(
            got[0].payload,
            json!({ "n": n }),
            "FIFO among equal priority and due time"
        );
    }
}

pub async fn delayed(h: Harness) {
    let mut j = job("delayed", 1);
    j.run_at_ms = Some(h.now() + 60_000);
    let id = h.backend.enqueue(j).await.unwrap().id;
    assert!(
        h.backend
            .claim("delayed", LEASE, 10)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(status(&h, &id).await, JobStatus::Queued);
    h.advance(Duration::from_secs(59));
    assert!(
        h.backend
            .claim("delayed", LEASE, 10)
            .await
            .unwrap()
            .is_empty()
    );
    h.advance(Duration::from_secs(1));
    let got = h.backend.claim("delayed", LEASE, 10).await.unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].lease.id, id);
}

pub async fn restart(mut h: Harness) {
    let q = "restart";
    let mut ids = Vec::new();
    for n in 0..50 {
        ids.push(h.backend.enqueue(job(q, n)).await.unwrap().id);
    }
    let first = h.backend.claim(q, LEASE, 10).await.unwrap();
    for j in &first[..5] {
        h.backend
            .complete(&j.lease, Some(json!(j.payload["n"])))
            .await
            .unwrap();
    }
    // The process dies holding five leases.
    h.restart().await;
    let mut done: HashSet<_> = first[..5].iter().map(|j| j.lease.id.clone()).collect();
    let rest = h.backend.claim(q, LEASE, 100).await.unwrap();
    assert_eq!(rest.len(), 40, "the unclaimed jobs are all there");
    h.advance(LEASE + Duration::from_secs(1));
    let orphans = h.backend.claim(q, LEASE, 100).await.unwrap();
    assert_eq!(
        orphans.len(),
        45,
        "the dead process's 5 leases expired; the 40 just claimed too"
    );
    for j in orphans {
        h.backend.complete(&j.lease, None).await.unwrap();
        assert!(
            done.insert(j.lease.id.clone()),
            "completed twice: {}",
            j.lease.id
        );
    }
    assert_eq!(done.len(), 50);
    for id in &ids {
        assert_eq!(status(&h, id).await, JobStatus::Done);
    }
}

pub async fn redelivery(h: Harness) {
    let id = h.backend.enqueue(job("redeliver", 1)).await.unwrap().id;
    let first = h
        .backend
        .claim("redeliver", LEASE, 1)
        .await
        .unwrap()
        .remove(0);
    assert_eq!(first.attempt, 1);
    assert_eq!(status(&h, &id).await, JobStatus::Running);
    h.advance(LEASE - Duration::from_millis(1));
    assert!(
        h.backend
            .claim("redeliver", LEASE, 1)
            .await
            .unwrap()
            .is_empty(),
        "lease still held"
    );
    h.advance(Duration::from_millis(1));
    let second = h
        .backend
        .claim("redeliver", LEASE, 1)
        .await
        .unwrap()
        .remove(0);
    assert_eq!(second.lease.id, id);
    assert_eq!(second.attempt, 2, "attempts are counted at claim");
    assert!(second.lease.token > first.lease.token);
}

pub async fn heartbeat_keeps_lease(h: Harness) {
    h.backend.enqueue(job("beat", 1)).await.unwrap();
    let j = h.backend.claim("beat", LEASE, 1).await.unwrap().remove(0);
    for _ in 0..5 {
        h.advance(Duration::from_secs(20));
        h.backend.heartbeat(&j.lease, LEASE).await.unwrap();
        assert!(h.backend.claim("beat", LEASE, 1).await.unwrap().is_empty());
    }
    h.backend.complete(&j.lease, None).await.unwrap();
}

pub async fn fencing(h: Harness) {
    let id = h.backend.enqueue(job("fence", 1)).await.unwrap().id;
    let stale = h.backend.claim("fence", LEASE, 1).await.unwrap().remove(0);
    h.advance(LEASE + Duration::from_secs(1));
    let fresh = h.backend.claim("fence", LEASE, 1).await.unwrap().remove(0);
    let lost = |r: basis_queue::Result<()>| matches!(r, Err(Error::LeaseLost(ref i)) if *i == id);
    assert!(lost(h.backend.complete(&stale.lease, None).await));
    assert!(lost(h.backend.retry(&stale.lease, "stale", h.now()).await));
    assert!(lost(h.backend.bury(&stale.lease, "stale").await));
    assert!(lost(h.backend.heartbeat(&stale.lease, LEASE).await));
    assert!(lost(h.backend.release(&stale.lease).await));
    assert_eq!(
        status(&h, &id).await,
        JobStatus::Running,
        "the stale worker changed nothing"
    );
    h.backend
        .complete(&fresh.lease, Some(json!("ok")))
        .await
        .unwrap();
    assert!(
        lost(h.backend.complete(&fresh.lease, None).await),
        "a lease finishes once"
    );
    let info = h.backend.job(&id).await.unwrap().unwrap();
    assert_eq!(
        (info.status, info.result),
        (JobStatus::Done, Some(json!("ok")))
    );
}

pub async fn expiry_on_last_attempt(h: Harness) {
    let mut j = job("last", 1);
    j.max_attempts = 2;
    let id = h.backend.enqueue(j).await.unwrap().id;
    h.backend.claim("last", LEASE, 1).await.unwrap();
    h.advance(LEASE);
    assert_eq!(
        h.backend.claim("last", LEASE, 1).await.unwrap()[0].attempt,
        2
    );
    h.advance(LEASE);
    assert!(h.backend.claim("last", LEASE, 1).await.unwrap().is_empty());
    assert_eq!(status(&h, &id).await, JobStatus::Dead);
    let dead = h.backend.dead_letter(&id).await.unwrap().unwrap();
    assert!(
        dead.last_error.contains("lease expired"),
        "{}",
        dead.last_error
    );
}

pub async fn dedup(h: Harness) {
    let keyed = |q: &str| {
        let mut j = job(q, 1);
        j.dedup_key = Some("user-7-digest".into());
        j
    };
    let first = h.backend.enqueue(keyed("dedup")).await.unwrap();
    assert!(!first.duplicate);
    let again = h.backend.enqueue(keyed("dedup")).await.unwrap();
    assert_eq!(
        again,
        basis_queue::Enqueued {
            id: first.id.clone(),
            duplicate: true
        }
    );
    let other_queue = h.backend.enqueue(keyed("dedup-other")).await.unwrap();
    assert!(!other_queue.duplicate);
    // Still unfinished while running.
    let claimed = h.backend.claim("dedup", LEASE, 10).await.unwrap();
    assert_eq!(claimed.len(), 1);
    assert!(h.backend.enqueue(keyed("dedup")).await.unwrap().duplicate);
    h.backend.complete(&claimed[0].lease, None).await.unwrap();
    let after = h.backend.enqueue(keyed("dedup")).await.unwrap();
    assert!(!after.duplicate, "a finished job frees its key");
    assert_ne!(after.id, first.id);
}

pub async fn retry_schedule(mut h: Harness) {
    let id = h.backend.enqueue(job("retry", 1)).await.unwrap().id;
    let j = h.backend.claim("retry", LEASE, 1).await.unwrap().remove(0);
    h.backend
        .retry(&j.lease, "smtp said 451", h.now() + 120_000)
        .await
        .unwrap();
    let info = h.backend.job(&id).await.unwrap().unwrap();
    assert_eq!((info.status, info.attempts), (JobStatus::Failed, 1));
    assert_eq!(info.last_error.as_deref(), Some("smtp said 451"));
    h.restart().await; // the schedule is stored, not held in memory
    h.advance(Duration::from_secs(119));
    assert!(h.backend.claim("retry", LEASE, 1).await.unwrap().is_empty());
    h.advance(Duration::from_secs(1));
    let again = h.backend.claim("retry", LEASE, 1).await.unwrap().remove(0);
    assert_eq!(again.attempt, 2);
}

pub async fn release(h: Harness) {
    let id = h.backend.enqueue(job("release", 1)).await.unwrap().id;
    let j = h
        .backend
        .claim("release", LEASE, 1)
        .await
        .unwrap()
        .remove(0);
    h.backend.release(&j.lease).await.unwrap();
    assert_eq!(status(&h, &id).await, JobStatus::Queued);
    let again = h
        .backend
        .claim("release", LEASE, 1)
        .await
        .unwrap()
        .remove(0);
    assert_eq!(
        again.attempt, 1,
        "a released attempt is not held against the job"
    );
    assert!(again.lease.token > j.lease.token);
}

pub async fn concurrent_claims(h: Harness) {
    for n in 0..200 {
        h.backend.enqueue(job("race", n)).await.unwrap();
    }
    let mut claimers = tokio::task::JoinSet::new();
    for _ in 0..4 {
        let backend = h.backend.clone();
        claimers.spawn(async move {
            let mut mine = Vec::new();
            loop {
                let got = backend.claim("race", LEASE, 7).await.unwrap();
                if got.is_empty() {
                    return mine;
                }
                mine.extend(got.into_iter().map(|j| j.lease.id));
            }
        });
    }
    let mut seen = HashSet::new();
    while let Some(mine) = claimers.join_next().await {
        for id in mine.unwrap() {
            assert!(seen.insert(id.clone()), "{id} handed out twice");
        }
    }
    assert_eq!(seen.len(), 200);
}

pub async fn topics(h: Harness) {
    h.backend
        .subscribe("post.published", "search")
        .await
        .unwrap();
    h.backend.subscribe("post.published", "mail").await.unwrap();
    h.backend.subscribe("post.published", "mail").await.unwrap(); // idempotent
    assert_eq!(
        h.backend
            .publish("post.published", "index", json!({ "post": 1 }))
            .await
            .unwrap(),
        2
    );
    assert_eq!(
        h.backend
            .publish("nobody.listens", "x", json!(null))
            .await
            .unwrap(),
        0
    );
    for group in ["search", "mail"] {
        let got = h
            .backend
            .claim(&topic_queue("post.published", group), LEASE, 10)
            .await
            .unwrap();
        assert_eq!(got.len(), 1, "group {group}");
        assert_eq!(got[0].payload, json!({ "post": 1 }));
        assert_eq!(got[0].kind, "index");
    }
}

pub async fn dead_letter_admin(h: Harness) {
    let mut buried = Vec::new();
    for (q, n) in [("dlq-a", 1), ("dlq-a", 2), ("dlq-b", 3)] {
        h.backend.enqueue(job(q, n)).await.unwrap();
        let j = h.backend.claim(q, LEASE, 1).await.unwrap().remove(0);
        h.backend
            .bury(&j.lease, &format!("broken {n}"))
            .await
            .unwrap();
        buried.push(j.lease.id);
        h.advance(Duration::from_secs(1));
    }
    let all = h.backend.dead_letters(None, 10).await.unwrap();
    assert_eq!(
        all.iter().map(|d| d.id.clone()).collect::<Vec<_>>(),
        buried,
        "oldest first"
    );
    assert_eq!(
        h.backend
            .dead_letters(Some("dlq-a"), 10)
            .await
            .unwrap()
            .len(),
        2
    );
    assert_eq!(h.backend.dead_letters(None, 1).await.unwrap().len(), 1);
    let shown = h.backend.dead_letter(&buried[1]).await.unwrap().unwrap();
    assert_eq!(
        (shown.queue.as_str(), shown.payload.clone(), shown.attempts),
        ("dlq-a", json!({ "n": 2 }), 1)
    );
    assert_eq!(shown.last_error, "broken 2");
    assert!(
        h.backend
            .dead_letter(&basis_queue::JobId("999999".into()))
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        h.backend
            .dead_letter(&basis_queue::JobId("not-an-id".into()))
            .await
            .unwrap()
            .is_none()
    );

    assert!(h.backend.replay(&buried[1]).await.unwrap());
    assert!(
        !h.backend.replay(&buried[1]).await.unwrap(),
        "replayed once"
    );
    assert_eq!(status(&h, &buried[1]).await, JobStatus::Queued);
    let again = h.backend.claim("dlq-a", LEASE, 1).await.unwrap().remove(0);
    assert_eq!(
        (again.lease.id.clone(), again.attempt),
        (buried[1].clone(), 1)
    );

    assert_eq!(h.backend.purge(Some("dlq-b")).await.unwrap(), 1);
    assert_eq!(h.backend.purge(None).await.unwrap(), 1);
    assert!(h.backend.dead_letters(None, 10).await.unwrap().is_empty());
}

pub async fn stats(h: Harness) {
    for n in 0..3 {
        h.backend.enqueue(job("stats", n)).await.unwrap();
    }
    h.advance(Duration::from_secs(4));
    let j = h.backend.claim("stats", LEASE, 1).await.unwrap().remove(0);
    let d = h.backend.claim("stats", LEASE, 1).await.unwrap().remove(0);
    h.backend.bury(&d.lease, "no").await.unwrap();
    let s = h
        .backend
        .stats()
        .await
        .unwrap()
        .into_iter()
        .find(|s| s.queue == "stats")
        .unwrap();
    assert_eq!((s.depth, s.running, s.dead), (1, 1, 1));
    assert_eq!(s.oldest_ready_age_ms, 4000);
    h.backend.complete(&j.lease, None).await.unwrap();
}

pub async fn invalid(h: Harness) {
    let bad = [
        NewJob::new("", "k", json!(1)),
        NewJob::new("q", " ", json!(1)),
        {
            let mut j = NewJob::new("q", "k", json!(1));
            j.max_attempts = 0;
            j
        },
    ];
    for j in bad {
        assert!(matches!(h.backend.enqueue(j).await, Err(Error::Invalid(_))));
    }
    assert!(
        h.backend
            .stats()
            .await
            .unwrap()
            .iter()
            .all(|s| s.queue != "q")
    );
}

/// Claims one job of `queue`, waiting up to 5 s for it to be delivered (a broker pushes
/// jobs to its consumer a moment after they are published).
async fn claim_soon(h: &Harness, queue: &str) -> ClaimedJob {
    for _ in 0..100 {
        if let Some(job) = h.backend.claim(queue, LEASE, 1).await.unwrap().pop() {
            return job;
        }
        h.backend
            .wait_for_work(queue, Duration::from_millis(50))
            .await;
    }
    panic!("nothing to claim on {queue} within 5 s");
}

pub async fn trace_context(h: Harness) {
    const PARENT: &str = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
    let mut traced = job("traced", 1);
    traced.traceparent = Some(PARENT.into());
    h.backend.enqueue(traced).await.unwrap();
    let first = claim_soon(&h, "traced").await;
    assert_eq!(first.traceparent.as_deref(), Some(PARENT));
    // Every attempt continues the trace of the enqueue.
    h.backend
        .retry(&first.lease, "try again", h.now())
        .await
        .unwrap();
    let second = claim_soon(&h, "traced").await;
    assert_eq!(second.attempt, 2);
    assert_eq!(second.traceparent.as_deref(), Some(PARENT));
    h.backend.complete(&second.lease, None).await.unwrap();

    // Batches keep each job's own context; without a trace exporter a job carries none.
    let mut batch = vec![job("traced-many", 1), job("traced-many", 2)];
    batch[0].traceparent = Some(PARENT.into());
    h.backend.enqueue_many(batch).await.unwrap();
    let mut claimed = [
        claim_soon(&h, "traced-many").await,
        claim_soon(&h, "traced-many").await,
    ];
    claimed.sort_by_key(|j| j.payload["n"].as_i64());
    assert_eq!(claimed[0].traceparent.as_deref(), Some(PARENT));
    assert_eq!(claimed[1].traceparent, None);
    for j in &claimed {
        h.backend.complete(&j.lease, None).await.unwrap();
    }

    // A dead letter keeps the context, and its replay runs in the same trace.
    let mut doomed = job("traced-dead", 1);
    doomed.traceparent = Some(PARENT.into());
    h.backend.enqueue(doomed).await.unwrap();
    let dying = claim_soon(&h, "traced-dead").await;
    h.backend.bury(&dying.lease, "broken").await.unwrap();
    let dead = h
        .backend
        .dead_letters(Some("traced-dead"), 10)
        .await
        .unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].traceparent.as_deref(), Some(PARENT));
    assert!(h.backend.replay(&dead[0].id).await.unwrap());
    let replayed = claim_soon(&h, "traced-dead").await;
    assert_eq!(replayed.traceparent.as_deref(), Some(PARENT));
}
