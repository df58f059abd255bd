//! One request through the gateway: check it, choose a backend, rewrite the forwarding
//! headers, send it over the keep-alive pool, stream the answer back, and on failure retry on
//! another backend when that is safe and the retry budget allows.
//!
//! Bodies are never buffered: the client's body is handed to the upstream request as it
//! arrives, and the backend's body is handed back the same way. The price is that a request
//! with a body cannot be replayed, so only bodiless requests are retried (all of them after a
//! refused connection, since the backend never saw them; idempotent ones after any failure).

use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, RwLock};

use std::time::{Duration, Instant};

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Method, Request, Response, StatusCode, Version};
use http_body_util::{BodyExt as _, Either, Full, Limited};
use hyper::body::{Body, Incoming};

use crate::backend::Pool;
use crate::balance::stable_hash;
use crate::budget::RetryBudget;
use crate::config::HashKey;
use crate::forwarded::{self, Cidr, X_REQUEST_ID};
pub use crate::inflight::{InFlight, Tracked};
use crate::outlier::Outcome;
use crate::routes::{Route, Routes};
use crate::timer::ConnectionTimer;
use crate::upgrade;
pub use crate::upstream::{Target, Upstream, UpstreamBody};

/// The body sent to the client: a backend's stream, or the gateway's own answer.
pub type ClientBody = Either<Tracked, Full<Bytes>>;

/// Per-request settings of the proxy.
#[derive(Debug, Clone)]
pub struct ProxySettings {
    /// Peers whose forwarding headers are believed.
    pub trusted: Vec<Cidr>,
    /// Extra attempts after the first.
    pub retries: u32,
    /// From sending a request to the response headers.
    pub header_timeout: Duration,
    /// Bodies up to this size (with a Content-Length) are read before sending, so they can be
    /// retried.
    pub replay_body_bytes: u64,
    /// Clients arrive over TLS: `X-Forwarded-Proto: https` and HSTS on every answer.
    pub tls: bool,
}

/// The proxy: routes, upstream pool, retry budget.
pub struct Proxy {
    /// The routes in force; a reload swaps the whole set (requests keep the set they began with).
    routes: RwLock<Arc<Routes>>,
    client: Upstream,
    budget: Mutex<RetryBudget>,
    settings: ProxySettings,
}

/// Why an attempt produced no response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Failure {
    /// No connection: the backend never saw the request.
    Connect,
    /// The connection broke or the answer was not HTTP.
    Broken,
    /// No response headers within the header timeout.
    Timeout,
}

impl Proxy {
    /// A proxy over `routes` using `client`; retries limited to `budget_percent` of recent requests.
    pub fn new(
        routes: Routes,
        client: Upstream,
        settings: ProxySettings,
        budget_percent: u32,
    ) -> Self {
        let budget = RetryBudget::new(
            f64::from(budget_percent) / 100.0,
            10,
            Duration::from_secs(10),
        );
        Self {
            routes: RwLock::new(Arc::new(routes)),
            client,
            budget: Mutex::new(budget),
            settings,
        }
    }

