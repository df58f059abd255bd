//! Exact tests of each algorithm on a manual clock: no sleeping, no tolerance.

use std::num::NonZeroU64;
use std::sync::Arc;
use std::time::Duration;

use basis_ratelimit::{
    Algorithm, Check, Decision, ManualClock, MemoryConfig, MemoryStore, Policy, ip_subject,
};

pub fn policy(algorithm: Algorithm, limit: u64, period: Duration) -> Policy {
    Policy::new(algorithm, NonZeroU64::new(limit).unwrap(), period).unwrap()
}

fn store() -> (MemoryStore<ManualClock>, ManualClock) {
    let clock = ManualClock::new(Duration::from_secs(1_000));
    (
        MemoryStore::with_clock(MemoryConfig::default(), clock.clone()),
        clock,
    )
}

/// How many of `n` single-unit requests pass right now.
fn burst(store: &MemoryStore<ManualClock>, p: &Policy, n: u64) -> u64 {
    (0..n)
        .filter(|_| store.check_one(p, "r", "s", 1).allowed)
        .count() as u64
}

const SEC: Duration = Duration::from_secs(1);

#[test]
fn token_bucket_allows_a_burst_up_to_capacity_then_refills_at_its_rate() {
    let (store, clock) = store();
    let p = policy(Algorithm::TokenBucket, 10, 10 * SEC); // one token per second
    assert_eq!(burst(&store, &p, 15), 10);
    let denied = store.check_one(&p, "r", "s", 1);
    assert!(!denied.allowed);
    assert_eq!(denied.retry_after, SEC);
    assert_eq!(denied.reset_after, 10 * SEC);

    clock.advance(SEC);
    assert_eq!(burst(&store, &p, 5), 1);
    clock.advance(SEC / 2);
    assert_eq!(burst(&store, &p, 5), 0);
    clock.advance(SEC / 2 + 4 * SEC);
    assert_eq!(burst(&store, &p, 10), 5);
    clock.advance(3_600 * SEC); // a long pause refills to capacity, never beyond
    assert_eq!(burst(&store, &p, 50), 10);
}

#[test]
fn gcra_allows_a_burst_up_to_its_limit_then_one_per_emission_interval() {
    let (store, clock) = store();
    let p = policy(Algorithm::Gcra, 10, 10 * SEC);
    assert_eq!(burst(&store, &p, 15), 10);
    assert_eq!(store.check_one(&p, "r", "s", 1).retry_after, SEC);
    clock.advance(SEC);
    assert_eq!(burst(&store, &p, 5), 1);
    clock.advance(3 * SEC);
    let d = store.check_one(&p, "r", "s", 1);
    assert_eq!((d.allowed, d.remaining), (true, 2));
}

#[test]
fn fixed_window_lets_twice_the_limit_through_across_a_boundary() {
    let (store, clock) = store();
    let p = policy(Algorithm::FixedWindow, 10, 60 * SEC);
    clock.set(Duration::from_secs(1_019)); // one second before a window ends (1020 = 17 × 60)
    let before = burst(&store, &p, 10);
    clock.advance(SEC); // the next window starts
    let after = burst(&store, &p, 10);
    // Twenty requests inside two seconds, against a limit of ten per minute.
    assert_eq!((before, after), (10, 10));
    assert_eq!(before + after, 2 * p.limit());
}

#[test]
fn sliding_log_refuses_the_boundary_burst_exactly() {
    let (store, clock) = store();
    let p = policy(Algorithm::SlidingLog, 10, 60 * SEC);
    clock.set(Duration::from_secs(1_019));
    assert_eq!(burst(&store, &p, 10), 10);
    clock.advance(SEC);
    assert_eq!(burst(&store, &p, 10), 0);
    let d = store.check_one(&p, "r", "s", 1);
    assert_eq!(
        d.retry_after,
        59 * SEC,
        "the burst leaves the window at 1019 + 60"
    );
    clock.advance(59 * SEC);
    assert_eq!(burst(&store, &p, 20), 10);
}

#[test]
fn sliding_window_counter_refuses_the_boundary_burst() {
    let (store, clock) = store();
    let p = policy(Algorithm::SlidingWindow, 10, 60 * SEC);
    clock.set(Duration::from_secs(1_019));
    assert_eq!(burst(&store, &p, 10), 10);
    clock.advance(SEC);
    assert_eq!(
        burst(&store, &p, 10),
        0,
        "the previous window still weighs 100%"
    );
    clock.advance(30 * SEC); // halfway: the previous window weighs 50%
    assert_eq!(burst(&store, &p, 10), 5);
}

