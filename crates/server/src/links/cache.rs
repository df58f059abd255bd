//! The code → link lookup of the redirect path, on the two-tier cache (`basis-cache`).
//!
//! L1 is in-process (TinyLFU, bounded in bytes); with `REDIS_URL` set, L2 is Redis, shared
//! by every instance, and a write on one instance evicts the entry from the others' L1
//! through Redis pub/sub. Codes that do not exist are cached too, for a shorter time, so a
//! scan of random codes does not reach the database. Concurrent misses on one code run a
//! single database query.

use std::borrow::Cow;
use std::sync::Arc;
use std::time::Duration;

use super::rules::Rules;
use axum::http::HeaderValue;
use basis_cache::Cache;
use basis_store::Store;
use basis_store::links::{self, LinkKey, LinkRow};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::ApiError;

/// How long a found link is trusted without a write invalidating it.
const FOUND_TTL: Duration = Duration::from_secs(300);
/// How long an unknown code is remembered as unknown.
const MISSING_TTL: Duration = Duration::from_secs(10);
/// Bumped whenever [`LinkRow`] changes shape, so old entries in Redis are never decoded.
const SHAPE_VERSION: u32 = 5;

/// A link as the redirect path needs it, with its `Location` header value prepared once.
#[derive(Debug)]
pub struct CachedLink {
    /// The stored row.
    pub row: LinkRow,
    /// `row.long_url` as a header value.
    pub location: HeaderValue,
    /// Its routing rules, parsed once here rather than on each redirect.
    pub rules: Option<Rules>,
}

impl CachedLink {
    /// Prepares a row; `None` if its URL cannot be a header value (never for URLs that
    /// passed validation, which rejects control characters).
    pub fn new(row: LinkRow) -> Option<Arc<Self>> {
        let location = HeaderValue::from_str(&row.long_url).ok()?;
        let rules = row.rules.as_deref().and_then(Rules::from_stored);
        Some(Arc::new(Self {
            row,
            location,
            rules,
        }))
    }
}

/// Only the row travels to Redis; the header value is rebuilt on the way back.
impl Serialize for CachedLink {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.row.serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for CachedLink {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let row = LinkRow::deserialize(deserializer)?;
        let location = HeaderValue::from_str(&row.long_url).map_err(serde::de::Error::custom)?;
        let rules = row.rules.as_deref().and_then(Rules::from_stored);
        Ok(Self {
            row,
            location,
            rules,
        })
    }
}

/// The cache key of `code` on `domain`: the code itself on the default domain (so one
/// domain costs nothing more), `domain/code` on another (a code never holds a `/`).
pub fn key<'a>(code: &'a str, domain: Option<&str>) -> Cow<'a, str> {
    match domain {
        None => Cow::Borrowed(code),
        Some(domain) => Cow::Owned(format!("{domain}/{code}")),
    }
}

/// The lookup cache; clones share the same entries.
#[derive(Debug, Clone)]
pub struct LinkCache {
    entries: Cache<String, Arc<CachedLink>>,
}

impl LinkCache {
    /// A cache using at most `max_bytes` in process, and Redis as L2 when `redis_url` is set.
    /// Must be called inside the runtime (the Redis tier starts background tasks).
    pub fn new(max_bytes: u64, redis_url: Option<&str>) -> Result<Self, basis_cache::Error> {
        let entries = Cache::builder("links")
            .version(SHAPE_VERSION)
            .ttl(FOUND_TTL)
            .negative_ttl(MISSING_TTL)
            .l1_max_bytes(max_bytes)
            .weigher(|code: &String, link: &Arc<CachedLink>| {
                let bytes = 160 + code.len() + 2 * link.row.long_url.len();
                u32::try_from(bytes).unwrap_or(u32::MAX)
            })
            .redis_url(redis_url)
            .build()?;
        Ok(Self { entries })
    }

    /// The link cached under `code` ([`key`]: the code and its domain), found in the
    /// database by `lookup` on `domain`: from L1 without awaiting anything when it is
    /// there, else from L2 or the database (one query for all concurrent callers).
    pub async fn find(
        &self,
        store: &Store,
        code: &str,
        lookup: LinkKey<'_>,
        domain: Option<&str>,
    ) -> Result<Option<Arc<CachedLink>>, ApiError> {
        if let Some(hit) = self.entries.peek(code) {
            return Ok(hit.into_option());
        }
        // Boxed: the load's state (L2, the database query) would otherwise sit inside the
        // future of every redirect, hits included, and be copied with it.
        Box::pin(self.entries.get_or_load(&code.to_owned(), || async {
            let row = links::find_in(store, lookup, domain).await?;
            Ok::<_, basis_store::Error>(row.and_then(CachedLink::new))
        }))
        .await
        .map_err(ApiError::from)
    }

    /// Whether this process's memory holds a live answer for `code`, found or not found:
    /// [`LinkCache::find`] then answers without any I/O. (For tests and diagnostics.)
    pub fn holds(&self, code: &str) -> bool {
        self.entries.peek(code).is_some()
    }

    /// The cache underneath, for its figures and health (the admin overview).
    pub fn cache(&self) -> &Cache<String, Arc<CachedLink>> {
        &self.entries
    }

    /// Forgets `code` here and, through Redis, on every other instance.
    pub async fn invalidate(&self, code: &str) {
        self.entries.invalidate(&code.to_owned()).await;
    }

    /// Stops the background tasks of the Redis tier.
    pub async fn shutdown(&self) {
        self.entries.shutdown().await;
    }
}
