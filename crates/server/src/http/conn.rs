//! Connections: the accept loop and what protects it from hostile or broken clients.
//!
//! - a cap on open connections: past it the loop stops accepting, and new connections
//!   wait in the kernel's backlog (as HAProxy's `maxconn`);
//! - a deadline for a request's head (which is also the keep-alive idle time) and limits
//!   on its size and header count, so a slowloris client is cut off (408-less close, as
//!   nginx's `client_header_timeout`) and an oversized head gets 431;
//! - requests framed by both `Content-Length` and `Transfer-Encoding` refused with 400
//!   ([`super::framing`]);
//! - lingering close: when the server closes a connection the client may still be sending
//!   on (an early 413 on a body it never read), the socket is not closed at once, which
//!   would reset the connection and destroy the answer before the client reads it.
//!   The write side is shut, and what arrives is read and thrown away until the client
//!   closes or a bound in bytes or time is reached (nginx's `lingering_close`).

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use axum::http::{HeaderValue, Request, StatusCode, header};
use axum::response::{IntoResponse, Response};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_rustls::server::TlsStream;

use super::framing::Framing;
use super::transport::Tls;
use crate::error::Problem;

/// How long a client may take to finish the TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Connection limits and timeouts.
#[derive(Debug, Clone, clap::Args)]
pub struct ConnConfig {
    /// Most connections open at once; more wait in the listen backlog.
    #[arg(long, env = "BASIS_MAX_CONNECTIONS", default_value_t = ConnConfig::default().max_connections)]
    pub max_connections: usize,

    /// Longest time a client may take to send a request's head (also how long an idle
    /// keep-alive connection stays open), in milliseconds.
    #[arg(long, env = "BASIS_HEADER_TIMEOUT_MS", default_value_t = ConnConfig::default().header_timeout_ms)]
    pub header_timeout_ms: u64,

    /// Largest request head (request line and headers), in bytes (at least 8192);
    /// larger gets 431.
    #[arg(long, env = "BASIS_MAX_HEADER_BYTES", default_value_t = ConnConfig::default().max_header_bytes)]
    pub max_header_bytes: usize,

    /// Most header lines in a request; more gets 431.
    #[arg(long, env = "BASIS_MAX_HEADERS", default_value_t = ConnConfig::default().max_headers)]
    pub max_headers: usize,

    /// Most bytes read and discarded from a client after the server decided to close.
    #[arg(long, env = "BASIS_LINGER_BYTES", default_value_t = ConnConfig::default().linger_bytes)]
    pub linger_bytes: u64,

    /// Longest time spent discarding a closing client's bytes, in milliseconds.
    #[arg(long, env = "BASIS_LINGER_MS", default_value_t = ConnConfig::default().linger_ms)]
    pub linger_ms: u64,

    /// Most requests handled at once; past it requests are shed with 503 and
    /// `Retry-After` (0: no limit).
    #[arg(long, env = "BASIS_MAX_IN_FLIGHT", default_value_t = ConnConfig::default().max_in_flight)]
    pub max_in_flight: usize,
}

impl Default for ConnConfig {
    fn default() -> Self {
        Self {
            max_connections: 8192,
            header_timeout_ms: 30_000,
            max_header_bytes: 16 * 1024,
            max_headers: 64,
            linger_bytes: 8 * 1024 * 1024,
            linger_ms: 5_000,
            max_in_flight: 1024,
        }
    }
}

impl ConnConfig {
    fn header_timeout(&self) -> Duration {
        Duration::from_millis(self.header_timeout_ms.max(1))
    }

    fn linger(&self) -> Linger {
        Linger {
            bytes: self.linger_bytes,
            time: Duration::from_millis(self.linger_ms),
        }
    }

