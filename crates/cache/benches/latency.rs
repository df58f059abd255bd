//! Read latencies: an L1 hit (sync `peek` and async `get_or_load`), and an L2 read beside a
//! raw Redis `GET` of the same bytes over the same kind of connection, in the same run.
//!
//! ```text
//! BASIS_TEST_REDIS_URL=redis://127.0.0.1:6379 cargo bench -p basis-cache --bench latency
//! ```
//!
//! It also measures the invalidation delay between two instances (the coherence bound).
//! Without `BASIS_TEST_REDIS_URL` the Redis parts are skipped (`skipped:` lines).

use std::hint::black_box;
use std::time::Duration;

use basis_cache::Cache;
use criterion::{Criterion, criterion_group};

/// A link as the shortener caches it.
#[derive(Clone, serde::Serialize, serde::Deserialize)]
struct Link {
    id: i64,
    url: String,
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

fn link() -> std::sync::Arc<Link> {
    std::sync::Arc::new(Link {
        id: 42,
        url: "https://example.com/some/long/path?with=query".into(),
    })
}

fn l1_hit(c: &mut Criterion) {
    let rt = runtime();
    let cache: Cache<String, std::sync::Arc<Link>> = Cache::builder("bench-l1")
        .build()
        .expect("valid configuration");
    let key = "abc123".to_string();
    rt.block_on(cache.insert(key.clone(), link()));
    let mut group = c.benchmark_group("l1_hit");
    group.bench_function("peek", |b| {
        b.iter(|| black_box(cache.peek(black_box(&key))))
    });
    group.bench_function("get_or_load", |b| {
        b.to_async(&rt).iter(|| async {
            let got = cache
                .get_or_load(black_box(&key), || async { Ok::<_, std::io::Error>(None) })
                .await;
            black_box(got)
        })
    });
    // For scale: moka alone, the floor under `peek`.
    let raw: moka::sync::Cache<String, std::sync::Arc<Link>> = moka::sync::Cache::new(1_000);
    raw.insert(key.clone(), link());
    group.bench_function("moka_get_raw", |b| {
        b.iter(|| black_box(raw.get(black_box(&key))))
    });
    group.finish();
}

fn l2_vs_raw_redis(c: &mut Criterion) {
    let Ok(url) = std::env::var("BASIS_TEST_REDIS_URL") else {
        println!("skipped: l2_get vs redis_get: BASIS_TEST_REDIS_URL is not set");
        return;
    };
    let rt = runtime();
    let namespace = format!("bench-l2-{}", std::process::id());
    // An L1 lifetime of zero keeps every read going to Redis.
    let cache: Cache<String, std::sync::Arc<Link>> = rt.block_on(async {
        Cache::builder(&namespace)
            .redis_url(Some(&url))
            .redis_timeout(Duration::from_secs(1))
            .l1_max_ttl(Duration::ZERO)
            .build()
            .expect("valid configuration")
    });
    let key = "abc123".to_string();
    rt.block_on(cache.insert(key.clone(), link()));
    let redis_key = format!("{namespace}:v1:{key}");
    let mut raw = rt.block_on(async {
        let client = redis::Client::open(url.as_str()).expect("url");
        redis::aio::ConnectionManager::new(client)
            .await
            .expect("redis is up")
    });

    let mut group = c.benchmark_group("l2");
    group.bench_function("cache_get", |b| {
        b.to_async(&rt)
            .iter(|| async { black_box(cache.get(black_box(&key)).await) })
    });
    group.bench_function("raw_redis_get", |b| {
        b.to_async(&rt).iter(|| {
            let mut conn = raw.clone();
            let redis_key = &redis_key;
            async move {
                let bytes: Option<Vec<u8>> = redis::cmd("GET")
                    .arg(redis_key)
                    .query_async(&mut conn)
                    .await
                    .expect("GET");
                black_box(bytes)
            }
        })
    });
    group.finish();
    rt.block_on(async {
        let _: Result<(), _> = redis::cmd("DEL")
            .arg(&redis_key)
            .query_async(&mut raw)
            .await;
    });
}

criterion_group! {
    name = latency;
    config = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    targets = l1_hit, l2_vs_raw_redis
}
/// How long after `insert` returns on instance A the old entry leaves instance B's L1:
/// the coherence bound in practice (pub/sub delivery plus the eviction).
fn invalidation_delay() {
    let Ok(url) = std::env::var("BASIS_TEST_REDIS_URL") else {
        println!("skipped: invalidation delay: BASIS_TEST_REDIS_URL is not set");
        return;
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let mut delays = rt.block_on(async {
        let namespace = format!("bench-coherence-{}", std::process::id());
        let instance = || {
            Cache::<String, u64>::builder(&namespace)
                .redis_url(Some(&url))
                .redis_timeout(Duration::from_secs(1))
                .build()
                .expect("valid configuration")
        };
        let (a, b) = (instance(), instance());
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while !(a.is_coherent() && b.is_coherent()) && std::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let key = "k".to_string();
        let mut delays = Vec::new();
        for round in 0..1_000u64 {
            a.insert(key.clone(), round).await;
            let _ = b.get(&key).await; // B now holds `round` in L1
            let started = std::time::Instant::now();
            a.insert(key.clone(), round + 1).await;
            let written = started.elapsed();
            while b.peek(&key) == Some(basis_cache::Cached::Value(round)) {
                if started.elapsed() > Duration::from_secs(1) {
                    break;
                }
                tokio::task::yield_now().await;
            }
            delays.push(started.elapsed().saturating_sub(written));
        }
        a.clear().await;
        delays
    });
    delays.sort();
    let at = |p: f64| delays[((delays.len() - 1) as f64 * p) as usize];
    println!(
        "invalidation delay (A's insert returned -> B's L1 evicted), {} rounds: p50 {:.1?}  p99 {:.1?}  max {:.1?}",
        delays.len(),
        at(0.5),
        at(0.99),
        delays[delays.len() - 1]
    );
}

fn main() {
    latency();
    // Under `cargo test --all-targets` (no `--bench`) criterion runs each benchmark once as
    // a smoke test; the delay measurement is skipped there.
    if std::env::args().any(|arg| arg == "--bench") {
        invalidation_delay();
    }
    Criterion::default().configure_from_args().final_summary();
}
