//! The Redis store: one atomic Lua script per decision, on the Redis server's clock.
//!
//! * **One round trip.** A decision (all rules of one subject) is one group of one
//!   `EVALSHA`; rules of several subjects travel in the same call or pipeline.
//! * **Atomic.** The script (`check.lua`: `TIME`, `GET`, `SET … PX` for all but the
//!   log) reads, decides and writes inside Redis, so two instances can never both spend
//!   the last unit.
//! * **Loaded once.** Decisions are sent with `EVALSHA`; when Redis answers `NOSCRIPT`
//!   (after a restart or a `SCRIPT FLUSH`) the script is loaded with [`redis::Script`]
//!   and the call repeated.
//! * **One clock.** The script reads `TIME` on the server; instance clocks never matter.
//! * **Self-cleaning.** Every key gets a TTL equal to the time until it would be fresh.
//! * **Cluster-ready.** Keys are `<prefix>:{<subject>}:<rule>:<algorithm>`: the hash tag
//!   puts every rule of one subject in the same slot.
//!
//! **Coalescing.** Running a script costs Redis several microseconds of fixed overhead,
//! ten times a `SET`. With [`RedisConfig::coalesce`] on (the default), decisions that
//! arrive while a call is in flight are queued and sent together as one `EVALSHA` with
//! one group each: every decision still takes one round trip and stays atomic, but the
//! overhead is shared. One call may then touch keys of many subjects, which Redis Cluster
//! refuses, so turn it off there: each call then carries a single subject.
//!
//! The connection is a [`ConnectionManager`], which reconnects by itself after errors;
//! the [`crate::Limiter`] wraps every call in the decision timeout and outage policy.

use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{Client, Cmd, FromRedisValue, Pipeline, RedisError, Script};
use tokio::sync::{mpsc, oneshot};

use super::{Check, Store};
use crate::algorithm::{Algorithm, Decision};
use crate::error::Error;

/// The script's `now` argument meaning "read Redis's clock".
const SERVER_TIME: u64 = 0;
/// Most decisions coalesced into one script call.
const MAX_BATCH: usize = 128;
/// Decisions that may wait for the coalescing task before callers are refused.
const QUEUE: usize = 4_096;

/// How to reach Redis.
#[derive(Debug, Clone)]
pub struct RedisConfig {
    /// `redis://host:port/db` (or `rediss://`).
    pub url: String,
    /// Prefix of every key, so several applications can share one Redis.
    pub key_prefix: String,
    /// Coalesce concurrent decisions into one script call (off for Redis Cluster).
    pub coalesce: bool,
}

impl RedisConfig {
    /// The given URL with the default prefix `basis:rl`, coalescing on.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            key_prefix: "basis:rl".into(),
            coalesce: true,
        }
    }
}

/// The script arguments of one decision: the rules of one subject.
struct Group {
    keys: Vec<String>,
    /// Four numbers per rule: algorithm, limit, period in µs, cost.
    args: Vec<u64>,
}

/// Decisions waiting for the coalescing task, with where to send the replies.
struct Job {
    groups: Vec<Group>,
    reply: oneshot::Sender<Result<Vec<i64>, RedisError>>,
}

/// Rate-limit state in Redis, shared by every instance. Cheap to clone.
#[derive(Clone)]
pub struct RedisStore {
    conn: ConnectionManager,
    script: Script,
    prefix: String,
    queue: Option<mpsc::Sender<Job>>,
}

