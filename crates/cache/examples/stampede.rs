//! The guide's cache stampede, shown: 1,000 concurrent requests for one cold key, served
//! all released at once by a barrier, served by a plain cache-aside (check, load on miss, store) and by `basis-cache`'s single-flight.
//!
//! ```text
//! cargo run -p basis-cache --example stampede
//! ```

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use basis_cache::Cache;
use tokio::sync::Barrier;

const REQUESTS: usize = 1_000;
/// What the simulated database query costs.
const QUERY_TIME: Duration = Duration::from_millis(20);

/// The "database": counts its queries.
#[derive(Clone, Default)]
struct Database {
    queries: Arc<AtomicUsize>,
}

impl Database {
    async fn find_link(&self, code: &str) -> Result<Option<String>, std::io::Error> {
        self.queries.fetch_add(1, Ordering::SeqCst);
        tokio::time::sleep(QUERY_TIME).await;
        Ok(Some(format!("https://example.com/{code}")))
    }

    fn queries(&self) -> usize {
        self.queries.load(Ordering::SeqCst)
    }
}

/// Cache-aside without coordination: every request that misses queries the database.
async fn naive(db: Database) -> Duration {
    let cache: moka::sync::Cache<String, String> = moka::sync::Cache::new(10_000);
    let start = Arc::new(Barrier::new(REQUESTS));
    let started = Instant::now();
    let mut requests = tokio::task::JoinSet::new();
    for _ in 0..REQUESTS {
        let (cache, db, start) = (cache.clone(), db.clone(), start.clone());
        requests.spawn(async move {
            start.wait().await;
            let key = "cold".to_string();
            if let Some(hit) = cache.get(&key) {
                return Some(hit);
            }
            let loaded = db.find_link(&key).await.ok().flatten()?;
            cache.insert(key, loaded.clone());
            Some(loaded)
        });
    }
    while requests.join_next().await.is_some() {}
    started.elapsed()
}

/// `basis-cache`: concurrent misses on one key share one load.
async fn single_flight(db: Database) -> Duration {
    let cache: Cache<String, String> = match Cache::builder("stampede-demo").build() {
        Ok(cache) => cache,
        Err(error) => panic!("demo configuration is valid: {error}"),
    };
    let start = Arc::new(Barrier::new(REQUESTS));
    let started = Instant::now();
    let mut requests = tokio::task::JoinSet::new();
    for _ in 0..REQUESTS {
        let (cache, db, start) = (cache.clone(), db.clone(), start.clone());
        requests.spawn(async move {
            start.wait().await;
            let key = "cold".to_string();
            cache.get_or_load(&key, || db.find_link(&key)).await
        });
    }
    while requests.join_next().await.is_some() {}
    started.elapsed()
}

#[tokio::main]
async fn main() {
    println!(
        "{REQUESTS} concurrent requests for one cold key; each database query takes {QUERY_TIME:?}\n"
    );
    let db = Database::default();
    let took = naive(db.clone()).await;
    println!(
        "without single-flight: the loader ran {:>4} times ({took:.1?})",
        db.queries()
    );
    let db = Database::default();
    let took = single_flight(db.clone()).await;
    println!(
        "with single-flight:    the loader ran {:>4} time{} ({took:.1?})",
        db.queries(),
        if db.queries() == 1 { "" } else { "s" }
    );
}
