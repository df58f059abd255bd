//! Routing rules of a link: where a visit goes when a link has more than one destination.
//!
//! - **Targets** (first match wins): by device class (`desktop`, `mobile`, `tablet`), by
//!   operating system (`android`, `ios`, `windows`, `macos`, `linux`, `chromeos`) or by
//!   language (a primary tag such as `fr`, matched against `Accept-Language` in the
//!   client's order of preference), or by country (ISO 3166 alpha-2, the client's address
//!   looked up in the `--geoip-db` database; refused with 422 when the server has none).
//! - **Split**: when no target matches, destinations chosen by weight. Each visitor keeps
//!   the destination first drawn: the visitor carries a random number in a cookie, and the
//!   draw is a hash of that number and the link's id, so the same visitor lands on the same
//!   destination and the shares over many visitors follow the weights.
//! - Otherwise the link's own URL.
//!
//! At most [`MAX_RULES`] rules, split weights summing to a positive number; a refusal is a
//! 422 naming the member. The rules are stored as JSON (`link_guards.rules`) and parsed
//! once when the link enters the lookup cache, so a redirect only walks a short list.

use axum::http::{HeaderMap, HeaderValue, header};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa::openapi::RefOr;
use utoipa::openapi::schema::{AdditionalProperties, ObjectBuilder, OneOfBuilder, Schema, Type};

use super::device::Device;
use super::geoip::Country;
use super::input::UrlPolicy;
use crate::error::FieldError;

/// Most rules (split destinations and targets together) on one link.
pub const MAX_RULES: usize = 10;
/// The cookie holding a visitor's number.
pub const VISITOR_COOKIE: &str = "basis_visitor";

/// The operating systems a target may name.
const SYSTEMS: &[&str] = &["android", "ios", "windows", "macos", "linux", "chromeos"];
/// The device classes a target may name.
const DEVICES: &[&str] = &["desktop", "mobile", "tablet"];

/// The rules as clients send and read them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RulesInput {
    /// Destinations by weight, for visitors no target matches.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schema(max_items = 10)]
    pub split: Vec<SplitInput>,
    /// Destinations by device, system or language; the first that matches wins.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schema(max_items = 10)]
    pub targets: Vec<TargetInput>,
}

/// One weighted destination.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SplitInput {
    /// Where it goes (the rules of `longUrl`).
    #[schema(
        min_length = 1,
        max_length = 2048,
        pattern = "^[Hh][Tt][Tt][Pp][Ss]?://"
    )]
    pub url: String,
    /// Its weight (0 to 1000000; the weights must sum to a positive number).
    #[schema(minimum = 0, maximum = 1_000_000)]
    #[serde(deserialize_with = "crate::http::rest::whole_number")]
    pub weight: i64,
}

/// One targeted destination: exactly one of `device`, `os`, `language`, `country`.
/// Its schema ([`PartialSchema`] below) says so with one object per condition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TargetInput {
    /// `desktop`, `mobile` or `tablet`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device: Option<String>,
    /// `android`, `ios`, `windows`, `macos`, `linux` or `chromeos`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub os: Option<String>,
    /// A language's primary tag (`fr`, `de`, `pt`...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub language: Option<String>,
    /// A country's ISO 3166-1 alpha-2 code (`FR`, `DE`), from the client's address; needs
    /// the server started with `--geoip-db`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub country: Option<String>,
    /// Where it goes (the rules of `longUrl`).
    pub url: String,
}

/// A pattern matching any of `words` in any letter case (`[Dd][Ee]…`): JSON Schema's
/// patterns have no flag for it, and the rules read names case-insensitively.
fn any_case(words: &[&str]) -> String {
    let alternatives: Vec<String> = words
        .iter()
        .map(|word| {
            word.chars()
                .map(|c| format!("[{}{}]", c.to_ascii_uppercase(), c))
                .collect()
        })
        .collect();
    format!("^({})$", alternatives.join("|"))
}

