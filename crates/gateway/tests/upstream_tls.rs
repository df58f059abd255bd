//! TLS to backends: `https://` backends are reached over rustls, trusting the `--backend-ca`
//! file (or the webpki roots without one); a backend whose certificate is not trusted counts
//! as failing, and its requests go elsewhere or get 503.

mod support;

use std::sync::Arc;
use std::time::Duration;

use basis_gateway::Gateway;
use basis_gateway::balance::Algorithm;
use basis_testkit::eventually;
use support::{TestBackend, TestGateway, config};
use tokio_rustls::{TlsAcceptor, rustls};

/// A certificate for 127.0.0.1 and the acceptor that serves it.
fn certified() -> (rcgen::CertifiedKey<rcgen::KeyPair>, TlsAcceptor) {
    let certified = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned()]).unwrap();
    let key =
        rustls::pki_types::PrivateKeyDer::try_from(certified.signing_key.serialize_der()).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let server = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![certified.cert.der().clone()], key)
        .unwrap();
    (certified, TlsAcceptor::from(Arc::new(server)))
}

#[tokio::test]
async fn an_https_backend_signed_by_the_configured_ca_is_reached_over_tls() {
    let (cert, acceptor) = certified();
    let backend = TestBackend::start_tls("secure", acceptor).await;
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, cert.cert.pem()).unwrap();
    let mut cfg = config(vec![backend.https_spec()]);
    cfg.backend_ca = Some(ca);
    let gateway = TestGateway::start(cfg).await;
    for _ in 0..3 {
        let seen: serde_json::Value = reqwest::get(gateway.url("/over-tls"))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(seen["backend"], "secure");
    }
    assert_eq!(backend.hits(), 3);
}

#[tokio::test]
async fn a_backend_whose_certificate_is_not_trusted_fails_and_its_requests_go_elsewhere() {
    let ((trusted_cert, trusted_tls), (_, untrusted_tls)) = (certified(), certified());
    let good = TestBackend::start_tls("good", trusted_tls).await;
    let bad = TestBackend::start_tls("bad", untrusted_tls).await;
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, trusted_cert.cert.pem()).unwrap();
    let mut cfg = config(vec![bad.https_spec(), good.https_spec()]);
    cfg.backend_ca = Some(ca);
    cfg.algorithm = Algorithm::RoundRobin;
    let gateway = TestGateway::start(cfg).await;
    let client = reqwest::Client::new();
    for _ in 0..6 {
        let response = client.get(gateway.url("/")).send().await.unwrap();
        assert_eq!(response.status(), 200);
    }
    assert_eq!(good.hits(), 6);
    assert_eq!(bad.hits(), 0, "no request crossed a refused handshake");
    let down = eventually(Duration::from_secs(5), || async {
        gateway.status().await["backends"][0]["health"] == "down"
    })
    .await;
    assert!(down, "{}", gateway.status().await);
}

#[tokio::test]
async fn with_no_ca_file_a_self_signed_backend_is_refused_and_the_client_gets_503() {
    let (_, acceptor) = certified();
    let backend = TestBackend::start_tls("self-signed", acceptor).await;
    let mut cfg = config(vec![backend.https_spec()]);
    cfg.health_check = basis_gateway::health::HealthMode::Off;
    let gateway = TestGateway::start(cfg).await;
    let response = reqwest::get(gateway.url("/")).await.unwrap();
    assert_eq!(response.status(), 503);
    assert_eq!(
        response.headers()["content-type"],
        "application/problem+json"
    );
    assert_eq!(backend.hits(), 0);
}

#[tokio::test]
async fn a_ca_file_without_certificates_stops_the_start_with_a_reason() {
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("empty.pem");
    std::fs::write(&ca, "not a certificate\n").unwrap();
    let mut cfg = config(vec!["https://127.0.0.1:1".parse().unwrap()]);
    cfg.backend_ca = Some(ca);
    let err = Gateway::bind(cfg).await.err().expect("refused");
    assert!(
        err.to_string().contains("no usable CA certificate"),
        "{err}"
    );
    let mut cfg = config(vec!["https://127.0.0.1:1".parse().unwrap()]);
    cfg.backend_ca = Some(dir.path().join("missing.pem"));
    let err = Gateway::bind(cfg).await.err().expect("refused");
    assert!(err.to_string().contains("cannot read"), "{err}");
}
