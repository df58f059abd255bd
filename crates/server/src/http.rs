//! The middleware every request passes through, outermost first:
//!
//! 1. [`observe`], in one function so the redirect path pays for one layer, not six: the
//!    request id (a sane incoming `x-request-id` is reused, else one is made; echoed on the
//!    response), security headers on every response, metrics by route and status, a log
//!    line for every 5xx with its request id and cause, and problem documents for the
//!    bodiless errors the framework produces (405 with `Allow`, 413, …);
//! 2. request timeout (503) and body size limit (413, enforced by the extractors);
//! 3. the rate limiter's rules (429).
//!
//! The layers are composed into one stack and applied to the routes once. Each
//! `Router::layer` call boxes the routes again, and a boxed route is cloned (allocated) on
//! every request, so one stack instead of four saves three allocations and three dynamic
//! calls per request on the redirect path.

use std::cell::RefCell;
use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::time::{Duration, Instant};

use axum::Router;
use axum::error_handling::HandleErrorLayer;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request};
use axum::http::{HeaderName, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use basis_ratelimit::RateLimitLayer;
use metrics::{Counter, Histogram};
use tower::ServiceBuilder;

use crate::error::{InternalError, Problem};

const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Wraps `router` in the middleware stack, `limiter` innermost.
pub fn layer<S: Clone + Send + Sync + 'static>(
    router: Router<S>,
    limiter: RateLimitLayer,
    body_limit: usize,
    timeout: Duration,
) -> Router<S> {
    let stack = ServiceBuilder::new()
        .layer(middleware::from_fn(observe))
        .layer(HandleErrorLayer::new(|_: tower::BoxError| async {
            Problem::new(StatusCode::SERVICE_UNAVAILABLE)
                .detail("the request took too long to process")
                .into_response()
        }))
        .timeout(timeout)
        .layer(DefaultBodyLimit::max(body_limit))
        .layer(limiter);
    router.layer(stack)
}

fn method_label(method: &axum::http::Method) -> &'static str {
    match method.as_str() {
        "GET" => "GET",
        "HEAD" => "HEAD",
        "POST" => "POST",
        "PUT" => "PUT",
        "PATCH" => "PATCH",
        "DELETE" => "DELETE",
        "OPTIONS" => "OPTIONS",
        _ => "other",
    }
}

/// Records metrics, logs server errors and turns bodiless error responses into problems.
async fn observe(mut request: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = method_label(request.method());
    // A clone of the router's `Arc<str>`, not a copy of the text.
    let route = request.extensions().get::<MatchedPath>().cloned();
    let request_id = match request.headers().get(&REQUEST_ID) {
        Some(id) if is_sane_request_id(id) => id.clone(),
        _ => {
            let id = new_request_id();
            request.headers_mut().insert(REQUEST_ID, id.clone());
            id
        }
    };

    let mut response = next.run(request).await;
    let status = response.status();
    let headers = response.headers_mut();
    headers.insert(REQUEST_ID, request_id.clone());
    for (name, value) in SECURITY_HEADERS {
        if !headers.contains_key(&name) {
            headers.insert(name, value);
        }
    }

    let route = route.as_ref().map_or("unmatched", MatchedPath::as_str);
    if (status.is_client_error() || status.is_server_error())
        && !response.headers().contains_key(header::CONTENT_TYPE)
    {
        response = with_problem_body(response);
    }
    if status.is_server_error() {
        let cause = response
            .extensions()
            .get::<InternalError>()
            .map(|e| e.0.as_str());
        let request_id = request_id.to_str().unwrap_or("-");
        tracing::error!(
            request_id,
            route,
            status = status.as_u16(),
            cause,
            "request failed"
        );
    }
    record_request(method, route, status.as_u16(), started.elapsed());
    response
}

/// The metric handles of one (method, route, status).
struct RequestMetrics {
    method: &'static str,
    route: Box<str>,
    status: u16,
    requests: Counter,
    duration: Histogram,
}

thread_local! {
    /// Handles already registered, by a hash of their labels. Registering through the
    /// `counter!` macro on every request builds label strings and a key, hashes them and
    /// takes the registry's lock; a handle found here is an atomic add. The label sets are
    /// bounded: routes are the router's templates (or "unmatched") and statuses are few.
    static REQUEST_METRICS: RefCell<(RandomState, HashMap<u64, Vec<RequestMetrics>>)> =
        RefCell::new((RandomState::new(), HashMap::new()));
}

