//! Transport: security headers everywhere, HTTPS with HSTS, HTTP/2 beside HTTP/1.1, the
//! HTTP→HTTPS redirector, and CORS from an allowlist.

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
    http2_with_prior_knowledge_is_served_beside_http1_on_plain_tcp,
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

async fn http2_with_prior_knowledge_is_served_beside_http1_on_plain_tcp(engine: Engine) {
    let app = TestApp::spawn(&engine).await;
    let h2 = reqwest::Client::builder()
        .http2_prior_knowledge()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    // Several requests at once share the one HTTP/2 connection.
    let mut creates = tokio::task::JoinSet::new();
    for i in 0..8 {
        let create = h2
            .post(app.url("/shorten"))
            .json(&json!({"longUrl": format!("https://example.com/h2/{i}")}))
            .send();
        creates.spawn(create);
    }
    let mut links = std::collections::BTreeMap::new();
    for response in creates.join_all().await {
        let response = response.expect("an HTTP/2 answer");
        assert_eq!(response.version(), reqwest::Version::HTTP_2);
        assert_eq!(response.status(), 201);
        assert!(response.headers().contains_key("x-request-id"));
        let body: serde_json::Value = response.json().await.unwrap();
        links.insert(
            body["shortCode"].as_str().unwrap().to_owned(),
            body["longUrl"].as_str().unwrap().to_owned(),
        );
    }
    assert_eq!(links.len(), 8, "eight distinct codes");
    let (code, long_url) = links.iter().nth(3).unwrap();
    let redirect = h2.get(app.url(&format!("/{code}"))).send().await.unwrap();
    assert_eq!(
        (redirect.version(), redirect.status().as_u16()),
        (reqwest::Version::HTTP_2, 301)
    );
    assert_eq!(redirect.headers()["location"], long_url.as_str());
    let problem = h2.post(app.url("/shorten")).body("{").send().await.unwrap();
    assert_eq!(problem.status(), 415, "the same rules as over HTTP/1.1");
    // HTTP/1.1 on the same port, as before.
    let h1 = app.follow(code).await;
    assert_eq!(
        (h1.version(), h1.status().as_u16()),
        (reqwest::Version::HTTP_11, 301)
    );
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
    let server = Server::build_with_clock(config, Arc::new(ManualClock::starting_now()))
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
        negotiated_protocol(addr, certified.cert.pem().as_bytes(), &[b"h2", b"http/1.1"]).await,
        b"h2",
        "a client offering h2 gets it"
    );
    assert_eq!(
        negotiated_protocol(addr, certified.cert.pem().as_bytes(), &[b"http/1.1"]).await,
        b"http/1.1",
        "a client offering only HTTP/1.1 gets it"
    );
    // A client that picked h2 is answered over HTTP/2, with the same headers.
    let h2 = client(reqwest::tls::Version::TLS_1_3)
        .get(&url)
        .send()
        .await
        .expect("an HTTP/2 answer");
    assert_eq!(
        (h2.version(), h2.status().as_u16()),
        (reqwest::Version::HTTP_2, 200)
    );
    assert!(h2.headers().contains_key("strict-transport-security"));
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

/// The ALPN protocol the server picks for a client that offers `offered`.
async fn negotiated_protocol(
    addr: std::net::SocketAddr,
    ca_pem: &[u8],
    offered: &[&[u8]],
) -> Vec<u8> {
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
    config.alpn_protocols = offered.iter().map(|p| p.to_vec()).collect();
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
        let clock: Arc<ManualClock> = Arc::new(ManualClock::starting_now());
        let err = Server::build_with_clock(config, clock)
            .await
            .expect_err("refused");
        assert!(format!("{err:#}").contains("CORS"), "{err:#}");
    }
}
