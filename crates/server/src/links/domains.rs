//! Several domains on one instance (`--domain`, `--unknown-domain-redirect`).
//!
//! Every link belongs to one domain: the default one (the base URL's host, stored as no
//! domain at all) or one of the configured others. An alias is unique within its domain;
//! generated codes are ids, unique everywhere. A redirect finds the link by the request's
//! `Host` and the code; a link of another domain is not found.
//!
//! With no other domain and no fallback configured (one domain, the usual case), `Host` is
//! not even read: every request is for the default domain, as before domains existed.
//!
//! The routes that manage one link (`/links/{code}`, its stats, visits and exports) take
//! `?domain=` ([`LinkDomain`]): the same alias on two domains is two links, and the
//! parameter says which one is meant. Without it an alias is looked up on the default
//! domain and a generated code wherever it lives.

use std::collections::HashSet;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, Uri, header};
use serde::Deserialize;
use url::Url;
use utoipa::IntoParams;

use crate::error::ApiError;
use crate::state::AppState;

/// The domains this instance serves.
#[derive(Debug, Clone)]
pub struct Domains {
    /// The base URL's host, lower-case.
    default: String,
    /// The base URL's scheme, for the short URLs of the other domains.
    scheme: String,
    /// The other domains, lower-case.
    others: HashSet<String>,
    /// Where a request on an unknown `Host` is sent (else it is 404).
    fallback: Option<HeaderValue>,
}

/// Which domain a request is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Served<'a> {
    /// The default domain.
    Default,
    /// One of the other configured domains.
    Named(&'a str),
    /// None of them.
    Unknown,
}

impl Domains {
    /// The domains of an instance at `base_url` with `others` besides, and the fallback.
    pub fn new(base_url: &Url, others: &[String], fallback: Option<&Url>) -> anyhow::Result<Self> {
        let default = base_url
            .host_str()
            .ok_or_else(|| anyhow::anyhow!("the base URL has no host"))?
            .to_ascii_lowercase();
        let mut set = HashSet::new();
        for raw in others {
            let name = parse_name(raw).map_err(|why| anyhow::anyhow!("--domain {raw:?}: {why}"))?;
            if name != default {
                set.insert(name);
            }
        }
        let fallback = fallback
            .map(|url| {
                HeaderValue::from_str(url.as_str())
                    .map_err(|_| anyhow::anyhow!("--unknown-domain-redirect is not a valid URL"))
            })
            .transpose()?;
        Ok(Self {
            default,
            scheme: base_url.scheme().to_owned(),
            others: set,
            fallback,
        })
    }

    /// Whether requests must be told apart by `Host` at all.
    pub fn checks_host(&self) -> bool {
        !self.others.is_empty() || self.fallback.is_some()
    }

    /// The default domain's name.
    pub fn default_name(&self) -> &str {
        &self.default
    }

    /// Every domain's name, the default first, the others sorted.
    pub fn names(&self) -> Vec<&str> {
        let mut others: Vec<&str> = self.others.iter().map(String::as_str).collect();
        others.sort_unstable();
        std::iter::once(self.default.as_str())
            .chain(others)
            .collect()
    }

    /// The domain a link is to be made on: `None` for the default one; an error when
    /// `name` is not one of this instance's domains.
    pub fn parse(&self, name: &str) -> Result<Option<String>, String> {
        let name = parse_name(name)?;
        if name == self.default {
            Ok(None)
        } else if self.others.contains(&name) {
            Ok(Some(name))
        } else {
            Err(format!(
                "is not a domain of this server (one of: {})",
                self.names().join(", ")
            ))
        }
    }

    /// The domain a request is for, by its `Host` (or its URI's authority, in HTTP/2).
    pub fn served<'a>(&'a self, headers: &'a HeaderMap, uri: &'a Uri) -> Served<'a> {
        if !self.checks_host() {
            return Served::Default;
        }
        let host = headers
            .get(header::HOST)
            .and_then(|v| v.to_str().ok())
            .or_else(|| uri.authority().map(|a| a.as_str()));
        let Some(host) = host.map(host_part) else {
            return Served::Unknown;
        };
        if host.eq_ignore_ascii_case(&self.default) {
            return Served::Default;
        }
        match self.others.iter().find(|d| d.eq_ignore_ascii_case(host)) {
            Some(name) => Served::Named(name),
            None => Served::Unknown,
        }
    }

    /// Where a request on an unknown host goes, if anywhere.
    pub fn fallback(&self) -> Option<&HeaderValue> {
        self.fallback.as_ref()
    }

    /// The public URL of `code` on `domain` (`None`: the default domain, under `base_url`).
    pub fn short_url(&self, base_url: &str, domain: Option<&str>, code: &str) -> String {
        match domain {
            None => format!("{base_url}/{code}"),
            Some(domain) => format!("{}://{domain}/{code}", self.scheme),
        }
    }
}

