//! Login throttling shared by every instance: the identity crate's [`Throttle`] seam backed
//! by the rate limiter's Redis store.
//!
//! With one instance the in-memory [`FixedWindow`] is exact and needs nothing. With several
//! behind a balancer, per-instance counters would let a guesser multiply the allowance by
//! the number of instances, so when Redis is configured every instance counts in the same
//! Redis key (one atomic script per attempt). Redis decides on its own clock, so the
//! server's clock is not consulted there; if Redis fails or is late, each instance falls
//! back to its own in-memory window with the same allowance rather than letting guesses
//! through unthrottled.

use std::num::NonZeroU64;
use std::sync::Arc;
use std::time::Duration;

use basis_auth::throttle::{Action, BoxFuture, FixedWindow, Throttle, Verdict};
use basis_ratelimit::{
    Algorithm, Check, Limiter, MemoryConfig, OutageConfig, OutagePolicy, Policy, RedisConfig,
    RedisStore,
};

/// The throttle for this configuration: shared through Redis when `redis_url` is set,
/// in memory otherwise.
pub fn for_config(redis_url: Option<&str>) -> anyhow::Result<Arc<dyn Throttle>> {
    Ok(match redis_url {
        Some(url) => Arc::new(SharedThrottle::connect(url)?),
        None => Arc::new(FixedWindow::default()),
    })
}

/// Throttle counters kept in Redis, one fixed window per (action, subject).
#[derive(Debug)]
pub struct SharedThrottle {
    limiter: Limiter,
    login: Policy,
    password_reset: Policy,
    second_factor: Policy,
}

impl SharedThrottle {
    /// Prepares the store without waiting for Redis (it connects on first use).
    pub fn connect(redis_url: &str) -> anyhow::Result<Self> {
        let store = RedisStore::connect_lazy(&RedisConfig {
            key_prefix: "basis:throttle".into(),
            ..RedisConfig::new(redis_url)
        })?;
        let outage = OutageConfig {
            timeout: Duration::from_millis(100),
            policy: OutagePolicy::Fallback,
        };
        Ok(Self {
            limiter: Limiter::redis(store, outage, MemoryConfig::default()),
            login: policy(Action::Login)?,
            password_reset: policy(Action::PasswordReset)?,
            second_factor: policy(Action::SecondFactor)?,
        })
    }
}

fn policy(action: Action) -> anyhow::Result<Policy> {
    let (attempts, window_ms) = action.allowance();
    let limit = NonZeroU64::new(u64::from(attempts)).expect("allowances are positive");
    let period = Duration::from_millis(window_ms.unsigned_abs());
    Ok(Policy::new(Algorithm::FixedWindow, limit, period)?)
}

impl Throttle for SharedThrottle {
    fn attempt<'a>(
        &'a self,
        action: Action,
        subject: &'a str,
        _now_ms: i64,
    ) -> BoxFuture<'a, Verdict> {
        let policy = match action {
            Action::Login => &self.login,
            Action::PasswordReset => &self.password_reset,
            Action::SecondFactor => &self.second_factor,
        };
        Box::pin(async move {
            let verdict = self
                .limiter
                .check(&[Check {
                    policy,
                    rule: action.as_str(),
                    subject,
                    cost: 1,
                }])
                .await;
            match verdict.decisions.first() {
                Some(decision) if !decision.allowed => {
                    Err(decision.retry_after.as_secs_f64().ceil().max(1.0) as u64)
                }
                _ => Ok(()),
            }
        })
    }
}
