//! One contract, every store: the same suite runs on the memory store and on Redis.
//!
//! Periods are long (an hour or a day) so the suite does not depend on how fast it
//! runs: Redis uses its own clock, which a test cannot stop.

use std::time::Duration;

use basis_ratelimit::{Algorithm, Check, Decision, ManualClock, MemoryConfig, MemoryStore, Store};

use super::algorithms::policy;
use super::common::{redis_store, redis_store_with, redis_url};

const HOUR: Duration = Duration::from_secs(3_600);

async fn one(
    store: &impl Store,
    p: &basis_ratelimit::Policy,
    rule: &str,
    subject: &str,
    cost: u64,
) -> Decision {
    let d = store
        .check(&[Check {
            policy: p,
            rule,
            subject,
            cost,
        }])
        .await
        .expect("store answers");
    d[0]
}

async fn each_algorithm_admits_exactly_its_limit(store: &impl Store) {
    for algorithm in Algorithm::ALL {
        let p = policy(algorithm, 5, 24 * HOUR);
        let rule = algorithm.name();
        for left in (0..5).rev() {
            let d = one(store, &p, rule, "exact", 1).await;
            assert!(d.allowed, "{algorithm:?}");
            assert_eq!((d.limit, d.remaining), (5, left), "{algorithm:?}");
        }
        let d = one(store, &p, rule, "exact", 1).await;
        assert!(!d.allowed, "{algorithm:?}: the sixth is refused");
        // The sliding counter may wait into the next window, while the old one still weighs.
        assert!(
            d.retry_after > Duration::ZERO && d.retry_after <= 48 * HOUR,
            "{algorithm:?}: {d:?}"
        );
        assert!(d.reset_after <= 48 * HOUR, "{algorithm:?}: {d:?}");
    }
}

async fn costs_are_counted_in_units(store: &impl Store) {
    for algorithm in Algorithm::ALL {
        let p = policy(algorithm, 5, HOUR);
        let rule = algorithm.name();
        assert!(
            one(store, &p, rule, "cost", 2).await.allowed,
            "{algorithm:?}"
        );
        assert!(
            one(store, &p, rule, "cost", 2).await.allowed,
            "{algorithm:?}"
        );
        assert!(
            !one(store, &p, rule, "cost", 2).await.allowed,
            "{algorithm:?}"
        );
        assert!(
            one(store, &p, rule, "cost", 1).await.allowed,
            "{algorithm:?}"
        );
        assert!(
            !one(store, &p, rule, "cost", 6).await.allowed,
            "{algorithm:?}: above the limit"
        );
    }
}

async fn rules_of_one_subject_are_all_or_nothing(store: &impl Store) {
    let wide = policy(Algorithm::SlidingLog, 10, HOUR);
    let narrow = policy(Algorithm::Gcra, 2, HOUR);
    let checks = [
        Check {
            policy: &wide,
            rule: "wide",
            subject: "aon",
            cost: 1,
        },
        Check {
            policy: &narrow,
            rule: "narrow",
            subject: "aon",
            cost: 1,
        },
    ];
    let mut passed = 0;
    for _ in 0..5 {
        let d = store.check(&checks).await.expect("store answers");
        assert_eq!(d.len(), 2);
        passed += usize::from(d.iter().all(|d| d.allowed));
    }
    assert_eq!(passed, 2);
    let d = one(store, &wide, "wide", "aon", 1).await;
    assert_eq!(
        d.remaining, 7,
        "refused requests did not spend the wide rule"
    );
}

async fn subjects_and_rules_are_independent(store: &impl Store) {
    let p = policy(Algorithm::FixedWindow, 1, 24 * HOUR);
    let checks = [
        Check {
            policy: &p,
            rule: "ind",
            subject: "a",
            cost: 1,
        },
        Check {
            policy: &p,
            rule: "ind",
            subject: "b",
            cost: 1,
        },
        Check {
            policy: &p,
            rule: "ind2",
            subject: "a",
            cost: 1,
        },
    ];
    let d = store.check(&checks).await.expect("store answers");
    assert!(d.iter().all(|d| d.allowed), "{d:?}");
    let d = store.check(&checks[1..2]).await.expect("store answers");
    assert!(!d[0].allowed);
}

async fn a_rule_that_changes_algorithm_starts_afresh(store: &impl Store) {
    for algorithm in Algorithm::ALL {
        let p = policy(algorithm, 2, HOUR);
        let d = one(store, &p, "changed", "who", 1).await;
        assert_eq!((d.allowed, d.remaining), (true, 1), "{algorithm:?}");
    }
}

