//! `basis queue …`: the operator's view of the queue, on the same configuration as
//! `basis serve` (`--database-url`, `--queue-url`, `--data-dir`).

use std::path::PathBuf;
use std::sync::Arc;

use basis_queue::JobId;
use basis_store::jobs::{JobStatus, StatusChange};

use crate::Config;
use crate::clock::{Clock, SystemClock};

/// Which queue to open.
#[derive(Debug, Clone, clap::Args)]
pub struct QueueTarget {
    /// Directory of the default SQLite database.
    #[arg(long, env = "BASIS_DATA_DIR", default_value = "./data", global = true)]
    pub data_dir: PathBuf,
    /// Database URL (default: the SQLite file in the data directory).
    #[arg(long, env = "DATABASE_URL", global = true)]
    pub database_url: Option<String>,
    /// Queue URL (default: the database).
    #[arg(long, env = "BASIS_QUEUE_URL", global = true)]
    pub queue_url: Option<String>,
}

/// `basis queue …`.
#[derive(Debug, clap::Subcommand)]
pub enum QueueCommand {
    /// Jobs waiting, running and dead, per queue.
    Stats,
    /// The dead letters.
    #[command(subcommand)]
    Dlq(DlqCommand),
}

/// `basis queue dlq …`.
#[derive(Debug, clap::Subcommand)]
pub enum DlqCommand {
    /// Lists dead letters, oldest first: id, queue, kind, attempts, when, why.
    List {
        /// Only this queue's.
        #[arg(long)]
        queue: Option<String>,
        /// At most this many.
        #[arg(long, default_value_t = 50)]
        limit: usize,
    },
    /// Prints one dead letter as JSON, payload included.
    Show {
        /// The dead letter's id.
        id: String,
    },
    /// Puts a dead letter back on its queue with fresh attempts.
    Replay {
        /// The dead letter's id.
        id: String,
    },
    /// Deletes dead letters (of one queue, or all).
    Purge {
        /// Only this queue's.
        #[arg(long)]
        queue: Option<String>,
    },
}

/// Runs a `basis queue` command, printing to standard output.
pub async fn run(target: QueueTarget, command: QueueCommand) -> anyhow::Result<()> {
    std::fs::create_dir_all(&target.data_dir)?;
    let mut config = Config::with_data_dir(&target.data_dir);
    config.database_url = target.database_url;
    config.jobs.queue_url = target.queue_url;
    let store = crate::open_store(&config).await?;
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let backend = crate::workers::open_backend(&config, &store, clock).await?;
    let outcome = execute(backend.as_ref(), &store, command).await;
    store.close().await;
    outcome
}

async fn execute(
    backend: &dyn basis_queue::Backend,
    store: &basis_store::Store,
    command: QueueCommand,
) -> anyhow::Result<()> {
    let when = |ms: i64| crate::clock::to_datetime(ms).format("%Y-%m-%dT%H:%M:%SZ");
    match command {
        QueueCommand::Stats => {
            println!("queue\tdepth\trunning\toldest_ready_ms\tdead");
            for s in backend.stats().await? {
                println!(
                    "{}\t{}\t{}\t{}\t{}",
                    s.queue, s.depth, s.running, s.oldest_ready_age_ms, s.dead
                );
            }
        }
        QueueCommand::Dlq(DlqCommand::List { queue, limit }) => {
            println!("id\tqueue\tkind\tattempts\tdied_at\terror");
            for d in backend.dead_letters(queue.as_deref(), limit).await? {
                let error = d.last_error.replace(['\t', '\n'], " ");
                println!(
                    "{}\t{}\t{}\t{}\t{}\t{error}",
                    d.id,
                    d.queue,
                    d.kind,
                    d.attempts,
                    when(d.died_at_ms)
                );
            }
        }
        QueueCommand::Dlq(DlqCommand::Show { id }) => {
            let d = backend
                .dead_letter(&JobId(id.clone()))
                .await?
                .ok_or_else(|| anyhow::anyhow!("no dead letter {id}"))?;
            let shown = serde_json::json!({
                "id": d.id.0, "queue": d.queue, "kind": d.kind, "payload": d.payload,
                "attempts": d.attempts, "lastError": d.last_error,
                "diedAt": when(d.died_at_ms).to_string(),
            });
            println!("{}", serde_json::to_string_pretty(&shown)?);
        }
        QueueCommand::Dlq(DlqCommand::Replay { id }) => {
            let dead = backend.dead_letter(&JobId(id.clone())).await?;
            if !backend.replay(&JobId(id.clone())).await? {
                anyhow::bail!("no dead letter {id}");
            }
            if let Some(job_id) = dead
                .as_ref()
                .and_then(|d| d.payload.get("jobId"))
                .and_then(|v| v.as_str())
            {
                let now = SystemClock.now_ms();
                let queued = StatusChange::to(JobStatus::Queued);
                basis_store::jobs::set_status(store, job_id, &queued, now).await?;
            }
            println!("replayed {id}");
        }
        QueueCommand::Dlq(DlqCommand::Purge { queue }) => {
            let purged = backend.purge(queue.as_deref()).await?;
            println!("purged {purged}");
        }
    }
    Ok(())
}
