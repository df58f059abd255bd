//! Real HTTP backends in the test process (hyper servers on port 0) and a gateway in front.

#![allow(dead_code)] // each test binary uses its own subset

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU16, AtomicU64, Ordering};
use std::time::Duration;

use basis_gateway::backend::BackendSpec;
use basis_gateway::{Config, Gateway};
use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt as _, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

/// A backend that answers `GET /` with its name and the forwarding headers it saw, echoes
/// bodies' lengths, and can be made slow or draining.
pub struct TestBackend {
    /// Where it listens.
    pub address: SocketAddr,
    /// Requests received (health checks excluded).
    pub hits: Arc<AtomicU64>,
    /// Status of `/readyz`.
    pub ready_status: Arc<AtomicU16>,
    /// Delay before answering, in milliseconds.
    pub delay_ms: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl TestBackend {
    /// Starts a backend named `name`.
    pub async fn start(name: &'static str) -> Self {
        Self::start_with(name, None).await
    }

    /// Starts a backend named `name` that speaks HTTPS with `tls`.
    pub async fn start_tls(name: &'static str, tls: tokio_rustls::TlsAcceptor) -> Self {
        Self::start_with(name, Some(tls)).await
    }

    async fn start_with(name: &'static str, tls: Option<tokio_rustls::TlsAcceptor>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let hits = Arc::new(AtomicU64::new(0));
        let ready_status = Arc::new(AtomicU16::new(200));
        let delay_ms = Arc::new(AtomicU64::new(0));
        let (h, r, d) = (hits.clone(), ready_status.clone(), delay_ms.clone());
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let (h, r, d) = (h.clone(), r.clone(), d.clone());
                let service = service_fn(move |request: Request<Incoming>| {
                    let (h, r, d) = (h.clone(), r.clone(), d.clone());
                    async move { Ok::<_, Infallible>(answer(name, request, &h, &r, &d).await) }
                });
                let tls = tls.clone();
                tokio::spawn(async move {
                    let http = hyper::server::conn::http1::Builder::new();
                    match tls {
                        None => {
                            let _ = http.serve_connection(TokioIo::new(stream), service).await;
                        }
                        Some(tls) => {
                            // A client that refuses the certificate ends here.
                            let Ok(stream) = tls.accept(stream).await else {
                                return;
                            };
                            let _ = http.serve_connection(TokioIo::new(stream), service).await;
                        }
                    }
                });
            }
        });
        Self {
            address,
            hits,
            ready_status,
            delay_ms,
            task,
        }
    }

    /// `--backend` for this backend.
    pub fn spec(&self) -> BackendSpec {
        format!("http://{}", self.address).parse().unwrap()
    }

    /// `--backend` for this backend over HTTPS.
    pub fn https_spec(&self) -> BackendSpec {
        format!("https://{}", self.address).parse().unwrap()
    }

    /// Requests received.
    pub fn hits(&self) -> u64 {
        self.hits.load(Ordering::SeqCst)
    }

    /// Stops listening (the port refuses from then on).
    pub async fn stop(self) {
        self.task.abort();
        let _ = self.task.await;
    }
}

async fn answer(
    name: &str,
    request: Request<Incoming>,
    hits: &AtomicU64,
    ready: &AtomicU16,
    delay: &AtomicU64,
) -> Response<Full<Bytes>> {
    if request.uri().path() == "/readyz" {
        let mut response = Response::new(Full::new(Bytes::from_static(b"ready")));
        *response.status_mut() = http::StatusCode::from_u16(ready.load(Ordering::SeqCst)).unwrap();
        return response;
    }
    hits.fetch_add(1, Ordering::SeqCst);
    let delay = delay.load(Ordering::SeqCst);
    if delay > 0 {
        tokio::time::sleep(Duration::from_millis(delay)).await;
    }
    let header = |n: &str| {
        request
            .headers()
            .get(n)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned()
    };
    let seen = serde_json::json!({
        "backend": name,
        "path": request.uri().path(),
        "xForwardedFor": header("x-forwarded-for"),
        "forwarded": header("forwarded"),
        "xForwardedProto": header("x-forwarded-proto"),
        "requestId": header("x-request-id"),
        "host": header("host"),
        "connection": header("connection"),
    });
    let status = request
        .uri()
        .query()
        .and_then(|q| q.strip_prefix("status="))
        .and_then(|s| s.parse().ok())
        .unwrap_or(200);
    let length = request
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes().len())
        .unwrap_or(0);
    let mut seen = seen;
    seen["bodyLength"] = length.into();
    let mut response = Response::new(Full::new(Bytes::from(seen.to_string())));
    *response.status_mut() = http::StatusCode::from_u16(status).unwrap();
    response
}

/// A running gateway in front of some backends.
pub struct TestGateway {
    /// Client-facing address.
    pub address: SocketAddr,
    /// Admin address.
    pub admin: SocketAddr,
    /// Live backend state (the first route).
    pub pool: Arc<basis_gateway::backend::Pool>,
    /// Reloads and routes.
    pub control: Arc<basis_gateway::server::Control>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl TestGateway {
    /// Starts a gateway on port 0 with `config`'s settings (listen addresses are replaced).
    pub async fn start(mut config: Config) -> Self {
        config.listen = "127.0.0.1:0".parse().unwrap();
        config.admin_listen = Some("127.0.0.1:0".parse().unwrap());
        let gateway = Gateway::bind(config).await.unwrap();
        let (address, admin, pool) = (
            gateway.local_addr(),
            gateway.admin_addr().unwrap(),
            gateway.pool(),
        );
        let control = gateway.control();
        let (stop, stopped) = tokio::sync::oneshot::channel();
        let task = tokio::spawn(gateway.run(async move {
            let _ = stopped.await;
        }));
        Self {
            address,
            admin,
            pool,
            control,
            stop: Some(stop),
            task,
        }
    }

    /// The URL of `path` through the gateway.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.address)
    }

    /// The status document.
    pub async fn status(&self) -> serde_json::Value {
        reqwest::get(format!("http://{}/gateway/status", self.admin))
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    /// Stops accepting and waits for the drain.
    pub async fn shutdown(mut self) -> anyhow::Result<()> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        (&mut self.task).await.unwrap()
    }
}

/// Defaults with these backends, fast health checks and no client-side limits changed.
pub fn config(backends: Vec<BackendSpec>) -> Config {
    let mut config = Config::with_backends("127.0.0.1:0".parse().unwrap(), backends);
    config.health_interval_ms = 50;
    config.health_timeout_ms = 200;
    config.rise = 1;
    config.fall = 1;
    config
}
