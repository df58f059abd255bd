//! L4 mode (`--mode tcp`): each client connection is paired with one backend connection and
//! bytes are copied both ways untouched, so PostgreSQL replicas or Redis can sit behind the
//! gateway. Selection, TCP health checks, ejection and the panic threshold are the HTTP mode's;
//! "in flight" counts open connections, latency is the connect time, and a refused connect is
//! retried on another backend (nothing was sent yet, so that is always safe).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;

use crate::backend::Pool;
use crate::balance::stable_hash;
use crate::outlier::Outcome;
use crate::proxy::{InFlight, Proxy};

/// Per-connection settings.
#[derive(Debug, Clone, Copy)]
pub struct TcpSettings {
    /// Time to open a backend connection.
    pub connect_timeout: Duration,
    /// Further backends tried after a failed connect.
    pub retries: u32,
    /// Time open connections get after shutdown before they are closed.
    pub drain: Duration,
}

/// Accepts until `shutdown`, then waits up to the drain time for open connections.
pub async fn serve(
    listener: TcpListener,
    proxy: Arc<Proxy>,
    settings: TcpSettings,
    shutdown: impl std::future::Future<Output = ()>,
) {
    let mut connections = JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        // Reap finished connections so the set holds only open ones.
        while connections.try_join_next().is_some() {}
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(err) => {
                    tracing::warn!(error = %err, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        // L4 has no host or path: the first route's backends take every connection.
        let pool = proxy.routes().routes[0].pool.clone();
        connections.spawn(relay(stream, peer, pool, settings));
    }
    drop(listener);
    let drained = tokio::time::timeout(settings.drain, async {
        while connections.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::warn!(
            open = connections.len(),
            "drain time over; closing the remaining connections"
        );
    }
}

/// Connects `client` to a backend and copies bytes until either side closes.
async fn relay(mut client: TcpStream, peer: SocketAddr, pool: Arc<Pool>, settings: TcpSettings) {
    let _ = client.set_nodelay(true);
    let key = if pool.balancer.algorithm().needs_key() {
        match peer.ip() {
            std::net::IpAddr::V4(v4) => stable_hash(&v4.octets()),
            std::net::IpAddr::V6(v6) => stable_hash(&v6.octets()),
        }
    } else {
        0
    };
    let mut tried = Vec::with_capacity(1);
    loop {
        let candidates = pool.candidates(Instant::now(), &tried);
        let Some(id) = pool.balancer.pick(&candidates, key, &mut rand::rng()) else {
            tracing::warn!(%peer, "no backend for a TCP connection; closing it");
            return;
        };
        tried.push(id);
        let guard = InFlight::enter(pool.clone(), id);
        let started = Instant::now();
        let address = pool.backends[id].authority.as_str();
        match tokio::time::timeout(settings.connect_timeout, TcpStream::connect(address)).await {
            Ok(Ok(mut upstream)) => {
                let now = Instant::now();
                pool.record(id, Outcome::Success, Some(now - started), now);
                let _ = upstream.set_nodelay(true);
                let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
                drop(guard);
                return;
            }
            _ => {
                pool.record(id, Outcome::Failure, None, Instant::now());
                if tried.len() > settings.retries as usize {
                    return;
                }
            }
        }
    }
}
