//! Accepting connections: the client side (HTTP/1.1 and h2c on one port, header limits and a
//! header read timeout), the admin listener, health-check tasks, SIGHUP reloads, and the drain
//! on shutdown.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use crate::backend::Pool;
use crate::config::{Config, Mode};
use crate::health;
use crate::proxy::{Proxy, ProxySettings, Upstream};
use crate::routes::{ConfigError, Routes};
use crate::status;
use crate::tcp::{self, TcpSettings};
use crate::timer::ConnectionTimer;
use crate::tls;
use crate::upstream::UpstreamSettings;
use tokio_rustls::TlsAcceptor;

/// What a running gateway shares with its reload path: the proxy, settings, check tasks.
pub struct Control {
    proxy: Arc<Proxy>,
    client: Upstream,
    config: Config,
    checks: Mutex<Vec<JoinHandle<()>>>,
}

impl Control {
    /// Reads the configuration file again and puts its routes in force; on any error the
    /// running routes stay and the error is returned. A backend that its route keeps keeps
    /// its state (health, ejection, latency estimate, in-flight count, idle connections).
    pub fn reload(&self) -> Result<(), ConfigError> {
        let running = self.proxy.routes();
        let routes = Routes::load(&self.config, Some(&running))?;
        if self.config.mode == Mode::Tcp && routes.listeners() != running.listeners() {
            return Err(ConfigError {
                path: self
                    .config
                    .config
                    .as_ref()
                    .map_or_else(String::new, |p| p.display().to_string()),
                line: 0,
                reason: "TCP routes and their `listen` addresses change only on a restart; \
                         a reload may change their backends and settings"
                    .into(),
            });
        }
        self.start_checks(&routes);
        self.proxy.replace_routes(routes);
        tracing::info!("configuration reloaded");
        Ok(())
    }

    /// The routes in force.
    pub fn routes(&self) -> Arc<Routes> {
        self.proxy.routes()
    }

    /// Replaces the health-check tasks with one per pool of `routes`.
    fn start_checks(&self, routes: &Routes) {
        let mut checks = self.checks.lock().unwrap_or_else(|e| e.into_inner());
        for task in checks.drain(..) {
            task.abort();
        }
        for route in &routes.routes {
            let task = health::run(
                route.pool.clone(),
                self.client.clone(),
                self.config.check_settings(),
            );
            checks.push(tokio::spawn(task));
        }
    }

    fn stop_checks(&self) {
        for task in self
            .checks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .drain(..)
        {
            task.abort();
        }
    }
}

/// A bound gateway, ready to run.
pub struct Gateway {
    listener: TcpListener,
    /// TCP mode: the routes with their own `listen` address, by route name.
    tcp_listeners: Vec<(String, TcpListener)>,
    admin: Option<TcpListener>,
    /// The plain-HTTP listener that redirects to HTTPS.
    redirect: Option<TcpListener>,
    tls: Option<TlsAcceptor>,
    /// SIGHUP, registered at bind so a signal sent as soon as the address is logged reloads
    /// instead of ending the process (the default action).
    hangups: Option<Hangups>,
    control: Arc<Control>,
}

#[cfg(unix)]
type Hangups = tokio::signal::unix::Signal;
#[cfg(not(unix))]
type Hangups = ();

