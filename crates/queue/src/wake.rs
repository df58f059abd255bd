//! In-process wake-ups: a worker waiting for a queue is woken when a job is enqueued through
//! the same handle (and, on PostgreSQL, when a NOTIFY arrives from any process).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Notify;

/// One `Notify` per queue name, made on first use.
#[derive(Debug, Default)]
pub(crate) struct Wakers(Mutex<HashMap<String, Arc<Notify>>>);

impl Wakers {
    fn get(&self, queue: &str) -> Arc<Notify> {
        let mut map = self.0.lock().unwrap_or_else(|p| p.into_inner());
        map.entry(queue.to_owned()).or_default().clone()
    }

    /// Wakes every waiter of `queue`, and the next one to wait if none waits now.
    pub(crate) fn wake(&self, queue: &str) {
        let notify = {
            let map = self.0.lock().unwrap_or_else(|p| p.into_inner());
            map.get(queue).cloned()
        };
        if let Some(n) = notify {
            n.notify_waiters();
            // A worker between its empty claim and its wait would miss notify_waiters; the
            // stored permit makes its next wait return at once.
            n.notify_one();
        }
    }

    /// Waits for a wake-up of `queue` or `timeout`, whichever comes first.
    pub(crate) async fn wait(&self, queue: &str, timeout: Duration) {
        let notify = self.get(queue);
        let _ = tokio::time::timeout(timeout, notify.notified()).await;
    }
}
