//! The shop as the application state holds it: the catalogue, the saga runner, the payment
//! provider it talks to, and the queue that carries its jobs.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use basis_queue::{Backend, NewJob};
use basis_shop::Shop;
use basis_shop::payments::sim::{Faults, SimConfig, Simulator};
use basis_shop::payments::{PaymentsClient, TraceContext};
use basis_shop::saga::{Checkout, SagaConfig};
use serde_json::json;

use crate::jobs::SAGAS_QUEUE;

/// Job kind: advance one saga (`{"sagaId"}`).
pub const ADVANCE: &str = "shop.saga.advance";
/// Job kind of the confirmation mail before it went through the outbox (`{"orderId"}`):
/// still handled, so jobs queued by an older version are not dead-lettered.
pub const ORDER_MAIL: &str = "shop.order_mail";

/// Flags of the shop and its checkout.
#[derive(Debug, Clone, clap::Args)]
pub struct ShopConfig {
    /// The payment provider (`basis payments-sim`, e.g. `http://127.0.0.1:8090`); without
    /// it, a simulator runs in this process on a loopback port.
    #[arg(long, env = "BASIS_PAYMENTS_URL")]
    pub payments_url: Option<String>,

    /// How long a call to the payment provider may take before the saga gives up on it
    /// (and retries with the same idempotency key), in milliseconds.
    #[arg(long, env = "BASIS_PAYMENTS_TIMEOUT_MS", default_value_t = 2_000)]
    pub payments_timeout_ms: u64,

    /// Backoff before a saga step's second attempt, in milliseconds (doubling, with jitter,
    /// up to a minute).
    #[arg(long, env = "BASIS_SAGA_BACKOFF_MS", default_value_t = 500)]
    pub saga_backoff_ms: u64,

    /// Attempts of a saga step before the saga compensates (and of a compensation before
    /// the saga is parked as stuck: this plus two).
    #[arg(long, env = "BASIS_SAGA_MAX_ATTEMPTS", default_value_t = 6)]
    pub saga_max_attempts: u32,

    /// How long a worker holds a saga it advances, in milliseconds.
    #[arg(long, env = "BASIS_SAGA_LEASE_MS", default_value_t = 60_000)]
    pub saga_lease_ms: u64,
}

impl Default for ShopConfig {
    fn default() -> Self {
        Self {
            payments_url: None,
            payments_timeout_ms: 2_000,
            saga_backoff_ms: 500,
            saga_max_attempts: 6,
            saga_lease_ms: 60_000,
        }
    }
}

/// The shop, its saga runner and its provider.
#[derive(Debug, Clone)]
pub struct ShopHandle {
    /// Products and orders.
    pub shop: Shop,
    /// The saga runner.
    pub checkout: Checkout,
    /// The in-process simulator's scripted faults, when this process runs it.
    pub sim_faults: Option<Faults>,
    /// Where the provider is.
    pub payments_url: String,
    backend: Arc<dyn Backend>,
    _sim: Option<Arc<tokio::sync::oneshot::Sender<()>>>,
}

impl ShopHandle {
    /// The shop on `ledger`'s database, its migrations applied, talking to the provider at
    /// `--payments-url` or to a simulator started here.
    pub async fn open(
        config: &ShopConfig,
        ledger: &basis_ledger::Ledger,
        backend: Arc<dyn Backend>,
    ) -> anyhow::Result<Self> {
        let shop = Shop::new(ledger.clone());
        shop.install()
            .await
            .map_err(|e| anyhow::anyhow!("cannot migrate the shop's tables: {e}"))?;
        let (url, sim_faults, sim) = match config.payments_url.as_deref() {
            Some(url) if !url.is_empty() => (url.to_owned(), None, None),
            _ => {
                // A "timed out" answer comes well after the client gave up.
                let sim = SimConfig {
                    hang: Duration::from_millis(config.payments_timeout_ms.saturating_mul(2) + 100),
                    ..SimConfig::default()
                };
                let running = Simulator::new(ledger.clone(), sim)
                    .spawn_loopback()
                    .await
                    .context("cannot start the in-process payment simulator")?;
                tracing::info!(addr = %running.addr, "payment simulator running in-process");
                (
                    format!("http://{}", running.addr),
                    Some(running.faults),
                    Some(Arc::new(running.stop)),
                )
            }
        };
        let payments = PaymentsClient::new(
            &url,
            Duration::from_millis(config.payments_timeout_ms.max(1)),
        )
        .with_trace_context(TraceContext(Arc::new(|| {
            basis_queue::trace::traceparent(&tracing::Span::current())
        })));
        let saga = SagaConfig {
            backoff_base_ms: config.saga_backoff_ms as i64,
            max_attempts: i64::from(config.saga_max_attempts.max(1)),
            max_compensation_attempts: i64::from(config.saga_max_attempts.max(1)) + 2,
            lease_ms: config.saga_lease_ms.max(1) as i64,
            ..SagaConfig::default()
        };
        Ok(Self {
            checkout: Checkout::new(shop.clone(), payments, saga),
            shop,
            sim_faults,
            payments_url: url,
            backend,
            _sim: sim,
        })
    }

    /// Asks the queue to advance saga `id` at `at` (Unix ms). The key names the saga and its
    /// lease token now, so the runner's and the sweeper's requests for the same wake-up are
    /// one job, and the next wake-up (after a new lease) another.
    pub async fn nudge(&self, id: i64, at: i64, token: i64) -> Result<(), basis_queue::Error> {
        let job = NewJob {
            run_at_ms: Some(at),
            dedup_key: Some(format!("saga:{id}:t{token}")),
            max_attempts: 25,
            ..NewJob::new(SAGAS_QUEUE, ADVANCE, json!({"sagaId": id}))
        };
        self.backend.enqueue(job).await.map(drop)
    }

    /// One sweep: due sagas with no runner go to the queue; the gauges are refreshed.
    pub async fn sweep(&self, limit: i64) -> anyhow::Result<usize> {
        let due = self.checkout.due(limit).await?;
        for (id, at, token) in &due {
            self.nudge(*id, *at, *token).await?;
        }
        self.checkout.refresh_gauges().await?;
        Ok(due.len())
    }
}
