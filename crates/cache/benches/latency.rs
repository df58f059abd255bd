//! Read latencies: an L1 hit (sync `peek` and async `get_or_load`), and an L2 read beside a
//! raw Redis `GET` of the same bytes over the same kind of connection, in the same run.
//!
//! ```text
//! BASIS_TEST_REDIS_URL=redis://127.0.0.1:6379 cargo bench -p basis-cache --bench latency
//! ```
//!
//! Without `BASIS_TEST_REDIS_URL` the Redis pair is skipped (one `skipped:` line).

use std::hint::black_box;
use std::time::Duration;

use basis_cache::Cache;
use criterion::{Criterion, criterion_group, criterion_main};

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
    group.bench_function("moka_get_raw", |b| b.iter(|| black_box(raw.get(black_box(&key)))));
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
criterion_main!(latency);
