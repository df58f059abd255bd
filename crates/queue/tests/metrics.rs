//! The worker's and backends' metrics, read back from a real Prometheus recorder (installed
//! globally: this test binary holds only this test).

use std::sync::Arc;
use std::time::Duration;

use basis_queue::sqlite::SqliteQueue;
use basis_queue::worker::{Registry, Worker, WorkerConfig};
use basis_queue::{Backend, Clock, JobError, JobStatus, ManualClock, NewJob, handler_fn};
use serde_json::json;

fn line<'a>(text: &'a str, starts: &str) -> Option<&'a str> {
    text.lines().find(|l| l.starts_with(starts))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outcomes_latency_depth_and_lease_expiries_are_measured() {
    let prometheus = metrics_exporter_prometheus::PrometheusBuilder::new()
        .install_recorder()
        .expect("the only recorder of this binary");
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("m.db").display());
    let manual = Arc::new(ManualClock::new(1_700_000_000_000));
    let clock: Arc<dyn Clock> = manual.clone();
    let queue = SqliteQueue::connect(&url, clock.clone()).await.unwrap();
    queue.install().await.unwrap();
    let backend: Arc<dyn Backend> = Arc::new(queue);

    // A lease that runs out and is claimed again counts one expiry.
    backend
        .enqueue(NewJob::new("m-expire", "x", json!({})))
        .await
        .unwrap();
    backend
        .claim("m-expire", Duration::from_secs(5), 1)
        .await
        .unwrap();
    manual.advance(Duration::from_secs(6));
    assert_eq!(
        backend
            .claim("m-expire", Duration::from_secs(5), 1)
            .await
            .unwrap()
            .len(),
        1
    );

    // One claim over several queues counts each queue's expiries under its own name.
    let both = ["m-expire-a".to_owned(), "m-expire-b".to_owned()];
    for (q, n) in [("m-expire-a", 1), ("m-expire-b", 2), ("m-expire-b", 3)] {
        backend
            .enqueue(NewJob::new(q, "x", json!({ "n": n })))
            .await
            .unwrap();
    }
    let lease = Duration::from_secs(5);
    assert_eq!(backend.claim_from(&both, lease, 10).await.unwrap().len(), 3);
    manual.advance(Duration::from_secs(6));
    assert_eq!(backend.claim_from(&both, lease, 10).await.unwrap().len(), 3);

    // Three jobs waiting, the oldest for 90 s.
    for _ in 0..3 {
        backend
            .enqueue(NewJob::new("m-depth", "x", json!({})))
            .await
            .unwrap();
    }
    manual.advance(Duration::from_secs(90));
    basis_queue::metrics::record_stats(backend.as_ref())
        .await
        .unwrap();

    let registry = Registry::new()
        .handle("ok", handler_fn(|_| async { Ok(None) }))
        .handle(
            "bad",
            handler_fn(|_| async { Err(JobError::Retry("nope".into())) }),
        );
    let mut config = WorkerConfig::new(["m-work"]);
    config.poll = Duration::from_millis(20);
    let worker = Worker::new(backend.clone(), clock, config, registry);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let run = tokio::spawn(worker.run(async move {
        let _ = stopped.await;
    }));
    let ok = backend
        .enqueue(NewJob::new("m-work", "ok", json!({})))
        .await
        .unwrap()
        .id;
    let mut bad = NewJob::new("m-work", "bad", json!({}));
    bad.max_attempts = 1;
    let bad = backend.enqueue(bad).await.unwrap().id;
    for _ in 0..500 {
        let done = backend.job(&ok).await.unwrap().unwrap().status == JobStatus::Done;
        let dead = backend.job(&bad).await.unwrap().unwrap().status == JobStatus::Dead;
        if done && dead {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let _ = stop.send(());
    run.await.unwrap();

    let text = prometheus.render();
    for (prefix, want) in [
        (
            r#"queue_jobs_total{queue="m-work",outcome="processed"}"#,
            "1",
        ),
        (r#"queue_jobs_total{queue="m-work",outcome="failed"}"#, "1"),
        (r#"queue_jobs_total{queue="m-work",outcome="dead"}"#, "1"),
        (r#"queue_lease_expiries_total{queue="m-expire"}"#, "1"),
        (r#"queue_lease_expiries_total{queue="m-expire-a"}"#, "1"),
        (r#"queue_lease_expiries_total{queue="m-expire-b"}"#, "2"),
        (r#"queue_depth{queue="m-depth"}"#, "3"),
        (r#"queue_oldest_ready_age_seconds{queue="m-depth"}"#, "90"),
        (r#"queue_processing_seconds_count{queue="m-work"}"#, "2"),
    ] {
        let got = line(&text, prefix).unwrap_or_else(|| panic!("no {prefix} in:\n{text}"));
        assert_eq!(got.rsplit(' ').next(), Some(want), "{got}");
    }
    assert!(
        line(
            &text,
            r#"queue_jobs_total{queue="m-work",outcome="retried"}"#
        )
        .is_none(),
        "out of attempts: not retried"
    );
}