    /// The routes in force.
    pub fn routes(&self) -> Arc<Routes> {
        self.routes
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Puts `routes` in force for the requests that start from now on.
    pub fn replace_routes(&self, routes: Routes) {
        *self.routes.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(routes);
    }

    /// Answers one client request from `peer`; `timer` is its connection's (see [`crate::timer`]).
    pub async fn handle(
        &self,
        request: Request<Incoming>,
        peer: SocketAddr,
        timer: &ConnectionTimer,
    ) -> Response<ClientBody> {
        let id = forwarded::request_id(request.headers());
        let mut response = self.forward(request, peer, &id, timer).await;
        response.headers_mut().entry(&X_REQUEST_ID).or_insert(id);
        if self.settings.tls {
            response
                .headers_mut()
                .insert(header::STRICT_TRANSPORT_SECURITY, crate::tls::HSTS);
        }
        response
    }

    async fn forward(
        &self,
        request: Request<Incoming>,
        peer: SocketAddr,
        id: &HeaderValue,
        timer: &ConnectionTimer,
    ) -> Response<ClientBody> {
        let mut request = request;
        let mut upgrade = upgrade::requested(request.headers())
            .map(|protocol| (protocol, hyper::upgrade::on(&mut request)));
        let (mut parts, body) = request.into_parts();
        if parts.method == Method::CONNECT {
            return problem(StatusCode::METHOD_NOT_ALLOWED, "CONNECT is not proxied");
        }
        // HTTP/2 clients send the host as the URI's authority; the backend speaks HTTP/1.1.
        if !parts.headers.contains_key(header::HOST) {
            match parts
                .uri
                .authority()
                .map(|a| HeaderValue::from_str(a.as_str()))
            {
                Some(Ok(host)) => {
                    parts.headers.insert(header::HOST, host);
                }
                _ if parts.version == Version::HTTP_10 => {}
                _ => return problem(StatusCode::BAD_REQUEST, "the request has no Host header"),
            }
        }
        // A cheap clone (shared bytes) that leaves `parts` free to be changed below.
        let Some(path) = parts.uri.path_and_query().cloned() else {
            return problem(StatusCode::BAD_REQUEST, "the request target has no path");
        };
        let path = path.as_str();
        if !path.starts_with('/') {
            return problem(StatusCode::BAD_REQUEST, "the request target must be a path");
        }
        let routes = self.routes();
        let host = parts
            .headers
            .get(header::HOST)
            .and_then(|h| h.to_str().ok());
        let Some(route) = routes.select(host, path) else {
            return problem(StatusCode::NOT_FOUND, "no route matches this host and path");
        };
        let pool = &route.pool;
        let client_ip = forwarded::client_ip(&parts.headers, peer.ip(), &self.settings.trusted);
        let key = hash_key(route, &parts.headers, path, client_ip);
        forwarded::strip_hop_by_hop(&mut parts.headers);
        if let Some((protocol, _)) = &upgrade {
            upgrade::restore(&mut parts.headers, protocol.clone());
        }
        let proto = if self.settings.tls { "https" } else { "http" };
        forwarded::set_forwarding(&mut parts.headers, peer.ip(), proto, &self.settings.trusted);
        parts.headers.insert(X_REQUEST_ID.clone(), id.clone());

        // Small bodies of known length are read first so that a refused connection can be
        // retried (what nginx's request buffering buys); larger ones stream.
        let declared = parts
            .headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        let (body, replayable) = if body.is_end_stream() {
            (None, Some(Bytes::new()))
        } else if declared.is_some_and(|n| n <= self.settings.replay_body_bytes) {
            let limit = self.settings.replay_body_bytes as usize;
            match Limited::new(body, limit).collect().await {
                Ok(collected) => (None, Some(collected.to_bytes())),
                Err(_) => {
                    return problem(
                        StatusCode::BAD_REQUEST,
                        "the request body could not be read",
                    );
                }
            }
        } else {
            (Some(body), None)
        };
        let idempotent = matches!(
            parts.method,
            Method::GET
                | Method::HEAD
                | Method::OPTIONS
                | Method::TRACE
                | Method::PUT
                | Method::DELETE
        );
        let mut body = body;
        self.lock_budget().request(Instant::now());
        let mut tried = Vec::with_capacity(1);
        let mut last_failure = None;
        loop {
            let now = Instant::now();
            let candidates = pool.candidates(now, &tried);
            let Some(chosen) = pool.balancer.pick(&candidates, key, &mut rand::rng()) else {
                break;
            };
            tried.push(chosen);
            let backend = &pool.backends[chosen];
            let upstream_body = match (&replayable, body.take()) {
                (Some(bytes), _) => Either::Right(Full::new(bytes.clone())),
                (None, Some(body)) => Either::Left(body),
                (None, None) => break,
            };
            let mut upstream = Request::new(upstream_body);
            *upstream.method_mut() = parts.method.clone();
            *upstream.uri_mut() =
                match self.upstream_uri(&parts.uri, &backend.authority, backend.tls) {
                    Some(uri) => uri,
                    None => {
                        return problem(StatusCode::BAD_REQUEST, "the request target is not valid");
                    }
                };
            // Keep a copy only when another attempt may need it.
            *upstream.headers_mut() =
                if replayable.is_some() && tried.len() <= self.settings.retries as usize {
                    parts.headers.clone()
                } else {
                    std::mem::take(&mut parts.headers)
                };

            let guard = InFlight::enter(&backend.live);
            let started = Instant::now();
            let target = Target {
                key: backend.key,
                authority: &backend.authority,
                tls: backend.tls,
            };
            let send = self.client.send(target, upstream);
            // HTTP/2 streams are tasks of their own; the connection's timer serves one task.
            let result = if parts.version == Version::HTTP_2 {
                tokio::time::timeout(self.settings.header_timeout, send)
                    .await
                    .map_err(|_| ())
            } else {
                timer
                    .timeout(self.settings.header_timeout, send)
                    .await
                    .map_err(|_| ())
            };
            let now = Instant::now();
            let failure = match result {
                Ok(Ok((response, lease))) => {
                    let outcome = if response.status().is_server_error() {
                        Outcome::Failure
                    } else {
                        Outcome::Success
                    };
                    pool.record(chosen, outcome, Some(now - started), now);
                    if response.status() == StatusCode::SWITCHING_PROTOCOLS
                        && let Some((_, client)) = upgrade.take()
                    {
                        return upgrade::splice(client, response, guard, lease);
                    }
                    return respond(response, lease, guard);
                }
                Ok(Err(err)) if err.is_connect() => Failure::Connect,
                Ok(Err(err)) => {
                    tracing::debug!(backend = %backend.name, error = %err, "upstream request failed");
                    Failure::Broken
                }
                Err(_) => Failure::Timeout,
            };
            // A hang counts as the latency it cost, so P2C avoids the backend too.
            let latency = (failure == Failure::Timeout).then(|| now - started);
            pool.record(chosen, Outcome::Failure, latency, now);
            drop(guard);
            last_failure = Some(failure);
            let safe = replayable.is_some() && (failure == Failure::Connect || idempotent);
            let attempts_left = tried.len() <= self.settings.retries as usize;
            if !(safe && attempts_left && self.lock_budget().try_retry(now)) {
                break;
            }
        }
        match last_failure {
            Some(Failure::Timeout) => problem(
                StatusCode::GATEWAY_TIMEOUT,
                "the backend did not answer in time",
            ),
            Some(Failure::Broken) => problem(
                StatusCode::BAD_GATEWAY,
                "the backend's answer was not valid HTTP",
            ),
            Some(Failure::Connect) | None => unavailable(pool),
        }
    }

    /// The request target as the backend gets it: origin-form (`/path?query`) over HTTP/1.1,
    /// which is what HTTP/1.1 clients send, so their URI is reused as it is; absolute over
    /// HTTP/2, whose `:scheme` and `:authority` come from it.
    fn upstream_uri(
        &self,
        uri: &http::Uri,
        authority: &http::uri::Authority,
        tls: bool,
    ) -> Option<http::Uri> {
        let path = uri.path_and_query()?.clone();
        if !self.client.is_http2() {
            if uri.scheme().is_none() && uri.authority().is_none() {
                return Some(uri.clone());
            }
            return Some(http::Uri::from(path));
        }
        let mut target = http::uri::Parts::default();
        target.scheme = Some(if tls {
            http::uri::Scheme::HTTPS
        } else {
            http::uri::Scheme::HTTP
        });
        target.authority = Some(authority.clone());
        target.path_and_query = Some(path);
        http::Uri::from_parts(target).ok()
    }

    fn lock_budget(&self) -> std::sync::MutexGuard<'_, RetryBudget> {
        self.budget.lock().unwrap_or_else(|e| e.into_inner())
    }
}

