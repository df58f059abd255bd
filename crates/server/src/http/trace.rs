//! The span of one HTTP request (a server span in OpenTelemetry's terms): named by method
//! and route template, carrying the status, and continuing the caller's trace when the
//! request has a W3C `traceparent` header.
//!
//! The span is at DEBUG level: the log filter leaves it disabled, so without a trace
//! exporter (`--otlp-endpoint`) it is never built and the request pays one cached check.

use axum::extract::{MatchedPath, Request};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use opentelemetry::propagation::Extractor;
use opentelemetry::trace::TraceContextExt as _;
use tracing::Span;
use tracing_opentelemetry::OpenTelemetrySpanExt as _;

/// Opens the request's span; the caller enters it while the request is handled.
pub(crate) fn request_span(
    request: &Request,
    method: &'static str,
    route: Option<&MatchedPath>,
    request_id: &HeaderValue,
) -> Span {
    let route = route.map(MatchedPath::as_str);
    // The fields are evaluated only when the span is enabled.
    let span = tracing::debug_span!(
        target: "basis_server::http",
        "request",
        otel.name = %SpanName(method, route),
        otel.kind = "server",
        http.request.method = method,
        http.route = route,
        url.path = request.uri().path(),
        request_id = request_id.to_str().unwrap_or("-"),
        http.response.status_code = tracing::field::Empty,
        otel.status_code = tracing::field::Empty,
    );
    if !span.is_disabled() {
        let parent = opentelemetry::global::get_text_map_propagator(|propagator| {
            propagator.extract(&Headers(request.headers()))
        });
        if parent.span().span_context().is_valid() {
            // Fails only for a span already started, which this one is not.
            let _ = span.set_parent(parent);
        }
    }
    span
}

/// Records the answer on the request's span; a 5xx marks it failed.
pub(crate) fn record_status(span: &Span, status: StatusCode) {
    if span.is_disabled() {
        return;
    }
    // As a signed integer: the exporter records unsigned ones as text.
    span.record("http.response.status_code", i64::from(status.as_u16()));
    if status.is_server_error() {
        span.record("otel.status_code", "ERROR");
    }
}

/// `GET /links/{code}`, or only the method for a request no route matched.
struct SpanName<'a>(&'static str, Option<&'a str>);

impl std::fmt::Display for SpanName<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.1 {
            Some(route) => write!(f, "{} {route}", self.0),
            None => f.write_str(self.0),
        }
    }
}

/// Request headers as the propagator reads them.
struct Headers<'a>(&'a HeaderMap);

impl Extractor for Headers<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|value| value.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(|name| name.as_str()).collect()
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::sync::{Arc, Mutex};

    use axum::body::Body;
    use tracing_subscriber::fmt::format::FmtSpan;

    use super::*;

    /// What a log writer was given.
    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl Write for Captured {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0
                .lock()
                .expect("not poisoned")
                .extend_from_slice(bytes);
            Ok(bytes.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn the_request_span_records_the_path_but_never_the_query() {
        let captured = Captured::default();
        let writer = captured.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::DEBUG)
            .with_span_events(FmtSpan::CLOSE)
            .with_ansi(false)
            .with_writer(move || writer.clone())
            .finish();
        tracing::subscriber::with_default(subscriber, || {
            let request = Request::builder()
                .uri("/reset/new?token=the-secret-reset-token")
                .body(Body::empty())
                .expect("a request");
            let span = request_span(&request, "GET", None, &HeaderValue::from_static("req-1"));
            assert!(!span.is_disabled());
            record_status(&span, StatusCode::OK);
        });
        let log =
            String::from_utf8(captured.0.lock().expect("not poisoned").clone()).expect("text");
        assert!(log.contains("/reset/new"), "{log}");
        assert!(!log.contains("the-secret-reset-token"), "{log}");
    }
}
