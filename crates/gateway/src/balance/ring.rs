//! Consistent hashing on a ketama ring: each backend owns points placed by hashing its name,
//! a key goes to the first point at or after its hash. A new backend takes only the keys that
//! fall just before its own points (about 1/N); no key moves between the backends that stay.

use super::Candidate;
use super::hash::stable_hash;

/// Points per unit of weight: enough that shares stay within a few percent of the weights.
const POINTS_PER_WEIGHT: u32 = 160;
/// A cap so a large weight cannot make the ring huge.
const MAX_POINTS: u32 = 160 * 100;

/// The ring: sorted (point, backend id) pairs.
#[derive(Debug, Clone, Default)]
pub struct Ring {
    points: Vec<(u64, usize)>,
}

impl Ring {
    /// A ring over `(name, weight)` in configuration order; ids are positions in that order.
    pub fn new<'a>(backends: impl IntoIterator<Item = (&'a str, u32)>) -> Self {
        let mut points = Vec::new();
        for (id, (name, weight)) in backends.into_iter().enumerate() {
            let count = weight
                .max(1)
                .saturating_mul(POINTS_PER_WEIGHT)
                .min(MAX_POINTS);
            for i in 0..count {
                points.push((stable_hash(format!("{name}#{i}").as_bytes()), id));
            }
        }
        points.sort_unstable();
        Self { points }
    }

    /// The owner of `key` among `candidates` (sorted by id, non-empty): the first point at or
    /// after the key whose backend is eligible, wrapping around.
    pub fn lookup(&self, key: u64, candidates: &[Candidate]) -> usize {
        if self.points.is_empty() {
            return candidates[0].id;
        }
        let start = self.points.partition_point(|&(point, _)| point < key);
        let eligible = |id: usize| candidates.binary_search_by_key(&id, |c| c.id).is_ok();
        let (after, before) = self.points.split_at(start);
        before
            .iter()
            .chain(after)
            .map(|&(_, id)| id)
            .find(|&id| eligible(id))
            .unwrap_or(candidates[0].id)
    }
}
