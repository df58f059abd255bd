//! Conformance cases that run the real worker against the backend.

use std::sync::Arc;
use std::time::Duration;

use basis_queue::worker::{Backoff, Registry, Worker, WorkerConfig};
use basis_queue::{Clock, Error, JobError, JobId, JobStatus, handler_fn, reply};
use serde_json::json;
use tokio::sync::{Notify, oneshot};

use super::{Harness, job, status};

fn config(queue: &str) -> WorkerConfig {
    let mut c = WorkerConfig::new([queue]);
    c.concurrency = 4;
    c.poll = Duration::from_millis(20);
    c.heartbeat = Duration::from_millis(50);
    // The tests move the manual clock in steps of up to two minutes to make retries due; a
    // lease shorter than a step could expire under a job that is still running.
    c.lease = Duration::from_secs(3600);
    c.shutdown_grace = Duration::from_secs(5);
    c.backoff = Backoff {
        base: Duration::from_secs(1),
        max: Duration::from_secs(60),
    };
    c
}

/// A running worker and the switch that stops it.
struct Running {
    stop: oneshot::Sender<()>,
    done: tokio::task::JoinHandle<basis_queue::worker::WorkerReport>,
}

fn start(h: &Harness, config: WorkerConfig, registry: Registry) -> Running {
    let clock: Arc<dyn Clock> = h.clock.clone();
    let worker = Worker::new(h.backend.clone(), clock, config, registry);
    let (stop, stopped) = oneshot::channel::<()>();
    let done = tokio::spawn(worker.run(async move {
        let _ = stopped.await;
    }));
    Running { stop, done }
}

impl Running {
    async fn stop(self) -> basis_queue::worker::WorkerReport {
        let _ = self.stop.send(());
        self.done.await.expect("worker task")
    }
}