fn unavailable(pool: &Pool) -> Response<ClientBody> {
    let seconds = pool.retry_after(Instant::now());
    let mut response = problem(StatusCode::SERVICE_UNAVAILABLE, "no backend is available");
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
    response
}

/// The request's hash key for `route` (0 when its algorithm does not hash).
fn hash_key(route: &Route, headers: &http::HeaderMap, path: &str, client_ip: IpAddr) -> u64 {
    if !route.pool.balancer.algorithm().needs_key() {
        return 0;
    }
    let by_ip = || match client_ip {
        IpAddr::V4(v4) => stable_hash(&v4.octets()),
        IpAddr::V6(v6) => stable_hash(&v6.octets()),
    };
    match &route.hash_key {
        HashKey::Ip => by_ip(),
        HashKey::Path => stable_hash(path.split('?').next().unwrap_or(path).as_bytes()),
        HashKey::Header(name) => headers
            .get(name)
            .map_or_else(by_ip, |v| stable_hash(v.as_bytes())),
        HashKey::Cookie(name) => {
            cookie(headers, name).map_or_else(by_ip, |v| stable_hash(v.as_bytes()))
        }
    }
}

/// The value of cookie `name`, if the request carries it.
fn cookie<'h>(headers: &'h http::HeaderMap, name: &str) -> Option<&'h str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

fn respond(
    response: Response<Incoming>,
    lease: Option<crate::upstream::Lease>,
    guard: InFlight,
) -> Response<ClientBody> {
    let (mut parts, body) = response.into_parts();
    forwarded::strip_hop_by_hop(&mut parts.headers);
    Response::from_parts(parts, Either::Left(Tracked::new(body, lease, guard)))
}

/// An RFC 9457 problem answered by the gateway itself.
pub fn problem(status: StatusCode, detail: &str) -> Response<ClientBody> {
    let body = serde_json::json!({
        "type": "about:blank",
        "title": status.canonical_reason().unwrap_or("Error"),
        "status": status.as_u16(),
        "detail": detail,
    });
    let mut response = Response::new(Either::Right(Full::new(Bytes::from(body.to_string()))));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/problem+json"),
    );
    response
}
