//! Click counting without a database write per redirect.
//!
//! (Over 400 lines on purpose: counting, flushing and the in-flight bookkeeping share one
//! consistency argument, written below, and half of the file is its tests.)
//!
//! A redirect only adds to in-memory counters (one short, uncontended-in-practice mutex per
//! shard). Every flush interval the aggregates gathered are handed to the job queue as
//! click-batch jobs (at most [`MAX_LINKS_PER_BATCH`] links each); a worker applies each
//! batch in one transaction together with a record of its id, so a hot link costs one
//! `UPDATE` per interval, never serialises requests on its row, and a batch delivered
//! twice is counted once (`crate::links::click_batches`). A graceful stop enqueues what is left.
//!
//! When the queue refuses a batch (its broker is down), the flush applies the batches it
//! could not send itself, in the same transaction-with-record the worker uses, so a server
//! killed during a broker outage loses no more than one interval of clicks. A batch the
//! broker did keep (an answer lost, not a refusal) is then a no-op for the worker, by its
//! id. Only when the database refuses too are the batches kept in memory for the next flush.
//!
//! With the visit log on (`--visit-log-days`), each click is also kept as a visit (one
//! short line of text appended to its shard's buffer, capped per shard) and handed over in
//! batches of its own at the same flush, so the log too costs no database write and no
//! allocation of its own on the redirect path.
//!
//! Counts read through the API add the clicks not yet stored: the pending counters, and
//! the batches enqueued but not yet applied ("in flight"). An in-flight batch is dropped
//! from the count when its application is seen: at once when this process's worker applies
//! it, otherwise by [`ClickRecorder::settle`], which asks the database and is called after
//! the stored count is read, so a count is never doubled (it may lag for an instant).
//! Batches in flight longer than [`IN_FLIGHT_TTL`] (workers down) stop being counted, so
//! memory stays bounded. With several instances each adds only its own unstored clicks,
//! so a count can lag by the other instances' unstored traffic; the same bound applies to
//! how far `maxClicks` can be overshot across instances.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use basis_queue::{Backend, NewJob};
use basis_store::Store;
use basis_store::links::{self, LinkClicks};

use super::device::Device;
use crate::clock::{Clock, day_of};
use crate::links::click_batches::{APPLY_CLICKS, ClickBatchJob, VisitLine};
use crate::links::geoip::Country;

/// Links per click-batch job, so one job stays small whatever the traffic.
pub const MAX_LINKS_PER_BATCH: usize = 500;
/// How long an enqueued batch is counted while not yet applied.
pub const IN_FLIGHT_TTL: Duration = Duration::from_secs(15 * 60);
/// Attempts of a click batch before it is dead-lettered (retries back off exponentially,
/// so this covers a long database outage).
const BATCH_ATTEMPTS: u32 = 20;
const SHARDS: usize = 16;
/// Distinct referrer hosts kept per link between flushes; the rest are counted as "other",
/// so a client inventing referrers cannot grow memory without bound.
const MAX_REFERRERS_PER_LINK: usize = 32;
const OTHER_REFERRER: &str = "(other)";
/// Visits kept per shard between flushes for the visit log; past it, visits are still
/// counted but not logged (`basis_visits_dropped_total`), so a flood cannot exhaust memory.
const MAX_VISITS_PER_SHARD: usize = 16_384;
/// Visits per click-batch job.
pub const VISITS_PER_BATCH: usize = 1_000;

/// One click to count.
#[derive(Debug, Clone)]
pub struct Click {
    /// The link that was followed.
    pub link_id: i64,
    /// When, in Unix milliseconds.
    pub at_ms: i64,
    /// The client's device class.
    pub device: Device,
    /// The referring host, if any.
    pub referrer: Option<String>,
    /// What the visit log keeps beyond the aggregates (`None` while it is off).
    pub visit: Option<VisitDetails>,
}

/// The details of a click that only the visit log keeps.
#[derive(Debug, Clone)]
pub struct VisitDetails {
    /// The browser family.
    pub browser: &'static str,
    /// The client's network (its address cut to /24 or /48).
    pub network: Option<std::net::IpAddr>,
    /// The client's country, when known.
    pub country: Option<Country>,
}

