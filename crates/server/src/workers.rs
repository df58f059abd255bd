//! Running the product's jobs: the backend `--queue-url` names, the handler registry, the
//! workers inside `basis serve` and the `basis worker` process.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context as _;
use basis_auth::mail::Mailer;
use basis_queue::worker::{Registry, Worker, WorkerConfig, WorkerReport};
use basis_queue::{Backend, ClaimedJob, Handler, JobError, handler_fn};
use basis_store::{Pools, Store};

use crate::clock::{Clock, SystemClock};
use crate::jobs::context::JobContext;
use crate::jobs::{QUEUES, SHOP_MAIL_EVENTS_QUEUE, config::Workers, mail, status};
use crate::links::click_batches as clicks;
use crate::ops::{Ops, serve_worker_ops};
use crate::{Config, accounts, ledger, links, shop, webhooks};
use basis_store::links::{LINK_CLICKED, LINK_CREATED, LINK_DELETED};

/// Opens the queue `--queue-url` names (default: the database in use) and installs its
/// tables. On the default SQLite database the queue shares the store's single writer
/// connection, so queue and data writes take turns instead of colliding on the file lock.
pub async fn open_backend(
    config: &Config,
    store: &Store,
    clock: Arc<dyn Clock>,
) -> anyhow::Result<Arc<dyn Backend>> {
    let database_url = config.database_url();
    let url = config.jobs.queue_url(&database_url);
    let backend: Arc<dyn Backend> = match store.pools() {
        Pools::Sqlite { write, .. } if url == database_url => {
            let queue = basis_queue::sqlite::SqliteQueue::new(write.clone(), clock);
            queue
                .install()
                .await
                .context("cannot install the queue's tables")?;
            Arc::new(queue)
        }
        _ if url.starts_with("amqp://") => {
            let (url, namespace) = amqp_namespace(&url)?;
            // Deduplication keys in the deployment's PostgreSQL when it has one: a key is
            // then a row, where in the broker it is a queue declared and deleted per job.
            let keys = match store.pools() {
                Pools::Postgres { write, .. } => {
                    basis_queue::amqp::KeyStore::Postgres(write.clone())
                }
                Pools::Sqlite { .. } => basis_queue::amqp::KeyStore::Broker,
            };
            let config = basis_queue::amqp::AmqpConfig {
                namespace: namespace.unwrap_or_else(|| "basis".into()),
                keys,
                // So stats and dead letters cover every product queue, even in a process
                // (the CLI, a server with `--workers off`) that never touched some of them.
                queues: QUEUES.iter().map(|q| (*q).to_owned()).collect(),
                ..Default::default()
            };
            Arc::new(
                basis_queue::amqp::AmqpQueue::connect_with(&url, clock, config)
                    .await
                    .with_context(|| format!("cannot open the queue {}", crate::redact(&url)))?,
            )
        }
        // A database URL listing a cluster's nodes: the queue works through the store's
        // pool, which follows the primary across failovers (a pool of its own would
        // connect to one node and stay there).
        Pools::Postgres { write, .. } if url == database_url && store.leader().is_some() => {
            let queue = basis_queue::postgres::PostgresQueue::new(write.clone(), clock);
            queue
                .install()
                .await
                .context("cannot install the queue's tables")?;
            Arc::new(queue)
        }
        _ => {
            let options = basis_queue::ConnectOptions {
                slow_statement: config.slow_statement(),
            };
            basis_queue::connect_with(&url, clock, options)
                .await
                .with_context(|| format!("cannot open the queue {}", crate::redact(&url)))?
        }
    };
    // Before any relay publishes: a topic drops what is published while nobody subscribes.
    backend
        .subscribe(crate::outbox::EVENTS_TOPIC, webhooks::jobs::GROUP)
        .await
        .context("cannot subscribe the webhooks to the events topic")?;
    // The confirmation mail needs one kind; on the SQL engines the others never reach its
    // queue (the webhooks' group takes every kind). Subscribing again updates the list.
    backend
        .subscribe_kinds(
            crate::outbox::EVENTS_TOPIC,
            shop::jobs::MAIL_GROUP,
            shop::jobs::MAIL_KINDS,
        )
        .await
        .context("cannot subscribe the confirmation mail to the events topic")?;
    Ok(backend)
}

