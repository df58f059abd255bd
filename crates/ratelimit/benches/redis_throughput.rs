//! Redis-backed decisions per second with 50 concurrent callers, beside a plain `SET`
//! baseline over the same kind of connection in the same run.
//!
//! `BASIS_TEST_REDIS_URL=redis://127.0.0.1:6379 cargo bench -p basis-ratelimit --bench redis_throughput`
//!
//! Both sides use one multiplexed connection (`ConnectionManager`), as the server does.
//! Each case runs for a few seconds; keys use a unique prefix and expire on their own.

use std::num::NonZeroU64;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use basis_ratelimit::{Algorithm, Check, Policy, RedisConfig, RedisStore, Store};
use redis::aio::ConnectionManager;

/// A rule name, its policy, and whether it limits the second subject.
type Rule = (&'static str, Policy, bool);

const CALLERS: usize = 50;
const RUN: Duration = Duration::from_secs(3);

/// Runs `op` from `CALLERS` tasks for `RUN`; returns operations per second.
async fn throughput<F, Fut>(op: F) -> f64
where
    F: Fn(usize, u64) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let op = Arc::new(op);
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let tasks: Vec<_> = (0..CALLERS)
        .map(|caller| {
            let (op, stop, done) = (op.clone(), stop.clone(), done.clone());
            tokio::spawn(async move {
                let mut i = 0;
                while !stop.load(Ordering::Relaxed) {
                    op(caller, i).await;
                    i += 1;
                    done.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    tokio::time::sleep(RUN).await; // the measurement window, not a wait for a server
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        let _ = t.await;
    }
    done.load(Ordering::Relaxed) as f64 / start.elapsed().as_secs_f64()
}

fn main() {
    let url = std::env::var("BASIS_TEST_REDIS_URL")
        .or_else(|_| std::env::var("REDIS_URL"))
        .unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    runtime.block_on(run(url));
}

async fn run(url: String) {
    let prefix = format!("bench:{}", std::process::id());
    let client = redis::Client::open(url.as_str()).expect("valid URL");
    let Ok(conn) = ConnectionManager::new(client).await else {
        println!("skipped: redis_throughput: no Redis at {url}");
        return;
    };
    let gcra = policy(Algorithm::Gcra, 1_000_000);
    let window = policy(Algorithm::SlidingWindow, 1_000_000);
    let log = policy(Algorithm::SlidingLog, 100);

    println!(
        "{CALLERS} concurrent callers, {} s per case, one multiplexed connection\n",
        RUN.as_secs()
    );
    let set = {
        let prefix = prefix.clone();
        throughput(move |caller, i| {
            let mut conn = conn.clone();
            let key = format!("{prefix}:set:{caller}:{}", i % 100);
            async move {
                let _: () = redis::cmd("SET")
                    .arg(&key)
                    .arg(i)
                    .arg("PX")
                    .arg(60_000)
                    .query_async(&mut conn)
                    .await
                    .expect("SET");
            }
        })
        .await
    };
    println!(
        "{:<44} {:>10.0} ops/s",
        "baseline: SET key value PX 60000", set
    );

    let cases: [(&str, Vec<Rule>); 4] = [
        ("GCRA, one rule", vec![("a", gcra, false)]),
        (
            "sliding window counter, one rule",
            vec![("a", window, false)],
        ),
        ("sliding log (limit 100), one rule", vec![("a", log, false)]),
        (
            "three rules, two subjects (pipelined)",
            vec![("a", gcra, false), ("b", window, false), ("c", gcra, true)],
        ),
    ];
    for coalesce in [true, false] {
        let store = RedisStore::connect_lazy(&RedisConfig {
            url: url.clone(),
            key_prefix: format!("{prefix}:{coalesce}"),
            coalesce,
        })
        .expect("valid URL");
        store.ping().await.expect("Redis answers");
        let mode = if coalesce {
            "coalesced"
        } else {
            "one call per decision"
        };
        println!("\nRedisStore, {mode}:");
        for (name, rules) in cases.clone() {
            measure(&store, name, rules, set).await;
        }
    }
}

async fn measure(store: &RedisStore, name: &str, rules: Vec<Rule>, set: f64) {
    {
        let store = store.clone();
        let rules = Arc::new(rules);
        let rate = throughput(move |caller, i| {
            let store = store.clone();
            let rules = rules.clone();
            async move {
                let subject = format!("ip:10.0.{caller}.{}", i % 100);
                let other = format!("account:{caller}");
                let checks: Vec<Check<'_>> = rules
                    .iter()
                    .map(|(rule, p, second)| Check {
                        policy: p,
                        rule,
                        subject: if *second { &other } else { &subject },
                        cost: 1,
                    })
                    .collect();
                store.check(&checks).await.expect("decision");
            }
        })
        .await;
        println!(
            "{:<44} {:>10.0} decisions/s  ({:.2}x SET)",
            name,
            rate,
            rate / set
        );
    }
}

fn policy(algorithm: Algorithm, limit: u64) -> Policy {
    Policy::new(
        algorithm,
        NonZeroU64::new(limit).unwrap(),
        Duration::from_secs(60),
    )
    .unwrap()
}
