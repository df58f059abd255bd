//! Getting an event to an endpoint: where it may go (SSRF rules), how it is signed, one
//! attempt over HTTP, and the retry schedule.
//!
//! # The signature
//!
//! Every request carries `Basis-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256>`, the MAC
//! keyed with the endpoint's secret over `"<t>.<body>"`. A receiver recomputes it over the
//! raw body, compares in constant time, and refuses a `t` too far from its own clock (a
//! replay). `Basis-Event` names the event kind and `Basis-Delivery` the delivery id, which
//! stays the same across retries of one delivery (receivers deduplicate on it).
//!
//! # Where requests may go
//!
//! The host is resolved at registration and again before every attempt, and the request is
//! pinned to the addresses just checked, so a name that later resolves to an internal
//! address (DNS rebinding) is refused rather than followed. Loopback, private, link-local,
//! shared, multicast and other non-public ranges are refused unless `--webhooks-allow-private`
//! is set; plain `http` is refused outside `--env development`. Redirects are not followed.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use basis_store::webhooks::Attempt;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use url::Url;

/// One day: a delivery still failing this long after its event is dead-lettered.
pub const GIVE_UP_AFTER_MS: i64 = 24 * 60 * 60 * 1000;
/// The first retry's delay; each later one doubles, up to [`MAX_BACKOFF_MS`].
const FIRST_BACKOFF_MS: i64 = 30_000;
/// The longest delay between two attempts.
const MAX_BACKOFF_MS: i64 = 6 * 60 * 60 * 1000;
/// How much of a failing answer's body is kept in the log.
const ERROR_BODY_CHARS: usize = 200;

/// How deliveries are made.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Accept endpoints that resolve to non-public addresses (tests, private networks).
    pub allow_private: bool,
    /// Accept `http://` endpoints (development only).
    pub allow_http: bool,
    /// How long one attempt may take, connection included.
    pub timeout: Duration,
}

/// The delay before the attempt after `attempts` failed ones (1, 2, …).
pub fn backoff_ms(attempts: i32) -> i64 {
    let doublings = u32::try_from(attempts.saturating_sub(1).clamp(0, 20)).unwrap_or(0);
    FIRST_BACKOFF_MS
        .saturating_mul(1_i64 << doublings)
        .min(MAX_BACKOFF_MS)
}

/// The `Basis-Signature` value for `body` sent at `t` (Unix seconds).
pub fn signature_header(secret: &str, t: i64, body: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes any key");
    mac.update(t.to_string().as_bytes());
    mac.update(b".");
    mac.update(body.as_bytes());
    let hex: String = mac
        .finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("t={t},v1={hex}")
}

/// Whether `ip` is an address on the public internet.
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_public_v4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => is_public_v4(v4),
            None => is_public_v6(v6),
        },
    }
}

fn is_public_v4(ip: Ipv4Addr) -> bool {
    let [a, b, c, _] = ip.octets();
    !(ip.is_unspecified()
        || ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || ip.is_broadcast()
        || ip.is_documentation()
        || ip.is_multicast()
        || a == 0
        || (a == 100 && (64..128).contains(&b)) // shared address space (carrier NAT)
        || (a == 192 && b == 0 && c == 0) // IETF protocol assignments
        || (a == 198 && (b == 18 || b == 19)) // benchmarking
        || a >= 240) // reserved
}

fn is_public_v6(ip: Ipv6Addr) -> bool {
    let first = ip.segments()[0];
    !(ip.is_unspecified()
        || ip.is_loopback()
        || ip.is_multicast()
        || (first & 0xfe00) == 0xfc00 // unique local
        || (first & 0xffc0) == 0xfe80 // link local
        || (first == 0x2001 && ip.segments()[1] == 0x0db8) // documentation
        || (first == 0x0064 && ip.segments()[1] == 0xff9b)) // NAT64 to anything
}

/// Checks where `url` may be sent and resolves it; the reason it may not, otherwise.
pub async fn resolve(url: &Url, settings: &Settings) -> Result<Vec<SocketAddr>, String> {
    match url.scheme() {
        "https" => {}
        "http" if settings.allow_http => {}
        "http" => return Err("must use https".into()),
        _ => return Err("must be an http or https URL".into()),
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err("must not carry credentials".into());
    }
    let host = url.host_str().ok_or("must have a host")?;
    let port = url.port_or_known_default().ok_or("must have a port")?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host, port))
        .await
        .map_err(|_| format!("the host {host} does not resolve"))?
        .collect();
    if addrs.is_empty() {
        return Err(format!("the host {host} does not resolve"));
    }
    if !settings.allow_private && addrs.iter().any(|a| !is_public(a.ip())) {
        return Err("resolves to a private or loopback address".into());
    }
    Ok(addrs)
}

/// What one attempt found.
#[derive(Debug)]
pub struct Outcome {
    /// The HTTP status, if the endpoint answered.
    pub status: Option<i32>,
    /// Why it failed (`None` on a 2xx).
    pub error: Option<String>,
}

