//! The Lua script and the Rust algorithms are twins: at pinned times, on random traces,
//! they must decide identically. Runs when `BASIS_TEST_REDIS_URL` is set.

use std::io::Write;
use std::num::NonZeroU64;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::*;
use crate::algorithm::Policy;

/// A fixed-seed xorshift: the same traces on every run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

fn close(a: Duration, b: Duration) -> bool {
    a.abs_diff(b) <= Duration::from_micros(1)
}

#[tokio::test]
async fn the_lua_script_decides_exactly_like_the_rust_algorithms() {
    let Ok(url) = std::env::var("BASIS_TEST_REDIS_URL") else {
        // Straight to stderr: the harness captures `eprintln!`, and a skip must show.
        let _ = writeln!(
            std::io::stderr(),
            "\nskipped: Lua/Rust twin test: BASIS_TEST_REDIS_URL is not set"
        );
        return;
    };
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let store = RedisStore::connect_lazy(&RedisConfig {
        url,
        key_prefix: format!("test:twin:{}:{nanos}", std::process::id()),
        coalesce: false,
    })
    .expect("valid URL");
    let mut conn = store.conn.clone();
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    for algorithm in Algorithm::ALL {
        let mut seen = [0u32; 2];
        for case in 0..8 {
            let limit = 1 + rng.below(10);
            // Whole seconds per unit and a period divisible by the limit keep both sides
            // exact (GCRA's interval) and every TTL far longer than the test's real time.
            let period_us = limit * (10 + rng.below(90)) * 1_000_000;
            let p = Policy::new(
                algorithm,
                NonZeroU64::new(limit).unwrap(),
                Duration::from_micros(period_us),
            )
            .unwrap();
            let mut state = p.new_state();
            let mut now_us = 1_700_000_000_000_000 + rng.below(period_us);
            let subject = format!("case-{case}");
            for step in 0..60 {
                now_us += match rng.below(3) {
                    0 => 0,
                    1 => rng.below(period_us / 4),
                    _ => rng.below(2 * period_us),
                };
                let cost = 1 + rng.below(3);
                let check = Check {
                    policy: &p,
                    rule: "twin",
                    subject: &subject,
                    cost,
                };
                let group = store.group(&[&check]);
                let cmd = evalsha(&store.script, now_us, [&group]);
                let reply: Vec<i64> = query(&mut conn, &store.script, &cmd).await.unwrap();
                let lua = decision(&check, &reply);
                let rust = p.check(&mut state, now_us * 1_000, cost, true);
                let at =
                    format!("{algorithm:?}, case {case}, step {step}: lua {lua:?}, rust {rust:?}");
                assert_eq!(
                    (lua.allowed, lua.remaining),
                    (rust.allowed, rust.remaining),
                    "{at}"
                );
                assert!(close(lua.reset_after, rust.reset_after), "{at}");
                assert!(close(lua.retry_after, rust.retry_after), "{at}");
                seen[usize::from(rust.allowed)] += 1;
            }
        }
        // The traces must reach both answers, or the comparison proves little.
        assert!(
            seen[0] > 20 && seen[1] > 20,
            "{algorithm:?}: {seen:?} (denied, allowed)"
        );
    }
}
