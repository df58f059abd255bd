//! Streaming replicas of the PostgreSQL primary, and where each read goes.
//!
//! # Routing
//!
//! A read made through [`on_pool!`](crate::on_pool) goes to a replica in rotation (round
//! robin), unless the caller must see something the replicas may not have yet; then it goes
//! to the primary (a *sticky read*). Writes, and everything inside a transaction (which
//! starts on the write side), always go to the primary.
//!
//! # Read-your-writes
//!
//! A request runs inside a [`CallerReads`] scope ([`scoped`]). It carries the caller's
//! *read floor*: the primary's WAL position (LSN) recorded after that caller's last write.
//! A replica serves the caller only once it has replayed at least that far; a request that
//! wrote reads the rest of its own work from the primary. When the scope ends after a write,
//! [`Replicas::record_write`] notes the primary's current LSN for the caller. Floors are
//! kept per instance, in memory, bounded in size and in age; a floor forgotten to make room
//! raises a common floor for every identified caller, so forgetting never serves a caller
//! stale data. Anonymous callers and work outside any scope (jobs) have no floor: they may
//! read slightly stale data.
//!
//! # Health
//!
//! [`Replicas::check`] (run by a background task every [`check_interval`] and callable
//! directly) asks the primary for its current LSN and each replica for the LSN it has
//! replayed. Lag is measured by comparing positions, not replay timestamps (on an idle
//! primary the last replayed transaction ages although the replica is caught up): a replica
//! that has replayed the primary's current position has no lag; otherwise its lag is the age
//! of the oldest primary position seen by a check that it has not replayed yet. A replica
//! lagging more than the limit, not answering, or no longer in recovery (promoted) leaves
//! the rotation; it returns on the first check that finds it caught up.

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::{Duration, Instant};

use sqlx::PgPool;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};

use crate::{Error, Result};

/// How many callers' floors one instance keeps at most.
const MAX_FLOORS: usize = 100_000;

/// Longest a replica's health query may take before the replica counts as failing.
const CHECK_TIMEOUT: Duration = Duration::from_secs(2);

/// Longest a request waits for its shared floor before reading from the primary.
const SHARED_TIMEOUT: Duration = Duration::from_millis(250);

/// What a [`SharedFloors`] call returns: a boxed future, so the trait can be used as an
/// object.
pub type FloorFuture<'a, T> =
    Pin<Box<dyn Future<Output = std::result::Result<T, String>> + Send + 'a>>;

/// Read floors kept where every instance reads them.
pub trait SharedFloors: Send + Sync + std::fmt::Debug {
    /// The floor recorded for `key`, if any.
    fn floor<'a>(&'a self, key: &'a str) -> FloorFuture<'a, Option<u64>>;
    /// Raises the floor of each of `keys` to at least `lsn` and keeps it for `ttl`.
    fn raise<'a>(&'a self, keys: &'a [&'a str], lsn: u64, ttl: Duration) -> FloorFuture<'a, ()>;
}

tokio::task_local! {
    static CALLER: Arc<CallerReads>;
}

/// How often the health task checks replicas lagging at most `max_lag`: a quarter of the
/// limit, between 50 ms and 1 s, so a lagging replica leaves the rotation soon after it
/// passes the limit.
pub fn check_interval(max_lag: Duration) -> Duration {
    (max_lag / 4).clamp(Duration::from_millis(50), Duration::from_secs(1))
}

/// What one request knows about its caller's reads.
#[derive(Debug, Default)]
pub struct CallerReads {
    /// The caller's key (a hash of its credential); `None` for anonymous callers.
    key: Option<String>,
    /// The account's key, once authentication has named it ([`Replicas::identify`]).
    account: OnceLock<String>,
    /// The LSN a replica must have replayed to serve this caller.
    floor: AtomicU64,
    /// Set by the first write made in the scope: its later reads go to the primary.
    wrote: AtomicBool,
}

impl CallerReads {
    /// Whether a write went through the store inside this scope.
    pub fn wrote(&self) -> bool {
        self.wrote.load(Ordering::Relaxed)
    }

    /// The caller's key.
    pub fn key(&self) -> Option<&str> {
        self.key.as_deref()
    }

