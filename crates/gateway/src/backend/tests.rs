use std::time::{Duration, Instant};

use super::*;
use crate::balance::Algorithm;

#[test]
fn backend_specs_parse_urls_with_optional_weights() {
    let spec: BackendSpec = "http://127.0.0.1:8080=5".parse().unwrap();
    assert_eq!(spec.authority.as_str(), "127.0.0.1:8080");
    assert_eq!(spec.weight, 5);
    let spec: BackendSpec = "localhost:9000/".parse().unwrap();
    assert_eq!(
        (spec.name().as_str(), spec.weight),
        ("http://localhost:9000", 1)
    );
}

#[test]
fn bad_backend_specs_are_refused_with_a_reason() {
    for (text, reason) in [
        ("ftp://a:1", "scheme"),
        ("http://a:1/api", "without path"),
        ("http://a", "port"),
        ("http://a:1=0", "outside"),
        ("http://a:1=x", "whole number"),
    ] {
        let err = text.parse::<BackendSpec>().unwrap_err();
        assert!(err.contains(reason), "{text}: {err}");
    }
}

fn pool(n: usize, panic_threshold_percent: u8, now: Instant) -> Pool {
    let specs: Vec<BackendSpec> = (0..n)
        .map(|i| format!("http://10.0.0.{i}:80").parse().unwrap())
        .collect();
    let names: Vec<String> = specs.iter().map(BackendSpec::name).collect();
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    let policy = PoolPolicy {
        outlier: OutlierPolicy {
            consecutive_failures: 2,
            base_ejection: Duration::from_secs(10),
            max_ejection: Duration::from_secs(60),
        },
        max_ejected_percent: 50,
        panic_threshold_percent,
        rise: 1,
        fall: 1,
        ewma_tau: Duration::from_secs(10),
    };
    Pool::new(
        &specs,
        Balancer::new(Algorithm::RoundRobin, &names, &vec![1; n]),
        policy,
        now,
        None,
    )
}

fn ids(candidates: &[Candidate]) -> Vec<usize> {
    candidates.iter().map(|c| c.id).collect()
}

#[test]
fn ejected_down_and_draining_backends_are_not_candidates() {
    let t0 = Instant::now();
    let p = pool(4, 0, t0);
    p.record(0, Outcome::Failure, None, t0);
    p.record(0, Outcome::Failure, None, t0);
    p.record_check(1, Check::Fail);
    p.record_check(2, Check::Draining);
    assert_eq!(ids(&p.candidates(t0, &[])), [3]);
    assert_eq!(p.retry_after(t0), 10);
    // The ejection ends by itself.
    assert_eq!(
        ids(&p.candidates(t0 + Duration::from_secs(10), &[])),
        [0, 3]
    );
}

#[test]
fn no_more_than_the_allowed_share_is_ejected() {
    let t0 = Instant::now();
    let p = pool(4, 0, t0);
    for id in 0..4 {
        p.record(id, Outcome::Failure, None, t0);
        p.record(id, Outcome::Failure, None, t0);
    }
    assert_eq!(p.ejected(t0), 2);
    assert_eq!(ids(&p.candidates(t0, &[])), [2, 3]);
}

#[test]
fn below_the_panic_threshold_every_backend_not_draining_is_used() {
    let t0 = Instant::now();
    let p = pool(4, 50, t0);
    p.record_check(0, Check::Fail);
    p.record_check(1, Check::Fail);
    // Two of four healthy: exactly at the threshold, no panic.
    assert_eq!(ids(&p.candidates(t0, &[])), [2, 3]);
    p.record_check(2, Check::Draining);
    // One of four: panic, but the draining one stays out.
    assert_eq!(ids(&p.candidates(t0, &[])), [0, 1, 3]);
}

#[test]
fn tried_backends_are_excluded_for_the_retry() {
    let t0 = Instant::now();
    let p = pool(3, 50, t0);
    assert_eq!(ids(&p.candidates(t0, &[1])), [0, 2]);
}
