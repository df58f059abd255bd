//! `basis gateway` in front of real `basis serve` processes: a backend killed under load and
//! a backend made slow, watched through the gateway's own status document.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

mod support;

use support::{Basis, get_json};

/// A port free right now, for the gateway's admin listener.
fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("address").port()
}

/// Requests each backend has received, by its address, from `/gateway/status`.
async fn served(client: &reqwest::Client, admin: &str) -> Vec<(String, u64)> {
    let status = get_json(client, &format!("http://{admin}/gateway/status")).await;
    status["backends"]
        .as_array()
        .expect("a backend list")
        .iter()
        .map(|b| {
            (
                b["name"].as_str().unwrap_or("").to_owned(),
                b["requests"].as_u64().unwrap_or(0),
            )
        })
        .collect()
}

/// Loops `GET path` through the gateway from `workers` tasks until `stop`; returns the
/// number of answers that were not 200.
fn load(
    client: &reqwest::Client,
    url: String,
    workers: usize,
    stop: &Arc<AtomicBool>,
) -> Vec<tokio::task::JoinHandle<u64>> {
    (0..workers)
        .map(|_| {
            let (client, url, stop) = (client.clone(), url.clone(), stop.clone());
            tokio::spawn(async move {
                let mut failed = 0;
                while !stop.load(Ordering::Relaxed) {
                    match client.get(&url).send().await {
                        Ok(r) if r.status() == 200 => {}
                        _ => failed += 1,
                    }
                }
                failed
            })
        })
        .collect()
}

#[tokio::test]
async fn a_backend_killed_under_load_fails_no_get_and_writes_resume_once_it_is_out() {
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let mut backends = Vec::new();
    for dir in &dirs {
        backends.push(Basis::serve(dir.path(), None, &[]).await);
    }
    let admin = format!("127.0.0.1:{}", free_port());
    let mut flags = vec![
        "--admin-listen",
        &admin,
        "--health-interval-ms",
        "100",
        "--eject-after",
        "3",
    ];
    let addresses: Vec<String> = backends
        .iter()
        .map(|b| format!("http://{}", b.address()))
        .collect();
    for address in &addresses {
        flags.extend(["--backend", address]);
    }
    let gateway = Basis::gateway(dirs[0].path(), &flags).await;
    let client = reqwest::Client::new();

    let stop = Arc::new(AtomicBool::new(false));
    let workers = load(&client, gateway.url("/healthz"), 6, &stop);
    let writers: Vec<_> = (0..2)
        .map(|w| {
            let (client, url, stop) = (client.clone(), gateway.url("/shorten"), stop.clone());
            tokio::spawn(async move {
                let mut failed = 0u64;
                for i in 0.. {
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    let body = json!({"longUrl": format!("https://example.com/{w}/{i}")});
                    match client.post(&url).json(&body).send().await {
                        Ok(r) if r.status() == 201 => {}
                        _ => failed += 1,
                    }
                }
                failed
            })
        })
        .collect();
    // Let traffic reach every backend, then kill one without warning.
    let started = Instant::now();
    while served(&client, &admin).await.iter().any(|(_, n)| *n < 20) {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "traffic never spread"
        );
    }
    let victim = backends.remove(1);
    victim.signal("KILL");
    let victim_name = &addresses[1];
    let out = until_out(&client, &admin, victim_name).await;
    assert!(out, "the killed backend is taken out");
    stop.store(true, Ordering::Relaxed);
    let mut failed = 0;
    for worker in workers {
        failed += worker.await.unwrap();
    }
    assert_eq!(
        failed, 0,
        "every GET was answered, retried on a live backend if needed"
    );
    let mut failed_writes = 0;
    for writer in writers {
        failed_writes += writer.await.unwrap();
    }
    // A write is not retried once sent: only one in flight on the victim when it died may
    // fail (at most one per writer); writes it refused were sent elsewhere.
    assert!(failed_writes <= 2, "{failed_writes} writes failed");

    // Writes (not retried once sent) succeed now that the dead backend gets none.
    for i in 0..30 {
        let response = client
            .post(gateway.url("/shorten"))
            .json(&json!({"longUrl": format!("https://example.com/after-kill/{i}")}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 201);
    }
    let status = get_json(&client, &format!("http://{admin}/gateway/status")).await;
    let victim_state = status["backends"][1].clone();
    assert!(
        victim_state["ejected"] == true || victim_state["health"] != "up",
        "{status}"
    );
}

