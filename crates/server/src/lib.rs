//! The Basis HTTP application.
//!
//! # Where things are
//!
//! Three layers; a module uses only modules of its own layer's shared parts or of the
//! layers below it, and no resource uses another resource.
//!
//! ```text
//! composition   lib (Server, app, routes)  openapi  config  workers  queue_cli  backup
//!               web (the pages: HTML over the resources' services)
//!                    │ builds the state, merges every router, registers every job
//!                    ▼
//! resources     links   accounts   blog (posts, comments)   admin        ← handlers + rules
//!                    │ each: router() in mod.rs, thin handlers, a service where the rules
//!                    │ need one, its job handlers; SQL only through basis-store
//!                    ▼
//! shared        state (AppState: the services below, one Arc)   ops   audit
//!               identity (Identity, caller::Caller, views, config, throttle)
//!               jobs (Jobs handle, JobContext, status, mail)
//!               http (middleware, transport, routes, extract, rest, idempotency)
//!               error   clock   passwords
//! ```
//!
//! `state` names the services a few resource files define (the links' code book, URL
//! policy, click recorder and cache); those files import nothing above the shared layer,
//! so the picture has no cycle file by file.
//!
//! - [`Server`]: builds everything from a [`Config`] (database, migrations, state, routes),
//!   binds the listener and runs until a shutdown future resolves, then drains and flushes.
//!   `main` and the integration tests both start the application through it.
//! - [`routes`]: every resource's routes, through the route table
//!   ([`http::routes::Routes`]) that records what is served (the OpenAPI test reads it).
//! - [`workers`]: the queue backend, the registry of every job handler, the workers
//!   `serve` runs in-process unless `--workers off`, and `basis worker`; [`queue_cli`]:
//!   `basis queue …`; [`backup`]: `basis backup` and `basis restore`; [`outbox`]: the relay
//!   that publishes the store's outbox events to the queue (running wherever workers run).
//! - [`web`]: the server-rendered pages (sign up, sign in, shorten, my links), calling the
//!   resources' services as the API handlers do.
//! - Resources: [`links`] (the shortener: create, manage, analytics, redirect, exports),
//!   [`accounts`] (`/users…` and `/auth…`), [`blog`], [`ledger`] (money over HTTP on
//!   `basis-ledger`), [`admin`] (audit list, queues).
//! - Shared: [`state::AppState`], [`identity`] (who is calling), [`jobs`], [`http`],
//!   [`error`] (the one error type and its problem+json rendering), [`audit`],
//!   [`ops`] (health, readiness, metrics), [`clock`], [`passwords`].

use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use anyhow::Context;
use axum::Router;
use basis_ratelimit::{RateLimitConfig, RateLimitLayer};
use basis_store::ids::IdBlocks;
use basis_store::{ConnectOptions, Store};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use tokio::net::TcpListener;
use tokio::sync::watch;

pub mod accounts;
pub mod admin;
pub mod audit;
pub mod backup;
pub mod blog;
pub mod clock;
pub mod config;
pub mod error;
pub mod http;
pub mod identity;
pub mod jobs;
pub mod ledger;
pub mod links;
pub mod openapi;
pub mod ops;
pub mod outbox;
pub mod passwords;
pub mod queue_cli;
pub mod shop;
pub mod state;
pub mod web;
pub mod webhooks;
pub mod workers;

pub use config::Config;
pub use identity::Environment;

use crate::clock::{Clock, SystemClock};
use crate::error::ApiError;
use crate::http::routes::Routes;
use crate::links::cache::LinkCache;
use crate::links::input::UrlPolicy;
use crate::links::recorder::ClickRecorder;
use crate::passwords::Passwords;
use crate::state::{AppServices, AppState};

/// Ids leased per round trip to the database.
const ID_BLOCK_SIZE: u32 = 1000;

/// The process-wide Prometheus recorder (the `metrics` facade allows one per process).
fn prometheus() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new()
                .set_buckets(&[
                    0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
                    1.0, 2.5, 5.0, 10.0,
                ])
                .expect("bucket list is not empty")
                .build_recorder();
            let handle = recorder.handle();
            if metrics::set_global_recorder(recorder).is_err() {
                tracing::warn!("a metrics recorder was already installed; /metrics will be empty");
            }
            handle
        })
        .clone()
}

