//! The conformance suite on the SQLite backend (a fresh database file per test).

mod conformance;

use std::sync::Arc;

use basis_queue::sqlite::SqliteQueue;
use basis_queue::{Backend, Clock, ManualClock};

async fn open(url: &str, clock: Arc<ManualClock>) -> Arc<dyn Backend> {
    let clock: Arc<dyn Clock> = clock;
    let queue = SqliteQueue::connect(url, clock)
        .await
        .expect("open the queue");
    queue.install().await.expect("install the queue tables");
    Arc::new(queue)
}

async fn harness() -> Option<conformance::Harness> {
    let dir = Arc::new(tempfile::tempdir().expect("temp dir"));
    let url = format!("sqlite://{}", dir.path().join("basis.db").display());
    let clock = Arc::new(ManualClock::new(1_700_000_000_000));
    let backend = open(&url, clock.clone()).await;
    let c = clock.clone();
    let reopen: conformance::Reopen = Box::new(move || {
        let (url, clock, _dir) = (url.clone(), c.clone(), dir.clone());
        Box::pin(async move { open(&url, clock).await })
    });
    Some(conformance::Harness::new(backend, clock, reopen))
}

conformance_suite!(harness);

#[tokio::test]
async fn the_queue_and_the_store_migrate_the_same_database_in_either_order() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("basis.db").display());
    let store = basis_store::Store::connect(&url, &Default::default())
        .await
        .unwrap();
    store.migrate().await.unwrap();
    let clock: Arc<dyn Clock> = Arc::new(ManualClock::new(0));
    let queue = SqliteQueue::connect(&url, clock).await.unwrap();
    queue.install().await.unwrap();
    store.migrate().await.unwrap();
    queue.install().await.unwrap();
    let versions: Vec<i64> =
        sqlx::query_scalar("SELECT version FROM _sqlx_migrations ORDER BY version")
            .fetch_all(queue.pool())
            .await
            .unwrap();
    assert!(
        versions.contains(&1) && versions.contains(&1001),
        "{versions:?}"
    );
}

#[tokio::test]
async fn a_job_enqueued_in_a_rolled_back_transaction_never_exists() {
    use basis_queue::NewJob;
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("basis.db").display());
    let clock: Arc<dyn Clock> = Arc::new(ManualClock::new(0));
    let queue = SqliteQueue::connect(&url, clock).await.unwrap();
    queue.install().await.unwrap();
    let mail = || NewJob::new("outbox", "mail", serde_json::json!({}));
    let mut tx = queue.pool().begin().await.unwrap();
    let gone = queue.enqueue_in(&mut tx, mail()).await.unwrap();
    tx.rollback().await.unwrap();
    assert!(queue.job(&gone.id).await.unwrap().is_none());
    let mut tx = queue.pool().begin().await.unwrap();
    let kept = queue.enqueue_in(&mut tx, mail()).await.unwrap();
    tx.commit().await.unwrap();
    assert!(queue.job(&kept.id).await.unwrap().is_some());
    let waiting = queue.stats().await.unwrap();
    assert_eq!(
        waiting.iter().map(|s| s.depth).sum::<u64>(),
        1,
        "only the committed job"
    );
}

/// A claim over several queues takes the single writer connection once, where claiming
/// queue by queue takes it once per queue: behind a busy writer every turn is a wait.
#[tokio::test]
async fn one_claim_over_several_queues_takes_one_turn_at_the_writer() {
    use std::str::FromStr;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    use basis_queue::NewJob;
    use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions};

    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("basis.db").display());
    // Every checkout of the one connection is a turn: a fresh connection goes out after
    // `after_connect`, an idle one after `before_acquire`, both in the acquiring task.
    let turns = Arc::new(AtomicUsize::new(0));
    let (connected, acquired) = (turns.clone(), turns.clone());
    let pool = SqlitePoolOptions::new()
        .max_connections(1)
        .after_connect(move |_, _| {
            connected.fetch_add(1, Ordering::SeqCst);
            Box::pin(async { Ok(()) })
        })
        .before_acquire(move |_, _| {
            acquired.fetch_add(1, Ordering::SeqCst);
            Box::pin(async { Ok(true) })
        })
        .connect_with(
            SqliteConnectOptions::from_str(&url)
                .unwrap()
                .create_if_missing(true)
                .journal_mode(SqliteJournalMode::Wal),
        )
        .await
        .unwrap();
    let clock = Arc::new(ManualClock::new(1_700_000_000_000));
    let queue = SqliteQueue::new(pool, clock.clone());
    queue.install().await.unwrap();
    let queues: Vec<String> = (0..5).map(|i| format!("turns-{i}")).collect();
    let fill = || async {
        for q in &queues {
            for n in 0..2 {
                queue
                    .enqueue(NewJob::new(q, "work", serde_json::json!({ "n": n })))
                    .await
                    .unwrap();
            }
        }
    };
    // A job whose lease expires on its last attempt: buried inside the same transaction.
    let mut doomed = NewJob::new(&queues[0], "work", serde_json::json!({}));
    doomed.max_attempts = 1;
    queue.enqueue(doomed).await.unwrap();
    queue
        .claim(&queues[0], Duration::from_secs(1), 1)
        .await
        .unwrap();
    clock.advance(Duration::from_secs(2));
    fill().await;

    turns.store(0, Ordering::SeqCst);
    let got = queue
        .claim_from(&queues, Duration::from_secs(30), 100)
        .await
        .unwrap();
    assert_eq!(got.len(), 10, "two of each queue; the expired one buried");
    assert_eq!(turns.load(Ordering::SeqCst), 1, "one turn for five queues");
    assert_eq!(queue.dead_letters(None, 10).await.unwrap().len(), 1);

    // For contrast, what the counter sees of a claim per queue.
    fill().await;
    turns.store(0, Ordering::SeqCst);
    for q in &queues {
        queue.claim(q, Duration::from_secs(30), 100).await.unwrap();
    }
    assert_eq!(turns.load(Ordering::SeqCst), queues.len());
}