/// A `Host` value without its port (an IPv6 literal keeps its brackets).
fn host_part(host: &str) -> &str {
    if host.starts_with('[') {
        return host.split_inclusive(']').next().unwrap_or(host);
    }
    host.rsplit_once(':').map_or(host, |(name, _)| name)
}

/// A domain name as configured or asked for: a host name, lower-cased, without scheme,
/// port or path.
fn parse_name(raw: &str) -> Result<String, String> {
    let name = raw.trim().trim_end_matches('.').to_ascii_lowercase();
    let valid = !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        });
    if valid {
        Ok(name)
    } else {
        Err("must be a host name such as links.example.com (no scheme, port or path)".into())
    }
}

/// The query parameter of the routes that manage one link, for the OpenAPI document (the
/// handlers read it with [`LinkDomain`]).
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct DomainParam {
    /// The domain the link lives on (the same alias may live on several). Without it an
    /// alias is looked up on the default domain, and a generated code on any domain.
    #[param(value_type = Option<crate::http::schema::HostName>)]
    pub domain: Option<String>,
}

/// Which domain a request managing one link means: `?domain=`, checked against the
/// served domains (400 naming `domain` for any other).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LinkDomain(Option<Option<String>>);

impl LinkDomain {
    /// `domain` named explicitly (`None`: the default one).
    pub fn named(domain: Option<String>) -> Self {
        Self(Some(domain))
    }

    /// The domain an alias is looked up on (`None`: the default one).
    pub fn lookup(&self) -> Option<&str> {
        self.0.as_ref().and_then(|d| d.as_deref())
    }

    /// Whether a link living on `domain` is the one meant: any, unless one was named.
    pub fn admits(&self, domain: Option<&str>) -> bool {
        self.0
            .as_ref()
            .is_none_or(|named| named.as_deref() == domain)
    }
}

impl FromRequestParts<AppState> for LinkDomain {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let Some(query) = parts.uri.query() else {
            return Ok(Self::default());
        };
        let Some((_, name)) =
            url::form_urlencoded::parse(query.as_bytes()).find(|(key, _)| key == "domain")
        else {
            return Ok(Self::default());
        };
        state
            .domains
            .parse(&name)
            .map(Self::named)
            .map_err(|why| ApiError::field("domain", why))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn domains(fallback: Option<&str>) -> Domains {
        Domains::new(
            &Url::parse("https://sho.rt").unwrap(),
            &["Links.Example".into(), "sho.rt".into()],
            fallback.map(|u| Url::parse(u).unwrap()).as_ref(),
        )
        .unwrap()
    }

    fn host(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(header::HOST, HeaderValue::from_str(value).unwrap());
        headers
    }

    #[test]
    fn a_request_is_served_by_the_domain_its_host_names() {
        let d = domains(None);
        let uri = Uri::from_static("/abc");
        assert_eq!(d.served(&host("sho.rt"), &uri), Served::Default);
        assert_eq!(d.served(&host("SHO.RT:8443"), &uri), Served::Default);
        assert_eq!(
            d.served(&host("links.example"), &uri),
            Served::Named("links.example")
        );
        assert_eq!(d.served(&host("evil.example"), &uri), Served::Unknown);
        assert_eq!(d.served(&HeaderMap::new(), &uri), Served::Unknown);
        assert_eq!(
            d.served(
                &HeaderMap::new(),
                &Uri::from_static("https://links.example/abc")
            ),
            Served::Named("links.example")
        );
    }

    #[test]
    fn one_domain_without_fallback_never_reads_the_host() {
        let d = Domains::new(&Url::parse("http://127.0.0.1:8080").unwrap(), &[], None).unwrap();
        assert!(!d.checks_host());
        assert_eq!(
            d.served(&host("anything.example"), &Uri::from_static("/x")),
            Served::Default
        );
    }

    #[test]
    fn a_link_may_be_made_only_on_a_configured_domain() {
        let d = domains(Some("https://home.example/"));
        assert_eq!(d.parse("sho.rt"), Ok(None));
        assert_eq!(d.parse("LINKS.example."), Ok(Some("links.example".into())));
        assert!(
            d.parse("other.example")
                .unwrap_err()
                .contains("links.example")
        );
        assert!(d.parse("https://links.example/").is_err());
        assert!(d.checks_host());
        assert_eq!(
            d.short_url("https://sho.rt", Some("links.example"), "abc"),
            "https://links.example/abc"
        );
        assert_eq!(
            d.short_url("https://sho.rt", None, "abc"),
            "https://sho.rt/abc"
        );
        assert!(
            Domains::new(
                &Url::parse("https://sho.rt").unwrap(),
                &["a b".into()],
                None
            )
            .is_err()
        );
    }
}
