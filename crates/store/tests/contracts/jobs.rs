use basis_store::jobs::{self, JobRow, JobStatus, StatusChange};
use basis_store::{Error, Store};

use crate::harness::account;
use crate::on_both_engines;

on_both_engines!(a_job_row_follows_its_attempts, a_job_owner_must_exist,);

async fn a_job_row_follows_its_attempts(store: &Store) {
    account(store, "u").await;
    jobs::create(store, "j", "links.export", Some("u"), 0)
        .await
        .unwrap();
    let row = |status: &str, attempts, result: Option<&str>, error: Option<&str>| JobRow {
        id: "j".into(),
        kind: "links.export".into(),
        owner_id: Some("u".into()),
        status: status.into(),
        attempts,
        result: result.map(str::to_owned),
        error: error.map(str::to_owned),
    };
    assert_eq!(
        jobs::find(store, "j").await.unwrap(),
        Some(row("queued", 0, None, None))
    );
    let running = StatusChange {
        attempts: Some(1),
        ..StatusChange::to(JobStatus::Running)
    };
    jobs::set_status(store, "j", &running, 1).await.unwrap();
    let failed = StatusChange {
        error: Some("smtp down"),
        ..StatusChange::to(JobStatus::Failed)
    };
    jobs::set_status(store, "j", &failed, 2).await.unwrap();
    assert_eq!(
        jobs::find(store, "j").await.unwrap(),
        Some(row("failed", 1, None, Some("smtp down")))
    );
    // A later change keeps the attempts and clears the error.
    let done = StatusChange {
        result: Some("{\"rows\":3}"),
        ..StatusChange::to(JobStatus::Done)
    };
    jobs::set_status(store, "j", &done, 3).await.unwrap();
    assert_eq!(
        jobs::find(store, "j").await.unwrap(),
        Some(row("done", 1, Some("{\"rows\":3}"), None))
    );
    // Re-queued (a dead letter replayed): the result stays until a new one replaces it.
    jobs::set_status(store, "j", &StatusChange::to(JobStatus::Queued), 4)
        .await
        .unwrap();
    assert_eq!(
        jobs::find(store, "j").await.unwrap(),
        Some(row("queued", 1, Some("{\"rows\":3}"), None))
    );
    jobs::forget(store, "j").await.unwrap();
    assert_eq!(jobs::find(store, "j").await.unwrap(), None);
    // A change to an unknown job is no error.
    jobs::set_status(store, "j", &StatusChange::to(JobStatus::Dead), 5)
        .await
        .unwrap();
    assert_eq!(jobs::find(store, "j").await.unwrap(), None);
}

async fn a_job_owner_must_exist(store: &Store) {
    let refused = jobs::create(store, "j", "k", Some("nobody"), 0).await;
    assert!(
        matches!(refused, Err(Error::MissingReference("user"))),
        "{refused:?}"
    );
    jobs::create(store, "internal", "k", None, 0).await.unwrap();
    assert!(jobs::find(store, "internal").await.unwrap().is_some());
}