impl Gateway {
    /// Reads the routes and binds the listeners; nothing is accepted until [`Gateway::run`].
    pub async fn bind(config: Config) -> anyhow::Result<Self> {
        let routes = Routes::load(&config, None)?;
        let listener = TcpListener::bind(config.listen)
            .await
            .map_err(|e| anyhow::anyhow!("cannot listen on {}: {e}", config.listen))?;
        let mut tcp_listeners = Vec::new();
        for route in &routes.routes {
            if let Some(address) = route.listen {
                let listener = TcpListener::bind(address).await.map_err(|e| {
                    anyhow::anyhow!("route `{}`: cannot listen on {address}: {e}", route.name)
                })?;
                tcp_listeners.push((route.name.clone(), listener));
            }
        }
        let admin = match config.admin_listen {
            Some(address) => Some(
                TcpListener::bind(address)
                    .await
                    .map_err(|e| anyhow::anyhow!("cannot listen on {address}: {e}"))?,
            ),
            None => None,
        };
        let tls = match (&config.tls_cert, &config.tls_key) {
            (Some(cert), Some(key)) => Some(tls::acceptor(cert, key)?),
            _ => None,
        };
        let redirect = match config.redirect_http {
            Some(address) => Some(
                TcpListener::bind(address)
                    .await
                    .map_err(|e| anyhow::anyhow!("cannot listen on {address}: {e}"))?,
            ),
            None => None,
        };
        let client = Upstream::new(
            UpstreamSettings {
                connect_timeout: Duration::from_millis(config.connect_timeout_ms.max(1)),
                idle_timeout: Duration::from_millis(config.idle_timeout_ms),
                http2: config.upstream_http2,
            },
            config.backend_ca.as_deref(),
        )?;
        let settings = ProxySettings {
            trusted: config.trusted_proxies.clone(),
            retries: config.retries,
            header_timeout: Duration::from_millis(config.header_timeout_ms.max(1)),
            tls: config.tls_cert.is_some(),
            replay_body_bytes: config.replay_body_bytes,
        };
        let proxy = Arc::new(Proxy::new(
            routes,
            client.clone(),
            settings,
            config.retry_budget_percent,
        ));
        let control = Arc::new(Control {
            proxy,
            client,
            config,
            checks: Mutex::new(Vec::new()),
        });
        let hangups = match control.config.config {
            Some(_) => Some(hangups()?),
            None => None,
        };
        Ok(Self {
            listener,
            tcp_listeners,
            admin,
            redirect,
            tls,
            hangups,
            control,
        })
    }

    /// The client-facing address (useful when bound to port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .unwrap_or(self.control.config.listen)
    }

    /// The admin address, when configured.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin.as_ref().and_then(|l| l.local_addr().ok())
    }

    /// TCP mode: the address of route `name`'s own listener.
    pub fn route_addr(&self, name: &str) -> Option<SocketAddr> {
        self.tcp_listeners
            .iter()
            .find(|(route, _)| route == name)
            .and_then(|(_, l)| l.local_addr().ok())
    }

    /// The plain-HTTP redirector's address, when configured.
    pub fn redirect_addr(&self) -> Option<SocketAddr> {
        self.redirect.as_ref().and_then(|l| l.local_addr().ok())
    }

    /// The first route's backends (the only ones without a configuration file).
    pub fn pool(&self) -> Arc<Pool> {
        self.control.routes().routes[0].pool.clone()
    }

    /// The handle for reloads and inspection, usable while the gateway runs.
    pub fn control(&self) -> Arc<Control> {
        self.control.clone()
    }

    /// Serves until `shutdown` resolves, then stops accepting and lets open requests finish
    /// within the drain time. With a configuration file, SIGHUP reloads it.
    pub async fn run(self, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
        let Self {
            listener,
            mut tcp_listeners,
            admin,
            redirect,
            tls,
            hangups,
            control,
        } = self;
        let https_port = listener.local_addr().map_or(443, |a| a.port());
        let redirect_task = redirect.map(|r| tokio::spawn(tls::redirect_http(r, https_port)));
        control.start_checks(&control.routes());
        let admin_task = admin.map(|admin| tokio::spawn(serve_admin(admin, control.proxy.clone())));
        let reloads = hangups.map(|h| tokio::spawn(reload_on_hangup(control.clone(), h)));
        let config = &control.config;
        if config.mode == Mode::Tcp {
            let settings = TcpSettings {
                connect_timeout: Duration::from_millis(config.connect_timeout_ms.max(1)),
                retries: config.retries,
                drain: Duration::from_millis(config.drain_ms),
            };
            // The route without a `listen` of its own, if any, takes --listen.
            let routes = control.routes();
            if let Some(route) = routes.routes.iter().find(|r| r.listen.is_none()) {
                tcp_listeners.push((route.name.clone(), listener));
            }
            tcp::serve(tcp_listeners, control.proxy.clone(), settings, shutdown).await;
        } else {
            serve_http(listener, tls, control.proxy.clone(), config, shutdown).await;
        }
        control.stop_checks();
        for task in admin_task.into_iter().chain(reloads).chain(redirect_task) {
            task.abort();
        }
        Ok(())
    }
}

