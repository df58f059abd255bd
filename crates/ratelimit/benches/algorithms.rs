//! ns per check of each in-memory algorithm beside governor's direct and keyed limiters,
//! on one thread and on two.
//!
//! `cargo bench -p basis-ratelimit --bench algorithms`
//!
//! Quotas are high enough that checks are admitted (the "allowed check" path), except the
//! sliding log, whose quota is 1 M/s so its log stays bounded (mixed admitted/refused).
//! Two-thread cases report wall time per check *per thread* with both threads hammering
//! the same limiter.

use std::hint::black_box;
use std::num::{NonZeroU32, NonZeroU64};
use std::sync::Arc;
use std::time::{Duration, Instant};

use basis_ratelimit::{Algorithm, Clock, MemoryConfig, MemoryStore, Policy, SystemClock};
use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use governor::{Quota, RateLimiter};

const KEYS: usize = 1_000;

fn policy(algorithm: Algorithm) -> Policy {
    let limit = match algorithm {
        Algorithm::SlidingLog => 1_000_000,
        _ => 1_000_000_000,
    };
    Policy::new(
        algorithm,
        NonZeroU64::new(limit).unwrap(),
        Duration::from_secs(1),
    )
    .unwrap()
}

fn governor_quota() -> Quota {
    Quota::per_second(NonZeroU32::new(1_000_000_000).unwrap())
}

fn keys() -> Vec<String> {
    (0..KEYS)
        .map(|i| format!("ip:10.0.{}.{}", i / 256, i % 256))
        .collect()
}

/// Runs `work(thread, iters)` on `threads` threads at once; returns the wall time.
fn on_threads(threads: usize, iters: u64, work: impl Fn(usize, u64) + Sync) -> Duration {
    let start = Instant::now();
    std::thread::scope(|s| {
        for t in 0..threads {
            let work = &work;
            s.spawn(move || work(t, iters));
        }
    });
    start.elapsed()
}

fn single_thread(c: &mut Criterion) {
    let mut g = c.benchmark_group("1 thread, one key");
    let clock = SystemClock::new();
    let p = policy(Algorithm::Gcra);
    let mut state = p.new_state();
    g.bench_function("gcra algorithm (local state + clock read)", |b| {
        b.iter(|| black_box(p.check(&mut state, clock.now(), 1, true)))
    });
    for algorithm in Algorithm::ALL {
        let store = MemoryStore::new(MemoryConfig::default());
        let p = policy(algorithm);
        g.bench_function(BenchmarkId::new("memory store", algorithm.name()), |b| {
            b.iter(|| black_box(store.check_one(&p, "api", "ip:10.0.0.1", 1)))
        });
    }
    let direct = RateLimiter::direct(governor_quota());
    g.bench_function("governor direct", |b| b.iter(|| black_box(direct.check())));
    let keyed = RateLimiter::keyed(governor_quota());
    let key = "ip:10.0.0.1".to_owned();
    g.bench_function("governor keyed", |b| {
        b.iter(|| black_box(keyed.check_key(&key)))
    });
    g.finish();

    let mut g = c.benchmark_group("1 thread, 1000 keys");
    let keys = keys();
    for algorithm in Algorithm::ALL {
        let store = MemoryStore::new(MemoryConfig::default());
        let p = policy(algorithm);
        let mut i = 0;
        g.bench_function(BenchmarkId::new("memory store", algorithm.name()), |b| {
            b.iter(|| {
                i = (i + 1) % KEYS;
                black_box(store.check_one(&p, "api", &keys[i], 1))
            })
        });
    }
    let keyed = RateLimiter::keyed(governor_quota());
    let mut i = 0;
    g.bench_function("governor keyed", |b| {
        b.iter(|| {
            i = (i + 1) % KEYS;
            black_box(keyed.check_key(&keys[i]))
        })
    });
    g.finish();
}

fn two_threads(c: &mut Criterion) {
    let keys = Arc::new(keys());
    for (group, spread) in [("2 threads, one key", 1), ("2 threads, 1000 keys", KEYS)] {
        let mut g = c.benchmark_group(group);
        for algorithm in Algorithm::ALL {
            let store = MemoryStore::new(MemoryConfig::default());
            let p = policy(algorithm);
            g.bench_function(BenchmarkId::new("memory store", algorithm.name()), |b| {
                b.iter_custom(|iters| {
                    on_threads(2, iters, |t, n| {
                        for i in 0..n as usize {
                            let key = &keys[(i * 7 + t * 500) % spread];
                            black_box(store.check_one(&p, "api", key, 1));
                        }
                    })
                })
            });
        }
        if spread == 1 {
            let direct = RateLimiter::direct(governor_quota());
            g.bench_function("governor direct", |b| {
                b.iter_custom(|iters| {
                    on_threads(2, iters, |_, n| {
                        for _ in 0..n {
                            black_box(direct.check()).ok();
                        }
                    })
                })
            });
        }
        // The keyed limiter on the same keys: the like-for-like anchor (a map, then the state).
        let keyed = RateLimiter::keyed(governor_quota());
        g.bench_function("governor keyed", |b| {
            b.iter_custom(|iters| {
                on_threads(2, iters, |t, n| {
                    for i in 0..n as usize {
                        black_box(keyed.check_key(&keys[(i * 7 + t * 500) % spread])).ok();
                    }
                })
            })
        });
        g.finish();
    }
}

fn config() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .sample_size(20)
}

criterion_group! { name = benches; config = config(); targets = single_thread, two_threads }
criterion_main!(benches);
