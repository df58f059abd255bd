//! The login throttling seam.
//!
//! The server asks a [`Throttle`] before each password check (login, session login,
//! password reset), keyed by what is being guessed and by whom. The default
//! [`FixedWindow`] keeps counters in memory; a deployment with several instances plugs in
//! a shared limiter (the `basis-ratelimit` crate's Redis store) by implementing the trait.

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Mutex;

/// What is being throttled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Action {
    /// Password logins (tokens or session): the guide's 5 per 15 minutes.
    Login,
    /// Password reset requests: 3 per hour.
    PasswordReset,
    /// Second-factor codes (TOTP or recovery) after a password: as many as logins.
    SecondFactor,
}

impl Action {
    /// The default allowance: (attempts, window in ms).
    pub fn allowance(self) -> (u32, i64) {
        match self {
            Action::Login | Action::SecondFactor => (5, 15 * 60 * 1000),
            Action::PasswordReset => (3, 60 * 60 * 1000),
        }
    }

    /// A short name for keys and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Login => "login",
            Action::PasswordReset => "password-reset",
            Action::SecondFactor => "second-factor",
        }
    }
}

/// A decision: go ahead, or retry after this many seconds.
pub type Verdict = Result<(), u64>;

/// A boxed future, so the trait stays object-safe.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Decides whether an attempt may proceed. `subject` is e.g. `"<email>|<ip>"`; `now_ms`
/// comes from the server's clock.
pub trait Throttle: Send + Sync + fmt::Debug + 'static {
    /// Counts one attempt of `action` by `subject` and decides.
    fn attempt<'a>(
        &'a self,
        action: Action,
        subject: &'a str,
        now_ms: i64,
    ) -> BoxFuture<'a, Verdict>;
}

/// An in-memory fixed window per (action, subject), bounded in size.
#[derive(Debug, Default)]
pub struct FixedWindow {
    // A std mutex: the critical section is a map lookup, never held across an await.
    windows: Mutex<HashMap<(Action, String), (i64, u32)>>,
}

/// Above this many tracked subjects, windows that have ended are dropped.
const MAX_TRACKED: usize = 100_000;

impl FixedWindow {
    /// Counts an attempt and decides, synchronously.
    pub fn decide(&self, action: Action, subject: &str, now_ms: i64) -> Verdict {
        let (limit, window_ms) = action.allowance();
        let mut windows = self.windows.lock().unwrap_or_else(|e| e.into_inner());
        if windows.len() >= MAX_TRACKED {
            windows.retain(|(a, _), (start, _)| now_ms < *start + a.allowance().1);
        }
        let entry = windows
            .entry((action, subject.to_owned()))
            .or_insert((now_ms, 0));
        if now_ms >= entry.0 + window_ms {
            *entry = (now_ms, 0);
        }
        if entry.1 >= limit {
            let wait_ms = entry.0 + window_ms - now_ms;
            let seconds = (wait_ms + 999) / 1000;
            return Err(u64::try_from(seconds).unwrap_or(1).max(1));
        }
        entry.1 += 1;
        Ok(())
    }
}

impl Throttle for FixedWindow {
    fn attempt<'a>(
        &'a self,
        action: Action,
        subject: &'a str,
        now_ms: i64,
    ) -> BoxFuture<'a, Verdict> {
        let verdict = self.decide(action, subject, now_ms);
        Box::pin(std::future::ready(verdict))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn five_logins_per_fifteen_minutes_then_retry_after() {
        let throttle = FixedWindow::default();
        for _ in 0..5 {
            assert_eq!(throttle.decide(Action::Login, "a|ip", 0), Ok(()));
        }
        assert_eq!(throttle.decide(Action::Login, "a|ip", 1000), Err(899));
        assert_eq!(throttle.decide(Action::Login, "b|ip", 1000), Ok(()));
        assert_eq!(throttle.decide(Action::Login, "a|ip", 900_000), Ok(()));
    }
}
