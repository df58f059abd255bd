//! Matching a request to rules, and naming who a rule limits.

use std::net::IpAddr;

use http::Method;
use serde::{Deserialize, Deserializer};

use super::RateLimitSubject;
use super::config::RuleConfig;
use crate::algorithm::Policy;
use crate::error::Error;
use crate::metrics::DecisionCounters;
use crate::subject::ip_subject;

/// Who a rule limits. Anything not known for a request falls back to the client IP.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KeyKind {
    /// The client address (IPv6 by /64), see [`crate::ip_subject`].
    #[default]
    Ip,
    /// The authenticated user ([`RateLimitSubject::user_id`]).
    User,
    /// The API key ([`RateLimitSubject::api_key_id`]).
    ApiKey,
    /// The API key, else the user, else the IP: "per client".
    Client,
    /// The account a login or reset names ([`RateLimitSubject::account`]).
    Account,
    /// The account together with the IP: one address cannot lock an account out for
    /// everyone, and one account cannot be guessed from many attempts of one address.
    AccountIp,
}

impl KeyKind {
    /// The subject string for a request.
    pub fn subject(self, ip: Option<IpAddr>, who: Option<&RateLimitSubject>) -> String {
        let ip = || ip.map_or_else(|| "ip:unknown".to_owned(), ip_subject);
        let user = who.and_then(|w| w.user_id.as_deref());
        let key = who.and_then(|w| w.api_key_id.as_deref());
        let account = who.and_then(|w| w.account.as_deref());
        match self {
            KeyKind::Ip => ip(),
            KeyKind::User => user.map_or_else(ip, |u| format!("user:{u}")),
            KeyKind::ApiKey => key.map_or_else(ip, |k| format!("key:{k}")),
            KeyKind::Client => match (key, user) {
                (Some(k), _) => format!("key:{k}"),
                (None, Some(u)) => format!("user:{u}"),
                (None, None) => ip(),
            },
            KeyKind::Account => account.map_or_else(ip, |a| format!("account:{a}")),
            KeyKind::AccountIp => match account {
                Some(a) => format!("account:{a}|{}", ip()),
                None => ip(),
            },
        }
    }
}

/// A path pattern: literal segments, `*` or `{name}` for exactly one segment, and a
/// trailing `**` for zero or more segments (`/links/**` matches `/links` and
/// `/links/abc/stats`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathPattern {
    segments: Vec<Segment>,
    rest: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    Literal(String),
    Any,
}

impl PathPattern {
    /// Parses a pattern; it must start with `/`, and `**` may only come last.
    pub fn parse(pattern: &str) -> Result<Self, String> {
        let Some(body) = pattern.strip_prefix('/') else {
            return Err(format!("path pattern {pattern:?} must start with '/'"));
        };
        let mut parts: Vec<&str> = body.split('/').filter(|s| !s.is_empty()).collect();
        let rest = parts.last() == Some(&"**");
        if rest {
            parts.pop();
        }
        let segments = parts
            .into_iter()
            .map(|s| match s {
                "**" => Err(format!("in {pattern:?}, `**` may only end a pattern")),
                "*" => Ok(Segment::Any),
                s if s.starts_with('{') && s.ends_with('}') => Ok(Segment::Any),
                s => Ok(Segment::Literal(s.to_owned())),
            })
            .collect::<Result<_, _>>()?;
        Ok(Self { segments, rest })
    }

    /// Whether `path` (without query) matches.
    pub fn matches(&self, path: &str) -> bool {
        let mut parts = path.split('/').filter(|s| !s.is_empty());
        for segment in &self.segments {
            match (segment, parts.next()) {
                (_, None) => return false,
                (Segment::Any, Some(_)) => {}
                (Segment::Literal(l), Some(p)) if l == p => {}
                _ => return false,
            }
        }
        self.rest || parts.next().is_none()
    }
}

/// The pattern as it could be written (`{name}` segments show as `*`).
impl std::fmt::Display for PathPattern {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for segment in &self.segments {
            match segment {
                Segment::Literal(l) => write!(f, "/{l}")?,
                Segment::Any => f.write_str("/*")?,
            }
        }
        match (self.rest, self.segments.is_empty()) {
            (true, _) => f.write_str("/**"),
            (false, true) => f.write_str("/"),
            (false, false) => Ok(()),
        }
    }
}

impl<'de> Deserialize<'de> for PathPattern {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        Self::parse(&text).map_err(serde::de::Error::custom)
    }
}

/// A rule ready to match requests.
#[derive(Debug, Clone)]
pub(crate) struct CompiledRule {
    pub name: String,
    pub methods: Vec<Method>,
    pub paths: Vec<PathPattern>,
    /// The first segment of every path pattern, when each starts with a literal: a path
    /// whose first segment is not among them cannot match, which most requests show at once.
    pub first_segments: Option<Vec<String>>,
    pub key: KeyKind,
    pub policy: Policy,
    pub cost: u64,
    /// `"name";q=limit;w=seconds`, precomputed for the `RateLimit-Policy` header.
    pub policy_item: String,
    /// The same as a header value, for the common single-rule response.
    pub policy_header: http::HeaderValue,
    /// This rule's decision counters.
    pub counters: DecisionCounters,
}

