//! Device classes from the `User-Agent` header, and referrer hosts from `Referer`.
//!
//! A small classifier: the redirect path runs it on every click, so it must cost well under
//! a microsecond, and four classes need no full user-agent database. All markers are found
//! in a single pass by one Aho-Corasick automaton.

use std::sync::LazyLock;

use aho_corasick::AhoCorasick;

/// What kind of client followed a link.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Device {
    /// A desktop or laptop browser.
    Desktop,
    /// A phone.
    Mobile,
    /// A tablet.
    Tablet,
    /// A crawler, link previewer, monitor or HTTP library: counted apart from humans.
    Bot,
}

impl Device {
    /// Every class, in the order of [`Device::index`].
    pub const ALL: [Device; 4] = [Device::Desktop, Device::Mobile, Device::Tablet, Device::Bot];

    /// The name used in statistics.
    pub fn as_str(self) -> &'static str {
        match self {
            Device::Desktop => "desktop",
            Device::Mobile => "mobile",
            Device::Tablet => "tablet",
            Device::Bot => "bot",
        }
    }

    /// A dense index, for counters kept in arrays.
    pub fn index(self) -> usize {
        self as usize
    }

    /// Classifies a `User-Agent` value; a missing one is treated as a bot, since every
    /// browser sends one.
    pub fn classify(user_agent: Option<&str>) -> Device {
        let Some(ua) = user_agent.filter(|ua| !ua.trim().is_empty()) else {
            return Device::Bot;
        };
        let mut seen = [false; 4];
        for found in markers().find_overlapping_iter(ua) {
            seen[MARKERS[found.pattern().as_usize()].1 as usize] = true;
        }
        let [bot, tablet, android, mobile] = seen;
        if bot {
            Device::Bot
        } else if tablet || (android && !mobile) {
            Device::Tablet
        } else if mobile {
            Device::Mobile
        } else {
            Device::Desktop
        }
    }
}

/// What a marker found in a user agent says about the client.
#[derive(Debug, Clone, Copy)]
enum Hint {
    Bot,
    Tablet,
    Android,
    Mobile,
}

/// Case-insensitive markers, all found in one pass over the header.
const MARKERS: &[(&str, Hint)] = &[
    ("bot", Hint::Bot),
    ("crawl", Hint::Bot),
    ("spider", Hint::Bot),
    ("slurp", Hint::Bot),
    ("preview", Hint::Bot),
    ("facebookexternalhit", Hint::Bot),
    ("whatsapp", Hint::Bot),
    ("curl/", Hint::Bot),
    ("wget/", Hint::Bot),
    ("python-", Hint::Bot),
    ("go-http-client", Hint::Bot),
    ("okhttp", Hint::Bot),
    ("java/", Hint::Bot),
    ("libwww", Hint::Bot),
    ("httpclient", Hint::Bot),
    ("headless", Hint::Bot),
    ("monitor", Hint::Bot),
    ("scrapy", Hint::Bot),
    ("axios/", Hint::Bot),
    ("node-fetch", Hint::Bot),
    ("oha/", Hint::Bot),
    ("ipad", Hint::Tablet),
    ("tablet", Hint::Tablet),
    ("kindle", Hint::Tablet),
    ("silk/", Hint::Tablet),
    ("android", Hint::Android),
    ("mobi", Hint::Mobile),
    ("iphone", Hint::Mobile),
    ("ipod", Hint::Mobile),
    ("windows phone", Hint::Mobile),
];

fn markers() -> &'static AhoCorasick {
    static AUTOMATON: LazyLock<AhoCorasick> = LazyLock::new(|| {
        AhoCorasick::builder()
            .ascii_case_insensitive(true)
            .build(MARKERS.iter().map(|(needle, _)| needle))
            .expect("the marker list is a valid automaton")
    });
    &AUTOMATON
}

/// Browser families, most specific first: several user agents name more than one (Edge's
/// also says Chrome and Safari), and the first family found in this order wins.
const BROWSERS: &[(&str, &str)] = &[
    ("edg", "edge"),
    ("opr/", "opera"),
    ("opera", "opera"),
    ("samsungbrowser", "samsung"),
    ("yabrowser", "yandex"),
    ("firefox/", "firefox"),
    ("fxios", "firefox"),
    ("crios", "chrome"),
    ("chrome/", "chrome"),
    ("chromium", "chrome"),
    ("safari/", "safari"),
];

/// The browser family of a `User-Agent` value (`other` when none is recognised). Run only
/// for the visit log.
pub fn browser_of(user_agent: Option<&str>) -> &'static str {
    static AUTOMATON: LazyLock<AhoCorasick> = LazyLock::new(|| {
        AhoCorasick::builder()
            .ascii_case_insensitive(true)
            .build(BROWSERS.iter().map(|(needle, _)| needle))
            .expect("the browser list is a valid automaton")
    });
    let Some(ua) = user_agent else {
        return "other";
    };
    AUTOMATON
        .find_overlapping_iter(ua)
        .map(|found| found.pattern().as_usize())
        .min()
        .map_or("other", |i| BROWSERS[i].1)
}