    /// The account's key, when authentication has named the account.
    pub fn account(&self) -> Option<&str> {
        self.account.get().map(String::as_str)
    }
}

/// Runs `work` inside the caller scope `reads`.
pub async fn scoped<F: Future>(reads: Arc<CallerReads>, work: F) -> F::Output {
    CALLER.scope(reads, work).await
}

/// Marks the current scope, if any, as having written.
pub(crate) fn note_write() {
    let _ = CALLER.try_with(|reads| reads.wrote.store(true, Ordering::Relaxed));
}

/// Where reads went, counted since the store was connected.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReadCounts {
    /// Reads served by the primary.
    pub primary: u64,
    /// Reads served by a replica.
    pub replica: u64,
    /// Reads sent to the primary because no replica in rotation had replayed the caller's
    /// writes (included in `primary`).
    pub sticky: u64,
}

/// What the last check found about one replica.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplicaStatus {
    /// The replica's host, port and database (no credentials).
    pub name: String,
    /// Whether reads may go to it.
    pub in_rotation: bool,
    /// The LSN it had replayed (0 before the first successful check).
    pub replayed_lsn: u64,
    /// How far behind the primary it was.
    pub lag: Duration,
}

#[derive(Debug)]
struct Replica {
    name: String,
    pool: PgPool,
    in_rotation: AtomicBool,
    replayed: AtomicU64,
    lag_ms: AtomicU64,
}

/// The replicas of one primary, their health and the callers' read floors.
#[derive(Debug)]
pub struct Replicas {
    primary: PgPool,
    members: Vec<Replica>,
    max_lag: Duration,
    next: AtomicUsize,
    /// The primary's positions seen by recent checks, oldest first.
    history: Mutex<VecDeque<(Instant, u64)>>,
    floors: Mutex<Floors>,
    /// Where floors are shared with the other instances, when configured.
    shared: OnceLock<Arc<dyn SharedFloors>>,
    primary_reads: AtomicU64,
    replica_reads: AtomicU64,
    sticky_reads: AtomicU64,
}

#[derive(Debug, Default)]
struct Floors {
    by_caller: HashMap<String, (u64, Instant)>,
    /// The highest floor forgotten to make room: every identified caller without its own
    /// floor gets this one.
    forgotten: u64,
}

