//! Where rate-limit state lives: [`MemoryStore`] in this process, [`RedisStore`] shared
//! by every instance. Both answer the same [`Store`] contract (`tests/contract.rs`).

mod key;
mod memory;
mod redis;
mod slot;

use std::future::Future;

use crate::algorithm::{Decision, Policy};
use crate::error::Error;

pub use self::memory::{MemoryConfig, MemoryStore};
pub use self::redis::{RedisConfig, RedisStore};

/// One rule to check for one subject.
#[derive(Debug, Clone, Copy)]
pub struct Check<'a> {
    /// The algorithm and quota.
    pub policy: &'a Policy,
    /// The rule's name; part of the key, so two rules never share state.
    pub rule: &'a str,
    /// Who is limited: an IP key, `user:42`, `key:abc`…
    pub subject: &'a str,
    /// Units this request costs (usually 1).
    pub cost: u64,
}

/// A place that decides checks atomically.
///
/// `check` answers one [`Decision`] per check, in order. When several checks share a
/// subject they are decided atomically: all consume their cost, or none does if any is
/// denied. (The memory store extends that to all checks of the call; the Redis store to
/// the checks of each subject, because Redis Cluster can only run a script on keys of one
/// hash slot.)
pub trait Store: Send + Sync {
    /// Decides `checks` in one step (one round trip for Redis).
    fn check(
        &self,
        checks: &[Check<'_>],
    ) -> impl Future<Output = Result<Vec<Decision>, Error>> + Send;
}
