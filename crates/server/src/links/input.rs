//! Parsing of what clients send about links: target URLs and custom aliases.
//!
//! Each type can only hold a valid value, so the handlers never re-check.

use std::collections::HashSet;
use std::path::Path;

use url::{Host, Url};

/// Path segments that belong to the service itself and cannot be aliases (compared without
/// regard to case, since a client may not care about it). The pages' words (`crate::web`)
/// are among them. A word is reserved for new aliases only: a link made before its word
/// was reserved keeps its alias, is still managed under `/links/{code}` and still
/// redirects at `/{code}` until a page takes that path (a fixed route wins over `/{code}`).
pub const RESERVED: &[&str] = &[
    "account",
    "admin",
    "api",
    "api-keys",
    "app",
    "assets",
    "auth",
    // Names under /links/ that are routes, not codes (`/links/bulk`, `/links/tags`, ...).
    "blog",
    "bulk",
    "comments",
    "docs",
    "export",
    "favicon",
    "healthz",
    "jobs",
    "links",
    "login",
    "logout",
    "metrics",
    "my",
    "openapi",
    "posts",
    "queues",
    "readyz",
    "reset",
    "robots",
    "session",
    "shorten",
    "signin",
    "signout",
    "signup",
    "static",
    "swagger",
    "tags",
    "ui",
    "users",
    "well-known",
];

/// A custom alias: 3 to 64 characters of `[A-Za-z0-9_-]`, not a route of the service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Alias(String);

impl Alias {
    /// Parses an alias, explaining a refusal.
    pub fn parse(s: &str) -> Result<Self, String> {
        if !(3..=64).contains(&s.len()) {
            return Err("must be 3 to 64 characters long".into());
        }
        if !s
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        {
            return Err("may contain only letters, digits, '_' and '-'".into());
        }
        if RESERVED.iter().any(|r| r.eq_ignore_ascii_case(s)) {
            return Err(format!("'{s}' is reserved for the service's own routes"));
        }
        // Seven letters and digits is the shape of a generated code, which is looked up by
        // the id it decodes to; an alias of that shape could never be told apart from one.
        if super::code::is_code_shaped(s) {
            return Err(
                "seven letters and digits is the shape of a generated code: use another \
                 length, or add '-' or '_'"
                    .into(),
            );
        }
        Ok(Self(s.to_owned()))
    }

    /// The alias.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The alias.
    pub fn into_string(self) -> String {
        self.0
    }
}

/// The rules a target URL must satisfy, fixed at start.
#[derive(Debug, Clone)]
pub struct UrlPolicy {
    /// Longest accepted URL, in bytes.
    pub max_len: usize,
    /// This service's own origin: links to it would redirect in a loop.
    pub own_origin: Url,
    /// Hosts (and their subdomains) that links may not point to, lowercase.
    pub blocked_hosts: HashSet<String>,
}

impl UrlPolicy {
    /// Reads a blocklist file: one host per line, blank lines and `#` comments ignored.
    pub fn read_blocklist(path: &Path) -> std::io::Result<HashSet<String>> {
        let text = std::fs::read_to_string(path)?;
        Ok(text
            .lines()
            .map(|line| line.split('#').next().unwrap_or_default().trim())
            .filter(|line| !line.is_empty())
            .map(|host| host.trim_end_matches('.').to_ascii_lowercase())
            .collect())
    }

