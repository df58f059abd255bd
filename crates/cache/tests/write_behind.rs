//! Write-behind flushes on size, on interval and on shutdown. Time is Tokio's paused
//! clock: timers fire exactly when the clock is advanced, nothing sleeps for real.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use basis_cache::{BoxError, Cache, Cached, Error, WriteBehind, WriteBehindConfig, WriteSink};
use tokio::sync::mpsc;
use tokio::time::Instant;

/// Records every batch with the (paused) time it arrived.
#[derive(Clone)]
struct Recorder {
    batches: mpsc::UnboundedSender<(Instant, Vec<(u32, String)>)>,
    fail: Arc<Mutex<bool>>,
}

impl WriteSink<u32, String> for Recorder {
    async fn write_batch(&self, batch: &[(u32, String)]) -> Result<(), BoxError> {
        if *self.fail.lock().expect("not poisoned") {
            return Err("store unavailable".into());
        }
        let mut sorted = batch.to_vec();
        sorted.sort();
        let _ = self.batches.send((Instant::now(), sorted));
        Ok(())
    }
}

type Batches = mpsc::UnboundedReceiver<(Instant, Vec<(u32, String)>)>;

/// A write-behind over a recording sink.
struct Harness {
    wb: WriteBehind<u32, String>,
    cache: Cache<u32, String>,
    batches: Batches,
    /// Set to make the sink fail.
    fail: Arc<Mutex<bool>>,
}

fn start(config: WriteBehindConfig) -> Harness {
    let cache = Cache::builder("wb").build().expect("valid configuration");
    let (tx, batches) = mpsc::unbounded_channel();
    let fail = Arc::new(Mutex::new(false));
    let sink = Recorder {
        batches: tx,
        fail: fail.clone(),
    };
    Harness {
        wb: WriteBehind::new(cache.clone(), sink, config),
        cache,
        batches,
        fail,
    }
}

fn config(max_batch: usize) -> WriteBehindConfig {
    WriteBehindConfig {
        max_batch,
        flush_interval: Duration::from_secs(5),
        capacity: 100,
    }
}

#[tokio::test(start_paused = true)]
async fn a_full_batch_is_flushed_at_once_without_waiting_for_the_interval() {
    let Harness {
        wb,
        cache,
        mut batches,
        ..
    } = start(config(3));
    let started = Instant::now();
    for i in 0..3 {
        wb.write(i, format!("v{i}")).await.expect("open");
    }
    assert_eq!(
        cache.peek(&1),
        Some(Cached::Value("v1".into())),
        "the cache has it at once"
    );
    let (at, batch) = batches.recv().await.expect("a batch");
    assert_eq!(at, started, "flushed on size, not on the timer");
    assert_eq!(
        batch,
        vec![(0, "v0".into()), (1, "v1".into()), (2, "v2".into())]
    );
}

#[tokio::test(start_paused = true)]
async fn a_partial_batch_is_flushed_when_the_interval_elapses() {
    let Harness {
        wb, mut batches, ..
    } = start(config(100));
    let started = Instant::now();
    wb.write(7, "a".into()).await.expect("open");
    wb.write(7, "b".into()).await.expect("open");
    let (at, batch) = batches.recv().await.expect("a batch");
    assert_eq!(at - started, Duration::from_secs(5));
    assert_eq!(
        batch,
        vec![(7, "b".into())],
        "repeated writes to a key coalesce"
    );
}

#[tokio::test(start_paused = true)]
async fn shutdown_flushes_what_is_pending_and_closes_the_buffer() {
    let Harness {
        wb, mut batches, ..
    } = start(config(100));
    let started = Instant::now();
    wb.write(1, "x".into()).await.expect("open");
    wb.shutdown().await.expect("flushed");
    let (at, batch) = batches
        .try_recv()
        .expect("flushed before shutdown returned");
    assert_eq!(at, started);
    assert_eq!(batch, vec![(1, "x".into())]);
    assert!(matches!(wb.write(2, "y".into()).await, Err(Error::Closed)));
    wb.shutdown().await.expect("a second shutdown is a no-op");
}

#[tokio::test(start_paused = true)]
async fn a_failed_flush_is_retried_on_the_next_tick() {
    let Harness {
        wb,
        mut batches,
        fail,
        ..
    } = start(config(100));
    *fail.lock().expect("not poisoned") = true;
    wb.write(1, "x".into()).await.expect("open");
    assert!(matches!(wb.flush().await, Err(Error::Store(_))));
    *fail.lock().expect("not poisoned") = false;
    let started = Instant::now();
    let (at, batch) = batches.recv().await.expect("retried");
    assert_eq!(at - started, Duration::from_secs(5));
    assert_eq!(batch, vec![(1, "x".into())]);
}

#[tokio::test(start_paused = true)]
async fn dropping_every_handle_still_flushes() {
    let Harness {
        wb,
        cache,
        mut batches,
        ..
    } = start(config(100));
    wb.write(4, "z".into()).await.expect("open");
    drop(wb);
    drop(cache);
    let (_, batch) = batches.recv().await.expect("flushed on drop");
    assert_eq!(batch, vec![(4, "z".into())]);
}
