//! Single-flight: concurrent misses on one key share one load.
//!
//! The first caller becomes the leader and gets a [`Leader`] guard; the others get a
//! receiver and wait for the leader's outcome. If the leader is cancelled (its future
//! dropped), the guard's drop closes the channel and waiters retry, one of them becoming
//! the new leader, so nobody waits forever.

use std::collections::HashMap;
use std::sync::Mutex;

use tokio::sync::watch;

use crate::error::Error;
use crate::key::CacheKey;

/// What a load produced, shared with every waiter.
pub(crate) type Outcome<V> = Result<Option<V>, Error>;

type Slot<V> = watch::Receiver<Option<Outcome<V>>>;

/// The loads in progress, by key.
pub(crate) struct Flights<K, V> {
    // A std mutex: it is held only to look up or edit the map, never across an `.await`.
    map: Mutex<HashMap<K, Slot<V>>>,
}

/// The caller's part in a load.
pub(crate) enum Role<'a, K: CacheKey, V: Clone> {
    /// Run the load and hand the outcome to [`Leader::finish`].
    Leader(Leader<'a, K, V>),
    /// Wait for someone else's load.
    Waiter(Slot<V>),
}

/// Proof of leadership for one key; dropping it ends the flight.
pub(crate) struct Leader<'a, K: CacheKey, V: Clone> {
    flights: &'a Flights<K, V>,
    key: K,
    tx: watch::Sender<Option<Outcome<V>>>,
}

impl<K: CacheKey, V: Clone> Flights<K, V> {
    pub(crate) fn new() -> Self {
        Self {
            map: Mutex::new(HashMap::new()),
        }
    }

    /// Joins the flight for `key`, starting it if there is none.
    pub(crate) fn join(&self, key: &K) -> Role<'_, K, V> {
        let mut map = self.lock();
        if let Some(rx) = map.get(key) {
            return Role::Waiter(rx.clone());
        }
        let (tx, rx) = watch::channel(None);
        map.insert(key.clone(), rx);
        Role::Leader(Leader {
            flights: self,
            key: key.clone(),
            tx,
        })
    }

    /// Starts a flight only if none is running (early refresh must not wait for one).
    pub(crate) fn try_lead(&self, key: &K) -> Option<Leader<'_, K, V>> {
        match self.join(key) {
            Role::Leader(leader) => Some(leader),
            Role::Waiter(_) => None,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<K, Slot<V>>> {
        // The map stays consistent even if a holder panicked: every edit is one call.
        self.map
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl<K: CacheKey, V: Clone> Leader<'_, K, V> {
    /// Hands the outcome to every waiter and ends the flight.
    pub(crate) fn finish(self, outcome: Outcome<V>) {
        // Publish before leaving the map, so a caller arriving in between joins as a waiter
        // and gets this outcome instead of starting a second load.
        self.tx.send_replace(Some(outcome));
    }
}

impl<K: CacheKey, V: Clone> Drop for Leader<'_, K, V> {
    fn drop(&mut self) {
        self.flights.lock().remove(&self.key);
    }
}

/// Waits for a flight's outcome; `None` if its leader gave up (retry).
pub(crate) async fn wait<V: Clone>(mut rx: Slot<V>) -> Option<Outcome<V>> {
    match rx.wait_for(Option::is_some).await {
        Ok(outcome) => outcome.clone(),
        Err(_) => None,
    }
}
