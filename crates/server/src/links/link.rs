//! The link as the shortener's rules see it: each option is parsed once into a type that can
//! only hold a valid value, so the service and the handlers never check it again.
//!
//! [`Alias`] and [`LongUrl`] (in `input`) and `ShortCode` (in `code`) name a link; the types
//! here describe how it behaves: [`RedirectType`], [`Expiry`], [`ClickLimit`] and
//! [`LinkPassword`]. [`NewLink`] gathers them for a create and [`LinkChange`] for a merge
//! patch; each turns into the store's row only at the repository's door.

use basis_store::links::{LinkRow, LinkUpdate};
use chrono::{DateTime, Utc};

use super::input::{Alias, LongUrl};
use super::rules::Rules;
use super::tags::Tag;
use crate::passwords::MAX_PASSWORD_BYTES;

/// The HTTP status a link redirects with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RedirectType {
    /// 301: permanent; the default.
    #[default]
    Moved,
    /// 302: found (temporary).
    Found,
    /// 307: temporary, method kept.
    Temporary,
    /// 308: permanent, method kept.
    Permanent,
}

impl RedirectType {
    /// Every redirect type, in status order.
    pub const ALL: [Self; 4] = [Self::Moved, Self::Found, Self::Temporary, Self::Permanent];

    /// Parses a status code, explaining a refusal.
    pub fn parse(status: u16) -> Result<Self, &'static str> {
        Self::ALL
            .into_iter()
            .find(|t| t.status() == status)
            .ok_or("must be 301, 302, 307 or 308")
    }

    /// The redirect type a stored link answers with (301 for a value no release wrote).
    pub fn from_stored(status: i16) -> Self {
        u16::try_from(status)
            .ok()
            .and_then(|s| Self::parse(s).ok())
            .unwrap_or_default()
    }

    /// The status code.
    pub const fn status(self) -> u16 {
        match self {
            Self::Moved => 301,
            Self::Found => 302,
            Self::Temporary => 307,
            Self::Permanent => 308,
        }
    }

    fn stored(self) -> i16 {
        self.status() as i16
    }
}

/// When a link stops redirecting: a time after the moment it was set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Expiry(i64);

impl Expiry {
    /// Parses an expiry set at `now_ms`, explaining a refusal.
    pub fn parse(at: DateTime<Utc>, now_ms: i64) -> Result<Self, &'static str> {
        let at = at.timestamp_millis();
        if at <= now_ms {
            return Err("must be in the future");
        }
        Ok(Self(at))
    }

    /// The expiry in Unix milliseconds.
    pub fn at_ms(self) -> i64 {
        self.0
    }
}

/// How many human clicks a link allows: at least one, at most [`ClickLimit::MAX`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClickLimit(i64);

impl ClickLimit {
    /// The largest limit: 2^53 - 1, the largest integer every JSON reader keeps exactly (and
    /// so one the document's `maximum` states without rounding).
    pub const MAX: i64 = 9_007_199_254_740_991;

    /// Parses a click limit, explaining a refusal.
    pub fn parse(max: i64) -> Result<Self, &'static str> {
        if max < 1 {
            return Err("must be at least 1");
        }
        if max > Self::MAX {
            return Err("must be at most 9007199254740991");
        }
        Ok(Self(max))
    }

    /// The number of clicks.
    pub fn get(self) -> i64 {
        self.0
    }
}

/// The password visitors must give to follow a link (not yet hashed).
#[derive(Clone, PartialEq, Eq)]
pub struct LinkPassword(String);

impl std::fmt::Debug for LinkPassword {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LinkPassword(***)")
    }
}

impl LinkPassword {
    /// Parses a password, explaining a refusal.
    pub fn parse(password: String) -> Result<Self, String> {
        if password.is_empty() || password.len() > MAX_PASSWORD_BYTES {
            return Err(format!("must be 1 to {MAX_PASSWORD_BYTES} bytes"));
        }
        Ok(Self(password))
    }

    /// The password, for hashing.
    pub fn into_string(self) -> String {
        self.0
    }
}

/// A title the owner gives a link: 1–300 characters once trimmed, no control characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkTitle(String);

impl LinkTitle {
    /// Longest title, in characters.
    pub const MAX_CHARS: usize = 300;

