//! WebSocket-style upgrades through the gateway, against a real hyper server that switches
//! protocols and then echoes bytes.

mod support;

use std::convert::Infallible;
use std::time::Duration;

use basis_gateway::backend::BackendSpec;
use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use support::{TestGateway, config};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

/// Answers `Upgrade: echo` with 101, then echoes every byte upper-cased.
async fn upgrading_backend() -> BackendSpec {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let spec = format!("http://{}", listener.local_addr().unwrap())
        .parse()
        .unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let service = service_fn(|mut request: Request<Incoming>| async move {
                let mut response = Response::new(Full::new(Bytes::new()));
                if request
                    .headers()
                    .get("upgrade")
                    .is_some_and(|v| v == "echo")
                {
                    let upgraded = hyper::upgrade::on(&mut request);
                    tokio::spawn(async move {
                        let mut io = TokioIo::new(upgraded.await.unwrap());
                        let mut buffer = [0u8; 64];
                        while let Ok(n) = io.read(&mut buffer).await {
                            if n == 0
                                || io
                                    .write_all(&buffer[..n].to_ascii_uppercase())
                                    .await
                                    .is_err()
                            {
                                break;
                            }
                        }
                    });
                    *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
                    response
                        .headers_mut()
                        .insert("upgrade", "echo".parse().unwrap());
                    response
                        .headers_mut()
                        .insert("connection", "upgrade".parse().unwrap());
                }
                Ok::<_, Infallible>(response)
            });
            tokio::spawn(async move {
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .with_upgrades()
                    .await;
            });
        }
    });
    spec
}

#[tokio::test]
async fn an_upgrade_is_switched_through_and_bytes_flow_both_ways() {
    let gateway = TestGateway::start(config(vec![upgrading_backend().await])).await;
    let mut stream = tokio::net::TcpStream::connect(gateway.address)
        .await
        .unwrap();
    stream
        .write_all(b"GET /ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n")
        .await
        .unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        let n = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut byte))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(n, 1, "the head ends before the connection does");
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head).to_ascii_lowercase();
    assert!(head.starts_with("http/1.1 101"), "{head}");
    assert!(head.contains("upgrade: echo"), "{head}");
    stream.write_all(b"hello").await.unwrap();
    let mut echoed = [0u8; 5];
    tokio::time::timeout(Duration::from_secs(5), stream.read_exact(&mut echoed))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&echoed, b"HELLO");
    assert_eq!(
        gateway.status().await["backends"][0]["inFlight"],
        1,
        "open while upgraded"
    );
}