impl Replicas {
    /// Opens a pool per replica URL (connections are made when first needed, so a replica
    /// that is down does not stop the start) and runs a first check. A replica that
    /// answers but is not in recovery is a primary, and is refused.
    pub(crate) async fn connect(
        primary: PgPool,
        urls: &[String],
        max_lag: Duration,
        options: &crate::ConnectOptions,
    ) -> Result<Arc<Self>> {
        let mut members = Vec::with_capacity(urls.len());
        for url in urls {
            if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
                return Err(Error::InvalidUrl(format!(
                    "a replica URL must be postgres://, got {:?}",
                    url.split(':').next().unwrap_or_default()
                )));
            }
            let connect: PgConnectOptions = url
                .parse()
                .map_err(|e: sqlx::Error| Error::InvalidUrl(e.to_string()))?;
            let name = format!(
                "{}:{}/{}",
                connect.get_host(),
                connect.get_port(),
                connect.get_database().unwrap_or("")
            );
            let (level, threshold) = options.slow_log();
            let connect = sqlx::ConnectOptions::log_slow_statements(
                connect.application_name("basis"),
                level,
                threshold,
            );
            let pool = PgPoolOptions::new()
                .max_connections(options.max_connections)
                .acquire_timeout(options.acquire_timeout.min(CHECK_TIMEOUT))
                .connect_lazy_with(connect);
            members.push(Replica {
                name,
                pool,
                in_rotation: AtomicBool::new(false),
                replayed: AtomicU64::new(0),
                lag_ms: AtomicU64::new(0),
            });
        }
        let replicas = Arc::new(Self {
            primary,
            members,
            max_lag,
            next: AtomicUsize::new(0),
            history: Mutex::default(),
            floors: Mutex::default(),
            shared: OnceLock::new(),
            primary_reads: AtomicU64::new(0),
            replica_reads: AtomicU64::new(0),
            sticky_reads: AtomicU64::new(0),
        });
        for replica in &replicas.members {
            if let Ok(Ok((false, _))) =
                tokio::time::timeout(CHECK_TIMEOUT, replay_position(&replica.pool)).await
            {
                return Err(Error::InvalidUrl(format!(
                    "the replica {} is not in recovery: it is a primary, not a replica",
                    replica.name
                )));
            }
        }
        replicas.check().await;
        Ok(replicas)
    }

    /// Checks the replicas every `interval` for as long as the store is in use.
    pub(crate) fn spawn_checks(self: &Arc<Self>, interval: Duration) {
        let weak: Weak<Self> = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut ticks = tokio::time::interval(interval);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                ticks.tick().await;
                let Some(replicas) = weak.upgrade() else {
                    return;
                };
                replicas.check().await;
            }
        });
    }

    /// The pool a read goes to: a replica in rotation that has replayed the current
    /// caller's writes, else the primary.
    pub(crate) fn route(&self) -> &PgPool {
        let (floor, wrote) = CALLER
            .try_with(|reads| (reads.floor.load(Ordering::Relaxed), reads.wrote()))
            .unwrap_or((0, false));
        if !wrote {
            let count = self.members.len();
            let start = self.next.fetch_add(1, Ordering::Relaxed);
            let mut eligible_but_behind = false;
            for offset in 0..count {
                let replica = &self.members[(start + offset) % count];
                if !replica.in_rotation.load(Ordering::Relaxed) {
                    continue;
                }
                if replica.replayed.load(Ordering::Relaxed) >= floor {
                    self.replica_reads.fetch_add(1, Ordering::Relaxed);
                    metrics::counter!("basis_db_reads_total", "target" => "replica").increment(1);
                    return &replica.pool;
                }
                eligible_but_behind = true;
            }
            if eligible_but_behind {
                self.count_sticky();
            }
        } else {
            self.count_sticky();
        }
        self.primary_reads.fetch_add(1, Ordering::Relaxed);
        metrics::counter!("basis_db_reads_total", "target" => "primary").increment(1);
        &self.primary
    }

    fn count_sticky(&self) {
        self.sticky_reads.fetch_add(1, Ordering::Relaxed);
        metrics::counter!("basis_db_sticky_reads_total").increment(1);
    }

    /// Where reads went so far.
    pub fn read_counts(&self) -> ReadCounts {
        ReadCounts {
            primary: self.primary_reads.load(Ordering::Relaxed),
            replica: self.replica_reads.load(Ordering::Relaxed),
            sticky: self.sticky_reads.load(Ordering::Relaxed),
        }
    }

    /// What the last check found, per replica, in configuration order.
    pub fn status(&self) -> Vec<ReplicaStatus> {
        self.members
            .iter()
            .map(|replica| ReplicaStatus {
                name: replica.name.clone(),
                in_rotation: replica.in_rotation.load(Ordering::Relaxed),
                replayed_lsn: replica.replayed.load(Ordering::Relaxed),
                lag: Duration::from_millis(replica.lag_ms.load(Ordering::Relaxed)),
            })
            .collect()
    }

    /// Keeps floors in `shared` too from now on (once; a second call is ignored).
    pub fn share_floors(&self, shared: Arc<dyn SharedFloors>) {
        let _ = self.shared.set(shared);
    }

    /// A scope for one request of the caller `key` (`None`: anonymous), carrying the floor
    /// recorded at its last write.
    pub async fn caller(&self, key: Option<String>) -> Arc<CallerReads> {
        let floor = match &key {
            Some(key) => self.floor_of(key).await,
            None => 0,
        };
        Arc::new(CallerReads {
            key,
            account: OnceLock::new(),
            floor: AtomicU64::new(floor),
            wrote: AtomicBool::new(false),
        })
    }

    /// Names the account of the current request's caller (once authenticated): its reads
    /// also wait for the account's floor, so a write made with one credential (a session)
    /// is read with another (a new token, an API key), and its writes raise that floor.
    /// Outside a request scope, or called twice, it does nothing.
    pub async fn identify(&self, account_key: &str) {
        let Ok(reads) = CALLER.try_with(Arc::clone) else {
            return;
        };
        if reads.account.set(account_key.to_owned()).is_err() {
            return;
        }
        let floor = self.floor_of(account_key).await;
        reads.floor.fetch_max(floor, Ordering::Relaxed);
    }

    /// The floor recorded for `key`: the higher of this instance's and the shared one; the
    /// highest possible (the primary) when the shared one cannot be read.
    async fn floor_of(&self, key: &str) -> u64 {
        let local = {
            let now = Instant::now();
            let floors = lock(&self.floors);
            match floors.by_caller.get(key) {
                Some((lsn, expires)) if *expires > now => *lsn,
                _ => floors.forgotten,
            }
        };
        let Some(shared) = self.shared.get() else {
            return local;
        };
        match tokio::time::timeout(SHARED_TIMEOUT, shared.floor(key)).await {
            Ok(Ok(found)) => local.max(found.unwrap_or(0)),
            Ok(Err(err)) => {
                tracing::debug!(error = %err, "cannot read a shared read floor; reading from the primary");
                u64::MAX
            }
            Err(_) => u64::MAX,
        }
    }

    /// Records the primary's current LSN as the read floor of each of `keys` (the caller
    /// that wrote, its account, and any credential the request issued to it).
    pub async fn record_write(&self, keys: &[&str]) -> Result<()> {
        if keys.is_empty() {
            return Ok(());
        }
        let lsn = insert_lsn(&self.primary).await?;
        let now = Instant::now();
        // A floor matters while some replica in rotation may not have replayed it; one in
        // rotation lags at most `max_lag`, so this keeps floors well past that.
        let expires = now + (self.max_lag * 10).max(Duration::from_secs(30));
        {
            let mut floors = lock(&self.floors);
            if floors.by_caller.len() + keys.len() > MAX_FLOORS {
                floors.by_caller.retain(|_, (_, until)| *until > now);
                if floors.by_caller.len() + keys.len() > MAX_FLOORS {
                    let highest = floors.by_caller.values().map(|(lsn, _)| *lsn).max();
                    floors.forgotten = floors.forgotten.max(highest.unwrap_or(0));
                    floors.by_caller.clear();
                }
            }
            for key in keys {
                let entry = floors
                    .by_caller
                    .entry((*key).to_owned())
                    .or_insert((lsn, expires));
                *entry = (entry.0.max(lsn), expires);
            }
        }
        if let Some(shared) = self.shared.get() {
            let ttl = expires.saturating_duration_since(now);
            // Other instances then read this caller's writes from the primary only while
            // their own floors say so; the warning tells operators why reads may be stale.
            match tokio::time::timeout(SHARED_TIMEOUT, shared.raise(keys, lsn, ttl)).await {
                Ok(Ok(())) => {}
                Ok(Err(err)) => {
                    tracing::warn!(error = %err, "cannot share a read floor; other instances may serve this caller stale reads");
                }
                Err(_) => tracing::warn!(
                    "sharing a read floor timed out; other instances may serve this caller stale reads"
                ),
            }
        }
        Ok(())
    }

    /// Checks every replica once: its replayed position and lag, and whether it stays in
    /// (or returns to) the rotation.
    pub async fn check(&self) {
        let now = Instant::now();
        let primary = match current_lsn(&self.primary).await {
            Ok(lsn) => Some(lsn),
            Err(err) => {
                tracing::warn!(error = %err, "cannot read the primary's WAL position");
                None
            }
        };
        let oldest_unreplayed = |replayed: u64| -> Duration {
            let history = lock(&self.history);
            history
                .iter()
                .find(|(_, lsn)| *lsn > replayed)
                .map_or(Duration::ZERO, |(at, _)| now.saturating_duration_since(*at))
        };
        if let Some(lsn) = primary {
            let mut history = lock(&self.history);
            if history.back().is_none_or(|(_, last)| *last < lsn) {
                history.push_back((now, lsn));
            }
            // Positions older than a few limits no longer change any decision.
            let keep = self.max_lag * 4 + Duration::from_secs(1);
            while history.len() > 1
                && history
                    .front()
                    .is_some_and(|(at, _)| now.saturating_duration_since(*at) > keep)
            {
                history.pop_front();
            }
        }
        for replica in &self.members {
            let found = tokio::time::timeout(CHECK_TIMEOUT, replay_position(&replica.pool)).await;
            let healthy = match (found, primary) {
                (Ok(Ok((true, Some(replayed)))), Some(primary)) => {
                    replica.replayed.store(replayed, Ordering::Relaxed);
                    let lag = if replayed >= primary {
                        Duration::ZERO
                    } else {
                        oldest_unreplayed(replayed)
                    };
                    // Decided on the whole milliseconds kept and shown, so a replica out
                    // of rotation always shows a lag above the limit.
                    let lag_ms = u64::try_from(lag.as_millis()).unwrap_or(u64::MAX);
                    let lag = Duration::from_millis(lag_ms);
                    replica.lag_ms.store(lag_ms, Ordering::Relaxed);
                    metrics::gauge!("basis_db_replica_lag_seconds", "replica" => replica.name.clone())
                        .set(lag.as_secs_f64());
                    metrics::gauge!("basis_db_replica_lag_bytes", "replica" => replica.name.clone())
                        .set(primary.saturating_sub(replayed) as f64);
                    lag <= self.max_lag
                }
                (Ok(Ok((true, Some(replayed)))), None) => {
                    // The primary did not answer: the replica's own state is all there is.
                    replica.replayed.store(replayed, Ordering::Relaxed);
                    replica.in_rotation.load(Ordering::Relaxed)
                }
                (Ok(Ok((false, _)) | Ok((true, None))), _) => {
                    tracing::warn!(replica = %replica.name, "replica is not replaying (promoted?)");
                    false
                }
                (Ok(Err(err)), _) => {
                    tracing::debug!(replica = %replica.name, error = %err, "replica check failed");
                    false
                }
                (Err(_), _) => false,
            };
            let was = replica.in_rotation.swap(healthy, Ordering::Relaxed);
            if was != healthy {
                if healthy {
                    tracing::info!(replica = %replica.name, "replica back in rotation");
                } else {
                    tracing::warn!(
                        replica = %replica.name,
                        lag_ms = replica.lag_ms.load(Ordering::Relaxed),
                        "replica out of rotation"
                    );
                }
            }
            metrics::gauge!("basis_db_replica_in_rotation", "replica" => replica.name.clone())
                .set(if healthy { 1.0 } else { 0.0 });
        }
    }

    /// Closes every replica pool.
    pub(crate) async fn close(&self) {
        for replica in &self.members {
            replica.pool.close().await;
        }
    }
}

