//! A broker that goes silent: TCP stays open, nothing comes back (a broker still booting, a
//! network dropping packets). Every operation must fail within its timeout rather than hang,
//! and the backend must work again once the broker answers.

use std::sync::Arc;
use std::time::Duration;

use basis_queue::amqp::AmqpQueue;
use basis_queue::{Backend, Error, NewJob, SystemClock};
use serde_json::json;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use super::{amqp_url, config, namespace};

/// A TCP proxy to the broker that forwards while `flowing` is true and otherwise holds its
/// connections open without passing a byte either way.
struct Proxy {
    url: String,
    flowing: watch::Sender<bool>,
}

impl Proxy {
    async fn start(broker_url: &str) -> Self {
        let parsed = url::Url::parse(broker_url).expect("a broker URL");
        let upstream = format!(
            "{}:{}",
            parsed.host_str().expect("a host"),
            parsed.port().unwrap_or(5672)
        );
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let mut url = parsed.clone();
        url.set_host(Some("127.0.0.1")).expect("a host");
        url.set_port(Some(listener.local_addr().expect("an address").port()))
            .expect("a port");
        let (flowing, _) = watch::channel(true);
        let gate = flowing.clone();
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let (gate, upstream) = (gate.subscribe(), upstream.clone());
                tokio::spawn(async move {
                    let open = *gate.borrow();
                    if !open {
                        // Accepted, never answered: hold it until the test ends.
                        return hold(client).await;
                    }
                    let Ok(server) = TcpStream::connect(&upstream).await else {
                        return;
                    };
                    let (client_read, client_write) = client.into_split();
                    let (server_read, server_write) = server.into_split();
                    tokio::join!(
                        pump(client_read, server_write, gate.clone()),
                        pump(server_read, client_write, gate)
                    );
                });
            }
        });
        Self {
            url: url.to_string(),
            flowing,
        }
    }

    fn go_silent(&self) {
        self.flowing.send_replace(false);
    }
}

/// Copies `from` to `to` while the gate is open; once it closes, reads nothing more (the
/// bytes stay in the kernel) and holds both ends.
async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    gate: watch::Receiver<bool>,
) {
    let mut buf = vec![0u8; 16 * 1024];
    let mut closed = gate.clone();
    loop {
        tokio::select! {
            read = from.read(&mut buf) => match read {
                Ok(0) | Err(_) => return,
                Ok(n) if is_open(&gate) => {
                    if to.write_all(&buf[..n]).await.is_err() {
                        return;
                    }
                }
                Ok(_) => break,
            },
            () = async { let _ = closed.wait_for(|open| !*open).await; } => break,
        }
    }
    hold((from, to)).await;
}

fn is_open(gate: &watch::Receiver<bool>) -> bool {
    *gate.borrow()
}

/// Keeps `what` (open sockets) alive until the test ends.
async fn hold<T>(what: T) {
    let _held = what;
    std::future::pending::<()>().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_broker_fails_operations_within_their_timeouts_instead_of_hanging() {
    let Some(url) = amqp_url() else { return };
    let proxy = Proxy::start(&url).await;
    let ns = namespace();
    let mut settings = config(&ns);
    settings.connect_timeout = Duration::from_millis(500);
    settings.confirm_timeout = Duration::from_millis(500);
    let q = AmqpQueue::connect_with(&proxy.url, Arc::new(SystemClock), settings.clone())
        .await
        .expect("connect through the proxy");
    q.enqueue(NewJob::new("work", "n", json!(1)))
        .await
        .expect("an enqueue while the broker answers");

    proxy.go_silent();
    // A publish on the open connection: no confirm comes.
    let silent = tokio::time::timeout(
        Duration::from_secs(5),
        q.enqueue(NewJob::new("work", "n", json!(2))),
    )
    .await
    .expect("the enqueue gave up by itself");
    assert!(matches!(silent, Err(Error::Unavailable(_))), "{silent:?}");
    // A new connection: the TCP handshake succeeds, the AMQP one never answers.
    let connect = tokio::time::timeout(
        Duration::from_secs(5),
        AmqpQueue::connect_with(&proxy.url, Arc::new(SystemClock), settings),
    )
    .await
    .expect("the connect gave up by itself");
    assert!(
        matches!(connect, Err(Error::Unavailable(_))),
        "{:?}",
        connect.err()
    );

    // Straight to the broker, the first job is there.
    let direct = super::backend(&url, &ns).await;
    let job = super::claim_one(&direct, "work", super::LEASE).await;
    assert_eq!(job.payload, json!(1));
    direct.complete(&job.lease, None).await.expect("complete");
    direct.teardown().await.expect("teardown");
}
