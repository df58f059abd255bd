//! The rate limiter as an admin sees it: the rules in force and the requests recently
//! refused. The limiter's layer tells [`Rejections::record`] of each 429 it answers
//! ([`basis_ratelimit::RateLimitLayer::on_reject`]); this keeps the last [`RING`] of them
//! and a count per minute for the last hour, in this process's memory only (each instance
//! shows its own; the totals across instances are in `/metrics`).
//!
//! Who was refused is personal data when it is an address or an account name: those keep
//! only a keyed digest (the key is random per process), enough to see that one client is
//! refused again and again without storing who it is. User and API-key ids are opaque
//! already and are kept.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use basis_ratelimit::http::{RateLimitConfig, RejectHook, Rejection, RuleConfig};
use hmac::{Hmac, Mac as _};
use sha2::Sha256;

use crate::clock::Clock;

/// How many recent rejections are kept.
pub const RING: usize = 200;
/// Minutes counted, ending with the current one.
pub const MINUTES: usize = 60;
const MINUTE_MS: i64 = 60_000;

/// The rules in force and the recent rejections.
#[derive(Debug)]
pub struct RateLimits {
    /// Whether the limiter applies the rules at all.
    pub enabled: bool,
    /// The rules, as configured.
    pub rules: Vec<RuleConfig>,
    /// The requests recently refused.
    pub rejections: Rejections,
}

impl RateLimits {
    /// What `config` puts in force, with no rejection yet.
    pub fn new(config: &RateLimitConfig) -> Self {
        Self {
            enabled: config.enabled,
            rules: config.rules.clone(),
            rejections: Rejections::new(rand::random()),
        }
    }

    /// The hook for the limiter's layer: records each rejection at `clock`'s time.
    pub fn hook(self: &Arc<Self>, clock: Arc<dyn Clock>) -> RejectHook {
        let this = self.clone();
        Arc::new(move |rejection: Rejection<'_>| {
            this.rejections.record(clock.now_ms(), &rejection);
        })
    }
}

/// One refused request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejected {
    /// When (Unix milliseconds).
    pub at_ms: i64,
    /// The rule that refused it.
    pub rule: String,
    /// Whom the rule counted, with personal parts replaced by a digest.
    pub key: String,
    /// The request's method and path.
    pub request: String,
}

/// The last [`RING`] rejections and a count per minute for [`MINUTES`] minutes. A
/// `std` mutex: held only to push or copy, never across an `.await`.
#[derive(Debug)]
pub struct Rejections {
    /// The digest key of personal subjects.
    salt: [u8; 32],
    inner: Mutex<Ring>,
}

#[derive(Debug)]
struct Ring {
    recent: VecDeque<Rejected>,
    /// Slot `minute % MINUTES` holds that minute's count, if it is that minute's.
    minutes: [(i64, u64); MINUTES],
}

impl Rejections {
    /// Empty, digesting personal subjects with `salt`.
    pub fn new(salt: [u8; 32]) -> Self {
        Self {
            salt,
            inner: Mutex::new(Ring {
                recent: VecDeque::with_capacity(RING),
                minutes: [(i64::MIN, 0); MINUTES],
            }),
        }
    }

    /// Records a rejection at `now_ms`.
    pub fn record(&self, now_ms: i64, rejection: &Rejection<'_>) {
        let entry = Rejected {
            at_ms: now_ms,
            rule: rejection.rule.to_owned(),
            key: self.mask(rejection.subject),
            request: format!("{} {}", rejection.method, cut(rejection.path, 120)),
        };
        let minute = now_ms.div_euclid(MINUTE_MS);
        let mut ring = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        if ring.recent.len() == RING {
            ring.recent.pop_front();
        }
        ring.recent.push_back(entry);
        let slot = &mut ring.minutes[minute.rem_euclid(MINUTES as i64) as usize];
        if slot.0 == minute {
            slot.1 += 1;
        } else {
            *slot = (minute, 1);
        }
    }

    /// The kept rejections, newest first.
    pub fn recent(&self) -> Vec<Rejected> {
        let ring = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        ring.recent.iter().rev().cloned().collect()
    }

