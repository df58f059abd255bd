//! The server's HTTP plumbing, below every resource:
//!
//! (Over 400 lines: `Observe` and `Deadline` are hand-written services whose futures must
//! stay together with the stack that composes them; splitting them would scatter one
//! request's path over three files.)
//!
//! - [`conn`]: the accept loop and connection limits (count, head deadline and size,
//!   lingering close), with [`framing`] refusing requests framed two ways;
//! - [`transport`]: TLS, HTTP/1.1 and HTTP/2, CORS, forwarded headers;
//! - [`routes`]: the route table resources add to;
//! - [`extract`]: request extractors (JSON bodies, the client's address) and field errors;
//! - [`rest`]: content negotiation, conditional requests, merge patch, cursor pages;
//! - [`schema`]: the request rules the OpenAPI document states, each written once;
//! - [`idempotency`]: stored answers of POSTs retried with an `Idempotency-Key`;
//! - [`compress`]: gzip, brotli and zstd for JSON and HTML by `Accept-Encoding`;
//! - `trace`: the request's span for the trace exporter (`--otlp-endpoint`);
//! - this module: the middleware every request passes through, outermost first:
//!
//! 0. compression ([`compress`]), around everything so problem documents qualify too;
//! 1. [`Observe`], in one service so the redirect path pays for one layer, not six: the
//!    request id (a sane incoming `x-request-id` is reused, else one is made; echoed on the
//!    response), security headers on every response, metrics by route and status, a log
//!    line for every 5xx with its request id and cause, problem documents for the
//!    bodiless errors the framework produces (405 with `Allow`, 413, …), the 404 and 429
//!    pages for a client that prefers HTML (a browser; the pages are the composition's, see
//!    [`ObserveLayer`]), and the request's trace span, entered while everything inside runs;
//! 2. [`shed::Shed`], load shedding past a number of requests in progress (503 with
//!    `Retry-After`);
//! 3. [`Deadline`], the request timeout (503);
//! 4. the body size limit (413, enforced by the extractors);
//! 5. the rate limiter's rules (429);
//! 6. with database replicas only, [`read_floor`]: the caller's read scope, so a caller
//!    reads its own writes (applied by the composition, and only then, so the redirect
//!    path pays nothing for it without replicas).
//!
//! The layers are composed into one stack and applied to the routes once. Each
//! `Router::layer` call boxes the routes again, and a boxed route is cloned (allocated) on
//! every request, so one stack instead of four saves three allocations and three dynamic
//! calls per request on the redirect path. `Observe` and `Deadline` are hand-written
//! services with named futures rather than `from_fn` closures and tower's `Timeout`: a
//! closure middleware boxes its future and the rest of the stack on every request, and a
//! timeout armed up front registers a timer for every request, even the many (a cached
//! redirect) that finish on their first poll.

pub mod compress;
pub mod conn;
pub mod extract;
pub mod framing;
pub mod idempotency;
pub mod read_floor;
pub mod rest;
pub mod routes;
pub mod schema;
pub mod shed;
mod trace;
pub mod transport;

use std::cell::RefCell;
use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::hash::BuildHasher;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request};
use axum::http::{HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use basis_ratelimit::RateLimitLayer;
use foldhash::fast::RandomState;
use metrics::{Counter, Histogram};
use tokio::time::Sleep;
use tower::{Layer, Service, ServiceBuilder};

use crate::error::{InternalError, Problem};

const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Wraps `router` in the middleware stack, `limiter` innermost; `pages` answer a browser's
/// 404 and 429 (see [`ObserveLayer`]).
pub fn layer<S: Clone + Send + Sync + 'static>(
    router: Router<S>,
    limiter: RateLimitLayer,
    body_limit: usize,
    timeout: Duration,
    max_in_flight: usize,
    pages: ErrorPages,
) -> Router<S> {
    let stack = ServiceBuilder::new()
        .layer(compress::layer())
        .layer(ObserveLayer { pages: Some(pages) })
        .layer(shed::ShedLayer::new(max_in_flight))
        .layer(DeadlineLayer(timeout))
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

/// The pages some problems become for a client that prefers HTML: given by the
/// composition, since pages live above this layer.
#[derive(Debug, Clone, Copy)]
pub struct ErrorPages {
    /// A 404's (a browser following a dead link or mistyping a path).
    pub not_found: fn() -> Response,
    /// A 429's, given the seconds of its `Retry-After` (a form sent too often, refused by
    /// the rate limiter before any page saw it).
    pub too_many: fn(u64) -> Response,
}

/// Applies [`Observe`].
#[derive(Debug, Clone, Copy, Default)]
pub struct ObserveLayer {
    /// The pages for browsers. `None`: every problem stays a problem document.
    pub pages: Option<ErrorPages>,
}

impl<S> Layer<S> for ObserveLayer {
    type Service = Observe<S>;

    fn layer(&self, inner: S) -> Observe<S> {
        Observe {
            inner,
            pages: self.pages,
        }
    }
}

/// Records metrics, logs server errors and turns bodiless error responses into problems
/// (and a browser's 404 into a page).
#[derive(Debug, Clone)]
pub struct Observe<S> {
    inner: S,
    pages: Option<ErrorPages>,
}

impl<S> Service<Request> for Observe<S>
where
    S: Service<Request, Response = Response, Error = Infallible>,
{
    type Response = Response;
    type Error = Infallible;
    type Future = Observed<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request) -> Self::Future {
        let started = Instant::now();
        let method = method_label(request.method());
        // A clone of the router's `Arc<str>`, not a copy of the text.
        let route = request.extensions().get::<MatchedPath>().cloned();
        // Only the response, the error log and the span carry the id; nothing downstream
        // reads it from the request.
        let request_id = match request.headers().get(&REQUEST_ID) {
            Some(id) if is_sane_request_id(id) => id.clone(),
            _ => new_request_id(),
        };
        // Only a 404 or a 429 asks whether the client prefers HTML; the request is gone by
        // then, so its `Accept` is kept (a reference count, not a copy) and read only then.
        let pages = self
            .pages
            .map(|pages| (pages, request.headers().get(header::ACCEPT).cloned()));
        let span = trace::request_span(&request, method, route.as_ref(), &request_id);
        let inner = {
            let _entered = span.enter();
            self.inner.call(request)
        };
        Observed {
            inner,
            span,
            seen: Some(Seen {
                started,
                method,
                route,
                request_id,
                pages,
            }),
        }
    }
}