/// A backend with only the trait's queue-by-queue `claim_from` (as RabbitMQ has): the real
/// SQLite queue underneath, except that claiming from `broken` always fails.
#[derive(Debug)]
struct OneQueueBroken {
    inner: SqliteQueue,
    broken: &'static str,
}

#[async_trait::async_trait]
impl Backend for OneQueueBroken {
    fn name(&self) -> &'static str {
        "one-queue-broken"
    }
    async fn enqueue(
        &self,
        job: basis_queue::NewJob,
    ) -> basis_queue::Result<basis_queue::Enqueued> {
        self.inner.enqueue(job).await
    }
    async fn claim(
        &self,
        queue: &str,
        lease: std::time::Duration,
        limit: usize,
    ) -> basis_queue::Result<Vec<basis_queue::ClaimedJob>> {
        if queue == self.broken {
            return Err(basis_queue::Error::Unavailable("this queue is gone".into()));
        }
        self.inner.claim(queue, lease, limit).await
    }
    async fn heartbeat(
        &self,
        l: &basis_queue::Lease,
        d: std::time::Duration,
    ) -> basis_queue::Result<()> {
        self.inner.heartbeat(l, d).await
    }
    async fn complete(
        &self,
        l: &basis_queue::Lease,
        r: Option<serde_json::Value>,
    ) -> basis_queue::Result<()> {
        self.inner.complete(l, r).await
    }
    async fn retry(&self, l: &basis_queue::Lease, e: &str, at: i64) -> basis_queue::Result<()> {
        self.inner.retry(l, e, at).await
    }
    async fn bury(&self, l: &basis_queue::Lease, e: &str) -> basis_queue::Result<()> {
        self.inner.bury(l, e).await
    }
    async fn release(&self, l: &basis_queue::Lease) -> basis_queue::Result<()> {
        self.inner.release(l).await
    }
    async fn wait_for_work(&self, queue: &str, timeout: std::time::Duration) {
        self.inner.wait_for_work(queue, timeout).await
    }
    async fn job(
        &self,
        id: &basis_queue::JobId,
    ) -> basis_queue::Result<Option<basis_queue::JobInfo>> {
        self.inner.job(id).await
    }
    async fn subscribe_kinds(
        &self,
        topic: &str,
        group: &str,
        kinds: &[&str],
    ) -> basis_queue::Result<()> {
        self.inner.subscribe_kinds(topic, group, kinds).await
    }
    async fn publish(
        &self,
        topic: &str,
        kind: &str,
        payload: serde_json::Value,
    ) -> basis_queue::Result<usize> {
        self.inner.publish(topic, kind, payload).await
    }
    async fn dead_letters(
        &self,
        queue: Option<&str>,
        limit: usize,
    ) -> basis_queue::Result<Vec<basis_queue::DeadJob>> {
        self.inner.dead_letters(queue, limit).await
    }
    async fn dead_letter(
        &self,
        id: &basis_queue::JobId,
    ) -> basis_queue::Result<Option<basis_queue::DeadJob>> {
        self.inner.dead_letter(id).await
    }
    async fn replay(&self, id: &basis_queue::JobId) -> basis_queue::Result<bool> {
        self.inner.replay(id).await
    }
    async fn purge(&self, queue: Option<&str>) -> basis_queue::Result<u64> {
        self.inner.purge(queue).await
    }
    async fn stats(&self) -> basis_queue::Result<Vec<basis_queue::QueueStats>> {
        self.inner.stats().await
    }
}

