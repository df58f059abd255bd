//! What a job handler is given, whether it runs in `serve` or in `basis worker`.

use std::sync::Arc;

use basis_auth::mail::Mailer;
use basis_store::Store;

use crate::clock::Clock;

/// What handlers need, whether they run in `serve` or in `basis worker`.
#[derive(Debug)]
pub struct JobContext {
    /// The database.
    pub store: Store,
    /// The time source (the app's clock, so tests are exact).
    pub clock: Arc<dyn Clock>,
    /// Outgoing mail, when `--smtp-url` is set.
    pub mailer: Option<Mailer>,
    /// This process's click recorder, told at once when one of its batches is applied
    /// (`None` in `basis worker`: servers then learn it from the database).
    pub clicks: Option<Arc<dyn BatchesApplied>>,
    /// The shop and its checkout saga (`None` in tests of other jobs).
    pub shop: Option<crate::shop::handle::ShopHandle>,
    /// Webhook deliveries (`None` in tests of other jobs).
    pub webhooks: Option<Arc<crate::webhooks::Webhooks>>,
}

/// Told when a batch of clicks this process enqueued has been stored, so it stops counting
/// them as unstored (the links' click recorder).
pub trait BatchesApplied: Send + Sync + std::fmt::Debug {
    /// Batch `batch_id` is stored.
    fn applied(&self, batch_id: &str);
}
