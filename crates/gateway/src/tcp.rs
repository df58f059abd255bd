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

/// Accepts on every route's listener until `shutdown`, then waits up to the drain time for
/// the open connections. Each listener serves the route of its name in the routes in force
/// when a connection arrives, so a reload's new backends take the next connections.
pub async fn serve(
    listeners: Vec<(String, TcpListener)>,
    proxy: Arc<Proxy>,
    settings: TcpSettings,
    shutdown: impl std::future::Future<Output = ()>,
) {
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let loops: Vec<_> = listeners
        .into_iter()
        .map(|(route, listener)| {
            let accepting = accept(listener, route, proxy.clone(), settings, stopped.clone());
            tokio::spawn(accepting)
        })
        .collect();
    shutdown.await;
    let _ = stop.send(true);
    let mut open = Vec::with_capacity(loops.len());
    for accepting in loops {
        if let Ok(connections) = accepting.await {
            open.push(connections);
        }
    }
    let drained = tokio::time::timeout(settings.drain, async {
        for connections in &mut open {
            while connections.join_next().await.is_some() {}
        }
    })
    .await;
    if drained.is_err() {
        tracing::warn!(
            open = open.iter().map(JoinSet::len).sum::<usize>(),
            "drain time over; closing the remaining connections"
        );
    }
}

/// One listener's accept loop; returns its open connections when told to stop.
async fn accept(
    listener: TcpListener,
    route: String,
    proxy: Arc<Proxy>,
    settings: TcpSettings,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> JoinSet<()> {
    let mut connections = JoinSet::new();
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
            _ = stop.changed() => break,
        };
        let Some(pool) = proxy.routes().named(&route).map(|r| r.pool.clone()) else {
            tracing::warn!(%route, "the route of this listener is gone; closing the connection");
            continue;
        };
        connections.spawn(relay(stream, peer, pool, settings));
    }
    connections
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
        let guard = InFlight::enter(&pool.backends[id].live);
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
