//! Transport: security headers everywhere, HTTPS with HSTS, the HTTP→HTTPS redirector,
//! and CORS from an allowlist.

use std::sync::Arc;

use basis_server::clock::ManualClock;
use basis_server::{Config, Server};
use reqwest::Method;
use serde_json::json;

use crate::helpers::{Engine, TestApp};
use crate::on_both_engines;

on_both_engines!(
    every_response_carries_the_security_headers,
    https_serves_tls_with_hsts_and_plain_http_is_redirected,
    cors_answers_allow_listed_origins_only,
);

async fn every_response_carries_the_security_headers(engine: Engine) {
    let app = TestApp::spawn(&engine).await;
    let responses = [
        app.get("/healthz").await,
        app.get("/auth/me").await,
        app.get("/users/nobody").await,
        app.post_json(
            "/auth/login",
            json!({"email": "x@example.com", "password": "wrong password"}),
        )
        .await,
    ];
    for response in responses {
        let headers = response.headers();
        assert_eq!(headers["x-content-type-options"], "nosniff");
        assert_eq!(headers["x-frame-options"], "DENY");
        assert!(headers.contains_key("referrer-policy"));
        assert!(
            !headers.contains_key("strict-transport-security"),
            "no HSTS over plain HTTP"
        );
    }
}

async fn https_serves_tls_with_hsts_and_plain_http_is_redirected(engine: Engine) {
    let dir = tempfile::tempdir().unwrap();
    let certified = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let cert_path = dir.path().join("cert.pem");
    let key_path = dir.path().join("key.pem");
    std::fs::write(&cert_path, certified.cert.pem()).unwrap();
    std::fs::write(&key_path, certified.signing_key.serialize_pem()).unwrap();

    let mut config = Config::with_data_dir(dir.path().join("data"));
    config.listen = "127.0.0.1:0".parse().unwrap();
    config.database_url = engine.fresh_database().await;
    config.transport.tls_cert = Some(cert_path);
    config.transport.tls_key = Some(key_path);
    config.transport.redirect_http = Some("127.0.0.1:0".parse().unwrap());
    let server = Server::build_with_clock(config, ManualClock::starting_at(chrono::Utc::now()))
        .await
        .expect("the app starts with TLS");
    let addr = server.local_addr();
    let plain = server.redirect_addr().expect("a redirector");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(server.run(async move {
        let _ = stopped.await;
    }));

    let client = |max: reqwest::tls::Version| {
        reqwest::Client::builder()
            .add_root_certificate(
                reqwest::Certificate::from_pem(certified.cert.pem().as_bytes()).unwrap(),
            )
            .resolve("localhost", addr)
            .max_tls_version(max)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap()
    };
    let url = format!("https://localhost:{}/healthz", addr.port());
    for version in [
        reqwest::tls::Version::TLS_1_3,
        reqwest::tls::Version::TLS_1_2,
    ] {
        let response = client(version)
            .get(&url)
            .send()
            .await
            .expect("an HTTPS answer");
        assert_eq!(response.status(), 200);
        let hsts = response.headers()["strict-transport-security"]
            .to_str()
            .unwrap();
        assert!(
            hsts.starts_with("max-age=") && hsts.contains("includeSubDomains"),
            "{hsts}"
        );
    }
    assert_eq!(
        negotiated_protocol(addr, certified.cert.pem().as_bytes()).await,
        b"http/1.1",
        "a client offering h2 first still gets the one protocol served"
    );
    // Plain HTTP on the TLS port is not served.
    let plain_on_tls = reqwest::get(format!("http://{addr}/healthz")).await;
    assert!(plain_on_tls.is_err() || plain_on_tls.unwrap().status() != 200);

    let redirect = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
        .request(Method::GET, format!("http://{plain}/links/abc?x=1"))
        .send()
        .await
        .unwrap();
    assert_eq!(redirect.status(), 301);
    assert_eq!(
        redirect.headers()["location"],
        format!("https://{addr}/links/abc?x=1").as_str()
    );

    let _ = stop.send(());
    task.await.unwrap().unwrap();
}

/// The ALPN protocol the server picks for a client that offers HTTP/2 and HTTP/1.1.
async fn negotiated_protocol(addr: std::net::SocketAddr, ca_pem: &[u8]) -> Vec<u8> {
    use tokio_rustls::rustls;
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_pemfile::certs(&mut &ca_pem[..]) {
        roots.add(cert.unwrap()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await
        .expect("the handshake completes");
    tls.get_ref().1.alpn_protocol().unwrap_or_default().to_vec()
}

async fn cors_answers_allow_listed_origins_only(engine: Engine) {
    let app = TestApp::spawn_with(&engine, |c| {
        c.transport.cors_origins = vec!["https://app.example.com".into()];
    })
    .await;
    let preflight = |origin: &'static str| {
        app.client
            .request(Method::OPTIONS, app.url("/shorten"))
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .header(
                "access-control-request-headers",
                "content-type, x-csrf-token",
            )
            .send()
    };
    let allowed = preflight("https://app.example.com").await.unwrap();
    assert!(allowed.status().is_success());
    assert_eq!(
        allowed.headers()["access-control-allow-origin"],
        "https://app.example.com"
    );
    assert_eq!(
        allowed.headers()["access-control-allow-credentials"],
        "true"
    );
    let denied = preflight("https://evil.example").await.unwrap();
    assert!(
        denied
            .headers()
            .get("access-control-allow-origin")
            .is_none()
    );

    for bad in ["*", "https://app.example.com/path", "not a url"] {
        let dir = tempfile::tempdir().unwrap();
        let mut config = Config::with_data_dir(dir.path());
        config.listen = "127.0.0.1:0".parse().unwrap();
        config.transport.cors_origins = vec![bad.into()];
        let clock: Arc<ManualClock> = ManualClock::starting_at(chrono::Utc::now());
        let err = Server::build_with_clock(config, clock)
            .await
            .expect_err("refused");
        assert!(format!("{err:#}").contains("CORS"), "{err:#}");
    }
}
