//! The real worker on RabbitMQ. Job status is not kept by this backend, so outcomes are
//! observed through the handlers' effects and the dead letters.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use basis_queue::worker::{Backoff, Registry, Worker, WorkerConfig, WorkerReport};
use basis_queue::{Backend, Clock, JobError, NewJob, SystemClock, handler_fn};
use serde_json::json;
use tokio::sync::{Notify, mpsc, oneshot};

use super::{LEASE, PATIENCE, amqp_url, backend, claim_one, namespace};

fn config(queue: &str) -> WorkerConfig {
    let mut c = WorkerConfig::new([queue]);
    c.concurrency = 4;
    c.poll = Duration::from_millis(50);
    c.heartbeat = Duration::from_millis(100);
    c.lease = Duration::from_secs(5);
    c.shutdown_grace = Duration::from_millis(500);
    // Backoff lands on the test namespace's short wait levels.
    c.backoff = Backoff {
        base: Duration::from_millis(100),
        max: Duration::from_millis(400),
    };
    c
}

struct Running {
    stop: oneshot::Sender<()>,
    done: tokio::task::JoinHandle<WorkerReport>,
}

fn start(backend: Arc<dyn Backend>, config: WorkerConfig, registry: Registry) -> Running {
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let (stop, stopped) = oneshot::channel::<()>();
    let done = tokio::spawn(
        Worker::new(backend, clock, config, registry).run(async move {
            let _ = stopped.await;
        }),
    );
    Running { stop, done }
}

impl Running {
    async fn stop(self) -> WorkerReport {
        let _ = self.stop.send(());
        self.done.await.expect("worker task")
    }
}

