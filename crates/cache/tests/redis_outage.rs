//! Redis stopped mid-test: the cache passes through without errors, then uses L2 again
//! once Redis is back. Runs a private `redis-server` on a free port so stopping it
//! disturbs nobody.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use basis_cache::{Cache, Cached};
use basis_testkit::{PrivateRedis, free_port};
use common::{eventually, redis_url, skip, unique_namespace};

type Io = std::io::Error;

fn instance(url: &str, ns: &str) -> Cache<String, String> {
    Cache::builder(ns)
        .redis_url(Some(url))
        // Generous, so a healthy Redis on a loaded CI machine is never taken for a dead one.
        .redis_timeout(Duration::from_millis(250))
        .redis_cooldown(Duration::from_millis(100))
        .build()
        .expect("valid configuration")
}

async fn read(cache: &Cache<String, String>, key: &str, calls: &AtomicUsize) -> Option<String> {
    let loaded = tokio::time::timeout(
        Duration::from_secs(5),
        cache.get_or_load(&key.to_string(), || async {
            calls.fetch_add(1, Ordering::SeqCst);
            Ok::<_, Io>(Some(format!("loaded-{key}")))
        }),
    )
    .await
    .expect("a cache call never hangs on a dead Redis");
    loaded.expect("a dead Redis is never an error")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_redis_stopped_calls_pass_through_and_l2_returns_with_redis() {
    // Gated like the other Redis suites, so CI (which sets the variable) always runs it.
    if redis_url("redis_outage").is_none() {
        return;
    }
    let port = free_port();
    let Some(mut redis) = PrivateRedis::start(port).await else {
        skip("redis_outage", "redis-server is not installed");
        return;
    };
    let url = redis.url();
    let ns = unique_namespace("outage");
    let (a, b) = (instance(&url, &ns), instance(&url, &ns));
    assert!(
        eventually(Duration::from_secs(5), || async {
            a.is_coherent() && b.is_coherent()
        })
        .await
    );
    let calls = AtomicUsize::new(0);
    a.insert("before".into(), "v".into()).await;
    assert_eq!(read(&b, "before", &calls).await.as_deref(), Some("v"));
    assert_eq!(calls.load(Ordering::SeqCst), 0, "L2 serves B");

    redis.stop();
    assert!(
        eventually(Duration::from_secs(5), || async { !b.is_coherent() }).await,
        "B notices"
    );
    for i in 0..20 {
        let key = format!("during-{i}");
        assert_eq!(read(&b, &key, &calls).await, Some(format!("loaded-{key}")));
        a.insert(key.clone(), "w".into()).await;
        a.invalidate(&key).await;
    }
    assert_eq!(
        calls.load(Ordering::SeqCst),
        20,
        "every miss passed through to the loader"
    );

    let _redis = PrivateRedis::start(port).await.expect("restarts");
    assert!(
        eventually(Duration::from_secs(15), || async {
            a.is_coherent() && b.is_coherent()
        })
        .await,
        "both resubscribe by themselves"
    );
    assert_eq!(b.peek("before"), None, "B cleared its L1 on resubscribing");
    // L2 is used again: a value A writes is read by B without loading.
    let mut round = 0;
    let l2_back = eventually(Duration::from_secs(10), || {
        round += 1;
        let key = format!("after-{round}");
        let (a, b, calls) = (&a, &b, &calls);
        async move {
            a.insert(key.clone(), "fresh".into()).await;
            let before = calls.load(Ordering::SeqCst);
            let got = read(b, &key, calls).await;
            got.as_deref() == Some("fresh") && calls.load(Ordering::SeqCst) == before
        }
    })
    .await;
    assert!(l2_back, "L2 serves B again after Redis returns");
    assert_eq!(
        b.peek(&format!("after-{round}")),
        Some(Cached::Value("fresh".into()))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cache_built_while_redis_is_down_starts_using_it_when_it_comes_up() {
    if redis_url("redis_outage").is_none() {
        return;
    }
    let port = free_port();
    let url = format!("redis://127.0.0.1:{port}");
    let ns = unique_namespace("late");
    let (a, b) = (instance(&url, &ns), instance(&url, &ns));
    let calls = AtomicUsize::new(0);
    assert_eq!(
        read(&b, "early", &calls).await.as_deref(),
        Some("loaded-early")
    );
    assert!(!b.is_coherent());

    let Some(_redis) = PrivateRedis::start(port).await else {
        skip("redis_outage", "redis-server is not installed");
        return;
    };
    assert!(
        eventually(Duration::from_secs(15), || async {
            a.is_coherent() && b.is_coherent()
        })
        .await,
        "both subscribe once Redis is up"
    );
    let mut round = 0;
    let l2_used = eventually(Duration::from_secs(10), || {
        round += 1;
        let key = format!("late-{round}");
        let (a, b, calls) = (&a, &b, &calls);
        async move {
            a.insert(key.clone(), "shared".into()).await;
            let before = calls.load(Ordering::SeqCst);
            read(b, &key, calls).await.as_deref() == Some("shared")
                && calls.load(Ordering::SeqCst) == before
        }
    })
    .await;
    assert!(l2_used, "B reads A's value from L2");
}
