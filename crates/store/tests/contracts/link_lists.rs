use basis_store::Store;
use basis_store::links::{self, Extras, LinkQuery, LinkRow, LinkSort};

use crate::links::plain;
use crate::on_every_layout;

on_every_layout!(
    a_list_holds_one_owner_s_links_in_keyset_pages,
    a_search_matches_url_and_alias_literally_and_a_tag_filters,
    a_link_s_extras_are_written_with_it_or_not_at_all,
    renaming_and_deleting_a_tag_touch_only_the_owner_s_links,
);

fn query(owner: &str) -> LinkQuery {
    LinkQuery {
        owner_id: owner.to_owned(),
        search: None,
        search_id: None,
        tag: None,
        domain: None,
        sort: LinkSort::NewestFirst,
        after: None,
        limit: 100,
    }
}

async fn ids(store: &Store, query: &LinkQuery) -> Vec<i64> {
    links::list(store, query)
        .await
        .unwrap()
        .into_iter()
        .map(|l| l.row.id)
        .collect()
}

fn owned(id: i64, created_at: i64, owner: &str) -> LinkRow {
    LinkRow {
        created_at,
        ..plain(id, &format!("https://example.com/{id}"), Some(owner))
    }
}

async fn a_list_holds_one_owner_s_links_in_keyset_pages(store: &Store) {
    // Two links made in the same millisecond are told apart by id.
    let rows = [
        owned(1, 10, "ann"),
        owned(2, 20, "ann"),
        owned(3, 20, "ann"),
        owned(4, 5, "bob"),
    ];
    links::insert_many(store, &rows).await.unwrap();
    links::insert(store, &plain(5, "https://example.com/anon", None))
        .await
        .unwrap();
    assert_eq!(ids(store, &query("ann")).await, [3, 2, 1]);
    let page = LinkQuery {
        after: Some((20, 3)),
        limit: 1,
        ..query("ann")
    };
    assert_eq!(ids(store, &page).await, [2]);
    let oldest = LinkQuery {
        sort: LinkSort::OldestFirst,
        after: Some((20, 2)),
        ..query("ann")
    };
    assert_eq!(ids(store, &oldest).await, [3]);
    assert_eq!(ids(store, &query("bob")).await, [4]);
}

async fn a_search_matches_url_and_alias_literally_and_a_tag_filters(store: &Store) {
    let mut rows = vec![owned(1, 1, "ann"), owned(2, 2, "ann"), owned(3, 3, "ann")];
    rows[0].long_url = "https://example.com/50%_OFF".into();
    rows[1].alias = Some("Spring-sale".into());
    let extras = Extras {
        tags: vec![(2, "promo".into()), (3, "promo".into()), (3, "news".into())],
        titles: Vec::new(),
    };
    links::insert_with(store, &rows, &extras).await.unwrap();
    let search = |text: &str| LinkQuery {
        search: Some(text.into()),
        ..query("ann")
    };
    assert_eq!(ids(store, &search("50%_off")).await, [1]);
    assert_eq!(ids(store, &search("0_o")).await, Vec::<i64>::new());
    assert_eq!(ids(store, &search("SALE")).await, [2]);
    let by_id = LinkQuery {
        search_id: Some(3),
        ..search("zzz")
    };
    assert_eq!(ids(store, &by_id).await, [3]);
    let tagged = LinkQuery {
        tag: Some("promo".into()),
        ..query("ann")
    };
    assert_eq!(ids(store, &tagged).await, [3, 2]);
    assert_eq!(
        links::tags_of(store, &[3, 2]).await.unwrap(),
        [(2, "promo".into()), (3, "news".into()), (3, "promo".into())]
    );
}

async fn a_link_s_extras_are_written_with_it_or_not_at_all(store: &Store) {
    let extras = Extras {
        tags: vec![(1, "a".into()), (1, "a".into())],
        titles: vec![(1, "Title".into())],
    };
    // A duplicate tag breaks the transaction: neither the link nor its title stays.
    assert!(
        links::insert_with(store, &[owned(1, 1, "ann")], &extras)
            .await
            .is_err()
    );
    assert_eq!(ids(store, &query("ann")).await, Vec::<i64>::new());
    let extras = Extras {
        tags: vec![(1, "a".into())],
        ..extras
    };
    links::insert_with(store, &[owned(1, 1, "ann")], &extras)
        .await
        .unwrap();
    assert_eq!(
        links::titles_of(store, &[1]).await.unwrap(),
        [(1, "Title".into())]
    );
    links::set_title(store, 1, Some("New")).await.unwrap();
    assert_eq!(
        links::titles_of(store, &[1]).await.unwrap(),
        [(1, "New".into())]
    );
    links::set_title(store, 1, None).await.unwrap();
    assert!(links::titles_of(store, &[1]).await.unwrap().is_empty());
    // Deleting the link takes its tags.
    links::delete(store, 1, 0).await.unwrap();
    assert!(links::tags_of(store, &[1]).await.unwrap().is_empty());
}

async fn renaming_and_deleting_a_tag_touch_only_the_owner_s_links(store: &Store) {
    let rows = [owned(1, 1, "ann"), owned(2, 2, "ann"), owned(3, 3, "bob")];
    let extras = Extras {
        tags: vec![
            (1, "x".into()),
            (1, "y".into()),
            (2, "x".into()),
            (3, "x".into()),
        ],
        titles: Vec::new(),
    };
    links::insert_with(store, &rows, &extras).await.unwrap();
    assert_eq!(links::rename_tag(store, "ann", "x", "y").await.unwrap(), 2);
    let stats = links::tag_stats(store, "ann").await.unwrap();
    assert_eq!(
        stats
            .iter()
            .map(|s| (s.tag.as_str(), s.links))
            .collect::<Vec<_>>(),
        [("y", 2)]
    );
    assert_eq!(
        links::tags_of(store, &[3]).await.unwrap(),
        [(3, "x".into())]
    );
    assert_eq!(links::delete_tag(store, "ann", "y").await.unwrap(), 2);
    assert_eq!(links::delete_tag(store, "ann", "y").await.unwrap(), 0);
    assert_eq!(links::tag_stats(store, "bob").await.unwrap()[0].links, 1);
}
