//! The middleware every request passes through, outermost first:
//!
//! 1. [`observe`], in one function so the redirect path pays for one layer, not six: the
//!    request id (a sane incoming `x-request-id` is reused, else one is made; echoed on the
//!    response), security headers on every response, metrics by route and status, a log
//!    line for every 5xx with its request id and cause, and problem documents for the
//!    bodiless errors the framework produces (405 with `Allow`, 413, …);
//! 2. request timeout (503) and body size limit (413, enforced by the extractors).

use std::time::{Duration, Instant};

use axum::Router;
use axum::error_handling::HandleErrorLayer;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request};
use axum::http::{HeaderName, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use tower::ServiceBuilder;

use crate::error::{InternalError, Problem};

const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Wraps `router` in the middleware stack.
pub fn layer<S: Clone + Send + Sync + 'static>(
    router: Router<S>,
    body_limit: usize,
    timeout: Duration,
) -> Router<S> {
    let inner = ServiceBuilder::new()
        .layer(HandleErrorLayer::new(|_: tower::BoxError| async {
            Problem::new(StatusCode::SERVICE_UNAVAILABLE)
                .detail("the request took too long to process")
                .into_response()
        }))
        .timeout(timeout);
    router
        .layer(DefaultBodyLimit::max(body_limit))
        .layer(inner)
        .layer(middleware::from_fn(observe))
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
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
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
        if !headers.contains_key(name) {
            headers.insert(name, HeaderValue::from_static(value));
        }
    }

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

    let elapsed = started.elapsed().as_secs_f64();
    let status = status.as_u16().to_string();
    metrics::counter!("basis_http_requests_total", "method" => method, "route" => route.clone(), "status" => status)
        .increment(1);
    metrics::histogram!("basis_http_request_duration_seconds", "method" => method, "route" => route).record(elapsed);
    response
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

/// Headers every response carries unless the handler set its own.
const SECURITY_HEADERS: [(&str, &str); 3] = [
    ("x-content-type-options", "nosniff"),
    ("x-frame-options", "DENY"),
    ("referrer-policy", "strict-origin-when-cross-origin"),
];

/// An incoming request id is reused when it is short printable ASCII, so a caller's trace
/// id flows through; anything else is replaced.
fn is_sane_request_id(id: &HeaderValue) -> bool {
    (1..=128).contains(&id.len()) && id.as_bytes().iter().all(|b| b.is_ascii_graphic())
}

/// A request id in the UUID v4 format from the thread-local generator. (A UUID from the
/// operating system's generator costs a system call per request.)
fn new_request_id() -> HeaderValue {
    let bits = rand::random::<u128>() & !(0xf000 << 64) & !(0xc000 << 48)
        | (0x4000 << 64)
        | (0x8000 << 48);
    let hex = format!("{bits:032x}");
    let id = format!(
        "{}-{}-{}-{}-{}",
        &hex[..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..]
    );
    HeaderValue::from_str(&id).expect("hex digits and dashes form a header value")
}
