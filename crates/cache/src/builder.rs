//! Configuration of a cache namespace, and its construction.

use std::marker::PhantomData;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use tokio::sync::watch;

use crate::cache::{Cache, Inner, Settings};
use crate::coherence::Subscriber;
use crate::error::Error;
use crate::flight::Flights;
use crate::key::{CacheKey, CacheValue};
use crate::l1::{Eviction, L1, Weigher};
use crate::l2::{L2, L2Settings};
use crate::metrics::Metrics;
use crate::random::{Random, SplitMix};
use basis_clock::{Clock, SystemClock};

/// Builds a [`Cache`]; start from [`Cache::builder`]. Every setting has a production default.
pub struct CacheBuilder<K, V> {
    namespace: String,
    version: u32,
    settings: Settings,
    l1_max_bytes: u64,
    eviction: Eviction,
    weigher: Option<Weigher<K, V>>,
    redis_url: Option<String>,
    redis_timeout: Duration,
    redis_cooldown: Duration,
    clock: Arc<dyn Clock>,
    random: Arc<dyn Random>,
    _types: PhantomData<fn() -> (K, V)>,
}

impl<K: CacheKey, V: CacheValue> CacheBuilder<K, V> {
    pub(crate) fn new(namespace: &str) -> Self {
        Self {
            namespace: namespace.to_owned(),
            version: 1,
            settings: Settings {
                ttl: Duration::from_secs(300),
                negative_ttl: Duration::from_secs(30),
                jitter: 0.1,
                beta: 1.0,
                l1_max_ttl: Duration::from_secs(60),
            },
            l1_max_bytes: 64 * 1024 * 1024,
            eviction: Eviction::TinyLfu,
            weigher: None,
            redis_url: None,
            redis_timeout: Duration::from_millis(50),
            redis_cooldown: Duration::from_secs(1),
            clock: Arc::new(SystemClock),
            random: Arc::new(SplitMix::from_entropy()),
            _types: PhantomData,
        }
    }

    /// The shape version of `V` (default 1). Bump it whenever the value's serialised shape
    /// changes: keys are `<namespace>:v<version>:<key>`, so old and new deployments never
    /// read each other's entries.
    pub fn version(mut self, version: u32) -> Self {
        self.version = version;
        self
    }

