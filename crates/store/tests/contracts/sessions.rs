use basis_store::sessions::{self, NewSession};
use basis_store::{Error, Store, users};

use crate::harness::account;
use crate::on_both_engines;

on_both_engines!(
    a_session_carries_its_owner_s_current_role,
    a_session_needs_an_existing_account,
    an_owner_lists_and_ends_only_their_own_sessions,
);

async fn a_session_carries_its_owner_s_current_role(store: &Store) {
    let owner = account(store, "u").await;
    let session = NewSession {
        id_hash: "h",
        user_id: "u",
        csrf_token: "csrf",
        user_agent: None,
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
        user_agent: None,
        now: 0,
    };
    let refused = sessions::insert(store, &session).await;
    assert!(
        matches!(refused, Err(Error::MissingReference("user"))),
        "{refused:?}"
    );
}

async fn an_owner_lists_and_ends_only_their_own_sessions(store: &Store) {
    account(store, "ann").await;
    account(store, "bob").await;
    for (id_hash, user_id, agent, now) in [
        ("a1", "ann", Some("Firefox"), 100),
        ("a2", "ann", None, 300),
        ("a3", "ann", Some("Chrome"), 200),
        ("b1", "bob", Some("Safari"), 100),
    ] {
        let session = NewSession {
            id_hash,
            user_id,
            csrf_token: "csrf",
            user_agent: agent,
            now,
        };
        sessions::insert(store, &session).await.unwrap();
    }
    let listed = sessions::list_for_user(store, "ann").await.unwrap();
    let seen: Vec<(&str, Option<&str>)> = listed
        .iter()
        .map(|s| (s.id_hash.as_str(), s.user_agent.as_deref()))
        .collect();
    assert_eq!(
        seen,
        [
            ("a2", None),
            ("a3", Some("Chrome")),
            ("a1", Some("Firefox"))
        ]
    );

    assert!(!sessions::delete_owned(store, "ann", "b1").await.unwrap());
    assert!(sessions::find(store, "b1").await.unwrap().is_some());
    assert!(sessions::delete_owned(store, "ann", "a3").await.unwrap());
    assert_eq!(
        sessions::delete_others(store, "ann", "a2").await.unwrap(),
        1
    );
    let left = sessions::list_for_user(store, "ann").await.unwrap();
    assert_eq!(left.len(), 1);
    assert_eq!(left[0].id_hash, "a2");
    assert!(sessions::find(store, "b1").await.unwrap().is_some());
}
