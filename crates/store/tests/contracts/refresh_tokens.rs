use basis_store::refresh_tokens::{self, NewToken, RevokedFamily, Rotation};
use basis_store::{Error, Store};

use crate::harness::account;
use crate::on_both_engines;

on_both_engines!(
    each_token_is_spent_once_and_its_successor_carries_the_family,
    a_token_is_live_only_before_its_expiry,
    presenting_a_spent_token_revokes_its_family,
    of_two_concurrent_rotations_of_one_token_exactly_one_wins,
    a_family_needs_an_existing_account,
);

fn token(hash: &str, issued_at: i64) -> NewToken<'_> {
    NewToken {
        token_hash: hash,
        issued_at,
        expires_at: issued_at + 1_000,
    }
}

fn rotation(family: &str, user: &str) -> Option<Rotation> {
    Some(Rotation {
        family_id: family.into(),
        user_id: user.into(),
    })
}

async fn each_token_is_spent_once_and_its_successor_carries_the_family(store: &Store) {
    account(store, "u").await;
    refresh_tokens::start_family(store, "f", "u", &token("t1", 0))
        .await
        .unwrap();
    assert_eq!(
        refresh_tokens::rotate(store, "t1", &token("t2", 10), 10)
            .await
            .unwrap(),
        rotation("f", "u")
    );
    // Spent: a second rotation with it writes nothing, so its would-be successor is unknown.
    assert_eq!(
        refresh_tokens::rotate(store, "t1", &token("t3", 20), 20)
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        refresh_tokens::rotate(store, "t3", &token("t4", 30), 30)
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        refresh_tokens::rotate(store, "t2", &token("t5", 40), 40)
            .await
            .unwrap(),
        rotation("f", "u")
    );
    assert_eq!(
        refresh_tokens::rotate(store, "unknown", &token("t6", 50), 50)
            .await
            .unwrap(),
        None
    );
}

async fn a_token_is_live_only_before_its_expiry(store: &Store) {
    account(store, "u").await;
    refresh_tokens::start_family(store, "f", "u", &token("t1", 0))
        .await
        .unwrap();
    // expires_at is 1_000: at that instant the token is no longer accepted.
    assert_eq!(
        refresh_tokens::rotate(store, "t1", &token("t2", 1_000), 1_000)
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        refresh_tokens::rotate(store, "t1", &token("t2", 999), 999)
            .await
            .unwrap(),
        rotation("f", "u")
    );
}

async fn presenting_a_spent_token_revokes_its_family(store: &Store) {
    account(store, "u").await;
    refresh_tokens::start_family(store, "f", "u", &token("t1", 0))
        .await
        .unwrap();
    refresh_tokens::rotate(store, "t1", &token("t2", 1), 1)
        .await
        .unwrap();
    assert_eq!(
        refresh_tokens::revoke_family_of(store, "t1", 2)
            .await
            .unwrap(),
        Some(RevokedFamily {
            family_id: "f".into(),
            user_id: "u".into(),
            token_was_spent: true,
        })
    );
    assert_eq!(
        refresh_tokens::family_revoked(store, "f").await.unwrap(),
        Some(true)
    );
    // The live successor dies with its family.
    assert_eq!(
        refresh_tokens::rotate(store, "t2", &token("t3", 3), 3)
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        refresh_tokens::revoke_family_of(store, "never-issued", 4)
            .await
            .unwrap(),
        None
    );

    // A logout with a live token revokes the family too, and says it was not a reuse.
    refresh_tokens::start_family(store, "g", "u", &token("s1", 5))
        .await
        .unwrap();
    let logout = refresh_tokens::revoke_family_of(store, "s1", 6)
        .await
        .unwrap()
        .unwrap();
    assert!(!logout.token_was_spent);
    assert_eq!(
        refresh_tokens::family_revoked(store, "g").await.unwrap(),
        Some(true)
    );
}

async fn of_two_concurrent_rotations_of_one_token_exactly_one_wins(store: &Store) {
    account(store, "u").await;
    for round in 0..5 {
        let first = format!("first-{round}");
        refresh_tokens::start_family(store, &format!("f{round}"), "u", &token(&first, 0))
            .await
            .unwrap();
        let (a, b) = (format!("a-{round}"), format!("b-{round}"));
        let (next_a, next_b) = (token(&a, 1), token(&b, 1));
        let (one, two) = tokio::join!(
            refresh_tokens::rotate(store, &first, &next_a, 1),
            refresh_tokens::rotate(store, &first, &next_b, 1),
        );
        let winners = [one.unwrap(), two.unwrap()]
            .into_iter()
            .filter(Option::is_some)
            .count();
        assert_eq!(winners, 1, "round {round}");
    }
}

async fn a_family_needs_an_existing_account(store: &Store) {
    let refused = refresh_tokens::start_family(store, "f", "nobody", &token("t", 0)).await;
    assert!(
        matches!(refused, Err(Error::MissingReference("user"))),
        "{refused:?}"
    );
    assert_eq!(
        refresh_tokens::family_revoked(store, "f").await.unwrap(),
        None
    );
}