/// What [`Observe`] noted of a request before passing it on.
struct Seen {
    started: Instant,
    method: &'static str,
    route: Option<MatchedPath>,
    request_id: HeaderValue,
    /// The pages to answer a 404 or a 429 with, and the `Accept` that says whether the
    /// client is a browser.
    pages: Option<(ErrorPages, Option<HeaderValue>)>,
}

pin_project_lite::pin_project! {
    /// The response future of [`Observe`].
    pub struct Observed<F> {
        #[pin]
        inner: F,
        // Disabled (a no-op to enter) unless spans are exported.
        span: tracing::Span,
        seen: Option<Seen>,
    }
}

impl<F: Future<Output = Result<Response, Infallible>>> Future for Observed<F> {
    type Output = Result<Response, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let _entered = this.span.enter();
        let Ok(response) = ready!(this.inner.poll(cx));
        let seen = this
            .seen
            .take()
            .expect("an observed future is not polled after it ends");
        trace::record_status(this.span, response.status());
        Poll::Ready(Ok(finish(response, seen)))
    }
}

/// A 429 problem as the page `page` makes, keeping its `Retry-After` and rate-limit
/// headers.
fn rate_limit_page(problem: Response, page: fn(u64) -> Response) -> Response {
    let retry_after = problem
        .headers()
        .get(header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok()?.parse().ok())
        .unwrap_or(1);
    let mut response = page(retry_after);
    for (name, value) in problem.headers() {
        let about_limits =
            name.as_str().starts_with("ratelimit") || name.as_str().starts_with("x-ratelimit");
        if about_limits {
            response.headers_mut().insert(name.clone(), value.clone());
        }
    }
    response
}

/// Completes a response on its way out, and counts it.
fn finish(mut response: Response, seen: Seen) -> Response {
    let status = response.status();
    let for_browser = |(pages, accept): (ErrorPages, Option<HeaderValue>)| {
        rest::accepts_html_first(accept.as_ref()).then_some(pages)
    };
    let error_page = status == StatusCode::NOT_FOUND || status == StatusCode::TOO_MANY_REQUESTS;
    if let Some(pages) = seen
        .pages
        .filter(|_| error_page && !is_html(&response))
        .and_then(for_browser)
    {
        if status == StatusCode::NOT_FOUND {
            response = (pages.not_found)();
        } else if status == StatusCode::TOO_MANY_REQUESTS {
            response = rate_limit_page(response, pages.too_many);
        }
    }
    let headers = response.headers_mut();
    headers.insert(REQUEST_ID, seen.request_id.clone());
    for (name, value) in SECURITY_HEADERS {
        if !headers.contains_key(&name) {
            headers.insert(name, value);
        }
    }

    let route = seen.route.as_ref().map_or("unmatched", MatchedPath::as_str);
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
        let request_id = seen.request_id.to_str().unwrap_or("-");
        tracing::error!(
            request_id,
            route,
            status = status.as_u16(),
            cause,
            "request failed"
        );
    }
    record_request(seen.method, route, status.as_u16(), seen.started.elapsed());
    response
}

/// Applies [`Deadline`].
#[derive(Debug, Clone, Copy)]
pub struct DeadlineLayer(pub Duration);