impl utoipa::PartialSchema for TargetInput {
    fn schema() -> RefOr<Schema> {
        let condition = |name: &str, pattern: String, description: &str| -> RefOr<Schema> {
            ObjectBuilder::new()
                .property(
                    name,
                    ObjectBuilder::new()
                        .schema_type(Type::String)
                        .pattern(Some(pattern))
                        .description(Some(description)),
                )
                .property(
                    "url",
                    ObjectBuilder::new()
                        .schema_type(Type::String)
                        .min_length(Some(1))
                        .max_length(Some(2048))
                        .pattern(Some("^[Hh][Tt][Tt][Pp][Ss]?://"))
                        .description(Some("Where it goes (the rules of `longUrl`)")),
                )
                .required(name)
                .required("url")
                .additional_properties(Some(AdditionalProperties::FreeForm(false)))
                .into()
        };
        OneOfBuilder::new()
            .item(condition("device", any_case(DEVICES), "A device class"))
            .item(condition("os", any_case(SYSTEMS), "An operating system"))
            .item(condition(
                "language",
                r"^\s*[A-Za-z]{2,3}\s*$".to_owned(),
                "A language's primary tag (`fr`, `de`, `pt`)",
            ))
            .item(condition(
                "country",
                r"^\s*[A-Za-z]{2}\s*$".to_owned(),
                "An ISO 3166-1 alpha-2 code (`FR`, `DE`); needs `--geoip-db`",
            ))
            .description(Some(
                "One targeted destination: exactly one of `device`, `os`, `language`, `country`",
            ))
            .into()
    }
}

impl ToSchema for TargetInput {}

/// What a target matches.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Condition {
    Device(Device),
    Os(&'static str),
    Language(String),
    Country(Country),
}

/// Parsed rules, ready for the redirect path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rules {
    /// `(url, cumulative weight)`: a draw `d < total` goes to the first entry above `d`.
    split: Vec<(HeaderValue, u64)>,
    targets: Vec<(Condition, HeaderValue)>,
    /// The rules as given (normalised), for the API and the database.
    input: RulesInput,
}

