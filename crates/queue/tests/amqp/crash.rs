//! A worker process killed with SIGKILL: its jobs come back, none lost.

use std::process::Stdio;

use basis_queue::{Backend, NewJob};
use serde_json::json;
use tokio::io::{AsyncBufReadExt, BufReader};

use super::{LEASE, amqp_url, backend, claim_n, namespace};

const CHILD_NS: &str = "BASIS_AMQP_CRASH_CHILD_NS";

#[tokio::test]
async fn a_worker_killed_with_sigkill_loses_nothing() {
    let Some(url) = amqp_url() else { return };
    let ns = namespace();
    let q = backend(&url, &ns).await;
    for i in 0..5 {
        q.enqueue(NewJob::new("work", "n", json!(i)))
            .await
            .expect("enqueue");
    }
    let exe = std::env::current_exe().expect("test binary");
    let mut child = tokio::process::Command::new(exe)
        .args([
            "--exact",
            "crash::worker_process_that_gets_killed",
            "--ignored",
            "--nocapture",
        ])
        .env(CHILD_NS, &ns)
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn the worker process");
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let mut claimed = None;
    while let Some(line) = lines.next_line().await.expect("read the child") {
        if let Some(n) = line.strip_prefix("claimed ") {
            claimed = n.trim().parse::<usize>().ok();
            break;
        }
    }
    assert_eq!(claimed, Some(5), "the worker held every job before it died");
    child.start_kill().expect("SIGKILL");
    child.wait().await.expect("reaped");

    let mut back = claim_n(&q, "work", LEASE, 5).await;
    back.sort_by_key(|j| j.payload.as_i64());
    let payloads: Vec<_> = back.iter().map(|j| j.payload.clone()).collect();
    assert_eq!(payloads, (0..5).map(|i| json!(i)).collect::<Vec<_>>());
    assert!(
        back.iter().all(|j| j.attempt == 1),
        "a return by a killed worker is not counted as an attempt"
    );
    for job in &back {
        q.complete(&job.lease, None).await.expect("complete");
    }
    q.teardown().await.expect("teardown");
}

/// The child side of the test above: claims everything, reports, and hangs until killed.
#[tokio::test]
#[ignore = "run as a child process by a_worker_killed_with_sigkill_loses_nothing"]
async fn worker_process_that_gets_killed() {
    let (Some(url), Ok(ns)) = (amqp_url(), std::env::var(CHILD_NS)) else {
        return;
    };
    let q = backend(&url, &ns).await;
    let held = claim_n(&q, "work", LEASE, 5).await;
    println!("claimed {}", held.len());
    std::future::pending::<()>().await;
}
