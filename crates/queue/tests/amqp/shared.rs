//! The shared conformance cases that hold on RabbitMQ as written. The others read job status
//! (`Backend::job`, which RabbitMQ cannot answer), expect due-time order among ready jobs,
//! move time with the manual clock where the broker's TTLs run on real time, or expect a
//! claim to see jobs the broker is still pushing (`concurrent_claims` stops at the first empty
//! claim); each has an adapted twin in this suite (see `docs/queue.md`).

use std::sync::Arc;

use basis_queue::amqp::AmqpQueue;
use basis_queue::{Backend, Clock, ManualClock};

use super::conformance::{self, Harness};
use super::{amqp_url, config, namespace};

/// A harness on a fresh namespace; `restart` reconnects to the same namespace.
async fn harness() -> Option<(Harness, AmqpQueue)> {
    let url = amqp_url()?;
    let ns = namespace();
    let clock = Arc::new(ManualClock::new(1_700_000_000_000));
    let open = {
        let (url, ns, clock) = (url.clone(), ns.clone(), clock.clone());
        move || {
            let (url, ns, clock) = (url.clone(), ns.clone(), clock.clone());
            async move {
                let clock: Arc<dyn Clock> = clock;
                AmqpQueue::connect_with(&url, clock, config(&ns))
                    .await
                    .expect("connect")
            }
        }
    };
    let queue = open().await;
    let backend: Arc<dyn Backend> = Arc::new(queue.clone());
    let reopen: conformance::Reopen = Box::new(move || {
        let open = open.clone();
        Box::pin(async move { Arc::new(open().await) as Arc<dyn Backend> })
    });
    Some((Harness::new(backend, clock, reopen), queue))
}

macro_rules! shared_cases {
    ($($name:ident => $case:ident),* $(,)?) => {$(
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $name() {
            let Some((h, queue)) = harness().await else { return };
            conformance::$case(h).await;
            queue.teardown().await.expect("teardown");
        }
    )*};
}

shared_cases!(
    a_heartbeat_keeps_the_lease => heartbeat_keeps_lease,
    a_deduplication_key_admits_one_unfinished_job => dedup,
    every_subscriber_group_receives_every_published_message => topics,
    invalid_jobs_are_refused => invalid,
    request_reply_returns_the_handlers_result => request_reply,
    request_reply_times_out_without_a_responder => request_timeout,
    request_reply_reports_a_request_that_died => request_remote_failure,
    a_job_carries_its_trace_context_through_claims_retries_batches_and_dead_letters => trace_context,
);
