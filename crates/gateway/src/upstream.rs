//! Connections to the backends: plain TCP or TLS (rustls), HTTP/1.1 kept alive, or one
//! multiplexed HTTP/2 connection per backend with `--upstream-http2`.
//!
//! Idle HTTP/1.1 connections live in a list per backend *per runtime thread* (a thread
//! local): a request takes a connection from its own thread's list and the response body,
//! once fully passed on, puts it back there. No lock is shared between threads on the request
//! path, and no task is spawned per request to watch for the connection becoming idle (what
//! hyper-util's general-purpose pool does). `bench/RESULTS.md` has the measured difference.
//!
//! A connection idle longer than the idle timeout is closed when its list is next used; the
//! lists are also capped, so a burst cannot leave thousands of sockets open.

use std::cell::RefCell;
use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasherDefault, Hasher};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use bytes::Bytes;
use http::uri::Authority;
use http::{Request, Response};
use http_body_util::{Either, Full};
use hyper::body::Incoming;
use hyper::client::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::rustls;
use tokio_rustls::rustls::pki_types::ServerName;

/// The body sent upstream: the client's stream, or a small body held in memory (replayable).
pub type UpstreamBody = Either<Incoming, Full<Bytes>>;

/// Idle HTTP/1.1 connections kept per backend and thread.
const MAX_IDLE: usize = 1024;

/// Where one request goes.
#[derive(Debug, Clone, Copy)]
pub struct Target<'a> {
    /// The backend's pool key (unique in the process, kept across reloads).
    pub key: u64,
    /// `host:port`.
    pub authority: &'a Authority,
    /// Speak TLS to it (`https://` backends).
    pub tls: bool,
}

/// Why no response came back.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    /// No connection (refused, timed out, TLS refused): the backend never saw the request.
    #[error("cannot connect: {0}")]
    Connect(String),
    /// The request was sent (or partly sent) and the exchange failed.
    #[error("the exchange failed: {0}")]
    Request(#[source] hyper::Error),
}

impl UpstreamError {
    /// The backend never saw the request, so sending it elsewhere is always safe.
    pub fn is_connect(&self) -> bool {
        matches!(self, Self::Connect(_))
    }
}

/// An HTTP/1.1 connection on loan to one exchange; [`Lease::release`] returns it to the
/// idle list once the response body has ended. Dropped instead, the connection closes.
pub struct Lease {
    key: u64,
    sender: http1::SendRequest<UpstreamBody>,
}

impl Lease {
    /// Puts the connection back in this thread's idle list.
    pub fn release(self) {
        IDLE.with(|idle| {
            let mut idle = idle.borrow_mut();
            let list = idle.entry(self.key).or_default();
            if list.len() < MAX_IDLE {
                list.push_back((self.sender, Instant::now()));
            }
        });
    }
}

type IdleList = VecDeque<(http1::SendRequest<UpstreamBody>, Instant)>;

thread_local! {
    /// Idle HTTP/1.1 connections of this thread, by backend key; most recently used last.
    static IDLE: RefCell<HashMap<u64, IdleList, BuildHasherDefault<KeyHasher>>> =
        RefCell::new(HashMap::default());
}

/// Backend keys are small distinct integers handed out by the gateway, not client input:
/// one multiplication spreads them (SipHash showed in the profile of the pool this replaces).
#[derive(Default)]
struct KeyHasher(u64);

impl Hasher for KeyHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }

    fn write_u64(&mut self, key: u64) {
        self.0 = key.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }
}

/// Upstream settings.
#[derive(Debug, Clone)]
pub struct UpstreamSettings {
    /// Time to open a connection, TLS handshake included.
    pub connect_timeout: Duration,
    /// An idle connection older than this is closed instead of reused.
    pub idle_timeout: Duration,
    /// HTTP/2 with prior knowledge (h2 by ALPN over TLS) instead of HTTP/1.1.
    pub http2: bool,
}

/// The client side of the gateway; cheap to clone.
#[derive(Clone)]
pub struct Upstream {
    shared: Arc<Shared>,
}