/// Visits of one shard waiting for the next flush: their [`VisitLine`]s, and how many.
#[derive(Debug, Default)]
struct PendingVisits {
    lines: String,
    count: usize,
}

impl PendingVisits {
    fn is_full(&self) -> bool {
        self.count >= MAX_VISITS_PER_SHARD
    }

    fn push_line(&mut self, line: &str) {
        self.lines.push_str(line);
        self.count += 1;
    }
}

#[derive(Debug, Default, Clone)]
struct Pending {
    humans: i64,
    /// `(day, humans, bots)`: almost always one entry, two around midnight.
    days: Vec<(i64, i64, i64)>,
    referrers: HashMap<String, i64>,
    devices: [i64; 4],
}

impl Pending {
    fn add(&mut self, click: &Click) {
        let bot = click.device == Device::Bot;
        let day = day_of(click.at_ms);
        self.add_day(day, i64::from(!bot), i64::from(bot));
        self.devices[click.device.index()] += 1;
        if bot {
            return;
        }
        self.humans += 1;
        if let Some(host) = &click.referrer {
            self.add_referrer(host, 1);
        }
    }

    fn add_day(&mut self, day: i64, humans: i64, bots: i64) {
        links::add_to_day(&mut self.days, day, humans, bots);
    }

    fn add_referrer(&mut self, host: &str, n: i64) {
        if let Some(count) = self.referrers.get_mut(host) {
            *count += n;
        } else if self.referrers.len() < MAX_REFERRERS_PER_LINK {
            self.referrers.insert(host.to_owned(), n);
        } else {
            *self.referrers.entry(OTHER_REFERRER.to_owned()).or_default() += n;
        }
    }

    fn merge(&mut self, other: &LinkClicks) {
        self.humans += other.humans;
        for &(day, h, b) in &other.days {
            self.add_day(day, h, b);
        }
        for (host, n) in &other.referrers {
            self.add_referrer(host, *n);
        }
        for (name, n) in &other.devices {
            if let Some(device) = Device::ALL.iter().find(|d| d.as_str() == *name) {
                self.devices[device.index()] += n;
            }
        }
    }

    fn into_link_clicks(self, link_id: i64) -> LinkClicks {
        LinkClicks {
            link_id,
            humans: self.humans,
            days: self.days,
            referrers: self.referrers.into_iter().collect(),
            devices: Device::ALL
                .iter()
                .filter(|d| self.devices[d.index()] > 0)
                .map(|d| (d.as_str(), self.devices[d.index()]))
                .collect(),
        }
    }
}

/// A batch enqueued and not yet seen applied.
#[derive(Debug)]
struct InFlight {
    links: HashMap<i64, LinkClicks>,
    since: Instant,
}

/// Gathers clicks in memory and hands them to the queue in batches.
#[derive(Debug)]
pub struct ClickRecorder {
    store: Store,
    queue: Arc<dyn Backend>,
    // std mutexes: held only for a few map operations, never across an await.
    shards: Box<[Mutex<HashMap<i64, Pending>>]>,
    /// Visits waiting for the next flush, by shard, when the visit log is on.
    visits: Option<Box<[Mutex<PendingVisits>]>>,
    /// How many days the visit log keeps visits (`None`: off).
    visit_log_days: Option<u32>,
    /// Batches enqueued and not yet seen applied, by batch id, so counts read meanwhile
    /// still include them.
    in_flight: Mutex<HashMap<String, InFlight>>,
    /// How many batches are in flight (a lock-free "none" for the hot path).
    in_flight_count: AtomicUsize,
    /// Woken when a batch is seen applied.
    applied: tokio::sync::Notify,
    /// Bumped each time clicks finish moving (pending → in flight, in flight → stored or
    /// back to pending), and the number of moves under way: a reader that saw neither
    /// change read a consistent picture (see [`Self::read_with_unstored`]).
    moves: AtomicU64,
    moving: AtomicUsize,
    /// Batches a flush could neither hand to the queue nor store itself, sent again as
    /// they are by the next one (their clicks stay counted in flight meanwhile).
    unsent: Mutex<Vec<ClickBatchJob>>,
    /// The time of the record a batch applied here leaves (pruned by age).
    clock: Arc<dyn Clock>,
    /// One flush at a time.
    flush_lock: tokio::sync::Mutex<()>,
}