/// The queue-by-queue claim skips a queue whose claim fails: the others still give their
/// jobs (a worker of every queue would otherwise stop at one lost broker queue), and only a
/// claim that got nothing reports the failure.
#[tokio::test]
async fn a_queue_that_cannot_be_claimed_from_does_not_hold_up_the_others() {
    use basis_queue::NewJob;
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("basis.db").display());
    let clock: Arc<dyn Clock> = Arc::new(ManualClock::new(1_700_000_000_000));
    let inner = SqliteQueue::connect(&url, clock).await.unwrap();
    inner.install().await.unwrap();
    let backend = OneQueueBroken {
        inner,
        broken: "broken",
    };
    for queue in ["first", "broken", "last"] {
        backend
            .enqueue(NewJob::new(queue, "work", serde_json::json!({})))
            .await
            .unwrap();
    }
    let queues = ["first", "broken", "last"].map(String::from);
    let lease = std::time::Duration::from_secs(30);
    let jobs = backend.claim_from(&queues, lease, 10).await.unwrap();
    let mut from: Vec<&str> = jobs.iter().map(|j| j.lease.queue.as_str()).collect();
    from.sort_unstable();
    assert_eq!(from, ["first", "last"]);
    let alone = backend.claim_from(&["broken".to_owned()], lease, 10).await;
    assert!(alone.is_err(), "{alone:?}");
}

/// A finished job's acknowledgement waits for SQLite's writer, which a write-heavy load
/// holds for long; meanwhile the job's slot is already free, so a job claimed ahead starts
/// instead of waiting for the acknowledgement.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_waiting_for_its_acknowledgement_does_not_hold_its_slot() {
    use basis_queue::worker::{Registry, Worker, WorkerConfig};
    use basis_queue::{NewJob, handler_fn};
    use sqlx::Connection as _;
    use std::time::Duration;
    use tokio::sync::{Notify, mpsc};

    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("basis.db").display());
    let clock = Arc::new(ManualClock::new(1_700_000_000_000));
    let backend = open(&url, clock.clone()).await;
    let gate = Arc::new(Notify::new());
    let (ran_tx, mut ran) = mpsc::unbounded_channel::<i64>();
    let g = gate.clone();
    let registry = Registry::new().handle(
        "work",
        handler_fn(move |j| {
            let (g, ran_tx) = (g.clone(), ran_tx.clone());
            async move {
                let n = j.payload["n"].as_i64().unwrap_or(-1);
                let _ = ran_tx.send(n);
                if n == 1 {
                    g.notified().await;
                }
                Ok(None)
            }
        }),
    );
    let mut config = WorkerConfig::new(["acks"]);
    config.concurrency = 1;
    config.prefetch = 8;
    config.poll = Duration::from_millis(20);
    let worker = Worker::new(backend.clone(), clock.clone(), config, registry);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(worker.run(async move {
        let _ = stopped.await;
    }));
    async fn next(ran: &mut mpsc::UnboundedReceiver<i64>) -> i64 {
        tokio::time::timeout(Duration::from_secs(10), ran.recv())
            .await
            .expect("a job starts")
            .expect("the worker runs")
    }
    let job = |n: i64| NewJob::new("acks", "work", serde_json::json!({ "n": n }));
    // A first job, so the worker knows its jobs are short and claims ahead.
    backend.enqueue(job(0)).await.unwrap();
    assert_eq!(next(&mut ran).await, 0);
    backend.enqueue_many(vec![job(1), job(2)]).await.unwrap();
    assert_eq!(next(&mut ran).await, 1, "the oldest starts first");

    // Another writer takes the database; job 1 then finishes and waits for its ack.
    let mut other = sqlx::SqliteConnection::connect(&url).await.unwrap();
    sqlx::query("BEGIN IMMEDIATE")
        .execute(&mut other)
        .await
        .unwrap();
    gate.notify_one();
    assert_eq!(
        next(&mut ran).await,
        2,
        "job 2 starts while job 1's acknowledgement waits for the writer"
    );
    sqlx::query("ROLLBACK").execute(&mut other).await.unwrap();
    let _ = stop.send(());
    let report = running.await.unwrap();
    assert_eq!(report.claimed, 3);
    let stats = backend.stats().await.unwrap();
    // A queue with nothing waiting or running is not listed.
    let left = stats
        .iter()
        .find(|s| s.queue == "acks")
        .map_or((0, 0), |s| (s.depth, s.running));
    assert_eq!(
        left,
        (0, 0),
        "every job acknowledged once the writer is free"
    );
}
