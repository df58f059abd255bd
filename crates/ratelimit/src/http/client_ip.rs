//! Who is the client: the peer address, or what trusted proxies say it was.
//!
//! Forwarding headers are believed only when the TCP peer is a configured trusted
//! proxy. Then the chain (`Forwarded` if present, else `X-Forwarded-For`) is read from
//! the right, skipping further trusted proxies; the first other address is the client.
//! A header that does not parse in full is ignored and the peer address is used:
//! a half-understood header is how spoofing gets in.

use std::net::{IpAddr, SocketAddr};

use http::HeaderMap;
use serde::{Deserialize, Deserializer};

/// An IP network such as `10.0.0.0/8` or a single address such as `::1`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpNet {
    addr: IpAddr,
    prefix: u8,
}

impl IpNet {
    /// Parses `addr` or `addr/prefix`.
    pub fn parse(text: &str) -> Option<Self> {
        let (addr, prefix) = match text.split_once('/') {
            Some((a, p)) => (a.parse::<IpAddr>().ok()?, Some(p.parse::<u8>().ok()?)),
            None => (text.parse::<IpAddr>().ok()?, None),
        };
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = prefix.unwrap_or(max);
        (prefix <= max).then_some(Self { addr, prefix })
    }

    /// Whether `ip` lies in this network (IPv4-mapped IPv6 counts as IPv4).
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        match (self.addr, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => prefix_eq(
                u128::from(net.to_bits()) << 96,
                u128::from(ip.to_bits()) << 96,
                self.prefix,
            ),
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                prefix_eq(net.to_bits(), ip.to_bits(), self.prefix)
            }
            _ => false,
        }
    }
}

fn prefix_eq(a: u128, b: u128, prefix: u8) -> bool {
    prefix == 0 || (a ^ b) >> (128 - u32::from(prefix)) == 0
}

fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

impl<'de> Deserialize<'de> for IpNet {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        Self::parse(&text).ok_or_else(|| {
            serde::de::Error::custom(format!("{text:?} is not an IP address or network"))
        })
    }
}

/// The client address for a request that came from `peer`, given the proxies whose
/// forwarding headers are believed (none: the peer, whatever the headers say).
pub fn client_ip(
    peer: Option<SocketAddr>,
    headers: &HeaderMap,
    trusted: &[IpNet],
) -> Option<IpAddr> {
    let peer = canonical(peer?.ip());
    let is_trusted = |ip: IpAddr| trusted.iter().any(|n| n.contains(ip));
    if !is_trusted(peer) {
        return Some(peer);
    }
    let chain = if headers.contains_key(http::header::FORWARDED) {
        forwarded_chain(headers)
    } else {
        x_forwarded_for_chain(headers)
    };
    let Some(chain) = chain else {
        return Some(peer);
    };
    // Rightmost first: the closest hops are the ones we can trust.
    let client = chain
        .iter()
        .rev()
        .copied()
        .map(canonical)
        .find(|&ip| !is_trusted(ip))
        .or_else(|| chain.first().copied().map(canonical));
    Some(client.unwrap_or(peer))
}

/// Every `X-Forwarded-For` address in order, or `None` if any entry is malformed.
fn x_forwarded_for_chain(headers: &HeaderMap) -> Option<Vec<IpAddr>> {
    let mut chain = Vec::new();
    for value in headers.get_all("x-forwarded-for") {
        for part in value.to_str().ok()?.split(',') {
            chain.push(parse_node(part.trim())?);
        }
    }
    (!chain.is_empty()).then_some(chain)
}

/// Every `for=` of RFC 7239 `Forwarded` in order, or `None` if anything is malformed
/// (including obfuscated or `unknown` nodes, which name no address we could limit).
fn forwarded_chain(headers: &HeaderMap) -> Option<Vec<IpAddr>> {
    let mut chain = Vec::new();
    for value in headers.get_all(http::header::FORWARDED) {
        for element in value.to_str().ok()?.split(',') {
            for pair in element.split(';') {
                let (name, value) = pair.trim().split_once('=')?;
                if name.trim().eq_ignore_ascii_case("for") {
                    chain.push(parse_node(value.trim().trim_matches('"'))?);
                }
            }
        }
    }
    (!chain.is_empty()).then_some(chain)
}

/// `1.2.3.4`, `1.2.3.4:80`, `[2001:db8::1]`, `[2001:db8::1]:80` or a bare IPv6 address.
fn parse_node(node: &str) -> Option<IpAddr> {
    if let Ok(ip) = node.parse::<IpAddr>() {
        return Some(ip);
    }
    if let Ok(sock) = node.parse::<SocketAddr>() {
        return Some(sock.ip());
    }
    node.strip_prefix('[')?.strip_suffix(']')?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, v.parse().unwrap());
        }
        h
    }

    fn nets(list: &[&str]) -> Vec<IpNet> {
        list.iter().map(|s| IpNet::parse(s).unwrap()).collect()
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn networks_contain_their_addresses() {
        let net = IpNet::parse("10.0.0.0/8").unwrap();
        assert!(net.contains(ip("10.200.3.4")));
        assert!(net.contains(ip("::ffff:10.1.1.1")));
        assert!(!net.contains(ip("11.0.0.1")));
        assert!(
            IpNet::parse("2001:db8::/32")
                .unwrap()
                .contains(ip("2001:db8:ffff::1"))
        );
        assert!(IpNet::parse("0.0.0.0/0").unwrap().contains(ip("8.8.8.8")));
        assert!(IpNet::parse("10.0.0.0/33").is_none());
    }

    #[test]
    fn an_untrusted_peer_is_the_client_whatever_it_claims() {
        let h = headers(&[("x-forwarded-for", "1.1.1.1")]);
        let peer = Some("203.0.113.9:5000".parse().unwrap());
        assert_eq!(
            client_ip(peer, &h, &nets(&["10.0.0.0/8"])),
            Some(ip("203.0.113.9"))
        );
    }

    #[test]
    fn a_trusted_proxy_is_believed_from_the_right() {
        let h = headers(&[("x-forwarded-for", "6.6.6.6, 198.51.100.7, 10.0.0.2")]);
        let peer = Some("10.0.0.1:5000".parse().unwrap());
        assert_eq!(
            client_ip(peer, &h, &nets(&["10.0.0.0/8"])),
            Some(ip("198.51.100.7"))
        );
    }

    #[test]
    fn forwarded_is_preferred_and_understands_ipv6_and_ports() {
        let h = headers(&[
            (
                "forwarded",
                "for=\"[2001:db8::7]:4711\";proto=https, for=10.0.0.3",
            ),
            ("x-forwarded-for", "9.9.9.9"),
        ]);
        let peer = Some("10.0.0.1:5000".parse().unwrap());
        assert_eq!(
            client_ip(peer, &h, &nets(&["10.0.0.0/8"])),
            Some(ip("2001:db8::7"))
        );
    }

    #[test]
    fn malformed_headers_are_ignored() {
        let peer = Some("10.0.0.1:5000".parse().unwrap());
        for bad in [
            ("x-forwarded-for", "1.2.3.4, not-an-ip"),
            ("forwarded", "for=_hidden"),
            ("forwarded", "for"),
        ] {
            let h = headers(&[bad]);
            assert_eq!(
                client_ip(peer, &h, &nets(&["10.0.0.0/8"])),
                Some(ip("10.0.0.1")),
                "{bad:?}"
            );
        }
    }
}