/// Locks `mutex`, taking over a poisoned one: the maps hold plain values, valid whatever
/// panicked while they were held. No `.await` happens under these locks.
fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The primary's current WAL position.
async fn current_lsn(pool: &PgPool) -> Result<u64> {
    let lsn: i64 = sqlx::query_scalar("SELECT (pg_current_wal_lsn() - '0/0'::pg_lsn)::bigint")
        .fetch_one(pool)
        .await?;
    Ok(u64::try_from(lsn).unwrap_or(0))
}

/// The position up to which the primary has inserted WAL: at or past every commit made so
/// far, even one acknowledged before its WAL was written (`synchronous_commit = off`), so a
/// replica that has replayed it has every write made before.
async fn insert_lsn(pool: &PgPool) -> Result<u64> {
    let lsn: i64 =
        sqlx::query_scalar("SELECT (pg_current_wal_insert_lsn() - '0/0'::pg_lsn)::bigint")
            .fetch_one(pool)
            .await?;
    Ok(u64::try_from(lsn).unwrap_or(0))
}

/// Whether the server is in recovery, and the WAL position it has replayed.
async fn replay_position(pool: &PgPool) -> Result<(bool, Option<u64>)> {
    let (recovering, replayed): (bool, Option<i64>) = sqlx::query_as(
        "SELECT pg_is_in_recovery(), (pg_last_wal_replay_lsn() - '0/0'::pg_lsn)::bigint",
    )
    .fetch_one(pool)
    .await?;
    Ok((
        recovering,
        replayed.map(|lsn| u64::try_from(lsn).unwrap_or(0)),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_check_interval_follows_the_lag_limit_within_bounds() {
        assert_eq!(
            check_interval(Duration::from_secs(1)),
            Duration::from_millis(250)
        );
        assert_eq!(
            check_interval(Duration::from_millis(10)),
            Duration::from_millis(50)
        );
        assert_eq!(
            check_interval(Duration::from_secs(60)),
            Duration::from_secs(1)
        );
    }
}
