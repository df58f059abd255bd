//! Smooth weighted round robin, the way nginx does it: every turn each eligible backend's
//! running weight grows by its weight, the largest is chosen and pays back the total. Heavy
//! backends are interleaved with light ones instead of served in bursts.

use super::Candidate;

/// Running weights, one per configured backend.
#[derive(Debug, Clone)]
pub struct SmoothWeighted {
    current: Vec<i64>,
}

impl SmoothWeighted {
    /// Zeroed running weights for `backends` backends.
    pub fn new(backends: usize) -> Self {
        Self {
            current: vec![0; backends],
        }
    }

    /// The next backend among `candidates` (non-empty, ids below the configured count).
    pub fn next(&mut self, candidates: &[Candidate]) -> usize {
        let mut total = 0i64;
        let mut best: Option<(usize, i64)> = None;
        for c in candidates {
            let Some(current) = self.current.get_mut(c.id) else {
                continue;
            };
            let weight = i64::from(c.weight.max(1));
            *current += weight;
            total += weight;
            let current = *current;
            // Strictly greater: on a tie the earlier backend wins, as in nginx.
            if best.is_none_or(|(_, top)| current > top) {
                best = Some((c.id, current));
            }
        }
        let best = best.map_or(candidates[0].id, |(id, _)| id);
        if let Some(current) = self.current.get_mut(best) {
            *current -= total;
        }
        best
    }
}
