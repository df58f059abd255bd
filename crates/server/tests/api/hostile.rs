//! Hostile and careless clients: bodies sent before the answer is read, slowloris, heads
//! too large, too many connections, overload, and requests framed two ways.
//!
//! These are about the transport, which is the same on both engines: they run on SQLite.

use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use crate::helpers::{Engine, TestApp};

/// What a raw HTTP/1.1 client read before the server closed or `wait` passed.
fn exchange(addr: SocketAddr, request: &[u8], wait: Duration) -> String {
    let mut stream = TcpStream::connect(addr).expect("connect");
    stream.set_read_timeout(Some(wait)).unwrap();
    stream
        .write_all(request)
        .expect("the whole request is written");
    read_all(&mut stream)
}

/// Reads until the server closes, the read times out or the connection fails.
fn read_all(stream: &mut TcpStream) -> String {
    let mut answer = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => answer.extend_from_slice(&buf[..n]),
        }
    }
    String::from_utf8_lossy(&answer).into_owned()
}

fn status_of(answer: &str) -> Option<u16> {
    answer.split(' ').nth(1)?.parse().ok()
}

/// A request head for a JSON POST with `length` body bytes.
fn post_head(path: &str, length: usize) -> String {
    format!(
        "POST {path} HTTP/1.1\r\nHost: basis\r\nContent-Type: application/json\r\nContent-Length: {length}\r\n\r\n"
    )
}

