//! Test support shared by the Basis crates (a dev-dependency only).
//!
//! - [`PrivateRedis`]: a `redis-server` of the test's own on a free port, for tests that stop
//!   and restart Redis without disturbing the shared instance other suites use.
//! - [`eventually`]: polls a real condition within a bound, instead of sleeping and hoping.
//! - [`free_port`]: a port nothing listens on right now.

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Polls `condition` every 10 ms until it holds or `limit` passes; returns whether it held.
pub async fn eventually<F, Fut>(limit: Duration, mut condition: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if condition().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    false
}

/// A local port that was free when asked (the listener is closed before returning).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|addr| addr.port())
        .expect("a free local port")
}

/// A private `redis-server` that keeps nothing on disk, killed when dropped.
#[derive(Debug)]
pub struct PrivateRedis {
    child: Option<Child>,
    port: u16,
}

impl PrivateRedis {
    /// Starts `redis-server` on `port` and waits (at most 10 s) until it answers `PING`.
    /// `None` when `redis-server` is not installed; a server that starts but never answers
    /// fails the test.
    pub async fn start(port: u16) -> Option<Self> {
        let child = Command::new("redis-server")
            .args([
                "--port",
                &port.to_string(),
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .ok()?;
        let server = Self {
            child: Some(child),
            port,
        };
        let up = eventually(Duration::from_secs(10), || server.answers()).await;
        assert!(up, "private redis-server on port {port} answers PING");
        Some(server)
    }

    /// The server's URL.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// The port it listens on (to start it again on the same one after [`Self::stop`]).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Whether the server answers `PING` within half a second.
    pub async fn answers(&self) -> bool {
        let Ok(client) = redis::Client::open(self.url()) else {
            return false;
        };
        let Ok(Ok(mut conn)) = tokio::time::timeout(
            Duration::from_millis(500),
            client.get_multiplexed_async_connection(),
        )
        .await
        else {
            return false;
        };
        redis::cmd("PING")
            .query_async::<String>(&mut conn)
            .await
            .is_ok()
    }

    /// Kills the server and waits for it to exit.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        self.stop();
    }
}
