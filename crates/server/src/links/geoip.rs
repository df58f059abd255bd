//! Countries of visitors, from the MaxMind-format database the operator gives with
//! `--geoip-db` (GeoLite2-Country, GeoIP2-City and the like: any file whose records carry
//! `country.iso_code`). Without the flag no lookup happens and countries stay unknown.
//!
//! The file is read into memory once at start; a file that is missing or not a MaxMind DB
//! stops `basis serve` with a message naming it. A lookup walks the file's search tree
//! (no I/O, no allocation), and happens on a redirect only when the visit log is on or the
//! link targets countries.

use std::net::IpAddr;
use std::path::Path;

use anyhow::Context as _;
use maxminddb::{PathElement, Reader};

/// An ISO 3166-1 alpha-2 country code, upper case (`FR`, `DE`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Country([u8; 2]);

impl Country {
    /// Two ASCII letters, in either case; anything else is not a country code.
    pub fn parse(text: &str) -> Option<Self> {
        match text.trim().as_bytes() {
            [a, b] if a.is_ascii_alphabetic() && b.is_ascii_alphabetic() => {
                Some(Self([a.to_ascii_uppercase(), b.to_ascii_uppercase()]))
            }
            _ => None,
        }
    }

    /// The code as text.
    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.0).expect("two ASCII letters")
    }
}

/// The country of an address, where the database knows it.
pub struct GeoIp {
    reader: Reader<Vec<u8>>,
}

impl std::fmt::Debug for GeoIp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GeoIp")
            .field("database_type", &self.reader.metadata().database_type)
            .finish()
    }
}

impl GeoIp {
    /// Reads the database at `path`; the error says which file and why it cannot be used.
    pub fn open(path: &Path) -> anyhow::Result<Self> {
        let bytes = std::fs::read(path)
            .with_context(|| format!("cannot read the GeoIP database {}", path.display()))?;
        Self::from_bytes(bytes)
            .with_context(|| format!("{} is not a usable GeoIP database", path.display()))
    }

    /// The database in `bytes`.
    pub fn from_bytes(bytes: Vec<u8>) -> anyhow::Result<Self> {
        let reader = Reader::from_source(bytes).map_err(|e| anyhow::anyhow!("{e}"))?;
        Ok(Self { reader })
    }

    /// The country of `ip`, if the database has one for it (its `country`, else the
    /// country where the network is registered).
    pub fn country_of(&self, ip: IpAddr) -> Option<Country> {
        let found = self.reader.lookup(ip).ok()?;
        [
            [PathElement::Key("country"), PathElement::Key("iso_code")],
            [
                PathElement::Key("registered_country"),
                PathElement::Key("iso_code"),
            ],
        ]
        .iter()
        .find_map(|path| {
            found
                .decode_path::<&str>(path)
                .ok()
                .flatten()
                .and_then(Country::parse)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use basis_testkit::mmdb::country_db;

    #[test]
    fn country_codes_are_two_letters_kept_in_upper_case() {
        assert_eq!(
            Country::parse("fr").map(|c| c.as_str().to_owned()),
            Some("FR".into())
        );
        assert_eq!(Country::parse(" De ").unwrap().as_str(), "DE");
        assert_eq!(Country::parse("FRA"), None);
        assert_eq!(Country::parse("F1"), None);
        assert_eq!(Country::parse("é"), None);
    }

    #[test]
    fn addresses_are_found_in_their_narrowest_network() {
        let db = GeoIp::from_bytes(country_db(&[
            ("203.0.113.0".parse().unwrap(), 24, "FR"),
            ("203.0.113.128".parse().unwrap(), 25, "DE"),
            ("2001:db8::".parse().unwrap(), 32, "JP"),
        ]))
        .unwrap();
        let country = |ip: &str| {
            db.country_of(ip.parse().unwrap())
                .map(|c| c.as_str().to_owned())
        };
        assert_eq!(country("203.0.113.7").as_deref(), Some("FR"));
        assert_eq!(country("203.0.113.200").as_deref(), Some("DE"));
        assert_eq!(country("2001:db8:1::5").as_deref(), Some("JP"));
        assert_eq!(country("198.51.100.1"), None);
        assert_eq!(country("2001:db9::1"), None);
    }

    #[test]
    fn a_file_that_is_not_a_database_is_refused_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("countries.mmdb");
        let missing = GeoIp::open(&path).unwrap_err();
        assert!(
            format!("{missing:#}").contains("countries.mmdb"),
            "{missing:#}"
        );
        std::fs::write(&path, b"not a database").unwrap();
        let garbage = GeoIp::open(&path).unwrap_err();
        assert!(
            format!("{garbage:#}").contains("is not a usable GeoIP database"),
            "{garbage:#}"
        );
    }
}
