//! What the gateway tells the backend about the client, and what it refuses to pass on.
//!
//! `X-Forwarded-For`, `Forwarded` and `X-Forwarded-Proto` from the client are believed only
//! when the TCP peer is a configured trusted proxy (another balancer in front); otherwise they
//! are dropped and replaced by what the gateway saw. The Basis server applies the same rule on
//! its side (`--trusted-proxy` there must list the gateway's address), so a client cannot pick
//! its own address for rate limits or logs by sending a header.

use std::fmt::Write as _;
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
    let is_trusted = trusted.iter().any(|c| c.contains(peer));
    if !is_trusted {
        headers.remove(&X_FORWARDED_FOR);
        headers.remove(header::FORWARDED);
        headers.remove(&X_FORWARDED_PROTO);
        headers.remove(&X_FORWARDED_HOST);
    }
    let peer = canonical(peer);
    // Each value is written once into its own buffer and handed to the header map as is
    // (`from_maybe_shared` keeps the bytes instead of copying them again).
    let mut xff = String::with_capacity(48);
    if let Some(prior) = join_values(headers, &X_FORWARDED_FOR) {
        xff.push_str(&prior);
        xff.push_str(", ");
    }
    push_ip(&mut xff, peer);
    let mut forwarded = String::with_capacity(96);
    if let Some(prior) = join_values(headers, &header::FORWARDED) {
        forwarded.push_str(&prior);
        forwarded.push_str(", ");
    }
    forwarded.push_str("for=");
    if peer.is_ipv6() {
        forwarded.push_str("\"[");
        push_ip(&mut forwarded, peer);
        forwarded.push_str("]\"");
    } else {
        push_ip(&mut forwarded, peer);
    }
    forwarded.push_str(";proto=");
    forwarded.push_str(proto);
    if let Some(host) = headers.get(header::HOST)
        && host
            .as_bytes()
            .iter()
            .all(|&b| b.is_ascii_graphic() && b != b'"' && b != b';' && b != b',')
    {
        let host = host.clone();
        // Checked above: graphic ASCII only.
        forwarded.push_str(";host=\"");
        forwarded.push_str(host.to_str().unwrap_or_default());
        forwarded.push('"');
        if !headers.contains_key(&X_FORWARDED_HOST) {
            headers.insert(X_FORWARDED_HOST.clone(), host);
        }
    }
    if !headers.contains_key(&X_FORWARDED_PROTO) {
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

/// Writes `ip` in its usual text form. IPv4, the common case, is written digit by digit: the
/// formatting machinery behind `Display` cost more than the rest of this module per request
/// (callgrind, `bench/RESULTS.md`).
fn push_ip(out: &mut String, ip: IpAddr) {
    let IpAddr::V4(v4) = ip else {
        let _ = write!(out, "{ip}");
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
pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
    static KEEP_ALIVE: HeaderName = HeaderName::from_static("keep-alive");
    static PROXY_CONNECTION: HeaderName = HeaderName::from_static("proxy-connection");
    if headers.contains_key(header::CONNECTION) {
        let named: Vec<HeaderName> = headers
            .get_all(header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .filter_map(|s| HeaderName::from_str(s.trim()).ok())
            .collect();
        for name in named {
            headers.remove(name);
        }
        headers.remove(header::CONNECTION);
    }
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

#[cfg(test)]
mod tests;