/// Connects to the configured database and applies pending migrations.
pub async fn open_store(config: &Config) -> anyhow::Result<Store> {
    let url = config.database_url();
    let mut replicas = config.replica_urls();
    if !replicas.is_empty() && url.starts_with("sqlite:") {
        tracing::warn!(
            replicas = %replicas.iter().map(|url| redact(url)).collect::<Vec<_>>().join(","),
            "--database-replica-url is ignored on SQLite"
        );
        replicas.clear();
    }
    let replica_names = replicas
        .iter()
        .map(|url| redact(url))
        .collect::<Vec<_>>()
        .join(", ");
    let options = ConnectOptions {
        max_connections: config.db_pool_size,
        slow_statement: config.slow_statement(),
        sqlite_memory_bytes: config.sqlite_memory_mb * 1024 * 1024,
        replicas,
        replica_max_lag: config.replica_max_lag(),
        ..ConnectOptions::default()
    };
    let store = Store::connect(&url, &options).await.with_context(|| {
        if replica_names.is_empty() {
            format!("cannot open the database {}", redact(&url))
        } else {
            format!(
                "cannot open the database {} with the replicas {replica_names}",
                redact(&url)
            )
        }
    })?;
    store
        .migrate()
        .await
        .context("cannot migrate the database")?;
    let shards = config.shard_urls();
    if shards.is_empty() {
        return Ok(store);
    }
    let names = shards
        .iter()
        .map(|url| redact(url))
        .collect::<Vec<_>>()
        .join(", ");
    store
        .with_link_shards(&shards, &options)
        .await
        .with_context(|| format!("cannot spread the links over the shard databases {names}"))
}

/// A URL with any password replaced, fit for logs and error messages. A URL listing
/// several hosts (`postgres://u:pw@h1:5432,h2:5432/db`) is not one the `url` crate reads;
/// its user information is found by hand.
fn redact(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut parsed) if parsed.password().is_some() => {
            let _ = parsed.set_password(Some("***"));
            parsed.to_string()
        }
        Ok(_) => url.to_owned(),
        Err(_) => {
            let Some((scheme, rest)) = url.split_once("://") else {
                return url.to_owned();
            };
            let authority = &rest[..rest.find(['/', '?']).unwrap_or(rest.len())];
            match authority.rsplit_once('@') {
                Some((user_info, hosts)) if user_info.contains(':') => {
                    let user = user_info.split(':').next().unwrap_or_default();
                    format!("{scheme}://{user}:***@{hosts}{}", &rest[authority.len()..])
                }
                _ => url.to_owned(),
            }
        }
    }
}

/// A built application bound to its listener, ready to run.
#[derive(Debug)]
pub struct Server {
    listener: TcpListener,
    /// TLS, when `--tls-cert`/`--tls-key` are set.
    tls: Option<http::transport::Tls>,
    /// Where the plain-HTTP redirector listens, if it does.
    redirect_addr: Option<SocketAddr>,
    router: Router,
    state: AppState,
    config: Config,
}

impl Server {
    /// Builds the application with the system clock.
    pub async fn build(config: Config) -> anyhow::Result<Self> {
        Self::build_with_clock(config, Arc::new(SystemClock)).await
    }

