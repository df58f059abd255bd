//! What the admin overview reads: each dependency up or down (the store as `/readyz`
//! checks it, the queue by reading its figures, each cache's Redis tier by its
//! invalidation subscription), and each cache's hits and misses per tier (the counts
//! behind `basis_cache_hits_total` and `basis_cache_misses_total`).

use basis_cache::{Cache, CacheKey, CacheValue, HitCounts};

use super::queues::{QueueList, figures};
use crate::error::ApiResult;
use crate::state::AppState;

/// One dependency's state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dependency {
    /// What it is: `store`, `queue`, `cache links`, …
    pub name: String,
    /// Which backend serves it (`sqlite`, `postgres`, `redis`, `in process`, …).
    pub backend: String,
    /// Whether it answers.
    pub up: bool,
    /// Why not, when it does not (for admins only; never shown to others).
    pub problem: Option<String>,
}

/// One cache namespace's counts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheFigures {
    /// The namespace (`links`, `users`).
    pub namespace: String,
    /// Whether it has a Redis tier.
    pub has_l2: bool,
    /// Its hits and misses.
    pub counts: HitCounts,
}

impl CacheFigures {
    /// The hit ratio of L1 (`None` before any lookup).
    pub fn l1_ratio(&self) -> Option<f64> {
        ratio(self.counts.l1_hits, self.counts.l1_misses)
    }

    /// The hit ratio of L2 among L1's misses that reached it (`None` without lookups).
    pub fn l2_ratio(&self) -> Option<f64> {
        ratio(self.counts.l2_hits, self.counts.l2_misses)
    }
}

fn ratio(hits: u64, misses: u64) -> Option<f64> {
    let total = hits + misses;
    (total > 0).then(|| hits as f64 / total as f64)
}

/// Everything the overview shows but the rate limits.
#[derive(Debug)]
pub struct Overview {
    /// Each dependency.
    pub dependencies: Vec<Dependency>,
    /// The queues' figures, if the queue answered.
    pub queues: Option<QueueList>,
    /// Each cache.
    pub caches: Vec<CacheFigures>,
}

fn cache_figures<K: CacheKey, V: CacheValue>(cache: &Cache<K, V>) -> (CacheFigures, Dependency) {
    let has_l2 = cache.has_l2();
    let namespace = cache.namespace().to_owned();
    let up = cache.is_coherent();
    let dependency = Dependency {
        name: format!("cache {namespace}"),
        backend: if has_l2 {
            "redis + in process"
        } else {
            "in process"
        }
        .to_owned(),
        up,
        problem: (!up).then(|| "the Redis invalidation subscription is down".to_owned()),
    };
    let figures = CacheFigures {
        namespace,
        has_l2,
        counts: cache.hit_counts(),
    };
    (figures, dependency)
}

/// The store's engine, and with a multi-host URL the node that takes writes (admins see
/// the address that `/readyz` gives only by position).
fn store_backend(store: &basis_store::Store) -> String {
    let engine = store.engine().system_name();
    match store.leader() {
        Some(leader) => match leader.current() {
            Some(node) => format!("{engine} (primary {node})"),
            None => format!("{engine} (no primary: an election)"),
        },
        None => engine.to_owned(),
    }
}

/// Reads every figure; a dependency that fails is reported down, never an error.
pub async fn read(state: &AppState) -> Overview {
    let store = crate::ops::check_store(&state.store).await;
    let mut dependencies = vec![Dependency {
        name: "store".to_owned(),
        backend: store_backend(&state.store),
        up: store.is_ok(),
        problem: store.err().map(|e| e.to_string()),
    }];
    let queues: ApiResult<QueueList> = figures(state).await;
    dependencies.push(Dependency {
        name: "queue".to_owned(),
        backend: state.jobs.backend().name().to_owned(),
        up: queues.is_ok(),
        problem: queues.as_ref().err().map(|e| e.to_string()),
    });
    let mut caches = Vec::new();
    for (figures, dependency) in [
        cache_figures(state.link_cache.cache()),
        cache_figures(&state.user_views),
    ] {
        caches.push(figures);
        dependencies.push(dependency);
    }
    Overview {
        dependencies,
        queues: queues.ok(),
        caches,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ratio_is_hits_over_lookups_and_none_without_lookups() {
        assert_eq!(ratio(0, 0), None);
        assert_eq!(ratio(3, 1), Some(0.75));
    }
}
