//! A fixed number of no-op jobs through the SQLite queue in this process, for counting
//! instructions per job under callgrind (`bench/instructions.sh` runs it at two counts and
//! divides the difference, so start-up and migrations cancel out).
//!
//! `cargo run --release -p basis-queue --example job_loop -- <single|batched> <jobs>`
//! - `single`: enqueue, claim and complete one job at a time;
//! - `batched`: `enqueue_many` of 100, one claim of 100, one `complete_many` of 100.

use std::sync::Arc;
use std::time::Duration;

use basis_queue::sqlite::SqliteQueue;
use basis_queue::{Backend, Clock, NewJob, SystemClock};
use serde_json::json;

const BATCH: usize = 100;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [mode, jobs] = args.as_slice() else {
        return Err("usage: job_loop <single|batched> <jobs>".into());
    };
    let jobs: usize = jobs.parse()?;
    let dir = tempfile::tempdir()?;
    let url = format!("sqlite://{}/jobs.db", dir.path().display());
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let queue = SqliteQueue::connect(&url, clock).await?;
    queue.install().await?;
    let lease = Duration::from_secs(30);
    let job = |n: usize| NewJob::new("bench", "noop", json!({ "n": n }));
    let mut done = 0;
    while done < jobs {
        if mode == "single" {
            queue.enqueue(job(done)).await?;
            let claimed = queue.claim("bench", lease, 1).await?;
            for c in claimed {
                queue.complete(&c.lease, None).await?;
                done += 1;
            }
        } else {
            let n = BATCH.min(jobs - done);
            queue
                .enqueue_many((0..n).map(|i| job(done + i)).collect())
                .await?;
            let acks: Vec<_> = queue
                .claim("bench", lease, n)
                .await?
                .into_iter()
                .map(|c| (c.lease, None))
                .collect();
            let answers = queue.complete_many(&acks).await?;
            done += answers.into_iter().filter(Result::is_ok).count();
        }
    }
    println!("{done} jobs");
    Ok(())
}
