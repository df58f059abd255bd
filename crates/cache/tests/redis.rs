//! The Redis L2 and cross-instance coherence, against `BASIS_TEST_REDIS_URL`.
//! Every test uses its own namespace, so runs never see each other's keys.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use basis_cache::{Cache, Cached, FixedRandom, ManualClock};
use common::{eventually, redis_url, unique_namespace};

type Io = std::io::Error;

fn instance(url: &str, namespace: &str) -> Cache<String, String> {
    Cache::builder(namespace)
        .redis_url(Some(url))
        .redis_timeout(Duration::from_millis(500))
        .build()
        .expect("valid configuration")
}

/// Reads through `cache`, counting loader calls.
async fn read(cache: &Cache<String, String>, key: &str, calls: &AtomicUsize) -> Option<String> {
    cache
        .get_or_load(&key.to_string(), || async {
            calls.fetch_add(1, Ordering::SeqCst);
            Ok::<_, Io>(Some("from-loader".to_string()))
        })
        .await
        .expect("loads")
}

async fn both_subscribed(a: &Cache<String, String>, b: &Cache<String, String>) {
    let ready = eventually(Duration::from_secs(5), || async {
        a.is_coherent() && b.is_coherent()
    })
    .await;
    assert!(ready, "both instances subscribe to invalidations");
}

#[tokio::test]
async fn a_value_written_by_one_instance_is_read_from_l2_by_another() {
    let Some(url) = redis_url("redis") else {
        return;
    };
    let ns = unique_namespace("l2");
    let (a, b) = (instance(&url, &ns), instance(&url, &ns));
    a.insert("k".into(), "shared".into()).await;
    let calls = AtomicUsize::new(0);
    assert_eq!(read(&b, "k", &calls).await.as_deref(), Some("shared"));
    assert_eq!(
        calls.load(Ordering::SeqCst),
        0,
        "served by L2, not the loader"
    );
    assert_eq!(
        b.peek("k"),
        Some(Cached::Value("shared".into())),
        "and now in B's L1"
    );
}

