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
    /// Transfers to another bank's ledger (`--ledger-remote-url`), when configured.
    pub cross: Option<basis_ledger::CrossLedger>,
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
        // Every series from the start (at 0), so dashboards and alerts see them before the
        // first transfer, retry or projection job.
        for status in ["posted", "pending", "voided", "expired"] {
            metrics::counter!("ledger_transfers_total", "status" => status).increment(0);
        }
        metrics::counter!("ledger_retries_total").increment(0);
        for outcome in ["enqueued", "coalesced"] {
            metrics::counter!("ledger_projection_jobs_total", "outcome" => outcome).increment(0);
        }
        Ok(Self {
            projector: Projector::new(ledger.clone()),
            ledger,
            cross: None,
            wake: Arc::new(Notify::new()),
        })
    }

    /// The same handle with the remote ledger of `config` connected (see
    /// [`super::cross::connect`]); its pool logs statements slower than `slow_statement`,
    /// as the home pools do.
    pub async fn with_remote(
        mut self,
        config: &super::cross::CrossConfig,
        slow_statement: Option<std::time::Duration>,
        clock: Arc<dyn Clock>,
    ) -> anyhow::Result<Self> {
        self.cross = super::cross::connect(config, slow_statement, &self.ledger, clock).await?;
        Ok(self)
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
