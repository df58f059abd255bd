//! The Redis store: one atomic Lua script per decision, on the Redis server's clock.
//!
//! * **One round trip.** All checks of a subject go to one `EVALSHA`; checks for several
//!   subjects go out as one pipeline.
//! * **Atomic.** The script (`check.lua`: `TIME`, `GET`, `SET … PX` for all but the
//!   log) reads, decides and writes inside Redis, so two
//!   instances can never both spend the last unit.
//! * **Loaded once.** [`redis::Script`] sends `EVALSHA` and falls back to loading the
//!   script when Redis answers `NOSCRIPT` (after a restart or a `SCRIPT FLUSH`).
//! * **One clock.** The script reads `TIME` on the server; instance clocks never matter.
//! * **Self-cleaning.** Every key gets a TTL equal to the time until it would be fresh.
//! * **Cluster-ready.** Keys are `<prefix>:{<subject>}:<rule>:<algorithm>`: the hash tag puts every
//!   rule of one subject in the same slot, so the script's keys never cross slots.
//!
//! The connection is a [`ConnectionManager`], which reconnects by itself after errors;
//! the [`crate::Limiter`] wraps every call in the decision timeout and outage policy.

use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{Client, Pipeline, Script};

use super::{Check, Store};
use crate::algorithm::{Algorithm, Decision};
use crate::error::Error;

/// How to reach Redis.
#[derive(Debug, Clone)]
pub struct RedisConfig {
    /// `redis://host:port/db` (or `rediss://`).
    pub url: String,
    /// Prefix of every key, so several applications can share one Redis.
    pub key_prefix: String,
}

impl RedisConfig {
    /// The given URL with the default prefix `basis:rl`.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            key_prefix: "basis:rl".into(),
        }
    }
}

/// Rate-limit state in Redis, shared by every instance. Cheap to clone.
#[derive(Clone)]
pub struct RedisStore {
    conn: ConnectionManager,
    script: Script,
    prefix: String,
}

impl RedisStore {
    /// Prepares a store without waiting for Redis: the connection is made on first use
    /// and remade after failures, so a process can start while Redis is down.
    ///
    /// Must be called inside a Tokio runtime.
    pub fn connect_lazy(config: &RedisConfig) -> Result<Self, Error> {
        let client = Client::open(config.url.as_str())?;
        let manager = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(Duration::from_millis(500)))
            .set_number_of_retries(1)
            .set_min_delay(Duration::from_millis(50))
            .set_max_delay(Duration::from_millis(500));
        let conn = ConnectionManager::new_lazy_with_config(client, manager)?;
        Ok(Self {
            conn,
            script: Script::new(include_str!("check.lua")),
            prefix: config.key_prefix.clone(),
        })
    }

    /// The Redis key holding the state of `rule` (with `algorithm`) for `subject`.
    ///
    /// The algorithm is part of the name so that changing a rule's algorithm starts
    /// afresh instead of meeting state of another shape.
    pub fn key(&self, rule: &str, algorithm: Algorithm, subject: &str) -> String {
        format!("{}:{{{subject}}}:{rule}:{}", self.prefix, algorithm.name())
    }

    /// Sends `PING`; `Ok` once Redis answers.
    pub async fn ping(&self) -> Result<(), Error> {
        let mut conn = self.conn.clone();
        redis::cmd("PING")
            .query_async::<String>(&mut conn)
            .await
            .map(drop)
            .map_err(Error::from)
    }

    fn invocation<'s>(&'s self, checks: &[&Check<'_>]) -> redis::ScriptInvocation<'s> {
        let mut inv = self.script.prepare_invoke();
        for c in checks {
            inv.key(self.key(c.rule, c.policy.algorithm(), c.subject))
                .arg(algorithm_id(c.policy.algorithm()))
                .arg(c.policy.limit())
                .arg(micros(c.policy.period()))
                .arg(c.cost);
        }
        inv
    }

    async fn check_groups(&self, groups: &[Vec<&Check<'_>>]) -> Result<Vec<Vec<i64>>, Error> {
        let mut conn = self.conn.clone();
        if let [group] = groups {
            let reply: Vec<i64> = self.invocation(group).invoke_async(&mut conn).await?;
            return Ok(vec![reply]);
        }
        // Several subjects: one EVALSHA each, in a single pipelined round trip.
        let mut pipe = Pipeline::with_capacity(groups.len());
        for group in groups {
            let mut cmd = redis::cmd("EVALSHA");
            cmd.arg(self.script.get_hash()).arg(group.len());
            for c in group {
                cmd.arg(self.key(c.rule, c.policy.algorithm(), c.subject));
            }
            for c in group {
                cmd.arg(algorithm_id(c.policy.algorithm()))
                    .arg(c.policy.limit())
                    .arg(micros(c.policy.period()))
                    .arg(c.cost);
            }
            pipe.add_command(cmd);
        }
        match pipe.query_async(&mut conn).await {
            Err(e) if e.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::NoScript) => {
                self.script.prepare_invoke().load_async(&mut conn).await?;
                Ok(pipe.query_async(&mut conn).await?)
            }
            other => Ok(other?),
        }
    }
}

impl Store for RedisStore {
    async fn check(&self, checks: &[Check<'_>]) -> Result<Vec<Decision>, Error> {
        // Group by subject (first-seen order): one script call per hash slot.
        let mut groups: Vec<Vec<usize>> = Vec::new();
        for (i, c) in checks.iter().enumerate() {
            match groups
                .iter_mut()
                .find(|g| checks[g[0]].subject == c.subject)
            {
                Some(g) => g.push(i),
                None => groups.push(vec![i]),
            }
        }
        let by_group: Vec<Vec<&Check<'_>>> = groups
            .iter()
            .map(|g| g.iter().map(|&i| &checks[i]).collect())
            .collect();
        let replies = self.check_groups(&by_group).await?;
        let mut out = vec![None; checks.len()];
        for (group, reply) in groups.iter().zip(&replies) {
            if reply.len() != group.len() * 4 {
                return Err(Error::Protocol(format!(
                    "expected {} integers, got {}",
                    group.len() * 4,
                    reply.len()
                )));
            }
            for (&i, r) in group.iter().zip(reply.chunks_exact(4)) {
                out[i] = Some(decision(&checks[i], r));
            }
        }
        out.into_iter()
            .map(|d| d.ok_or_else(|| Error::Protocol("a check got no answer".into())))
            .collect()
    }
}

impl std::fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisStore")
            .field("prefix", &self.prefix)
            .field("script", &self.script.get_hash())
            .finish_non_exhaustive()
    }
}

fn decision(check: &Check<'_>, r: &[i64]) -> Decision {
    let us = |v: i64| Duration::from_micros(u64::try_from(v).unwrap_or(0));
    Decision {
        allowed: r[0] == 1,
        limit: check.policy.limit(),
        remaining: u64::try_from(r[1]).unwrap_or(0),
        reset_after: us(r[2]),
        retry_after: if r[0] == 1 {
            Duration::ZERO
        } else {
            us(r[3]).max(Duration::from_micros(1))
        },
    }
}

fn algorithm_id(a: Algorithm) -> u8 {
    match a {
        Algorithm::TokenBucket => 1,
        Algorithm::Gcra => 2,
        Algorithm::FixedWindow => 3,
        Algorithm::SlidingLog => 4,
        Algorithm::SlidingWindow => 5,
    }
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}
