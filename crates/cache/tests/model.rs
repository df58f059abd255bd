//! Model-based property test: any sequence of inserts, loads, invalidations and clock
//! moves gives the same answers as a plain map with expiry times.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use basis_cache::{Cache, Cached, FixedRandom, ManualClock};
use proptest::prelude::*;

const TTL: u64 = 10;
const NEGATIVE_TTL: u64 = 3;

#[derive(Debug, Clone)]
enum Op {
    Insert(u32, u32),
    /// `get_or_load` whose loader would answer this (`None`: not found).
    Load(u32, Option<u32>),
    Peek(u32),
    Invalidate(u32),
    Advance(u64),
}

fn op() -> impl Strategy<Value = Op> {
    let key = 0u32..4;
    prop_oneof![
        (key.clone(), any::<u32>()).prop_map(|(k, v)| Op::Insert(k, v)),
        (key.clone(), proptest::option::of(any::<u32>())).prop_map(|(k, v)| Op::Load(k, v)),
        key.clone().prop_map(Op::Peek),
        key.prop_map(Op::Invalidate),
        (0u64..8).prop_map(Op::Advance),
    ]
}

/// The reference: key → (value or "not found", expiry in seconds).
#[derive(Default)]
struct Model {
    now: u64,
    entries: HashMap<u32, (Option<u32>, u64)>,
}

impl Model {
    fn live(&self, key: u32) -> Option<Option<u32>> {
        self.entries
            .get(&key)
            .filter(|(_, expires)| self.now < *expires)
            .map(|(value, _)| *value)
    }

    fn put(&mut self, key: u32, value: Option<u32>) {
        let ttl = if value.is_some() { TTL } else { NEGATIVE_TTL };
        self.entries.insert(key, (value, self.now + ttl));
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn the_cache_answers_like_a_map_with_expiry(ops in proptest::collection::vec(op(), 1..60)) {
        let runtime = tokio::runtime::Builder::new_current_thread().build().expect("runtime");
        let clock = ManualClock::default();
        let cache: Cache<u32, u32> = Cache::builder("model")
            .ttl(Duration::from_secs(TTL))
            .negative_ttl(Duration::from_secs(NEGATIVE_TTL))
            .ttl_jitter(0.0)
            .early_refresh(0.0)
            .clock(Arc::new(clock.clone()))
            .random(Arc::new(FixedRandom::new(0.0)))
            .build()
            .expect("valid configuration");
        let mut model = Model::default();
        for op in ops {
            match op {
                Op::Insert(k, v) => {
                    runtime.block_on(cache.insert(k, v));
                    model.put(k, Some(v));
                }
                Op::Load(k, answer) => {
                    let got = runtime
                        .block_on(cache.get_or_load(&k, || async move { Ok::<_, std::io::Error>(answer) }))
                        .expect("loader never fails");
                    let expected = match model.live(k) {
                        Some(cached) => cached,
                        None => {
                            model.put(k, answer);
                            answer
                        }
                    };
                    prop_assert_eq!(got, expected);
                }
                Op::Peek(k) => {
                    let expected = model.live(k).map(|v| v.map_or(Cached::Missing, Cached::Value));
                    prop_assert_eq!(cache.peek(&k), expected);
                }
                Op::Invalidate(k) => {
                    runtime.block_on(cache.invalidate(&k));
                    model.entries.remove(&k);
                }
                Op::Advance(s) => {
                    clock.advance(Duration::from_secs(s));
                    model.now += s;
                }
            }
        }
    }
}