/// Splits an optional `namespace` query parameter off a RabbitMQ URL: the prefix of every
/// broker object, so several installations (or test runs) can share one broker and vhost.
fn amqp_namespace(url: &str) -> anyhow::Result<(String, Option<String>)> {
    let mut parsed = url::Url::parse(url).context("the queue URL is not a valid URL")?;
    let mut namespace = None;
    let rest: Vec<(String, String)> = parsed
        .query_pairs()
        .filter_map(|(key, value)| {
            if key == "namespace" {
                namespace = Some(value.into_owned());
                None
            } else {
                Some((key.into_owned(), value.into_owned()))
            }
        })
        .collect();
    if rest.is_empty() {
        parsed.set_query(None);
    } else {
        parsed.query_pairs_mut().clear().extend_pairs(rest);
    }
    Ok((parsed.to_string(), namespace))
}

/// Wraps an async function of the context into a handler.
fn handler<F, Fut>(ctx: &Arc<JobContext>, f: F) -> Arc<dyn Handler>
where
    F: Fn(Arc<JobContext>, ClaimedJob) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Option<serde_json::Value>, JobError>> + Send + 'static,
{
    let ctx = ctx.clone();
    handler_fn(move |job| f(ctx.clone(), job))
}

/// Every product job kind and its handler; jobs users follow keep their status row.
pub fn registry(ctx: &Arc<JobContext>) -> Registry {
    let tracked = |inner| status::tracked(ctx.store.clone(), ctx.clock.clone(), inner);
    let registry = Registry::new()
        .handle(clicks::APPLY_CLICKS, handler(ctx, clicks::apply))
        .handle(mail::PASSWORD_RESET, handler(ctx, mail::password_reset))
        .handle(mail::NEW_COMMENT, handler(ctx, mail::new_comment))
        .handle(
            accounts::avatar::THUMBNAILS,
            tracked(handler(ctx, accounts::avatar::thumbnails)),
        )
        .handle(
            links::exports::EXPORT,
            tracked(handler(ctx, links::exports::export)),
        )
        .handle(
            ledger::project::PROJECT,
            handler(ctx, ledger::project::project),
        )
        .handle(shop::handle::ADVANCE, handler(ctx, shop::jobs::advance))
        .handle(
            shop::handle::ORDER_MAIL,
            handler(ctx, shop::jobs::legacy_order_mail),
        )
        .handle(
            webhooks::jobs::DELIVER,
            handler(ctx, webhooks::jobs::attempt),
        );
    // A kind published to the `events` topic reaches the queue of every group subscribed to
    // it (on RabbitMQ every group's): the queue a job came from names its consumer, which
    // ignores the kinds that are not for it.
    [
        LINK_CREATED,
        LINK_CLICKED,
        LINK_DELETED,
        basis_ledger::TRANSFER_POSTED,
        basis_shop::saga::ORDER_CONFIRMED,
        basis_shop::saga::ORDER_CANCELLED,
        basis_shop::saga::ORDER_COMPLETED,
    ]
    .into_iter()
    .fold(registry, |r, kind| {
        r.handle(kind, handler(ctx, consume_event))
    })
}

/// Hands an `events` job to the consumer of the group it was delivered to.
async fn consume_event(
    ctx: Arc<JobContext>,
    job: ClaimedJob,
) -> Result<Option<serde_json::Value>, JobError> {
    match job.lease.queue.as_str() {
        SHOP_MAIL_EVENTS_QUEUE => shop::jobs::order_mail(ctx, job).await,
        _ => webhooks::jobs::fan_out(ctx, job).await,
    }
}

/// How the product's workers run.
pub fn worker_config(config: &Config) -> WorkerConfig {
    let lease = config.jobs.lease();
    WorkerConfig {
        concurrency: config.jobs.worker_concurrency.max(1),
        prefetch: config.jobs.worker_prefetch,
        lease,
        heartbeat: lease / 3,
        shutdown_grace: config.shutdown_grace(),
        ..WorkerConfig::new(QUEUES)
    }
}