impl ClickRecorder {
    /// A recorder enqueueing on `queue`; `store` is where applied batches are looked up,
    /// and where a batch goes directly when the queue refuses it.
    pub fn new(store: Store, queue: Arc<dyn Backend>, clock: Arc<dyn Clock>) -> Self {
        Self {
            clock,
            store,
            queue,
            shards: (0..SHARDS).map(|_| Mutex::default()).collect(),
            visits: None,
            visit_log_days: None,
            in_flight: Mutex::default(),
            in_flight_count: AtomicUsize::new(0),
            applied: tokio::sync::Notify::new(),
            moves: AtomicU64::new(0),
            moving: AtomicUsize::new(0),
            unsent: Mutex::default(),
            flush_lock: tokio::sync::Mutex::new(()),
        }
    }

    /// This recorder with the visit log on, keeping visits for `days` (off with `None` or
    /// 0 days).
    pub fn with_visit_log(mut self, days: Option<u32>) -> Self {
        self.visit_log_days = days.filter(|d| *d > 0);
        self.visits = self
            .visit_log_days
            .map(|_| (0..SHARDS).map(|_| Mutex::default()).collect());
        self
    }

    /// How many days the visit log keeps visits; `None` when it is off.
    pub fn visit_log_days(&self) -> Option<u32> {
        self.visit_log_days
    }

    /// Whether clicks should carry [`VisitDetails`].
    pub fn logs_visits(&self) -> bool {
        self.visits.is_some()
    }

    fn shard(&self, link_id: i64) -> &Mutex<HashMap<i64, Pending>> {
        &self.shards[(link_id as u64 % SHARDS as u64) as usize]
    }

    fn in_flight(&self) -> std::sync::MutexGuard<'_, HashMap<String, InFlight>> {
        self.in_flight.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Counts a click (and keeps it for the visit log, when that is on).
    pub fn record(&self, click: Click) {
        {
            let mut shard = self
                .shard(click.link_id)
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            shard.entry(click.link_id).or_default().add(&click);
        }
        let (Some(log), Some(details)) = (&self.visits, &click.visit) else {
            return;
        };
        let mut visits = self.visit_shard(log, click.link_id);
        if visits.is_full() {
            drop(visits);
            metrics::counter!("basis_visits_dropped_total").increment(1);
            return;
        }
        VisitLine {
            link: click.link_id,
            at: click.at_ms,
            device: click.device,
            browser: details.browser,
            referrer: click.referrer.as_deref(),
            country: details.country.as_ref().map(Country::as_str),
            network: details.network,
        }
        .write_to(&mut visits.lines);
        visits.count += 1;
    }

