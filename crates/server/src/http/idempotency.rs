//! `Idempotency-Key` on POST: a retry with the same key and body gets the first response
//! (201, same `Location`, same body) and creates nothing; the same key with another body is
//! a 422. Keys belong to the caller, live in the database (so any instance answers a retry)
//! and expire 24 hours after first use, by the injected clock.
//!
//! A key is claimed before the request runs and completed with its response afterwards. A
//! request that fails releases its key, so the retry runs again. If the process dies between
//! the write and the completion, the key stays "in progress" (409): for [`once`] until it
//! expires; for [`required`] (money) only until no request could still be running it (twice
//! the request timeout). Then a retry takes the claim over and runs the handler again, which
//! is safe because those handlers record the scoped key with their effect, in the effect's
//! own transaction (`ledger_transfers.request_key`): the second run finds the transfer the
//! first one made and answers with it instead of moving the money twice.

use std::future::Future;

use axum::body::to_bytes;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use basis_store::idempotency;
use sha2::{Digest, Sha256};

use crate::error::{ApiError, ApiResult};
use crate::http::rest::etag_of;
use crate::state::AppState;

/// The request header.
pub const HEADER: &str = "idempotency-key";
/// How long a key is remembered.
pub const TTL_MS: i64 = 24 * 60 * 60 * 1000;
/// Longest key accepted.
const MAX_KEY_LEN: usize = 255;

/// [`once`] for requests that must carry a key (money-moving POSTs): without one, 400.
/// `handler` must store [`scoped_key`] with its effect (unique), so that a claim left behind
/// by a dead process can be taken over without doing the work twice.
pub async fn required<F, Fut>(
    state: &AppState,
    scope: &str,
    headers: &HeaderMap,
    path: &str,
    body: &[u8],
    handler: F,
) -> ApiResult<Response>
where
    F: FnOnce() -> Fut,
    Fut: Future<Output = ApiResult<Response>>,
{
    let key = key_of(headers)?.ok_or_else(|| {
        ApiError::BadRequest("this request moves money and needs an Idempotency-Key header".into())
    })?;
    // A request runs for at most the request timeout; a claim older than twice that is an
    // orphan of a process that died (or of a response that was dropped by the timeout).
    let lease = state.request_timeout_ms.saturating_mul(2);
    run(state, scope, key, path, body, Some(lease), handler).await
}

/// The request's `Idempotency-Key` scoped to the caller (`scope/key`), if it has a valid one:
/// what a keyed effect stores to be made at most once.
pub fn scoped_key(scope: &str, headers: &HeaderMap) -> Option<String> {
    key_of(headers)
        .ok()
        .flatten()
        .map(|key| format!("{scope}/{key}"))
}

/// Runs `handler` at most once per (caller, key) within the key's lifetime.
pub async fn once<F, Fut>(
    state: &AppState,
    scope: &str,
    headers: &HeaderMap,
    path: &str,
    body: &[u8],
    handler: F,
) -> ApiResult<Response>
where
    F: FnOnce() -> Fut,
    Fut: Future<Output = ApiResult<Response>>,
{
    match key_of(headers)? {
        None => handler().await,
        Some(key) => run(state, scope, key, path, body, None, handler).await,
    }
}

/// The `Idempotency-Key` header, if any, checked.
fn key_of(headers: &HeaderMap) -> ApiResult<Option<&str>> {
    let Some(raw) = headers.get(HEADER) else {
        return Ok(None);
    };
    raw.to_str()
        .ok()
        .map(str::trim)
        .filter(|k| !k.is_empty() && k.len() <= MAX_KEY_LEN)
        .map(Some)
        .ok_or_else(|| {
            ApiError::BadRequest(format!(
                "Idempotency-Key must be 1 to {MAX_KEY_LEN} visible ASCII characters"
            ))
        })
}