async fn serve_http(
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    proxy: Arc<Proxy>,
    config: &Config,
    shutdown: impl Future<Output = ()>,
) {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    // Each connection sets its own HTTP/1.1 timer (below).
    builder
        .http1()
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
        // One timer per connection for hyper's header read timeout and the proxy's wait for
        // the backend (`crate::timer`): re-armed lazily instead of armed per request.
        let timer = ConnectionTimer::default();
        let mut builder = builder.clone();
        builder.http1().timer(timer.clone());
        let service = service_fn(move |request| {
            let (proxy, timer) = (proxy.clone(), timer.clone());
            async move { Ok::<_, Infallible>(proxy.handle(request, peer, &timer).await) }
        });
        let Some(tls) = &tls else {
            let connection = builder
                .serve_connection_with_upgrades(TokioIo::new(stream), service)
                .into_owned();
            let connection = graceful.watch(connection);
            tokio::spawn(async move {
                if let Err(err) = connection.await {
                    tracing::debug!(error = %err, %peer, "client connection ended with an error");
                }
            });
            continue;
        };
        // The handshake runs in the connection's task so a slow client cannot stall accepts.
        let (tls, builder, watcher) = (tls.clone(), builder.clone(), graceful.watcher());
        let timeout = Duration::from_millis(config.client_header_timeout_ms.max(1));
        tokio::spawn(async move {
            let stream = match tokio::time::timeout(timeout, tls.accept(stream)).await {
                Ok(Ok(stream)) => stream,
                _ => return tracing::debug!(%peer, "TLS handshake failed or timed out"),
            };
            let connection = builder.serve_connection_with_upgrades(TokioIo::new(stream), service);
            if let Err(err) = watcher.watch(connection.into_owned()).await {
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
}

#[cfg(unix)]
fn hangups() -> anyhow::Result<Hangups> {
    use tokio::signal::unix::{SignalKind, signal};
    signal(SignalKind::hangup()).map_err(|e| anyhow::anyhow!("cannot listen for SIGHUP: {e}"))
}

#[cfg(not(unix))]
fn hangups() -> anyhow::Result<Hangups> {
    Ok(())
}

/// Reloads the configuration file on every SIGHUP; a bad file is logged and ignored.
async fn reload_on_hangup(control: Arc<Control>, mut hangups: Hangups) {
    #[cfg(unix)]
    while hangups.recv().await.is_some() {
        if let Err(err) = control.reload() {
            tracing::error!(error = %err, "reload refused; the running configuration stays");
        }
    }
    #[cfg(not(unix))]
    {
        let _ = (&control, &mut hangups);
        std::future::pending::<()>().await;
    }
}

async fn serve_admin(listener: TcpListener, proxy: Arc<Proxy>) {
    let handle = status::prometheus();
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            // Out of file descriptors and the like: back off instead of spinning.
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            continue;
        };
        let (proxy, handle) = (proxy.clone(), handle.clone());
        let service = service_fn(move |request: http::Request<hyper::body::Incoming>| {
            let response = status::admin(
                &proxy.routes(),
                &handle,
                request.method(),
                request.uri().path(),
            );
            async move { Ok::<_, Infallible>(response) }
        });
        tokio::spawn(async move {
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}
