//! Write-behind: writes land in the cache at once and reach the store later, in batches.
//!
//! A background worker keeps the pending writes in a map (a key written twice is stored
//! once, latest value wins) and hands them to a [`WriteSink`] when
//! - `max_batch` distinct keys are pending (flush on size),
//! - every `flush_interval` (flush on interval),
//! - [`WriteBehind::flush`] or [`WriteBehind::shutdown`] is called, or the last handle drops.
//!
//! # Loss window
//!
//! A write is durable only once its batch is flushed. If the process dies without a
//! graceful shutdown, what is lost is what was pending: at most `capacity + max_batch`
//! writes, none older than `flush_interval` plus one flush's duration while the sink is
//! healthy. A failing sink keeps its batch pending and retries it on the next tick; once
//! `capacity` keys are pending, `write` waits (back-pressure) rather than grow without
//! bound. `examples/write_behind.rs` measures the window; see `bench/cache/RESULTS.md`.

use std::collections::HashMap;
use std::future::Future;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tokio::time::{Instant, MissedTickBehavior};

use crate::cache::Cache;
use crate::error::{BoxError, Error};
use crate::key::{CacheKey, CacheValue};
use crate::metrics::Metrics;

/// Where write-behind batches go: the source of truth.
///
/// ```no_run
/// use basis_cache::{BoxError, Cache, WriteBehind, WriteBehindConfig, WriteSink};
///
/// struct ViewCounts; // would hold a database pool
///
/// impl WriteSink<u64, u64> for ViewCounts {
///     async fn write_batch(&self, batch: &[(u64, u64)]) -> Result<(), BoxError> {
///         // One upsert for the whole batch, e.g. INSERT … ON CONFLICT DO UPDATE.
///         let _ = batch;
///         Ok(())
///     }
/// }
///
/// # async fn demo() -> Result<(), basis_cache::Error> {
/// let cache: Cache<u64, u64> = Cache::new("views", None)?;
/// let views = WriteBehind::new(cache, ViewCounts, WriteBehindConfig::default());
/// views.write(42, 1_000).await?; // cached now, stored within a second
/// views.shutdown().await?;      // on graceful shutdown: flush what is left
/// # Ok(()) }
/// ```
pub trait WriteSink<K, V>: Send + Sync + 'static {
    /// Writes one batch (distinct keys). An error keeps the batch pending for a retry, so
    /// the write must be idempotent (an upsert).
    fn write_batch(&self, batch: &[(K, V)]) -> impl Future<Output = Result<(), BoxError>> + Send;
}

/// When the write-behind buffer flushes.
#[derive(Debug, Clone, Copy)]
pub struct WriteBehindConfig {
    /// Flush as soon as this many distinct keys are pending (default 500).
    pub max_batch: usize,
    /// Flush at least this often while anything is pending (default 1 s).
    pub flush_interval: Duration,
    /// The most distinct keys kept pending before `write` waits (default 10 000).
    pub capacity: usize,
}

impl Default for WriteBehindConfig {
    fn default() -> Self {
        Self {
            max_batch: 500,
            flush_interval: Duration::from_secs(1),
            capacity: 10_000,
        }
    }
}

/// A write-behind front for a [`Cache`]. Cloning shares the same buffer.
pub struct WriteBehind<K, V> {
    cache: Cache<K, V>,
    tx: mpsc::Sender<Command<K, V>>,
}

impl<K, V> Clone for WriteBehind<K, V> {
    fn clone(&self) -> Self {
        Self {
            cache: self.cache.clone(),
            tx: self.tx.clone(),
        }
    }
}

enum Command<K, V> {
    Write(K, V),
    Flush(oneshot::Sender<Result<(), Error>>),
    Shutdown(oneshot::Sender<Result<(), Error>>),
}

impl<K: CacheKey, V: CacheValue> WriteBehind<K, V> {
    /// Starts the flushing worker; must be called inside a Tokio runtime.
    pub fn new<S: WriteSink<K, V>>(cache: Cache<K, V>, sink: S, config: WriteBehindConfig) -> Self {
        let config = WriteBehindConfig {
            max_batch: config.max_batch.max(1),
            capacity: config.capacity.max(config.max_batch.max(1)),
            flush_interval: config.flush_interval.max(Duration::from_millis(1)),
        };
        let (tx, rx) = mpsc::channel(config.max_batch);
        let worker = Worker {
            sink,
            rx,
            pending: HashMap::new(),
            config,
            metrics: cache.inner.metrics.clone(),
        };
        tokio::spawn(worker.run());
        Self { cache, tx }
    }

