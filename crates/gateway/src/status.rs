//! The operator's view: `/gateway/status` (JSON: every backend's health, ejections, in-flight
//! requests and latency estimate) and Prometheus `/metrics`, on the admin listener so they
//! never shadow a backend's own paths.

use std::sync::OnceLock;
use std::sync::atomic::Ordering;
use std::time::Instant;

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Method, Response, StatusCode};
use http_body_util::Full;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use serde_json::{Value, json};

use crate::backend::Pool;
use crate::routes::Routes;

/// The process-wide Prometheus recorder (the `metrics` facade allows one per process).
pub fn prometheus() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new().build_recorder();
            let handle = recorder.handle();
            if metrics::set_global_recorder(recorder).is_err() {
                tracing::warn!("a metrics recorder was already installed; /metrics will be empty");
            }
            handle
        })
        .clone()
}

/// The status document: every route, and all backends in one list (route order).
pub fn status(routes: &Routes, now: Instant) -> Value {
    let described: Vec<Value> = routes
        .routes
        .iter()
        .map(|r| {
            json!({
                "name": r.name,
                "host": r.host,
                "pathPrefix": r.path_prefix,
                "algorithm": r.pool.balancer.algorithm(),
                "available": r.pool.candidates(now, &[]).len(),
                "backends": backends(&r.pool, now),
            })
        })
        .collect();
    let all: Vec<Value> = routes
        .routes
        .iter()
        .flat_map(|r| backends(&r.pool, now))
        .collect();
    json!({ "routes": described, "backends": all })
}

fn backends(pool: &Pool, now: Instant) -> Vec<Value> {
    pool.backends
        .iter()
        .map(|b| {
            let state = b.state();
            let ejected_ms = state
                .outlier
                .ejected_until(now)
                .map(|until| until.saturating_duration_since(now).as_millis() as u64);
            json!({
                "name": b.name,
                "weight": b.weight,
                "health": state.health.label(),
                "ejected": ejected_ms.is_some(),
                "ejectedForMs": ejected_ms,
                "ejections": state.outlier.ejections(),
                "inFlight": b.in_flight.load(Ordering::Relaxed),
                "requests": b.requests.load(Ordering::Relaxed),
                "failures": b.failures.load(Ordering::Relaxed),
                "ewmaMs": state.ewma.cost(now) / 1e6,
            })
        })
        .collect()
}

/// Copies the per-backend numbers into the recorder, then renders it. Counting happens in
/// atomics on the request path; the recorder is touched only when scraped.
pub fn metrics_text(routes: &Routes, handle: &PrometheusHandle, now: Instant) -> String {
    for route in &routes.routes {
        for b in &route.pool.backends {
            let state = b.state();
            let labels = [("route", route.name.clone()), ("backend", b.name.clone())];
            metrics::counter!("gateway_backend_requests_total", &labels)
                .absolute(b.requests.load(Ordering::Relaxed));
            metrics::counter!("gateway_backend_failures_total", &labels)
                .absolute(b.failures.load(Ordering::Relaxed));
            metrics::gauge!("gateway_backend_in_flight", &labels)
                .set(f64::from(b.in_flight.load(Ordering::Relaxed)));
            metrics::gauge!("gateway_backend_ewma_seconds", &labels)
                .set(state.ewma.cost(now) / 1e9);
            metrics::gauge!("gateway_backend_up", &labels)
                .set(f64::from(u8::from(state.health.is_up())));
            metrics::gauge!("gateway_backend_ejected", &labels)
                .set(f64::from(u8::from(state.outlier.is_ejected(now))));
        }
    }
    handle.render()
}

/// Answers one admin request.
pub fn admin(
    routes: &Routes,
    handle: &PrometheusHandle,
    method: &Method,
    path: &str,
) -> Response<Full<Bytes>> {
    let now = Instant::now();
    let (status, kind, body) = match (method, path) {
        (&Method::GET, "/gateway/status") => (StatusCode::OK, "application/json", status(routes, now).to_string()),
        (&Method::GET, "/metrics") => (StatusCode::OK, "text/plain; version=0.0.4", metrics_text(routes, handle, now)),
        _ => (
            StatusCode::NOT_FOUND,
            "application/problem+json",
            json!({"type": "about:blank", "title": "Not Found", "status": 404, "detail": "the admin port serves /gateway/status and /metrics"}).to_string(),
        ),
    };
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(kind));
    response
}