    /// Parses and checks a target URL, explaining a refusal.
    pub fn parse(&self, raw: &str) -> Result<LongUrl, String> {
        if raw.len() > self.max_len {
            return Err(format!("must be at most {} bytes", self.max_len));
        }
        if raw.trim() != raw || raw.chars().any(char::is_control) {
            return Err("must not contain spaces at the ends or control characters".into());
        }
        let url = Url::parse(raw).map_err(|e| format!("is not an absolute URL ({e})"))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(format!("must use http or https, not '{}'", url.scheme()));
        }
        let Some(host) = url.host() else {
            return Err("must name a host".into());
        };
        if !url.username().is_empty() || url.password().is_some() {
            return Err("must not carry credentials (user:password@)".into());
        }
        if self.points_at_us(&url) {
            return Err(
                "points at this service's own short links, which would redirect in a loop".into(),
            );
        }
        if let Host::Domain(domain) = host
            && self.is_blocked(domain)
        {
            return Err(format!("points at a blocked host ({domain})"));
        }
        // The normalised form can grow (punycode, percent-encoding): check it again.
        if url.as_str().len() > self.max_len {
            return Err(format!(
                "must be at most {} bytes once normalised",
                self.max_len
            ));
        }
        Ok(LongUrl(url))
    }

    fn points_at_us(&self, url: &Url) -> bool {
        url.host() == self.own_origin.host()
            && url.port_or_known_default() == self.own_origin.port_or_known_default()
    }

    fn is_blocked(&self, domain: &str) -> bool {
        if self.blocked_hosts.is_empty() {
            return false;
        }
        let domain = domain.trim_end_matches('.');
        let mut rest = domain;
        loop {
            if self.blocked_hosts.contains(rest) {
                return true;
            }
            match rest.split_once('.') {
                Some((_, parent)) => rest = parent,
                None => return false,
            }
        }
    }
}

/// A target URL that passed the [`UrlPolicy`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LongUrl(Url);

impl LongUrl {
    /// The normalised URL text.
    pub fn as_str(&self) -> &str {
        self.0.as_str()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> UrlPolicy {
        UrlPolicy {
            max_len: 2048,
            own_origin: Url::parse("https://sho.rt").unwrap(),
            blocked_hosts: ["evil.example".to_string()].into_iter().collect(),
        }
    }

    #[test]
    fn accepts_http_and_https_urls_with_a_host() {
        let p = policy();
        assert_eq!(
            p.parse("https://example.com/a?b=c").unwrap().as_str(),
            "https://example.com/a?b=c"
        );
        assert_eq!(
            p.parse("HTTP://Example.COM").unwrap().as_str(),
            "http://example.com/"
        );
    }

    #[test]
    fn refuses_dangerous_and_relative_urls() {
        let p = policy();
        for bad in [
            "javascript:alert(1)",
            "data:text/html,<script>",
            "file:///etc/passwd",
            "ftp://example.com",
            "/relative",
            "example.com",
            "https://user:pw@example.com",
            " https://example.com",
            "https://exa\u{0}mple.com",
        ] {
            assert!(p.parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn refuses_links_to_itself() {
        let p = policy();
        assert!(p.parse("https://sho.rt/abc").is_err());
        assert!(p.parse("https://SHO.RT:443/abc").is_err());
        assert!(
            p.parse("http://sho.rt/abc").is_ok(),
            "another port is another origin"
        );
    }

    #[test]
    fn refuses_blocked_hosts_and_their_subdomains() {
        let p = policy();
        assert!(p.parse("https://evil.example/x").is_err());
        assert!(p.parse("https://a.b.evil.example/x").is_err());
        assert!(p.parse("https://notevil.example/x").is_ok());
    }

    #[test]
    fn refuses_urls_over_the_length_limit() {
        let p = policy();
        let long = format!("https://example.com/{}", "a".repeat(2048));
        assert!(p.parse(&long).is_err());
    }

    #[test]
    fn aliases_follow_the_alphabet_and_avoid_routes() {
        assert!(Alias::parse("my-link_1").is_ok());
        assert!(Alias::parse("ab").is_err());
        assert!(Alias::parse("has space").is_err());
        assert!(Alias::parse("Links").is_err());
        assert!(Alias::parse("healthz").is_err());
        for page in [
            "signin", "SignUp", "signout", "account", "blog", "reset", "admin",
        ] {
            assert!(Alias::parse(page).is_err(), "{page} is a page's path");
        }
        assert!(Alias::parse(&"a".repeat(65)).is_err());
        assert!(
            Alias::parse("Promo26").is_err(),
            "the shape of a generated code"
        );
        assert!(Alias::parse("Promo-26").is_ok());
    }
}
