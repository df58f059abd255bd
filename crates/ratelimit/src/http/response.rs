//! Response headers and the 429 body.
//!
//! * `RateLimit-Policy` and `RateLimit` in the syntax of
//!   draft-ietf-httpapi-ratelimit-headers-11: Structured Field lists with one item per
//!   rule, e.g. `"api";q=100;w=60` and `"api";r=99;t=60` (quota, window in seconds,
//!   remaining units, seconds until the quota is fully back).
//! * The legacy `X-RateLimit-Limit`, `X-RateLimit-Remaining` and `X-RateLimit-Reset`
//!   (Unix seconds) for the most restrictive rule.
//! * On refusal: `429`, `Retry-After` in seconds and an RFC 9457 problem+json body.

use std::fmt::Write as _;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::body::Body;
use axum::response::Response;
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};

use super::rules::CompiledRule;
use crate::algorithm::Decision;

static RATELIMIT_POLICY: HeaderName = HeaderName::from_static("ratelimit-policy");
static RATELIMIT: HeaderName = HeaderName::from_static("ratelimit");
static X_LIMIT: HeaderName = HeaderName::from_static("x-ratelimit-limit");
static X_REMAINING: HeaderName = HeaderName::from_static("x-ratelimit-remaining");
static X_RESET: HeaderName = HeaderName::from_static("x-ratelimit-reset");

/// Adds the rate-limit headers for `rules` and their `decisions` (same order).
pub(crate) fn add_headers(
    headers: &mut HeaderMap,
    rules: &[&CompiledRule],
    decisions: &[Decision],
) {
    headers.reserve(5);
    let policy = match rules {
        [rule] => Some(rule.policy_header.clone()),
        _ => {
            let items: Vec<&str> = rules.iter().map(|r| r.policy_item.as_str()).collect();
            HeaderValue::try_from(items.join(", ")).ok()
        }
    };
    if let Some(policy) = policy {
        headers.insert(RATELIMIT_POLICY.clone(), policy);
    }
    let mut current = String::with_capacity(32 * rules.len());
    for (i, (r, d)) in rules.iter().zip(decisions).enumerate() {
        let sep = if i == 0 { "" } else { ", " };
        let reset = seconds(d.reset_after);
        let _ = write!(current, "{sep}\"{}\";r={};t={reset}", r.name, d.remaining);
    }
    // Rule names are validated (no quotes or control characters), so this holds.
    if let Ok(value) = HeaderValue::try_from(current) {
        headers.insert(RATELIMIT.clone(), value);
    }
    if let Some(d) = most_restrictive(decisions) {
        let reset = unix_now().saturating_add(seconds(d.reset_after));
        headers.insert(X_LIMIT.clone(), HeaderValue::from(d.limit));
        headers.insert(X_REMAINING.clone(), HeaderValue::from(d.remaining));
        headers.insert(X_RESET.clone(), HeaderValue::from(reset));
    }
}

/// The 429 answer: headers, `Retry-After` and a problem+json body.
pub(crate) fn too_many_requests(rules: &[&CompiledRule], decisions: &[Decision]) -> Response {
    let retry = decisions
        .iter()
        .filter(|d| !d.allowed)
        .map(|d| d.retry_after)
        .max()
        .unwrap_or(Duration::from_secs(1));
    let retry_secs = seconds(retry).max(1);
    let denied_by = rules
        .iter()
        .zip(decisions)
        .find(|(_, d)| !d.allowed)
        .map_or("rate limit", |(r, _)| r.name.as_str());
    let body = serde_json::json!({
        "type": "about:blank",
        "title": "Too Many Requests",
        "status": 429,
        "detail": format!("Too many requests under the \"{denied_by}\" limit; retry in {retry_secs} s."),
        "retryAfter": retry_secs,
        "error": "Rate limit exceeded",
    });
    let mut response = Response::new(Body::from(body.to_string()));
    *response.status_mut() = StatusCode::TOO_MANY_REQUESTS;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/problem+json"),
    );
    headers.insert(header::RETRY_AFTER, HeaderValue::from(retry_secs));
    add_headers(headers, rules, decisions);
    response
}

/// The denied decision that lasts longest, else the one with the least room left.
fn most_restrictive(decisions: &[Decision]) -> Option<&Decision> {
    decisions
        .iter()
        .filter(|d| !d.allowed)
        .max_by_key(|d| d.retry_after)
        .or_else(|| decisions.iter().min_by_key(|d| d.remaining))
}

/// Whole seconds, rounded up: a client waiting this long is never early.
fn seconds(d: Duration) -> u64 {
    d.as_secs() + u64::from(d.subsec_nanos() > 0)
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}
