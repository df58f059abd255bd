//! `basis-cache`: a typed two-tier cache (in-process moka L1, optional shared Redis L2)
//! with single-flight loading, three write strategies and coherent invalidation.
//!
//! # Where things are
//!
//! | file | what |
//! |---|---|
//! | `cache.rs` | [`Cache`], the handle, and the read path: L1 → L2 → single-flight loader, XFetch |
//! | `fill.rs` | building entries (jittered TTL), reading L2 into L1, writing L2 |
//! | `write.rs` | inserts, write-through, invalidation by key / prefix / all |
//! | `write_behind.rs` | [`WriteBehind`]: a bounded buffer flushed by size, interval and shutdown |
//! | `builder.rs` | [`CacheBuilder`]: TTLs, jitter, L1 budget and policy, Redis URL, clock |
//! | `policy.rs` | the pure maths: TTL jitter, XFetch early refresh |
//! | `flight.rs` | single-flight: one load per key, waiters share its outcome |
//! | `l1.rs` | moka, bounded by bytes, LRU or TinyLFU ([`Eviction`]) |
//! | `l2.rs` | Redis with a timeout per call and a circuit breaker (pass-through when down) |
//! | `coherence.rs` | pub/sub invalidation between instances, resubscription with backoff |
//! | `random.rs` | injected randomness ([`FixedRandom`]); time is `basis_clock`'s ([`ManualClock`]) |
//! | `metrics.rs` | counters (`basis_cache_*`), labelled by namespace |
//! | `trace.rs` | spans per read and per tier (hit or miss) for the trace exporter |
//!
//! # Use
//!
//! ```no_run
//! # async fn demo() -> Result<(), basis_cache::Error> {
//! use basis_cache::Cache;
//! let links: Cache<String, String> = Cache::builder("links")
//!     .redis_url(std::env::var("REDIS_URL").ok().as_deref())
//!     .build()?;
//! let url = links
//!     .get_or_load(&"abc123".to_string(), || async {
//!         // The database lookup; Ok(None) is cached as "not found" for the negative TTL.
//!         Ok::<_, std::io::Error>(Some("https://example.com".to_string()))
//!     })
//!     .await?;
//! # let _ = url; Ok(()) }
//! ```
//!
//! Redis being slow or down never surfaces as an error: every L2 call is bounded by a
//! timeout (50 ms by default), failures open a short circuit breaker, and the cache
//! passes through to the loader until Redis answers again. See `docs/cache.md`.

mod builder;
mod cache;
mod coherence;
mod error;
mod fill;
mod flight;
mod key;
mod l1;
mod l2;
mod metrics;
mod policy;
mod random;
mod trace;
mod write;
mod write_behind;

pub use basis_clock::{Clock, ManualClock, SystemClock};
pub use builder::CacheBuilder;
pub use cache::{Cache, Cached, HitCounts, L1Stats};
pub use error::{BoxError, Error, SharedError};
pub use key::{CacheKey, CacheValue};
pub use l1::{Eviction, Weigher};
pub use random::{FixedRandom, Random, SplitMix};
pub use write_behind::{WriteBehind, WriteBehindConfig, WriteSink};