/// Claims `key` (taking over an unfinished claim older than `lease` ms, if given), runs
/// `handler` and stores its successful response; or answers from what the key holds.
async fn run<F, Fut>(
    state: &AppState,
    scope: &str,
    key: &str,
    path: &str,
    body: &[u8],
    lease: Option<i64>,
    handler: F,
) -> ApiResult<Response>
where
    F: FnOnce() -> Fut,
    Fut: Future<Output = ApiResult<Response>>,
{
    let fingerprint = fingerprint(path, body);
    let now = state.clock.now_ms();
    let orphaned_before = lease.map_or(i64::MIN, |lease| now.saturating_sub(lease));
    let held = idempotency::claim_or_take_over(
        &state.store,
        scope,
        key,
        &fingerprint,
        now,
        now + TTL_MS,
        orphaned_before,
    )
    .await?;
    match held {
        Some(row) if row.fingerprint != fingerprint => Err(ApiError::Unprocessable(
            "this Idempotency-Key was already used with a different request".into(),
        )),
        Some(idempotency::KeyRow { status: None, .. }) => Err(ApiError::Conflict(
            "a request with this Idempotency-Key is still in progress; retry later".into(),
        )),
        Some(row) => {
            metrics::counter!("idempotent_replays_total").increment(1);
            Ok(replay(row))
        }
        None => {
            let outcome = handler().await;
            match outcome {
                Ok(response) if response.status().is_success() => {
                    let (parts, body) = response.into_parts();
                    let bytes = to_bytes(body, usize::MAX).await.map_err(|e| {
                        ApiError::Internal(anyhow::anyhow!("buffering a response: {e}"))
                    })?;
                    let location = parts
                        .headers
                        .get(header::LOCATION)
                        .and_then(|v| v.to_str().ok());
                    idempotency::complete(
                        &state.store,
                        scope,
                        key,
                        i32::from(parts.status.as_u16()),
                        location,
                        &bytes,
                    )
                    .await?;
                    Ok(Response::from_parts(parts, bytes.into()))
                }
                other => {
                    idempotency::release(&state.store, scope, key).await?;
                    other
                }
            }
        }
    }
}

/// What identifies a request under a key: SHA-256 over the method, path and body.
pub fn fingerprint(path: &str, body: &[u8]) -> String {
    let mut hasher = Sha256::new();
    for part in [b"POST".as_slice(), path.as_bytes(), body] {
        hasher.update((part.len() as u64).to_be_bytes());
        hasher.update(part);
    }
    format!("{:x}", hasher.finalize())
}

/// Deletes expired keys every ten minutes until told to stop, so the table holds about a
/// day of keys. (Expiry itself does not depend on this: an expired key is never replayed.)
pub async fn purge_periodically(state: AppState, mut stop: tokio::sync::watch::Receiver<bool>) {
    let mut ticks = tokio::time::interval(std::time::Duration::from_secs(600));
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticks.tick() => {
                match idempotency::purge_expired(&state.store, state.clock.now_ms()).await {
                    Ok(0) => {}
                    Ok(purged) => tracing::debug!(purged, "expired idempotency keys deleted"),
                    Err(err) => tracing::warn!(error = %err, "purging idempotency keys failed; will retry"),
                }
            }
            _ = stop.changed() => return,
        }
    }
}

/// The stored first response, marked as a replay.
fn replay(row: idempotency::KeyRow) -> Response {
    let status = row
        .status
        .and_then(|s| u16::try_from(s).ok())
        .and_then(|s| StatusCode::from_u16(s).ok())
        .unwrap_or(StatusCode::OK);
    let body = row.body.unwrap_or_default();
    let etag = etag_of(&body);
    let mut response = (status, body).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    headers.insert("idempotent-replayed", HeaderValue::from_static("true"));
    if let Ok(etag) = HeaderValue::from_str(&etag) {
        headers.insert(header::ETAG, etag);
    }
    if let Some(location) = row.location.and_then(|l| HeaderValue::from_str(&l).ok()) {
        headers.insert(header::LOCATION, location);
    }
    response
}
