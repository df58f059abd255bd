//! Turning a client address into a rate-limit subject.

use std::net::{IpAddr, Ipv6Addr};

/// The subject for a client address: the address itself for IPv4, its /64 network for
/// IPv6 (one customer usually owns a whole /64, so limiting single v6 addresses is
/// trivially evaded). IPv4-mapped IPv6 addresses count as IPv4.
///
/// ```
/// # use basis_ratelimit::ip_subject;
/// assert_eq!(ip_subject("203.0.113.7".parse().unwrap()), "ip:203.0.113.7");
/// assert_eq!(ip_subject("2001:db8:1:2:3:4:5:6".parse().unwrap()), "ip:2001:db8:1:2::/64");
/// ```
pub fn ip_subject(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => format!("ip:{v4}"),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => format!("ip:{v4}"),
            None => {
                let net = u128::from(v6) & !((1u128 << 64) - 1);
                format!("ip:{}/64", Ipv6Addr::from(net))
            }
        },
    }
}
