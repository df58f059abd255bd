//! What the gateway tells the backend about the client, and what it refuses to pass on.
//!
//! `X-Forwarded-For`, `Forwarded` and `X-Forwarded-Proto` from the client are believed only
//! when the TCP peer is a configured trusted proxy (another balancer in front); otherwise they
//! are dropped and replaced by what the gateway saw. The Basis server applies the same rule on
//! its side (`--trusted-proxy` there must list the gateway's address), so a client cannot pick
//! its own address for rate limits or logs by sending a header.

use std::net::IpAddr;
use std::str::FromStr;

use bytes::Bytes;
use http::HeaderMap;
use http::header::{self, HeaderName, HeaderValue};

static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
static X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
/// The request id header, passed through when valid and created otherwise.
pub static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// An address block, `10.0.0.0/8` or a single address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    network: IpAddr,
    prefix: u8,
}

impl Cidr {
    /// Whether `ip` is inside the block (IPv4-mapped IPv6 addresses count as IPv4).
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.network, canonical(ip)) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

impl FromStr for Cidr {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let (addr, prefix) = text.split_once('/').unwrap_or((text, ""));
        let network: IpAddr = addr
            .parse()
            .map_err(|_| format!("`{addr}` is not an IP address"))?;
        let network = canonical(network);
        let max = if network.is_ipv4() { 32 } else { 128 };
        let prefix = if prefix.is_empty() {
            max
        } else {
            prefix
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= max)
                .ok_or_else(|| format!("`/{prefix}` is not a prefix length up to {max}"))?
        };
        Ok(Self { network, prefix })
    }
}

fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// The client's address: the peer's, or, when the peer is trusted, the right-most address in
/// `X-Forwarded-For` that is not itself a trusted proxy.
pub fn client_ip(headers: &HeaderMap, peer: IpAddr, trusted: &[Cidr]) -> IpAddr {
    let is_trusted = |ip: IpAddr| trusted.iter().any(|c| c.contains(ip));
    if !is_trusted(peer) {
        return peer;
    }
    let mut chain: Vec<IpAddr> = headers
        .get_all(&X_FORWARDED_FOR)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|s| s.trim().parse().ok())
        .collect();
    chain.reverse();
    chain
        .into_iter()
        .find(|ip| !is_trusted(*ip))
        .unwrap_or(peer)
}

/// Rewrites the forwarding headers of a request from `peer` that arrived over `proto`.
pub fn set_forwarding(
    headers: &mut HeaderMap,
    peer: IpAddr,
    proto: &'static str,
    trusted: &[Cidr],
) {
    // One pass over the names instead of a hashed lookup per forwarding header: clients
    // rarely send any of them, and what is absent needs neither removing nor joining.
    let mut sent = Sent::default();
    for name in headers.keys() {
        match name.as_str() {
            "x-forwarded-for" => sent.xff = true,
            "forwarded" => sent.forwarded = true,
            "x-forwarded-proto" => sent.proto = true,
            "x-forwarded-host" => sent.host = true,
            _ => {}
        }
    }
    if !trusted.iter().any(|c| c.contains(peer)) {
        for (name, present) in [
            (&X_FORWARDED_FOR, sent.xff),
            (&header::FORWARDED, sent.forwarded),
            (&X_FORWARDED_PROTO, sent.proto),
            (&X_FORWARDED_HOST, sent.host),
        ] {
            if present {
                headers.remove(name);
            }
        }
        sent = Sent::default();
    }
    let peer = canonical(peer);
    let prior_xff = sent
        .xff
        .then(|| join_values(headers, &X_FORWARDED_FOR))
        .flatten();
    let prior_forwarded = sent
        .forwarded
        .then(|| join_values(headers, &header::FORWARDED))
        .flatten();
    // Graphic ASCII only (so `to_str` cannot fail), and nothing that would end the quoted
    // string of `Forwarded`.
    let host = headers.get(header::HOST).and_then(|host| {
        let safe = host
            .as_bytes()
            .iter()
            .all(|&b| b.is_ascii_graphic() && b != b'"' && b != b';' && b != b',');
        safe.then(|| host.to_str().ok().map(|text| (host.clone(), text)))
            .flatten()
    });
    let v6 = peer.is_ipv6().then(|| peer.to_string());
    let ip_len = v6.as_ref().map_or_else(|| ipv4_len(peer), String::len);

    // Each value is written once into a buffer of exactly its length and handed to the header
    // map as is: `Bytes` takes a `Vec` whose length is its capacity without copying it or
    // allocating again.
    let prior_len = |prior: &Option<String>| prior.as_ref().map_or(0, |p| p.len() + 2);
    let xff_len = prior_len(&prior_xff) + ip_len;
    let mut xff = String::with_capacity(xff_len);
    if let Some(prior) = &prior_xff {
        xff.push_str(prior);
        xff.push_str(", ");
    }
    push_ip(&mut xff, peer, v6.as_deref());
    let forwarded_len = prior_len(&prior_forwarded)
        + "for=".len()
        + if v6.is_some() { ip_len + 4 } else { ip_len }
        + ";proto=".len()
        + proto.len()
        + host
            .as_ref()
            .map_or(0, |(_, h)| ";host=\"\"".len() + h.len());
    let mut forwarded = String::with_capacity(forwarded_len);
    if let Some(prior) = &prior_forwarded {
        forwarded.push_str(prior);
        forwarded.push_str(", ");
    }
    forwarded.push_str("for=");
    if v6.is_some() {
        forwarded.push_str("\"[");
        push_ip(&mut forwarded, peer, v6.as_deref());
        forwarded.push_str("]\"");
    } else {
        push_ip(&mut forwarded, peer, None);
    }
    forwarded.push_str(";proto=");
    forwarded.push_str(proto);
    let host = host.map(|(value, text)| {
        forwarded.push_str(";host=\"");
        forwarded.push_str(text);
        forwarded.push('"');
        value
    });
    debug_assert_eq!((xff.len(), forwarded.len()), (xff_len, forwarded_len));
    if let Some(host) = host
        && !sent.host
    {
        headers.insert(X_FORWARDED_HOST.clone(), host);
    }
    if !sent.proto {
        headers.insert(X_FORWARDED_PROTO.clone(), HeaderValue::from_static(proto));
    }
    // Both strings are built from parsed addresses and checked host bytes: always valid.
    if let Ok(value) = HeaderValue::from_maybe_shared(Bytes::from(xff)) {
        headers.insert(X_FORWARDED_FOR.clone(), value);
    }
    if let Ok(value) = HeaderValue::from_maybe_shared(Bytes::from(forwarded)) {
        headers.insert(header::FORWARDED, value);
    }
}