    /// Rejections per minute for the [`MINUTES`] minutes ending with `now_ms`'s, oldest
    /// first, each with its minute's start (Unix milliseconds).
    pub fn per_minute(&self, now_ms: i64) -> Vec<(i64, u64)> {
        let now = now_ms.div_euclid(MINUTE_MS);
        let ring = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        (now - MINUTES as i64 + 1..=now)
            .map(|minute| {
                let slot = ring.minutes[minute.rem_euclid(MINUTES as i64) as usize];
                let count = if slot.0 == minute { slot.1 } else { 0 };
                (minute * MINUTE_MS, count)
            })
            .collect()
    }

    /// `subject` with its addresses and account names replaced by a short keyed digest:
    /// `ip:1.2.3.4` becomes `ip:#3f2a…`.
    fn mask(&self, subject: &str) -> String {
        subject
            .split('|')
            .map(|part| match part.split_once(':') {
                Some((kind @ ("ip" | "account"), value)) if value != "unknown" => {
                    format!("{kind}:#{}", self.digest(value))
                }
                Some((kind, value)) => format!("{kind}:{}", cut(value, 64)),
                None => cut(part, 64),
            })
            .collect::<Vec<_>>()
            .join("|")
    }

    fn digest(&self, value: &str) -> String {
        let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(&self.salt) else {
            return "?".to_owned();
        };
        mac.update(value.as_bytes());
        let bytes = mac.finalize().into_bytes();
        bytes[..5].iter().map(|b| format!("{b:02x}")).collect()
    }
}

/// `text` cut to `max` characters.
fn cut(text: &str, max: usize) -> String {
    text.chars().take(max).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rejection<'a>(subject: &'a str, method: &'a http::Method) -> Rejection<'a> {
        Rejection {
            rule: "api",
            subject,
            method,
            path: "/links",
        }
    }

    #[test]
    fn addresses_and_accounts_are_kept_only_as_digests() {
        let ring = Rejections::new([7; 32]);
        let post = http::Method::POST;
        ring.record(0, &rejection("account:ann@example.com|ip:192.0.2.7", &post));
        ring.record(1, &rejection("user:0123abcd", &post));
        ring.record(2, &rejection("ip:192.0.2.7", &post));
        let recent = ring.recent();
        assert_eq!(recent[1].key, "user:0123abcd");
        assert!(!recent[2].key.contains("ann@"), "{}", recent[2].key);
        assert!(!recent[2].key.contains("192.0.2.7"), "{}", recent[2].key);
        // The same address gives the same digest, so repeats can be seen.
        let ip = recent[0].key.clone();
        assert!(recent[2].key.ends_with(&ip), "{} / {ip}", recent[2].key);
        assert_eq!(recent[0].request, "POST /links");
    }

    #[test]
    fn only_the_last_ring_full_is_kept_newest_first() {
        let ring = Rejections::new([0; 32]);
        let get = http::Method::GET;
        for i in 0..(RING as i64 + 5) {
            ring.record(i, &rejection("user:u", &get));
        }
        let recent = ring.recent();
        assert_eq!(recent.len(), RING);
        assert_eq!(recent[0].at_ms, RING as i64 + 4);
        assert_eq!(recent[RING - 1].at_ms, 5);
    }

    #[test]
    fn minutes_count_their_own_rejections_and_forget_older_hours() {
        let ring = Rejections::new([0; 32]);
        let get = http::Method::GET;
        let start = 1_000 * MINUTE_MS;
        ring.record(start, &rejection("user:u", &get));
        ring.record(start + 59_999, &rejection("user:u", &get));
        ring.record(start + MINUTE_MS, &rejection("user:u", &get));
        let now = start + 2 * MINUTE_MS;
        let counts = ring.per_minute(now);
        assert_eq!(counts.len(), MINUTES);
        assert_eq!(counts[MINUTES - 1], (now, 0));
        assert_eq!(counts[MINUTES - 2], (start + MINUTE_MS, 1));
        assert_eq!(counts[MINUTES - 3], (start, 2));
        // An hour on, the same slots belong to other minutes and count nothing.
        let later = ring.per_minute(now + 60 * MINUTE_MS);
        assert!(later.iter().all(|(_, n)| *n == 0), "{later:?}");
    }
}
