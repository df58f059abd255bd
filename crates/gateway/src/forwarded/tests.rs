use std::net::IpAddr;

use http::HeaderMap;

use super::*;

fn ip(text: &str) -> IpAddr {
    text.parse().unwrap()
}

fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
    let mut map = HeaderMap::new();
    for (name, value) in pairs {
        map.append(
            HeaderName::from_str(name).unwrap(),
            HeaderValue::from_str(value).unwrap(),
        );
    }
    map
}

#[test]
fn cidrs_match_their_block_only() {
    let block: Cidr = "10.1.0.0/16".parse().unwrap();
    assert!(block.contains(ip("10.1.200.3")));
    assert!(!block.contains(ip("10.2.0.1")));
    assert!(block.contains(ip("::ffff:10.1.0.9")));
    let one: Cidr = "::1".parse().unwrap();
    assert!(one.contains(ip("::1")) && !one.contains(ip("::2")));
    assert!("10.0.0.0/33".parse::<Cidr>().is_err());
    assert!("ten".parse::<Cidr>().is_err());
}

#[test]
fn an_untrusted_clients_forwarding_headers_are_replaced() {
    let mut h = headers(&[
        ("host", "example.test"),
        ("x-forwarded-for", "1.2.3.4"),
        ("forwarded", "for=1.2.3.4"),
        ("x-forwarded-proto", "https"),
    ]);
    assert_eq!(client_ip(&h, ip("203.0.113.9"), &[]), ip("203.0.113.9"));
    set_forwarding(&mut h, ip("203.0.113.9"), "http", &[]);
    assert_eq!(h["x-forwarded-for"], "203.0.113.9");
    assert_eq!(h["x-forwarded-proto"], "http");
    assert_eq!(
        h["forwarded"],
        "for=203.0.113.9;proto=http;host=\"example.test\""
    );
    assert_eq!(h["x-forwarded-host"], "example.test");
}

#[test]
fn a_trusted_proxys_chain_is_extended_and_its_client_believed() {
    let trusted: Vec<Cidr> = vec!["10.0.0.0/8".parse().unwrap()];
    let mut h = headers(&[
        ("x-forwarded-for", "198.51.100.7, 10.0.0.5"),
        ("x-forwarded-proto", "https"),
    ]);
    assert_eq!(client_ip(&h, ip("10.0.0.2"), &trusted), ip("198.51.100.7"));
    set_forwarding(&mut h, ip("10.0.0.2"), "http", &trusted);
    assert_eq!(h["x-forwarded-for"], "198.51.100.7, 10.0.0.5, 10.0.0.2");
    assert_eq!(h["x-forwarded-proto"], "https");
}

#[test]
fn ipv6_peers_are_quoted_in_forwarded() {
    let mut h = HeaderMap::new();
    set_forwarding(&mut h, ip("2001:db8::1"), "http", &[]);
    assert_eq!(h["forwarded"], "for=\"[2001:db8::1]\";proto=http");
}

#[test]
fn request_ids_are_kept_when_sane_and_created_otherwise() {
    let h = headers(&[("x-request-id", "abc-123")]);
    assert_eq!(request_id(&h), "abc-123");
    let long = "x".repeat(200);
    let created = request_id(&headers(&[("x-request-id", &long)]));
    assert_eq!(created.len(), 32);
    assert_ne!(request_id(&HeaderMap::new()), request_id(&HeaderMap::new()));
}

#[test]
fn hop_by_hop_headers_and_those_named_in_connection_are_removed() {
    let mut h = headers(&[
        ("connection", "keep-alive, x-secret"),
        ("x-secret", "1"),
        ("keep-alive", "timeout=5"),
        ("accept", "*/*"),
    ]);
    strip_hop_by_hop(&mut h);
    assert_eq!(h.len(), 1);
    assert!(h.contains_key("accept"));
}

#[test]
fn hop_by_hop_headers_are_removed_without_a_connection_header() {
    let mut h = headers(&[
        ("te", "trailers"),
        ("proxy-authorization", "Basic eDp5"),
        ("proxy-connection", "keep-alive"),
        ("transfer-encoding", "chunked"),
        ("accept", "*/*"),
    ]);
    strip_hop_by_hop(&mut h);
    assert_eq!(h.len(), 1);
    assert!(h.contains_key("accept"));
}

#[test]
fn names_listed_in_every_connection_header_are_removed_whatever_their_case() {
    let mut h = headers(&[
        ("connection", "X-Secret ,close"),
        ("connection", "x-other"),
        ("x-secret", "1"),
        ("x-other", "2"),
        ("x-kept", "3"),
    ]);
    strip_hop_by_hop(&mut h);
    assert_eq!(h.len(), 1);
    assert_eq!(h["x-kept"], "3");
}

#[test]
fn a_message_without_hop_by_hop_headers_is_left_as_it_is() {
    let pairs = [
        ("host", "example.test"),
        ("accept", "*/*"),
        ("x-forwarded-for", "1.2.3.4"),
        ("cookie", "a=1"),
        ("cookie", "b=2"),
    ];
    let mut h = headers(&pairs);
    strip_hop_by_hop(&mut h);
    assert_eq!(h, headers(&pairs));
}

#[test]
fn an_untrusted_clients_repeated_forwarding_headers_all_go() {
    let mut h = headers(&[
        ("host", "example.test"),
        ("x-forwarded-for", "1.2.3.4"),
        ("x-forwarded-for", "5.6.7.8"),
        ("forwarded", "for=1.2.3.4"),
        ("forwarded", "for=5.6.7.8"),
        ("x-forwarded-host", "evil.test"),
    ]);
    set_forwarding(&mut h, ip("::ffff:192.0.2.10"), "https", &[]);
    assert_eq!(h.get_all("x-forwarded-for").iter().count(), 1);
    assert_eq!(h["x-forwarded-for"], "192.0.2.10");
    assert_eq!(h.get_all("forwarded").iter().count(), 1);
    assert_eq!(
        h["forwarded"],
        "for=192.0.2.10;proto=https;host=\"example.test\""
    );
    assert_eq!(h["x-forwarded-host"], "example.test");
    assert_eq!(h["x-forwarded-proto"], "https");
}

#[test]
fn a_trusted_proxys_forwarded_chain_host_and_proto_are_kept() {
    let trusted: Vec<Cidr> = vec!["2001:db8::/32".parse().unwrap()];
    let mut h = headers(&[
        ("host", "inner.test"),
        ("forwarded", "for=198.51.100.7;proto=https"),
        ("x-forwarded-host", "outer.test"),
        ("x-forwarded-proto", "https"),
    ]);
    set_forwarding(&mut h, ip("2001:db8::2"), "http", &trusted);
    assert_eq!(
        h["forwarded"],
        "for=198.51.100.7;proto=https, for=\"[2001:db8::2]\";proto=http;host=\"inner.test\""
    );
    assert_eq!(h["x-forwarded-for"], "2001:db8::2");
    assert_eq!(h["x-forwarded-host"], "outer.test");
    assert_eq!(h["x-forwarded-proto"], "https");
}

#[test]
fn a_host_that_would_break_forwarded_is_left_out_of_it() {
    let mut h = headers(&[("host", "a\"b")]);
    set_forwarding(&mut h, ip("10.20.30.4"), "http", &[]);
    assert_eq!(h["forwarded"], "for=10.20.30.4;proto=http");
    assert!(!h.contains_key("x-forwarded-host"));
}
