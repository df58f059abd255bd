use basis_store::refresh_tokens::{self, NewToken};
use basis_store::sessions::{self, NewSession};
use basis_store::{Error, Store, password_resets, users};

use crate::harness::account;
use crate::on_both_engines;

on_both_engines!(
    a_reset_token_is_live_until_its_expiry_and_its_use,
    a_reset_sets_the_password_and_revokes_every_credential_at_once,
    a_reset_token_needs_an_existing_account,
);

async fn a_reset_token_is_live_until_its_expiry_and_its_use(store: &Store) {
    account(store, "u").await;
    password_resets::insert(store, "r", "u", 0, 3_600)
        .await
        .unwrap();
    assert_eq!(
        password_resets::live_user(store, "r", 3_599).await.unwrap(),
        Some("u".into())
    );
    assert_eq!(
        password_resets::live_user(store, "r", 3_600).await.unwrap(),
        None
    );
    // Expired: the reset writes nothing.
    assert!(
        !password_resets::reset_password(store, "r", "u", "new", 3_600)
            .await
            .unwrap()
    );
    let u = users::find(store, "u").await.unwrap().unwrap();
    assert_eq!(u.password_hash.as_deref(), Some("old-hash"));
    // Someone else's token does not reset this account.
    account(store, "v").await;
    assert!(
        !password_resets::reset_password(store, "r", "v", "new", 10)
            .await
            .unwrap()
    );
    assert!(
        password_resets::reset_password(store, "r", "u", "new", 10)
            .await
            .unwrap()
    );
    assert_eq!(
        password_resets::live_user(store, "r", 11).await.unwrap(),
        None
    );
    assert!(
        !password_resets::reset_password(store, "r", "u", "newer", 12)
            .await
            .unwrap()
    );
    let u = users::find(store, "u").await.unwrap().unwrap();
    assert_eq!(u.password_hash.as_deref(), Some("new"));
}

async fn a_reset_sets_the_password_and_revokes_every_credential_at_once(store: &Store) {
    account(store, "u").await;
    let session = NewSession {
        id_hash: "s",
        user_id: "u",
        csrf_token: "c",
        user_agent: None,
        now: 0,
    };
    sessions::insert(store, &session).await.unwrap();
    let first = NewToken {
        token_hash: "t",
        issued_at: 0,
        expires_at: 1_000_000,
    };
    refresh_tokens::start_family(store, "f", "u", &first)
        .await
        .unwrap();
    password_resets::insert(store, "r", "u", 0, 3_600)
        .await
        .unwrap();

    assert!(
        password_resets::reset_password(store, "r", "u", "new", 5)
            .await
            .unwrap()
    );
    let u = users::find(store, "u").await.unwrap().unwrap();
    assert_eq!((u.password_hash.as_deref(), u.updated_at), (Some("new"), 5));
    assert_eq!(sessions::find(store, "s").await.unwrap(), None);
    assert_eq!(
        refresh_tokens::family_revoked(store, "f").await.unwrap(),
        Some(true)
    );
}

async fn a_reset_token_needs_an_existing_account(store: &Store) {
    let refused = password_resets::insert(store, "r", "nobody", 0, 10).await;
    assert!(
        matches!(refused, Err(Error::MissingReference("user"))),
        "{refused:?}"
    );
}
