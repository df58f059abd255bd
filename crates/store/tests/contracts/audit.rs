use basis_store::Store;
use basis_store::audit::{self, NewEvent};

use crate::on_both_engines;

on_both_engines!(events_are_listed_newest_first_in_pages);

async fn events_are_listed_newest_first_in_pages(store: &Store) {
    for (at, kind) in [
        (1, "login.failed"),
        (2, "login.succeeded"),
        (3, "role.changed"),
    ] {
        let event = NewEvent {
            at,
            kind,
            user_id: (kind != "login.failed").then_some("u"),
            ip: Some("203.0.113.9"),
            detail: None,
        };
        audit::record(store, &event).await.unwrap();
    }
    let first = audit::list(store, i64::MAX, 2).await.unwrap();
    let kinds: Vec<&str> = first.iter().map(|e| e.kind.as_str()).collect();
    assert_eq!(kinds, ["role.changed", "login.succeeded"]);
    assert_eq!(first[0].ip.as_deref(), Some("203.0.113.9"));
    let rest = audit::list(store, first[1].id, 2).await.unwrap();
    assert_eq!(rest.len(), 1);
    assert_eq!(
        (
            rest[0].kind.as_str(),
            rest[0].at,
            rest[0].user_id.as_deref()
        ),
        ("login.failed", 1, None)
    );
    assert!(audit::list(store, rest[0].id, 2).await.unwrap().is_empty());
}