/// Polls the dead letters of `queue` until one is there (bounded).
async fn first_dead_letter(q: &dyn Backend, queue: &str) -> basis_queue::DeadJob {
    let deadline = Instant::now() + PATIENCE;
    loop {
        if let Some(d) = q.dead_letters(Some(queue), 1).await.expect("list").pop() {
            return d;
        }
        assert!(
            Instant::now() < deadline,
            "nothing reached the dead letters of {queue}"
        );
        q.wait_for_work(&format!("{queue}-idle"), Duration::from_millis(50))
            .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_worker_runs_each_job_once_and_acks_it() {
    let Some(url) = amqp_url() else { return };
    let q = backend(&url, &namespace()).await;
    let (tx, mut rx) = mpsc::unbounded_channel();
    let registry = Registry::new().handle(
        "double",
        handler_fn(move |j| {
            let tx = tx.clone();
            async move {
                let _ = tx.send(j.payload["n"].as_i64().unwrap_or(0) * 2);
                Ok(None)
            }
        }),
    );
    let w = start(Arc::new(q.clone()), config("w-ok"), registry);
    for n in 0..20 {
        q.enqueue(NewJob::new("w-ok", "double", json!({"n": n})))
            .await
            .expect("enqueue");
    }
    let mut seen = Vec::new();
    while seen.len() < 20 {
        let got = tokio::time::timeout(PATIENCE, rx.recv())
            .await
            .expect("in time")
            .expect("open");
        seen.push(got);
    }
    seen.sort_unstable();
    assert_eq!(seen, (0..20).map(|n| n * 2).collect::<Vec<_>>());
    let report = w.stop().await;
    assert_eq!(report.claimed, 20, "each job ran exactly once");
    let stats = q.stats().await.expect("stats");
    assert_eq!((stats[0].depth, stats[0].running, stats[0].dead), (0, 0, 0));
    q.teardown().await.expect("teardown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_worker_backs_off_and_dead_letters_after_the_maximum_attempts() {
    let Some(url) = amqp_url() else { return };
    let q = backend(&url, &namespace()).await;
    let runs = Arc::new(AtomicU32::new(0));
    let r = runs.clone();
    let registry = Registry::new().handle(
        "flaky",
        handler_fn(move |_| {
            r.fetch_add(1, Ordering::SeqCst);
            async { Err(JobError::Retry("upstream 503".into())) }
        }),
    );
    let w = start(Arc::new(q.clone()), config("w-max"), registry);
    let mut job = NewJob::new("w-max", "flaky", json!({}));
    job.max_attempts = 3;
    let id = q.enqueue(job).await.expect("enqueue").id;
    let dead = first_dead_letter(&q, "w-max").await;
    w.stop().await;
    assert_eq!(
        (dead.id, dead.attempts, dead.last_error.as_str()),
        (id, 3, "upstream 503")
    );
    assert_eq!(runs.load(Ordering::SeqCst), 3);
    q.teardown().await.expect("teardown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_poison_payload_is_dead_lettered_on_its_first_attempt() {
    let Some(url) = amqp_url() else { return };
    let q = backend(&url, &namespace()).await;
    #[derive(serde::Deserialize)]
    struct Resize {
        #[allow(dead_code)]
        width: u32,
    }
    let registry = Registry::new().handle(
        "resize",
        handler_fn(|j| async move {
            serde_json::from_value::<Resize>(j.payload.clone()).map_err(JobError::bad_payload)?;
            Ok(None)
        }),
    );
    let w = start(Arc::new(q.clone()), config("w-poison"), registry);
    q.enqueue(NewJob::new("w-poison", "resize", json!({"height": 3})))
        .await
        .expect("enqueue");
    let dead = first_dead_letter(&q, "w-poison").await;
    w.stop().await;
    assert_eq!(dead.attempts, 1, "no retries for a poison message");
    assert!(
        dead.last_error.contains("payload does not deserialise"),
        "{}",
        dead.last_error
    );
    q.teardown().await.expect("teardown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handler_panic_is_a_failed_attempt_and_the_retry_succeeds() {
    let Some(url) = amqp_url() else { return };
    let q = backend(&url, &namespace()).await;
    let (tx, mut rx) = mpsc::unbounded_channel();
    let registry = Registry::new().handle(
        "fragile",
        handler_fn(move |j| {
            let tx = tx.clone();
            async move {
                if j.attempt == 1 {
                    panic!("index out of bounds");
                }
                let _ = tx.send(j.attempt);
                Ok(None)
            }
        }),
    );
    let w = start(Arc::new(q.clone()), config("w-panic"), registry);
    q.enqueue(NewJob::new("w-panic", "fragile", json!({})))
        .await
        .expect("enqueue");
    let attempt = tokio::time::timeout(PATIENCE, rx.recv())
        .await
        .expect("in time");
    assert_eq!(attempt, Some(2));
    w.stop().await;
    q.teardown().await.expect("teardown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_finishes_in_flight_work_and_releases_the_rest() {
    let Some(url) = amqp_url() else { return };
    let q = backend(&url, &namespace()).await;
    let gate = Arc::new(Notify::new());
    let started = Arc::new(AtomicU32::new(0));
    let (g, s1, s2) = (gate.clone(), started.clone(), started.clone());
    let registry = Registry::new()
        .handle(
            "brief",
            handler_fn(move |_| {
                let g = g.clone();
                s1.fetch_add(1, Ordering::SeqCst);
                async move {
                    g.notified().await;
                    Ok(None)
                }
            }),
        )
        .handle(
            "endless",
            handler_fn(move |_| {
                s2.fetch_add(1, Ordering::SeqCst);
                async {
                    std::future::pending::<()>().await;
                    Ok(None)
                }
            }),
        );
    let w = start(Arc::new(q.clone()), config("shutdown"), registry);
    q.enqueue(NewJob::new("shutdown", "brief", json!({})))
        .await
        .expect("enqueue");
    q.enqueue(NewJob::new("shutdown", "endless", json!({})))
        .await
        .expect("enqueue");
    let deadline = Instant::now() + PATIENCE;
    while started.load(Ordering::SeqCst) < 2 {
        assert!(Instant::now() < deadline, "both jobs should start");
        q.wait_for_work("shutdown-idle", Duration::from_millis(20))
            .await;
    }
    let stopping = tokio::spawn(w.stop());
    gate.notify_one();
    let report = stopping.await.expect("stopped");
    assert_eq!(report.released, 1, "the endless job was given back");
    // The released job is back, its attempt not counted; the finished one is gone.
    let back = claim_one(&q, "shutdown", LEASE).await;
    assert_eq!((back.kind.as_str(), back.attempt), ("endless", 1));
    q.complete(&back.lease, None).await.expect("complete");
    assert!(
        q.claim("shutdown", LEASE, 10)
            .await
            .expect("claim")
            .is_empty()
    );
    q.teardown().await.expect("teardown");
}
