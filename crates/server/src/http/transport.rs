//! Transport security: HTTPS with rustls (TLS 1.2 and 1.3 only), the plain-HTTP redirector,
//! HSTS, and CORS from an allowlist.
//!
//! Every listener serves HTTP/1.1 and HTTP/2: over TLS the client picks with ALPN; over
//! plain TCP a client with prior knowledge (a proxy, a load balancer) opens with the
//! HTTP/2 preface, and anything else is HTTP/1.1.
//!
//! The accept loop is in [`super::conn`]: each connection, its TLS handshake (with a
//! deadline) included, runs in its own task, so a slow client stalls nobody else.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use axum::Router;
use axum::http::{HeaderName, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Redirect, Response};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls;
use tower_http::cors::{AllowOrigin, CorsLayer};
use tower_http::set_header::SetResponseHeaderLayer;

/// Two years, the preload list's minimum; sent only over HTTPS.
const HSTS: &str = "max-age=63072000; includeSubDomains";

/// Transport settings.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct TransportConfig {
    /// PEM certificate chain: serve HTTPS (TLS 1.2+) and send `Strict-Transport-Security`.
    #[arg(long, env = "BASIS_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,

    /// PEM private key of the certificate.
    #[arg(long, env = "BASIS_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,

    /// Also listen here for plain HTTP and answer every request with 301 to HTTPS.
    #[arg(long, env = "BASIS_REDIRECT_HTTP")]
    pub redirect_http: Option<SocketAddr>,

    /// Origins allowed to call the API from browsers with credentials (comma-separated,
    /// e.g. `https://app.example.com`). Empty: same origin only. `*` is refused.
    #[arg(long, env = "BASIS_CORS_ORIGINS", value_delimiter = ',')]
    pub cors_origins: Vec<String>,
}

impl TransportConfig {
    /// The TLS acceptor, when a certificate is configured.
    pub fn tls(&self) -> anyhow::Result<Option<Tls>> {
        let (Some(cert), Some(key)) = (&self.tls_cert, &self.tls_key) else {
            return Ok(None);
        };
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
        // HTTP/2 first: one connection multiplexes a page's requests. HTTP/1.1 for the rest.
        // A client that offers neither still gets HTTP/1.1, which the server tells apart
        // from HTTP/2 by the connection preface.
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(Some(Tls(TlsAcceptor::from(Arc::new(config)))))
    }

    /// The CORS layer, when origins are configured.
    pub fn cors(&self) -> anyhow::Result<Option<CorsLayer>> {
        if self.cors_origins.is_empty() {
            return Ok(None);
        }
        let mut origins = Vec::new();
        for origin in self
            .cors_origins
            .iter()
            .map(|o| o.trim().trim_end_matches('/'))
        {
            let parsed = url::Url::parse(origin)
                .ok()
                .filter(|u| origin != "*" && u.origin().ascii_serialization() == origin);
            let Some(_) = parsed else {
                anyhow::bail!(
                    "CORS origin {origin:?} must be a scheme://host[:port] origin; `*` is never allowed with credentials"
                );
            };
            origins.push(HeaderValue::from_str(origin)?);
        }
        Ok(Some(
            CorsLayer::new()
                .allow_origin(AllowOrigin::list(origins))
                .allow_credentials(true)
                .allow_methods([
                    Method::GET,
                    Method::HEAD,
                    Method::POST,
                    Method::PATCH,
                    Method::DELETE,
                ])
                .allow_headers([
                    header::AUTHORIZATION,
                    header::CONTENT_TYPE,
                    HeaderName::from_static("x-csrf-token"),
                    HeaderName::from_static("x-api-key"),
                ])
                .expose_headers([
                    header::LOCATION,
                    header::LINK,
                    header::RETRY_AFTER,
                    HeaderName::from_static("x-request-id"),
                ])
                .max_age(Duration::from_secs(600)),
        ))
    }
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

/// Adds CORS and (with TLS) HSTS to `router`.
pub fn layer<S: Clone + Send + Sync + 'static>(
    router: Router<S>,
    config: &TransportConfig,
) -> anyhow::Result<Router<S>> {
    let mut router = router;
    if config.tls_cert.is_some() {
        router = router.layer(SetResponseHeaderLayer::overriding(
            header::STRICT_TRANSPORT_SECURITY,
            HeaderValue::from_static(HSTS),
        ));
    }
    if let Some(cors) = config.cors()? {
        router = router.layer(cors);
    }
    Ok(router)
}

/// The TLS acceptor (rustls, TLS 1.2 and 1.3).
#[derive(Clone)]
pub struct Tls(pub TlsAcceptor);

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Tls(rustls)")
    }
}

/// Serves plain HTTP on `listener`, answering everything with 301 to `https_origin`.
pub async fn redirect_http(listener: TcpListener, https_origin: String) {
    let app = Router::new().fallback(move |uri: Uri| {
        let origin = https_origin.clone();
        async move { to_https(&origin, &uri) }
    });
    if let Err(err) = axum::serve(listener, app).await {
        tracing::error!(error = %err, "the HTTP redirector stopped");
    }
}

fn to_https(origin: &str, uri: &Uri) -> Response {
    let path = uri.path_and_query().map_or("/", |p| p.as_str());
    let mut response = Redirect::permanent(&format!("{origin}{path}")).into_response();
    // 308 keeps the method; the issue asks for a classic 301.
    *response.status_mut() = StatusCode::MOVED_PERMANENTLY;
    response
}