/// Counts a request and records its duration, by method, route and status.
fn record_request(method: &'static str, route: &str, status: u16, elapsed: Duration) {
    REQUEST_METRICS.with_borrow_mut(|(hasher, by_hash)| {
        let bucket = by_hash
            .entry(hasher.hash_one((method, route, status)))
            .or_default();
        let found = bucket
            .iter()
            .position(|m| m.status == status && m.method == method && *m.route == *route);
        let index = found.unwrap_or_else(|| {
            bucket.push(RequestMetrics {
                method,
                route: route.into(),
                status,
                requests: metrics::counter!("basis_http_requests_total", "method" => method, "route" => route.to_owned(), "status" => status.to_string()),
                duration: metrics::histogram!("basis_http_request_duration_seconds", "method" => method, "route" => route.to_owned()),
            });
            bucket.len() - 1
        });
        let handles = &bucket[index];
        handles.requests.increment(1);
        handles.duration.record(elapsed.as_secs_f64());
    });
}

/// Replaces the empty body of a framework-made error with a problem document, keeping its
/// status and headers (such as `Allow` on a 405).
fn with_problem_body(response: Response) -> Response {
    let (mut parts, _) = response.into_parts();
    let detail = match parts.status {
        StatusCode::METHOD_NOT_ALLOWED => {
            "this method is not allowed on this resource; see the Allow header"
        }
        StatusCode::PAYLOAD_TOO_LARGE => "the request body exceeds the size limit",
        StatusCode::NOT_FOUND => "no resource at this path",
        _ => "the request could not be processed",
    };
    let problem = Problem::new(parts.status).detail(detail).into_response();
    let (problem_parts, body) = problem.into_parts();
    parts.headers.remove(header::CONTENT_LENGTH);
    parts.headers.extend(problem_parts.headers);
    Response::from_parts(parts, body)
}

/// Headers every response carries unless the handler set its own (typed constants: no
/// parsing of names or values per request).
const SECURITY_HEADERS: [(HeaderName, HeaderValue); 3] = [
    (
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    ),
    (header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY")),
    (
        header::REFERRER_POLICY,
        HeaderValue::from_static("strict-origin-when-cross-origin"),
    ),
];

/// An incoming request id is reused when it is short printable ASCII, so a caller's trace
/// id flows through; anything else is replaced.
fn is_sane_request_id(id: &HeaderValue) -> bool {
    (1..=128).contains(&id.len()) && id.as_bytes().iter().all(|b| b.is_ascii_graphic())
}

/// A request id in the UUID v4 format from the thread-local generator. (A UUID from the
/// operating system's generator costs a system call per request.) Written on the stack:
/// the header value is the only allocation.
fn new_request_id() -> HeaderValue {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let bits = rand::random::<u128>() & !(0xf000 << 64) & !(0xc000 << 48)
        | (0x4000 << 64)
        | (0x8000 << 48);
    let mut id = [b'-'; 36];
    let mut nibble = 32;
    for (i, slot) in id.iter_mut().enumerate() {
        if matches!(i, 8 | 13 | 18 | 23) {
            continue;
        }
        nibble -= 1;
        *slot = HEX[((bits >> (nibble * 4)) & 0xf) as usize];
    }
    HeaderValue::from_bytes(&id).expect("hex digits and dashes form a header value")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_ids_are_version_4_uuids() {
        for _ in 0..1000 {
            let value = new_request_id();
            let id = value.as_bytes();
            assert_eq!(id.len(), 36);
            for (i, &c) in id.iter().enumerate() {
                match i {
                    8 | 13 | 18 | 23 => assert_eq!(c, b'-'),
                    14 => assert_eq!(c, b'4', "version 4"),
                    19 => assert!(b"89ab".contains(&c), "RFC 4122 variant"),
                    _ => assert!(c.is_ascii_digit() || (b'a'..=b'f').contains(&c)),
                }
            }
        }
        assert_ne!(new_request_id(), new_request_id());
    }
}
