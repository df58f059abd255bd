use basis_store::oidc_logins::{self, PendingLogin};
use basis_store::{Error, Store};

use crate::harness::account;
use crate::on_both_engines;

on_both_engines!(
    a_started_login_is_taken_once,
    an_identity_stays_linked_to_its_first_account,
);

async fn a_started_login_is_taken_once(store: &Store) {
    let login = PendingLogin {
        state: "st".into(),
        nonce: "n".into(),
        pkce_verifier: "v".into(),
        redirect_to: "/home".into(),
        expires_at: 600,
    };
    oidc_logins::start(store, &login).await.unwrap();
    assert_eq!(oidc_logins::take(store, "st").await.unwrap(), Some(login));
    assert_eq!(oidc_logins::take(store, "st").await.unwrap(), None);
    assert_eq!(oidc_logins::take(store, "forged").await.unwrap(), None);
}

async fn an_identity_stays_linked_to_its_first_account(store: &Store) {
    account(store, "first").await;
    account(store, "second").await;
    assert_eq!(
        oidc_logins::linked_user(store, "https://idp", "sub")
            .await
            .unwrap(),
        None
    );
    oidc_logins::link(store, "https://idp", "sub", "first", 0)
        .await
        .unwrap();
    oidc_logins::link(store, "https://idp", "sub", "second", 1)
        .await
        .unwrap();
    assert_eq!(
        oidc_logins::linked_user(store, "https://idp", "sub")
            .await
            .unwrap(),
        Some("first".into())
    );
    // The same subject at another issuer is another identity.
    assert_eq!(
        oidc_logins::linked_user(store, "https://other", "sub")
            .await
            .unwrap(),
        None
    );
    let refused = oidc_logins::link(store, "https://idp", "new", "nobody", 2).await;
    assert!(
        matches!(refused, Err(Error::MissingReference("user"))),
        "{refused:?}"
    );
}
