//! Hash-map keys for the memory store: `(rule, subject)` hashed once, looked up without
//! allocating.
//!
//! The hash is computed once (it also picks the shard) and stored in the key, so the
//! per-shard map uses a pass-through hasher instead of hashing the strings again.

use std::cmp::Ordering;
use std::hash::{BuildHasher, Hash, Hasher};

/// The owned key stored in a shard's map.
#[derive(Debug)]
pub(super) struct OwnedKey {
    hash: u64,
    rule: Box<str>,
    subject: Box<str>,
}

/// A borrowed view used for lookups.
#[derive(Debug, Clone, Copy)]
pub(super) struct KeyRef<'a> {
    pub hash: u64,
    pub rule: &'a str,
    pub subject: &'a str,
}

impl<'a> KeyRef<'a> {
    pub fn new(hasher: &impl BuildHasher, rule: &'a str, subject: &'a str) -> Self {
        let mut h = hasher.build_hasher();
        rule.hash(&mut h);
        subject.hash(&mut h);
        Self {
            hash: h.finish(),
            rule,
            subject,
        }
    }

    pub fn of(key: &'a OwnedKey) -> Self {
        Self {
            hash: key.hash,
            rule: &key.rule,
            subject: &key.subject,
        }
    }

    pub fn to_owned_key(self) -> OwnedKey {
        OwnedKey {
            hash: self.hash,
            rule: self.rule.into(),
            subject: self.subject.into(),
        }
    }

    /// A total order over keys (hash first), used to take several keys in one order.
    pub fn order(&self, other: &Self) -> Ordering {
        (self.hash, self.rule, self.subject).cmp(&(other.hash, other.rule, other.subject))
    }
}

impl papaya::Equivalent<OwnedKey> for KeyRef<'_> {
    fn equivalent(&self, key: &OwnedKey) -> bool {
        self.hash == key.hash && self.rule == &*key.rule && self.subject == &*key.subject
    }
}

impl Hash for KeyRef<'_> {
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write_u64(self.hash);
    }
}

impl Hash for OwnedKey {
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write_u64(self.hash);
    }
}

impl PartialEq for OwnedKey {
    fn eq(&self, other: &Self) -> bool {
        KeyRef::of(self).order(&KeyRef::of(other)).is_eq()
    }
}

impl Eq for OwnedKey {}

/// A hasher that passes the precomputed `u64` through.
#[derive(Default, Clone, Copy)]
pub(super) struct PassThrough(u64);

impl Hasher for PassThrough {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // Only `write_u64` is used by the keys above; fold anything else in anyway.
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

/// `BuildHasher` for [`PassThrough`].
#[derive(Default, Clone, Copy)]
pub(super) struct BuildPassThrough;

impl BuildHasher for BuildPassThrough {
    type Hasher = PassThrough;

    fn build_hasher(&self) -> PassThrough {
        PassThrough(0)
    }
}
