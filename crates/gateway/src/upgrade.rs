//! Protocol upgrades (WebSocket and the like) passed through: the `Upgrade` request goes to
//! the backend with its hop-by-hop headers restored, and when the backend answers 101 both
//! connections are handed over and bytes copied both ways until either side closes. The
//! backend stays counted in flight for as long as the upgraded connection is open.

use bytes::Bytes;
use http::Response;
use http::header::{self, HeaderMap, HeaderValue};
use http_body_util::{Either, Full};
use hyper::body::Incoming;
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;

use crate::proxy::{ClientBody, InFlight};
use crate::upstream::Lease;

/// The protocol asked for, when the request is an upgrade (`Connection: upgrade` + `Upgrade`).
pub fn requested(headers: &HeaderMap) -> Option<HeaderValue> {
    let asks = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|token| token.trim().eq_ignore_ascii_case("upgrade"));
    asks.then(|| headers.get(header::UPGRADE).cloned())
        .flatten()
}

/// Puts the upgrade headers back after the hop-by-hop ones were removed.
pub fn restore(headers: &mut HeaderMap, protocol: HeaderValue) {
    headers.insert(header::UPGRADE, protocol);
    headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
}

/// Answers the client with the backend's 101 and joins the two upgraded connections.
pub fn splice(
    client: OnUpgrade,
    mut response: Response<Incoming>,
    guard: InFlight,
    lease: Option<Lease>,
) -> Response<ClientBody> {
    let upstream = hyper::upgrade::on(&mut response);
    tokio::spawn(async move {
        // The connection is the upgrade's now: it never returns to the idle list.
        let _held = (guard, lease);
        match tokio::try_join!(client, upstream) {
            Ok((client, upstream)) => {
                let (mut client, mut upstream) = (TokioIo::new(client), TokioIo::new(upstream));
                let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
            }
            Err(err) => tracing::debug!(error = %err, "upgrade did not complete"),
        }
    });
    let (parts, _) = response.into_parts();
    Response::from_parts(parts, Either::Right(Full::new(Bytes::new())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_connection_upgrade_with_a_protocol_is_an_upgrade() {
        let mut h = HeaderMap::new();
        h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        assert_eq!(requested(&h), None);
        h.insert(
            header::CONNECTION,
            HeaderValue::from_static("keep-alive, Upgrade"),
        );
        assert_eq!(requested(&h).unwrap(), "websocket");
        h.remove(header::UPGRADE);
        assert_eq!(requested(&h), None);
    }
}
