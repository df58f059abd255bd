//! Chaos: worker processes killed with SIGKILL at random while 10,000 jobs run. Every job
//! must complete, none may be lost or dead-lettered, and each job's idempotent effect must
//! be applied exactly once even though some handlers run more than once.

mod pg_util;

use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use basis_queue::postgres::PostgresQueue;
use basis_queue::sqlite::SqliteQueue;
use basis_queue::{Clock, NewJob, SystemClock};
use rand::Rng;
use serde_json::json;

const JOBS: i64 = 10_000;
const PROCESSES: usize = 3;

const TABLES: [&str; 4] = [
    "CREATE TABLE chaos_effects (job_id BIGINT PRIMARY KEY, n BIGINT NOT NULL)",
    "CREATE TABLE chaos_runs (job_id BIGINT NOT NULL)",
    "CREATE TABLE chaos_total (total BIGINT NOT NULL)",
    "INSERT INTO chaos_total VALUES (0)",
];

/// Worker processes, killed on drop so a failing test leaves none behind.
struct Fleet {
    url: String,
    children: Vec<Child>,
    kills: usize,
}

impl Fleet {
    fn spawn(&mut self) {
        let child = Command::new(env!("CARGO_BIN_EXE_queue-worker"))
            .args([&self.url, "chaos", "effect", "8", "1500"])
            .stdout(Stdio::null())
            .spawn()
            .expect("start a worker process");
        self.children.push(child);
    }

    fn kill_one(&mut self) {
        let i = rand::rng().random_range(0..self.children.len());
        let mut child = self.children.swap_remove(i);
        child.kill().expect("SIGKILL"); // std's kill is SIGKILL on Unix
        let _ = child.wait();
        self.kills += 1;
    }
}

impl Drop for Fleet {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Runs the fleet with random kills until `done()` reports every job finished (bounded).
async fn run_with_kills<F, Fut>(url: &str, done: F) -> usize
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = i64>,
{
    let mut fleet = Fleet {
        url: url.to_owned(),
        children: Vec::new(),
        kills: 0,
    };
    for _ in 0..PROCESSES {
        fleet.spawn();
    }
    let deadline = Instant::now() + Duration::from_secs(150);
    let mut next_kill = Instant::now() + Duration::from_millis(300);
    loop {
        let finished = done().await;
        if finished == JOBS {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "only {finished} of {JOBS} jobs finished in time"
        );
        if Instant::now() >= next_kill {
            fleet.kill_one();
            fleet.spawn();
            next_kill = Instant::now() + Duration::from_millis(rand::rng().random_range(200..900));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    fleet.kills
}

fn jobs() -> impl Iterator<Item = NewJob> {
    (1..=JOBS).map(|n| {
        let mut j = NewJob::new("chaos", "effect", json!({ "n": n }));
        j.max_attempts = 1000; // kills must not exhaust a job: nothing may die here
        j
    })
}

fn check(kills: usize, done: i64, left: i64, dead: i64, effects: i64, total: i64, runs: i64) {
    println!("chaos: {kills} kills, {runs} handler runs for {JOBS} jobs");
    assert!(
        kills >= 3,
        "the test killed too few workers to mean anything"
    );
    assert_eq!(
        (done, left, dead),
        (JOBS, 0, 0),
        "every job completed, none lost or dead"
    );
    assert_eq!(effects, JOBS, "one effect row per job");
    assert_eq!(
        total,
        JOBS * (JOBS + 1) / 2,
        "each effect counted exactly once"
    );
    assert!(runs >= JOBS);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkilled_sqlite_workers_lose_no_job_and_apply_each_effect_once() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("basis.db").display());
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let queue = SqliteQueue::connect(&url, clock).await.unwrap();
    queue.install().await.unwrap();
    let pool = queue.pool().clone();
    for sql in TABLES {
        sqlx::query(sql).execute(&pool).await.unwrap();
    }
    let mut tx = pool.begin().await.unwrap();
    for j in jobs() {
        queue.enqueue_in(&mut tx, j).await.unwrap();
    }
    tx.commit().await.unwrap();
    let count = |sql: &'static str| {
        let pool = pool.clone();
        async move {
            sqlx::query_scalar::<_, i64>(sql)
                .fetch_one(&pool)
                .await
                .unwrap()
        }
    };
    let kills = run_with_kills(&url, || count("SELECT COUNT(*) FROM queue_done")).await;
    check(
        kills,
        count("SELECT COUNT(*) FROM queue_done").await,
        count("SELECT COUNT(*) FROM queue_jobs").await,
        count("SELECT COUNT(*) FROM queue_dead").await,
        count("SELECT COUNT(*) FROM chaos_effects").await,
        count("SELECT total FROM chaos_total").await,
        count("SELECT COUNT(*) FROM chaos_runs").await,
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkilled_postgres_workers_lose_no_job_and_apply_each_effect_once() {
    let Some(url) = pg_util::fresh_database().await else {
        return;
    };
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let queue = PostgresQueue::connect(&url, clock).await.unwrap();
    queue.install().await.unwrap();
    let pool = queue.pool().clone();
    for sql in TABLES {
        sqlx::query(sql).execute(&pool).await.unwrap();
    }
    let mut tx = pool.begin().await.unwrap();
    for j in jobs() {
        queue.enqueue_in(&mut tx, j).await.unwrap();
    }
    tx.commit().await.unwrap();
    let count = |sql: &'static str| {
        let pool = pool.clone();
        async move {
            sqlx::query_scalar::<_, i64>(sql)
                .fetch_one(&pool)
                .await
                .unwrap()
        }
    };
    let kills = run_with_kills(&url, || count("SELECT COUNT(*) FROM queue_done")).await;
    check(
        kills,
        count("SELECT COUNT(*) FROM queue_done").await,
        count("SELECT COUNT(*) FROM queue_jobs").await,
        count("SELECT COUNT(*) FROM queue_dead").await,
        count("SELECT COUNT(*) FROM chaos_effects").await,
        count("SELECT total FROM chaos_total").await,
        count("SELECT COUNT(*) FROM chaos_runs").await,
    );
}
