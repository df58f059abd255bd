//! Hit ratio of L1's two eviction policies (LRU, TinyLFU) under Zipf(s = 1.0) keys, with
//! the cache holding 1 %, 10 % and 30 % of the key space. Goes through the real
//! `Cache` (moka L1, byte-weighted), not a model of it.
//!
//! ```text
//! cargo bench -p basis-cache --bench hit_ratio
//! ```
//!
//! For reference it also runs moka directly without a weigher (entry-counted, "(1)"), and
//! the ideal of pinning the most popular keys. Prints a table and writes `bench/cache/hit_ratio.csv` (plotted by
//! `bench/cache/plot_hit_ratio.py`).

use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use basis_cache::{Cache, Eviction, SplitMix};

const KEYS: u64 = 100_000;
const WARMUP: usize = 200_000;
const REQUESTS: usize = 2_000_000;
const ZIPF_S: f64 = 1.0;

/// Samples ranks 0..n with P(rank k) ∝ 1/(k+1)^s, by inverting a precomputed CDF.
struct Zipf {
    cdf: Vec<f64>,
}

impl Zipf {
    fn new(n: u64, s: f64) -> Self {
        let mut cdf = Vec::with_capacity(n as usize);
        let mut total = 0.0;
        for k in 1..=n {
            total += 1.0 / (k as f64).powf(s);
            cdf.push(total);
        }
        for p in &mut cdf {
            *p /= total;
        }
        Self { cdf }
    }

    fn sample(&self, rng: &SplitMix) -> u64 {
        let u = basis_cache::Random::next_f64(rng);
        self.cdf.partition_point(|&p| p < u) as u64
    }
}

/// Bytes one entry costs in L1, as the cache itself accounts it.
fn entry_weight(runtime: &tokio::runtime::Runtime) -> u64 {
    let probe: Cache<u64, u64> = Cache::builder("weigh")
        .build()
        .expect("valid configuration");
    runtime.block_on(probe.insert(0, 0));
    probe.l1_stats().bytes
}

fn hit_ratio(
    runtime: &tokio::runtime::Runtime,
    eviction: Eviction,
    entries: u64,
    keys: &[u64],
) -> f64 {
    let weight = entry_weight(runtime);
    let cache: Cache<u64, u64> = Cache::builder("hit-ratio")
        .eviction(eviction)
        .l1_max_bytes(entries * weight)
        .build()
        .expect("valid configuration");
    let misses = Arc::new(AtomicU64::new(0));
    runtime.block_on(async {
        for (i, &key) in keys.iter().enumerate() {
            if i == WARMUP {
                misses.store(0, Ordering::Relaxed);
            }
            let misses = &misses;
            let got = cache
                .get_or_load(&key, || async move {
                    misses.fetch_add(1, Ordering::Relaxed);
                    Ok::<_, std::io::Error>(Some(key))
                })
                .await;
            debug_assert_eq!(got.ok().flatten(), Some(key));
        }
    });
    let counted = (keys.len() - WARMUP) as f64;
    1.0 - misses.load(Ordering::Relaxed) as f64 / counted
}

/// Reference: moka used directly, counting entries (no weigher), as its docs show it.
fn moka_unweighted(policy: moka::policy::EvictionPolicy, entries: u64, keys: &[u64]) -> f64 {
    let cache: moka::sync::Cache<u64, u64> = moka::sync::Cache::builder()
        .max_capacity(entries)
        .eviction_policy(policy)
        .build();
    let mut misses = 0u64;
    for (i, &key) in keys.iter().enumerate() {
        if i == WARMUP {
            misses = 0;
        }
        if cache.get(&key).is_none() {
            misses += 1;
            cache.insert(key, key);
        }
    }
    1.0 - misses as f64 / (keys.len() - WARMUP) as f64
}

/// The best any cache of `entries` can do on this trace without knowing the future
/// order: keep the `entries` most popular keys (ranks 0..entries) forever.
fn pinned_top(entries: u64, keys: &[u64]) -> f64 {
    let counted = &keys[WARMUP..];
    counted.iter().filter(|&&k| k < entries).count() as f64 / counted.len() as f64
}

fn main() {
    // `cargo test --all-targets` runs bench targets without `--bench`: a full run would take
    // minutes in a debug build and rewrite the CSV, so it only says how to run it.
    if !std::env::args().any(|arg| arg == "--bench") {
        println!("hit_ratio: measured by `cargo bench -p basis-cache --bench hit_ratio`");
        return;
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    let zipf = Zipf::new(KEYS, ZIPF_S);
    let rng = SplitMix::seeded(2026);
    let keys: Vec<u64> = (0..WARMUP + REQUESTS).map(|_| zipf.sample(&rng)).collect();

    println!(
        "hit ratio, Zipf(s={ZIPF_S}) over {KEYS} keys, {REQUESTS} requests after {WARMUP} warm-up"
    );
    println!(
        "{:>6} {:>8} {:>8} {:>8} {:>14} {:>14} {:>8}",
        "cache", "entries", "LRU", "TinyLFU", "moka LRU (1)", "moka TLFU (1)", "top-N"
    );
    let mut csv = String::from(
        "cache_percent,entries,lru,tinylfu,moka_lru_unweighted,moka_tinylfu_unweighted,pinned_top\n",
    );
    for percent in [1u64, 10, 30] {
        let entries = KEYS * percent / 100;
        let lru = hit_ratio(&runtime, Eviction::Lru, entries, &keys);
        let lfu = hit_ratio(&runtime, Eviction::TinyLfu, entries, &keys);
        let raw_lru = moka_unweighted(moka::policy::EvictionPolicy::lru(), entries, &keys);
        let raw_lfu = moka_unweighted(moka::policy::EvictionPolicy::tiny_lfu(), entries, &keys);
        let top = pinned_top(entries, &keys);
        let pct = |x: f64| format!("{:.2}%", x * 100.0);
        println!(
            "{:>5}% {entries:>8} {:>8} {:>8} {:>14} {:>14} {:>8}",
            percent,
            pct(lru),
            pct(lfu),
            pct(raw_lru),
            pct(raw_lfu),
            pct(top)
        );
        let _ = writeln!(
            csv,
            "{percent},{entries},{lru:.4},{lfu:.4},{raw_lru:.4},{raw_lfu:.4},{top:.4}"
        );
    }
    let out = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../bench/cache/hit_ratio.csv"
    );
    match std::fs::write(out, csv) {
        Ok(()) => println!("wrote bench/cache/hit_ratio.csv"),
        Err(error) => eprintln!("could not write {out}: {error}"),
    }
}
