//! One trace across producer and worker: every enqueue runs in a producer span whose W3C
//! `traceparent` travels with the job (a column on the SQL engines, a message header on
//! RabbitMQ), and the worker runs the job in a consumer span that continues that trace.
//!
//! The spans are at DEBUG level and the propagator is OpenTelemetry's global one: without a
//! trace exporter the spans are never built, no context is written, and a job carries none.

use std::collections::HashMap;

use opentelemetry::propagation::{Extractor, Injector};
use opentelemetry::trace::TraceContextExt as _;
use tracing::Span;
use tracing_opentelemetry::OpenTelemetrySpanExt as _;

use crate::{ClaimedJob, NewJob};

/// The W3C header (and AMQP header) name of the context.
pub const TRACEPARENT: &str = "traceparent";

/// The span of one enqueue (or publish) on `system`.
pub(crate) fn enqueue_span(system: &'static str, queue: &str, kind: &str, count: usize) -> Span {
    tracing::debug_span!(
        target: "basis_queue::trace",
        "enqueue",
        otel.name = %format_args!("{queue} publish"),
        otel.kind = "producer",
        messaging.system = system,
        messaging.operation.type = "publish",
        messaging.destination.name = queue,
        messaging.batch.message_count = i64::try_from(count).unwrap_or(i64::MAX),
        job.kind = kind,
    )
}

/// The span of `jobs` enqueued together (one statement), named by the first one's queue.
pub(crate) fn enqueue_many_span(system: &'static str, jobs: &[NewJob]) -> Span {
    match jobs.first() {
        Some(first) => enqueue_span(system, &first.queue, &first.kind, jobs.len()),
        None => Span::none(),
    }
}

/// `span`'s context as a `traceparent` value, when spans are exported.
pub fn traceparent(span: &Span) -> Option<String> {
    if span.is_disabled() {
        return None;
    }
    let context = span.context();
    if !context.span().span_context().is_valid() {
        return None;
    }
    let mut carrier = Carrier::default();
    opentelemetry::global::get_text_map_propagator(|propagator| {
        propagator.inject_context(&context, &mut carrier)
    });
    carrier.0.remove(TRACEPARENT)
}

/// Gives every job without a context that of `span` (the enqueue's own span).
pub(crate) fn stamp(span: &Span, jobs: &mut [NewJob]) {
    if let Some(parent) = traceparent(span) {
        for job in jobs.iter_mut().filter(|job| job.traceparent.is_none()) {
            job.traceparent = Some(parent.clone());
        }
    }
}

/// The span a worker runs `job` in (a consumer span), continuing the trace the job carries.
pub(crate) fn job_span(system: &'static str, job: &ClaimedJob) -> Span {
    let span = tracing::debug_span!(
        target: "basis_queue::trace",
        "job",
        otel.name = %format_args!("{} process", job.kind),
        otel.kind = "consumer",
        messaging.system = system,
        messaging.operation.type = "process",
        messaging.destination.name = %job.lease.queue,
        messaging.message.id = %job.lease.id,
        job.kind = %job.kind,
        job.attempt = i64::from(job.attempt),
        job.outcome = tracing::field::Empty,
        otel.status_code = tracing::field::Empty,
    );
    if let Some(parent) = job.traceparent.as_deref() {
        continue_trace(&span, parent);
    }
    span
}

/// Makes `span` (not yet entered) a child of the context `traceparent` names; a value that
/// does not parse, or a disabled span, leaves it as it was.
pub fn continue_trace(span: &Span, traceparent: &str) {
    if span.is_disabled() {
        return;
    }
    let mut carrier = Carrier::default();
    carrier
        .0
        .insert(TRACEPARENT.to_owned(), traceparent.to_owned());
    let context =
        opentelemetry::global::get_text_map_propagator(|propagator| propagator.extract(&carrier));
    if context.span().span_context().is_valid() {
        // Fails only for a span already started, which the callers' are not.
        let _ = span.set_parent(context);
    }
}

/// Records how a job's attempt ended on its span.
pub(crate) fn record_outcome(span: &Span, outcome: &'static str) {
    if span.is_disabled() {
        return;
    }
    span.record("job.outcome", outcome);
    if outcome != "processed" {
        span.record("otel.status_code", "ERROR");
    }
}

/// The propagator's text map.
#[derive(Default)]
struct Carrier(HashMap<String, String>);

impl Injector for Carrier {
    fn set(&mut self, key: &str, value: String) {
        self.0.insert(key.to_owned(), value);
    }
}

impl Extractor for Carrier {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(String::as_str)
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(String::as_str).collect()
    }
}