    /// Builds the application reading time from `clock`.
    pub async fn build_with_clock(config: Config, clock: Arc<dyn Clock>) -> anyhow::Result<Self> {
        // First, so that components that register their metrics when built are recorded.
        let metrics = prometheus();
        std::fs::create_dir_all(&config.data_dir).with_context(|| {
            format!(
                "cannot create the data directory {}",
                config.data_dir.display()
            )
        })?;
        let store = open_store(&config).await?;
        let queue = workers::open_backend(&config, &store, clock.clone()).await?;
        let listener = TcpListener::bind(config.listen)
            .await
            .with_context(|| format!("cannot listen on {}", config.listen))?;
        let bound = listener.local_addr()?;
        let tls = config.transport.tls()?;
        let mut base_url = config.base_url_for(bound);
        if tls.is_some() && config.base_url.is_none() {
            let _ = base_url.set_scheme("https");
        }
        let redirect_addr = match config.transport.redirect_http {
            Some(addr) if tls.is_some() => {
                let plain = TcpListener::bind(addr)
                    .await
                    .with_context(|| format!("cannot listen on {addr} for the HTTP redirector"))?;
                let local = plain.local_addr()?;
                let origin = base_url.as_str().trim_end_matches('/').to_owned();
                tokio::spawn(http::transport::redirect_http(plain, origin));
                Some(local)
            }
            Some(_) => anyhow::bail!("--redirect-http needs --tls-cert and --tls-key"),
            None => None,
        };

        if let (Some(replicas), Some(url)) = (store.replicas(), config.redis_url()) {
            let floors = http::read_floor::RedisFloors::new(url)
                .context("cannot prepare the read floors in Redis")?;
            replicas.share_floors(Arc::new(floors));
        }
        let code_key = store
            .setting_or_init("code_key", || format!("{:016x}", rand::random::<u64>()))
            .await?;
        let code_key = u64::from_str_radix(&code_key, 16)
            .context("the stored code_key is not a hex number")?;
        let codes = links::legacy::code_book(&store, code_key)
            .await
            .context("cannot settle the link codes stored before migration 0004")?;
        let blocked_hosts = match &config.host_blocklist {
            Some(path) => UrlPolicy::read_blocklist(path)
                .with_context(|| format!("cannot read the host blocklist {}", path.display()))?,
            None => Default::default(),
        };

        let geoip = match &config.geoip_db {
            Some(path) => Some(Arc::new(links::geoip::GeoIp::open(path)?)),
            None => None,
        };

        let ledger = ledger::handle::LedgerHandle::open(&store, clock.clone())
            .await?
            .with_remote(&config.cross, config.slow_statement(), clock.clone())
            .await?;
        let limits = rate_limit_config(&config)?;
        let state = AppState::new(AppServices {
            ids: Arc::new(IdBlocks::new(store.clone(), "links", ID_BLOCK_SIZE)),
            codes: Arc::new(codes),
            url_policy: Arc::new(UrlPolicy {
                max_len: config.max_url_length,
                own_origin: base_url.clone(),
                blocked_hosts,
            }),
            base_url: base_url.as_str().trim_end_matches('/').into(),
            domains: Arc::new(links::domains::Domains::new(
                &base_url,
                &config.domains,
                config.unknown_domain_redirect.as_ref(),
            )?),
            trusted_proxies: limits.trusted_proxies.clone().into(),
            rate_limits: Arc::new(admin::rate_limits::RateLimits::new(&limits)),
            geoip,
            clicks: Arc::new(
                ClickRecorder::new(store.clone(), queue.clone(), clock.clone())
                    .with_visit_log(config.visit_log_days),
            ),
            link_cache: LinkCache::new(config.link_cache_mb * 1024 * 1024, config.redis_url())
                .context("cannot build the link cache")?,
            user_views: identity::views::view_cache(config.redis_url())
                .context("cannot build the user cache")?,
            passwords: Passwords::default(),
            identity: Arc::new(identity::Identity::build(
                &config.auth,
                config.environment,
                &config.data_dir,
                &base_url,
                identity::throttle::for_config(config.redis_url())
                    .context("cannot build the login throttle")?,
                identity::cutoffs::TokenCutoffs::new(config.redis_url())
                    .context("cannot build the token cutoffs")?,
            )?),
            metrics,
            comment_notifier: Arc::new(jobs::mail::QueuedCommentMail {
                jobs: jobs::Jobs::new(queue.clone(), store.clone(), clock.clone()),
                base_url: base_url.as_str().trim_end_matches('/').to_owned(),
            }),
            jobs: jobs::Jobs::new(queue.clone(), store.clone(), clock.clone()),
            webhooks: webhooks::Webhooks::new(&config, queue.clone()),
            password_pages: Some(Arc::new(web::link_password::Pages)),
            shop: shop::handle::ShopHandle::open(&config.shop, &ledger.ledger, queue).await?,
            ledger,
            request_timeout_ms: i64::try_from(config.request_timeout_ms).unwrap_or(i64::MAX),
            clock,
            store,
        });
        state
            .identity
            .cutoffs
            .reload(&state.store, state.clock.now_ms())
            .await
            .context("cannot load the token cutoffs")?;
        let router = app(state.clone(), &config)?;
        Ok(Self {
            listener,
            tls,
            redirect_addr,
            router,
            state,
            config,
        })
    }

