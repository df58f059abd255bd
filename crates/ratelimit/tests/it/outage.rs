//! Redis stopped in the middle: every decision still answers within the timeout,
//! following the policy, and limiting resumes by itself once Redis is back.
//!
//! Each test starts its own private `redis-server` on a free port, so stopping it
//! disturbs nobody.

use std::time::{Duration, Instant};

use basis_ratelimit::{
    Algorithm, Check, Limiter, MemoryConfig, OutageConfig, OutagePolicy, RedisConfig, RedisStore,
    Source, Verdict,
};
use basis_testkit::{PrivateRedis, free_port};

use super::algorithms::policy;
use super::common::{redis_url, unique_prefix};

/// Long enough that a healthy Redis answers in time on a loaded CI machine.
const TIMEOUT: Duration = Duration::from_millis(200);
/// Scheduling slack on a shared two-core machine: a decision must still end near the timeout.
const SLACK: Duration = Duration::from_millis(50);

async fn decide(limiter: &Limiter, subject: &str) -> (Verdict, Duration) {
    let p = policy(Algorithm::SlidingWindow, 3, Duration::from_secs(3_600));
    let start = Instant::now();
    let verdict = limiter
        .check(&[Check {
            policy: &p,
            rule: "outage",
            subject,
            cost: 1,
        }])
        .await;
    (verdict, start.elapsed())
}

async fn survives_an_outage(policy: OutagePolicy, test: &str) {
    if redis_url(test).is_none() {
        return;
    }
    let port = free_port();
    let Some(mut redis) = PrivateRedis::start(port).await else {
        println!("skipped: {test}: redis-server is not installed");
        return;
    };
    let store = RedisStore::connect_lazy(&RedisConfig {
        url: redis.url(),
        key_prefix: unique_prefix(test),
        coalesce: true,
    })
    .unwrap();
    let limiter = Limiter::redis(
        store,
        OutageConfig {
            timeout: TIMEOUT,
            policy,
        },
        MemoryConfig::default(),
    );

    // Healthy: Redis decides.
    for expected in [true, true, true, false] {
        let (v, _) = decide(&limiter, "before").await;
        assert_eq!((v.source, v.allowed()), (Source::Store, expected));
    }

    redis.stop();
    for i in 0..10 {
        let (v, took) = decide(&limiter, "during").await;
        assert!(took <= TIMEOUT + SLACK, "decision {i} took {took:?}");
        match policy {
            OutagePolicy::FailOpen => {
                assert_eq!((v.source, v.allowed()), (Source::FailedOpen, true))
            }
            OutagePolicy::FailClosed => {
                assert_eq!((v.source, v.allowed()), (Source::FailedClosed, false))
            }
            // The local fallback keeps limiting: three pass, then refused.
            OutagePolicy::Fallback => {
                assert_eq!((v.source, v.allowed()), (Source::Fallback, i < 3))
            }
        }
    }

    // Back on the same port: the connection manager reconnects by itself.
    let _redis = PrivateRedis::start(port)
        .await
        .expect("redis-server restarts");
    let mut recovered = false;
    for _ in 0..200 {
        let (v, took) = decide(&limiter, "after").await;
        assert!(
            took <= TIMEOUT + SLACK,
            "decision took {took:?} while reconnecting"
        );
        if v.source == Source::Store {
            recovered = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(recovered, "limiting through Redis resumed");
    // A fresh key, because "after" may have spent more than the one unit its
    // Store verdict shows: a command that timed out while the connection came
    // back can still have run on the server after the fallback answered.
    for expected in [true, true, true, false] {
        let (v, _) = decide(&limiter, "resumed").await;
        assert_eq!((v.source, v.allowed()), (Source::Store, expected));
    }
}

#[tokio::test]
async fn fail_open_lets_requests_through_while_redis_is_down() {
    survives_an_outage(
        OutagePolicy::FailOpen,
        "fail_open_lets_requests_through_while_redis_is_down",
    )
    .await;
}

#[tokio::test]
async fn fail_closed_refuses_requests_while_redis_is_down() {
    survives_an_outage(
        OutagePolicy::FailClosed,
        "fail_closed_refuses_requests_while_redis_is_down",
    )
    .await;
}

#[tokio::test]
async fn the_fallback_limits_locally_while_redis_is_down() {
    survives_an_outage(
        OutagePolicy::Fallback,
        "the_fallback_limits_locally_while_redis_is_down",
    )
    .await;
}