    fn visit_shard<'a>(
        &self,
        log: &'a [Mutex<PendingVisits>],
        link_id: i64,
    ) -> std::sync::MutexGuard<'a, PendingVisits> {
        log[(link_id as u64 % SHARDS as u64) as usize]
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }

    /// Human clicks of `link_id` counted here but not yet stored.
    pub fn unflushed_humans(&self, link_id: i64) -> i64 {
        let pending = self
            .shard(link_id)
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&link_id)
            .map_or(0, |p| p.humans);
        if self.in_flight_count.load(Ordering::Acquire) == 0 {
            return pending;
        }
        let in_flight: i64 = self
            .in_flight()
            .values()
            .filter_map(|batch| batch.links.get(&link_id))
            .map(|link| link.humans)
            .sum();
        pending + in_flight
    }

    /// The not-yet-stored aggregates of `link_id` (for statistics).
    pub fn unflushed(&self, link_id: i64) -> Option<LinkClicks> {
        let mut total = self
            .shard(link_id)
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&link_id)
            .cloned();
        for batch in self.in_flight().values() {
            if let Some(link) = batch.links.get(&link_id) {
                total.get_or_insert_with(Pending::default).merge(link);
            }
        }
        total.map(|p| p.into_link_clicks(link_id))
    }

    /// Whether batches are waiting to be seen applied.
    pub fn has_in_flight(&self) -> bool {
        self.in_flight_count.load(Ordering::Acquire) > 0
    }

    /// Stops counting batch `batch_id` as unstored: it has been applied (called by this
    /// process's worker right after the batch's transaction commits).
    pub fn forget(&self, batch_id: &str) {
        self.begin_move();
        let mut in_flight = self.in_flight();
        if in_flight.remove(batch_id).is_some() {
            self.in_flight_count
                .store(in_flight.len(), Ordering::Release);
            self.applied.notify_waiters();
        }
        drop(in_flight);
        self.end_move();
    }

    fn begin_move(&self) {
        self.moving.fetch_add(1, Ordering::SeqCst);
    }

    fn end_move(&self) {
        self.moves.fetch_add(1, Ordering::SeqCst);
        self.moving.fetch_sub(1, Ordering::SeqCst);
    }

    /// Reads stored figures with `read`, then adds what is not stored yet with `unstored`,
    /// so that no click is counted twice or missed while batches move to the database: the
    /// read is retried (a few times at most) when clicks moved while it ran. Batches
    /// applied by other processes are found by [`Self::settle`] within the read.
    pub async fn read_with_unstored<T, U, E, R, Fut>(
        &self,
        mut read: R,
        unstored: impl Fn(&Self, &T) -> U,
    ) -> Result<(T, U), E>
    where
        R: FnMut() -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        let mut tries = 0;
        loop {
            tries += 1;
            let moves = self.moves.load(Ordering::SeqCst);
            let quiet = self.moving.load(Ordering::SeqCst) == 0;
            let stored = read().await?;
            self.settle_or_warn().await;
            let extra = unstored(self, &stored);
            let still = self.moving.load(Ordering::SeqCst) == 0
                && self.moves.load(Ordering::SeqCst) == moves;
            if (quiet && still) || tries >= 5 {
                return Ok((stored, extra));
            }
            tokio::task::yield_now().await;
        }
    }

    /// Asks the database which in-flight batches have been applied (by any worker) and
    /// stops counting those. Call it after reading a stored count, never before.
    ///
    /// With links sharded, a batch is recorded whole only after each shard database has
    /// applied its part, so a count read from a shard meanwhile already holds that part:
    /// the links of such parts stop being counted here as soon as their own shard has them
    /// ([`links::applied_parts`]), and the batch itself is forgotten once recorded whole.
    pub async fn settle(&self) -> Result<(), basis_store::Error> {
        if !self.has_in_flight() {
            return Ok(());
        }
        let ids: Vec<String> = self.in_flight().keys().cloned().collect();
        for id in links::applied_batches(&self.store, &ids).await? {
            self.forget(&id);
        }
        if self.store.link_shards().is_none() || !self.has_in_flight() {
            return Ok(());
        }
        let parts: Vec<(i64, String)> = self
            .in_flight()
            .iter()
            .flat_map(|(id, batch)| batch.links.keys().map(|link| (*link, id.clone())))
            .collect();
        let stored = links::applied_parts(&self.store, parts).await?;
        if !stored.is_empty() {
            self.begin_move();
            let mut in_flight = self.in_flight();
            for (link, id) in &stored {
                if let Some(batch) = in_flight.get_mut(id) {
                    batch.links.remove(link);
                }
            }
            drop(in_flight);
            self.end_move();
        }
        Ok(())
    }

    /// [`Self::settle`], logging a failure (the count then includes a batch that may be
    /// stored already, until the next settle).
    pub async fn settle_or_warn(&self) {
        if let Err(err) = self.settle().await {
            tracing::warn!(error = %err, "cannot check applied click batches");
        }
    }

    /// Waits until every batch this process enqueued has been applied, or `timeout`
    /// passes; true when none is left. A graceful stop of `serve` with in-process workers
    /// uses it so the last batch is stored before the process exits.
    pub async fn drain(&self, timeout: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let woken = self.applied.notified();
            self.settle_or_warn().await;
            if !self.has_in_flight() {
                return true;
            }
            // Woken by this process's worker; the short tick covers workers elsewhere.
            let tick = (deadline - tokio::time::Instant::now()).min(Duration::from_millis(50));
            if tick.is_zero() {
                return false;
            }
            let _ = tokio::time::timeout(tick, woken).await;
        }
    }

    /// Drops batches in flight for longer than [`IN_FLIGHT_TTL`] from the counts.
    fn expire_in_flight(&self) {
        self.begin_move();
        let mut in_flight = self.in_flight();
        let before = in_flight.len();
        in_flight.retain(|_, batch| batch.since.elapsed() < IN_FLIGHT_TTL);
        if in_flight.len() < before {
            tracing::warn!(
                expired = before - in_flight.len(),
                "click batches still unapplied after {IN_FLIGHT_TTL:?}; are workers running?"
            );
        }
        self.in_flight_count
            .store(in_flight.len(), Ordering::Release);
        drop(in_flight);
        self.end_move();
    }

    /// Enqueues every pending click as click-batch jobs. From a batch the queue refuses on,
    /// the batches are applied here ([`Self::store_directly`]) under their own ids: a
    /// refusal can be ambiguous (the broker stored the job, then the answer was lost), and
    /// only the same id lets the worker apply such a batch once. What the database refuses
    /// too is kept as it is and sent first by the next flush. Returns the links enqueued or
    /// stored (visit batches go along uncounted); an error only when some are kept.
    pub async fn flush(&self) -> Result<usize, basis_queue::Error> {
        let _one_at_a_time = self.flush_lock.lock().await;
        self.expire_in_flight();
        self.settle_or_warn().await;
        // Taken from pending and counted in flight in one move, before any job exists.
        self.begin_move();
        let mut taken: Vec<LinkClicks> = Vec::new();
        for shard in self.shards.iter() {
            let pending = std::mem::take(&mut *shard.lock().unwrap_or_else(|p| p.into_inner()));
            taken.extend(
                pending
                    .into_iter()
                    .map(|(id, pending)| pending.into_link_clicks(id)),
            );
        }
        let mut batches: Vec<ClickBatchJob> = taken
            .chunks(MAX_LINKS_PER_BATCH)
            .map(|links| ClickBatchJob::new(crate::jobs::new_id(), links))
            .collect();
        // Visits travel in batches of their own (no counts), applied once like the others.
        let mut visits = PendingVisits::default();
        let mut visit_batch = |visits: &mut PendingVisits| {
            batches.push(ClickBatchJob {
                batch: crate::jobs::new_id(),
                links: Vec::new(),
                visits: std::mem::take(&mut visits.lines),
            });
            visits.count = 0;
        };
        for shard in self.visits.iter().flat_map(|log| log.iter()) {
            let taken = std::mem::take(&mut *shard.lock().unwrap_or_else(|p| p.into_inner()));
            for line in taken.lines.split_inclusive('\n') {
                visits.push_line(line);
                if visits.count == VISITS_PER_BATCH {
                    visit_batch(&mut visits);
                }
            }
        }
        if visits.count > 0 {
            visit_batch(&mut visits);
        }
        {
            let mut in_flight = self.in_flight();
            let mut links = taken.chunks(MAX_LINKS_PER_BATCH);
            for job in &batches {
                let links: &[LinkClicks] = if job.links.is_empty() {
                    &[]
                } else {
                    links.next().unwrap_or(&[])
                };
                in_flight.insert(
                    job.batch.clone(),
                    InFlight {
                        links: links.iter().map(|l| (l.link_id, l.clone())).collect(),
                        since: Instant::now(),
                    },
                );
            }
            self.in_flight_count
                .store(in_flight.len(), Ordering::Release);
        }
        self.end_move();

        // What an earlier flush could not send goes first.
        let unsent = std::mem::take(&mut *self.unsent.lock().unwrap_or_else(|p| p.into_inner()));
        let batches: Vec<ClickBatchJob> = unsent.into_iter().chain(batches).collect();

        let started = Instant::now();
        let mut enqueued = 0;
        for (i, job) in batches.iter().enumerate() {
            if let Err(err) = self.enqueue(job).await {
                metrics::counter!("basis_click_flush_errors_total").increment(1);
                let (stored, kept) = self.store_directly(&batches[i..]).await;
                enqueued += stored;
                if kept.is_empty() {
                    tracing::warn!(error = %err, "the queue refused click batches; stored them directly");
                    break;
                }
                self.unsent
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .extend(kept);
                return Err(err);
            }
            enqueued += job.links.len();
        }
        if enqueued > 0 {
            metrics::histogram!("basis_click_flush_seconds")
                .record(started.elapsed().as_secs_f64());
            let clicks: i64 = taken.iter().map(|l| l.humans).sum();
            metrics::counter!("basis_clicks_flushed_total").increment(clicks as u64);
        }
        Ok(enqueued)
    }

    /// Applies `batches` to the database as a worker would (once per batch id), in order,
    /// until one fails; answers the links stored and the batches left from the failed one.
    async fn store_directly(&self, batches: &[ClickBatchJob]) -> (usize, Vec<ClickBatchJob>) {
        let mut stored = 0;
        for (i, job) in batches.iter().enumerate() {
            let applied = match job.clone().into_batch() {
                Ok(batch) => {
                    links::apply_clicks_once(&self.store, &job.batch, self.clock.now_ms(), &batch)
                        .await
                        .map_err(|e| e.to_string())
                }
                Err(poison) => Err(format!("{poison:?}")),
            };
            match applied {
                Ok(_) => {
                    metrics::counter!("basis_click_batches_stored_directly_total").increment(1);
                    stored += job.links.len();
                    self.forget(&job.batch);
                }
                Err(error) => {
                    tracing::warn!(%error, "cannot store click batches directly either; kept for the next flush");
                    return (stored, batches[i..].to_vec());
                }
            }
        }
        (stored, Vec::new())
    }

    /// Enqueues one batch (already counted in flight).
    async fn enqueue(&self, job: &ClickBatchJob) -> Result<(), basis_queue::Error> {
        let payload =
            serde_json::to_value(job).map_err(|e| basis_queue::Error::Invalid(e.to_string()))?;
        let job = NewJob {
            dedup_key: Some(format!("clicks:{}", job.batch)),
            max_attempts: BATCH_ATTEMPTS,
            ..NewJob::new(crate::jobs::CLICKS_QUEUE, APPLY_CLICKS, payload)
        };
        self.queue.enqueue(job).await.map(drop)
    }
}