#[test]
fn a_request_may_cost_several_units() {
    for algorithm in Algorithm::ALL {
        let (store, _clock) = store();
        let p = policy(algorithm, 10, 60 * SEC);
        let passed = (0..5)
            .filter(|_| store.check_one(&p, "r", "s", 3).allowed)
            .count();
        assert_eq!(passed, 3, "{algorithm:?}");
        let d = store.check_one(&p, "r", "s", 1);
        assert!(d.allowed, "{algorithm:?}: one unit is left");
        assert_eq!(d.remaining, 0, "{algorithm:?}");
    }
}

#[test]
fn a_cost_above_the_limit_never_passes() {
    for algorithm in Algorithm::ALL {
        let (store, _clock) = store();
        let p = policy(algorithm, 5, SEC);
        let d = store.check_one(&p, "r", "s", 6);
        assert!(!d.allowed, "{algorithm:?}");
        assert!(
            store.check_one(&p, "r", "s", 5).allowed,
            "{algorithm:?}: nothing was spent"
        );
    }
}

#[test]
fn several_rules_are_all_or_nothing() {
    let (store, _clock) = store();
    let wide = policy(Algorithm::Gcra, 100, 60 * SEC);
    let narrow = policy(Algorithm::FixedWindow, 2, 60 * SEC);
    let checks = |subject| {
        [
            Check {
                policy: &wide,
                rule: "wide",
                subject,
                cost: 1,
            },
            Check {
                policy: &narrow,
                rule: "narrow",
                subject,
                cost: 1,
            },
        ]
    };
    for _ in 0..5 {
        store.check_many(&checks("a"));
    }
    // Two passed; the three refused by "narrow" did not spend "wide".
    let d: Vec<Decision> = store.check_many(&checks("a"));
    assert_eq!((d[0].allowed, d[0].remaining), (true, 98));
    assert!(!d[1].allowed);
}

#[test]
fn keys_do_not_share_state() {
    let (store, _clock) = store();
    let p = policy(Algorithm::SlidingLog, 1, SEC);
    assert!(store.check_one(&p, "login", "a", 1).allowed);
    assert!(store.check_one(&p, "login", "b", 1).allowed);
    assert!(store.check_one(&p, "other", "a", 1).allowed);
    assert!(!store.check_one(&p, "login", "a", 1).allowed);
}

#[test]
fn the_memory_store_stays_within_its_cap_under_a_flood_of_keys() {
    let clock = ManualClock::new(SEC);
    let store = MemoryStore::with_clock(
        MemoryConfig {
            max_keys: 256,
            shards: 4,
        },
        clock.clone(),
    );
    let p = policy(Algorithm::Gcra, 5, 60 * SEC);
    for i in 0..10_000u32 {
        let ip = std::net::Ipv6Addr::from(u128::from(i) << 64);
        store.check_one(&p, "api", &ip_subject(ip.into()), 1);
    }
    assert!(store.len() <= 256, "{} keys held", store.len());
    clock.advance(61 * SEC);
    let held = store.len();
    assert_eq!(store.purge_idle(), held);
    assert!(store.is_empty(), "idle keys expire");
}

#[test]
fn ipv6_clients_are_keyed_by_their_64() {
    let a = ip_subject("2001:db8:aa:bb:1::1".parse().unwrap());
    let b = ip_subject("2001:db8:aa:bb:ffff::2".parse().unwrap());
    let c = ip_subject("2001:db8:aa:bc::1".parse().unwrap());
    assert_eq!(a, b);
    assert_ne!(a, c);
    assert_eq!(
        ip_subject("::ffff:192.0.2.1".parse().unwrap()),
        "ip:192.0.2.1"
    );
}

#[test]
fn the_memory_store_is_safe_under_contention() {
    let store = Arc::new(MemoryStore::new(MemoryConfig::default()));
    let p = policy(Algorithm::SlidingLog, 1_000, 3_600 * SEC);
    let threads: Vec<_> = (0..4)
        .map(|_| {
            let store = store.clone();
            std::thread::spawn(move || {
                (0..500)
                    .filter(|_| store.check_one(&p, "r", "s", 1).allowed)
                    .count()
            })
        })
        .collect();
    let passed: usize = threads.into_iter().map(|t| t.join().unwrap()).sum();
    assert_eq!(
        passed, 1_000,
        "exactly the limit, never more, across threads"
    );
}