async fn spawn_with(tweak: impl FnOnce(&mut basis_server::Config)) -> TestApp {
    TestApp::spawn_with(&Engine::Sqlite, tweak).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_writes_an_over_limit_body_before_reading_receives_its_413() {
    let app = spawn_with(|_| {}).await;
    // Far past the 64 KiB limit and the kernel's socket buffers: without lingering close
    // the server's close resets the connection while the client is still writing.
    let body = vec![b' '; 4 * 1024 * 1024];
    let addr = app.addr;
    let answer = tokio::task::spawn_blocking(move || {
        let mut stream = TcpStream::connect(addr).expect("connect");
        stream
            .set_read_timeout(Some(Duration::from_secs(20)))
            .unwrap();
        stream
            .write_all(post_head("/shorten", body.len()).as_bytes())
            .unwrap();
        stream
            .write_all(&body)
            .expect("the server keeps reading while the client writes");
        read_all(&mut stream)
    })
    .await
    .unwrap();
    assert_eq!(status_of(&answer), Some(413), "{answer:.300}");
    assert!(answer.contains("application/problem+json"));
}

/// The same with Python's `http.client`, which sends the whole body before reading.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pythons_http_client_receives_its_413() {
    let python = std::process::Command::new("python3")
        .arg("--version")
        .output();
    if !python.is_ok_and(|out| out.status.success()) {
        let _ = writeln!(std::io::stderr(), "skipped: python3 is not installed");
        return;
    }
    let app = spawn_with(|_| {}).await;
    let script = format!(
        "import http.client\n\
         c = http.client.HTTPConnection('127.0.0.1', {port}, timeout=20)\n\
         c.request('POST', '/shorten', body=b'x' * (4 * 1024 * 1024), headers={{'Content-Type': 'application/json'}})\n\
         r = c.getresponse()\n\
         print(r.status, r.getheader('Content-Type'))\n",
        port = app.addr.port()
    );
    let out = tokio::process::Command::new("python3")
        .arg("-c")
        .arg(script)
        .output()
        .await
        .expect("python3 runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(stdout.trim(), "413 application/problem+json");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slowloris_client_is_cut_off_while_others_are_served() {
    let app = spawn_with(|config| config.conn.header_timeout_ms = 300).await;
    let addr = app.addr;
    let slow = tokio::task::spawn_blocking(move || {
        let mut stream = TcpStream::connect(addr).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_millis(50)))
            .unwrap();
        stream
            .write_all(b"GET /healthz HTTP/1.1\r\nHost: basis\r\n")
            .unwrap();
        let started = std::time::Instant::now();
        // One header byte at a time, never finishing the head.
        for _ in 0..400 {
            if stream.write_all(b"X").is_err() {
                break;
            }
            let mut buf = [0u8; 64];
            match stream.read(&mut buf) {
                Ok(0) => return Some(started.elapsed()),
                Ok(_) => return None,
                Err(err) if err.kind() == std::io::ErrorKind::WouldBlock => continue,
                Err(err) if err.kind() == std::io::ErrorKind::TimedOut => continue,
                Err(_) => return Some(started.elapsed()),
            }
        }
        None
    });
    // Meanwhile, everyone else is served.
    for _ in 0..5 {
        assert_eq!(app.get("/healthz").await.status(), 200);
    }
    let cut = slow
        .await
        .unwrap()
        .expect("the slow client is disconnected");
    assert!(cut < Duration::from_secs(10), "cut off after {cut:?}");
    assert_eq!(app.get("/healthz").await.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_heads_and_too_many_headers_get_431() {
    let app = spawn_with(|config| {
        config.conn.max_header_bytes = 8 * 1024;
        config.conn.max_headers = 20;
    })
    .await;
    let addr = app.addr;
    let wait = Duration::from_secs(5);
    let (big, many, fine) = tokio::task::spawn_blocking(move || {
        let big = format!(
            "GET /healthz HTTP/1.1\r\nHost: basis\r\nX-Big: {}\r\n\r\n",
            "a".repeat(9 * 1024)
        );
        let many = format!(
            "GET /healthz HTTP/1.1\r\nHost: basis\r\n{}\r\n",
            (0..30)
                .map(|i| format!("X-H{i}: v\r\n"))
                .collect::<String>()
        );
        let fine = format!(
            "GET /healthz HTTP/1.1\r\nHost: basis\r\nConnection: close\r\n{}\r\n",
            (0..10)
                .map(|i| format!("X-H{i}: v\r\n"))
                .collect::<String>()
        );
        (
            exchange(addr, big.as_bytes(), wait),
            exchange(addr, many.as_bytes(), wait),
            exchange(addr, fine.as_bytes(), wait),
        )
    })
    .await
    .unwrap();
    assert_eq!(status_of(&big), Some(431), "{big:.200}");
    assert_eq!(status_of(&many), Some(431), "{many:.200}");
    assert_eq!(status_of(&fine), Some(200), "{fine:.200}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_past_the_cap_wait_until_one_closes() {
    let app = spawn_with(|config| config.conn.max_connections = 2).await;
    let addr = app.addr;
    tokio::task::spawn_blocking(move || {
        let request = b"GET /healthz HTTP/1.1\r\nHost: basis\r\n\r\n";
        let open = |wait| {
            let mut stream = TcpStream::connect(addr).unwrap();
            stream.set_read_timeout(Some(wait)).unwrap();
            stream.write_all(request).unwrap();
            stream
        };
        let answered = |stream: &mut TcpStream| {
            let mut buf = [0u8; 1024];
            matches!(stream.read(&mut buf), Ok(n) if n > 0 && buf.starts_with(b"HTTP/1.1 200"))
        };
        let mut first = open(Duration::from_secs(5));
        let mut second = open(Duration::from_secs(5));
        assert!(answered(&mut first) && answered(&mut second));
        // Both stay open (keep-alive): a third is accepted by the kernel but not served.
        let mut third = open(Duration::from_millis(300));
        assert!(!answered(&mut third), "served past the cap");
        drop(first);
        third
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        assert!(answered(&mut third), "served once a connection closed");
        drop(second);
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_the_concurrency_limit_requests_are_shed_with_503_and_retry_after() {
    let app = spawn_with(|config| config.conn.max_in_flight = 2).await;
    let body = br#"{"longUrl": "https://example.com/shed"}"#;
    // Two requests in progress: their heads are sent, their bodies not yet.
    let mut waiting: Vec<TcpStream> = (0..2)
        .map(|_| {
            let mut stream = TcpStream::connect(app.addr).unwrap();
            stream
                .write_all(post_head("/shorten", body.len()).as_bytes())
                .unwrap();
            stream
        })
        .collect();
    // Probed with the cheapest route: a probe admitted before the two above are counted
    // must not take the whole wait on a loaded machine.
    let shed = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            let response = app.get("/healthz").await;
            if response.status() == 503 {
                break response;
            }
            tokio::task::yield_now().await;
        }
    })
    .await
    .expect("a request is shed while two are in progress");
    assert_eq!(shed.headers()["retry-after"], "1");
    assert_eq!(shed.headers()["content-type"], "application/problem+json");

    let answers = tokio::task::spawn_blocking(move || {
        waiting
            .iter_mut()
            .map(|stream| {
                stream.write_all(body).unwrap();
                stream
                    .set_read_timeout(Some(Duration::from_secs(5)))
                    .unwrap();
                let mut buf = [0u8; 1024];
                let n = stream.read(&mut buf).unwrap();
                status_of(&String::from_utf8_lossy(&buf[..n]))
            })
            .collect::<Vec<_>>()
    })
    .await
    .unwrap();
    assert_eq!(answers, [Some(201), Some(201)], "admitted requests finish");
    assert_eq!(app.get("/openapi.json").await.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_framed_by_both_content_length_and_transfer_encoding_get_400() {
    let app = spawn_with(|_| {}).await;
    let addr = app.addr;
    let wait = Duration::from_secs(5);
    let smuggled = "GET /admin/audit HTTP/1.1\r\nHost: basis\r\n\r\n";
    let attempts = [
        // CL.TE: a front end trusting the length would pass the smuggled request along.
        format!(
            "POST /shorten HTTP/1.1\r\nHost: basis\r\nContent-Length: {}\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n{smuggled}",
            5 + smuggled.len()
        ),
        // TE.CL, headers in the other order.
        format!(
            "POST /shorten HTTP/1.1\r\nHost: basis\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n{:x}\r\n{smuggled}\r\n0\r\n\r\n",
            smuggled.len()
        ),
        // After an ordinary request on the same connection.
        "GET /healthz HTTP/1.1\r\nHost: basis\r\n\r\nPOST /shorten HTTP/1.1\r\nHost: basis\r\ncontent-length: 5\r\ntransfer-encoding: chunked\r\n\r\n0\r\n\r\n".to_owned(),
    ];
    let answers = tokio::task::spawn_blocking(move || {
        attempts
            .iter()
            .map(|request| exchange(addr, request.as_bytes(), wait))
            .collect::<Vec<_>>()
    })
    .await
    .unwrap();
    for (i, answer) in answers.iter().enumerate() {
        let statuses: Vec<&str> = answer
            .match_indices("HTTP/1.1 ")
            .map(|(at, _)| &answer[at + 9..at + 12])
            .collect();
        let expected: &[&str] = if i == 2 { &["200", "400"] } else { &["400"] };
        assert_eq!(statuses, expected, "attempt {i}: {answer:.600}");
        assert!(answer.contains("application/problem+json"));
    }
    // Ambiguous framing hyper refuses itself.
    let refused = tokio::task::spawn_blocking(move || {
        [
            "POST /shorten HTTP/1.1\r\nHost: basis\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nabcdef",
            "POST /shorten HTTP/1.1\r\nHost: basis\r\nTransfer-Encoding: gzip\r\n\r\n",
        ]
        .map(|request| status_of(&exchange(addr, request.as_bytes(), wait)))
    })
    .await
    .unwrap();
    assert_eq!(refused, [Some(400), Some(400)]);
}
