use basis_store::Store;
use basis_store::idempotency::{self, KeyRow};

use crate::on_both_engines;

on_both_engines!(
    a_key_is_held_until_it_expires_and_answers_with_the_first_response,
    a_released_key_runs_again_and_purging_takes_only_expired_keys,
);

fn held(fingerprint: &str, status: Option<i32>, body: Option<&[u8]>) -> Option<KeyRow> {
    Some(KeyRow {
        fingerprint: fingerprint.into(),
        status,
        location: status.map(|_| "/posts/1".into()),
        body: body.map(<[u8]>::to_vec),
    })
}

async fn a_key_is_held_until_it_expires_and_answers_with_the_first_response(store: &Store) {
    let claim = |scope, fingerprint, now| {
        idempotency::claim(store, scope, "k", fingerprint, now, now + 100)
    };
    assert_eq!(claim("u", "f1", 0).await.unwrap(), None);
    // While the first request runs, a retry sees it in progress.
    assert_eq!(claim("u", "f1", 10).await.unwrap(), held("f1", None, None));
    // Keys are per caller: another user's request with the same key is its own.
    assert_eq!(claim("v", "f1", 10).await.unwrap(), None);

    idempotency::complete(store, "u", "k", 201, Some("/posts/1"), b"{\"id\":1}")
        .await
        .unwrap();
    // A retry with another body still sees the first request's fingerprint, to refuse it.
    assert_eq!(
        claim("u", "f2", 99).await.unwrap(),
        held("f1", Some(201), Some(b"{\"id\":1}"))
    );
    // At its expiry the key is free again, and the new claim starts from nothing.
    assert_eq!(claim("u", "f2", 100).await.unwrap(), None);
    assert_eq!(claim("u", "f3", 101).await.unwrap(), held("f2", None, None));
}

async fn a_released_key_runs_again_and_purging_takes_only_expired_keys(store: &Store) {
    let claim = |key, expires_at| idempotency::claim(store, "u", key, "f", 0, expires_at);
    assert_eq!(claim("failed", 100).await.unwrap(), None);
    idempotency::release(store, "u", "failed").await.unwrap();
    assert_eq!(claim("failed", 100).await.unwrap(), None);

    // A completed response is kept: releasing it is a no-op.
    assert_eq!(claim("done", 100).await.unwrap(), None);
    idempotency::complete(store, "u", "done", 200, Some("/posts/1"), b"ok")
        .await
        .unwrap();
    idempotency::release(store, "u", "done").await.unwrap();
    assert_eq!(
        claim("done", 100).await.unwrap(),
        held("f", Some(200), Some(b"ok"))
    );

    assert_eq!(claim("late", 200).await.unwrap(), None);
    assert_eq!(idempotency::purge_expired(store, 100).await.unwrap(), 2);
    assert_eq!(claim("late", 200).await.unwrap(), held("f", None, None));
    assert_eq!(claim("done", 100).await.unwrap(), None);
}
