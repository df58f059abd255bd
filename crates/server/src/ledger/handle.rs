//! The ledger as the application state holds it: the write side, the read models, and the
//! bell that wakes their runner.

use std::sync::Arc;

use basis_ledger::{Ledger, Projector};
use basis_store::Store;
use tokio::sync::Notify;

use crate::clock::Clock;

/// Timed-out pending transfers voided per sweep.
const EXPIRE_BATCH: i64 = 200;

/// The ledger, its projector, and the bell that tells the runner a write happened.
#[derive(Debug, Clone)]
pub struct LedgerHandle {
    /// The write side.
    pub ledger: Ledger,
    /// The read models.
    pub projector: Projector,
    wake: Arc<Notify>,
}

impl LedgerHandle {
    /// The ledger on `store` (same database as everything else), its migrations applied.
    pub async fn open(store: &Store, clock: Arc<dyn Clock>) -> anyhow::Result<Self> {
        let ledger = Ledger::new(store.clone(), clock);
        ledger
            .install()
            .await
            .map_err(|e| anyhow::anyhow!("cannot migrate the ledger's tables: {e}"))?;
        Ok(Self {
            projector: Projector::new(ledger.clone()),
            ledger,
            wake: Arc::new(Notify::new()),
        })
    }

    /// Resolves when a write rang the bell (the runner waits on it).
    pub async fn woken(&self) {
        self.wake.notified().await;
    }

    /// Tells the runner that the feed grew, so the read models follow at once.
    pub fn written(&self) {
        self.wake.notify_one();
    }

    /// Voids due pending transfers; returns how many.
    pub async fn expire(&self) -> basis_ledger::Result<usize> {
        self.ledger.expire_due(EXPIRE_BATCH).await
    }
}