#[tokio::test]
async fn negative_entries_are_shared_through_l2() {
    let Some(url) = redis_url("redis") else {
        return;
    };
    let ns = unique_namespace("neg");
    let (a, b) = (instance(&url, &ns), instance(&url, &ns));
    let none = a
        .get_or_load(&"unknown".to_string(), || async {
            Ok::<Option<String>, Io>(None)
        })
        .await
        .expect("loads");
    assert_eq!(none, None);
    let calls = AtomicUsize::new(0);
    let got = b
        .get_or_load(&"unknown".to_string(), || async {
            calls.fetch_add(1, Ordering::SeqCst);
            Ok::<_, Io>(Some("should not load".to_string()))
        })
        .await
        .expect("loads");
    assert_eq!(got, None);
    assert_eq!(calls.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn a_write_on_one_instance_evicts_the_other_instances_l1() {
    let Some(url) = redis_url("redis") else {
        return;
    };
    let ns = unique_namespace("coherence");
    let (a, b) = (instance(&url, &ns), instance(&url, &ns));
    both_subscribed(&a, &b).await;
    let key = "k".to_string();
    a.insert(key.clone(), "v1".into()).await;
    assert_eq!(b.get(&key).await, Some(Cached::Value("v1".into())));
    a.insert(key.clone(), "v2".into()).await;
    let evicted = eventually(Duration::from_secs(2), || async {
        b.peek(&key) != Some(Cached::Value("v1".into()))
    })
    .await;
    assert!(evicted, "B's stale L1 entry is dropped");
    assert_eq!(b.get(&key).await, Some(Cached::Value("v2".into())));
    a.invalidate(&key).await;
    let gone = eventually(Duration::from_secs(2), || async { b.peek(&key).is_none() }).await;
    assert!(gone, "an invalidation reaches B's L1");
    assert_eq!(b.get(&key).await, None, "and L2");
}

#[tokio::test]
async fn a_prefix_invalidation_reaches_every_tier_and_instance() {
    let Some(url) = redis_url("redis") else {
        return;
    };
    let ns = unique_namespace("prefix");
    let (a, b) = (instance(&url, &ns), instance(&url, &ns));
    both_subscribed(&a, &b).await;
    for key in ["user:1:a", "user:1:b", "user:2:a"] {
        a.insert(key.into(), "x".into()).await;
        assert!(b.get(&key.into()).await.is_some());
    }
    a.invalidate_prefix("user:1:").await;
    let gone = eventually(Duration::from_secs(2), || async {
        b.peek("user:1:a").is_none() && b.peek("user:1:b").is_none()
    })
    .await;
    assert!(gone);
    assert_eq!(b.get(&"user:1:a".into()).await, None, "gone from L2 too");
    assert!(b.peek("user:2:a").is_some(), "other prefixes stay");
}

#[tokio::test]
async fn an_undecodable_value_is_a_miss_and_gets_replaced() {
    let Some(url) = redis_url("redis") else {
        return;
    };
    let ns = unique_namespace("decode");
    let cache = instance(&url, &ns);
    let client = redis::Client::open(url.as_str()).expect("url");
    let mut raw = client
        .get_multiplexed_async_connection()
        .await
        .expect("redis is up");
    let redis_key = format!("{ns}:v1:k");
    let _: () = redis::cmd("SET")
        .arg(&redis_key)
        .arg(&[0xff_u8, 0xff, 0xff, 0xff, 0x07][..])
        .query_async(&mut raw)
        .await
        .expect("set");
    let calls = AtomicUsize::new(0);
    assert_eq!(
        read(&cache, "k", &calls).await.as_deref(),
        Some("from-loader")
    );
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    let other = instance(&url, &ns);
    assert_eq!(
        read(&other, "k", &calls).await.as_deref(),
        Some("from-loader")
    );
    assert_eq!(calls.load(Ordering::SeqCst), 1, "L2 now holds a good value");
}

#[tokio::test]
async fn a_new_version_never_reads_the_old_versions_entries() {
    let Some(url) = redis_url("redis") else {
        return;
    };
    let ns = unique_namespace("version");
    let v1: Cache<String, String> = Cache::builder(&ns)
        .redis_url(Some(&url))
        .build()
        .expect("v1");
    v1.insert("k".into(), "old shape".into()).await;
    let v2: Cache<String, u64> = Cache::builder(&ns)
        .version(2)
        .redis_url(Some(&url))
        .build()
        .expect("v2");
    let calls = Arc::new(AtomicUsize::new(0));
    let counted = calls.clone();
    let got = v2
        .get_or_load(&"k".to_string(), || async move {
            counted.fetch_add(1, Ordering::SeqCst);
            Ok::<_, Io>(Some(7))
        })
        .await
        .expect("loads");
    assert_eq!(got, Some(7));
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn an_early_refresh_takes_a_peers_fresher_copy_from_l2_instead_of_loading() {
    let Some(url) = redis_url("redis") else {
        return;
    };
    let ns = unique_namespace("xfetch");
    let clock = ManualClock::default();
    // u = 0.1: due for a refresh once exp(−left / (1 s × 1)) ≥ 0.1, i.e. left ≤ 2.3 s.
    let random = Arc::new(FixedRandom::new(0.9));
    let build = || -> Cache<String, String> {
        Cache::builder(&ns)
            .redis_url(Some(&url))
            .redis_timeout(Duration::from_millis(500))
            .ttl(Duration::from_secs(100))
            .l1_max_ttl(Duration::from_secs(100))
            .ttl_jitter(0.0)
            .early_refresh(1.0)
            .clock(Arc::new(clock.clone()))
            .random(random.clone())
            .build()
            .expect("valid configuration")
    };
    let (a, b) = (build(), build());
    let key = "hot".to_string();
    let loads = AtomicUsize::new(0);
    let load = |value: &'static str| {
        let (clock, loads) = (&clock, &loads);
        move || async move {
            loads.fetch_add(1, Ordering::SeqCst);
            clock.advance(Duration::from_secs(1)); // the query "takes" 1 s: delta = 1 s
            Ok::<_, Io>(Some(value.to_string()))
        }
    };
    assert_eq!(
        a.get_or_load(&key, load("v1"))
            .await
            .expect("loads")
            .as_deref(),
        Some("v1")
    );
    assert_eq!(
        b.get(&key).await,
        Some(Cached::Value("v1".into())),
        "B copies it from L2"
    );
    clock.advance(Duration::from_millis(99_500)); // both copies now expire in ~0.5 s
    // Make Redis's copy as old as A's (real clocks would agree): A must query, not reuse it.
    let client = redis::Client::open(url.as_str()).expect("url");
    let mut raw = client
        .get_multiplexed_async_connection()
        .await
        .expect("redis is up");
    let _: () = redis::cmd("PEXPIRE")
        .arg(format!("{ns}:v1:{key}"))
        .arg(800)
        .query_async(&mut raw)
        .await
        .expect("pexpire");
    assert_eq!(
        a.get_or_load(&key, load("v2"))
            .await
            .expect("served")
            .as_deref(),
        Some("v2")
    );
    assert_eq!(
        loads.load(Ordering::SeqCst),
        2,
        "A refreshed early from the loader"
    );
    // B is due too, but A's refresh is in L2 with a full TTL: B takes it, no query.
    assert_eq!(
        b.get_or_load(&key, load("v3"))
            .await
            .expect("served")
            .as_deref(),
        Some("v2")
    );
    assert_eq!(loads.load(Ordering::SeqCst), 2, "B reused A's refresh");
}