    fn builder(&self) -> auto::Builder<TokioExecutor> {
        let mut builder = auto::Builder::new(TokioExecutor::new());
        builder
            .http1()
            .timer(TokioTimer::new())
            .header_read_timeout(self.header_timeout())
            // The read buffer bounds the head: a head that fills it gets 431. (Bodies
            // stream through it in pieces, so it does not bound them.) hyper's buffer
            // cannot be smaller than 8 KiB.
            .max_buf_size(self.max_header_bytes.max(8192))
            .max_headers(self.max_headers);
        builder
            .http2()
            .timer(TokioTimer::new())
            .max_header_list_size(u32::try_from(self.max_header_bytes).unwrap_or(u32::MAX))
            .enable_connect_protocol();
        builder
    }
}

/// How a closing connection lingers.
#[derive(Debug, Clone, Copy)]
struct Linger {
    bytes: u64,
    time: Duration,
}

/// Serves `router` on `listener` (over TLS when `tls` is set) until `signal` resolves, then
/// waits for open connections to finish.
pub async fn serve(
    listener: TcpListener,
    tls: Option<Tls>,
    router: Router,
    signal: impl Future<Output = ()> + Send + 'static,
    config: ConnConfig,
) -> io::Result<()> {
    let builder = Arc::new(config.builder());
    let permits = Arc::new(Semaphore::new(config.max_connections.max(1)));
    let graceful = GracefulShutdown::new();
    let open = metrics::gauge!("basis_http_open_connections");
    let mut signal = std::pin::pin!(signal);
    loop {
        let permit = tokio::select! {
            permit = permits.clone().acquire_owned() => permit.expect("the semaphore is never closed"),
            () = &mut signal => break,
        };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(err) => {
                    // Out of file descriptors, usually: let some connections close.
                    tracing::warn!(error = %err, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut signal => break,
        };
        let _ = stream.set_nodelay(true);
        let (builder, router, tls, open) =
            (builder.clone(), router.clone(), tls.clone(), open.clone());
        let watcher = graceful.watcher();
        let (linger, max_head) = (config.linger(), config.max_header_bytes);
        tokio::spawn(async move {
            let _permit = permit;
            open.increment(1.0);
            let conflict = Arc::new(Requests::default());
            let service = ConnService {
                router,
                peer,
                requests: conflict.clone(),
            };
            match tls {
                None => {
                    let io = Guarded::new(stream, linger, max_head, conflict);
                    let conn = builder.serve_connection_with_upgrades(TokioIo::new(io), service);
                    let _ = watcher.watch(conn).await;
                }
                Some(Tls(acceptor)) => {
                    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                        Ok(Ok(stream)) => {
                            let io = Guarded::new(stream, linger, max_head, conflict);
                            let conn =
                                builder.serve_connection_with_upgrades(TokioIo::new(io), service);
                            let _ = watcher.watch(conn).await;
                        }
                        Ok(Err(err)) => {
                            tracing::debug!(%peer, error = %err, "TLS handshake failed")
                        }
                        Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                    }
                }
            }
            open.decrement(1.0);
        });
    }
    drop(listener);
    graceful.shutdown().await;
    Ok(())
}

/// The service of one connection: the router, told who the peer is.
#[derive(Clone)]
struct ConnService {
    router: Router,
    peer: SocketAddr,
    requests: Arc<Requests>,
}

/// The requests of one connection, as the reader and the service see them.
#[derive(Debug, Default)]
struct Requests {
    /// Requests handed to the service so far (HTTP/1.1 hands them over one by one).
    served: AtomicUsize,
    /// The number (from 1) of the request whose framing conflicts, set by the
    /// connection's [`Guarded`] reader; 0 for none.
    conflict_at: AtomicUsize,
}

impl hyper::service::Service<Request<Incoming>> for ConnService {
    type Response = Response;
    type Error = Infallible;
    type Future = futures_util::future::Either<
        std::future::Ready<Result<Response, Infallible>>,
        axum::routing::future::RouteFuture<Infallible>,
    >;