impl crate::jobs::context::BatchesApplied for ClickRecorder {
    fn applied(&self, batch_id: &str) {
        self.forget(batch_id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn click(device: Device, referrer: Option<&str>, at_ms: i64) -> Click {
        Click {
            link_id: 1,
            at_ms,
            device,
            referrer: referrer.map(str::to_owned),
            visit: None,
        }
    }

    #[test]
    fn bots_are_counted_apart_from_humans() {
        let mut p = Pending::default();
        p.add(&click(Device::Mobile, Some("a.example"), 0));
        p.add(&click(Device::Bot, Some("b.example"), 0));
        assert_eq!(p.humans, 1);
        assert_eq!(p.days, vec![(0, 1, 1)]);
        assert_eq!(p.devices[Device::Bot.index()], 1);
        assert_eq!(p.referrers.len(), 1, "bot referrers are not counted");
    }

    #[test]
    fn clicks_on_two_days_land_on_their_own_day() {
        let mut p = Pending::default();
        p.add(&click(Device::Desktop, None, 86_400_000 - 1));
        p.add(&click(Device::Desktop, None, 86_400_000));
        assert_eq!(p.days, vec![(0, 1, 0), (1, 1, 0)]);
    }

    #[test]
    fn referrers_beyond_the_cap_are_counted_as_other() {
        let mut p = Pending::default();
        for i in 0..(MAX_REFERRERS_PER_LINK + 10) {
            p.add(&click(Device::Desktop, Some(&format!("h{i}.example")), 0));
        }
        assert_eq!(p.referrers.len(), MAX_REFERRERS_PER_LINK + 1);
        assert_eq!(p.referrers[OTHER_REFERRER], 10);
        assert_eq!(
            p.referrers.values().sum::<i64>(),
            (MAX_REFERRERS_PER_LINK + 10) as i64
        );
    }

    #[test]
    fn merging_a_failed_batch_back_restores_every_count() {
        let mut p = Pending::default();
        p.add(&click(Device::Desktop, Some("a.example"), 0));
        p.add(&click(Device::Bot, None, 0));
        let batch = p.clone().into_link_clicks(1);
        let mut restored = Pending::default();
        restored.merge(&batch);
        assert_eq!(restored.into_link_clicks(1), batch);
    }

    /// The real SQLite queue, except that one enqueue reports a failure: after storing its
    /// job (`stores`), as a broker does when it stored a message and its confirmation was
    /// lost, or without (a broker that is down).
    #[derive(Debug)]
    struct LosesOneAnswer {
        inner: basis_queue::sqlite::SqliteQueue,
        lose: std::sync::atomic::AtomicBool,
        stores: bool,
    }

    #[async_trait::async_trait]
    impl Backend for LosesOneAnswer {
        fn name(&self) -> &'static str {
            self.inner.name()
        }
        async fn enqueue(&self, job: NewJob) -> basis_queue::Result<basis_queue::Enqueued> {
            let lose = self.lose.swap(false, Ordering::SeqCst);
            if lose && !self.stores {
                return Err(basis_queue::Error::Unavailable("broker down".into()));
            }
            let stored = self.inner.enqueue(job).await?;
            if lose {
                return Err(basis_queue::Error::Unavailable("confirmation lost".into()));
            }
            Ok(stored)
        }
        async fn claim(
            &self,
            queue: &str,
            lease: Duration,
            limit: usize,
        ) -> basis_queue::Result<Vec<basis_queue::ClaimedJob>> {
            self.inner.claim(queue, lease, limit).await
        }
        async fn heartbeat(&self, l: &basis_queue::Lease, d: Duration) -> basis_queue::Result<()> {
            self.inner.heartbeat(l, d).await
        }
        async fn complete(
            &self,
            l: &basis_queue::Lease,
            r: Option<serde_json::Value>,
        ) -> basis_queue::Result<()> {
            self.inner.complete(l, r).await
        }
        async fn retry(&self, l: &basis_queue::Lease, e: &str, at: i64) -> basis_queue::Result<()> {
            self.inner.retry(l, e, at).await
        }
        async fn bury(&self, l: &basis_queue::Lease, e: &str) -> basis_queue::Result<()> {
            self.inner.bury(l, e).await
        }
        async fn release(&self, l: &basis_queue::Lease) -> basis_queue::Result<()> {
            self.inner.release(l).await
        }
        async fn wait_for_work(&self, queue: &str, timeout: Duration) {
            self.inner.wait_for_work(queue, timeout).await
        }
        async fn job(
            &self,
            id: &basis_queue::JobId,
        ) -> basis_queue::Result<Option<basis_queue::JobInfo>> {
            self.inner.job(id).await
        }
        async fn subscribe_kinds(
            &self,
            topic: &str,
            group: &str,
            kinds: &[&str],
        ) -> basis_queue::Result<()> {
            self.inner.subscribe_kinds(topic, group, kinds).await
        }
        async fn publish(
            &self,
            topic: &str,
            kind: &str,
            payload: serde_json::Value,
        ) -> basis_queue::Result<usize> {
            self.inner.publish(topic, kind, payload).await
        }
        async fn dead_letters(
            &self,
            queue: Option<&str>,
            limit: usize,
        ) -> basis_queue::Result<Vec<basis_queue::DeadJob>> {
            self.inner.dead_letters(queue, limit).await
        }
        async fn dead_letter(
            &self,
            id: &basis_queue::JobId,
        ) -> basis_queue::Result<Option<basis_queue::DeadJob>> {
            self.inner.dead_letter(id).await
        }
        async fn replay(&self, id: &basis_queue::JobId) -> basis_queue::Result<bool> {
            self.inner.replay(id).await
        }
        async fn purge(&self, queue: Option<&str>) -> basis_queue::Result<u64> {
            self.inner.purge(queue).await
        }
        async fn stats(&self) -> basis_queue::Result<Vec<basis_queue::QueueStats>> {
            self.inner.stats().await
        }
    }

    /// A recorder over a real SQLite store and queue whose first enqueue fails.
    async fn failing_once(
        stores: bool,
    ) -> (tempfile::TempDir, Store, Arc<LosesOneAnswer>, ClickRecorder) {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("basis.db").display());
        let store = Store::connect(&url, &basis_store::ConnectOptions::default())
            .await
            .unwrap();
        store.migrate().await.unwrap();
        let basis_store::Pools::Sqlite { write, .. } = store.pools() else {
            unreachable!("a SQLite store")
        };
        let inner = basis_queue::sqlite::SqliteQueue::new(
            write.clone(),
            Arc::new(basis_queue::SystemClock),
        );
        inner.install().await.unwrap();
        let queue = Arc::new(LosesOneAnswer {
            inner,
            lose: true.into(),
            stores,
        });
        let recorder = ClickRecorder::new(
            store.clone(),
            queue.clone(),
            Arc::new(crate::clock::SystemClock),
        );
        (dir, store, queue, recorder)
    }

