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
