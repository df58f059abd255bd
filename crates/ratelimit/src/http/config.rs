//! The rule file: TOML, parsed once at start, failing with the line and the reason.
//!
//! ```toml
//! trusted_proxies = ["10.0.0.0/8", "::1"]   # whose X-Forwarded-For / Forwarded to believe
//!
//! [store]
//! key_prefix = "basis:rl"     # Redis key prefix
//! timeout_ms = 50             # per-decision timeout for Redis
//! on_outage = "fail_open"     # fail_open | fail_closed | fallback (local limiter)
//! max_memory_keys = 1000000   # cap of the in-memory store (and of the fallback)
//! coalesce = true             # batch concurrent Redis decisions; false on Redis Cluster
//!
//! [[rules]]
//! name = "login"
//! methods = ["POST"]          # empty or absent: every method
//! paths = ["/auth/login"]     # `*` or `{name}`: one segment; trailing `**`: anything below
//! key = "account_ip"          # ip | user | api_key | client | account | account_ip
//! algorithm = "sliding_log"   # token_bucket | gcra | fixed_window | sliding_log | sliding_window
//! limit = 5
//! period = "15m"              # ms, s, m, h, d
//! cost = 1                    # units per request (default 1)
//! ```
//!
//! The built-in defaults are `default_rules.toml` beside this file.

use std::num::NonZeroU64;
use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Deserializer};

use super::client_ip::IpNet;
use super::rules::{KeyKind, PathPattern};
use crate::algorithm::Algorithm;
use crate::error::Error;
use crate::limiter::OutagePolicy;

/// The built-in rules: login, password reset, link creation and the general API.
pub const DEFAULT_RULES: &str = include_str!("default_rules.toml");

/// Everything the layer needs, parsed and validated.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimitConfig {
    /// When false every rule is off (`BASIS_RATE_LIMITS=off`, for load tests).
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Peers whose forwarding headers are believed.
    #[serde(default)]
    pub trusted_proxies: Vec<IpNet>,
    /// Store settings.
    #[serde(default)]
    pub store: StoreSettings,
    /// The rules, checked in order; every matching rule applies.
    #[serde(default)]
    pub rules: Vec<RuleConfig>,
}

/// Where state lives and what happens when Redis fails.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StoreSettings {
    /// Prefix of every Redis key.
    pub key_prefix: String,
    /// Per-decision timeout for Redis, in milliseconds.
    pub timeout_ms: u64,
    /// What to answer when Redis fails or is late.
    pub on_outage: OutagePolicy,
    /// Cap of the in-memory store (also used for the fallback limiter).
    pub max_memory_keys: usize,
    /// Coalesce concurrent Redis decisions into one script call; turn off on Redis
    /// Cluster (one call may only touch one slot).
    pub coalesce: bool,
}

impl Default for StoreSettings {
    fn default() -> Self {
        Self {
            key_prefix: "basis:rl".into(),
            timeout_ms: 50,
            on_outage: OutagePolicy::FailOpen,
            max_memory_keys: 1_000_000,
            coalesce: true,
        }
    }
}

/// One rule as written in the file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleConfig {
    /// Unique name; appears in headers, metrics and keys.
    pub name: String,
    /// HTTP methods; empty means all.
    #[serde(default)]
    pub methods: Vec<String>,
    /// Path patterns; at least one.
    pub paths: Vec<PathPattern>,
    /// Who is limited.
    #[serde(default)]
    pub key: KeyKind,
    /// Which algorithm.
    pub algorithm: Algorithm,
    /// Units per period.
    pub limit: NonZeroU64,
    /// The period.
    #[serde(deserialize_with = "duration")]
    pub period: Duration,
    /// Units one request costs.
    #[serde(default = "one")]
    pub cost: NonZeroU64,
}

impl Default for RateLimitConfig {
    fn default() -> Self {
        Self::defaults()
    }
}

impl RateLimitConfig {
    /// The built-in rules ([`DEFAULT_RULES`]).
    pub fn defaults() -> Self {
        // The file ships with the crate and is parsed by a unit test.
        Self::parse(DEFAULT_RULES).unwrap_or_else(|e| panic!("built-in rules: {e}"))
    }

    /// Parses a rule file's text.
    pub fn parse(text: &str) -> Result<Self, Error> {
        let config: Self = toml::from_str(text).map_err(|e| Error::Config {
            line: e.span().map_or(0, |s| line_of(text, s.start)),
            reason: e.message().to_owned(),
        })?;
        config.validate(text)?;
        Ok(config)
    }

    /// Reads and parses a rule file.
    pub fn from_file(path: &Path) -> Result<Self, Error> {
        let text = std::fs::read_to_string(path).map_err(|source| Error::ReadConfig {
            path: path.display().to_string(),
            source,
        })?;
        Self::parse(&text)
    }

    /// What the server calls at start: the file when given (else the defaults), then
    /// the switch (`BASIS_RATE_LIMITS`): `off` disables every rule, `on` or nothing
    /// keeps them.
    pub fn load(path: Option<&Path>, switch: Option<&str>) -> Result<Self, Error> {
        let mut config = match path {
            Some(path) => Self::from_file(path)?,
            None => Self::defaults(),
        };
        match switch.map(|s| s.trim().to_ascii_lowercase()).as_deref() {
            None | Some("" | "on") => {}
            Some("off") => config.enabled = false,
            Some(other) => {
                return Err(Error::Config {
                    line: 0,
                    reason: format!("BASIS_RATE_LIMITS must be `on` or `off`, not {other:?}"),
                });
            }
        }
        Ok(config)
    }