    fn call(&self, mut request: Request<Incoming>) -> Self::Future {
        use futures_util::future::Either;
        // A head is read (and walked) before hyper parses it, so the mark is there by the
        // time its request arrives; hyper closes the connection after the answer.
        let number = self.requests.served.fetch_add(1, Ordering::Relaxed) + 1;
        if self.requests.conflict_at.load(Ordering::Relaxed) == number {
            return Either::Left(std::future::ready(Ok(conflicting_framing())));
        }
        request.extensions_mut().insert(ConnectInfo(self.peer));
        Either::Right(tower::Service::call(&mut self.router.clone(), request))
    }
}

fn conflicting_framing() -> Response {
    let mut response = Problem::new(StatusCode::BAD_REQUEST)
        .detail("a request may not carry both Content-Length and Transfer-Encoding")
        .into_response();
    response
        .headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    response
}

/// A stream that lingers when it is closed (see the module doc) and watches the
/// framing of what it reads.
struct Guarded<S: TcpBacked> {
    stream: Option<S>,
    linger: Linger,
    /// Whether the client has closed its side (then there is nothing to linger for).
    eof: bool,
    framing: Option<Framing>,
    requests: Arc<Requests>,
}

/// A stream over TCP that can give its socket back to linger on.
trait TcpBacked: AsyncRead + AsyncWrite + Unpin + Send + 'static {
    fn into_tcp(self) -> TcpStream;
}

impl TcpBacked for TcpStream {
    fn into_tcp(self) -> TcpStream {
        self
    }
}

impl TcpBacked for TlsStream<TcpStream> {
    fn into_tcp(self) -> TcpStream {
        self.into_inner().0
    }
}

impl<S: TcpBacked> Guarded<S> {
    fn new(stream: S, linger: Linger, max_head: usize, requests: Arc<Requests>) -> Self {
        Self {
            stream: Some(stream),
            linger,
            eof: false,
            framing: Some(Framing::new(max_head)),
            requests,
        }
    }

    fn stream(&mut self) -> Pin<&mut S> {
        Pin::new(
            self.stream
                .as_mut()
                .expect("the stream is taken only on drop"),
        )
    }
}

impl<S: TcpBacked> AsyncRead for Guarded<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let this = &mut *self;
        let polled = this.stream().poll_read(cx, buf);
        match &polled {
            Poll::Ready(Ok(())) if buf.filled().len() == before => this.eof = true,
            Poll::Ready(Ok(())) => {
                if let Some(framing) = &mut this.framing {
                    framing.feed(&buf.filled()[before..]);
                    if framing.done() {
                        if let Some(number) = framing.conflict() {
                            this.requests.conflict_at.store(number, Ordering::Relaxed);
                        }
                        this.framing = None;
                    }
                }
            }
            // A reset or broken connection: nothing to linger for.
            Poll::Ready(Err(_)) => this.eof = true,
            Poll::Pending => {}
        }
        polled
    }
}

impl<S: TcpBacked> AsyncWrite for Guarded<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.stream().poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.stream().poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.as_ref().is_some_and(|s| s.is_write_vectored())
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.stream().poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.stream().poll_shutdown(cx)
    }
}

impl<S: TcpBacked> Drop for Guarded<S> {
    fn drop(&mut self) {
        let Some(stream) = self.stream.take() else {
            return;
        };
        if self.eof || self.linger.bytes == 0 || self.linger.time.is_zero() {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let linger = self.linger;
        runtime.spawn(linger_on(stream.into_tcp(), linger));
    }
}

/// Shuts the write side, then reads and discards until the client closes or a bound is
/// reached; the socket is closed only then, so the client has read the answer.
async fn linger_on(mut stream: TcpStream, linger: Linger) {
    let _ = stream.shutdown().await;
    let discard = async {
        let mut buf = vec![0u8; 16 * 1024];
        let mut left = linger.bytes;
        while left > 0 {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => left = left.saturating_sub(n as u64),
            }
        }
    };
    let _ = tokio::time::timeout(linger.time, discard).await;
}
