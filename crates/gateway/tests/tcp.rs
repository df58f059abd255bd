//! L4 mode: raw TCP connections balanced over real TCP servers, with TCP health checks.

mod support;

use std::time::Duration;

use basis_gateway::Gateway;
use basis_gateway::backend::BackendSpec;
use basis_gateway::balance::Algorithm;
use basis_gateway::config::Mode;
use basis_testkit::eventually;
use support::{TestGateway, config};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};

/// A TCP server that answers each line with `name:line`; returns its address and task.
async fn echo(name: &'static str) -> (BackendSpec, tokio::task::JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let spec = format!("tcp://{}", listener.local_addr().unwrap())
        .parse()
        .unwrap();
    let task = tokio::spawn(async move {
        loop {
            let Ok((mut stream, _)) = listener.accept().await else {
                continue;
            };
            tokio::spawn(async move {
                let mut buffer = [0u8; 1024];
                while let Ok(n) = stream.read(&mut buffer).await {
                    if n == 0 {
                        break;
                    }
                    let mut reply = format!("{name}:").into_bytes();
                    reply.extend_from_slice(&buffer[..n]);
                    if stream.write_all(&reply).await.is_err() {
                        break;
                    }
                }
            });
        }
    });
    (spec, task)
}

async fn exchange(gateway: &TestGateway, text: &str) -> String {
    exchange_at(gateway.address, text).await
}

async fn exchange_at(address: std::net::SocketAddr, text: &str) -> String {
    let mut stream = TcpStream::connect(address).await.unwrap();
    stream.write_all(text.as_bytes()).await.unwrap();
    let mut buffer = vec![0u8; 256];
    let n = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buffer))
        .await
        .expect("an answer in time")
        .unwrap_or(0);
    String::from_utf8_lossy(&buffer[..n]).into_owned()
}

#[tokio::test]
async fn tcp_connections_are_spread_over_backends_and_bytes_pass_untouched() {
    let ((a, _ta), (b, _tb)) = (echo("a").await, echo("b").await);
    let mut cfg = config(vec![a, b]);
    cfg.mode = Mode::Tcp;
    cfg.algorithm = Algorithm::RoundRobin;
    let gateway = TestGateway::start(cfg).await;
    let first = exchange(&gateway, "ping").await;
    let second = exchange(&gateway, "ping").await;
    let mut got = [first, second];
    got.sort();
    assert_eq!(got, ["a:ping", "b:ping"]);
}

#[tokio::test]
async fn a_dead_tcp_backend_is_skipped_at_connect_and_marked_down_by_checks() {
    let ((a, _ta), (dead, dead_task)) = (echo("a").await, echo("dead").await);
    dead_task.abort();
    let _ = dead_task.await;
    let mut cfg = config(vec![dead, a]);
    cfg.mode = Mode::Tcp;
    cfg.algorithm = Algorithm::RoundRobin;
    let gateway = TestGateway::start(cfg).await;
    for _ in 0..4 {
        assert_eq!(exchange(&gateway, "x").await, "a:x");
    }
    let down = eventually(Duration::from_secs(5), || async {
        gateway.status().await["backends"][0]["health"] == "down"
    })
    .await;
    assert!(down, "{}", gateway.status().await);
}

fn tcp_routes(pg: &BackendSpec, redis: &BackendSpec, redis_listen: &str) -> String {
    format!(
        "[[route]]\nname = \"pg\"\nlisten = \"127.0.0.1:0\"\nbackends = [\"{}\"]\n\n\
         [[route]]\nname = \"redis\"\nlisten = \"{redis_listen}\"\nbackends = [\"{}\"]\n",
        pg.name(),
        redis.name()
    )
}

#[tokio::test]
async fn each_tcp_route_has_its_own_listener_and_backends_and_a_reload_keeps_the_listeners() {
    let ((a, _ta), (b, _tb)) = (echo("a").await, echo("b").await);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("gateway.toml");
    std::fs::write(&file, tcp_routes(&a, &b, "127.0.0.1:0")).unwrap();
    let mut cfg = config(Vec::new());
    cfg.mode = Mode::Tcp;
    cfg.config = Some(file.clone());
    let gateway = Gateway::bind(cfg).await.unwrap();
    let pg = gateway.route_addr("pg").unwrap();
    let redis = gateway.route_addr("redis").unwrap();
    assert_ne!(pg, redis);
    let control = gateway.control();
    tokio::spawn(gateway.run(std::future::pending()));
    assert_eq!(exchange_at(pg, "x").await, "a:x");
    assert_eq!(exchange_at(redis, "y").await, "b:y");

    // New backends for the same listeners: taken by the next connections.
    std::fs::write(&file, tcp_routes(&b, &a, "127.0.0.1:0")).unwrap();
    control.reload().unwrap();
    assert_eq!(exchange_at(pg, "x").await, "b:x");
    assert_eq!(exchange_at(redis, "y").await, "a:y");

    // A listener cannot move without a restart: refused, the running routes stay.
    std::fs::write(&file, tcp_routes(&a, &b, "127.0.0.1:1")).unwrap();
    let err = control.reload().unwrap_err();
    assert!(err.reason.contains("only on a restart"), "{err}");
    assert_eq!(exchange_at(pg, "x").await, "b:x");
}