impl Rules {
    /// Parses and checks `input`, every problem named by its member; `countries` says
    /// whether the server can tell a visitor's country (`--geoip-db`).
    pub fn parse(
        input: RulesInput,
        policy: &UrlPolicy,
        countries: bool,
    ) -> Result<Self, Vec<FieldError>> {
        let mut errors = Vec::new();
        if input.split.len() + input.targets.len() > MAX_RULES {
            errors.push(FieldError::new(
                "rules",
                format!("at most {MAX_RULES} rules (split destinations and targets together)"),
            ));
        }
        let url = |field: String, raw: &str, errors: &mut Vec<FieldError>| match policy.parse(raw) {
            Ok(url) => {
                let text = url.as_str().to_owned();
                HeaderValue::from_str(&text).ok().map(|value| (text, value))
            }
            Err(message) => {
                errors.push(FieldError::new(field, message));
                None
            }
        };
        let mut split = Vec::new();
        let mut normal = RulesInput::default();
        let mut total: u64 = 0;
        for (i, entry) in input.split.iter().enumerate() {
            if entry.weight < 0 || entry.weight > 1_000_000 {
                errors.push(FieldError::new(
                    format!("rules.split[{i}].weight"),
                    "must be from 0 to 1000000",
                ));
                continue;
            }
            if let Some((text, value)) =
                url(format!("rules.split[{i}].url"), &entry.url, &mut errors)
            {
                total += entry.weight as u64;
                split.push((value, total));
                normal.split.push(SplitInput {
                    url: text,
                    weight: entry.weight,
                });
            }
        }
        if !input.split.is_empty() && total == 0 && errors.is_empty() {
            errors.push(FieldError::new(
                "rules.split",
                "the weights must sum to a positive number",
            ));
        }
        let mut targets = Vec::new();
        for (i, target) in input.targets.iter().enumerate() {
            let field = format!("rules.targets[{i}]");
            let given = (
                &target.device,
                &target.os,
                &target.language,
                &target.country,
            );
            let condition = match given {
                (Some(device), None, None, None) => {
                    let device = device.to_ascii_lowercase();
                    match DEVICES.iter().position(|d| *d == device) {
                        Some(0) => Some(Condition::Device(Device::Desktop)),
                        Some(1) => Some(Condition::Device(Device::Mobile)),
                        Some(_) => Some(Condition::Device(Device::Tablet)),
                        None => {
                            errors.push(FieldError::new(
                                format!("{field}.device"),
                                "must be desktop, mobile or tablet",
                            ));
                            None
                        }
                    }
                }
                (None, Some(os), None, None) => {
                    let os = os.to_ascii_lowercase();
                    match SYSTEMS.iter().find(|s| **s == os) {
                        Some(known) => Some(Condition::Os(known)),
                        None => {
                            errors.push(FieldError::new(
                                format!("{field}.os"),
                                "must be android, ios, windows, macos, linux or chromeos",
                            ));
                            None
                        }
                    }
                }
                (None, None, Some(language), None) => {
                    let language = language.trim().to_ascii_lowercase();
                    if (2..=3).contains(&language.len())
                        && language.bytes().all(|b| b.is_ascii_lowercase())
                    {
                        Some(Condition::Language(language))
                    } else {
                        errors.push(FieldError::new(
                            format!("{field}.language"),
                            "must be a language's primary tag of 2 or 3 letters (fr, de, pt)",
                        ));
                        None
                    }
                }
                (None, None, None, Some(country)) => match Country::parse(country) {
                    Some(_) if !countries => {
                        errors.push(FieldError::new(
                            format!("{field}.country"),
                            "cannot be targeted: this server has no GeoIP database (--geoip-db)",
                        ));
                        None
                    }
                    Some(country) => Some(Condition::Country(country)),
                    None => {
                        errors.push(FieldError::new(
                            format!("{field}.country"),
                            "must be an ISO 3166-1 alpha-2 country code (FR, DE, JP)",
                        ));
                        None
                    }
                },
                _ => {
                    errors.push(FieldError::new(
                        field.clone(),
                        "must name exactly one of device, os, language or country",
                    ));
                    None
                }
            };
            let parsed = url(format!("{field}.url"), &target.url, &mut errors);
            if let (Some(condition), Some((text, value))) = (condition, parsed) {
                normal.targets.push(TargetInput {
                    device: match &condition {
                        Condition::Device(d) => Some(d.as_str().to_owned()),
                        _ => None,
                    },
                    os: match &condition {
                        Condition::Os(os) => Some((*os).to_owned()),
                        _ => None,
                    },
                    language: match &condition {
                        Condition::Language(l) => Some(l.clone()),
                        _ => None,
                    },
                    country: match &condition {
                        Condition::Country(c) => Some(c.as_str().to_owned()),
                        _ => None,
                    },
                    url: text,
                });
                targets.push((condition, value));
            }
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        Ok(Self {
            split,
            targets,
            input: normal,
        })
    }

    /// The rules stored for a link (validated when they were written); `None` if the text
    /// is not rules this release can read (the link then goes to its own URL).
    pub fn from_stored(text: &str) -> Option<Self> {
        let input: RulesInput = serde_json::from_str(text).ok()?;
        let split = {
            let mut total = 0;
            input
                .split
                .iter()
                .map(|s| {
                    total += s.weight.max(0) as u64;
                    Some((HeaderValue::from_str(&s.url).ok()?, total))
                })
                .collect::<Option<Vec<_>>>()?
        };
        let targets = input
            .targets
            .iter()
            .map(|t| {
                let condition = match (&t.device, &t.os, &t.language, &t.country) {
                    (Some(d), None, None, None) => Condition::Device(match d.as_str() {
                        "mobile" => Device::Mobile,
                        "tablet" => Device::Tablet,
                        _ => Device::Desktop,
                    }),
                    (None, Some(os), None, None) => {
                        Condition::Os(SYSTEMS.iter().find(|s| *s == os)?)
                    }
                    (None, None, Some(l), None) => Condition::Language(l.clone()),
                    (None, None, None, Some(c)) => Condition::Country(Country::parse(c)?),
                    _ => return None,
                };
                Some((condition, HeaderValue::from_str(&t.url).ok()?))
            })
            .collect::<Option<Vec<_>>>()?;
        Some(Self {
            split,
            targets,
            input,
        })
    }

    /// The rules as stored and shown.
    pub fn input(&self) -> &RulesInput {
        &self.input
    }

    /// The text stored for these rules.
    pub fn to_stored(&self) -> String {
        serde_json::to_string(&self.input).expect("rules serialise")
    }

    /// Whether a visit needs the visitor's number (the rules split).
    pub fn splits(&self) -> bool {
        !self.split.is_empty()
    }

    /// Whether a visit needs the visitor's country (a target names one).
    pub fn targets_countries(&self) -> bool {
        self.targets
            .iter()
            .any(|(condition, _)| matches!(condition, Condition::Country(_)))
    }

    /// Where a visit with `headers` from `country` goes, `visitor` being its number (for
    /// the split); `None` means the link's own URL.
    pub fn choose(
        &self,
        headers: &HeaderMap,
        country: Option<Country>,
        link_id: i64,
        visitor: u64,
    ) -> Option<&HeaderValue> {
        if !self.targets.is_empty() {
            let user_agent = headers
                .get(header::USER_AGENT)
                .and_then(|v| v.to_str().ok());
            let languages = headers
                .get(header::ACCEPT_LANGUAGE)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default();
            for (condition, url) in &self.targets {
                let hit = match condition {
                    Condition::Device(device) => Device::classify(user_agent) == *device,
                    Condition::Os(os) => system_of(user_agent) == Some(os),
                    Condition::Language(wanted) => prefers(languages, wanted),
                    Condition::Country(wanted) => country == Some(*wanted),
                };
                if hit {
                    return Some(url);
                }
            }
        }
        let total = self.split.last()?.1;
        let draw = mix(visitor ^ (link_id as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15)) % total;
        self.split
            .iter()
            .find(|(_, upto)| draw < *upto)
            .map(|(url, _)| url)
    }
}

/// SplitMix64's finaliser: spreads a visitor's number over the whole 64-bit range.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The operating system a `User-Agent` names, if one we target.
fn system_of(user_agent: Option<&str>) -> Option<&'static str> {
    let ua = user_agent?.to_ascii_lowercase();
    Some(if ua.contains("android") {
        "android"
    } else if ua.contains("iphone") || ua.contains("ipad") || ua.contains("ipod") {
        "ios"
    } else if ua.contains("windows") {
        "windows"
    } else if ua.contains("cros") {
        "chromeos"
    } else if ua.contains("mac os x") || ua.contains("macintosh") {
        "macos"
    } else if ua.contains("linux") {
        "linux"
    } else {
        return None;
    })
}

