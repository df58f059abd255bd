//! Active health checks: every interval each backend gets an HTTP `GET` of the health path
//! (or a bare TCP connect); `rise` passes in a row bring it in, `fall` failures take it out.
//! A backend answering 503 is draining (Basis's `/readyz` says so during shutdown): it gets no
//! new requests from that check on, and finishes those it has.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::{Either, Full};

use crate::backend::Pool;
use crate::upstream::{Target, Upstream};

/// How backends are checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum HealthMode {
    /// `GET` the health path; 2xx and 3xx pass, 503 drains, anything else fails.
    Http,
    /// A TCP connection that opens passes.
    Tcp,
    /// No active checks (passive ejection still applies).
    Off,
}

/// One check's result.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Check {
    /// The backend answered as healthy.
    Pass,
    /// No answer, an error, or a status other than 503.
    Fail,
    /// The backend says it is shutting down or not ready (503).
    Draining,
}

/// A backend's active-check state: up until `fall` failures, down until `rise` passes.
#[derive(Debug, Clone, Default)]
pub struct HealthState {
    down: bool,
    draining: bool,
    /// Consecutive results pointing away from the current state.
    streak: u32,
}

impl HealthState {
    /// Passing checks (or no checks yet).
    pub fn is_up(&self) -> bool {
        !self.down
    }

    /// The backend said it is draining.
    pub fn is_draining(&self) -> bool {
        self.draining
    }

    /// `up`, `down` or `draining`.
    pub fn label(&self) -> &'static str {
        match (self.draining, self.down) {
            (true, _) => "draining",
            (false, true) => "down",
            (false, false) => "up",
        }
    }

    /// Applies one check; true when the state changed.
    pub fn record(&mut self, check: Check, rise: u32, fall: u32) -> bool {
        let before = (self.down, self.draining);
        match check {
            // The backend asked for no traffic: honour it at once, no `fall` count.
            Check::Draining => {
                self.down = true;
                self.draining = true;
                self.streak = 0;
            }
            Check::Pass if self.down => {
                self.streak += 1;
                if self.streak >= rise.max(1) {
                    (self.down, self.draining, self.streak) = (false, false, 0);
                }
            }
            Check::Fail if !self.down => {
                self.streak += 1;
                if self.streak >= fall.max(1) {
                    (self.down, self.streak) = (true, 0);
                }
            }
            Check::Fail => {
                // Down already; a draining backend that stopped answering is simply down.
                self.draining = false;
                self.streak = 0;
            }
            Check::Pass => self.streak = 0,
        }
        before != (self.down, self.draining)
    }
}

/// What the checker needs.
#[derive(Debug, Clone)]
pub struct CheckSettings {
    /// HTTP, TCP or off.
    pub mode: HealthMode,
    /// The path for HTTP checks.
    pub path: String,
    /// Time between checks of one backend.
    pub interval: Duration,
    /// Time allowed for one check.
    pub timeout: Duration,
}

/// Checks every backend of `pool` forever (the caller aborts the task to stop).
pub async fn run(pool: Arc<Pool>, client: Upstream, settings: CheckSettings) {
    if settings.mode == HealthMode::Off {
        return std::future::pending().await;
    }
    let mut ticker = tokio::time::interval(settings.interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        let checks = (0..pool.backends.len()).map(|id| {
            let (pool, client, settings) = (pool.clone(), client.clone(), settings.clone());
            async move {
                let check = check_once(&pool, id, &client, &settings).await;
                pool.record_check(id, check);
            }
        });
        futures_join_all(checks).await;
    }
}

async fn futures_join_all<F: std::future::Future<Output = ()> + Send + 'static>(
    futures: impl Iterator<Item = F>,
) {
    let mut set = tokio::task::JoinSet::new();
    for future in futures {
        set.spawn(future);
    }
    while set.join_next().await.is_some() {}
}

async fn check_once(pool: &Pool, id: usize, client: &Upstream, settings: &CheckSettings) -> Check {
    let backend = &pool.backends[id];
    let attempt = async {
        match settings.mode {
            HealthMode::Tcp => {
                match tokio::net::TcpStream::connect(backend.authority.as_str()).await {
                    Ok(_) => Check::Pass,
                    Err(_) => Check::Fail,
                }
            }
            _ => {
                let uri = if client.is_http2() {
                    let scheme = if backend.tls { "https" } else { "http" };
                    format!("{scheme}://{}{}", backend.authority, settings.path)
                } else {
                    settings.path.clone()
                };
                let Ok(request) = Request::get(uri)
                    .header(http::header::HOST, backend.authority.as_str())
                    .header(http::header::USER_AGENT, "basis-gateway-health")
                    .body(Either::Right(Full::new(Bytes::new())))
                else {
                    return Check::Fail;
                };
                let target = Target {
                    key: backend.key,
                    authority: &backend.authority,
                    tls: backend.tls,
                };
                // The answer's body is not read, so its connection closes instead of
                // returning to the idle list: a check never leaves a half-read connection.
                match client.send(target, request).await {
                    Ok((response, _)) => classify(response.status()),
                    Err(_) => Check::Fail,
                }
            }
        }
    };
    tokio::time::timeout(settings.timeout, attempt)
        .await
        .unwrap_or(Check::Fail)
}

/// A health answer's meaning.
pub fn classify(status: StatusCode) -> Check {
    if status == StatusCode::SERVICE_UNAVAILABLE {
        Check::Draining
    } else if status.is_success() || status.is_redirection() {
        Check::Pass
    } else {
        Check::Fail
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_backend_goes_down_after_fall_failures_and_back_after_rise_passes() {
        let mut h = HealthState::default();
        assert!(!h.record(Check::Fail, 2, 3));
        assert!(!h.record(Check::Fail, 2, 3));
        assert!(h.is_up());
        assert!(h.record(Check::Fail, 2, 3));
        assert!(!h.is_up());
        assert!(!h.record(Check::Pass, 2, 3));
        assert!(h.record(Check::Pass, 2, 3));
        assert!(h.is_up());
    }

    #[test]
    fn a_pass_between_failures_restarts_the_fall_count() {
        let mut h = HealthState::default();
        h.record(Check::Fail, 2, 2);
        h.record(Check::Pass, 2, 2);
        h.record(Check::Fail, 2, 2);
        assert!(h.is_up());
    }

    #[test]
    fn a_503_drains_at_once_and_rise_passes_bring_the_backend_back() {
        let mut h = HealthState::default();
        assert!(h.record(Check::Draining, 2, 3));
        assert_eq!(h.label(), "draining");
        h.record(Check::Pass, 2, 3);
        assert_eq!(h.label(), "draining");
        h.record(Check::Pass, 2, 3);
        assert_eq!(h.label(), "up");
    }

    #[test]
    fn statuses_are_classified_as_operators_expect() {
        assert_eq!(classify(StatusCode::OK), Check::Pass);
        assert_eq!(classify(StatusCode::MOVED_PERMANENTLY), Check::Pass);
        assert_eq!(classify(StatusCode::SERVICE_UNAVAILABLE), Check::Draining);
        assert_eq!(classify(StatusCode::INTERNAL_SERVER_ERROR), Check::Fail);
        assert_eq!(classify(StatusCode::NOT_FOUND), Check::Fail);
    }
}
