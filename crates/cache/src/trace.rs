//! Spans of a cache read for the trace exporter: the lookup, and inside it one span per tier
//! asked (L1, L2) with whether it hit, and the loader's span on a miss of both.
//!
//! They are at DEBUG level: without a trace exporter they are never built, and the L1 hit
//! path pays one cached callsite check per span.

use tracing::Span;

/// The whole of a [`get_or_load`](crate::Cache::get_or_load) (or `get`).
pub(crate) fn lookup(namespace: &str) -> Span {
    tracing::debug_span!(
        target: "basis_cache::trace",
        "cache",
        otel.name = %format_args!("cache {namespace} get"),
        cache.namespace = namespace,
    )
}

/// One look at the in-process tier.
pub(crate) fn l1(namespace: &str) -> Span {
    tracing::debug_span!(
        target: "basis_cache::trace",
        "cache.l1",
        otel.name = %format_args!("cache {namespace} l1"),
        cache.namespace = namespace,
        cache.tier = "l1",
        cache.hit = tracing::field::Empty,
    )
}

/// One read of the Redis tier.
pub(crate) fn l2(namespace: &str) -> Span {
    tracing::debug_span!(
        target: "basis_cache::trace",
        "cache.l2",
        otel.name = %format_args!("cache {namespace} l2"),
        otel.kind = "client",
        db.system.name = "redis",
        cache.namespace = namespace,
        cache.tier = "l2",
        cache.hit = tracing::field::Empty,
        cache.unavailable = tracing::field::Empty,
    )
}

/// The loader's run after both tiers missed.
pub(crate) fn load(namespace: &str) -> Span {
    tracing::debug_span!(
        target: "basis_cache::trace",
        "cache.load",
        otel.name = %format_args!("cache {namespace} load"),
        cache.namespace = namespace,
    )
}

/// Records whether a tier had the key.
pub(crate) fn hit(span: &Span, hit: bool) {
    if !span.is_disabled() {
        span.record("cache.hit", hit);
    }
}

/// Records that Redis did not answer (the read passed through).
pub(crate) fn unavailable(span: &Span) {
    if !span.is_disabled() {
        span.record("cache.unavailable", true);
    }
}
