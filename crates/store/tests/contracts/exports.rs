use basis_store::links::{self, LinkRow};
use basis_store::{Error, Store, exports};

use crate::on_every_layout;

on_every_layout!(
    an_export_is_stored_once_under_its_job_and_read_only_with_its_link,
    an_export_goes_with_its_link,
);

async fn link(store: &Store, id: i64) {
    let row = LinkRow {
        id,
        alias: None,
        long_url: format!("https://example.com/{id}"),
        created_at: 0,
        expires_at: None,
        max_clicks: None,
        redirect_type: 301,
        password_hash: None,
        owner_id: None,
        rules: None,
        domain: None,
    };
    links::insert(store, &row).await.unwrap();
}

async fn an_export_is_stored_once_under_its_job_and_read_only_with_its_link(store: &Store) {
    link(store, 1).await;
    link(store, 2).await;
    assert_eq!(exports::rows(store, "job", 1).await.unwrap(), None);
    exports::insert(store, "job", 1, "a,b\n", 1, 0)
        .await
        .unwrap();
    // A second delivery keeps the first export.
    exports::insert(store, "job", 1, "other\n", 9, 1)
        .await
        .unwrap();
    assert_eq!(exports::rows(store, "job", 1).await.unwrap(), Some(1));
    assert_eq!(
        exports::csv(store, "job", 1).await.unwrap().as_deref(),
        Some("a,b\n")
    );
    assert_eq!(exports::csv(store, "job", 2).await.unwrap(), None);
}

async fn an_export_goes_with_its_link(store: &Store) {
    let refused = exports::insert(store, "job", 404, "x\n", 1, 0).await;
    assert!(
        matches!(refused, Err(Error::MissingReference("link"))),
        "{refused:?}"
    );
    link(store, 1).await;
    exports::insert(store, "job", 1, "x\n", 1, 0).await.unwrap();
    assert!(links::delete(store, 1, 0).await.unwrap());
    assert_eq!(exports::rows(store, "job", 1).await.unwrap(), None);
}