/// Polls until the job reaches `want` (bounded: 10 s), advancing the clock by `step` each
/// round so scheduled retries come due.
async fn until_status(h: &Harness, id: &JobId, want: JobStatus, step: Duration) {
    for _ in 0..500 {
        if status(h, id).await == want {
            return;
        }
        h.advance(step);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!(
        "job {id} never reached {want:?}; it is {:?}",
        status(h, id).await
    );
}

pub async fn worker_completes(h: Harness) {
    let registry = Registry::new().handle(
        "work",
        handler_fn(|j| async move {
            Ok(Some(
                json!({ "double": j.payload["n"].as_i64().unwrap_or(0) * 2 }),
            ))
        }),
    );
    let w = start(&h, config("w-ok"), registry);
    let id = h.backend.enqueue(job("w-ok", 21)).await.unwrap().id;
    until_status(&h, &id, JobStatus::Done, Duration::ZERO).await;
    let info = h.backend.job(&id).await.unwrap().unwrap();
    assert_eq!(
        (info.attempts, info.result),
        (1, Some(json!({ "double": 42 })))
    );
    assert!(w.stop().await.claimed >= 1);
}

pub async fn worker_max_attempts(h: Harness) {
    let registry = Registry::new().handle(
        "work",
        handler_fn(|_| async { Err(JobError::Retry("upstream 503".into())) }),
    );
    let w = start(&h, config("w-max"), registry);
    let mut j = job("w-max", 1);
    j.max_attempts = 3;
    let id = h.backend.enqueue(j).await.unwrap().id;
    until_status(&h, &id, JobStatus::Dead, Duration::from_secs(120)).await;
    w.stop().await;
    let dead = h.backend.dead_letter(&id).await.unwrap().unwrap();
    assert_eq!(
        (dead.attempts, dead.last_error.as_str()),
        (3, "upstream 503")
    );
}

pub async fn worker_poison(h: Harness) {
    #[derive(serde::Deserialize)]
    struct Resize {
        #[allow(dead_code)]
        width: u32,
    }
    let registry = Registry::new().handle(
        "work",
        handler_fn(|j| async move {
            serde_json::from_value::<Resize>(j.payload.clone()).map_err(JobError::bad_payload)?;
            Ok(None)
        }),
    );
    let w = start(&h, config("w-poison"), registry);
    let id = h.backend.enqueue(job("w-poison", 1)).await.unwrap().id; // {"n":1}: no width
    until_status(&h, &id, JobStatus::Dead, Duration::ZERO).await;
    w.stop().await;
    let dead = h.backend.dead_letter(&id).await.unwrap().unwrap();
    assert_eq!(dead.attempts, 1, "no retries for a poison message");
    assert!(
        dead.last_error.contains("payload does not deserialise"),
        "{}",
        dead.last_error
    );
}

pub async fn worker_panic(h: Harness) {
    let registry = Registry::new().handle(
        "work",
        handler_fn(|j| async move {
            if j.attempt == 1 {
                panic!("index out of bounds");
            }
            Ok(Some(json!("second time lucky")))
        }),
    );
    let w = start(&h, config("w-panic"), registry);
    let id = h.backend.enqueue(job("w-panic", 1)).await.unwrap().id;
    until_status(&h, &id, JobStatus::Failed, Duration::ZERO).await;
    let info = h.backend.job(&id).await.unwrap().unwrap();
    assert!(
        info.last_error
            .unwrap_or_default()
            .contains("handler panicked: index out of bounds")
    );
    until_status(&h, &id, JobStatus::Done, Duration::from_secs(5)).await;
    assert_eq!(h.backend.job(&id).await.unwrap().unwrap().attempts, 2);
    w.stop().await;
}

pub async fn request_reply(h: Harness) {
    let registry = Registry::new().handle(
        "add",
        handler_fn(|j| async move {
            let sum = j.payload["a"].as_i64().unwrap_or(0) + j.payload["b"].as_i64().unwrap_or(0);
            Ok(Some(json!(sum)))
        }),
    );
    let w = start(&h, config("rpc"), registry);
    for (a, b) in [(2, 3), (40, 2)] {
        let got = reply::request(
            h.backend.as_ref(),
            "rpc",
            "add",
            json!({ "a": a, "b": b }),
            Duration::from_secs(10),
        )
        .await
        .unwrap();
        assert_eq!(got, json!(a + b));
    }
    w.stop().await;
}

pub async fn request_timeout(h: Harness) {
    let started = std::time::Instant::now();
    let got = reply::request(
        h.backend.as_ref(),
        "nobody-home",
        "add",
        json!({}),
        Duration::from_millis(300),
    )
    .await;
    assert!(matches!(got, Err(Error::Timeout(_))), "{got:?}");
    assert!(started.elapsed() < Duration::from_secs(5));
}

pub async fn request_remote_failure(h: Harness) {
    let registry = Registry::new().handle(
        "add",
        handler_fn(|_| async { Err(JobError::Fatal("cannot add apples".into())) }),
    );
    let w = start(&h, config("rpc-fail"), registry);
    let got = reply::request(
        h.backend.as_ref(),
        "rpc-fail",
        "add",
        json!({}),
        Duration::from_secs(10),
    )
    .await;
    assert!(
        matches!(&got, Err(Error::Remote(why)) if why == "cannot add apples"),
        "{got:?}"
    );
    w.stop().await;
}

pub async fn graceful_shutdown(h: Harness) {
    let gate = Arc::new(Notify::new());
    let g = gate.clone();
    let registry = Registry::new()
        .handle(
            "brief",
            handler_fn(move |_| {
                let g = g.clone();
                async move {
                    g.notified().await;
                    Ok(Some(json!("finished during the grace period")))
                }
            }),
        )
        .handle(
            "endless",
            handler_fn(|_| async {
                std::future::pending::<()>().await;
                Ok(None)
            }),
        );
    let mut cfg = config("shutdown");
    cfg.shutdown_grace = Duration::from_millis(500);
    let w = start(&h, cfg, registry);
    let brief = h
        .backend
        .enqueue(basis_queue::NewJob::new("shutdown", "brief", json!({})))
        .await
        .unwrap()
        .id;
    let endless = h
        .backend
        .enqueue(basis_queue::NewJob::new("shutdown", "endless", json!({})))
        .await
        .unwrap()
        .id;
    until_status(&h, &brief, JobStatus::Running, Duration::ZERO).await;
    until_status(&h, &endless, JobStatus::Running, Duration::ZERO).await;
    let _ = w.stop.send(());
    // Shutdown has begun: no new work is claimed from now on.
    let late = h
        .backend
        .enqueue(basis_queue::NewJob::new("shutdown", "brief", json!({})))
        .await
        .unwrap()
        .id;
    gate.notify_one();
    let report = w.done.await.unwrap();
    // `endless` is released; so is `late` if a claim already on its way picked it up.
    assert!(
        (1..=2).contains(&report.released),
        "released {}",
        report.released
    );
    assert_eq!(status(&h, &brief).await, JobStatus::Done);
    let info = h.backend.job(&endless).await.unwrap().unwrap();
    assert_eq!(
        (info.status, info.attempts),
        (JobStatus::Queued, 0),
        "released, attempt given back"
    );
    let late = h.backend.job(&late).await.unwrap().unwrap();
    assert_eq!(
        (late.status, late.attempts),
        (JobStatus::Queued, 0),
        "never started after the stop"
    );
}

/// With `prefetch`, a worker whose slot is busy still holds the next jobs (claimed ahead,
/// so one claim serves many); a job held ahead for half its lease is released unstarted
/// and claimed again, never run on a lease about to lapse; each job runs once.
pub async fn worker_claims_ahead(h: Harness) {
    let gate = Arc::new(Notify::new());
    let (started_tx, started) = oneshot::channel::<()>();
    let started_tx = Arc::new(std::sync::Mutex::new(Some(started_tx)));
    let runs = Arc::new(std::sync::Mutex::new(Vec::<i64>::new()));
    let (g, r) = (gate.clone(), runs.clone());
    let registry = Registry::new().handle(
        "work",
        handler_fn(move |j| {
            let (g, r, started_tx) = (g.clone(), r.clone(), started_tx.clone());
            async move {
                let n = j.payload["n"].as_i64().unwrap_or(-1);
                if n == 0 {
                    if let Some(tx) = started_tx.lock().unwrap().take() {
                        let _ = tx.send(());
                    }
                    g.notified().await;
                }
                r.lock().unwrap().push(n);
                Ok(None)
            }
        }),
    );
    let mut cfg = config("w-ahead");
    cfg.concurrency = 1;
    cfg.prefetch = 8;
    cfg.lease = Duration::from_secs(60);
    let w = start(&h, cfg, registry);
    // One job first, so the worker knows its jobs are short.
    let warm = h.backend.enqueue(job("w-ahead", 1)).await.unwrap().id;
    until_status(&h, &warm, JobStatus::Done, Duration::ZERO).await;

    // The blocking job 0 first, then three short ones, visible at once.
    let ids: Vec<JobId> = h
        .backend
        .enqueue_many(
            (0..4)
                .map(|n| job("w-ahead", if n == 0 { 0 } else { n + 1 }))
                .collect(),
        )
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.id)
        .collect();
    tokio::time::timeout(Duration::from_secs(10), started)
        .await
        .expect("job 0 starts")
        .unwrap();
    // The one slot is busy, yet the others are claimed: held in the worker.
    let mut held = 0;
    for id in &ids[1..] {
        match status(&h, id).await {
            JobStatus::Running => held += 1,
            JobStatus::Done => {}
            other => panic!("job {id} is {other:?}: not claimed ahead"),
        }
    }
    assert!(held > 0, "some job waits, claimed, behind the busy slot");
    // Half the lease passes while they wait: they must not start on it any more.
    h.advance(Duration::from_secs(31));
    gate.notify_one();
    for id in &ids {
        until_status(&h, id, JobStatus::Done, Duration::ZERO).await;
    }
    let report = w.stop().await;
    assert_eq!(
        report.claimed,
        1 + 4 + held,
        "the {held} held jobs were released and claimed again"
    );
    let mut ran = runs.lock().unwrap().clone();
    ran.sort_unstable();
    assert_eq!(ran, [0, 1, 2, 3, 4], "each job ran once");
    for id in &ids[1..] {
        let info = h.backend.job(id).await.unwrap().unwrap();
        assert_eq!(info.attempts, 1, "a release gives its attempt back");
    }
}
