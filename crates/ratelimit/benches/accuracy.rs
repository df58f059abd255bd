//! Accuracy of the approximate algorithms against the exact sliding log, on synthetic
//! traces: the share of decisions that differ from what an exact sliding window would
//! decide given the same admitted history.
//!
//! `cargo bench -p basis-ratelimit --bench accuracy`
//!
//! Each algorithm runs on its own; at every arrival its decision is compared with the
//! exact answer for *its own* admitted history ("would one more fit in the last period?").
//! A wrong "allow" lets a client over the limit; a wrong "deny" refuses a request that
//! was within it. Deterministic: a fixed-seed xorshift generator.

use std::collections::VecDeque;
use std::num::NonZeroU64;
use std::time::Duration;

use basis_ratelimit::{Algorithm, Policy};

const PERIOD: u64 = 60_000_000_000; // one minute in ns
const LIMIT: u64 = 100;
const CLIENTS: usize = 200;
const PERIODS: u64 = 60;

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// Uniform in [0, 1).
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Exponential gap with the given mean.
    fn exp(&mut self, mean: f64) -> u64 {
        (-(1.0 - self.unit()).ln() * mean) as u64
    }
}

/// Arrival times of one client: bursts at `rate_factor` × the limit's average rate,
/// separated by idle gaps, or steady Poisson traffic at that rate when `bursty` is false.
fn trace(rng: &mut Rng, bursty: bool, rate_factor: f64) -> Vec<u64> {
    let mean_gap = PERIOD as f64 / (LIMIT as f64 * rate_factor);
    let end = PERIODS * PERIOD;
    let mut t = rng.next() % PERIOD;
    let mut out = Vec::new();
    while t < end {
        if bursty {
            // A burst of 5..=150 requests, then silence of up to two periods.
            let n = 5 + rng.next() % 146;
            for _ in 0..n {
                t += rng.exp(mean_gap);
                out.push(t);
            }
            t += rng.next() % (2 * PERIOD);
        } else {
            t += rng.exp(mean_gap);
            out.push(t);
        }
    }
    out
}

#[derive(Default)]
struct Score {
    decisions: u64,
    false_allow: u64,
    false_deny: u64,
    allowed: u64,
}

fn score(algorithm: Algorithm, traces: &[Vec<u64>]) -> Score {
    let p = Policy::new(
        algorithm,
        NonZeroU64::new(LIMIT).unwrap(),
        Duration::from_nanos(PERIOD),
    )
    .unwrap();
    let mut s = Score::default();
    for arrivals in traces {
        let mut state = p.new_state();
        let mut admitted: VecDeque<u64> = VecDeque::new();
        for &t in arrivals {
            while admitted.front().is_some_and(|&a| a + PERIOD <= t) {
                admitted.pop_front();
            }
            let exact = (admitted.len() as u64) < LIMIT;
            let got = p.check(&mut state, t, 1, true).allowed;
            s.decisions += 1;
            match (got, exact) {
                (true, false) => s.false_allow += 1,
                (false, true) => s.false_deny += 1,
                _ => {}
            }
            if got {
                s.allowed += 1;
                admitted.push_back(t);
            }
        }
    }
    s
}

fn main() {
    // `cargo bench` passes `--bench`; nothing to parse.
    // (name, share of bursty clients, their rate factor, rate factor of the others)
    let scenarios = [
        (
            "bursty: every client in on/off bursts at 3x the rate",
            1.0,
            3.0,
            0.0,
        ),
        ("steady Poisson at 0.9x the rate", 0.0, 0.0, 0.9),
        ("steady Poisson at 1.5x the rate", 0.0, 0.0, 1.5),
        ("mixed: 5% bursty at 3x, 95% steady at 0.3x", 0.05, 3.0, 0.3),
    ];
    println!(
        "limit {LIMIT} per {} s, {CLIENTS} clients, {PERIODS} periods each",
        PERIOD / 1_000_000_000
    );
    for (name, bursty_share, bursty_factor, steady_factor) in scenarios {
        let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
        let traces: Vec<Vec<u64>> = (0..CLIENTS)
            .map(|i| {
                if (i as f64) < bursty_share * CLIENTS as f64 {
                    trace(&mut rng, true, bursty_factor)
                } else {
                    trace(&mut rng, false, steady_factor)
                }
            })
            .collect();
        println!(
            "\n{name}: {} requests",
            traces.iter().map(Vec::len).sum::<usize>()
        );
        println!(
            "  {:<16} {:>10} {:>13} {:>12} {:>10}",
            "algorithm", "wrong %", "false allow", "false deny", "admitted"
        );
        for algorithm in Algorithm::ALL {
            let s = score(algorithm, &traces);
            println!(
                "  {:<16} {:>9.3}% {:>13} {:>12} {:>10}",
                algorithm.name(),
                100.0 * (s.false_allow + s.false_deny) as f64 / s.decisions as f64,
                s.false_allow,
                s.false_deny,
                s.allowed
            );
        }
    }
}