struct Shared {
    settings: UpstreamSettings,
    tls: TlsConnector,
    /// HTTP/2 mode: the one connection per backend.
    h2: Mutex<HashMap<u64, http2::SendRequest<UpstreamBody>>>,
}

impl Upstream {
    /// A client trusting the PEM certificates of `ca_file` for `https://` backends, or the
    /// webpki roots (Mozilla's list) when none is given.
    pub fn new(settings: UpstreamSettings, ca_file: Option<&Path>) -> anyhow::Result<Self> {
        let mut roots = rustls::RootCertStore::empty();
        match ca_file {
            Some(path) => {
                let file = std::fs::File::open(path)
                    .with_context(|| format!("cannot read {}", path.display()))?;
                let certs = rustls_pemfile::certs(&mut std::io::BufReader::new(file))
                    .collect::<Result<Vec<_>, _>>()
                    .with_context(|| format!("{} is not valid PEM", path.display()))?;
                let (added, _) = roots.add_parsable_certificates(certs);
                anyhow::ensure!(added > 0, "no usable CA certificate in {}", path.display());
            }
            None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
            .with_root_certificates(roots)
            .with_no_client_auth();
        config.alpn_protocols = vec![if settings.http2 {
            b"h2".to_vec()
        } else {
            b"http/1.1".to_vec()
        }];
        Ok(Self {
            shared: Arc::new(Shared {
                settings,
                tls: TlsConnector::from(Arc::new(config)),
                h2: Mutex::new(HashMap::new()),
            }),
        })
    }

    /// Whether backends are spoken to in HTTP/2.
    pub fn is_http2(&self) -> bool {
        self.shared.settings.http2
    }

    /// Sends `request` (origin-form URI for HTTP/1.1, absolute for HTTP/2) to `target`. The
    /// lease, for HTTP/1.1, must be released when the response body has ended.
    pub async fn send(
        &self,
        target: Target<'_>,
        request: Request<UpstreamBody>,
    ) -> Result<(Response<Incoming>, Option<Lease>), UpstreamError> {
        // The connect, TLS handshake and HTTP/2 paths are boxed: their futures hold a TLS
        // session (several kilobytes), and inline they made every request's future that large,
        // copied whole each time it moves (callgrind showed the copies as 13 % `memcpy`).
        if self.shared.settings.http2 {
            return Box::pin(self.send_h2(target, request))
                .await
                .map(|r| (r, None));
        }
        let mut request = request;
        loop {
            let (mut sender, reused) = match self.idle(target.key) {
                Some(sender) => (sender, true),
                None => (Box::pin(self.connect_h1(target)).await?, false),
            };
            // A returned connection may still be finishing its last exchange.
            if !sender.is_ready() && sender.ready().await.is_err() {
                continue;
            }
            match sender.try_send_request(request).await {
                Ok(response) => {
                    let lease = Lease {
                        key: target.key,
                        sender,
                    };
                    return Ok((response, Some(lease)));
                }
                Err(mut err) => match err.take_message() {
                    // A kept-alive connection the backend had closed: nothing was sent.
                    Some(unsent) if reused => request = unsent,
                    Some(_) => return Err(UpstreamError::Connect(err.into_error().to_string())),
                    None => return Err(UpstreamError::Request(err.into_error())),
                },
            }
        }
    }

    /// The most recently used live connection of this thread's list for `key`.
    fn idle(&self, key: u64) -> Option<http1::SendRequest<UpstreamBody>> {
        let timeout = self.shared.settings.idle_timeout;
        IDLE.with(|idle| {
            let mut idle = idle.borrow_mut();
            let list = idle.get_mut(&key)?;
            let now = Instant::now();
            while list
                .front()
                .is_some_and(|(_, since)| now.saturating_duration_since(*since) > timeout)
            {
                list.pop_front();
            }
            while let Some((sender, _)) = list.pop_back() {
                if !sender.is_closed() {
                    return Some(sender);
                }
            }
            None
        })
    }

    async fn connect_h1(
        &self,
        target: Target<'_>,
    ) -> Result<http1::SendRequest<UpstreamBody>, UpstreamError> {
        let stream = self.connect_tcp(target).await?;
        if !target.tls {
            return handshake_h1(TokioIo::new(stream)).await;
        }
        let stream = self.connect_tls(target, stream).await?;
        handshake_h1(TokioIo::new(stream)).await
    }

    async fn send_h2(
        &self,
        target: Target<'_>,
        request: Request<UpstreamBody>,
    ) -> Result<Response<Incoming>, UpstreamError> {
        let existing = self
            .lock_h2()
            .get(&target.key)
            .filter(|s| !s.is_closed())
            .cloned();
        let mut sender = match existing {
            Some(sender) => sender,
            None => {
                let stream = self.connect_tcp(target).await?;
                let sender = if target.tls {
                    let stream = self.connect_tls(target, stream).await?;
                    handshake_h2(TokioIo::new(stream)).await?
                } else {
                    handshake_h2(TokioIo::new(stream)).await?
                };
                self.lock_h2().insert(target.key, sender.clone());
                sender
            }
        };
        sender.ready().await.map_err(UpstreamError::Request)?;
        sender
            .send_request(request)
            .await
            .map_err(UpstreamError::Request)
    }

    fn lock_h2(&self) -> std::sync::MutexGuard<'_, HashMap<u64, http2::SendRequest<UpstreamBody>>> {
        // Only senders live under the lock; a panicked holder leaves them usable.
        self.shared.h2.lock().unwrap_or_else(|e| e.into_inner())
    }

