use basis_store::links::{self, LinkRow};
use basis_store::refresh_tokens::{self, NewToken};
use basis_store::sessions::{self, NewSession};
use basis_store::users::{self, DeletedLink};
use basis_store::{Error, Store, api_keys, avatars, jobs, oidc_logins, password_resets};

use crate::harness::{account, user};
use crate::on_every_layout;

on_every_layout!(
    an_email_belongs_to_one_account,
    accounts_are_listed_by_id_after_the_cursor,
    deleting_an_account_takes_everything_it_owns,
    a_password_change_revokes_every_credential_but_the_kept_session,
);

async fn an_email_belongs_to_one_account(store: &Store) {
    let ada = account(store, "a1").await;
    assert_eq!(users::find(store, "a1").await.unwrap(), Some(ada.clone()));
    assert_eq!(
        users::find_by_email(store, "a1@example.com").await.unwrap(),
        Some(ada.clone())
    );
    let twin = users::insert(store, &user("a2", "a1@example.com")).await;
    assert!(matches!(twin, Err(Error::Conflict("email"))), "{twin:?}");

    let bob = account(store, "b1").await;
    let taken = users::update(
        store,
        &users::UserRow {
            email: ada.email.clone(),
            ..bob.clone()
        },
    )
    .await;
    assert!(matches!(taken, Err(Error::Conflict("email"))), "{taken:?}");

    let renamed = users::UserRow {
        name: "Bob B.".into(),
        updated_at: 5,
        ..bob.clone()
    };
    assert!(users::update(store, &renamed).await.unwrap());
    assert_eq!(users::find(store, "b1").await.unwrap(), Some(renamed));
    let ghost = user("nobody", "nobody@example.com");
    assert!(!users::update(store, &ghost).await.unwrap());
}

async fn accounts_are_listed_by_id_after_the_cursor(store: &Store) {
    for id in ["c", "a", "d", "b"] {
        account(store, id).await;
    }
    let ids = |rows: Vec<users::UserRow>| rows.into_iter().map(|u| u.id).collect::<Vec<_>>();
    assert_eq!(ids(users::list(store, "", 2).await.unwrap()), ["a", "b"]);
    assert_eq!(ids(users::list(store, "b", 2).await.unwrap()), ["c", "d"]);
    assert!(users::list(store, "d", 2).await.unwrap().is_empty());
}

fn link(id: i64, alias: Option<&str>, owner: &str) -> LinkRow {
    LinkRow {
        id,
        alias: alias.map(str::to_owned),
        long_url: format!("https://example.com/{id}"),
        created_at: 0,
        expires_at: None,
        max_clicks: None,
        redirect_type: 301,
        password_hash: None,
        owner_id: Some(owner.to_owned()),
        rules: None,
        domain: None,
    }
}

async fn deleting_an_account_takes_everything_it_owns(store: &Store) {
    account(store, "gone").await;
    account(store, "stays").await;
    links::insert(store, &link(10, None, "gone")).await.unwrap();
    links::insert(store, &link(11, Some("mine"), "gone"))
        .await
        .unwrap();
    links::insert(store, &link(12, None, "stays"))
        .await
        .unwrap();
    let session = NewSession {
        id_hash: "s1",
        user_id: "gone",
        csrf_token: "csrf",
        user_agent: None,
        now: 0,
    };
    sessions::insert(store, &session).await.unwrap();
    let token = NewToken {
        token_hash: "t1",
        issued_at: 0,
        expires_at: 1_000,
    };
    refresh_tokens::start_family(store, "f1", "gone", &token)
        .await
        .unwrap();
    let key = api_keys::NewKey {
        id: "k1",
        user_id: "gone",
        name: "ci",
        key_hash: "kh1",
        key_hint: "bk_1",
        scopes: "links:read",
        created_at: 0,
    };
    api_keys::insert(store, &key).await.unwrap();
    oidc_logins::link(store, "https://idp", "sub", "gone", 0)
        .await
        .unwrap();
    password_resets::insert(store, "r1", "gone", 0, 1_000)
        .await
        .unwrap();
    let upload = avatars::insert_upload(store, "gone", "j0", b"img", 0)
        .await
        .unwrap();
    jobs::create(store, "j1", "links.export", Some("gone"), 0)
        .await
        .unwrap();

    let mut deleted = users::delete(store, "gone")
        .await
        .unwrap()
        .expect("deleted");
    deleted.sort_by_key(|l| l.id);
    assert_eq!(
        deleted,
        [
            DeletedLink {
                id: 10,
                alias: None,
                domain: None,
            },
            DeletedLink {
                id: 11,
                alias: Some("mine".into()),
                domain: None,
            },
        ]
    );
    assert_eq!(users::find(store, "gone").await.unwrap(), None);
    assert_eq!(sessions::find(store, "s1").await.unwrap(), None);
    assert_eq!(
        refresh_tokens::family_revoked(store, "f1").await.unwrap(),
        None
    );
    assert_eq!(api_keys::find_live(store, "kh1").await.unwrap(), None);
    assert_eq!(
        oidc_logins::linked_user(store, "https://idp", "sub")
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        password_resets::live_user(store, "r1", 0).await.unwrap(),
        None
    );
    assert_eq!(avatars::upload(store, upload).await.unwrap(), None);
    assert_eq!(jobs::find(store, "j1").await.unwrap(), None);
    assert!(
        links::find(store, links::LinkKey::Id(12))
            .await
            .unwrap()
            .is_some()
    );
    assert!(users::find(store, "stays").await.unwrap().is_some());
    assert_eq!(users::delete(store, "gone").await.unwrap(), None);
}

async fn a_password_change_revokes_every_credential_but_the_kept_session(store: &Store) {
    account(store, "u").await;
    account(store, "other").await;
    for (hash, owner) in [("keep", "u"), ("drop", "u"), ("theirs", "other")] {
        let session = NewSession {
            id_hash: hash,
            user_id: owner,
            csrf_token: "c",
            user_agent: None,
            now: 0,
        };
        sessions::insert(store, &session).await.unwrap();
    }
    for (family, owner) in [("fu", "u"), ("fo", "other")] {
        let token = NewToken {
            token_hash: &format!("t-{family}"),
            issued_at: 0,
            expires_at: 1_000,
        };
        refresh_tokens::start_family(store, family, owner, &token)
            .await
            .unwrap();
    }

    assert!(
        users::change_password(store, "u", "new-hash", Some("keep"), 7)
            .await
            .unwrap()
    );
    let u = users::find(store, "u").await.unwrap().unwrap();
    assert_eq!(
        (u.password_hash.as_deref(), u.updated_at),
        (Some("new-hash"), 7)
    );
    assert!(sessions::find(store, "keep").await.unwrap().is_some());
    assert_eq!(sessions::find(store, "drop").await.unwrap(), None);
    assert!(sessions::find(store, "theirs").await.unwrap().is_some());
    assert_eq!(
        refresh_tokens::family_revoked(store, "fu").await.unwrap(),
        Some(true)
    );
    assert_eq!(
        refresh_tokens::family_revoked(store, "fo").await.unwrap(),
        Some(false)
    );

    assert!(
        !users::change_password(store, "nobody", "h", None, 8)
            .await
            .unwrap()
    );
    users::set_password_hash(store, "u", "rehash", 9)
        .await
        .unwrap();
    let u = users::find(store, "u").await.unwrap().unwrap();
    assert_eq!(u.password_hash.as_deref(), Some("rehash"));
    assert!(sessions::find(store, "keep").await.unwrap().is_some());
}