    /// Parses a title, explaining a refusal.
    pub fn parse(raw: &str) -> Result<Self, String> {
        let title = raw.trim();
        let chars = title.chars().count();
        if chars == 0 || chars > Self::MAX_CHARS {
            return Err(format!("must be 1 to {} characters", Self::MAX_CHARS));
        }
        if title.chars().any(char::is_control) {
            return Err("must not contain control characters".into());
        }
        Ok(Self(title.to_owned()))
    }

    /// The title.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A link to create, every option parsed.
#[derive(Debug, Clone)]
pub struct NewLink {
    /// Where it redirects.
    pub long_url: LongUrl,
    /// The code chosen by the caller, if any (else one is generated).
    pub alias: Option<Alias>,
    /// When it stops redirecting.
    pub expiry: Option<Expiry>,
    /// How many human clicks it allows.
    pub click_limit: Option<ClickLimit>,
    /// The status it redirects with.
    pub redirect_type: RedirectType,
    /// The password visitors must give.
    pub password: Option<LinkPassword>,
    /// Its tags (no duplicates).
    pub tags: Vec<Tag>,
    /// Its title.
    pub title: Option<LinkTitle>,
    /// Its routing rules.
    pub rules: Option<Rules>,
    /// Its domain (`None`: the default one).
    pub domain: Option<String>,
}

impl NewLink {
    /// A plain link: no alias, expiry, click limit or password, and the default redirect.
    /// Only plain links are shared by `reuse`.
    pub fn is_plain(&self) -> bool {
        self.alias.is_none()
            && self.expiry.is_none()
            && self.click_limit.is_none()
            && self.password.is_none()
            && self.redirect_type == RedirectType::default()
            && self.tags.is_empty()
            && self.title.is_none()
            && self.rules.is_none()
    }

