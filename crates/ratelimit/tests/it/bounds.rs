//! Property tests: on random arrival traces no algorithm admits more than the bound its
//! module documents, in any window.

use std::time::Duration;

use basis_ratelimit::{Algorithm, Policy};
use proptest::prelude::*;

use super::algorithms::policy;

/// Runs `trace` (gap before each request, cost) and returns the admitted `(time, cost)`.
fn admitted(p: &Policy, start: u64, trace: &[(u64, u64)]) -> Vec<(u64, u64)> {
    let mut state = p.new_state();
    let mut now = start;
    let mut out = Vec::new();
    for &(gap, cost) in trace {
        now += gap;
        if p.check(&mut state, now, cost, true).allowed {
            out.push((now, cost));
        }
    }
    out
}

/// Sum of admitted cost with time in `(from, to]`.
fn sum_in(events: &[(u64, u64)], from: u64, to: u64) -> u64 {
    events
        .iter()
        .filter(|(t, _)| *t > from && *t <= to)
        .map(|(_, c)| c)
        .sum()
}

fn trace_strategy(period: u64) -> impl Strategy<Value = Vec<(u64, u64)>> {
    // Bursts (gap 0), short gaps and gaps past a whole period, costs 1..=3.
    let gap = prop_oneof![Just(0u64), 0..period / 4, 0..period * 2];
    prop::collection::vec((gap, 1u64..=3), 1..160)
}

fn case() -> impl Strategy<Value = (u64, u64, u64, Vec<(u64, u64)>)> {
    (1u64..=20, 1u64..=500).prop_flat_map(|(limit, unit_us)| {
        let period = limit * unit_us * 1_000; // a multiple of limit: GCRA's interval is exact
        (
            Just(limit),
            Just(period),
            0..period * 3,
            trace_strategy(period),
        )
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn the_sliding_log_never_admits_more_than_the_limit_in_any_window(
        (limit, period, start, trace) in case()
    ) {
        let p = policy(Algorithm::SlidingLog, limit, Duration::from_nanos(period));
        let events = admitted(&p, start, &trace);
        for &(t, _) in &events {
            prop_assert!(sum_in(&events, t.saturating_sub(period), t) <= limit);
        }
    }

    #[test]
    fn the_fixed_window_admits_the_limit_per_window_and_twice_it_across_one(
        (limit, period, start, trace) in case()
    ) {
        let p = policy(Algorithm::FixedWindow, limit, Duration::from_nanos(period));
        let events = admitted(&p, start, &trace);
        for &(t, _) in &events {
            let window_start = t / period * period;
            prop_assert!(sum_in(&events, window_start.saturating_sub(1), t) <= limit);
            prop_assert!(sum_in(&events, t.saturating_sub(period), t) <= 2 * limit);
        }
    }

    #[test]
    fn the_sliding_counter_admits_at_most_limit_times_one_plus_f(
        (limit, period, start, trace) in case()
    ) {
        let p = policy(Algorithm::SlidingWindow, limit, Duration::from_nanos(period));
        let events = admitted(&p, start, &trace);
        for &(t, _) in &events {
            let f_ns = t % period; // position in the fixed window, in ns
            let sum = sum_in(&events, t.saturating_sub(period), t);
            // sum ≤ limit × (1 + f_ns / period), exactly in integers
            prop_assert!(u128::from(sum) * u128::from(period)
                <= u128::from(limit) * u128::from(period + f_ns));
        }
    }

    #[test]
    fn token_bucket_and_gcra_admit_at_most_burst_plus_rate_in_any_interval(
        (limit, period, start, trace) in case()
    ) {
        for algorithm in [Algorithm::TokenBucket, Algorithm::Gcra] {
            let p = policy(algorithm, limit, Duration::from_nanos(period));
            let events = admitted(&p, start, &trace);
            for (i, &(ti, _)) in events.iter().enumerate() {
                let mut sum = 0u64;
                for &(tj, c) in &events[i..] {
                    sum += c;
                    // sum ≤ limit + (tj − ti) × limit / period
                    prop_assert!(
                        u128::from(sum.saturating_sub(limit)) * u128::from(period)
                            <= u128::from(tj - ti) * u128::from(limit),
                        "{algorithm:?}: {sum} units in {} ns", tj - ti
                    );
                }
            }
        }
    }
}