    /// The address the server listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .expect("a bound listener has an address")
    }

    /// Where the plain-HTTP redirector listens (`--redirect-http`).
    pub fn redirect_addr(&self) -> Option<SocketAddr> {
        self.redirect_addr
    }

    /// The shared state (tests use it to reach the store and the clock).
    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// Serves until `shutdown` resolves, then stops accepting, lets open requests finish
    /// (for at most the configured grace period), writes every counted click and returns.
    pub async fn run(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let Self {
            listener,
            tls,
            router,
            state,
            config,
            ..
        } = self;
        let (stop_workers, workers_stopped) = watch::channel(false);
        let workers = workers::spawn_in_process(
            &config,
            state.jobs.backend().clone(),
            Arc::new(jobs::context::JobContext {
                store: state.store.clone(),
                clock: state.clock.clone(),
                mailer: state.identity.mailer.clone(),
                clicks: Some(state.clicks.clone()),
                shop: Some(state.shop.clone()),
                webhooks: Some(state.webhooks.clone()),
            }),
            workers_stopped,
        );
        let (stop_flusher, flusher_stopped) = watch::channel(false);
        let flusher = tokio::spawn(flush_clicks(
            state.clone(),
            config.click_flush_interval(),
            flusher_stopped.clone(),
        ));
        let ledger_runner = tokio::spawn(ledger::run_periodically(
            state.clone(),
            flusher_stopped.clone(),
        ));
        let cross_recovery = tokio::spawn(ledger::cross::recover_periodically(
            state.clone(),
            config.cross.recovery_interval(),
            flusher_stopped.clone(),
        ));
        let shop_runner = tokio::spawn(shop::run_periodically(
            state.clone(),
            flusher_stopped.clone(),
        ));
        let purger = tokio::spawn(http::idempotency::purge_periodically(
            state.clone(),
            flusher_stopped.clone(),
        ));
        let sweeper = tokio::spawn(accounts::avatar::sweep_periodically(
            state.clone(),
            flusher_stopped.clone(),
        ));
        let visit_pruner = tokio::spawn(links::visits::prune_periodically(
            state.clone(),
            flusher_stopped.clone(),
        ));
        // The outbox relays are background work: they run where the workers run.
        let relays = if workers.is_some() {
            outbox::spawn_relays(
                &state.store,
                state.jobs.backend(),
                &state.clock,
                &flusher_stopped,
            )
        } else {
            Vec::new()
        };
        // So is the sweep of webhook attempts a crash lost.
        let webhook_sweep = workers.is_some().then(|| {
            tokio::spawn(webhooks::jobs::sweep_periodically(
                state.store.clone(),
                state.webhooks.clone(),
                state.clock.clone(),
                flusher_stopped.clone(),
            ))
        });
        let cutoffs = {
            let state = state.clone();
            tokio::spawn(async move {
                state
                    .identity
                    .cutoffs
                    .follow(state.store.clone(), state.clock.clone(), flusher_stopped)
                    .await;
            })
        };

        let (stopping_tx, mut stopping_rx) = watch::channel(false);
        let signal = async move {
            shutdown.await;
            tracing::info!("shutting down: no new connections, draining open requests");
            let _ = stopping_tx.send(true);
        };
        let serve = http::conn::serve(listener, tls, router, signal, config.conn.clone());
        let grace = config.shutdown_grace();
        let deadline = async move {
            let _ = stopping_rx.wait_for(|stopping| *stopping).await;
            tokio::time::sleep(grace).await;
        };
        tokio::select! {
            served = serve => served.context("the server failed")?,
            () = deadline => tracing::warn!(?grace, "grace period over; closing the remaining connections"),
        }

        // Every task gets to finish its step, but not forever: a dependency that hangs (a
        // broker that accepts connections and never answers) must not keep the process
        // from exiting when it was told to. Another grace period, as the embedded workers'
        // drain below may take one.
        let finish = async {
            let _ = stop_flusher.send(true);
            let _ = flusher.await;
            let _ = purger.await;
            let _ = sweeper.await;
            let _ = visit_pruner.await;
            let _ = cutoffs.await;
            let _ = ledger_runner.await;
            let _ = cross_recovery.await;
            let _ = shop_runner.await;
            for relay in relays {
                let _ = relay.await;
            }
            if let Some(sweep) = webhook_sweep {
                let _ = sweep.await;
            }
            match state.clicks.flush().await {
                Ok(links) => tracing::info!(links, "final click batch enqueued"),
                Err(err) => {
                    tracing::error!(error = %err, "final click flush failed; unflushed clicks are lost")
                }
            }
            if let Some(workers) = workers {
                // One process does everything in the embedded mode: store the last batches
                // before the workers stop, so a restart shows every counted click at once.
                if !state.clicks.drain(grace).await {
                    tracing::warn!(
                        "click batches still queued at shutdown; a worker will apply them"
                    );
                }
                let _ = stop_workers.send(true);
                match workers.await {
                    Ok(report) => tracing::info!(released = report.released, "workers stopped"),
                    Err(err) => tracing::error!(error = %err, "the workers failed"),
                }
            }
            state.link_cache.shutdown().await;
            state.user_views.shutdown().await;
            state.store.close().await;
        };
        if tokio::time::timeout(grace.saturating_mul(2), finish)
            .await
            .is_err()
        {
            tracing::error!(
                ?grace,
                "the background tasks did not stop within the grace period; exiting without them"
            );
        }
        Ok(())
    }
}

