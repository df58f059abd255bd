//! TLS termination (rustls with ring, TLS 1.2 and 1.3, ALPN h2 then http/1.1), the plain-HTTP
//! listener that sends clients to HTTPS, and the HSTS header added to every answer over TLS.

use std::convert::Infallible;
use std::path::Path;
use std::sync::Arc;

use anyhow::Context as _;
use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls;

/// One year, subdomains included: what HSTS preload lists expect.
pub const HSTS: HeaderValue = HeaderValue::from_static("max-age=31536000; includeSubDomains");

/// The acceptor for a PEM certificate chain and key.
pub fn acceptor(cert: &Path, key: &Path) -> anyhow::Result<TlsAcceptor> {
    let certs = read_pem(cert, |r| {
        rustls_pemfile::certs(r).collect::<Result<Vec<_>, _>>()
    })?;
    let key = read_pem(key, rustls_pemfile::private_key)?
        .with_context(|| format!("no private key in {}", key.display()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .context("the TLS certificate and key do not form a usable pair")?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}

fn read_pem<T>(
    path: &Path,
    parse: impl FnOnce(&mut dyn std::io::BufRead) -> std::io::Result<T>,
) -> anyhow::Result<T> {
    let file =
        std::fs::File::open(path).with_context(|| format!("cannot read {}", path.display()))?;
    parse(&mut std::io::BufReader::new(file))
        .with_context(|| format!("{} is not valid PEM", path.display()))
}

/// Answers every plain-HTTP request with 301 to the same host and path over HTTPS on
/// `https_port`.
pub async fn redirect_http(listener: TcpListener, https_port: u16) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            // Out of file descriptors and the like: back off instead of spinning.
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            continue;
        };
        let service = service_fn(move |request: Request<Incoming>| async move {
            Ok::<_, Infallible>(to_https(&request, https_port))
        });
        tokio::spawn(async move {
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

fn to_https(request: &Request<Incoming>, https_port: u16) -> Response<Full<Bytes>> {
    let host = request
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .map(|h| h.rsplit_once(':').map_or(h, |(name, _)| name))
        .filter(|h| {
            !h.is_empty()
                && h.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-.[]:".contains(&b))
        });
    let mut response = Response::new(Full::new(Bytes::new()));
    let Some(host) = host else {
        *response.status_mut() = StatusCode::BAD_REQUEST;
        return response;
    };
    let port = if https_port == 443 {
        String::new()
    } else {
        format!(":{https_port}")
    };
    let path = request.uri().path_and_query().map_or("/", |p| p.as_str());
    *response.status_mut() = StatusCode::MOVED_PERMANENTLY;
    if let Ok(location) = HeaderValue::from_str(&format!("https://{host}{port}{path}")) {
        response.headers_mut().insert(header::LOCATION, location);
    }
    response
}