/// Starts the workers of `basis serve`, unless `--workers off`; they stop when `stop`
/// turns true.
pub fn spawn_in_process(
    config: &Config,
    backend: Arc<dyn Backend>,
    ctx: Arc<JobContext>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> Option<tokio::task::JoinHandle<WorkerReport>> {
    if config.jobs.workers == Workers::Off {
        return None;
    }
    let worker = Worker::new(
        backend,
        ctx.clock.clone(),
        worker_config(config),
        registry(&ctx),
    );
    Some(tokio::spawn(worker.run(async move {
        let _ = stop.wait_for(|stopped| *stopped).await;
    })))
}

/// How often `basis worker` drains its metrics recorder's histogram samples.
const METRICS_UPKEEP: std::time::Duration = std::time::Duration::from_secs(5);

/// `basis worker`: runs the product's workers (and no API) until `shutdown` resolves, then
/// stops claiming, lets running jobs finish within the grace period and releases the rest.
/// With `ops_listen`, `/healthz`, `/readyz` and `/metrics` are served there meanwhile.
pub async fn run_workers(
    config: Config,
    ops_listen: Option<SocketAddr>,
    shutdown: impl Future<Output = ()> + Send,
) -> anyhow::Result<()> {
    let metrics = crate::prometheus();
    let store = crate::open_store(&config).await?;
    // Bound before the worker starts, so a taken port is an error at once.
    let ops_listener = match ops_listen {
        Some(addr) => Some(
            tokio::net::TcpListener::bind(addr)
                .await
                .with_context(|| format!("cannot listen on {addr} for /metrics and probes"))?,
        ),
        None => None,
    };
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let backend = open_backend(&config, &store, clock.clone()).await?;
    let mailer = config
        .auth
        .smtp_url
        .as_deref()
        .map(|url| Mailer::new(url, &config.auth.mail_from))
        .transpose()?;
    let ledger = crate::ledger::handle::LedgerHandle::open(&store, clock.clone()).await?;
    let shop =
        shop::handle::ShopHandle::open(&config.shop, &ledger.ledger, backend.clone()).await?;
    let ctx = Arc::new(JobContext {
        store: store.clone(),
        clock: clock.clone(),
        mailer,
        clicks: None,
        shop: Some(shop),
        webhooks: Some(webhooks::Webhooks::new(&config, backend.clone())),
    });
    let worker = Worker::new(
        backend.clone(),
        clock,
        worker_config(&config),
        registry(&ctx),
    );
    // Histogram samples pile up in the recorder until a render or an upkeep drains them,
    // and a worker may never be scraped.
    let upkeep = tokio::spawn({
        let metrics = metrics.clone();
        async move {
            let mut ticks = tokio::time::interval(METRICS_UPKEEP);
            loop {
                ticks.tick().await;
                metrics.run_upkeep();
            }
        }
    });
    let (stop_ops, ops_stopped) = tokio::sync::oneshot::channel::<()>();
    let ops = ops_listener.map(|listener| {
        let address = listener
            .local_addr()
            .map(|a| a.to_string())
            .unwrap_or_default();
        tracing::info!(%address, "listening");
        let ops = Ops {
            store: store.clone(),
            metrics,
        };
        tokio::spawn(serve_worker_ops(listener, ops, async move {
            let _ = ops_stopped.await;
        }))
    });
    let (stop_relay, relay_stopped) = tokio::sync::watch::channel(false);
    let relays = crate::outbox::spawn_relays(&store, &backend, &ctx.clock, &relay_stopped);
    let webhook_sweep = ctx.webhooks.clone().map(|hooks| {
        tokio::spawn(webhooks::jobs::sweep_periodically(
            store.clone(),
            hooks,
            ctx.clock.clone(),
            stop_relay.subscribe(),
        ))
    });
    tracing::info!(queue = backend.name(), queues = ?QUEUES, "worker running");
    let report = worker.run(shutdown).await;
    let _ = stop_relay.send(true);
    for relay in relays {
        let _ = relay.await;
    }
    if let Some(sweep) = webhook_sweep {
        let _ = sweep.await;
    }
    tracing::info!(
        claimed = report.claimed,
        released = report.released,
        "worker stopped"
    );
    // Probes and scrapes are answered until the last job has been handed back.
    let _ = stop_ops.send(());
    if let Some(ops) = ops
        && let Err(err) = ops.await.unwrap_or_else(|e| Err(std::io::Error::other(e)))
    {
        tracing::warn!(error = %err, "the operations port failed");
    }
    upkeep.abort();
    store.close().await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::amqp_namespace;

    #[test]
    fn the_namespace_parameter_is_taken_off_the_amqp_url() {
        let (url, ns) =
            amqp_namespace("amqp://guest:guest@127.0.0.1:5672/%2f?namespace=run1&heartbeat=10")
                .unwrap();
        assert_eq!(url, "amqp://guest:guest@127.0.0.1:5672/%2f?heartbeat=10");
        assert_eq!(ns.as_deref(), Some("run1"));
        let (url, ns) = amqp_namespace("amqp://127.0.0.1/%2f").unwrap();
        assert_eq!(url, "amqp://127.0.0.1/%2f");
        assert_eq!(ns, None);
    }
}
