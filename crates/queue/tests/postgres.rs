//! The conformance suite on the PostgreSQL backend: a fresh database per test on the server
//! `BASIS_TEST_POSTGRES_URL` names (skipped, with a visible line, without it).

mod conformance;
mod pg_util;

use pg_util::fresh_database;

use std::sync::Arc;

use basis_queue::postgres::PostgresQueue;
use basis_queue::{Backend, Clock, ManualClock};

async fn open(url: &str, clock: Arc<ManualClock>) -> Arc<dyn Backend> {
    let clock: Arc<dyn Clock> = clock;
    let queue = PostgresQueue::connect(url, clock)
        .await
        .expect("open the queue");
    queue.install().await.expect("install the queue tables");
    Arc::new(queue)
}

async fn harness() -> Option<conformance::Harness> {
    let url = fresh_database().await?;
    let clock = Arc::new(ManualClock::new(1_700_000_000_000));
    let backend = open(&url, clock.clone()).await;
    let c = clock.clone();
    let reopen: conformance::Reopen = Box::new(move || {
        let (url, clock) = (url.clone(), c.clone());
        Box::pin(async move { open(&url, clock).await })
    });
    Some(conformance::Harness::new(backend, clock, reopen))
}

conformance_suite!(harness);

#[tokio::test]
async fn the_queue_and_the_store_migrate_the_same_database_in_either_order() {
    let Some(url) = fresh_database().await else {
        return;
    };
    let store = basis_store::Store::connect(&url, &Default::default())
        .await
        .unwrap();
    store.migrate().await.unwrap();
    let clock: Arc<dyn Clock> = Arc::new(ManualClock::new(0));
    let queue = PostgresQueue::connect(&url, clock).await.unwrap();
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
    let Some(url) = fresh_database().await else {
        return;
    };
    let clock: Arc<dyn Clock> = Arc::new(ManualClock::new(0));
    let queue = PostgresQueue::connect(&url, clock).await.unwrap();
    queue.install().await.unwrap();
    let mut tx = queue.pool().begin().await.unwrap();
    let gone = queue
        .enqueue_in(
            &mut tx,
            NewJob::new("outbox", "mail", serde_json::json!({})),
        )
        .await
        .unwrap();
    tx.rollback().await.unwrap();
    let mut tx = queue.pool().begin().await.unwrap();
    let kept = queue
        .enqueue_in(
            &mut tx,
            NewJob::new("outbox", "mail", serde_json::json!({})),
        )
        .await
        .unwrap();
    tx.commit().await.unwrap();
    assert!(queue.job(&gone.id).await.unwrap().is_none());
    assert!(queue.job(&kept.id).await.unwrap().is_some());
}