impl CompiledRule {
    pub fn compile(rule: &RuleConfig) -> Result<Self, Error> {
        let policy = Policy::new(rule.algorithm, rule.limit, rule.period)?;
        let methods = rule
            .methods
            .iter()
            .map(|m| {
                Method::from_bytes(m.to_ascii_uppercase().as_bytes())
                    .map_err(|_| Error::InvalidPolicy(format!("{m:?} is not a method")))
            })
            .collect::<Result<_, _>>()?;
        let window = rule.period.as_secs_f64().ceil() as u64;
        let policy_item = format!("\"{}\";q={};w={}", rule.name, rule.limit, window.max(1));
        let policy_header = http::HeaderValue::try_from(policy_item.as_str()).map_err(|_| {
            Error::InvalidPolicy(format!("rule name {:?} is not header-safe", rule.name))
        })?;
        Ok(Self {
            policy_item,
            policy_header,
            counters: DecisionCounters::new(&rule.name),
            name: rule.name.clone(),
            methods,
            paths: rule.paths.clone(),
            first_segments: rule
                .paths
                .iter()
                .map(|p| match p.segments.first() {
                    Some(Segment::Literal(first)) => Some(first.clone()),
                    _ => None,
                })
                .collect(),
            key: rule.key,
            policy,
            cost: rule.cost.get(),
        })
    }

    /// Whether the rule covers `method` and `path`, whose first non-empty segment is
    /// `first` (see [`first_segment`]).
    pub fn matches(&self, method: &Method, path: &str, first: &str) -> bool {
        (self.methods.is_empty() || self.methods.contains(method))
            && self
                .first_segments
                .as_ref()
                .is_none_or(|firsts| firsts.iter().any(|f| f == first))
            && self.paths.iter().any(|p| p.matches(path))
    }
}

/// The first non-empty segment of `path` (`""` for `/`), found once per request so that
/// rules can reject a path by its first segment without splitting it again.
pub(crate) fn first_segment(path: &str) -> &str {
    let rest = path.trim_start_matches('/');
    rest.split_once('/').map_or(rest, |(first, _)| first)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn matches(pattern: &str, path: &str) -> bool {
        PathPattern::parse(pattern).unwrap().matches(path)
    }

    #[test]
    fn patterns_show_as_written_with_names_as_stars() {
        for (written, shown) in [
            ("/auth/login", "/auth/login"),
            ("/links/{code}/stats", "/links/*/stats"),
            ("/links/**", "/links/**"),
            ("/**", "/**"),
            ("/", "/"),
        ] {
            assert_eq!(PathPattern::parse(written).unwrap().to_string(), shown);
        }
    }

    #[test]
    fn patterns_match_segments() {
        assert!(matches("/auth/login", "/auth/login"));
        assert!(!matches("/auth/login", "/auth/login/x"));
        assert!(matches("/links/*", "/links/abc"));
        assert!(!matches("/links/*", "/links"));
        assert!(!matches("/links/*", "/links/abc/stats"));
        assert!(matches("/links/{code}/stats", "/links/abc/stats"));
        assert!(matches("/links/**", "/links"));
        assert!(matches("/links/**", "/links/abc/stats"));
        assert!(!matches("/links/**", "/linksx"));
        assert!(matches("/**", "/"));
    }

    #[test]
    fn rules_reject_by_first_segment_only_when_every_pattern_starts_with_a_literal() {
        let rule = |paths: &str| {
            let text = format!(
                "[[rules]]\nname = \"r\"\npaths = {paths}\nalgorithm = \"gcra\"\nlimit = 1\nperiod = \"1s\"\n"
            );
            let config = crate::http::RateLimitConfig::parse(&text).unwrap();
            CompiledRule::compile(&config.rules[0]).unwrap()
        };
        let covers =
            |rule: &CompiledRule, path: &str| rule.matches(&Method::GET, path, first_segment(path));
        let literal = rule(r#"["/links/**", "/shorten"]"#);
        assert!(literal.first_segments.is_some());
        for path in ["/links", "/links/abc/stats", "//links//abc", "/shorten"] {
            assert!(covers(&literal, path), "{path}");
        }
        for path in ["/", "/abc1234", "/linksx", "/shorten/x"] {
            assert!(!covers(&literal, path), "{path}");
        }
        let open = rule(r#"["/links/**", "/{code}/stats"]"#);
        assert!(open.first_segments.is_none());
        assert!(covers(&open, "/abc1234/stats"));
        assert!(!covers(&open, "/abc1234"));
        assert!(covers(&rule(r#"["/**"]"#), "/abc1234"));
    }

    #[test]
    fn bad_patterns_are_refused() {
        assert!(PathPattern::parse("links").is_err());
        assert!(PathPattern::parse("/a/**/b").is_err());
    }

    #[test]
    fn subjects_fall_back_to_the_ip() {
        let ip = Some("198.51.100.4".parse().unwrap());
        assert_eq!(KeyKind::User.subject(ip, None), "ip:198.51.100.4");
        let who = RateLimitSubject {
            user_id: Some("42".into()),
            api_key_id: None,
            account: Some("ann@example.com".into()),
        };
        assert_eq!(KeyKind::Client.subject(ip, Some(&who)), "user:42");
        assert_eq!(
            KeyKind::AccountIp.subject(ip, Some(&who)),
            "account:ann@example.com|ip:198.51.100.4"
        );
        assert_eq!(KeyKind::Ip.subject(None, Some(&who)), "ip:unknown");
    }
}
