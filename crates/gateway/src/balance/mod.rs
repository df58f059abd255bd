//! Choosing a backend: every algorithm `basis gateway --algorithm` offers, as plain code that
//! takes the eligible backends (health already applied) and returns one of their ids.
//!
//! Nothing here performs I/O or reads a clock: load and latency arrive in [`Candidate`], the
//! request's hash key as a `u64`, randomness as an `Rng`. That is what lets the unit and
//! property tests below check exact sequences and distributions.

mod hash;
mod ring;
mod smooth;

use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use rand::Rng;

pub use hash::stable_hash;
pub use ring::Ring;
pub use smooth::SmoothWeighted;

/// The selection algorithms, named as on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Algorithm {
    /// Each backend in turn, weights ignored.
    RoundRobin,
    /// nginx's smooth weighted round robin: weights 5,1,1 give `a a b a c a a`.
    WeightedRoundRobin,
    /// Fewest requests in flight relative to weight.
    LeastConn,
    /// The client address decides; the same client keeps its backend while it is healthy.
    IpHash,
    /// A ketama ring over a chosen key: adding or removing a backend moves about 1/N of keys.
    ConsistentHash,
    /// Two random backends, the less loaded (in flight / weight) wins.
    RandomTwo,
    /// Two random backends, the lower peak-EWMA latency × (in flight + 1) / weight wins.
    P2cEwma,
}

impl Algorithm {
    /// Whether the algorithm needs the request's hash key.
    pub fn needs_key(self) -> bool {
        matches!(self, Self::IpHash | Self::ConsistentHash)
    }
}

/// One eligible backend at the moment of choice.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Candidate {
    /// The backend's index in the configuration (stable for the configuration's lifetime).
    pub id: usize,
    /// Its configured weight (at least 1).
    pub weight: u32,
    /// Requests sent to it whose responses have not finished.
    pub in_flight: u32,
    /// Its decayed peak-EWMA latency in nanoseconds.
    pub latency_ns: f64,
}

/// The algorithm with whatever state it keeps between choices.
#[derive(Debug)]
pub struct Balancer {
    algorithm: Algorithm,
    /// All configured backends, for the algorithms that hash over the whole set.
    total: usize,
    turn: AtomicUsize,
    /// Smooth WRR's running weights; the lock is held for a few additions, never across I/O.
    smooth: Mutex<SmoothWeighted>,
    ring: Ring,
}

impl Balancer {
    /// `names` identify backends on the hash ring (so a backend's points do not move when
    /// another is added); `weights` are per backend, in configuration order.
    pub fn new(algorithm: Algorithm, names: &[&str], weights: &[u32]) -> Self {
        Self {
            algorithm,
            total: weights.len(),
            turn: AtomicUsize::new(0),
            smooth: Mutex::new(SmoothWeighted::new(weights.len())),
            // Only consistent hashing reads the ring; skip building thousands of points otherwise.
            ring: if algorithm == Algorithm::ConsistentHash {
                Ring::new(names.iter().copied().zip(weights.iter().copied()))
            } else {
                Ring::default()
            },
        }
    }

    /// The configured algorithm.
    pub fn algorithm(&self) -> Algorithm {
        self.algorithm
    }

    /// The id of the chosen candidate, or `None` when there is none. `candidates` are
    /// sorted by id; `key` is the request's hash key (ignored by algorithms that need none).
    pub fn pick(&self, candidates: &[Candidate], key: u64, rng: &mut impl Rng) -> Option<usize> {
        match candidates {
            [] => return None,
            [only] => {
                if self.algorithm == Algorithm::WeightedRoundRobin {
                    // Keep the running weights moving so the sequence stays smooth.
                    self.lock_smooth().next(candidates);
                }
                return Some(only.id);
            }
            _ => {}
        }
        let id = match self.algorithm {
            Algorithm::RoundRobin => {
                candidates[self.turn.fetch_add(1, Ordering::Relaxed) % candidates.len()].id
            }
            Algorithm::WeightedRoundRobin => self.lock_smooth().next(candidates),
            Algorithm::LeastConn => self.least_conn(candidates),
            Algorithm::IpHash => ip_hash(candidates, self.total, key),
            Algorithm::ConsistentHash => self.ring.lookup(key, candidates),
            Algorithm::RandomTwo => {
                two_choices(candidates, rng, |c| load(c.in_flight as f64, c.weight))
            }
            Algorithm::P2cEwma => two_choices(candidates, rng, ewma_cost),
        };
        Some(id)
    }

    fn lock_smooth(&self) -> std::sync::MutexGuard<'_, SmoothWeighted> {
        // A panic while holding the lock leaves only counters behind; keep using them.
        self.smooth.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Least in flight per weight; ties rotate so equal backends share the load.
    fn least_conn(&self, candidates: &[Candidate]) -> usize {
        let best = candidates
            .iter()
            .map(|c| load(c.in_flight as f64, c.weight))
            .fold(f64::INFINITY, f64::min);
        let tied: Vec<usize> = candidates
            .iter()
            .filter(|c| load(c.in_flight as f64, c.weight) <= best)
            .map(|c| c.id)
            .collect();
        tied[self.turn.fetch_add(1, Ordering::Relaxed) % tied.len()]
    }
}

fn load(in_flight: f64, weight: u32) -> f64 {
    in_flight / f64::from(weight.max(1))
}

/// Latency cost as Linkerd and tower weigh it: a slow backend with nothing in flight still
/// loses to a fast one, and a fast one loses once enough requests queue on it.
pub fn ewma_cost(candidate: &Candidate) -> f64 {
    (candidate.latency_ns + 1.0) * (f64::from(candidate.in_flight) + 1.0)
        / f64::from(candidate.weight.max(1))
}

/// Power of two choices: two distinct random candidates, the cheaper wins.
fn two_choices(
    candidates: &[Candidate],
    rng: &mut impl Rng,
    cost: impl Fn(&Candidate) -> f64,
) -> usize {
    let n = candidates.len();
    let a = rng.random_range(0..n);
    let mut b = rng.random_range(0..n - 1);
    if b >= a {
        b += 1;
    }
    let (a, b) = (&candidates[a], &candidates[b]);
    if cost(b) < cost(a) { b.id } else { a.id }
}

/// Hashes over all configured backends and re-hashes while the result is not eligible, so a
/// client's backend changes only when that backend itself is out (nginx's `ip_hash` rule).
fn ip_hash(candidates: &[Candidate], total: usize, key: u64) -> usize {
    let total = total.max(1) as u64;
    for attempt in 0..32u64 {
        let id = (hash::mix(key ^ attempt.wrapping_mul(0x9e37_79b9_7f4a_7c15)) % total) as usize;
        if candidates.binary_search_by_key(&id, |c| c.id).is_ok() {
            return id;
        }
    }
    candidates[(key % candidates.len() as u64) as usize].id
}

#[cfg(test)]
mod tests;