    /// Whether the batch `id` was applied (a second application is refused by its record).
    async fn was_applied(store: &Store, id: &str) -> bool {
        let empty = basis_store::links::ClickBatch::default();
        links::apply_clicks_once(store, id, 0, &empty)
            .await
            .unwrap()
            .is_none()
    }

    #[tokio::test]
    async fn a_batch_the_queue_refuses_is_stored_directly_and_not_kept_in_memory() {
        let (_dir, store, queue, recorder) = failing_once(false).await;
        for _ in 0..3 {
            recorder.record(click(Device::Desktop, None, 0));
        }
        let stored = recorder.flush().await.expect("stored without the queue");
        assert_eq!(stored, 1, "one link's clicks");
        assert_eq!(
            recorder.unflushed_humans(1),
            0,
            "stored: neither pending nor in flight"
        );
        assert!(
            recorder.unsent.lock().unwrap().is_empty(),
            "nothing kept for later"
        );
        let jobs = queue
            .claim(crate::jobs::CLICKS_QUEUE, Duration::from_secs(30), 10)
            .await
            .unwrap();
        assert!(jobs.is_empty(), "the queue never had it: {jobs:?}");
        // The next flush has nothing to send again.
        assert_eq!(recorder.flush().await.unwrap(), 0);
        // Pruning every record counts them: one batch applied, once.
        let applied = links::prune_applied_batches(&store, i64::MAX)
            .await
            .unwrap();
        assert_eq!(applied, 1, "applied once, under a batch id");
    }

    #[tokio::test]
    async fn a_batch_whose_enqueue_answer_was_lost_is_counted_once() {
        let (_dir, store, queue, recorder) = failing_once(true).await;
        for _ in 0..3 {
            recorder.record(click(Device::Desktop, None, 0));
        }
        recorder.flush().await.expect("stored directly");
        assert_eq!(recorder.unflushed_humans(1), 0);

        // The broker kept the job after all: the same batch id, which the database already
        // holds as applied, so the worker's application counts nothing twice.
        let jobs = queue
            .claim(crate::jobs::CLICKS_QUEUE, Duration::from_secs(30), 10)
            .await
            .unwrap();
        assert_eq!(jobs.len(), 1, "{jobs:?}");
        let batch: ClickBatchJob = serde_json::from_value(jobs[0].payload.clone()).unwrap();
        assert_eq!(batch.links[0].humans, 3);
        assert!(was_applied(&store, &batch.batch).await);
    }
}
