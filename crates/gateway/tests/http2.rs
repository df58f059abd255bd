//! HTTP/2 on both sides: an h2c client through the gateway, and the gateway speaking h2c to a
//! backend that only accepts HTTP/2.

mod support;

use std::convert::Infallible;

use basis_gateway::backend::BackendSpec;
use bytes::Bytes;
use http::{Request, Response, Version};
use http_body_util::{BodyExt as _, Empty, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use support::{TestBackend, TestGateway, config};

/// A backend that speaks only HTTP/2 (prior knowledge) and answers with the version it saw.
async fn h2_only_backend() -> BackendSpec {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let spec = format!("http://{}", listener.local_addr().unwrap())
        .parse()
        .unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let service = service_fn(|request: Request<Incoming>| async move {
                let body = format!("{:?}", request.version());
                Ok::<_, Infallible>(Response::new(Full::new(Bytes::from(body))))
            });
            tokio::spawn(async move {
                let _ = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    spec
}

/// `GET path` over HTTP/2 with prior knowledge; the status and body.
async fn h2_get(address: std::net::SocketAddr, path: &str) -> (u16, String) {
    let stream = tokio::net::TcpStream::connect(address).await.unwrap();
    let (mut sender, connection) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .unwrap();
    tokio::spawn(connection);
    let request = Request::get(format!("http://{address}{path}"))
        .version(Version::HTTP_2)
        .body(Empty::<Bytes>::new())
        .unwrap();
    let response = sender.send_request(request).await.unwrap();
    let status = response.status().as_u16();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}

#[tokio::test]
async fn an_h2c_client_is_served_through_an_http1_backend() {
    let backend = TestBackend::start("a").await;
    let gateway = TestGateway::start(config(vec![backend.spec()])).await;
    let (status, body) = h2_get(gateway.address, "/over-h2").await;
    assert_eq!(status, 200);
    let seen: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(seen["path"], "/over-h2");
    assert_eq!(
        seen["host"],
        gateway.address.to_string(),
        "the authority became Host"
    );
}

#[tokio::test]
async fn with_upstream_http2_the_backend_is_reached_over_h2c() {
    let mut cfg = config(vec![h2_only_backend().await]);
    cfg.upstream_http2 = true;
    cfg.health_check = basis_gateway::health::HealthMode::Tcp;
    let gateway = TestGateway::start(cfg).await;
    let body = reqwest::get(gateway.url("/"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(body, "HTTP/2.0");
}