impl<S> Layer<S> for DeadlineLayer {
    type Service = Deadline<S>;

    fn layer(&self, inner: S) -> Deadline<S> {
        Deadline {
            inner,
            limit: self.0,
        }
    }
}

/// Answers 503 when a request takes longer than its limit. The timer is armed only when
/// the request first has to wait, so a request answered on its first poll (no I/O, as a
/// cached redirect) never touches the timer wheel; the limit then runs from that first
/// wait, which is later than the arrival by the request's own CPU time only.
#[derive(Debug, Clone)]
pub struct Deadline<S> {
    inner: S,
    limit: Duration,
}

impl<S> Service<Request> for Deadline<S>
where
    S: Service<Request, Response = Response, Error = Infallible>,
{
    type Response = Response;
    type Error = Infallible;
    type Future = WithDeadline<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request) -> Self::Future {
        WithDeadline {
            inner: self.inner.call(request),
            limit: self.limit,
            timer: None,
        }
    }
}

pin_project_lite::pin_project! {
    /// The response future of [`Deadline`].
    pub struct WithDeadline<F> {
        #[pin]
        inner: F,
        limit: Duration,
        #[pin]
        timer: Option<Sleep>,
    }
}

impl<F: Future<Output = Result<Response, Infallible>>> Future for WithDeadline<F> {
    type Output = Result<Response, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        if let Poll::Ready(response) = this.inner.poll(cx) {
            return Poll::Ready(response);
        }
        if this.timer.is_none() {
            this.timer.set(Some(tokio::time::sleep(*this.limit)));
        }
        match this.timer.as_pin_mut().map(|timer| timer.poll(cx)) {
            Some(Poll::Ready(())) => Poll::Ready(Ok(Problem::new(StatusCode::SERVICE_UNAVAILABLE)
                .detail("the request took too long to process")
                .into_response())),
            _ => Poll::Pending,
        }
    }
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
        RefCell::new((RandomState::default(), HashMap::new()));
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

/// Whether a response is already a page.
fn is_html(response: &Response) -> bool {
    response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"text/html"))
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
    let mut at = 0;
    // A byte at a time (two digits), skipping the dashes at 8, 13, 18 and 23.
    for (i, byte) in bits.to_be_bytes().into_iter().enumerate() {
        if matches!(i, 4 | 6 | 8 | 10) {
            at += 1;
        }
        id[at] = HEX[usize::from(byte >> 4)];
        id[at + 1] = HEX[usize::from(byte & 0xf)];
        at += 2;
    }
    HeaderValue::from_bytes(&id).expect("hex digits and dashes form a header value")
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use tower::ServiceExt as _;

    /// A service that answers 200 after `wait` (at once for zero).
    fn answering_after(
        wait: Duration,
    ) -> impl Service<Request, Response = Response, Error = Infallible, Future: Send> + Clone {
        tower::service_fn(move |_: Request| async move {
            if !wait.is_zero() {
                tokio::time::sleep(wait).await;
            }
            Ok::<_, Infallible>(StatusCode::OK.into_response())
        })
    }

    #[tokio::test(start_paused = true)]
    async fn the_deadline_answers_503_only_past_its_limit() {
        let limit = Duration::from_secs(2);
        let deadline = |wait| DeadlineLayer(limit).layer(answering_after(wait));
        let request = || Request::new(Body::empty());

        let at_once = deadline(Duration::ZERO).oneshot(request()).await.unwrap();
        assert_eq!(at_once.status(), StatusCode::OK);
        let within = deadline(Duration::from_millis(1_999))
            .oneshot(request())
            .await
            .unwrap();
        assert_eq!(within.status(), StatusCode::OK);
        let started = tokio::time::Instant::now();
        let late = deadline(Duration::from_secs(60))
            .oneshot(request())
            .await
            .unwrap();
        assert_eq!(late.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(
            started.elapsed(),
            limit,
            "cut off at the limit, not when the work ends"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn only_a_request_that_waits_arms_the_timer() {
        let mut context = Context::from_waker(std::task::Waker::noop());
        let mut quick =
            DeadlineLayer(Duration::from_secs(1)).layer(answering_after(Duration::ZERO));
        let mut answered = std::pin::pin!(quick.call(Request::new(Body::empty())));
        assert!(answered.as_mut().poll(&mut context).is_ready());
        assert!(
            answered.timer.is_none(),
            "answered on the first poll: no timer"
        );

        let mut slow =
            DeadlineLayer(Duration::from_secs(1)).layer(answering_after(Duration::from_millis(5)));
        let mut waiting = std::pin::pin!(slow.call(Request::new(Body::empty())));
        assert!(waiting.as_mut().poll(&mut context).is_pending());
        assert!(waiting.timer.is_some(), "waiting: the deadline is armed");
    }

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