    /// How long a found value lives (default 5 min), before jitter.
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.settings.ttl = ttl;
        self
    }

    /// How long a "not found" answer is remembered (default 30 s), before jitter.
    pub fn negative_ttl(mut self, ttl: Duration) -> Self {
        self.settings.negative_ttl = ttl;
        self
    }

    /// Shortens each TTL by a random fraction in `[0, jitter]` (default 0.1) so entries
    /// written together do not expire together.
    pub fn ttl_jitter(mut self, jitter: f64) -> Self {
        self.settings.jitter = jitter.clamp(0.0, 1.0);
        self
    }

    /// XFetch's `beta` (default 1.0; 0 disables early refresh; above 1 refreshes earlier).
    pub fn early_refresh(mut self, beta: f64) -> Self {
        self.settings.beta = beta.max(0.0);
        self
    }

    /// The L1 budget in bytes as estimated by the weigher (default 64 MiB).
    pub fn l1_max_bytes(mut self, bytes: u64) -> Self {
        self.l1_max_bytes = bytes;
        self
    }

    /// The L1 eviction policy (default TinyLFU).
    pub fn eviction(mut self, eviction: Eviction) -> Self {
        self.eviction = eviction;
        self
    }

    /// Estimates the bytes of one entry, heap included (default: the inline sizes of `K`
    /// and `V`, right for plain data but not for strings; give one for those).
    pub fn weigher(mut self, weigher: impl Fn(&K, &V) -> u32 + Send + Sync + 'static) -> Self {
        self.weigher = Some(Arc::new(weigher));
        self
    }

    /// Turns on the Redis L2 and cross-instance invalidation when `url` is `Some`
    /// (pass `REDIS_URL` straight through). `None` or an empty string keeps the cache
    /// in-process.
    pub fn redis_url(mut self, url: Option<&str>) -> Self {
        self.redis_url = url.filter(|u| !u.trim().is_empty()).map(str::to_owned);
        self
    }

    /// The longest any single Redis call may take before the cache passes it by
    /// (default 50 ms).
    pub fn redis_timeout(mut self, timeout: Duration) -> Self {
        self.redis_timeout = timeout;
        self
    }

    /// How long L2 is skipped after a Redis failure before it is tried again (default 1 s).
    pub fn redis_cooldown(mut self, cooldown: Duration) -> Self {
        self.redis_cooldown = cooldown;
        self
    }

    /// With an L2: the longest an L1 copy is kept (default 60 s). This is the staleness
    /// bound when an invalidation message is lost.
    pub fn l1_max_ttl(mut self, ttl: Duration) -> Self {
        self.settings.l1_max_ttl = ttl;
        self
    }

    /// The clock used for expiry and early refresh (tests pass a `ManualClock`).
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// The randomness used for jitter and early refresh (tests pass a `FixedRandom`).
    pub fn random(mut self, random: Arc<dyn Random>) -> Self {
        self.random = random;
        self
    }

    /// Builds the cache. With a Redis URL this must run inside a Tokio runtime (it spawns
    /// the invalidation subscriber); Redis itself need not be up.
    pub fn build(self) -> Result<Cache<K, V>, Error> {
        validate_namespace(&self.namespace)?;
        let metrics = Metrics::new(&self.namespace);
        let weigher = self.weigher.unwrap_or_else(|| {
            let inline = (std::mem::size_of::<K>() + std::mem::size_of::<V>()) as u32;
            Arc::new(move |_: &K, _: &V| inline)
        });
        let l1 = L1::new(self.l1_max_bytes, self.eviction, weigher, &metrics);
        let instance = SplitMix::from_entropy().next_u64() ^ u64::from(std::process::id());
        let (shutdown_tx, shutdown_rx) = watch::channel(());
        let subscribed = Arc::new(AtomicBool::new(false));
        let mut subscriber = None;
        let l2 = match &self.redis_url {
            None => None,
            Some(url) => {
                let runtime = tokio::runtime::Handle::try_current().map_err(|_| {
                    Error::Config("a cache with Redis must be built inside a Tokio runtime".into())
                })?;
                let client = redis::Client::open(url.as_str())
                    .map_err(|e| Error::Config(format!("bad Redis URL: {e}")))?;
                let settings = L2Settings {
                    namespace_prefix: format!("{}:v{}:", self.namespace, self.version),
                    timeout: self.redis_timeout,
                    cooldown: self.redis_cooldown,
                };
                let l2 = L2::new(
                    client.clone(),
                    settings,
                    self.clock.clone(),
                    metrics.clone(),
                )
                .map_err(|e| Error::Config(format!("Redis client: {e}")))?;
                let task = Subscriber {
                    client,
                    channel: l2.channel.clone(),
                    instance,
                    l1: l1.clone(),
                    metrics: metrics.clone(),
                    subscribed: subscribed.clone(),
                    shutdown: shutdown_rx,
                };
                subscriber = Some(runtime.spawn(task.run()));
                Some(l2)
            }
        };
        Ok(Cache::from_inner(Inner {
            namespace: self.namespace,
            settings: self.settings,
            l1,
            l2,
            flights: Flights::new(),
            clock: self.clock,
            random: self.random,
            metrics,
            instance,
            subscribed,
            shutdown: shutdown_tx,
            subscriber: std::sync::Mutex::new(subscriber),
        }))
    }
}

impl<K: CacheKey, V: CacheValue> Cache<K, V> {
    /// Starts configuring a cache for `namespace` (`[A-Za-z0-9._-]`, e.g. `"links"`).
    pub fn builder(namespace: &str) -> CacheBuilder<K, V> {
        CacheBuilder::new(namespace)
    }

    /// A cache with every default: in-process only when `redis_url` is `None`, L1 + Redis
    /// L2 with cross-instance invalidation when it is `Some` (pass `REDIS_URL` through).
    pub fn new(namespace: &str, redis_url: Option<&str>) -> Result<Self, Error> {
        Self::builder(namespace).redis_url(redis_url).build()
    }
}

/// Namespaces become part of Redis keys and channel names: keep them plain.
fn validate_namespace(namespace: &str) -> Result<(), Error> {
    let ok = !namespace.is_empty()
        && namespace.len() <= 64
        && namespace
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if ok {
        Ok(())
    } else {
        Err(Error::Config(format!(
            "namespace {namespace:?} must be 1–64 characters of [A-Za-z0-9._-]"
        )))
    }
}
