//! End-to-end queue benchmark: jobs per second (enqueue + a no-op handler run by the real
//! `Worker` in separate consumer processes) and enqueue-to-start latency, on any backend URL
//! (`sqlite:`, `postgres://`, `amqp://`). Driven by `bench/queue/amqp.sh`.
//!
//! `queue_bench drive <url> <jobs> <consumers> [rate]`: without `rate` the producer floods
//! (64 enqueues in flight) and the result is throughput; with `rate` (jobs/s) it paces the
//! enqueues so the latency is the queue's own, not the backlog's.
//! `queue_bench consume <url> <namespace> <queue>`: a consumer process (spawned by `drive`).
//! It stops by itself: the driver gives up after 300 s.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use basis_queue::amqp::{AmqpConfig, AmqpQueue, KeyStore};
use basis_queue::worker::{Registry, Worker, WorkerConfig};
use basis_queue::{Backend, Clock, NewJob, SystemClock, handler_fn};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdout, Command};

type Error = Box<dyn std::error::Error + Send + Sync>;

fn micros_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as i64)
}

/// The backend for `url`; RabbitMQ objects live in `namespace` so the run can delete them.
async fn open(url: &str, namespace: &str) -> Result<(Arc<dyn Backend>, Option<AmqpQueue>), Error> {
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    if url.starts_with("amqp://") {
        // `QUEUE_BENCH_KEYS_URL=postgres://…`: deduplication keys in that database instead
        // of marker queues in the broker.
        let keys = match std::env::var("QUEUE_BENCH_KEYS_URL") {
            Ok(keys_url) => KeyStore::Postgres(sqlx::PgPool::connect(&keys_url).await?),
            Err(_) => KeyStore::Broker,
        };
        let config = AmqpConfig {
            namespace: namespace.to_owned(),
            keys,
            ..AmqpConfig::default()
        };
        let q = AmqpQueue::connect_with(url, clock, config).await?;
        Ok((Arc::new(q.clone()), Some(q)))
    } else {
        Ok((basis_queue::connect(url, clock).await?, None))
    }
}

async fn consume(url: &str, namespace: &str, queue: &str) -> Result<(), Error> {
    let (backend, _) = open(url, namespace).await?;
    let done = Arc::new(AtomicU64::new(0));
    let latencies = Arc::new(std::sync::Mutex::new(Vec::<i64>::new()));
    let (d, l) = (done.clone(), latencies.clone());
    let noop = handler_fn(move |job| {
        let (d, l) = (d.clone(), l.clone());
        async move {
            if let Some(t) = job.payload["t"].as_i64() {
                l.lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push(micros_now() - t);
            }
            d.fetch_add(1, Ordering::Relaxed);
            Ok(None)
        }
    });
    let mut config = WorkerConfig::new([queue]);
    config.concurrency = 32;
    config.poll = Duration::from_millis(if url.starts_with("sqlite:") { 20 } else { 500 });
    let worker = Worker::new(
        backend,
        Arc::new(SystemClock),
        config,
        Registry::new().handle("noop", noop),
    );
    println!("ready");
    let progress = tokio::spawn({
        let done = done.clone();
        async move {
            loop {
                tokio::time::sleep(Duration::from_millis(50)).await;
                println!("done {}", done.load(Ordering::Relaxed));
            }
        }
    });
    // The driver closes stdin when every job has run.
    worker
        .run(async {
            let mut sink = Vec::new();
            let _ = tokio::io::stdin().read_to_end(&mut sink).await;
        })
        .await;
    progress.abort();
    let seen = latencies.lock().unwrap_or_else(|p| p.into_inner()).clone();
    let text: Vec<String> = seen.iter().map(i64::to_string).collect();
    println!("done {}", done.load(Ordering::Relaxed));
    println!("lat {}", text.join(","));
    Ok(())
}

struct Consumer {
    child: Child,
    lines: tokio::io::Lines<BufReader<ChildStdout>>,
    done: u64,
}

