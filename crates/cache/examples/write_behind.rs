//! Measures write-behind's loss window: how long a write waits in the buffer before the
//! store has it (what a crash at the worst moment would lose), at a steady write rate.
//!
//! ```text
//! cargo run --release -p basis-cache --example write_behind
//! ```

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use basis_cache::{BoxError, Cache, WriteBehind, WriteBehindConfig, WriteSink};

/// Remembers when each key reached the "store", and how big each batch was.
#[derive(Clone, Default)]
struct Store {
    flushed_at: Arc<Mutex<HashMap<u64, Instant>>>,
    batches: Arc<Mutex<Vec<usize>>>,
}

impl WriteSink<u64, u64> for Store {
    async fn write_batch(&self, batch: &[(u64, u64)]) -> Result<(), BoxError> {
        let now = Instant::now();
        let mut flushed = self.flushed_at.lock().map_err(|_| "poisoned")?;
        for (key, _) in batch {
            flushed.insert(*key, now);
        }
        self.batches
            .lock()
            .map_err(|_| "poisoned")?
            .push(batch.len());
        Ok(())
    }
}

async fn measure(rate_per_s: u64, seconds: u64, config: WriteBehindConfig) -> Result<(), BoxError> {
    let cache: Cache<u64, u64> = Cache::builder("wb-demo").build()?;
    let store = Store::default();
    let wb = WriteBehind::new(cache, store.clone(), config);
    let mut written_at = Vec::new();
    let mut pace = tokio::time::interval(Duration::from_micros(1_000_000 / rate_per_s));
    for key in 0..rate_per_s * seconds {
        pace.tick().await;
        written_at.push(Instant::now());
        wb.write(key, key).await?;
    }
    wb.shutdown().await?;
    let flushed = store.flushed_at.lock().map_err(|_| "poisoned")?;
    let mut waits: Vec<Duration> = written_at
        .iter()
        .enumerate()
        .filter_map(|(key, at)| flushed.get(&(key as u64)).map(|f| f.duration_since(*at)))
        .collect();
    waits.sort();
    let pct = |p: f64| waits[((waits.len() - 1) as f64 * p) as usize];
    let batches = store.batches.lock().map_err(|_| "poisoned")?;
    println!(
        "{:>6} writes/s, interval {:>5?}, max_batch {:>4}: wait p50 {:>7.1?}  p99 {:>7.1?}  max {:>7.1?}; \
         largest batch {:>4} (writes a crash could lose); {} flushes",
        rate_per_s,
        config.flush_interval,
        config.max_batch,
        pct(0.5),
        pct(0.99),
        waits[waits.len() - 1],
        batches.iter().max().copied().unwrap_or(0),
        batches.len(),
    );
    Ok(())
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let interval = |ms| WriteBehindConfig {
        flush_interval: Duration::from_millis(ms),
        max_batch: 500,
        capacity: 10_000,
    };
    measure(1_000, 3, interval(100)).await?;
    measure(1_000, 3, interval(500)).await?;
    // Past 500 writes per interval the size trigger flushes first and the window shrinks.
    measure(5_000, 3, interval(500)).await?;
    Ok(())
}