    fn validate(&self, text: &str) -> Result<(), Error> {
        for (i, rule) in self.rules.iter().enumerate() {
            let fail = |reason: String| Error::Config {
                line: line_of_rule(text, &rule.name),
                reason,
            };
            if rule.name.is_empty() || rule.name.contains(['"', '\\', '{', '}']) {
                return Err(fail(
                    "a rule name must be non-empty without quotes or braces".into(),
                ));
            }
            if self.rules[..i].iter().any(|r| r.name == rule.name) {
                return Err(fail(format!("rule {:?} is defined twice", rule.name)));
            }
            if rule.paths.is_empty() {
                return Err(fail(format!(
                    "rule {:?} needs at least one path",
                    rule.name
                )));
            }
            if rule.cost > rule.limit {
                return Err(fail(format!("rule {:?}: cost exceeds limit", rule.name)));
            }
            if let Some(m) = rule
                .methods
                .iter()
                .find(|m| http::Method::from_bytes(m.as_bytes()).is_err())
            {
                return Err(fail(format!("rule {:?}: {m:?} is not a method", rule.name)));
            }
            crate::Policy::new(rule.algorithm, rule.limit, rule.period)
                .map_err(|e| fail(format!("rule {:?}: {e}", rule.name)))?;
        }
        Ok(())
    }
}

fn yes() -> bool {
    true
}

fn one() -> NonZeroU64 {
    NonZeroU64::MIN
}

fn line_of(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())].matches('\n').count() + 1
}

/// The line of `name = "<name>"` for errors found after parsing.
fn line_of_rule(text: &str, name: &str) -> usize {
    text.lines()
        .position(|l| {
            let l = l.trim_start();
            l.starts_with("name") && l.contains(&format!("\"{name}\""))
        })
        .map_or(0, |i| i + 1)
}

fn duration<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    let text = String::deserialize(d)?;
    parse_duration(&text).ok_or_else(|| {
        serde::de::Error::custom(format!(
            "{text:?} is not a duration (use a number and ms, s, m, h or d, e.g. \"15m\")"
        ))
    })
}

/// Parses `500ms`, `30s`, `15m`, `1h`, `1d`.
pub(crate) fn parse_duration(text: &str) -> Option<Duration> {
    let text = text.trim();
    let split = text.find(|c: char| !c.is_ascii_digit())?;
    let (number, unit) = text.split_at(split);
    let n: u64 = number.parse().ok()?;
    let unit_ms = match unit.trim() {
        "ms" => 1,
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        _ => return None,
    };
    Some(Duration::from_millis(n.checked_mul(unit_ms)?)).filter(|d| !d.is_zero())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_built_in_rules_parse() {
        let config = RateLimitConfig::defaults();
        let names: Vec<_> = config.rules.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(names, ["login", "password_reset", "link_create", "api"]);
        assert!(config.enabled);
    }

    #[test]
    fn a_syntax_error_names_its_line() {
        let err = RateLimitConfig::parse("[[rules]]\nname = \"x\"\nlimit = = 3\n").unwrap_err();
        assert!(matches!(err, Error::Config { line: 3, .. }), "{err}");
    }

    #[test]
    fn a_bad_value_names_its_line_and_reason() {
        let text = "[[rules]]\nname = \"x\"\npaths = [\"/a\"]\nalgorithm = \"gcra\"\nlimit = 3\nperiod = \"soon\"\n";
        let err = RateLimitConfig::parse(text).unwrap_err();
        let Error::Config { line, reason } = err else {
            panic!("{err}")
        };
        assert_eq!(line, 6);
        assert!(reason.contains("not a duration"), "{reason}");
    }

    #[test]
    fn a_zero_limit_or_unknown_algorithm_is_refused() {
        let base = "[[rules]]\nname = \"x\"\npaths = [\"/a\"]\nperiod = \"1s\"\n";
        assert!(
            RateLimitConfig::parse(&format!("{base}algorithm = \"gcra\"\nlimit = 0\n")).is_err()
        );
        let err = RateLimitConfig::parse(&format!("{base}algorithm = \"leaky\"\nlimit = 1\n"));
        assert!(matches!(err, Err(Error::Config { line: 5, .. })), "{err:?}");
    }

    #[test]
    fn semantic_errors_point_at_the_rule() {
        let text = "[[rules]]\nname = \"x\"\npaths = [\"/a\"]\nalgorithm = \"gcra\"\nlimit = 1\ncost = 2\nperiod = \"1s\"\n";
        let err = RateLimitConfig::parse(text).unwrap_err();
        assert!(matches!(err, Error::Config { line: 2, .. }), "{err}");
    }

    #[test]
    fn the_switch_turns_everything_off() {
        assert!(!RateLimitConfig::load(None, Some("off")).unwrap().enabled);
        assert!(RateLimitConfig::load(None, Some("on")).unwrap().enabled);
        assert!(RateLimitConfig::load(None, Some("maybe")).is_err());
    }

    #[test]
    fn durations_parse() {
        assert_eq!(parse_duration("15m"), Some(Duration::from_secs(900)));
        assert_eq!(parse_duration("250ms"), Some(Duration::from_millis(250)));
        assert_eq!(parse_duration("0s"), None);
        assert_eq!(parse_duration("m"), None);
        assert_eq!(parse_duration("5 weeks"), None);
    }
}
