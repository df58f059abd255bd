//! A stand-alone worker process for the chaos test and the benchmarks (not the product's
//! `basis worker`, which runs the product's handlers).
//!
//! `queue-worker <url> <queue> <handler> [concurrency] [lease_ms]`, handler one of:
//! - `effect`: applies an idempotent effect keyed by job id (a row in `chaos_effects` and, the
//!   first time only, `n` added to `chaos_total`), after noting the run in `chaos_runs`;
//! - `noop`: does nothing but note how late the job started (`payload.t`, Unix µs); on
//!   SIGTERM the process prints `latencies_us <n> <p50> <p99>`, appends each latency to
//!   `$LATENCY_FILE` if set, and exits.
//!
//! Stops gracefully on SIGTERM or Ctrl-C.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use basis_queue::postgres::PostgresQueue;
use basis_queue::sqlite::SqliteQueue;
use basis_queue::worker::{Backoff, Registry, Worker, WorkerConfig};
use basis_queue::{Backend, Clock, Handler, JobError, SystemClock, handler_fn};

fn micros_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as i64)
}

fn retry(e: impl std::fmt::Display) -> JobError {
    JobError::Retry(e.to_string())
}

fn effect_args(job: &basis_queue::ClaimedJob) -> Result<(i64, i64), JobError> {
    let id = job
        .lease
        .id
        .0
        .parse::<i64>()
        .map_err(JobError::bad_payload)?;
    let n = job.payload["n"]
        .as_i64()
        .ok_or_else(|| JobError::bad_payload("no n"))?;
    Ok((id, n))
}

fn sqlite_effect(pool: sqlx::SqlitePool) -> Arc<dyn Handler> {
    handler_fn(move |job| {
        let pool = pool.clone();
        async move {
            let (id, n) = effect_args(&job)?;
            sqlx::query("INSERT INTO chaos_runs (job_id) VALUES ($1)")
                .bind(id)
                .execute(&pool)
                .await
                .map_err(retry)?;
            let mut tx = pool.begin_with("BEGIN IMMEDIATE").await.map_err(retry)?;
            let fresh = sqlx::query(
                "INSERT INTO chaos_effects (job_id, n) VALUES ($1, $2) ON CONFLICT DO NOTHING",
            )
            .bind(id)
            .bind(n)
            .execute(&mut *tx)
            .await
            .map_err(retry)?;
            if fresh.rows_affected() == 1 {
                sqlx::query("UPDATE chaos_total SET total = total + $1")
                    .bind(n)
                    .execute(&mut *tx)
                    .await
                    .map_err(retry)?;
            }
            tx.commit().await.map_err(retry)?;
            Ok(None)
        }
    })
}

fn postgres_effect(pool: sqlx::PgPool) -> Arc<dyn Handler> {
    handler_fn(move |job| {
        let pool = pool.clone();
        async move {
            let (id, n) = effect_args(&job)?;
            sqlx::query("INSERT INTO chaos_runs (job_id) VALUES ($1)")
                .bind(id)
                .execute(&pool)
                .await
                .map_err(retry)?;
            let mut tx = pool.begin().await.map_err(retry)?;
            let fresh = sqlx::query(
                "INSERT INTO chaos_effects (job_id, n) VALUES ($1, $2) ON CONFLICT DO NOTHING",
            )
            .bind(id)
            .bind(n)
            .execute(&mut *tx)
            .await
            .map_err(retry)?;
            if fresh.rows_affected() == 1 {
                sqlx::query("UPDATE chaos_total SET total = total + $1")
                    .bind(n)
                    .execute(&mut *tx)
                    .await
                    .map_err(retry)?;
            }
            tx.commit().await.map_err(retry)?;
            Ok(None)
        }
    })
}

fn percentile(sorted: &[i64], p: f64) -> i64 {
    if sorted.is_empty() {
        return 0;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [url, queue, mode, rest @ ..] = args.as_slice() else {
        return Err(
            "usage: queue-worker <url> <queue> <effect|noop> [concurrency] [lease_ms]".into(),
        );
    };
    let concurrency: usize = rest.first().map_or(Ok(8), |s| s.parse())?;
    let lease_ms: u64 = rest.get(1).map_or(Ok(30_000), |s| s.parse())?;
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let latencies = Arc::new(Mutex::new(Vec::<i64>::new()));
    let (backend, handler): (Arc<dyn Backend>, Arc<dyn Handler>) = if url.starts_with("sqlite:") {
        let q = SqliteQueue::connect(url, clock.clone()).await?;
        let h = sqlite_effect(q.pool().clone());
        (Arc::new(q), h)
    } else if url.starts_with("amqp://") {
        // RabbitMQ runs the no-op handler only: the effect handler writes to a SQL database.
        let q = basis_queue::connect(url, clock.clone()).await?;
        let h = handler_fn(|_| async { Err(JobError::Fatal("effect needs a SQL backend".into())) });
        (q, h)
    } else {
        let q = PostgresQueue::connect(url, clock.clone()).await?;
        let h = postgres_effect(q.pool().clone());
        (Arc::new(q), h)
    };
    let handler = if mode == "noop" {
        let seen = latencies.clone();
        handler_fn(move |job| {
            let seen = seen.clone();
            async move {
                if let Some(t) = job.payload["t"].as_i64() {
                    seen.lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .push(micros_now() - t);
                }
                Ok(None)
            }
        })
    } else {
        handler
    };
    let mut config = WorkerConfig::new([queue.clone()]);
    config.concurrency = concurrency;
    config.lease = Duration::from_millis(lease_ms);
    config.heartbeat = Duration::from_millis(lease_ms / 3);
    config.poll = Duration::from_millis(if url.starts_with("sqlite:") { 20 } else { 500 });
    config.backoff = Backoff {
        base: Duration::from_millis(100),
        max: Duration::from_secs(2),
    };
    let registry = Registry::new()
        .handle("effect", handler.clone())
        .handle("noop", handler);
    let worker = Worker::new(backend, clock, config, registry);
    println!("ready");
    let report = worker
        .run(async {
            let mut term =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                    .expect("a SIGTERM handler");
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
        })
        .await;
    let mut seen = latencies.lock().unwrap_or_else(|p| p.into_inner()).clone();
    seen.sort_unstable();
    println!("claimed {} released {}", report.claimed, report.released);
    println!(
        "latencies_us {} {} {}",
        seen.len(),
        percentile(&seen, 0.5),
        percentile(&seen, 0.99)
    );
    if let (Ok(path), false) = (std::env::var("LATENCY_FILE"), seen.is_empty()) {
        use std::io::Write;
        let mut out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)?;
        let lines: Vec<String> = seen.iter().map(i64::to_string).collect();
        writeln!(out, "{}", lines.join("\n"))?;
    }
    Ok(())
}
