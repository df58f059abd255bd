use basis_store::{Error, Store, avatars};

use crate::harness::account;
use crate::on_both_engines;

on_both_engines!(
    storing_thumbnails_consumes_the_upload,
    an_older_upload_never_replaces_a_newer_avatar,
    an_upload_needs_an_existing_account,
);

async fn storing_thumbnails_consumes_the_upload(store: &Store) {
    account(store, "u").await;
    let id = avatars::insert_upload(store, "u", "job", b"raw", 0)
        .await
        .unwrap();
    assert_eq!(
        avatars::upload(store, id).await.unwrap(),
        Some(b"raw".to_vec())
    );
    assert!(!avatars::made_from(store, "u", id).await.unwrap());
    let thumbs = vec![(64, b"small".to_vec()), (256, b"large".to_vec())];
    avatars::store_thumbnails(store, "u", id, &thumbs, 5)
        .await
        .unwrap();
    assert_eq!(avatars::upload(store, id).await.unwrap(), None);
    assert!(avatars::made_from(store, "u", id).await.unwrap());
    let small = avatars::thumbnail(store, "u", 64).await.unwrap().unwrap();
    assert_eq!(small.image, b"small");
    assert_eq!(small.etag, format!("{id}-64"));
    assert_eq!(avatars::thumbnail(store, "u", 128).await.unwrap(), None);

    // A second delivery of the job stores the same thumbnails again without harm.
    avatars::store_thumbnails(store, "u", id, &thumbs, 6)
        .await
        .unwrap();
    let large = avatars::thumbnail(store, "u", 256).await.unwrap().unwrap();
    assert_eq!(large.image, b"large");

    let dropped = avatars::insert_upload(store, "u", "job2", b"raw", 7)
        .await
        .unwrap();
    avatars::delete_upload(store, dropped).await.unwrap();
    assert_eq!(avatars::upload(store, dropped).await.unwrap(), None);
}

async fn an_older_upload_never_replaces_a_newer_avatar(store: &Store) {
    account(store, "u").await;
    let older = avatars::insert_upload(store, "u", "j1", b"old", 0)
        .await
        .unwrap();
    let newer = avatars::insert_upload(store, "u", "j2", b"new", 1)
        .await
        .unwrap();
    assert!(newer > older, "upload ids order uploads");
    avatars::store_thumbnails(store, "u", newer, &[(64, b"new".to_vec())], 2)
        .await
        .unwrap();
    avatars::store_thumbnails(store, "u", older, &[(64, b"old".to_vec())], 3)
        .await
        .unwrap();
    let shown = avatars::thumbnail(store, "u", 64).await.unwrap().unwrap();
    assert_eq!(
        (shown.image.as_slice(), shown.etag),
        (&b"new"[..], format!("{newer}-64"))
    );
    assert_eq!(avatars::upload(store, older).await.unwrap(), None);
    // The older job, delivered again, sees a newer avatar and counts itself done.
    assert!(avatars::made_from(store, "u", older).await.unwrap());
}

async fn an_upload_needs_an_existing_account(store: &Store) {
    let refused = avatars::insert_upload(store, "nobody", "j", b"raw", 0).await;
    assert!(
        matches!(refused, Err(Error::MissingReference("user"))),
        "{refused:?}"
    );
}