/// Whether `Accept-Language` accepts the primary language `wanted` (with q above 0).
fn prefers(accept_language: &str, wanted: &str) -> bool {
    accept_language.split(',').any(|range| {
        let mut parts = range.split(';');
        let tag = parts.next().unwrap_or_default().trim();
        let primary = tag.split('-').next().unwrap_or_default();
        let refused = parts.any(|p| {
            p.trim()
                .strip_prefix("q=")
                .and_then(|q| q.trim().parse::<f32>().ok())
                .is_some_and(|q| q <= 0.0)
        });
        !refused && primary.eq_ignore_ascii_case(wanted)
    })
}

/// The visitor's number from the request's cookie, if it carries one.
pub fn visitor_of(headers: &HeaderMap) -> Option<u64> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|pair| {
            let (name, value) = pair.trim().split_once('=')?;
            (name == VISITOR_COOKIE)
                .then(|| u64::from_str_radix(value, 16).ok())
                .flatten()
        })
}

/// The `Set-Cookie` value giving a new visitor its number (a year, every path).
pub fn visitor_cookie(visitor: u64) -> HeaderValue {
    HeaderValue::from_str(&format!(
        "{VISITOR_COOKIE}={visitor:016x}; Path=/; Max-Age=31536000; HttpOnly; SameSite=Lax"
    ))
    .expect("a cookie of hex digits is a header value")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;
    use url::Url;

    fn policy() -> UrlPolicy {
        UrlPolicy {
            max_len: 2048,
            own_origin: Url::parse("https://sho.rt").unwrap(),
            blocked_hosts: HashSet::new(),
        }
    }

    fn split(weights: &[i64]) -> RulesInput {
        RulesInput {
            split: weights
                .iter()
                .enumerate()
                .map(|(i, w)| SplitInput {
                    url: format!("https://example.com/{i}"),
                    weight: *w,
                })
                .collect(),
            targets: Vec::new(),
        }
    }

    #[test]
    fn weights_must_sum_to_a_positive_number_and_rules_are_at_most_ten() {
        assert!(Rules::parse(split(&[1, 0]), &policy(), false).is_ok());
        let zero = Rules::parse(split(&[0, 0]), &policy(), false).unwrap_err();
        assert_eq!(zero[0].field, "rules.split");
        let negative = Rules::parse(split(&[-1, 2]), &policy(), false).unwrap_err();
        assert_eq!(negative[0].field, "rules.split[0].weight");
        let many = Rules::parse(split(&[1; 11]), &policy(), false).unwrap_err();
        assert_eq!(many[0].field, "rules");
        let both = RulesInput {
            split: Vec::new(),
            targets: vec![TargetInput {
                device: Some("mobile".into()),
                os: Some("ios".into()),
                language: None,
                country: None,
                url: "https://example.com/".into(),
            }],
        };
        assert_eq!(
            Rules::parse(both, &policy(), false).unwrap_err()[0].field,
            "rules.targets[0]"
        );
    }

    #[test]
    fn stored_rules_read_back_the_same() {
        let rules = Rules::parse(split(&[3, 1]), &policy(), false).unwrap();
        assert_eq!(Rules::from_stored(&rules.to_stored()), Some(rules));
        assert_eq!(Rules::from_stored("not json"), None);
    }

    #[test]
    fn a_split_follows_its_weights_and_keeps_each_visitor() {
        let rules = Rules::parse(split(&[1, 3]), &policy(), false).unwrap();
        let headers = HeaderMap::new();
        let mut second = 0;
        for visitor in 0..10_000u64 {
            let url = rules.choose(&headers, None, 7, visitor).unwrap();
            assert_eq!(rules.choose(&headers, None, 7, visitor), Some(url));
            if url == "https://example.com/1" {
                second += 1;
            }
        }
        assert!((7_300..=7_700).contains(&second), "{second}");
    }

    #[test]
    fn country_targets_need_a_geoip_database_and_match_the_visitors_country() {
        let input = RulesInput {
            split: Vec::new(),
            targets: vec![TargetInput {
                device: None,
                os: None,
                language: None,
                country: Some("fr".into()),
                url: "https://example.com/fr".into(),
            }],
        };
        let refused = Rules::parse(input.clone(), &policy(), false).unwrap_err();
        assert_eq!(refused[0].field, "rules.targets[0].country");
        let mut bad = input.clone();
        bad.targets[0].country = Some("FRA".into());
        let refused = Rules::parse(bad, &policy(), true).unwrap_err();
        assert_eq!(refused[0].field, "rules.targets[0].country");

        let rules = Rules::parse(input, &policy(), true).unwrap();
        assert!(rules.targets_countries());
        assert_eq!(rules.input().targets[0].country.as_deref(), Some("FR"));
        assert_eq!(
            Rules::from_stored(&rules.to_stored()).as_ref(),
            Some(&rules)
        );
        let headers = HeaderMap::new();
        let france = Country::parse("FR");
        assert_eq!(
            rules
                .choose(&headers, france, 1, 0)
                .map(|u| u.to_str().unwrap()),
            Some("https://example.com/fr")
        );
        assert_eq!(rules.choose(&headers, Country::parse("DE"), 1, 0), None);
        assert_eq!(rules.choose(&headers, None, 1, 0), None);
    }

    #[test]
    fn languages_and_systems_are_read_from_the_headers() {
        assert!(prefers("de-CH, fr;q=0.8", "fr"));
        assert!(!prefers("de, fr;q=0", "fr"));
        assert_eq!(
            system_of(Some(
                "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X)"
            )),
            Some("ios")
        );
        assert_eq!(
            system_of(Some("Mozilla/5.0 (Linux; Android 14)")),
            Some("android")
        );
        assert_eq!(
            system_of(Some("Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15)")),
            Some("macos")
        );
        assert_eq!(system_of(None), None);
    }

    #[test]
    fn the_visitor_cookie_round_trips() {
        let mut headers = HeaderMap::new();
        assert_eq!(visitor_of(&headers), None);
        let cookie = visitor_cookie(0xabc);
        let pair = cookie
            .to_str()
            .unwrap()
            .split(';')
            .next()
            .unwrap()
            .to_owned();
        headers.insert(
            header::COOKIE,
            HeaderValue::from_str(&format!("a=b; {pair}")).unwrap(),
        );
        assert_eq!(visitor_of(&headers), Some(0xabc));
    }
}