/// POSTs `body` to `url`, signed with `secret` at `now_ms`.
pub async fn attempt(
    settings: &Settings,
    url: &str,
    secret: &str,
    kind: &str,
    delivery_id: i64,
    body: &str,
    now_ms: i64,
) -> Outcome {
    let failed = |error: String| Outcome {
        status: None,
        error: Some(error),
    };
    let Ok(parsed) = Url::parse(url) else {
        return failed("the stored URL no longer parses".into());
    };
    let addrs = match resolve(&parsed, settings).await {
        Ok(addrs) => addrs,
        Err(reason) => return failed(format!("the endpoint {reason}")),
    };
    let mut client = reqwest::Client::builder()
        .timeout(settings.timeout)
        .redirect(reqwest::redirect::Policy::none())
        .user_agent("Basis-Webhooks/1");
    if let Some(url::Host::Domain(domain)) = parsed.host() {
        client = client.resolve_to_addrs(domain, &addrs);
    }
    let client = match client.build() {
        Ok(c) => c,
        Err(e) => return failed(format!("cannot build the HTTP client: {e}")),
    };
    let sent = client
        .post(parsed)
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .header(
            "Basis-Signature",
            signature_header(secret, now_ms.div_euclid(1000), body),
        )
        .header("Basis-Event", kind)
        .header("Basis-Delivery", delivery_id.to_string())
        .body(body.to_owned())
        .send()
        .await;
    match sent {
        Ok(response) if response.status().is_success() => Outcome {
            status: Some(i32::from(response.status().as_u16())),
            error: None,
        },
        Ok(response) => {
            let status = i32::from(response.status().as_u16());
            let text: String = response
                .text()
                .await
                .unwrap_or_default()
                .chars()
                .take(ERROR_BODY_CHARS)
                .collect();
            Outcome {
                status: Some(status),
                error: Some(format!("answered {status}: {text}")),
            }
        }
        Err(e) if e.is_timeout() => failed(format!("no answer within {:?}", settings.timeout)),
        Err(e) => failed(format!("request failed: {e}")),
    }
}

/// What to record after attempt number `attempts` (1, 2, …) of a delivery created at
/// `created_at` ended in `outcome` at `now`.
pub fn next_step(outcome: Outcome, attempts: i32, created_at: i64, now: i64) -> Attempt {
    match outcome.error {
        None => Attempt::Delivered {
            status: outcome.status.unwrap_or(200),
        },
        Some(error) => {
            let next_at = now.saturating_add(backoff_ms(attempts));
            if next_at > created_at.saturating_add(GIVE_UP_AFTER_MS) {
                Attempt::Dead {
                    status: outcome.status,
                    error,
                }
            } else {
                Attempt::Retry {
                    status: outcome.status,
                    error,
                    next_at,
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_from_thirty_seconds_to_six_hours() {
        assert_eq!(backoff_ms(1), 30_000);
        assert_eq!(backoff_ms(2), 60_000);
        assert_eq!(backoff_ms(5), 480_000);
        assert_eq!(backoff_ms(40), MAX_BACKOFF_MS);
    }

    #[test]
    fn a_delivery_is_given_up_once_its_next_try_would_pass_a_day() {
        let failed = || Outcome {
            status: Some(500),
            error: Some("answered 500".into()),
        };
        assert!(matches!(
            next_step(failed(), 1, 0, 0),
            Attempt::Retry {
                next_at: 30_000,
                ..
            }
        ));
        let late = GIVE_UP_AFTER_MS - 1_000;
        assert!(matches!(
            next_step(failed(), 9, 0, late),
            Attempt::Dead { .. }
        ));
    }

    #[test]
    fn the_signature_is_hmac_sha256_over_time_dot_body() {
        // Computed independently: printf '1700000000.{"a":1}' | openssl dgst -sha256 -hmac secret
        assert_eq!(
            signature_header("secret", 1_700_000_000, "{\"a\":1}"),
            "t=1700000000,v1=49f24e537407743fa4a0242bb63b94b9a47ee99cbbe071ccd8a22550ae411686"
        );
    }

    #[tokio::test]
    async fn plain_http_is_refused_outside_development_and_private_hosts_without_the_flag() {
        let strict = Settings {
            allow_private: false,
            allow_http: false,
            timeout: Duration::from_secs(1),
        };
        let check = |url: &str| Url::parse(url).unwrap();
        assert_eq!(
            resolve(&check("http://93.184.216.34/hook"), &strict)
                .await
                .unwrap_err(),
            "must use https"
        );
        assert!(
            resolve(&check("https://93.184.216.34/hook"), &strict)
                .await
                .is_ok()
        );
        assert_eq!(
            resolve(&check("https://127.0.0.1/hook"), &strict)
                .await
                .unwrap_err(),
            "resolves to a private or loopback address"
        );
        assert!(
            resolve(&check("https://user:pw@93.184.216.34/"), &strict)
                .await
                .is_err()
        );
        let open = Settings {
            allow_private: true,
            allow_http: true,
            ..strict
        };
        assert!(
            resolve(&check("http://127.0.0.1:9/hook"), &open)
                .await
                .is_ok()
        );
    }

    #[test]
    fn internal_addresses_are_not_public() {
        for private in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "::1",
            "fd00::1",
            "fe80::1",
            "::ffff:127.0.0.1",
        ] {
            assert!(!is_public(private.parse().unwrap()), "{private}");
        }
        for public in ["93.184.216.34", "2606:2800:220:1::1"] {
            assert!(is_public(public.parse().unwrap()), "{public}");
        }
    }
}
