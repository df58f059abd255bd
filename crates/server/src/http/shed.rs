//! Load shedding: past a number of requests in progress, new ones are answered at once
//! with 503 and `Retry-After` instead of queueing behind the others.
//!
//! A server that accepts all work under overload answers everything late, and late
//! answers are retried, which adds load (the guide's "Load Leveling"; Envoy's overload
//! manager). Refusing the excess at the door keeps the latency of the admitted requests
//! where it was and tells clients when to come back. The cost on the hot path is one
//! atomic add and one subtract per request.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};

use axum::extract::Request;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use metrics::Counter;
use tower::{Layer, Service};

use crate::error::Problem;

/// Seconds a shed client is asked to wait.
const RETRY_AFTER_SECONDS: u64 = 1;

/// Applies [`Shed`] with at most `limit` requests in progress (0: no limit).
#[derive(Debug, Clone)]
pub struct ShedLayer {
    limit: usize,
    in_flight: Arc<AtomicUsize>,
    shed: Counter,
}

impl ShedLayer {
    /// A layer admitting at most `limit` requests at once (0: every request).
    pub fn new(limit: usize) -> Self {
        Self {
            limit: if limit == 0 { usize::MAX } else { limit },
            in_flight: Arc::default(),
            shed: metrics::counter!("basis_http_shed_total"),
        }
    }
}

impl<S> Layer<S> for ShedLayer {
    type Service = Shed<S>;

    fn layer(&self, inner: S) -> Shed<S> {
        Shed {
            inner,
            limit: self.limit,
            in_flight: self.in_flight.clone(),
            shed: self.shed.clone(),
        }
    }
}

/// Sheds requests past the limit.
#[derive(Debug, Clone)]
pub struct Shed<S> {
    inner: S,
    limit: usize,
    in_flight: Arc<AtomicUsize>,
    shed: Counter,
}

impl<S> Service<Request> for Shed<S>
where
    S: Service<Request, Response = Response, Error = Infallible>,
{
    type Response = Response;
    type Error = Infallible;
    type Future = Admitted<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request) -> Self::Future {
        let before = self.in_flight.fetch_add(1, Ordering::Relaxed);
        let slot = Slot(self.in_flight.clone());
        if before >= self.limit {
            drop(slot);
            self.shed.increment(1);
            return Admitted {
                inner: None,
                _slot: None,
            };
        }
        Admitted {
            inner: Some(self.inner.call(request)),
            _slot: Some(slot),
        }
    }
}

/// A place among the requests in progress, given back when dropped (also when the client
/// goes away and the request's future is dropped unfinished).
struct Slot(Arc<AtomicUsize>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

pin_project_lite::pin_project! {
    /// The response future of [`Shed`]: the request's, or a 503 at once.
    pub struct Admitted<F> {
        #[pin]
        inner: Option<F>,
        _slot: Option<Slot>,
    }
}

impl<F: Future<Output = Result<Response, Infallible>>> Future for Admitted<F> {
    type Output = Result<Response, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().inner.as_pin_mut() {
            Some(inner) => inner.poll(cx),
            None => Poll::Ready(Ok(overloaded())),
        }
    }
}

fn overloaded() -> Response {
    let mut response = Problem::new(StatusCode::SERVICE_UNAVAILABLE)
        .detail("the server is at capacity; retry after the time in Retry-After")
        .into_response();
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(RETRY_AFTER_SECONDS));
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use tokio::sync::oneshot;
    use tower::ServiceExt as _;

    #[tokio::test]
    async fn requests_past_the_limit_are_shed_until_one_finishes() {
        let (release, released) = oneshot::channel::<()>();
        let released = Arc::new(tokio::sync::Mutex::new(Some(released)));
        let inner = tower::service_fn(move |request: Request| {
            let released = released.clone();
            async move {
                if request.uri().path() == "/slow" {
                    let wait = released.lock().await.take();
                    if let Some(wait) = wait {
                        let _ = wait.await;
                    }
                }
                Ok::<_, Infallible>(StatusCode::OK.into_response())
            }
        });
        let shed = ShedLayer::new(1).layer(inner);
        let request = |path: &str| Request::builder().uri(path).body(Body::empty()).unwrap();

        let slow = tokio::spawn(shed.clone().oneshot(request("/slow")));
        // Let the slow request take its place.
        while shed.in_flight.load(Ordering::Relaxed) == 0 {
            tokio::task::yield_now().await;
        }
        let refused = shed.clone().oneshot(request("/fast")).await.unwrap();
        assert_eq!(refused.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(refused.headers()[header::RETRY_AFTER], "1");

        release.send(()).unwrap();
        assert_eq!(slow.await.unwrap().unwrap().status(), StatusCode::OK);
        let admitted = shed.clone().oneshot(request("/fast")).await.unwrap();
        assert_eq!(admitted.status(), StatusCode::OK);
        assert_eq!(shed.in_flight.load(Ordering::Relaxed), 0);
    }
}
