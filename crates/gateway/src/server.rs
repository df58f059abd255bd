//! Accepting connections: the client side (HTTP/1.1 and h2c on one port, header limits and a
//! header read timeout), the admin listener, the health-check task, and the drain on shutdown.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hyper::service::service_fn;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;

use crate::backend::Pool;
use crate::balance::Balancer;
use crate::config::{Config, Mode};
use crate::health;
use crate::proxy::{Proxy, ProxySettings, Upstream};
use crate::status;
use crate::tcp::{self, TcpSettings};

/// A bound gateway, ready to run.
pub struct Gateway {
    listener: TcpListener,
    admin: Option<TcpListener>,
    proxy: Arc<Proxy>,
    client: Upstream,
    config: Config,
}

impl Gateway {
    /// Binds the listeners and builds the pool; nothing is accepted until [`Gateway::run`].
    pub async fn bind(config: Config) -> anyhow::Result<Self> {
        anyhow::ensure!(
            !config.backends.is_empty(),
            "at least one --backend is needed"
        );
        let listener = TcpListener::bind(config.listen)
            .await
            .map_err(|e| anyhow::anyhow!("cannot listen on {}: {e}", config.listen))?;
        let admin = match config.admin_listen {
            Some(address) => Some(
                TcpListener::bind(address)
                    .await
                    .map_err(|e| anyhow::anyhow!("cannot listen on {address}: {e}"))?,
            ),
            None => None,
        };
        let names: Vec<String> = config.backends.iter().map(|b| b.name()).collect();
        let names: Vec<&str> = names.iter().map(String::as_str).collect();
        let weights: Vec<u32> = config.backends.iter().map(|b| b.weight).collect();
        let balancer = Balancer::new(config.algorithm, &names, &weights);
        let pool = Arc::new(Pool::new(
            &config.backends,
            balancer,
            config.pool_policy(),
            Instant::now(),
        ));
        let client = upstream_client(&config);
        let settings = ProxySettings {
            trusted: config.trusted_proxies.clone(),
            hash_key: config.hash_key.clone(),
            retries: config.retries,
            header_timeout: Duration::from_millis(config.header_timeout_ms.max(1)),
        };
        let proxy = Arc::new(Proxy::new(
            pool,
            client.clone(),
            settings,
            config.retry_budget_percent,
        ));
        Ok(Self {
            listener,
            admin,
            proxy,
            client,
            config,
        })
    }

    /// The client-facing address (useful when bound to port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.listener.local_addr().unwrap_or(self.config.listen)
    }

    /// The admin address, when configured.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin.as_ref().and_then(|l| l.local_addr().ok())
    }

    /// The backends' live state.
    pub fn pool(&self) -> Arc<Pool> {
        self.proxy.pool.clone()
    }

    /// Serves until `shutdown` resolves, then stops accepting and lets open requests finish
    /// within the drain time.
    pub async fn run(self, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
        let Self {
            listener,
            admin,
            proxy,
            client,
            config,
        } = self;
        let checks = tokio::spawn(health::run(
            proxy.pool.clone(),
            client,
            config.check_settings(),
        ));
        let admin_task = admin.map(|admin| tokio::spawn(serve_admin(admin, proxy.pool.clone())));
        if config.mode == Mode::Tcp {
            let settings = TcpSettings {
                connect_timeout: Duration::from_millis(config.connect_timeout_ms.max(1)),
                retries: config.retries,
                drain: Duration::from_millis(config.drain_ms),
            };
            tcp::serve(listener, proxy.pool.clone(), settings, shutdown).await;
            checks.abort();
            if let Some(task) = admin_task {
                task.abort();
            }
            return Ok(());
        }

        let mut builder = auto::Builder::new(TokioExecutor::new());
        builder
            .http1()
            .timer(TokioTimer::new())
            .header_read_timeout(Duration::from_millis(
                config.client_header_timeout_ms.max(1),
            ))
            .max_headers(config.max_headers)
            .max_buf_size(config.max_header_bytes.max(8192));
        builder.http2().timer(TokioTimer::new());
        let graceful = GracefulShutdown::new();
        tokio::pin!(shutdown);
        loop {
            let (stream, peer) = tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok(pair) => pair,
                    Err(err) => {
                        // Out of file descriptors and the like: wait a little, keep serving.
                        tracing::warn!(error = %err, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
                () = &mut shutdown => break,
            };
            let _ = stream.set_nodelay(true);
            let proxy = proxy.clone();
            let service = service_fn(move |request| {
                let proxy = proxy.clone();
                async move { Ok::<_, Infallible>(proxy.handle(request, peer).await) }
            });
            let connection = builder
                .serve_connection_with_upgrades(TokioIo::new(stream), service)
                .into_owned();
            let connection = graceful.watch(connection);
            tokio::spawn(async move {
                if let Err(err) = connection.await {
                    tracing::debug!(error = %err, %peer, "client connection ended with an error");
                }
            });
        }
        drop(listener);
        tracing::info!(open = graceful.count(), "draining");
        let drain = Duration::from_millis(config.drain_ms);
        if tokio::time::timeout(drain, graceful.shutdown())
            .await
            .is_err()
        {
            tracing::warn!("drain time over; closing the remaining connections");
        }
        checks.abort();
        if let Some(task) = admin_task {
            task.abort();
        }
        Ok(())
    }
}

fn upstream_client(config: &Config) -> Upstream {
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    connector.set_connect_timeout(Some(Duration::from_millis(
        config.connect_timeout_ms.max(1),
    )));
    Client::builder(TokioExecutor::new())
        .pool_idle_timeout(Duration::from_millis(config.idle_timeout_ms))
        .pool_max_idle_per_host(1024)
        .pool_timer(TokioTimer::new())
        .timer(TokioTimer::new())
        .build(connector)
}

async fn serve_admin(listener: TcpListener, pool: Arc<Pool>) {
    let handle = status::prometheus();
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let (pool, handle) = (pool.clone(), handle.clone());
        let service = service_fn(move |request: http::Request<hyper::body::Incoming>| {
            let response = status::admin(&pool, &handle, request.method(), request.uri().path());
            async move { Ok::<_, Infallible>(response) }
        });
        tokio::spawn(async move {
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}
