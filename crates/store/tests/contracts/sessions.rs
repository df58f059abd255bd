use basis_store::sessions::{self, NewSession};
use basis_store::{Error, Store, users};

use crate::harness::account;
use crate::on_both_engines;

on_both_engines!(
    a_session_carries_its_owner_s_current_role,
    a_session_needs_an_existing_account
);

async fn a_session_carries_its_owner_s_current_role(store: &Store) {
    let owner = account(store, "u").await;
    let session = NewSession {
        id_hash: "h",
        user_id: "u",
        csrf_token: "csrf",
        now: 100,
    };
    sessions::insert(store, &session).await.unwrap();
    let found = sessions::find(store, "h").await.unwrap().unwrap();
    assert_eq!(
        (
            found.user_id.as_str(),
            found.role.as_str(),
            found.csrf_token.as_str()
        ),
        ("u", "user", "csrf")
    );
    assert_eq!((found.created_at, found.last_seen_at), (100, 100));

    let promoted = users::UserRow {
        role: "admin".into(),
        ..owner
    };
    users::update(store, &promoted).await.unwrap();
    sessions::touch(store, "h", 250).await.unwrap();
    let found = sessions::find(store, "h").await.unwrap().unwrap();
    assert_eq!(found.role, "admin");
    assert_eq!((found.created_at, found.last_seen_at), (100, 250));

    assert!(sessions::delete(store, "h").await.unwrap());
    assert!(!sessions::delete(store, "h").await.unwrap());
    assert_eq!(sessions::find(store, "h").await.unwrap(), None);
}

async fn a_session_needs_an_existing_account(store: &Store) {
    let session = NewSession {
        id_hash: "h",
        user_id: "nobody",
        csrf_token: "csrf",
        now: 0,
    };
    let refused = sessions::insert(store, &session).await;
    assert!(
        matches!(refused, Err(Error::MissingReference("user"))),
        "{refused:?}"
    );
}