    /// The stored row of this link under `id`.
    pub fn into_row(
        &self,
        id: i64,
        created_at: i64,
        password_hash: Option<String>,
        owner_id: Option<String>,
    ) -> LinkRow {
        LinkRow {
            id,
            alias: self.alias.clone().map(Alias::into_string),
            long_url: self.long_url.as_str().to_owned(),
            created_at,
            expires_at: self.expiry.map(Expiry::at_ms),
            max_clicks: self.click_limit.map(ClickLimit::get),
            redirect_type: self.redirect_type.stored(),
            password_hash,
            owner_id,
            rules: self.rules.as_ref().map(Rules::to_stored),
            domain: self.domain.clone(),
        }
    }
}

/// A change to a link, every given option parsed: `None` keeps a field, `Some(None)`
/// clears an optional one.
#[derive(Debug, Clone, Default)]
pub struct LinkChange {
    /// A new target.
    pub long_url: Option<LongUrl>,
    /// A new expiry, or none.
    pub expiry: Option<Option<Expiry>>,
    /// A new click limit, or none.
    pub click_limit: Option<Option<ClickLimit>>,
    /// A new redirect status.
    pub redirect_type: Option<RedirectType>,
    /// A new password, or none.
    pub password: Option<Option<LinkPassword>>,
    /// New tags (replacing all), or none.
    pub tags: Option<Vec<Tag>>,
    /// A new title, or none.
    pub title: Option<Option<LinkTitle>>,
    /// New routing rules, or none.
    pub rules: Option<Option<Rules>>,
}

impl LinkChange {
    /// The whole set of mutable fields once this change is applied to `row`; `password_hash`
    /// is the hash of the new password when the change sets one.
    pub fn applied_to(&self, row: &LinkRow, password_hash: Option<String>) -> LinkUpdate {
        LinkUpdate {
            long_url: self
                .long_url
                .as_ref()
                .map_or_else(|| row.long_url.clone(), |u| u.as_str().to_owned()),
            expires_at: self.expiry.map_or(row.expires_at, |e| e.map(Expiry::at_ms)),
            max_clicks: self
                .click_limit
                .map_or(row.max_clicks, |c| c.map(ClickLimit::get)),
            redirect_type: self
                .redirect_type
                .map_or(row.redirect_type, RedirectType::stored),
            password_hash: match &self.password {
                Some(Some(_)) => password_hash,
                Some(None) => None,
                None => row.password_hash.clone(),
            },
            rules: match &self.rules {
                Some(rules) => rules.as_ref().map(Rules::to_stored),
                None => row.rules.clone(),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn redirect_types_are_the_four_redirect_statuses() {
        for status in [301, 302, 307, 308] {
            assert_eq!(RedirectType::parse(status).unwrap().status(), status);
        }
        for status in [0, 300, 303, 304, 305, 306, 309, 200] {
            assert!(RedirectType::parse(status).is_err(), "{status}");
        }
        assert_eq!(RedirectType::default().status(), 301);
        assert_eq!(RedirectType::from_stored(307), RedirectType::Temporary);
        assert_eq!(RedirectType::from_stored(-1), RedirectType::Moved);
    }

    #[test]
    fn an_expiry_must_be_after_now() {
        let at = Utc.with_ymd_and_hms(2030, 1, 1, 0, 0, 0).unwrap();
        let ms = at.timestamp_millis();
        assert_eq!(Expiry::parse(at, ms - 1).unwrap().at_ms(), ms);
        assert!(Expiry::parse(at, ms).is_err());
        assert!(Expiry::parse(at, ms + 1).is_err());
    }

    #[test]
    fn a_title_is_trimmed_and_bounded() {
        assert_eq!(
            LinkTitle::parse("  Spring sale ").unwrap().as_str(),
            "Spring sale"
        );
        assert!(LinkTitle::parse("   ").is_err());
        assert!(LinkTitle::parse("a\nb").is_err());
        assert!(LinkTitle::parse(&"é".repeat(301)).is_err());
        assert!(LinkTitle::parse(&"é".repeat(300)).is_ok());
    }

    #[test]
    fn a_click_limit_is_at_least_one_and_at_most_what_json_keeps_exactly() {
        assert_eq!(ClickLimit::parse(1).unwrap().get(), 1);
        assert!(ClickLimit::parse(0).is_err());
        assert!(ClickLimit::parse(i64::MIN).is_err());
        assert_eq!(
            ClickLimit::parse(ClickLimit::MAX).unwrap().get(),
            (1 << 53) - 1
        );
        assert!(ClickLimit::parse(ClickLimit::MAX + 1).is_err());
        assert!(ClickLimit::parse(i64::MAX).is_err());
    }

    #[test]
    fn a_link_password_is_one_to_the_maximum_bytes_and_never_printed() {
        assert!(LinkPassword::parse(String::new()).is_err());
        assert!(LinkPassword::parse("x".repeat(MAX_PASSWORD_BYTES + 1)).is_err());
        let password = LinkPassword::parse("let me in".into()).unwrap();
        assert!(!format!("{password:?}").contains("let me in"));
        assert_eq!(password.into_string(), "let me in");
    }

    fn row() -> LinkRow {
        LinkRow {
            id: 7,
            alias: None,
            long_url: "https://example.com/".into(),
            created_at: 1,
            expires_at: Some(10),
            max_clicks: Some(5),
            redirect_type: 302,
            password_hash: Some("old-hash".into()),
            owner_id: None,
            rules: None,
            domain: None,
        }
    }

    #[test]
    fn an_empty_change_keeps_every_field() {
        let update = LinkChange::default().applied_to(&row(), None);
        assert_eq!(
            update,
            LinkUpdate {
                long_url: "https://example.com/".into(),
                expires_at: Some(10),
                max_clicks: Some(5),
                redirect_type: 302,
                password_hash: Some("old-hash".into()),
                rules: None,
            }
        );
    }

    #[test]
    fn a_change_clears_sets_and_keeps_fields_as_asked() {
        let change = LinkChange {
            expiry: Some(None),
            click_limit: Some(Some(ClickLimit(9))),
            redirect_type: Some(RedirectType::Permanent),
            password: Some(Some(LinkPassword("new".into()))),
            ..LinkChange::default()
        };
        let update = change.applied_to(&row(), Some("new-hash".into()));
        assert_eq!(update.expires_at, None);
        assert_eq!(update.max_clicks, Some(9));
        assert_eq!(update.redirect_type, 308);
        assert_eq!(update.password_hash.as_deref(), Some("new-hash"));
        let cleared = LinkChange {
            password: Some(None),
            ..LinkChange::default()
        };
        assert_eq!(cleared.applied_to(&row(), None).password_hash, None);
    }
}
