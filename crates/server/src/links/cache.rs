//! The code → link lookup cache of the redirect path.
//!
//! A bounded in-process map (moka, TinyLFU admission) holding found links and, for a shorter
//! time, codes that do not exist, so a scan of random codes does not reach the database.
//! Writes through the API invalidate their entry. Entries also expire on their own, which
//! bounds how long another instance (that did not see the write) can serve a changed link.
//! This is the seam the two-tier cache replaces.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::http::HeaderValue;
use basis_store::links::LinkRow;
use moka::sync::Cache;

/// How long a found link is trusted.
const FOUND_TTL: Duration = Duration::from_secs(60);
/// How long an unknown code is remembered as unknown.
const MISSING_TTL: Duration = Duration::from_secs(10);

/// A link as the redirect path needs it, with its `Location` header value prepared once.
#[derive(Debug)]
pub struct CachedLink {
    /// The stored row.
    pub row: LinkRow,
    /// `row.long_url` as a header value.
    pub location: HeaderValue,
}

impl CachedLink {
    /// Prepares a row; `None` if its URL cannot be a header value (never for URLs that
    /// passed validation, which rejects control characters).
    pub fn new(row: LinkRow) -> Option<Arc<Self>> {
        let location = HeaderValue::from_str(&row.long_url).ok()?;
        Some(Arc::new(Self { row, location }))
    }
}

/// What the cache knows about a code.
pub type Entry = Option<Arc<CachedLink>>;

struct TtlByKind;

impl moka::Expiry<String, Entry> for TtlByKind {
    fn expire_after_create(&self, _key: &String, value: &Entry, _now: Instant) -> Option<Duration> {
        Some(if value.is_some() {
            FOUND_TTL
        } else {
            MISSING_TTL
        })
    }

    fn expire_after_update(
        &self,
        key: &String,
        value: &Entry,
        now: Instant,
        _current: Option<Duration>,
    ) -> Option<Duration> {
        self.expire_after_create(key, value, now)
    }
}

/// The lookup cache; clones share the same entries.
#[derive(Clone)]
pub struct LinkCache {
    entries: Cache<String, Entry>,
}

impl std::fmt::Debug for LinkCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LinkCache")
            .field("entries", &self.entries.entry_count())
            .finish()
    }
}

impl LinkCache {
    /// A cache holding at most `capacity` codes.
    pub fn new(capacity: u64) -> Self {
        Self {
            entries: Cache::builder()
                .max_capacity(capacity)
                .expire_after(TtlByKind)
                .build(),
        }
    }

    /// `Some(entry)` on a hit (the entry itself may say "no such code"), `None` on a miss.
    pub fn get(&self, code: &str) -> Option<Entry> {
        let hit = self.entries.get(code);
        let outcome = if hit.is_some() { "hit" } else { "miss" };
        metrics::counter!("basis_link_cache_lookups_total", "outcome" => outcome).increment(1);
        hit
    }

    /// Remembers what the database said about `code`.
    pub fn put(&self, code: &str, entry: Entry) {
        self.entries.insert(code.to_owned(), entry);
    }

    /// Forgets `code` after a write.
    pub fn invalidate(&self, code: &str) {
        self.entries.invalidate(code);
    }
}