impl RedisStore {
    /// Prepares a store without waiting for Redis: the connection is made on first use
    /// and remade after failures, so a process can start while Redis is down.
    ///
    /// Must be called inside a Tokio runtime (it spawns the coalescing task).
    pub fn connect_lazy(config: &RedisConfig) -> Result<Self, Error> {
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| Error::NoRuntime)?;
        let client = Client::open(config.url.as_str())?;
        let manager = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(Duration::from_millis(500)))
            // Callers give up after their own timeout; this frees the coalescing task
            // when Redis hangs instead of failing.
            .set_response_timeout(Some(Duration::from_secs(1)))
            .set_number_of_retries(1)
            .set_min_delay(Duration::from_millis(50))
            .set_max_delay(Duration::from_millis(500));
        let conn = ConnectionManager::new_lazy_with_config(client, manager)?;
        let script = Script::new(include_str!("check.lua"));
        let queue = config.coalesce.then(|| {
            let (tx, rx) = mpsc::channel(QUEUE);
            runtime.spawn(coalesce(rx, conn.clone(), script.clone()));
            tx
        });
        Ok(Self {
            conn,
            script,
            prefix: config.key_prefix.clone(),
            queue,
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

    fn group(&self, checks: &[&Check<'_>]) -> Group {
        let mut args = Vec::with_capacity(checks.len() * 4);
        for c in checks {
            args.extend([
                algorithm_id(c.policy.algorithm()),
                c.policy.limit(),
                micros(c.policy.period()),
                c.cost,
            ]);
        }
        Group {
            keys: checks
                .iter()
                .map(|c| self.key(c.rule, c.policy.algorithm(), c.subject))
                .collect(),
            args,
        }
    }

    /// Sends the groups and returns the script's integers, four per rule, in order.
    async fn run(&self, groups: Vec<Group>) -> Result<Vec<i64>, Error> {
        if let Some(queue) = &self.queue {
            let (reply, answer) = oneshot::channel();
            queue
                .try_send(Job { groups, reply })
                .map_err(|_| Error::Overloaded)?;
            return answer
                .await
                .map_err(|_| Error::Overloaded)?
                .map_err(Error::from);
        }
        let mut conn = self.conn.clone();
        if let [group] = groups.as_slice() {
            let cmd = evalsha(&self.script, SERVER_TIME, [group]);
            return Ok(query(&mut conn, &self.script, &cmd).await?);
        }
        // Cluster: one call per subject (slot), all in one pipelined round trip.
        let mut pipe = Pipeline::with_capacity(groups.len());
        for group in &groups {
            pipe.add_command(evalsha(&self.script, SERVER_TIME, [group]));
        }
        let replies: Vec<Vec<i64>> = query(&mut conn, &self.script, &pipe).await?;
        Ok(replies.concat())
    }
}

/// The coalescing task: takes every queued decision, sends them as one script call and
/// hands each its share of the answer. Callers that gave up (timeout) are skipped.
async fn coalesce(mut rx: mpsc::Receiver<Job>, mut conn: ConnectionManager, script: Script) {
    while let Some(first) = rx.recv().await {
        let mut jobs = vec![first];
        while jobs.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(job) => jobs.push(job),
                Err(_) => break,
            }
        }
        jobs.retain(|job| !job.reply.is_closed());
        if jobs.is_empty() {
            continue;
        }
        let cmd = evalsha(&script, SERVER_TIME, jobs.iter().flat_map(|j| &j.groups));
        let result: Result<Vec<i64>, RedisError> = query(&mut conn, &script, &cmd).await;
        match result {
            Ok(all) => {
                let mut rest = all.as_slice();
                for job in jobs {
                    let n = 4 * job.groups.iter().map(|g| g.keys.len()).sum::<usize>();
                    let (mine, tail) = rest.split_at(n.min(rest.len()));
                    rest = tail;
                    let _ = job.reply.send(Ok(mine.to_vec()));
                }
            }
            Err(e) => {
                for job in jobs {
                    let _ = job.reply.send(Err(e.clone()));
                }
            }
        }
    }
}

/// One `EVALSHA` deciding `groups`, built as a single command buffer (cheaper than a
/// `ScriptInvocation`, which allocates every argument separately).
/// `now_us` is 0 (Redis's own `TIME`) except in the tests that compare the script with
/// the Rust algorithms at pinned times.
fn evalsha<'g>(
    script: &Script,
    now_us: u64,
    groups: impl IntoIterator<Item = &'g Group> + Clone,
) -> Cmd {
    let (count, keys) = groups
        .clone()
        .into_iter()
        .fold((0, 0), |(n, k), g| (n + 1, k + g.keys.len()));
    let mut cmd = redis::cmd("EVALSHA");
    cmd.arg(script.get_hash()).arg(keys);
    for group in groups.clone() {
        cmd.arg(&group.keys);
    }
    cmd.arg(now_us).arg(count);
    for group in groups {
        cmd.arg(group.keys.len()).arg(&group.args);
    }
    cmd
}

/// Sends `EVALSHA` (a command or a pipeline of them), loading the script once if Redis
/// answers `NOSCRIPT` (after a restart or `SCRIPT FLUSH`) and trying again.
async fn query<T: FromRedisValue>(
    conn: &mut ConnectionManager,
    script: &Script,
    request: &(impl Query + ?Sized),
) -> Result<T, RedisError> {
    match request.send(conn).await {
        Err(e) if e.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::NoScript) => {
            script.prepare_invoke().load_async(conn).await?;
            request.send(conn).await
        }
        other => other,
    }
}

/// A command or a pipeline, sent the same way.
trait Query {
    async fn send<T: FromRedisValue>(&self, conn: &mut ConnectionManager) -> Result<T, RedisError>;
}

impl Query for Cmd {
    async fn send<T: FromRedisValue>(&self, conn: &mut ConnectionManager) -> Result<T, RedisError> {
        self.query_async(conn).await
    }
}

impl Query for Pipeline {
    async fn send<T: FromRedisValue>(&self, conn: &mut ConnectionManager) -> Result<T, RedisError> {
        self.query_async(conn).await
    }
}

impl Store for RedisStore {
    async fn check(&self, checks: &[Check<'_>]) -> Result<Vec<Decision>, Error> {
        // One group per subject (first-seen order): one slot, one all-or-nothing decision.
        let mut order: Vec<Vec<usize>> = Vec::new();
        for (i, c) in checks.iter().enumerate() {
            match order.iter_mut().find(|g| checks[g[0]].subject == c.subject) {
                Some(g) => g.push(i),
                None => order.push(vec![i]),
            }
        }
        let groups = order
            .iter()
            .map(|g| self.group(&g.iter().map(|&i| &checks[i]).collect::<Vec<_>>()))
            .collect();
        let reply = self.run(groups).await?;
        if reply.len() != checks.len() * 4 {
            return Err(Error::Protocol(format!(
                "expected {} integers, got {}",
                checks.len() * 4,
                reply.len()
            )));
        }
        let mut out = vec![None; checks.len()];
        for (&i, r) in order.iter().flatten().zip(reply.chunks_exact(4)) {
            out[i] = Some(decision(&checks[i], r));
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
            .field("coalesce", &self.queue.is_some())
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

fn algorithm_id(a: Algorithm) -> u64 {
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

#[cfg(test)]
#[path = "redis_twin_tests.rs"]
mod twin_tests;
