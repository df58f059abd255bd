//! What can be a key or a value.

use std::fmt::Display;
use std::hash::Hash;
use std::str::FromStr;

use serde::Serialize;
use serde::de::DeserializeOwned;

/// A cache key.
///
/// The L1 is keyed by the value itself (no allocation on a hit); the textual form names the
/// Redis key (`<namespace>:v<version>:<key>`), is matched by prefix invalidation, and travels
/// in invalidation messages, so it must round-trip through [`CacheKey::parse_key`].
/// Every `Display + FromStr` type (`String`, integers, newtypes like a short code) is one.
pub trait CacheKey: Hash + Eq + Clone + Send + Sync + 'static {
    /// The textual form of the key.
    fn key_string(&self) -> String;
    /// Parses the textual form back; `None` if it is not a valid key.
    fn parse_key(text: &str) -> Option<Self>;
}

impl<T> CacheKey for T
where
    T: Display + FromStr + Hash + Eq + Clone + Send + Sync + 'static,
{
    fn key_string(&self) -> String {
        self.to_string()
    }

    fn parse_key(text: &str) -> Option<Self> {
        text.parse().ok()
    }
}

/// A cached value: cloned on every hit, so make it cheap to clone (`Arc<T>`, small structs).
/// It is serialised with postcard for Redis.
pub trait CacheValue: Clone + Send + Sync + Serialize + DeserializeOwned + 'static {}

impl<T> CacheValue for T where T: Clone + Send + Sync + Serialize + DeserializeOwned + 'static {}