async fn contract(store: &impl Store) {
    a_rule_that_changes_algorithm_starts_afresh(store).await;
    each_algorithm_admits_exactly_its_limit(store).await;
    costs_are_counted_in_units(store).await;
    rules_of_one_subject_are_all_or_nothing(store).await;
    subjects_and_rules_are_independent(store).await;
}

#[tokio::test]
async fn the_memory_store_keeps_the_contract() {
    let store = MemoryStore::with_clock(MemoryConfig::default(), ManualClock::new(HOUR));
    contract(&store).await;
}

#[tokio::test]
async fn the_redis_store_keeps_the_contract() {
    let Some(url) = redis_url("the_redis_store_keeps_the_contract") else {
        return;
    };
    contract(&redis_store(&url, "contract")).await;
}

#[tokio::test]
async fn the_redis_store_keeps_the_contract_one_subject_per_call() {
    let Some(url) = redis_url("the_redis_store_keeps_the_contract_one_subject_per_call") else {
        return;
    };
    // The Redis Cluster configuration: no coalescing, one script call per subject.
    contract(&redis_store_with(&url, "contract-cluster", false)).await;
}

#[tokio::test]
async fn concurrent_decisions_coalesced_into_one_call_stay_exact() {
    let Some(url) = redis_url("concurrent_decisions_coalesced_into_one_call_stay_exact") else {
        return;
    };
    let store = std::sync::Arc::new(redis_store(&url, "coalesced"));
    let p = policy(Algorithm::SlidingLog, 25, HOUR);
    let tasks: Vec<_> = (0..100)
        .map(|i| {
            let store = store.clone();
            tokio::spawn(async move {
                let subject = if i % 2 == 0 { "even" } else { "odd" };
                one(&*store, &p, "burst", subject, 1).await.allowed
            })
        })
        .collect();
    let mut passed = 0;
    for t in tasks {
        passed += usize::from(t.await.unwrap());
    }
    assert_eq!(passed, 50, "25 per subject, however the calls were batched");
}

#[tokio::test]
async fn redis_keys_carry_a_hash_tag_and_expire_on_their_own() {
    let Some(url) = redis_url("redis_keys_carry_a_hash_tag_and_expire_on_their_own") else {
        return;
    };
    let store = redis_store(&url, "ttl");
    let key = store.key("login", Algorithm::Gcra, "ip:192.0.2.1");
    assert!(key.ends_with(":{ip:192.0.2.1}:login:gcra"), "{key}");
    for algorithm in Algorithm::ALL {
        let p = policy(algorithm, 3, HOUR);
        let rule = format!("ttl-{}", algorithm.name());
        one(&store, &p, &rule, "ip:192.0.2.1", 1).await;
        let client = redis::Client::open(url.as_str()).unwrap();
        let mut conn = client.get_multiplexed_async_connection().await.unwrap();
        let ttl: i64 = redis::cmd("PTTL")
            .arg(store.key(&rule, algorithm, "ip:192.0.2.1"))
            .query_async(&mut conn)
            .await
            .unwrap();
        assert!(ttl > 0 && ttl <= 2 * 3_600_000, "{algorithm:?}: PTTL {ttl}");
    }
}

#[tokio::test]
async fn redis_reloads_the_script_after_a_flush() {
    let Some(url) = redis_url("redis_reloads_the_script_after_a_flush") else {
        return;
    };
    let store = redis_store(&url, "noscript");
    let p = policy(Algorithm::Gcra, 3, HOUR);
    assert!(one(&store, &p, "r", "s", 1).await.allowed);
    let client = redis::Client::open(url.as_str()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let _: () = redis::cmd("SCRIPT")
        .arg("FLUSH")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(
        one(&store, &p, "r", "s", 1).await.remaining,
        1,
        "one-subject path"
    );
    let _: () = redis::cmd("SCRIPT")
        .arg("FLUSH")
        .query_async(&mut conn)
        .await
        .unwrap();
    let two = [
        Check {
            policy: &p,
            rule: "r",
            subject: "s",
            cost: 1,
        },
        Check {
            policy: &p,
            rule: "r",
            subject: "t",
            cost: 1,
        },
    ];
    let d = store.check(&two).await.expect("pipelined path reloads too");
    assert_eq!((d[0].remaining, d[1].remaining), (0, 2));
}