async fn drive(url: &str, jobs: u64, consumers: usize, rate: Option<u64>) -> Result<(), Error> {
    let id = rand::random::<u32>();
    let namespace = format!("basis-bench-{id:08x}");
    let queue = format!("bench-{id:08x}");
    let (backend, amqp) = open(url, &namespace).await?;
    let exe = std::env::current_exe()?;
    let mut procs = Vec::new();
    for _ in 0..consumers {
        let mut child = Command::new(&exe)
            .args(["consume", url, &namespace, &queue])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()?;
        let stdout = child.stdout.take().ok_or("no stdout")?;
        let mut lines = BufReader::new(stdout).lines();
        while lines.next_line().await?.as_deref() != Some("ready") {}
        procs.push(Consumer {
            child,
            lines,
            done: 0,
        });
    }
    let give_up = Instant::now() + Duration::from_secs(300);
    let started = Instant::now();
    // `QUEUE_BENCH_DEDUP=1`: every job holds a deduplication key of its own, as webhook
    // attempts, mails and click batches do.
    let dedup = std::env::var("QUEUE_BENCH_DEDUP").is_ok_and(|v| v == "1");
    let producer = {
        let backend = backend.clone();
        let queue = queue.clone();
        tokio::spawn(async move {
            let mut inflight = tokio::task::JoinSet::new();
            let pace = rate.map(|r| Duration::from_secs_f64(1.0 / r as f64));
            let mut next = Instant::now();
            for n in 0..jobs {
                if let Some(pace) = pace {
                    next += pace;
                    tokio::time::sleep_until(next.into()).await;
                }
                while inflight.len() >= 64 {
                    inflight.join_next().await;
                }
                let backend = backend.clone();
                let mut job = NewJob::new(
                    queue.clone(),
                    "noop",
                    serde_json::json!({"n": n, "t": micros_now()}),
                );
                if dedup {
                    job.dedup_key = Some(format!("job-{n}"));
                }
                inflight.spawn(async move { backend.enqueue(job).await.map(|_| ()) });
            }
            while let Some(r) = inflight.join_next().await {
                r.map_err(|e| e.to_string())?.map_err(|e| e.to_string())?;
            }
            Ok::<Duration, String>(started.elapsed())
        })
    };
    // Sum the consumers' progress until every job ran.
    loop {
        let total: u64 = procs.iter().map(|p| p.done).sum();
        if total >= jobs {
            break;
        }
        if Instant::now() > give_up {
            return Err(format!("gave up with {total} of {jobs} done").into());
        }
        for p in &mut procs {
            if let Ok(Ok(Some(line))) =
                tokio::time::timeout(Duration::from_millis(5), p.lines.next_line()).await
                && let Some(n) = line.strip_prefix("done ")
            {
                p.done = n.parse().unwrap_or(p.done);
            }
        }
    }
    let elapsed = started.elapsed();
    let enqueue_time = producer.await??;
    let mut latencies = Vec::new();
    for p in &mut procs {
        drop(p.child.stdin.take()); // stop: graceful shutdown of the worker
        while let Some(line) = p.lines.next_line().await? {
            if let Some(list) = line.strip_prefix("lat ") {
                latencies.extend(list.split(',').filter_map(|v| v.parse::<i64>().ok()));
            }
        }
        p.child.wait().await?;
    }
    latencies.sort_unstable();
    let pct = |p: f64| {
        latencies
            .get(((latencies.len().max(1) - 1) as f64 * p).round() as usize)
            .copied()
            .unwrap_or(0)
    };
    let backend_name = backend.name();
    println!(
        "{backend_name} consumers={consumers} jobs={jobs} dedup={dedup} mode={} jobs_per_s={:.0} enqueue_per_s={:.0} start_latency_us p50={} p99={} (n={})",
        rate.map_or("flood".to_owned(), |r| format!("paced {r}/s")),
        jobs as f64 / elapsed.as_secs_f64(),
        jobs as f64 / enqueue_time.as_secs_f64(),
        pct(0.5),
        pct(0.99),
        latencies.len(),
    );
    if let Some(q) = amqp {
        q.teardown().await?;
        q.close().await;
    }
    let mut out = tokio::io::stdout();
    out.flush().await?;
    Ok(())
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .as_slice()
    {
        ["consume", url, ns, queue] => consume(url, ns, queue).await,
        ["drive", url, jobs, consumers, rest @ ..] => {
            let rate = rest.first().map(|r| r.parse()).transpose()?;
            drive(url, jobs.parse()?, consumers.parse()?, rate).await
        }
        _ => Err(
            "usage: queue_bench drive <url> <jobs> <consumers> [rate] | consume <url> <ns> <queue>"
                .into(),
        ),
    }
}
