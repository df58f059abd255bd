//! Cache-aside, negative caching, TTL with jitter, XFetch, write-through and invalidation,
//! all on an injected clock and injected randomness: nothing here sleeps.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use basis_cache::{Cache, Cached, Error, Eviction, FixedRandom, ManualClock, SplitMix};
use proptest::prelude::*;

type Io = std::io::Error;

struct Setup {
    cache: Cache<String, String>,
    clock: ManualClock,
}

/// A cache on a manual clock with TTL 100 s, negative TTL 10 s, no jitter, no XFetch.
fn setup() -> Setup {
    let clock = ManualClock::default();
    let cache = Cache::builder("test")
        .ttl(Duration::from_secs(100))
        .negative_ttl(Duration::from_secs(10))
        .ttl_jitter(0.0)
        .early_refresh(0.0)
        .clock(Arc::new(clock.clone()))
        .random(Arc::new(FixedRandom::new(0.0)))
        .build()
        .expect("valid configuration");
    Setup { cache, clock }
}

/// Loads `value` and counts how often it was asked to.
async fn load(
    cache: &Cache<String, String>,
    key: &str,
    calls: &AtomicUsize,
    value: Option<&str>,
) -> Option<String> {
    cache
        .get_or_load(&key.to_string(), || async {
            calls.fetch_add(1, Ordering::SeqCst);
            Ok::<_, Io>(value.map(str::to_owned))
        })
        .await
        .expect("loader succeeds")
}

