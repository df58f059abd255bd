use basis_store::links::{self, ClickBatch, LinkClicks, LinkKey, LinkRow, LinkUpdate};
use basis_store::{Error, Store};

use crate::harness::account;
use crate::on_every_layout;

on_every_layout!(
    a_link_is_found_by_the_key_it_was_made_with,
    an_alias_belongs_to_one_link_and_a_refused_batch_writes_nothing,
    reuse_finds_the_oldest_plain_link_of_the_same_owner,
    of_simultaneous_reuse_requests_for_a_new_url_exactly_one_inserts,
    an_update_replaces_the_url_and_the_guards_and_a_delete_takes_the_clicks,
);

/// A plain link of `owner` to `url`: no alias, no guard, redirect type 301.
pub fn plain(id: i64, url: &str, owner: Option<&str>) -> LinkRow {
    LinkRow {
        id,
        alias: None,
        long_url: url.to_owned(),
        created_at: id,
        expires_at: None,
        max_clicks: None,
        redirect_type: 301,
        password_hash: None,
        owner_id: owner.map(str::to_owned),
        rules: None,
        domain: None,
    }
}

fn aliased(id: i64, alias: &str) -> LinkRow {
    LinkRow {
        alias: Some(alias.to_owned()),
        ..plain(id, &format!("https://example.com/{alias}"), None)
    }
}

fn guarded(id: i64, url: &str, owner: Option<&str>) -> LinkRow {
    LinkRow {
        expires_at: Some(5_000),
        max_clicks: Some(3),
        password_hash: Some("$argon2id$hash".into()),
        ..plain(id, url, owner)
    }
}

/// `humans` clicks of link `id` on day 100.
pub fn clicks(id: i64, humans: i64) -> LinkClicks {
    LinkClicks {
        link_id: id,
        humans,
        days: vec![(100, humans, 0)],
        referrers: Vec::new(),
        devices: vec![("desktop", humans)],
    }
}

async fn found(store: &Store, key: LinkKey<'_>) -> Option<i64> {
    links::find(store, key).await.unwrap().map(|l| l.id)
}

async fn a_link_is_found_by_the_key_it_was_made_with(store: &Store) {
    let guards = guarded(3, "https://example.com/g", None);
    links::insert(store, &plain(1, "https://example.com/p", None))
        .await
        .unwrap();
    links::insert(store, &aliased(2, "promo")).await.unwrap();
    links::insert(store, &guards).await.unwrap();
    links::insert(store, &aliased(4, "old7abc")).await.unwrap();

    assert_eq!(found(store, LinkKey::Id(1)).await, Some(1));
    // An aliased link is reached by its alias only, never by a code made from its id.
    assert_eq!(found(store, LinkKey::Id(2)).await, None);
    assert_eq!(found(store, LinkKey::Alias("promo")).await, Some(2));
    assert_eq!(found(store, LinkKey::Alias("PROMO")).await, None);
    assert_eq!(
        found(store, LinkKey::IdOrAlias(1, "nothing")).await,
        Some(1)
    );
    assert_eq!(found(store, LinkKey::IdOrAlias(99, "promo")).await, Some(2));
    // Both match: the old alias wins over the generated code of the same text.
    assert_eq!(
        found(store, LinkKey::IdOrAlias(1, "old7abc")).await,
        Some(4)
    );
    assert_eq!(found(store, LinkKey::IdOrAlias(99, "nothing")).await, None);
    // The guards live in their own table and come back with the link.
    assert_eq!(
        links::find(store, LinkKey::Id(3)).await.unwrap(),
        Some(guards.clone())
    );
    let counted = links::find_counted(store, LinkKey::Id(3))
        .await
        .unwrap()
        .unwrap();
    assert_eq!((counted.row, counted.clicks), (guards, 0));

    // More rows than one statement takes, some guarded: every one is stored with its guards.
    let many: Vec<LinkRow> = (10..1_012)
        .map(|id| match id % 500 {
            0 => guarded(id, "https://example.com/many", None),
            _ => plain(id, "https://example.com/many", None),
        })
        .collect();
    links::insert_many(store, &many).await.unwrap();
    for id in [10, 1_000, 1_011] {
        assert_eq!(
            links::find(store, LinkKey::Id(id)).await.unwrap().as_ref(),
            many.iter().find(|l| l.id == id),
            "link {id}"
        );
    }
}

