use basis_store::api_keys::{self, KeyOwner, NewKey};
use basis_store::{Error, Store};

use crate::harness::account;
use crate::on_both_engines;

on_both_engines!(
    live_keys_are_listed_oldest_first_and_found_by_digest,
    a_revoked_key_never_matches_again,
    a_key_digest_is_unique_and_needs_an_existing_account,
);

fn key<'a>(id: &'a str, user_id: &'a str, created_at: i64) -> NewKey<'a> {
    NewKey {
        id,
        user_id,
        name: "label",
        key_hash: id,
        key_hint: "bk_hint",
        scopes: "links:read links:write",
        created_at,
    }
}

async fn live_keys_are_listed_oldest_first_and_found_by_digest(store: &Store) {
    account(store, "u").await;
    account(store, "v").await;
    for (id, at) in [("k3", 5), ("k1", 9), ("k2", 5)] {
        api_keys::insert(store, &key(id, "u", at)).await.unwrap();
    }
    api_keys::insert(store, &key("kv", "v", 1)).await.unwrap();
    let listed: Vec<String> = api_keys::list_live(store, "u")
        .await
        .unwrap()
        .into_iter()
        .map(|k| k.id)
        .collect();
    assert_eq!(listed, ["k2", "k3", "k1"]);
    assert_eq!(api_keys::count_live(store, "u").await.unwrap(), 3);
    assert_eq!(
        api_keys::find_live(store, "k1").await.unwrap(),
        Some(KeyOwner {
            id: "k1".into(),
            user_id: "u".into(),
            role: "user".into(),
            scopes: "links:read links:write".into(),
        })
    );
}

async fn a_revoked_key_never_matches_again(store: &Store) {
    account(store, "u").await;
    account(store, "v").await;
    api_keys::insert(store, &key("k", "u", 0)).await.unwrap();
    // Only its owner's revocation counts.
    assert!(!api_keys::revoke(store, "v", "k", 1).await.unwrap());
    assert!(api_keys::revoke(store, "u", "k", 2).await.unwrap());
    assert!(!api_keys::revoke(store, "u", "k", 3).await.unwrap());
    assert_eq!(api_keys::find_live(store, "k").await.unwrap(), None);
    assert!(api_keys::list_live(store, "u").await.unwrap().is_empty());
    assert_eq!(api_keys::count_live(store, "u").await.unwrap(), 0);
}

async fn a_key_digest_is_unique_and_needs_an_existing_account(store: &Store) {
    account(store, "u").await;
    api_keys::insert(store, &key("k", "u", 0)).await.unwrap();
    let same_digest = NewKey {
        id: "other",
        ..key("k", "u", 0)
    };
    let refused = api_keys::insert(store, &same_digest).await;
    assert!(
        matches!(refused, Err(Error::Conflict("key"))),
        "{refused:?}"
    );
    let orphan = api_keys::insert(store, &key("k2", "nobody", 0)).await;
    assert!(
        matches!(orphan, Err(Error::MissingReference("user"))),
        "{orphan:?}"
    );
}