/// Polls the status until `name` is ejected or failing checks (bounded, on a real readiness signal).
async fn until_out(client: &reqwest::Client, admin: &str, name: &str) -> bool {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        let status = get_json(client, &format!("http://{admin}/gateway/status")).await;
        let out = status["backends"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|b: &Value| b["name"] == name && (b["ejected"] == true || b["health"] != "up"));
        if out {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    false
}

#[tokio::test]
async fn a_backend_made_slow_gets_a_shrinking_share_under_p2c_ewma() {
    let dirs: Vec<_> = (0..2).map(|_| tempfile::tempdir().unwrap()).collect();
    let fast = Basis::serve(dirs[0].path(), None, &[]).await;
    let slow = Basis::serve(dirs[1].path(), None, &[]).await;
    let admin = format!("127.0.0.1:{}", free_port());
    let (fast_url, slow_url) = (
        format!("http://{}", fast.address()),
        format!("http://{}", slow.address()),
    );
    let gateway = Basis::gateway(
        dirs[0].path(),
        &[
            "--admin-listen",
            &admin,
            "--backend",
            &fast_url,
            "--backend",
            &slow_url,
            "--health-check",
            "off",
        ],
    )
    .await;
    let client = reqwest::Client::new();
    let share_of_slow = |before: &[(String, u64)], after: &[(String, u64)]| {
        let delta: Vec<u64> = before.iter().zip(after).map(|(b, a)| a.1 - b.1).collect();
        delta[1] as f64 / (delta[0] + delta[1]).max(1) as f64
    };

    let stop = Arc::new(AtomicBool::new(false));
    let workers = load(&client, gateway.url("/healthz"), 4, &stop);
    // Warm-up: a cold backend's first answers are slow (connections, caches), and the
    // latency estimate would hold that against it while the healthy share is measured.
    tokio::time::sleep(Duration::from_millis(750)).await;
    // A measured phase of load (this is load duration, not waiting for a server).
    let before = served(&client, &admin).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let even = served(&client, &admin).await;
    let healthy_share = share_of_slow(&before, &even);

    // Slow it down: stopped 150 ms out of every 200 ms for two seconds.
    let end = Instant::now() + Duration::from_secs(2);
    while Instant::now() < end {
        slow.signal("STOP");
        tokio::time::sleep(Duration::from_millis(150)).await;
        slow.signal("CONT");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let after = served(&client, &admin).await;
    stop.store(true, Ordering::Relaxed);
    for worker in workers {
        assert_eq!(worker.await.unwrap(), 0, "a slow backend still answers");
    }
    let slow_share = share_of_slow(&even, &after);
    eprintln!("slow backend's share: {healthy_share:.2} before, {slow_share:.2} while slow");
    assert!(
        healthy_share > 0.25,
        "both backends share the load at first: {healthy_share}"
    );
    assert!(
        slow_share < healthy_share / 2.0 && slow_share < 0.15,
        "slow share {slow_share} (was {healthy_share})"
    );
}

#[tokio::test]
async fn an_invalid_configuration_file_stops_the_start_with_its_line_and_reason() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("gateway.toml");
    std::fs::write(
        &file,
        "[[route]]\nname = \"api\"\nbackends = [\"ftp://10.0.0.1:21\"]\n",
    )
    .unwrap();
    let output = support::basis(dir.path(), None)
        .args(["gateway", "--listen", "127.0.0.1:0", "--config"])
        .arg(&file)
        .output()
        .await
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("line 3") && stderr.contains("scheme `ftp`"),
        "{stderr}"
    );
}

#[tokio::test]
async fn sighup_reloads_the_routes_and_the_process_survives_a_bad_file() {
    let dirs: Vec<_> = (0..2).map(|_| tempfile::tempdir().unwrap()).collect();
    let first = Basis::serve(dirs[0].path(), None, &[]).await;
    let second = Basis::serve(dirs[1].path(), None, &[]).await;
    let file = dirs[0].path().join("gateway.toml");
    let route = |backend: &Basis| {
        format!(
            "[[route]]\nname = \"all\"\nbackends = [\"http://{}\"]\n",
            backend.address()
        )
    };
    std::fs::write(&file, route(&first)).unwrap();
    let admin = format!("127.0.0.1:{}", free_port());
    let file_arg = file.display().to_string();
    let gateway = Basis::gateway(
        dirs[0].path(),
        &["--admin-listen", &admin, "--config", &file_arg],
    )
    .await;
    let client = reqwest::Client::new();
    let names = |status: Value| -> Vec<String> {
        status["backends"]
            .as_array()
            .unwrap()
            .iter()
            .map(|b| b["name"].as_str().unwrap().to_owned())
            .collect()
    };
    let status_url = format!("http://{admin}/gateway/status");
    assert_eq!(
        names(get_json(&client, &status_url).await),
        [format!("http://{}", first.address())]
    );

    std::fs::write(&file, "[[route]]\nname = 7\n").unwrap();
    gateway.signal("HUP");
    std::fs::write(&file, route(&second)).unwrap();
    gateway.signal("HUP");
    let want = vec![format!("http://{}", second.address())];
    let deadline = Instant::now() + Duration::from_secs(10);
    while names(get_json(&client, &status_url).await) != want {
        assert!(Instant::now() < deadline, "the reload never happened");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let response = client.get(gateway.url("/healthz")).send().await.unwrap();
    assert_eq!(
        response.status(),
        200,
        "the gateway survived the bad file and serves"
    );
}