async fn an_alias_belongs_to_one_link_and_a_refused_batch_writes_nothing(store: &Store) {
    links::insert(store, &aliased(1, "taken")).await.unwrap();
    let twin = links::insert(store, &aliased(2, "taken")).await;
    assert!(matches!(twin, Err(Error::Conflict("alias"))), "{twin:?}");
    // Aliases are not codes: many links may have none.
    links::insert(store, &plain(3, "https://example.com/a", None))
        .await
        .unwrap();
    links::insert(store, &plain(4, "https://example.com/a", None))
        .await
        .unwrap();

    // One statement (plain links) and one transaction (a guarded link): all or nothing.
    let one_statement = [plain(5, "https://example.com/b", None), aliased(6, "taken")];
    let one_transaction = [
        plain(7, "https://example.com/c", None),
        guarded(8, "https://example.com/c", None),
        aliased(9, "taken"),
    ];
    for batch in [&one_statement[..], &one_transaction[..]] {
        let refused = links::insert_many(store, batch).await;
        assert!(
            matches!(refused, Err(Error::Conflict("alias"))),
            "{refused:?}"
        );
        for link in batch {
            assert_eq!(found(store, LinkKey::Id(link.id)).await, None);
        }
    }
    assert_eq!(found(store, LinkKey::Alias("taken")).await, Some(1));
    // Deleting the link frees its alias.
    assert!(links::delete(store, 1, 0).await.unwrap());
    links::insert(store, &aliased(10, "taken")).await.unwrap();
    assert_eq!(found(store, LinkKey::Alias("taken")).await, Some(10));
}

async fn reusable(store: &Store, url: &str, owner: Option<&str>) -> Option<(i64, i64)> {
    links::find_reusable(store, url, owner, None)
        .await
        .unwrap()
        .map(|l| (l.row.id, l.clicks))
}

async fn reuse_finds_the_oldest_plain_link_of_the_same_owner(store: &Store) {
    account(store, "u").await;
    account(store, "v").await;
    let url = "https://example.com/shared";
    let u = Some("u");
    let not_plain = [
        LinkRow {
            alias: Some("mine".into()),
            ..plain(1, url, u)
        },
        guarded(2, url, u),
        LinkRow {
            expires_at: Some(9_000),
            ..plain(3, url, u)
        },
        LinkRow {
            redirect_type: 302,
            ..plain(4, url, u)
        },
    ];
    links::insert_many(store, &not_plain).await.unwrap();
    assert_eq!(reusable(store, url, u).await, None);
    links::insert_many(
        store,
        &[
            plain(6, url, u),
            plain(5, url, u),
            plain(7, url, Some("v")),
            plain(8, url, None),
            plain(9, &format!("{url}/"), u),
        ],
    )
    .await
    .unwrap();
    links::apply_clicks(
        store,
        &ClickBatch {
            links: vec![clicks(5, 4)],
            ..Default::default()
        },
    )
    .await
    .unwrap();
    // The oldest (lowest id), with its stored clicks; owners never share.
    assert_eq!(reusable(store, url, u).await, Some((5, 4)));
    assert_eq!(reusable(store, url, Some("v")).await, Some((7, 0)));
    assert_eq!(reusable(store, url, None).await, Some((8, 0)));
    assert_eq!(reusable(store, url, Some("w")).await, None);
    assert_eq!(reusable(store, "https://example.com/SHARED", u).await, None);

    // Once guarded, a link is no longer handed out; without its guard it is again.
    let guard = LinkUpdate {
        long_url: url.into(),
        expires_at: None,
        max_clicks: Some(10),
        redirect_type: 301,
        password_hash: None,
        rules: None,
    };
    assert!(links::update(store, 5, &guard).await.unwrap());
    assert_eq!(reusable(store, url, u).await, Some((6, 0)));
    let unguarded = LinkUpdate {
        max_clicks: None,
        ..guard
    };
    assert!(links::update(store, 5, &unguarded).await.unwrap());
    assert_eq!(reusable(store, url, u).await, Some((5, 4)));

    // insert_unless_reusable inserts nothing while a candidate exists.
    assert!(
        !links::insert_unless_reusable(store, &plain(20, url, u))
            .await
            .unwrap()
    );
    assert_eq!(found(store, LinkKey::Id(20)).await, None);
    // A guarded link of the URL is no candidate: a plain one is inserted beside it.
    let other = "https://example.com/guarded-only";
    links::insert(store, &guarded(30, other, u)).await.unwrap();
    assert!(
        links::insert_unless_reusable(store, &plain(31, other, u))
            .await
            .unwrap()
    );
    assert_eq!(reusable(store, other, u).await, Some((31, 0)));
}