/// The full router with its middleware (fails on invalid transport settings, such as a
/// malformed CORS origin).
pub fn app(state: AppState, config: &Config) -> anyhow::Result<Router> {
    // The pages are not API: they stay out of the route table the OpenAPI test reads.
    let mut routes = routes()
        .into_router()
        .merge(web::router(state.clone()))
        .fallback(|| async { ApiError::NotFound });
    if state.store.replicas().is_some() {
        routes = routes.layer(axum::middleware::from_fn_with_state(
            state.store.clone(),
            http::read_floor::scope,
        ));
    }
    let limits = rate_limit_config(config)?;
    let limiter = RateLimitLayer::from_config(limits, config.redis_url())
        .context("cannot start the rate limiter")?;
    limiter.on_reject(state.rate_limits.hook(state.clock.clone()));
    let routes = http::layer(
        routes,
        limiter,
        config.body_limit,
        config.request_timeout(),
        config.conn.max_in_flight,
        http::ErrorPages {
            not_found: web::not_found_page,
            too_many: web::rate_limited_page,
        },
    );
    Ok(http::transport::layer(routes, &config.transport)?.with_state(state))
}

/// The rate-limit rules in effect (the file of `--rate-limit-config`, else the built-in
/// ones), with the reason when they cannot be read.
fn rate_limit_config(config: &Config) -> anyhow::Result<RateLimitConfig> {
    let rules_file = config.rate_limit_config.as_deref();
    RateLimitConfig::load(rules_file, config.rate_limits.as_deref()).with_context(|| {
        match rules_file {
            Some(path) => format!("invalid rate-limit rules in {}", path.display()),
            None => "invalid rate-limit settings".to_owned(),
        }
    })
}

/// Every resource's routes.
pub fn routes() -> Routes<AppState> {
    Routes::new()
        .merge(ops::router())
        .merge(openapi::router())
        .merge(links::router())
        .merge(accounts::router())
        .merge(admin::router())
        .merge(jobs::status::router())
        .merge(blog::router())
        .merge(ledger::router())
        .merge(shop::router())
        .merge(webhooks::router())
}

/// Writes aggregated clicks every `interval` until told to stop.
async fn flush_clicks(state: AppState, interval: Duration, mut stop: watch::Receiver<bool>) {
    let mut ticks = tokio::time::interval(interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticks.tick() => {
                // Runs to completion once started: a flush is never cut off half-way.
                if let Err(err) = state.clicks.flush().await {
                    tracing::warn!(error = %err, "click flush failed; will retry");
                }
                state.metrics.run_upkeep();
            }
            _ = stop.changed() => return,
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_password_is_hidden_in_single_and_multi_host_urls() {
        assert_eq!(
            super::redact("postgres://app:secret@db:5432/basis"),
            "postgres://app:***@db:5432/basis"
        );
        assert_eq!(
            super::redact(
                "postgres://app:secret@h1:5432,h2:5432/basis?target_session_attrs=read-write"
            ),
            "postgres://app:***@h1:5432,h2:5432/basis?target_session_attrs=read-write"
        );
        assert_eq!(
            super::redact("postgres://app@h1,h2/basis"),
            "postgres://app@h1,h2/basis"
        );
    }
}
