//! A fixed number of rate-limit checks on one thread, for counting instructions per check
//! under `valgrind --tool=callgrind` (`bench/instructions.sh` runs it at two counts and
//! divides the difference, so start-up and key insertion cancel out).
//!
//! `cargo run --release -p basis-ratelimit --example check_loop -- <case> <checks>`
//! with `<case>` one of: `gcra-keyed`, `token-bucket-keyed`, `governor-keyed` (1000 keys,
//! round robin), `gcra-one-key`, `governor-direct`.

use std::hint::black_box;
use std::num::{NonZeroU32, NonZeroU64};
use std::time::Duration;

use basis_ratelimit::{Algorithm, MemoryConfig, MemoryStore, Policy};
use governor::{Quota, RateLimiter};

const KEYS: usize = 1_000;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (Some(case), Some(n)) = (
        args.get(1),
        args.get(2).and_then(|n| n.parse::<usize>().ok()),
    ) else {
        eprintln!("usage: check_loop <case> <checks>");
        std::process::exit(2);
    };
    // Quotas high enough that every check is admitted, as in the criterion bench.
    let policy = |algorithm| {
        Policy::new(
            algorithm,
            NonZeroU64::new(1_000_000_000).unwrap(),
            Duration::from_secs(1),
        )
        .unwrap()
    };
    let quota = Quota::per_second(NonZeroU32::new(1_000_000_000).unwrap());
    let keys: Vec<String> = (0..KEYS)
        .map(|i| format!("ip:10.0.{}.{}", i / 256, i % 256))
        .collect();
    let allowed = match case.as_str() {
        "gcra-keyed" | "token-bucket-keyed" | "gcra-one-key" => {
            let algorithm = if case == "token-bucket-keyed" {
                Algorithm::TokenBucket
            } else {
                Algorithm::Gcra
            };
            let p = policy(algorithm);
            let store = MemoryStore::new(MemoryConfig::default());
            let spread = if case == "gcra-one-key" { 1 } else { KEYS };
            measured(n, |i| {
                store.check_one(&p, "api", &keys[i % spread], 1).allowed
            })
        }
        "governor-keyed" => {
            let keyed = RateLimiter::keyed(quota);
            measured(n, |i| keyed.check_key(&keys[i % KEYS]).is_ok())
        }
        "governor-direct" => {
            let direct = RateLimiter::direct(quota);
            measured(n, |_| direct.check().is_ok())
        }
        other => {
            eprintln!("unknown case {other}");
            std::process::exit(2);
        }
    };
    println!("{allowed} of {n} allowed");
}

/// The measured loop: callgrind counts only inside it (`--toggle-collect=*measured*`), which
/// leaves out the clocks' calibration at start-up; its length varies between runs.
#[inline(never)]
fn measured(n: usize, mut check: impl FnMut(usize) -> bool) -> usize {
    (0..n).filter(|&i| black_box(check(black_box(i)))).count()
}