    async fn connect_tcp(&self, target: Target<'_>) -> Result<TcpStream, UpstreamError> {
        let timeout = self.shared.settings.connect_timeout;
        let stream = tokio::time::timeout(timeout, TcpStream::connect(target.authority.as_str()))
            .await
            .map_err(|_| UpstreamError::Connect("connect timed out".into()))?
            .map_err(|e| UpstreamError::Connect(e.to_string()))?;
        let _ = stream.set_nodelay(true);
        Ok(stream)
    }

    async fn connect_tls(
        &self,
        target: Target<'_>,
        stream: TcpStream,
    ) -> Result<tokio_rustls::client::TlsStream<TcpStream>, UpstreamError> {
        let host = target.authority.host();
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let name = ServerName::try_from(host.to_owned())
            .map_err(|_| UpstreamError::Connect(format!("`{host}` is not a TLS server name")))?;
        let timeout = self.shared.settings.connect_timeout;
        tokio::time::timeout(timeout, self.shared.tls.connect(name, stream))
            .await
            .map_err(|_| UpstreamError::Connect("TLS handshake timed out".into()))?
            .map_err(|e| UpstreamError::Connect(format!("TLS handshake failed: {e}")))
    }
}

async fn handshake_h1<T>(io: TokioIo<T>) -> Result<http1::SendRequest<UpstreamBody>, UpstreamError>
where
    T: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    let (sender, connection) = http1::Builder::new()
        .handshake(io)
        .await
        .map_err(|e| UpstreamError::Connect(e.to_string()))?;
    // Upgrades (WebSocket) take the connection over after a 101.
    tokio::spawn(async move {
        if let Err(err) = connection.with_upgrades().await {
            tracing::debug!(error = %err, "upstream connection ended with an error");
        }
    });
    Ok(sender)
}

async fn handshake_h2<T>(io: TokioIo<T>) -> Result<http2::SendRequest<UpstreamBody>, UpstreamError>
where
    T: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    let (sender, connection) = http2::Builder::new(TokioExecutor::new())
        .timer(TokioTimer::new())
        .handshake(io)
        .await
        .map_err(|e| UpstreamError::Connect(e.to_string()))?;
    tokio::spawn(async move {
        if let Err(err) = connection.await {
            tracing::debug!(error = %err, "upstream HTTP/2 connection ended with an error");
        }
    });
    Ok(sender)
}