#[tokio::test]
async fn a_loaded_value_is_served_from_l1_until_its_ttl_ends() {
    let Setup { cache, clock, .. } = setup();
    let calls = AtomicUsize::new(0);
    assert_eq!(
        load(&cache, "k", &calls, Some("v")).await.as_deref(),
        Some("v")
    );
    clock.advance(Duration::from_secs(99));
    assert_eq!(cache.peek("k"), Some(Cached::Value("v".into())));
    assert_eq!(
        load(&cache, "k", &calls, Some("v2")).await.as_deref(),
        Some("v")
    );
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    clock.advance(Duration::from_secs(1));
    assert_eq!(cache.peek("k"), None);
    assert_eq!(
        load(&cache, "k", &calls, Some("v2")).await.as_deref(),
        Some("v2")
    );
    assert_eq!(calls.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn not_found_is_cached_for_the_negative_ttl_only() {
    let Setup { cache, clock, .. } = setup();
    let calls = AtomicUsize::new(0);
    assert_eq!(load(&cache, "nope", &calls, None).await, None);
    assert_eq!(cache.peek("nope"), Some(Cached::Missing));
    clock.advance(Duration::from_secs(9));
    assert_eq!(load(&cache, "nope", &calls, Some("late")).await, None);
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    clock.advance(Duration::from_secs(1));
    assert_eq!(
        load(&cache, "nope", &calls, Some("late")).await.as_deref(),
        Some("late")
    );
    assert_eq!(calls.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn a_failed_load_is_returned_and_not_cached() {
    let Setup { cache, .. } = setup();
    let failed = cache
        .get_or_load(&"k".to_string(), || async {
            Err::<Option<String>, _>(Io::other("db down"))
        })
        .await;
    assert!(matches!(failed, Err(Error::Load(_))));
    assert_eq!(cache.peek("k"), None);
}

#[tokio::test]
async fn write_through_caches_only_what_the_store_accepted() {
    let Setup { cache, .. } = setup();
    let key = "k".to_string();
    cache
        .write_through(key.clone(), "v1".into(), || async { Ok::<_, Io>(()) })
        .await
        .expect("store accepts");
    assert_eq!(cache.peek(&key), Some(Cached::Value("v1".into())));
    let rejected = cache
        .write_through(key.clone(), "v2".into(), || async {
            Err::<(), _>(Io::other("constraint"))
        })
        .await;
    assert!(matches!(rejected, Err(Error::Store(_))));
    assert_eq!(
        cache.peek(&key),
        None,
        "a failed store write leaves nothing cached"
    );
}

#[tokio::test]
async fn invalidation_by_key_prefix_and_all_empties_l1() {
    let Setup { cache, .. } = setup();
    for key in ["user:1:profile", "user:1:posts", "user:2:profile", "post:9"] {
        cache.insert(key.to_string(), "x".into()).await;
    }
    cache.invalidate(&"post:9".to_string()).await;
    assert_eq!(cache.peek("post:9"), None);
    cache.invalidate_prefix("user:1:").await;
    assert_eq!(cache.peek("user:1:profile"), None);
    assert_eq!(cache.peek("user:1:posts"), None);
    assert!(cache.peek("user:2:profile").is_some());
    cache.clear().await;
    assert_eq!(cache.peek("user:2:profile"), None);
}

#[tokio::test]
async fn jitter_shortens_the_ttl_by_the_drawn_fraction() {
    let clock = ManualClock::default();
    let cache: Cache<String, String> = Cache::builder("jitter")
        .ttl(Duration::from_secs(100))
        .ttl_jitter(0.2)
        .early_refresh(0.0)
        .clock(Arc::new(clock.clone()))
        .random(Arc::new(FixedRandom::new(0.5)))
        .build()
        .expect("valid configuration");
    cache.insert("k".into(), "v".into()).await;
    // 100 s × (1 − 0.2 × 0.5) = 90 s.
    clock.advance(Duration::from_millis(89_999));
    assert!(cache.peek("k").is_some());
    clock.advance(Duration::from_millis(1));
    assert_eq!(cache.peek("k"), None);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn every_entry_expires_within_the_jitter_bounds(
        ttl_s in 1u64..10_000,
        jitter in 0.0f64..=0.5,
        sample in 0.0f64..1.0,
    ) {
        let clock = ManualClock::default();
        let cache: Cache<u32, u32> = Cache::builder("jitter-prop")
            .ttl(Duration::from_secs(ttl_s))
            .ttl_jitter(jitter)
            .early_refresh(0.0)
            .clock(Arc::new(clock.clone()))
            .random(Arc::new(FixedRandom::new(sample)))
            .build()
            .expect("valid configuration");
        let runtime = tokio::runtime::Builder::new_current_thread().build().expect("runtime");
        runtime.block_on(cache.insert(1, 1));
        let ttl = Duration::from_secs(ttl_s);
        let shortest = ttl.mul_f64(1.0 - jitter);
        // Alive just before the shortest possible TTL, gone at the configured one.
        clock.advance(shortest.saturating_sub(Duration::from_millis(1)));
        prop_assert!(cache.peek(&1).is_some());
        clock.advance(ttl - shortest.saturating_sub(Duration::from_millis(1)));
        prop_assert!(cache.peek(&1).is_none());
    }
}

/// A cache whose loads "take" one second of clock time, with TTL 100 s and beta 1.
fn xfetch_setup(random: Arc<dyn basis_cache::Random>) -> (Cache<String, String>, ManualClock) {
    let clock = ManualClock::default();
    let cache = Cache::builder("xfetch")
        .ttl(Duration::from_secs(100))
        .ttl_jitter(0.0)
        .early_refresh(1.0)
        .clock(Arc::new(clock.clone()))
        .random(random)
        .build()
        .expect("valid configuration");
    (cache, clock)
}

async fn slow_load(
    cache: &Cache<String, String>,
    clock: &ManualClock,
    calls: &AtomicUsize,
    ok: bool,
) -> Option<String> {
    cache
        .get_or_load(&"hot".to_string(), || async {
            let n = calls.fetch_add(1, Ordering::SeqCst);
            clock.advance(Duration::from_secs(1));
            if ok {
                Ok(Some(format!("v{n}")))
            } else {
                Err(Io::other("refresh failed"))
            }
        })
        .await
        .expect("served")
}

#[tokio::test]
async fn a_hot_key_is_refreshed_early_only_when_the_draw_says_so() {
    let random = Arc::new(FixedRandom::new(0.0));
    let (cache, clock) = xfetch_setup(random.clone());
    let calls = AtomicUsize::new(0);
    assert_eq!(
        slow_load(&cache, &clock, &calls, true).await.as_deref(),
        Some("v0")
    );
    // Expires at 101 s (loaded at 0 s, finished at 1 s). Move to 1 s before expiry:
    // the refresh chance is exp(−1 s / (1 s × 1)) ≈ 0.368.
    clock.advance(Duration::from_secs(99));
    random.set(0.5); // u = 0.5 > 0.368: no refresh
    assert_eq!(
        slow_load(&cache, &clock, &calls, true).await.as_deref(),
        Some("v0")
    );
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    random.set(0.7); // u = 0.3 ≤ 0.368: refresh now, before expiry
    assert_eq!(
        slow_load(&cache, &clock, &calls, true).await.as_deref(),
        Some("v1")
    );
    assert_eq!(calls.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn early_refresh_happens_with_the_xfetch_probability() {
    let (cache, clock) = xfetch_setup(Arc::new(SplitMix::seeded(11)));
    let calls = AtomicUsize::new(0);
    slow_load(&cache, &clock, &calls, true).await;
    // Expiry at 101 s; stand 2 s before it. Failed refreshes keep the old entry, so every
    // read is an independent trial: expected share exp(−2) ≈ 0.135.
    clock.advance(Duration::from_secs(98));
    let trials = 4_000;
    let attempts_before = calls.load(Ordering::SeqCst);
    for _ in 0..trials {
        let served = cache
            .get_or_load(&"hot".to_string(), || async {
                calls.fetch_add(1, Ordering::SeqCst);
                Err::<Option<String>, _>(Io::other("refresh failed"))
            })
            .await
            .expect("falls back to the cached value");
        assert_eq!(served.as_deref(), Some("v0"));
    }
    let share = (calls.load(Ordering::SeqCst) - attempts_before) as f64 / f64::from(trials);
    let expected = (-2.0f64).exp();
    assert!(
        (share - expected).abs() < 0.03,
        "share {share}, expected {expected}"
    );
}

#[tokio::test]
async fn far_from_expiry_a_hot_key_is_never_refreshed() {
    let (cache, clock) = xfetch_setup(Arc::new(FixedRandom::new(0.999_999)));
    let calls = AtomicUsize::new(0);
    slow_load(&cache, &clock, &calls, true).await;
    // 50 s before expiry with a 1 s load: the chance is exp(−50) per read.
    clock.advance(Duration::from_secs(50));
    for _ in 0..100 {
        slow_load(&cache, &clock, &calls, true).await;
    }
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn l1_stays_within_its_byte_budget() {
    for eviction in [Eviction::Lru, Eviction::TinyLfu] {
        let cache: Cache<u64, String> = Cache::builder("budget")
            .l1_max_bytes(64 * 1024)
            .eviction(eviction)
            .weigher(|_, v: &String| 8 + v.len() as u32)
            .build()
            .expect("valid configuration");
        for i in 0..10_000u64 {
            cache.insert(i, "x".repeat(100)).await;
        }
        let stats = cache.l1_stats();
        assert!(stats.bytes <= 64 * 1024, "{eviction:?}: {stats:?}");
        assert!(stats.entries > 0);
    }
}

#[test]
fn a_namespace_with_separators_is_refused() {
    let built = Cache::<String, String>::builder("links:evil").build();
    assert!(matches!(built, Err(Error::Config(_))));
}

fn assert_send<T: Send>(_: &T) {}

#[test]
fn the_cache_and_its_futures_can_cross_threads() {
    fn shareable<T: Send + Sync + Clone + 'static>() {}
    shareable::<Cache<String, Arc<String>>>();
    let Setup { cache, .. } = setup();
    let key = "k".to_string();
    // Handlers in a multi-threaded server need every call's future to be `Send`.
    assert_send(&cache.get_or_load(&key, || async { Ok::<_, Io>(None) }));
    assert_send(&cache.get(&key));
    assert_send(&cache.insert(key.clone(), "v".into()));
    assert_send(&cache.write_through(key.clone(), "v".into(), || async { Ok::<_, Io>(()) }));
    assert_send(&cache.invalidate(&key));
    assert_send(&cache.invalidate_prefix("k"));
    assert_send(&cache.shutdown());
}

#[test]
fn an_empty_redis_url_means_no_redis() {
    let cache = Cache::<String, String>::new("empty-url", Some("")).expect("valid");
    assert!(!cache.has_l2());
}
