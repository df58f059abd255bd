//! Read-your-writes across database replicas: every request runs in its caller's read
//! scope (see `basis_store::replicas`).
//!
//! The caller is known by its credential before anything authenticates it: a hash of the
//! `Authorization` or `X-API-Key` header, else of the session cookie. A request that wrote
//! records the primary's position for that key and for a session cookie it issued (a
//! sign-in), so the caller's next reads wait for a replica that has replayed the write, or
//! go to the primary. Anonymous callers have no key and may read slightly stale data.
//!
//! Once authentication names the account, its own floor applies too, whichever credential
//! the request carries ([`identify`]), and a write raises it.
//!
//! With Redis configured, floors are kept there too ([`RedisFloors`]), so a caller whose
//! requests a load balancer spreads over several instances reads its writes on each.

use axum::extract::{Request, State};
use axum::http::{HeaderMap, header};
use axum::middleware::Next;
use axum::response::Response;
use basis_auth::session::session_id_from_cookies;
use basis_store::Store;
use basis_store::replicas::{FloorFuture, SharedFloors};
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use sha2::{Digest, Sha256};
use std::time::Duration;

/// Runs the request in its caller's read scope, then records the caller's floor if it
/// wrote. Without replicas, it only passes the request on.
pub async fn scope(State(store): State<Store>, request: Request, next: Next) -> Response {
    let Some(replicas) = store.replicas().cloned() else {
        return next.run(request).await;
    };
    let reads = replicas.caller(caller_key(request.headers())).await;
    let response = basis_store::replicas::scoped(reads.clone(), next.run(request)).await;
    if reads.wrote() {
        let issued = issued_session_key(response.headers());
        let keys: Vec<&str> = reads
            .key()
            .into_iter()
            .chain(reads.account())
            .chain(issued.as_deref())
            .collect();
        if let Err(err) = replicas.record_write(&keys).await {
            tracing::warn!(
                error = %err,
                "cannot record the primary's position after a write; the caller's next reads may be stale"
            );
        }
    }
    response
}

/// Raises each floor in `KEYS` to `ARGV[1]` (never lowers one) and keeps it for `ARGV[2]` ms.
const RAISE: &str = r"
for _, key in ipairs(KEYS) do
  local current = tonumber(redis.call('GET', key) or '0')
  if current < tonumber(ARGV[1]) then
    redis.call('SET', key, ARGV[1], 'PX', ARGV[2])
  else
    redis.call('PEXPIRE', key, ARGV[2])
  end
end
return 0
";

/// Read floors kept in Redis under `basis:read-floor:<caller key>`, shared by every
/// instance. The connection is made on first use and remade after failures, so a server
/// starts while Redis is down (its callers then read from the primary).
pub struct RedisFloors {
    conn: ConnectionManager,
    raise: redis::Script,
}

impl std::fmt::Debug for RedisFloors {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisFloors").finish_non_exhaustive()
    }
}

impl RedisFloors {
    /// Floors on the Redis at `url`, without connecting yet.
    pub fn new(url: &str) -> redis::RedisResult<Self> {
        let client = redis::Client::open(url)?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(Duration::from_millis(250)))
            .set_response_timeout(Some(Duration::from_millis(250)))
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_millis(500));
        Ok(Self {
            conn: ConnectionManager::new_lazy_with_config(client, config)?,
            raise: redis::Script::new(RAISE),
        })
    }
}

fn floor_key(caller: &str) -> String {
    format!("basis:read-floor:{caller}")
}

impl SharedFloors for RedisFloors {
    fn floor<'a>(&'a self, key: &'a str) -> FloorFuture<'a, Option<u64>> {
        Box::pin(async move {
            let mut conn = self.conn.clone();
            redis::AsyncCommands::get::<_, Option<u64>>(&mut conn, floor_key(key))
                .await
                .map_err(|err| err.to_string())
        })
    }

    fn raise<'a>(&'a self, keys: &'a [&'a str], lsn: u64, ttl: Duration) -> FloorFuture<'a, ()> {
        Box::pin(async move {
            let mut conn = self.conn.clone();
            let mut invocation = self.raise.prepare_invoke();
            for key in keys {
                invocation.key(floor_key(key));
            }
            let ttl_ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1);
            invocation
                .arg(lsn)
                .arg(ttl_ms)
                .invoke_async::<i64>(&mut conn)
                .await
                .map(drop)
                .map_err(|err| err.to_string())
        })
    }
}

/// The key of the caller presenting `headers`, if it presents a credential.
fn caller_key(headers: &HeaderMap) -> Option<String> {
    if let Some(value) = headers.get(header::AUTHORIZATION) {
        return Some(key("authorization", value.as_bytes()));
    }
    if let Some(value) = headers.get("x-api-key") {
        return Some(key("authorization", value.as_bytes()));
    }
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .find_map(session_id_from_cookies)
        .map(|session| key("session", session.as_bytes()))
}

/// Names the signed-in account of the current request to the read scope (see
/// `Replicas::identify`); without replicas it does nothing.
pub async fn identify(store: &Store, user_id: &str) {
    if let Some(replicas) = store.replicas() {
        replicas.identify(&key("account", user_id.as_bytes())).await;
    }
}

/// The key of a session cookie set by the response (a sign-in), if any.
fn issued_session_key(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::SET_COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .find_map(session_id_from_cookies)
        .map(|session| key("session", session.as_bytes()))
}

/// A credential's key: never the credential itself, which must not sit in memory maps or
/// a shared store.
fn key(kind: &str, credential: &[u8]) -> String {
    let digest = Sha256::new()
        .chain_update(kind.as_bytes())
        .chain_update(b":")
        .chain_update(credential)
        .finalize();
    digest.iter().map(|byte| format!("{byte:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    #[test]
    fn a_caller_is_known_by_a_hash_of_its_credential_and_anonymous_callers_by_nothing() {
        let mut headers = HeaderMap::new();
        assert_eq!(caller_key(&headers), None);
        headers.insert(
            header::COOKIE,
            HeaderValue::from_static("theme=dark; __Host-basis_session=abc"),
        );
        let by_cookie = caller_key(&headers).expect("a session cookie names the caller");
        assert!(!by_cookie.contains("abc"));
        let mut issued = HeaderMap::new();
        issued.insert(
            header::SET_COOKIE,
            HeaderValue::from_static("__Host-basis_session=abc; Path=/; Secure; HttpOnly"),
        );
        assert_eq!(issued_session_key(&issued), Some(by_cookie.clone()));
        headers.insert(header::AUTHORIZATION, HeaderValue::from_static("Bearer t"));
        let by_token = caller_key(&headers).expect("a bearer token names the caller");
        assert_ne!(by_token, by_cookie, "the header comes first");
    }
}
