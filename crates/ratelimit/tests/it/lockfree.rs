//! The lock-free memory store decides exactly what the reference decides: the store as it
//! was before (every key's [`State`] in one map behind one lock; several rules peeked,
//! then all applied only if all pass), written here as a plain function.
//!
//! Recorded traces (clock gaps, one to three checks at a time, costs 0–4) run through both
//! and every decision must be equal. Concurrent traces run each round's checks on several
//! threads at one instant; the admitted counts per key and the final states (probed by
//! one more check) must equal the reference run sequentially.

use std::collections::HashMap;
use std::num::NonZeroU64;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use basis_ratelimit::{
    Algorithm, Check, Decision, ManualClock, MemoryConfig, MemoryStore, Policy, State,
};
use proptest::prelude::*;

const RULES: [&str; 3] = ["a", "b", "c"];
const SUBJECTS: [&str; 2] = ["ip:10.0.0.1", "user:7"];

/// The reference store: one map of states, one caller at a time.
#[derive(Default)]
struct Reference {
    states: HashMap<(String, String), State>,
}

impl Reference {
    fn check(&mut self, checks: &[Check<'_>], now: u64) -> Vec<Decision> {
        let mut run = |apply: bool| -> Vec<Decision> {
            checks
                .iter()
                .map(|c| {
                    let key = (c.rule.to_owned(), c.subject.to_owned());
                    if let Some(state) = self.states.get_mut(&key) {
                        return c.policy.check(state, now, c.cost, apply);
                    }
                    let mut state = c.policy.new_state();
                    let decision = c.policy.check(&mut state, now, c.cost, apply);
                    if apply {
                        self.states.insert(key, state);
                    }
                    decision
                })
                .collect()
        };
        let peek = run(false);
        if peek.iter().all(|d| d.allowed) {
            run(true)
        } else {
            peek
        }
    }
}

fn policy_strategy() -> impl Strategy<Value = Policy> {
    // 1 s and 60 s are divided by small limits (token buckets in one word); a prime
    // number of nanoseconds is not (token buckets keep a locked state).
    let period = prop_oneof![
        Just(1_000_000_000u64),
        Just(60_000_000_000),
        Just(999_999_937)
    ];
    (
        prop::sample::select(Algorithm::ALL.to_vec()),
        1u64..=10,
        period,
    )
        .prop_map(|(algorithm, limit, period)| {
            Policy::new(
                algorithm,
                NonZeroU64::new(limit).unwrap(),
                Duration::from_nanos(period),
            )
            .unwrap()
        })
}

/// One step of a trace: the clock gap before it, then one to three (rule, subject, cost).
type Step = (u64, Vec<(usize, usize, u64)>);

fn trace_strategy() -> impl Strategy<Value = Vec<Step>> {
    let gap = prop_oneof![Just(0u64), 0..200_000_000u64, 0..120_000_000_000u64];
    let check = (0..RULES.len(), 0..SUBJECTS.len(), 0u64..=4);
    prop::collection::vec((gap, prop::collection::vec(check, 1..=3)), 1..120)
}

fn store(clock: &ManualClock) -> MemoryStore<ManualClock> {
    MemoryStore::with_clock(MemoryConfig::default(), clock.clone())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn recorded_traces_get_the_reference_decisions(
        policies in prop::collection::vec(policy_strategy(), RULES.len()),
        trace in trace_strategy(),
    ) {
        let clock = ManualClock::new(Duration::from_secs(5));
        let store = store(&clock);
        let mut reference = Reference::default();
        for (gap, step) in &trace {
            clock.advance(Duration::from_nanos(*gap));
            let checks: Vec<Check<'_>> = step
                .iter()
                .map(|&(r, s, cost)| Check { policy: &policies[r], rule: RULES[r], subject: SUBJECTS[s], cost })
                .collect();
            let now = basis_ratelimit::Clock::now(&clock);
            prop_assert_eq!(store.check_many(&checks), reference.check(&checks, now), "at {}", now);
        }
    }
}

/// One round of a concurrent trace: the clock gap, then each thread's keys (rule, subject).
type Round = (u64, Vec<Vec<(usize, usize)>>);

fn rounds_strategy() -> impl Strategy<Value = Vec<Round>> {
    let key = (0..RULES.len(), 0..SUBJECTS.len());
    let thread = prop::collection::vec(key, 0..40);
    let gap = prop_oneof![Just(0u64), 0..500_000_000u64, 0..90_000_000_000u64];
    prop::collection::vec((gap, prop::collection::vec(thread, 3)), 1..8)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn concurrent_traces_end_in_the_reference_state(
        policies in prop::collection::vec(policy_strategy(), RULES.len()),
        rounds in rounds_strategy(),
    ) {
        let clock = ManualClock::new(Duration::from_secs(5));
        let store = store(&clock);
        let mut reference = Reference::default();
        let check = |r: usize, s: usize, cost| Check { policy: &policies[r], rule: RULES[r], subject: SUBJECTS[s], cost };
        for (gap, threads) in &rounds {
            clock.advance(Duration::from_nanos(*gap));
            let now = basis_ratelimit::Clock::now(&clock);
            // Cost 1 at one instant: how many pass per key does not depend on the order.
            let admitted: Vec<Vec<AtomicUsize>> = RULES
                .iter()
                .map(|_| SUBJECTS.iter().map(|_| AtomicUsize::new(0)).collect())
                .collect();
            std::thread::scope(|scope| {
                for keys in threads {
                    let (store, admitted, policies) = (&store, &admitted, &policies);
                    scope.spawn(move || {
                        for &(r, s) in keys {
                            if store.check_one(&policies[r], RULES[r], SUBJECTS[s], 1).allowed {
                                admitted[r][s].fetch_add(1, Ordering::Relaxed);
                            }
                        }
                    });
                }
            });
            let mut expected = vec![vec![0usize; SUBJECTS.len()]; RULES.len()];
            for &(r, s) in threads.iter().flatten() {
                if reference.check(&[check(r, s, 1)], now)[0].allowed {
                    expected[r][s] += 1;
                }
            }
            for (r, row) in expected.iter().enumerate() {
                for (s, &n) in row.iter().enumerate() {
                    prop_assert_eq!(admitted[r][s].load(Ordering::Relaxed), n, "rule {} subject {}", r, s);
                }
            }
        }
        let now = basis_ratelimit::Clock::now(&clock);
        for r in 0..RULES.len() {
            for s in 0..SUBJECTS.len() {
                let probe = [check(r, s, 1)];
                prop_assert_eq!(store.check_many(&probe), reference.check(&probe, now));
            }
        }
    }
}

/// Several rules consume all or nothing even while other threads hammer the same keys:
/// rule `b` (a sliding log, a locked state) is only ever consumed together with `a` (GCRA,
/// a word), so afterwards `b` has consumed exactly what the multi-rule checks admitted.
#[test]
fn multi_rule_checks_stay_atomic_under_contention() {
    let clock = ManualClock::new(Duration::from_secs(5));
    let store = store(&clock);
    let hour = Duration::from_secs(3_600);
    let a = Policy::new(Algorithm::Gcra, NonZeroU64::new(600).unwrap(), hour).unwrap();
    let b = Policy::new(Algorithm::SlidingLog, NonZeroU64::new(1_000).unwrap(), hour).unwrap();
    let both = [
        Check {
            policy: &a,
            rule: "a",
            subject: "s",
            cost: 1,
        },
        Check {
            policy: &b,
            rule: "b",
            subject: "s",
            cost: 1,
        },
    ];
    let (multi, single) = (AtomicUsize::new(0), AtomicUsize::new(0));
    std::thread::scope(|scope| {
        for _ in 0..2 {
            scope.spawn(|| {
                for _ in 0..400 {
                    if store.check_many(&both).iter().all(|d| d.allowed) {
                        multi.fetch_add(1, Ordering::Relaxed);
                    }
                }
            });
        }
        scope.spawn(|| {
            for _ in 0..400 {
                if store.check_one(&a, "a", "s", 1).allowed {
                    single.fetch_add(1, Ordering::Relaxed);
                }
            }
        });
    });
    let (multi, single) = (multi.into_inner() as u64, single.into_inner() as u64);
    assert_eq!(multi + single, 600, "rule a admits exactly its limit");
    let b_left = store.check_one(&b, "b", "s", 0).remaining;
    assert_eq!(
        b_left,
        1_000 - multi,
        "b consumed only with a: {multi} multi, {single} single"
    );
}
