//! The producer side of `bench/queue/run.sh`: enqueues `noop` jobs stamped with their
//! enqueue time (`payload.t`, Unix µs) and reports when the last one has finished.
//!
//! `bench_produce <url> <jobs> <burst|paced|bulk|drain> [producers]`
//! - `burst`: `producers` tasks enqueue as fast as they can, one job per transaction; prints
//!   `elapsed_ms <ms>` from the first enqueue to the moment no job is left unfinished;
//! - `paced`: one job every `$PACE_MS` ms (default 2; for enqueue-to-start latency);
//! - `bulk`: all jobs in one `enqueue_many`; prints `enqueued_ms` and returns at once;
//! - `drain`: enqueues nothing; waits for the first of `jobs` waiting jobs to finish, then
//!   prints `elapsed_ms` from there to the moment none is left (the drain of a backlog).

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, Instant};

use basis_queue::postgres::PostgresQueue;
use basis_queue::sqlite::SqliteQueue;
use basis_queue::{Backend, Clock, NewJob, SystemClock};
use serde_json::json;

fn micros_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as i64)
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [url, jobs, mode, rest @ ..] = args.as_slice() else {
        return Err("usage: bench_produce <url> <jobs> <burst|paced> [producers]".into());
    };
    let jobs: i64 = jobs.parse()?;
    let producers: i64 = rest.first().map_or(Ok(8), |s| s.parse())?;
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let backend: Arc<dyn Backend> = if url.starts_with("sqlite:") {
        let q = SqliteQueue::connect(url, clock).await?;
        q.install().await?;
        Arc::new(q)
    } else if url.starts_with("amqp://") {
        basis_queue::connect(url, clock).await?
    } else {
        let q = PostgresQueue::connect(url, clock).await?;
        q.install().await?;
        Arc::new(q)
    };
    if mode == "bulk" {
        let batch = (0..jobs)
            .map(|_| NewJob::new("bench", "noop", json!({ "t": micros_now() })))
            .collect();
        let started = Instant::now();
        backend.enqueue_many(batch).await?;
        println!("enqueued_ms {}", started.elapsed().as_millis());
        return Ok(());
    }
    if mode == "drain" {
        wait_until(backend.as_ref(), |left| left >= jobs as u64).await?;
        println!("waiting");
        wait_until(backend.as_ref(), |left| left < jobs as u64).await?;
        let started = Instant::now();
        wait_until(backend.as_ref(), |left| left == 0).await?;
        println!("elapsed_ms {}", started.elapsed().as_millis());
        return Ok(());
    }
    let started = Instant::now();
    if mode == "paced" {
        let pace = std::env::var("PACE_MS").map_or(Ok(2), |ms| ms.parse())?;
        let mut tick = tokio::time::interval(Duration::from_millis(pace));
        for _ in 0..jobs {
            tick.tick().await;
            backend
                .enqueue(NewJob::new("bench", "noop", json!({ "t": micros_now() })))
                .await?;
        }
    } else {
        let next = Arc::new(AtomicI64::new(0));
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..producers {
            let (backend, next) = (backend.clone(), next.clone());
            tasks.spawn(async move {
                while next.fetch_add(1, Ordering::Relaxed) < jobs {
                    let job = NewJob::new("bench", "noop", json!({ "t": micros_now() }));
                    backend.enqueue(job).await?;
                }
                Ok::<_, basis_queue::Error>(())
            });
        }
        while let Some(done) = tasks.join_next().await {
            done??;
        }
    }
    let enqueued = started.elapsed();
    wait_until(backend.as_ref(), |left| left == 0).await?;
    println!("enqueued_ms {}", enqueued.as_millis());
    println!("elapsed_ms {}", started.elapsed().as_millis());
    Ok(())
}

/// Polls every 5 ms (at most 300 s) until the unfinished jobs of `bench` satisfy `done`.
async fn wait_until(
    backend: &dyn Backend,
    done: impl Fn(u64) -> bool,
) -> Result<(), Box<dyn std::error::Error>> {
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let stats = backend.stats().await?;
        let left: u64 = stats
            .iter()
            .filter(|s| s.queue == "bench")
            .map(|s| s.depth + s.running)
            .sum();
        if done(left) {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(format!("{left} jobs still unfinished after 300 s").into());
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}
