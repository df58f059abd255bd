//! TLS termination: HTTPS in front of a plain backend, HSTS, `X-Forwarded-Proto: https`, and
//! the plain-HTTP listener sending clients to HTTPS.

mod support;

use std::sync::Arc;

use basis_gateway::Gateway;
use support::{TestBackend, config};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio_rustls::rustls;

#[tokio::test]
async fn https_is_terminated_with_hsts_and_plain_http_is_redirected() {
    let backend = TestBackend::start("a").await;
    let dir = tempfile::tempdir().unwrap();
    let certified = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    std::fs::write(&cert, certified.cert.pem()).unwrap();
    std::fs::write(&key, certified.signing_key.serialize_pem()).unwrap();
    let mut cfg = config(vec![backend.spec()]);
    cfg.listen = "127.0.0.1:0".parse().unwrap();
    cfg.tls_cert = Some(cert);
    cfg.tls_key = Some(key);
    cfg.redirect_http = Some("127.0.0.1:0".parse().unwrap());
    let gateway = Gateway::bind(cfg).await.unwrap();
    let (address, plain) = (gateway.local_addr(), gateway.redirect_addr().unwrap());
    tokio::spawn(gateway.run(std::future::pending()));

    let mut roots = rustls::RootCertStore::empty();
    roots.add(certified.cert.der().clone()).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let client = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let tcp = tokio::net::TcpStream::connect(address).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let mut tls = tokio_rustls::TlsConnector::from(Arc::new(client))
        .connect(name, tcp)
        .await
        .expect("the handshake completes");
    tls.write_all(b"GET /secure HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut answer = Vec::new();
    let _ = tls.read_to_end(&mut answer).await;
    let answer = String::from_utf8_lossy(&answer).to_ascii_lowercase();
    assert!(answer.starts_with("http/1.1 200"), "{answer}");
    assert!(
        answer.contains("strict-transport-security: max-age=31536000"),
        "{answer}"
    );
    assert!(answer.contains(r#""xforwardedproto":"https""#), "{answer}");

    let redirect = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
        .get(format!("http://{plain}/a/b?c=d"))
        .header("host", "localhost:80")
        .send()
        .await
        .unwrap();
    assert_eq!(redirect.status(), 301);
    assert_eq!(
        redirect.headers()["location"],
        format!("https://localhost:{}/a/b?c=d", address.port())
    );
    assert_eq!(backend.hits(), 1, "the redirect never reached the backend");
}