    /// Queues the write for the store, then updates the cache (so a shut-down buffer never
    /// leaves the cache ahead of the store). Waits while the buffer is full.
    pub async fn write(&self, key: K, value: V) -> Result<(), Error> {
        self.tx
            .send(Command::Write(key.clone(), value.clone()))
            .await
            .map_err(|_| Error::Closed)?;
        self.cache.insert(key, value).await;
        Ok(())
    }

    /// Flushes everything pending now and waits for the store's answer.
    pub async fn flush(&self) -> Result<(), Error> {
        self.ask(Command::Flush).await
    }

    /// Flushes what is pending and stops the worker; later writes get [`Error::Closed`].
    /// Call it on graceful shutdown. A second call is a no-op.
    pub async fn shutdown(&self) -> Result<(), Error> {
        match self.ask(Command::Shutdown).await {
            Err(Error::Closed) => Ok(()),
            other => other,
        }
    }

    async fn ask(
        &self,
        command: impl FnOnce(oneshot::Sender<Result<(), Error>>) -> Command<K, V>,
    ) -> Result<(), Error> {
        let (ack, answer) = oneshot::channel();
        self.tx
            .send(command(ack))
            .await
            .map_err(|_| Error::Closed)?;
        answer.await.map_err(|_| Error::Closed)?
    }
}

struct Worker<K, V, S> {
    sink: S,
    rx: mpsc::Receiver<Command<K, V>>,
    pending: HashMap<K, V>,
    config: WriteBehindConfig,
    metrics: Metrics,
}

impl<K: CacheKey, V: CacheValue, S: WriteSink<K, V>> Worker<K, V, S> {
    async fn run(mut self) {
        let period = self.config.flush_interval;
        let mut ticker = tokio::time::interval_at(Instant::now() + period, period);
        ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            let room = self.pending.len() < self.config.capacity;
            tokio::select! {
                command = self.rx.recv(), if room => match command {
                    Some(Command::Write(key, value)) => {
                        self.pending.insert(key, value);
                        if self.pending.len() >= self.config.max_batch {
                            // A failure stays pending and is retried on the next tick.
                            let _ = self.flush().await;
                        }
                    }
                    Some(Command::Flush(ack)) => {
                        let _ = ack.send(self.flush().await);
                    }
                    Some(Command::Shutdown(ack)) => {
                        self.finish(vec![ack]).await;
                        return;
                    }
                    None => {
                        // Every handle is gone: flush what is left.
                        self.finish(Vec::new()).await;
                        return;
                    }
                },
                _ = ticker.tick() => {
                    let _ = self.flush().await;
                }
            }
        }
    }

    /// Takes whatever is still queued, flushes once and answers every waiting caller.
    async fn finish(&mut self, mut acks: Vec<oneshot::Sender<Result<(), Error>>>) {
        self.rx.close();
        while let Ok(command) = self.rx.try_recv() {
            match command {
                Command::Write(key, value) => {
                    self.pending.insert(key, value);
                }
                Command::Flush(ack) | Command::Shutdown(ack) => acks.push(ack),
            }
        }
        let result = self.flush().await;
        if let Err(error) = &result {
            tracing::error!(%error, lost = self.pending.len(), "write-behind shut down with unflushed writes");
        }
        for ack in acks {
            let _ = ack.send(result.clone());
        }
    }

    async fn flush(&mut self) -> Result<(), Error> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let batch: Vec<(K, V)> = self.pending.drain().collect();
        match self.sink.write_batch(&batch).await {
            Ok(()) => {
                self.metrics.wb_flushes.increment(1);
                self.metrics.wb_flushed_items.increment(batch.len() as u64);
                Ok(())
            }
            Err(error) => {
                self.metrics.wb_flush_errors.increment(1);
                tracing::warn!(%error, keys = batch.len(), "write-behind flush failed; will retry");
                for (key, value) in batch {
                    // Keep newer writes that arrived meanwhile.
                    self.pending.entry(key).or_insert(value);
                }
                Err(Error::store(error))
            }
        }
    }
}
