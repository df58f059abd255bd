//! Click counting without a database write per redirect.
//!
//! A redirect only adds to in-memory counters (one short, uncontended-in-practice mutex per
//! shard). A background task hands everything gathered to the database every flush interval
//! as one transaction, so a hot link costs one `UPDATE` per interval instead of one per
//! click, and never serialises requests on its row. A graceful stop flushes what is left.
//!
//! Counts read through the API add the pending counters to the stored ones, so they are
//! exact on one instance. With several instances each adds only its own pending clicks, so a
//! count can lag by at most one flush interval of the other instances' traffic; the same
//! bound applies to how far `maxClicks` can be overshot across instances.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Instant;

use basis_store::Store;
use basis_store::links::{self, ClickBatch, LinkClicks};

use super::device::Device;
use crate::clock::day_of;

const SHARDS: usize = 16;
/// Distinct referrer hosts kept per link between flushes; the rest are counted as "other",
/// so a client inventing referrers cannot grow memory without bound.
const MAX_REFERRERS_PER_LINK: usize = 32;
const OTHER_REFERRER: &str = "(other)";

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
        match self.days.iter_mut().find(|(d, _, _)| *d == day) {
            Some(entry) => {
                entry.1 += humans;
                entry.2 += bots;
            }
            None => self.days.push((day, humans, bots)),
        }
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

/// Gathers clicks in memory and writes them in batches.
#[derive(Debug)]
pub struct ClickRecorder {
    store: Store,
    // std mutexes: held only for a few map operations, never across an await.
    shards: Box<[Mutex<HashMap<i64, Pending>>]>,
    /// Human clicks taken by a flush that has not committed yet, so counts read meanwhile
    /// still include them.
    in_flight: Mutex<HashMap<i64, i64>>,
    /// One flush at a time.
    flush_lock: tokio::sync::Mutex<()>,
}

impl ClickRecorder {
    /// A recorder writing to `store`.
    pub fn new(store: Store) -> Self {
        Self {
            store,
            shards: (0..SHARDS).map(|_| Mutex::default()).collect(),
            in_flight: Mutex::default(),
            flush_lock: tokio::sync::Mutex::new(()),
        }
    }

    fn shard(&self, link_id: i64) -> &Mutex<HashMap<i64, Pending>> {
        &self.shards[(link_id as u64 % SHARDS as u64) as usize]
    }

    /// Counts a click.
    pub fn record(&self, click: &Click) {
        let mut shard = self
            .shard(click.link_id)
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        shard.entry(click.link_id).or_default().add(click);
    }

    /// Human clicks of `link_id` counted here but not yet stored.
    pub fn unflushed_humans(&self, link_id: i64) -> i64 {
        let pending = self
            .shard(link_id)
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&link_id)
            .map_or(0, |p| p.humans);
        let in_flight = self
            .in_flight
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&link_id)
            .copied()
            .unwrap_or(0);
        pending + in_flight
    }

    /// The not-yet-flushed aggregates of `link_id` (for statistics).
    pub fn unflushed(&self, link_id: i64) -> Option<LinkClicks> {
        let shard = self
            .shard(link_id)
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        shard
            .get(&link_id)
            .cloned()
            .map(|p| p.into_link_clicks(link_id))
    }

    /// Writes every pending click to the database. On failure the clicks go back to the
    /// pending counters and the next flush tries again. Returns the links written.
    pub async fn flush(&self) -> Result<usize, basis_store::Error> {
        let _one_at_a_time = self.flush_lock.lock().await;
        let mut batch = ClickBatch::default();
        for shard in self.shards.iter() {
            let taken = std::mem::take(&mut *shard.lock().unwrap_or_else(|p| p.into_inner()));
            batch.links.extend(
                taken
                    .into_iter()
                    .map(|(id, pending)| pending.into_link_clicks(id)),
            );
        }
        if batch.links.is_empty() {
            return Ok(0);
        }
        *self.in_flight.lock().unwrap_or_else(|p| p.into_inner()) =
            batch.links.iter().map(|l| (l.link_id, l.humans)).collect();

        let started = Instant::now();
        let result = links::apply_clicks(&self.store, &batch).await;
        metrics::histogram!("basis_click_flush_seconds").record(started.elapsed().as_secs_f64());
        if result.is_err() {
            metrics::counter!("basis_click_flush_errors_total").increment(1);
            for link in &batch.links {
                self.shard(link.link_id)
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .entry(link.link_id)
                    .or_default()
                    .merge(link);
            }
        } else {
            let clicks: i64 = batch.links.iter().map(|l| l.humans).sum();
            metrics::counter!("basis_clicks_flushed_total").increment(clicks as u64);
        }
        self.in_flight
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
        result
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
}
