//! Where the time of one in-memory check goes: hashing the key, the shard lock, reading
//! the clock, and each algorithm's arithmetic on a local state.
//!
//! `cargo bench -p basis-ratelimit --bench breakdown`

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hash, Hasher};
use std::hint::black_box;
use std::num::NonZeroU64;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use basis_ratelimit::{Algorithm, Clock, Policy, SystemClock};
use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};

fn breakdown(c: &mut Criterion) {
    let mut g = c.benchmark_group("breakdown");
    let hasher = RandomState::new();
    g.bench_function("SipHash of (rule, subject)", |b| {
        b.iter(|| {
            let mut h = hasher.build_hasher();
            black_box("api").hash(&mut h);
            black_box("ip:10.0.0.1").hash(&mut h);
            black_box(h.finish())
        })
    });
    let lock = Mutex::new(0u64);
    g.bench_function("uncontended mutex lock + unlock", |b| {
        b.iter(|| *lock.lock().unwrap_or_else(|e| e.into_inner()) += 1)
    });
    let clock = SystemClock::new();
    g.bench_function("SystemClock::now (TSC via quanta)", |b| {
        b.iter(|| black_box(clock.now()))
    });
    let origin = Instant::now();
    g.bench_function("std Instant::elapsed", |b| {
        b.iter(|| black_box(origin.elapsed()))
    });
    for algorithm in Algorithm::ALL {
        let p = Policy::new(
            algorithm,
            NonZeroU64::new(1_000_000).unwrap(),
            Duration::from_secs(1),
        )
        .unwrap();
        let mut state = p.new_state();
        let mut now = 0u64;
        g.bench_function(BenchmarkId::new("algorithm only", algorithm.name()), |b| {
            b.iter(|| {
                now += 1_000;
                black_box(p.check(&mut state, now, 1, true));
                black_box(p.idle_at(&state))
            })
        });
    }
    g.finish();
}

fn config() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(1))
        .sample_size(20)
}

criterion_group! { name = benches; config = config(); targets = breakdown }
criterion_main!(benches);
