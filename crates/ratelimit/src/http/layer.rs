//! The tower [`Layer`] and [`Service`] that apply the rules.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::time::Duration;

use futures_util::future::Either;

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::response::Response;
use http::Request;
use tower::{Layer, Service};

use super::RateLimitSubject;
use super::client_ip::{IpNet, client_ip};
use super::config::RateLimitConfig;
use super::response::{add_headers, too_many_requests};
use super::rules::{CompiledRule, first_segment};
use crate::error::Error;
use crate::limiter::{Limiter, OutageConfig, Source};
use crate::metrics::Outcome;
use crate::store::{Check, MemoryConfig, RedisConfig, RedisStore};

/// Applies rate-limit rules to every request of the wrapped service. Cheap to clone.
#[derive(Clone, Debug)]
pub struct RateLimitLayer {
    shared: Arc<Shared>,
}

struct Shared {
    limiter: Limiter,
    rules: Vec<CompiledRule>,
    trusted_proxies: Vec<IpNet>,
    enabled: bool,
    /// Told of every request answered 429 (set once, by whoever composes the layer).
    on_reject: OnceLock<RejectHook>,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("limiter", &self.limiter)
            .field("rules", &self.rules)
            .field("enabled", &self.enabled)
            .finish_non_exhaustive()
    }
}

/// What the layer says of a request it answered with 429.
#[derive(Debug, Clone, Copy)]
pub struct Rejection<'a> {
    /// The rule that refused it (the first of those that did).
    pub rule: &'a str,
    /// Whom the rule counted: `ip:…`, `user:…`, `key:…`, `account:…` (personal data:
    /// whoever keeps it should hash or cut it).
    pub subject: &'a str,
    /// The request's method.
    pub method: &'a http::Method,
    /// The request's path (without the query).
    pub path: &'a str,
}

/// A function told of each rejection; it runs on the request's task, so it must be quick
/// and must not block.
pub type RejectHook = Arc<dyn Fn(Rejection<'_>) + Send + Sync>;

impl RateLimitLayer {
    /// The layer for `config`, deciding through `limiter`.
    pub fn new(config: &RateLimitConfig, limiter: Limiter) -> Result<Self, Error> {
        let rules = config
            .rules
            .iter()
            .map(CompiledRule::compile)
            .collect::<Result<_, _>>()?;
        Ok(Self {
            shared: Arc::new(Shared {
                limiter,
                rules,
                trusted_proxies: config.trusted_proxies.clone(),
                enabled: config.enabled,
                on_reject: OnceLock::new(),
            }),
        })
    }

    /// The layer for `config` with its store chosen by `redis_url` (`REDIS_URL`): shared
    /// state in Redis when set, in-memory state otherwise. Does not wait for Redis (the
    /// connection is made on first use), but must be called inside a Tokio runtime.
    pub fn from_config(config: RateLimitConfig, redis_url: Option<&str>) -> Result<Self, Error> {
        let s = &config.store;
        let memory = MemoryConfig {
            max_keys: s.max_memory_keys,
            ..MemoryConfig::default()
        };
        let limiter = match redis_url.filter(|u| !u.trim().is_empty()) {
            None => Limiter::in_memory(memory),
            Some(url) => {
                let store = RedisStore::connect_lazy(&RedisConfig {
                    url: url.to_owned(),
                    key_prefix: s.key_prefix.clone(),
                    coalesce: s.coalesce,
                })?;
                let outage = OutageConfig {
                    timeout: Duration::from_millis(s.timeout_ms.max(1)),
                    policy: s.on_outage,
                };
                Limiter::redis(store, outage, memory)
            }
        };
        Self::new(&config, limiter)
    }

    /// Has `hook` told of every request this layer answers with 429 (an admin's list of
    /// recent rejections). Only the first hook set is kept; returns whether this one was.
    pub fn on_reject(&self, hook: RejectHook) -> bool {
        self.shared.on_reject.set(hook).is_ok()
    }

    /// The limiter behind the layer (for periodic [`Limiter::purge_idle`]).
    pub fn limiter(&self) -> &Limiter {
        &self.shared.limiter
    }
}

impl<S> Layer<S> for RateLimitLayer {
    type Service = RateLimitService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RateLimitService {
            inner,
            shared: self.shared.clone(),
        }
    }
}

/// The service produced by [`RateLimitLayer`].
#[derive(Clone, Debug)]
pub struct RateLimitService<S> {
    inner: S,
    shared: Arc<Shared>,
}

impl<S> Service<Request<Body>> for RateLimitService<S>
where
    S: Service<Request<Body>, Response = Response> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    type Response = Response;
    type Error = S::Error;
    /// Requests no rule covers (most of them: redirects, reads outside the rules) go
    /// straight to the inner service's future, neither boxed nor wrapped.
    type Future =
        Either<S::Future, Pin<Box<dyn Future<Output = Result<Response, S::Error>> + Send>>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<Body>) -> Self::Future {
        // Matched before anything is allocated: the indices of the rules that apply.
        let matched: Vec<usize> = if self.shared.enabled {
            let (method, path) = (request.method(), request.uri().path());
            let first = first_segment(path);
            (self.shared.rules.iter().enumerate())
                .filter(|(_, r)| r.matches(method, path, first))
                .map(|(i, _)| i)
                .collect()
        } else {
            Vec::new()
        };
        if matched.is_empty() {
            return Either::Left(self.inner.call(request));
        }
        // The clone may not be ready; call the instance that `poll_ready` prepared.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let shared = self.shared.clone();
        Either::Right(Box::pin(async move {
            let rules: Vec<&CompiledRule> = matched.iter().map(|&i| &shared.rules[i]).collect();
            let peer = request
                .extensions()
                .get::<ConnectInfo<SocketAddr>>()
                .map(|c| c.0);
            let ip = client_ip(peer, request.headers(), &shared.trusted_proxies);
            let who = request.extensions().get::<RateLimitSubject>();
            let subjects: Vec<String> = rules.iter().map(|r| r.key.subject(ip, who)).collect();
            let checks: Vec<Check<'_>> = rules
                .iter()
                .zip(&subjects)
                .map(|(r, subject)| Check {
                    policy: &r.policy,
                    rule: &r.name,
                    subject,
                    cost: r.cost,
                })
                .collect();
            let verdict = shared.limiter.check(&checks).await;
            for (rule, decision) in rules.iter().zip(&verdict.decisions) {
                let outcome = match (verdict.source, decision.allowed) {
                    (Source::FailedOpen, _) => Outcome::FailedOpen,
                    (Source::FailedClosed, _) => Outcome::FailedClosed,
                    (_, true) => Outcome::Allowed,
                    (_, false) => Outcome::Denied,
                };
                rule.counters.record(outcome);
            }
            if !verdict.allowed() {
                if let Some(hook) = shared.on_reject.get()
                    && let Some(i) = verdict.decisions.iter().position(|d| !d.allowed)
                {
                    hook(Rejection {
                        rule: &rules[i].name,
                        subject: &subjects[i],
                        method: request.method(),
                        path: request.uri().path(),
                    });
                }
                return Ok(too_many_requests(&rules, &verdict.decisions));
            }
            let mut response = inner.call(request).await?;
            // Fail-open answers know nothing about the quota: better no header than a lie.
            if verdict.source != Source::FailedOpen {
                add_headers(response.headers_mut(), &rules, &verdict.decisions);
            }
            Ok(response)
        }))
    }
}
