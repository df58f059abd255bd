//! The job queue as an operator runs it: `basis serve --workers off` beside a separate
//! `basis worker` (with its probes and metrics, stopped by SIGTERM), and the dead letters
//! through `basis queue dlq`.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use serde_json::{Value, json};

mod support;

use support::{
    Basis, basis, client, fresh_postgres_database, get_json, postgres_admin_url, sign_up,
};

async fn postgres_database() -> Option<String> {
    Some(fresh_postgres_database(&postgres_admin_url()?).await)
}

/// Polls `check` every 50 ms for at most 30 s.
async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    for _ in 0..600 {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("gave up waiting for {what}");
}

async fn a_separate_worker_stores_the_clicks_a_server_without_workers_counted(
    database_url: Option<String>,
) {
    let dir = tempfile::tempdir().unwrap();
    let url = database_url.as_deref();
    let client = client();
    let server = Basis::serve(dir.path(), url, &["--workers", "off"]).await;
    let link: Value = client
        .post(server.url("/shorten"))
        .json(&json!({"longUrl": "https://example.com/worker"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let code = link["shortCode"].as_str().unwrap().to_owned();
    for _ in 0..20 {
        let response = client
            .get(server.url(&format!("/{code}")))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 301);
    }
    // The server enqueues its last batch on the way out; nobody has applied it yet.
    assert!(server.terminate().await.success());

    let worker = Basis::worker_with_ops(dir.path(), url).await;
    let server = Basis::serve(dir.path(), url, &["--workers", "off"]).await;
    let read = server.url(&format!("/links/{code}"));
    eventually("the worker to store the clicks", || async {
        get_json(&client, &read).await["clickCount"] == 20
    })
    .await;
    // The worker's own port: probes, and the jobs it ran in its metrics.
    for (path, status) in [("/healthz", "ok"), ("/readyz", "ready")] {
        let health = get_json(&client, &worker.url(path)).await;
        assert_eq!(health["status"], status, "{path}");
    }
    let metrics = client
        .get(worker.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let processed = metrics
        .lines()
        .find(|l| {
            l.starts_with("queue_jobs_total{")
                && l.contains(r#"queue="clicks""#)
                && l.contains(r#"outcome="processed""#)
        })
        .unwrap_or_else(|| panic!("no processed click jobs in:\n{metrics}"));
    let count: f64 = processed.rsplit(' ').next().unwrap().parse().unwrap();
    assert!(count >= 1.0, "{processed}");
    assert!(metrics.contains("basis_db_pool_connections"), "{metrics}");
    let ops = worker.url("/healthz");
    let status = worker.terminate().await;
    assert!(
        status.success(),
        "a worker stops cleanly on SIGTERM, got {status}"
    );
    assert!(
        client.get(&ops).send().await.is_err(),
        "the port closes with the worker"
    );
    assert!(server.terminate().await.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_separate_worker_stores_the_clicks_a_server_without_workers_counted_on_sqlite() {
    a_separate_worker_stores_the_clicks_a_server_without_workers_counted(None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_separate_worker_stores_the_clicks_a_server_without_workers_counted_on_postgres() {
    if let Some(url) = postgres_database().await {
        a_separate_worker_stores_the_clicks_a_server_without_workers_counted(Some(url)).await;
    }
}

/// Runs `basis queue …` and returns its standard output, asserting success.
async fn queue_cli(data_dir: &Path, args: &[&str]) -> String {
    let output = basis(data_dir, None)
        .arg("queue")
        .args(args)
        .stderr(Stdio::piped())
        .stdout(Stdio::piped())
        .output()
        .await
        .expect("the binary runs");
    assert!(
        output.status.success(),
        "basis queue {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).expect("UTF-8")
}

async fn ask_for_a_reset_mail(server: &Basis, client: &reqwest::Client) {
    let response = client
        .post(server.url("/auth/password-reset"))
        .json(&json!({"email": "ann@example.com"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 202);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dlq_commands_list_show_replay_and_purge_dead_letters() {
    let dir = tempfile::tempdir().unwrap();
    let client = client();
    // Without --smtp-url a mail job cannot succeed: it goes to the dead letters at once.
    let server = Basis::serve(dir.path(), None, &["--workers", "on"]).await;
    sign_up(
        &client,
        &server.url(""),
        "ann@example.com",
        "velvet otter juggles nine lanterns",
        "Ann",
    )
    .await;
    ask_for_a_reset_mail(&server, &client).await;
    // The stop must not race the worker's one attempt: a job not yet claimed is left queued.
    eventually("the mail job to be dead-lettered", || async {
        queue_cli(dir.path(), &["dlq", "list"])
            .await
            .lines()
            .count()
            > 1
    })
    .await;
    assert!(server.terminate().await.success());

    let list = queue_cli(dir.path(), &["dlq", "list"]).await;
    let rows: Vec<&str> = list.lines().skip(1).collect();
    assert_eq!(rows.len(), 1, "{list}");
    let fields: Vec<&str> = rows[0].split('\t').collect();
    let id = fields[0].to_owned();
    assert_eq!(&fields[1..3], ["mail", "mail.password_reset"]);
    assert!(rows[0].contains("no SMTP server"), "{list}");

    let shown: Value =
        serde_json::from_str(&queue_cli(dir.path(), &["dlq", "show", &id]).await).expect("JSON");
    assert_eq!(shown["kind"], "mail.password_reset");
    assert!(shown["payload"]["userId"].is_string());

    assert_eq!(
        queue_cli(dir.path(), &["dlq", "replay", &id]).await.trim(),
        format!("replayed {id}")
    );
    assert_eq!(
        queue_cli(dir.path(), &["dlq", "list"])
            .await
            .lines()
            .count(),
        1
    );
    let stats = queue_cli(dir.path(), &["stats"]).await;
    assert!(stats.lines().any(|l| l.starts_with("mail\t1\t")), "{stats}");

    // Run again, it dies again; then purge.
    let server = Basis::serve(dir.path(), None, &["--workers", "on"]).await;
    eventually("the replayed job to die again", || async {
        queue_cli(dir.path(), &["dlq", "list", "--queue", "mail"])
            .await
            .lines()
            .count()
            == 2
    })
    .await;
    assert!(server.terminate().await.success());
    assert_eq!(
        queue_cli(dir.path(), &["dlq", "purge", "--queue", "mail"])
            .await
            .trim(),
        "purged 1"
    );
    assert_eq!(
        queue_cli(dir.path(), &["dlq", "list"])
            .await
            .lines()
            .count(),
        1
    );
    let unknown = basis(dir.path(), None)
        .args(["queue", "dlq", "show", "999999"])
        .output()
        .await
        .unwrap();
    assert!(!unknown.status.success());
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("no dead letter 999999"));
}