/// The network of a client address as the visit log keeps it: the /24 of an IPv4 address,
/// the /48 of an IPv6 one (an IPv4-mapped IPv6 address is treated as IPv4).
pub fn truncated_ip(ip: std::net::IpAddr) -> std::net::IpAddr {
    use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, c, _] = v4.octets();
            IpAddr::V4(Ipv4Addr::new(a, b, c, 0))
        }
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => truncated_ip(IpAddr::V4(v4)),
            None => {
                let s = v6.segments();
                IpAddr::V6(Ipv6Addr::new(s[0], s[1], s[2], 0, 0, 0, 0, 0))
            }
        },
    }
}

/// The host of a `Referer` value, lower-cased; `None` when absent or not an http(s) URL.
pub fn referrer_host(referer: Option<&str>) -> Option<String> {
    let referer = referer?;
    let rest = referer
        .strip_prefix("https://")
        .or_else(|| referer.strip_prefix("http://"))?;
    let authority = rest.split(['/', '?', '#']).next()?;
    let host_port = authority.rsplit('@').next()?;
    let host = if host_port.starts_with('[') {
        host_port.split_inclusive(']').next()?
    } else {
        host_port.split(':').next()?
    };
    let valid = !host.is_empty()
        && host.len() <= 253
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'[' | b']' | b':'));
    valid.then(|| host.to_ascii_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_common_user_agents() {
        let cases = [
            (
                "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 Chrome/120.0 Safari/537.36",
                Device::Desktop,
            ),
            (
                "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) Mobile/15E148 Safari/604.1",
                Device::Mobile,
            ),
            (
                "Mozilla/5.0 (Linux; Android 14; Pixel 8) Chrome/120.0 Mobile Safari/537.36",
                Device::Mobile,
            ),
            (
                "Mozilla/5.0 (iPad; CPU OS 17_0 like Mac OS X) Safari/604.1",
                Device::Tablet,
            ),
            (
                "Mozilla/5.0 (Linux; Android 13; SM-X700) Chrome/120.0 Safari/537.36",
                Device::Tablet,
            ),
            (
                "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
                Device::Bot,
            ),
            ("facebookexternalhit/1.1", Device::Bot),
            ("Slackbot-LinkExpanding 1.0", Device::Bot),
            ("curl/8.5.0", Device::Bot),
        ];
        for (ua, expected) in cases {
            assert_eq!(Device::classify(Some(ua)), expected, "{ua}");
        }
        assert_eq!(Device::classify(None), Device::Bot);
        assert_eq!(Device::classify(Some("  ")), Device::Bot);
    }

    #[test]
    fn names_browser_families() {
        let cases = [
            (
                "Mozilla/5.0 (Windows NT 10.0) AppleWebKit/537.36 Chrome/120.0 Safari/537.36 Edg/120.0",
                "edge",
            ),
            (
                "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 Chrome/120.0 Safari/537.36",
                "chrome",
            ),
            (
                "Mozilla/5.0 (X11; Linux x86_64; rv:121.0) Gecko/20100101 Firefox/121.0",
                "firefox",
            ),
            (
                "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) Version/17.0 Mobile/15E148 Safari/604.1",
                "safari",
            ),
            (
                "Mozilla/5.0 (Windows NT 10.0) Chrome/120.0 Safari/537.36 OPR/106.0",
                "opera",
            ),
            ("curl/8.5.0", "other"),
        ];
        for (ua, expected) in cases {
            assert_eq!(browser_of(Some(ua)), expected, "{ua}");
        }
        assert_eq!(browser_of(None), "other");
    }

    #[test]
    fn client_addresses_are_cut_to_their_network() {
        let ip = |s: &str| s.parse::<std::net::IpAddr>().unwrap();
        assert_eq!(truncated_ip(ip("203.0.113.77")).to_string(), "203.0.113.0");
        assert_eq!(
            truncated_ip(ip("2001:db8:1234:5678::1")).to_string(),
            "2001:db8:1234::"
        );
        assert_eq!(
            truncated_ip(ip("::ffff:198.51.100.9")).to_string(),
            "198.51.100.0"
        );
    }

    #[test]
    fn extracts_referrer_hosts() {
        assert_eq!(
            referrer_host(Some("https://News.Example.com/a?b")),
            Some("news.example.com".into())
        );
        assert_eq!(
            referrer_host(Some("http://example.com:8080/")),
            Some("example.com".into())
        );
        assert_eq!(
            referrer_host(Some("http://u@example.com")),
            Some("example.com".into())
        );
        assert_eq!(referrer_host(Some("android-app://com.x")), None);
        assert_eq!(referrer_host(Some("https://")), None);
        assert_eq!(referrer_host(Some("https://bad host/")), None);
        assert_eq!(referrer_host(None), None);
    }
}
