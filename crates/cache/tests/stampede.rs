//! A thousand concurrent misses on one cold key run the loader exactly once.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use basis_cache::Cache;
use tokio::sync::Semaphore;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_concurrent_misses_run_the_loader_once() {
    let cache: Cache<String, u64> = Cache::builder("stampede")
        .build()
        .expect("valid configuration");
    let calls = Arc::new(AtomicUsize::new(0));
    // The loader blocks until every caller has been started, so they really overlap.
    let gate = Arc::new(Semaphore::new(0));
    let mut callers = Vec::new();
    for _ in 0..1_000 {
        let (cache, calls, gate) = (cache.clone(), calls.clone(), gate.clone());
        callers.push(tokio::spawn(async move {
            cache
                .get_or_load(&"cold".to_string(), || async move {
                    calls.fetch_add(1, Ordering::SeqCst);
                    let _permit = gate.acquire().await.expect("gate stays open");
                    Ok::<_, std::io::Error>(Some(42))
                })
                .await
        }));
    }
    for _ in 0..100 {
        tokio::task::yield_now().await;
    }
    gate.add_permits(1_000);
    for caller in callers {
        let got = caller.await.expect("no panic").expect("loaded");
        assert_eq!(got, Some(42));
    }
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn waiters_of_a_cancelled_load_retry_instead_of_hanging() {
    let cache: Cache<String, u64> = Cache::builder("cancel")
        .build()
        .expect("valid configuration");
    let key = "k".to_string();
    let gate = Arc::new(Semaphore::new(0));
    let leader = {
        let (cache, key, gate) = (cache.clone(), key.clone(), gate.clone());
        tokio::spawn(async move {
            cache
                .get_or_load(&key, || async move {
                    let _permit = gate.acquire().await;
                    Ok::<_, std::io::Error>(Some(1))
                })
                .await
        })
    };
    tokio::task::yield_now().await;
    let waiter = {
        let (cache, key) = (cache.clone(), key.clone());
        tokio::spawn(async move {
            cache
                .get_or_load(&key, || async { Ok::<_, std::io::Error>(Some(2)) })
                .await
        })
    };
    tokio::task::yield_now().await;
    leader.abort();
    let got = waiter.await.expect("no panic").expect("loaded");
    assert_eq!(
        got,
        Some(2),
        "the waiter became the leader and loaded itself"
    );
}

#[tokio::test]
async fn every_waiter_gets_the_leaders_error() {
    let cache: Cache<String, u64> = Cache::builder("errors")
        .build()
        .expect("valid configuration");
    let calls = Arc::new(AtomicUsize::new(0));
    let gate = Arc::new(Semaphore::new(0));
    let mut callers = Vec::new();
    for _ in 0..10 {
        let (cache, calls, gate) = (cache.clone(), calls.clone(), gate.clone());
        callers.push(tokio::spawn(async move {
            cache
                .get_or_load(&"k".to_string(), || async move {
                    calls.fetch_add(1, Ordering::SeqCst);
                    let _permit = gate.acquire().await;
                    Err::<Option<u64>, _>(std::io::Error::other("db down"))
                })
                .await
        }));
    }
    tokio::task::yield_now().await;
    gate.add_permits(10);
    for caller in callers {
        assert!(caller.await.expect("no panic").is_err());
    }
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}
