//! The counters the server exports, observed through a small in-test recorder.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use basis_cache::{Cache, Eviction};
use metrics::{Counter, Gauge, Histogram, Key, KeyName, Metadata, Recorder, SharedString, Unit};

type Io = std::io::Error;

/// Keeps every counter as `name{label=value,…}` → value.
#[derive(Default)]
struct Counting {
    counters: Mutex<HashMap<String, Arc<AtomicU64>>>,
}

impl Counting {
    fn value(&self, series: &str) -> u64 {
        let counters = self.counters.lock().expect("not poisoned");
        counters.get(series).map_or(0, |c| c.load(Ordering::SeqCst))
    }
}

impl Recorder for Counting {
    fn describe_counter(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_gauge(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_histogram(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}

    fn register_counter(&self, key: &Key, _: &Metadata<'_>) -> Counter {
        let labels: Vec<String> = key
            .labels()
            .map(|l| format!("{}={}", l.key(), l.value()))
            .collect();
        let series = format!("{}{{{}}}", key.name(), labels.join(","));
        let mut counters = self.counters.lock().expect("not poisoned");
        Counter::from_arc(counters.entry(series).or_default().clone())
    }

    fn register_gauge(&self, _: &Key, _: &Metadata<'_>) -> Gauge {
        Gauge::noop()
    }

    fn register_histogram(&self, _: &Key, _: &Metadata<'_>) -> Histogram {
        Histogram::noop()
    }
}

#[tokio::test]
async fn hits_misses_loads_and_negative_hits_are_counted_per_tier() {
    let recorder = Counting::default();
    let cache: Cache<String, String> =
        metrics::with_local_recorder(&recorder, || Cache::builder("m").build()).expect("valid");
    let key = "k".to_string();
    for _ in 0..3 {
        cache
            .get_or_load(&key, || async { Ok::<_, Io>(Some("v".to_string())) })
            .await
            .expect("loads");
    }
    let unknown = "unknown".to_string();
    for _ in 0..2 {
        cache
            .get_or_load(&unknown, || async { Ok::<Option<String>, Io>(None) })
            .await
            .expect("loads");
    }
    assert_eq!(
        recorder.value("basis_cache_misses_total{namespace=m,tier=l1}"),
        2
    );
    assert_eq!(
        recorder.value("basis_cache_hits_total{namespace=m,tier=l1}"),
        3
    );
    assert_eq!(recorder.value("basis_cache_loads_total{namespace=m}"), 2);
    assert_eq!(
        recorder.value("basis_cache_negative_hits_total{namespace=m}"),
        1
    );
}

#[tokio::test]
async fn evictions_for_size_are_counted() {
    let recorder = Counting::default();
    let cache: Cache<u64, u64> = metrics::with_local_recorder(&recorder, || {
        Cache::builder("ev")
            .l1_max_bytes(4096)
            .eviction(Eviction::Lru)
            .build()
    })
    .expect("valid");
    for i in 0..1_000 {
        cache.insert(i, i).await;
    }
    cache.l1_stats(); // applies pending evictions
    assert!(recorder.value("basis_cache_evictions_total{namespace=ev}") > 0);
}

#[tokio::test]
async fn an_unreachable_redis_is_passed_through_and_counted_not_raised() {
    // A port nobody listens on: connections are refused at once.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port");
    let url = format!("redis://127.0.0.1:{port}");
    let recorder = Counting::default();
    let cache: Cache<String, String> = metrics::with_local_recorder(&recorder, || {
        Cache::builder("down")
            .redis_url(Some(&url))
            .redis_timeout(Duration::from_millis(50))
            .build()
    })
    .expect("Redis being down is not a configuration error");
    for i in 0..5 {
        let key = format!("k{i}");
        let got = cache
            .get_or_load(&key, || async { Ok::<_, Io>(Some("from-db".to_string())) })
            .await
            .expect("never an error");
        assert_eq!(got.as_deref(), Some("from-db"));
        cache.insert(key.clone(), "w".into()).await;
        cache.invalidate(&key).await;
    }
    let failed = recorder.value("basis_cache_redis_errors_total{namespace=down}")
        + recorder.value("basis_cache_redis_timeouts_total{namespace=down}");
    let skipped = recorder.value("basis_cache_redis_skipped_total{namespace=down}");
    assert!(failed >= 1, "the first failure is counted");
    assert!(skipped >= 1, "then the breaker skips Redis");
    assert_eq!(recorder.value("basis_cache_loads_total{namespace=down}"), 5);
    assert!(!cache.is_coherent());
}

#[tokio::test]
async fn a_redis_that_never_answers_costs_one_bounded_timeout_then_is_skipped() {
    // Accepts connections and never replies: the "slow Redis" case.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("redis://{}", listener.local_addr().expect("addr"));
    let silent = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    let recorder = Counting::default();
    let cache: Cache<String, String> = metrics::with_local_recorder(&recorder, || {
        Cache::builder("slow")
            .redis_url(Some(&url))
            .redis_timeout(Duration::from_millis(50))
            .redis_cooldown(Duration::from_secs(60))
            .build()
    })
    .expect("valid");
    for i in 0..10 {
        let got = cache
            .get_or_load(&format!("k{i}"), || async {
                Ok::<_, Io>(Some("from-db".to_string()))
            })
            .await
            .expect("never an error");
        assert_eq!(got.as_deref(), Some("from-db"));
    }
    // Reads and write-backs: the first call times out, the breaker skips the rest.
    assert_eq!(
        recorder.value("basis_cache_redis_timeouts_total{namespace=slow}"),
        1
    );
    assert_eq!(
        recorder.value("basis_cache_redis_skipped_total{namespace=slow}"),
        19
    );
    silent.abort();
}