/// Which forwarding headers a request carries.
#[derive(Debug, Default, Clone, Copy)]
struct Sent {
    xff: bool,
    forwarded: bool,
    proto: bool,
    host: bool,
}

/// The length of an IPv4 address's text (0 for IPv6, which is written through `Display`).
fn ipv4_len(ip: IpAddr) -> usize {
    let IpAddr::V4(v4) = ip else { return 0 };
    let digits = |o: u8| match o {
        0..=9 => 1,
        10..=99 => 2,
        _ => 3,
    };
    3 + v4.octets().into_iter().map(digits).sum::<usize>()
}

/// Writes `ip` in its usual text form. IPv4, the common case, is written digit by digit: the
/// formatting machinery behind `Display` cost more than the rest of this module per request
/// (callgrind, `bench/RESULTS.md`).
fn push_ip(out: &mut String, ip: IpAddr, v6: Option<&str>) {
    let IpAddr::V4(v4) = ip else {
        out.push_str(v6.unwrap_or_default());
        return;
    };
    for (i, octet) in v4.octets().into_iter().enumerate() {
        if i > 0 {
            out.push('.');
        }
        if octet >= 100 {
            out.push(char::from(b'0' + octet / 100));
        }
        if octet >= 10 {
            out.push(char::from(b'0' + octet / 10 % 10));
        }
        out.push(char::from(b'0' + octet % 10));
    }
}

/// All values of `name` joined with `, ` (a header may be sent several times).
fn join_values(headers: &HeaderMap, name: &HeaderName) -> Option<String> {
    let values: Vec<&str> = headers
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect();
    (!values.is_empty()).then(|| values.join(", "))
}

/// The request's id: the client's when it is short printable ASCII, else a new random one.
pub fn request_id(headers: &HeaderMap) -> HeaderValue {
    if let Some(id) = headers.get(&X_REQUEST_ID)
        && (1..=128).contains(&id.len())
        && id.as_bytes().iter().all(|b| b.is_ascii_graphic())
    {
        return id.clone();
    }
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut id = [0u8; 32];
    let mut bits = rand::random::<u128>();
    for digit in id.iter_mut().rev() {
        *digit = HEX[(bits & 0xf) as usize];
        bits >>= 4;
    }
    HeaderValue::from_bytes(&id).unwrap_or_else(|_| HeaderValue::from_static("invalid"))
}

/// Removes hop-by-hop headers (RFC 9110 §7.6.1), including those named in `Connection`.
///
/// One pass over the names finds which are there, and only those are removed: a typical
/// request carries none of them and a typical response only `Connection`, and each removal is
/// a hashed lookup (one per name cost 7 % of a proxied request, `bench/RESULTS.md`).
pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
    static KEEP_ALIVE: HeaderName = HeaderName::from_static("keep-alive");
    static PROXY_CONNECTION: HeaderName = HeaderName::from_static("proxy-connection");
    let mut connection = false;
    let mut fixed = false;
    for name in headers.keys() {
        if name == header::CONNECTION {
            connection = true;
        } else {
            fixed |= is_hop_by_hop(name);
        }
    }
    if connection {
        // The names listed in `Connection` that the message actually carries; tokens such as
        // `close` name no header and cost nothing.
        let named: Vec<HeaderName> = headers
            .get_all(header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .filter_map(|token| {
                let token = token.trim();
                headers
                    .keys()
                    .find(|name| name.as_str().eq_ignore_ascii_case(token))
                    .cloned()
            })
            .collect();
        for name in named {
            headers.remove(name);
        }
        headers.remove(header::CONNECTION);
    }
    if fixed {
        for name in [
            &header::TE,
            &header::TRAILER,
            &header::TRANSFER_ENCODING,
            &header::UPGRADE,
            &header::PROXY_AUTHORIZATION,
            &KEEP_ALIVE,
            &PROXY_CONNECTION,
        ] {
            headers.remove(name);
        }
    }
}

/// The hop-by-hop names that are removed whether or not `Connection` lists them.
fn is_hop_by_hop(name: &HeaderName) -> bool {
    matches!(
        name.as_str(),
        "te" | "trailer"
            | "transfer-encoding"
            | "upgrade"
            | "proxy-authorization"
            | "keep-alive"
            | "proxy-connection"
    )
}

#[cfg(test)]
mod tests;