async fn of_simultaneous_reuse_requests_for_a_new_url_exactly_one_inserts(store: &Store) {
    account(store, "u").await;
    for round in 0..5 {
        let url = format!("https://example.com/new/{round}");
        let (a, b) = (
            plain(100 + round, &url, Some("u")),
            plain(200 + round, &url, Some("u")),
        );
        let (one, two) = tokio::join!(
            links::insert_unless_reusable(store, &a),
            links::insert_unless_reusable(store, &b),
        );
        let (one, two) = (one.unwrap(), two.unwrap());
        assert!(one != two, "round {round}: {one} and {two}");
        let winner = if one { a.id } else { b.id };
        assert_eq!(reusable(store, &url, Some("u")).await, Some((winner, 0)));
        let loser = if one { b.id } else { a.id };
        assert_eq!(found(store, LinkKey::Id(loser)).await, None);
    }
}

async fn an_update_replaces_the_url_and_the_guards_and_a_delete_takes_the_clicks(store: &Store) {
    links::insert(store, &plain(1, "https://example.com/before", None))
        .await
        .unwrap();
    let change = LinkUpdate {
        long_url: "https://example.com/after".into(),
        expires_at: Some(7_000),
        max_clicks: Some(2),
        redirect_type: 308,
        password_hash: Some("$argon2id$new".into()),
        rules: None,
    };
    assert!(links::update(store, 1, &change).await.unwrap());
    let after = links::find(store, LinkKey::Id(1)).await.unwrap().unwrap();
    assert_eq!(
        (
            after.long_url.as_str(),
            after.expires_at,
            after.max_clicks,
            after.redirect_type,
            after.password_hash.as_deref(),
            after.created_at,
        ),
        (
            "https://example.com/after",
            Some(7_000),
            Some(2),
            308,
            Some("$argon2id$new"),
            1
        )
    );
    assert!(!links::update(store, 99, &change).await.unwrap());
    assert_eq!(found(store, LinkKey::Id(99)).await, None);

    // Back to plain: the guards go, and reuse finds the link under its new URL (so the
    // URL's hash was rewritten with it).
    let plain_again = LinkUpdate {
        expires_at: None,
        max_clicks: None,
        redirect_type: 301,
        password_hash: None,
        rules: None,
        ..change
    };
    assert!(links::update(store, 1, &plain_again).await.unwrap());
    assert_eq!(
        links::find(store, LinkKey::Id(1)).await.unwrap(),
        Some(plain(1, "https://example.com/after", None))
    );
    assert_eq!(
        reusable(store, "https://example.com/after", None).await,
        Some((1, 0))
    );
    assert_eq!(
        reusable(store, "https://example.com/before", None).await,
        None
    );

    links::apply_clicks(
        store,
        &ClickBatch {
            links: vec![clicks(1, 2)],
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert!(links::delete(store, 1, 0).await.unwrap());
    assert_eq!(
        links::find_counted(store, LinkKey::Id(1)).await.unwrap(),
        None
    );
    assert_eq!(
        links::stats(store, 1, 30, 10).await.unwrap(),
        Default::default()
    );
    assert!(!links::delete(store, 1, 0).await.unwrap());
}
