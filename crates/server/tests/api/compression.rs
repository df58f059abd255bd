//! Compression: JSON and HTML compressed by `Accept-Encoding` with `Vary`, never a
//! redirect or a tiny body.

use std::io::Read as _;

use serde_json::{Value, json};

use crate::helpers::{Engine, TestApp};
use crate::on_both_engines;

on_both_engines!(
    json_is_compressed_with_the_encoding_the_client_prefers,
    redirects_tiny_bodies_and_clients_without_accept_encoding_get_plain_bodies,
);

/// The body of a compressed answer, decoded (the other tests' compressed reads use it too).
pub fn decode(encoding: &str, bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    match encoding {
        "gzip" => {
            flate2::read::GzDecoder::new(bytes)
                .read_to_end(&mut out)
                .expect("valid gzip");
        }
        "br" => {
            brotli::Decompressor::new(bytes, 4096)
                .read_to_end(&mut out)
                .expect("valid brotli");
        }
        "zstd" => out = zstd::decode_all(bytes).expect("valid zstd"),
        other => panic!("unexpected encoding {other}"),
    }
    out
}

async fn get_with(app: &TestApp, path: &str, accept: Option<&str>) -> reqwest::Response {
    let mut request = app.client.get(app.url(path));
    if let Some(accept) = accept {
        request = request.header("accept-encoding", accept);
    }
    request.send().await.expect("a response")
}

async fn json_is_compressed_with_the_encoding_the_client_prefers(engine: Engine) {
    let app = TestApp::spawn(&engine).await;
    let plain = get_with(&app, "/openapi.json", None).await;
    assert!(plain.headers().get("content-encoding").is_none());
    assert_eq!(plain.headers()["vary"], "accept-encoding");
    let document: Value = plain.json().await.unwrap();

    for (accept, chosen) in [
        ("gzip", "gzip"),
        ("br", "br"),
        ("zstd", "zstd"),
        ("gzip;q=0.5, br;q=0.9, zstd;q=0.1", "br"),
        ("identity;q=0.1, zstd", "zstd"),
    ] {
        let response = get_with(&app, "/openapi.json", Some(accept)).await;
        assert_eq!(response.status(), 200);
        assert_eq!(response.headers()["content-encoding"], chosen, "{accept}");
        assert_eq!(response.headers()["vary"], "accept-encoding");
        let bytes = response.bytes().await.unwrap();
        let decoded: Value = serde_json::from_slice(&decode(chosen, &bytes)).unwrap();
        assert_eq!(decoded, document, "{chosen} decodes to the same document");
        assert!(
            bytes.len() * 3 < serde_json::to_vec(&document).unwrap().len(),
            "{chosen} shrinks JSON at least threefold"
        );
    }

    // A resource's own JSON, when it is big enough.
    let long_url = format!("https://example.com/{}", "compressed/".repeat(100));
    let link = app.create(json!({"longUrl": long_url})).await;
    let code = link["shortCode"].as_str().unwrap();
    let read = get_with(&app, &format!("/links/{code}"), Some("gzip")).await;
    assert_eq!(read.status(), 200);
    assert_eq!(read.headers()["content-encoding"], "gzip");
    let decoded: Value =
        serde_json::from_slice(&decode("gzip", &read.bytes().await.unwrap())).unwrap();
    assert_eq!(decoded["longUrl"], long_url);
}

async fn redirects_tiny_bodies_and_clients_without_accept_encoding_get_plain_bodies(
    engine: Engine,
) {
    let app = TestApp::spawn(&engine).await;
    let link = app
        .create(json!({"longUrl": format!("https://example.com/{}", "long-path/".repeat(150))}))
        .await;
    let code = link["shortCode"].as_str().unwrap();
    let redirect = app
        .client
        .get(app.url(&format!("/{code}")))
        .header("accept-encoding", "gzip, br, zstd")
        .send()
        .await
        .unwrap();
    assert!(redirect.status().is_redirection());
    assert!(redirect.headers().get("content-encoding").is_none());
    assert!(redirect.headers().get("vary").is_none_or(|v| {
        !v.to_str()
            .unwrap()
            .to_ascii_lowercase()
            .contains("accept-encoding")
    }));

    let tiny = get_with(&app, "/healthz", Some("gzip, br, zstd")).await;
    assert_eq!(tiny.status(), 200);
    assert!(
        tiny.headers().get("content-encoding").is_none(),
        "a tiny body is sent as is"
    );

    let refused = get_with(&app, "/openapi.json", Some("identity")).await;
    assert!(refused.headers().get("content-encoding").is_none());
}
