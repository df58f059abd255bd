//! Serving connections: one acceptor deals accepted connections round-robin to a fixed set
//! of serving threads, each running its own single-threaded event loop, the way nginx runs
//! one worker process per core.
//!
//! Why not one multi-threaded runtime for everything: its workers share one queue of ready
//! tasks and steal from each other, so a burst of readiness events on one thread wakes a
//! parked worker on another (a futex call and a context switch) to take half of it. On a
//! redirect, which is a few microseconds of work, that hand-off costs as much as the work.
//! Here a connection lives on one thread from accept to close: its requests never cross
//! threads, and a thread with nothing to do sleeps in its own `epoll_wait`.
//!
//! What this gives up is stealing: a thread whose connections are busy cannot hand work to
//! an idle one. Connections are dealt round-robin, so each thread gets an equal share, and
//! the slow work a request can trigger (password hashing, image decoding) already runs on
//! blocking pools, off the event loop.
//!
//! A resource first opened from a serving thread (a pooled database connection made on
//! demand, say) is driven by that thread's event loop, so the threads keep their loops
//! running after they stop serving, until the [`Serving`] handle is dropped: the server
//! drops it last, once it has written the last clicks and closed its pools.

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::num::NonZeroUsize;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use axum::serve::IncomingStream;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot, watch};
use tower::Service;
use tower_http::add_extension::AddExtension;

use crate::transport::{Tls, TlsListener};

/// A connection handed to a serving thread, still registered with nobody's event loop.
type Connection = (std::net::TcpStream, SocketAddr);

/// The serving threads of a server. Dropping it ends their event loops (and closes the
/// connections still open on them).
pub struct Serving {
    /// Resolves when every thread has stopped serving: after `signal`, once its open
    /// connections have finished their requests.
    pub finished: Pin<Box<dyn Future<Output = io::Result<()>> + Send>>,
    /// Dropped to let the threads end.
    _release: watch::Sender<()>,
}

impl std::fmt::Debug for Serving {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Serving")
    }
}

/// The number of serving threads when none is configured: one per CPU.
pub fn default_threads() -> NonZeroUsize {
    std::thread::available_parallelism().unwrap_or(NonZeroUsize::MIN)
}

/// Accepts on `listener` (on the calling runtime) and serves `router` on `threads` threads,
/// over TLS when `tls` is set, until `signal` resolves; then stops accepting and lets open
/// connections finish.
pub fn serve(
    listener: TcpListener,
    tls: Option<Tls>,
    router: Router,
    threads: NonZeroUsize,
    signal: impl Future<Output = ()> + Send + 'static,
) -> io::Result<Serving> {
    let local = listener.local_addr()?;
    let (stopping_tx, stopping) = watch::channel(false);
    let (release, released) = watch::channel(());
    let mut dealers = Vec::with_capacity(threads.get());
    let mut done = Vec::with_capacity(threads.get());
    for index in 0..threads.get() {
        let (dealer, dealt) = mpsc::unbounded_channel();
        let (finished, finished_rx) = oneshot::channel();
        let thread = ServingThread {
            dealt: Dealt { dealt, local },
            tls: tls.clone(),
            router: router.clone(),
            stopping: stopping.clone(),
            released: released.clone(),
        };
        std::thread::Builder::new()
            .name(format!("basis-http-{index}"))
            .spawn(move || thread.run(finished))?;
        dealers.push(dealer);
        done.push(finished_rx);
    }

    let finished = async move {
        accept(listener, &dealers, signal).await;
        let _ = stopping_tx.send(true);
        drop(dealers);
        let mut result = Ok(());
        for thread in done {
            match thread.await {
                Ok(Ok(())) => {}
                Ok(Err(err)) => result = Err(err),
                Err(_) => result = Err(io::Error::other("a serving thread ended unexpectedly")),
            }
        }
        result
    };
    Ok(Serving {
        finished: Box::pin(finished),
        _release: release,
    })
}

/// Deals connections from `listener` round-robin until `signal` resolves.
async fn accept(
    listener: TcpListener,
    dealers: &[mpsc::UnboundedSender<Connection>],
    signal: impl Future<Output = ()>,
) {
    let mut signal = std::pin::pin!(signal);
    let mut next = 0;
    loop {
        let accepted = tokio::select! {
            () = &mut signal => return,
            accepted = listener.accept() => accepted,
        };
        let connection = accepted.and_then(|(stream, peer)| Ok((stream.into_std()?, peer)));
        match connection {
            Ok(connection) => {
                // A thread that is gone has nothing to serve with; the connection closes.
                let _ = dealers[next].send(connection);
                next = (next + 1) % dealers.len();
            }
            Err(err) => {
                // Out of file descriptors and the like: back off instead of spinning.
                tracing::warn!(error = %err, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

/// What one serving thread needs.
struct ServingThread {
    dealt: Dealt,
    tls: Option<Tls>,
    router: Router,
    stopping: watch::Receiver<bool>,
    released: watch::Receiver<()>,
}

impl ServingThread {
    fn run(self, finished: oneshot::Sender<io::Result<()>>) {
        let runtime = match tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        {
            Ok(runtime) => runtime,
            Err(err) => {
                let _ = finished.send(Err(err));
                return;
            }
        };
        let Self {
            dealt,
            tls,
            router,
            mut stopping,
            mut released,
        } = self;
        runtime.block_on(async move {
            // Stop when told, or when the acceptor is gone without telling.
            let stop = async move {
                let _ = stopping.wait_for(|stop| *stop).await;
            };
            let served = match tls {
                None => {
                    axum::serve(dealt, PeerAware(router))
                        .with_graceful_shutdown(stop)
                        .await
                }
                Some(Tls(acceptor)) => {
                    axum::serve(TlsListener::new(dealt, acceptor), PeerAware(router))
                        .with_graceful_shutdown(stop)
                        .await
                }
            };
            let _ = finished.send(served);
            // Keep this loop running for what was opened on it, until the server is done.
            let _ = released.changed().await;
        });
    }
}

/// Makes the service of each connection: the router, with the peer's address as the
/// `ConnectInfo<SocketAddr>` that extractors (client IP, rate limits) read, over plain TCP
/// and TLS alike.
#[derive(Debug, Clone)]
struct PeerAware(Router);

impl<L> Service<IncomingStream<'_, L>> for PeerAware
where
    L: axum::serve::Listener<Addr = SocketAddr>,
{
    type Response = AddExtension<Router, ConnectInfo<SocketAddr>>;
    type Error = Infallible;
    type Future = std::future::Ready<Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, stream: IncomingStream<'_, L>) -> Self::Future {
        let peer = ConnectInfo(*stream.remote_addr());
        std::future::ready(Ok(AddExtension::new(self.0.clone(), peer)))
    }
}

/// The connections dealt to one serving thread, as a listener for `axum::serve`.
#[derive(Debug)]
pub struct Dealt {
    dealt: mpsc::UnboundedReceiver<Connection>,
    local: SocketAddr,
}

impl axum::serve::Listener for Dealt {
    type Io = TcpStream;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            let Some((stream, peer)) = self.dealt.recv().await else {
                // The acceptor stopped: nothing more will come.
                return std::future::pending().await;
            };
            // Registers the connection with this thread's event loop.
            match TcpStream::from_std(stream) {
                Ok(stream) => return (stream, peer),
                Err(err) => tracing::warn!(%peer, error = %err, "cannot serve a connection"),
            }
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        Ok(self.local)
    }
}
