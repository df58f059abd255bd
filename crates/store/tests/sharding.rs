//! Links spread over shard databases: where each link is written, the alias index across
//! shards, the shard map refused at start when it does not match, and a shard that is down
//! failing only what it holds. Needs `BASIS_TEST_POSTGRES_URL`; the shard that goes down is
//! a private PostgreSQL server of the test's own.

mod shard_rig;

use basis_store::links::{self, LinkKey, LinkRow};
use basis_store::shards::LOGICAL_SHARDS;
use basis_store::{Error, Pools, Store};
use basis_testkit::PrivatePostgres;
use shard_rig::{Databases, admin_url, execute, ids_in, link, open, options, page};

#[tokio::test]
async fn each_link_is_written_only_to_the_database_its_logical_shard_maps_to() {
    let Some(admin) = admin_url() else { return };
    let dbs = Databases::new(&admin, 4).await;
    let shards = [dbs.url(1), dbs.url(2), dbs.url(3)];
    let store = open(&dbs.url(0), &shards).await.expect("open");
    let rows: Vec<LinkRow> = (1..=60).map(|id| link(id, None, "u1")).collect();
    links::insert_many(&store, &rows).await.expect("insert");

    let layout = store.link_shards().expect("sharded").layout();
    assert_eq!(layout.map.shards_per_database(), [86, 85, 85]);
    let mut seen = Vec::new();
    for (number, database) in layout.databases.iter().enumerate() {
        let held = ids_in(&database.store).await;
        assert!(!held.is_empty(), "database {number} holds some of 60 links");
        for id in &held {
            assert_eq!(
                usize::from(layout.map.database_of(*id as u64)),
                number,
                "link {id} is on the database the map names"
            );
        }
        seen.extend(held);
    }
    seen.sort_unstable();
    assert_eq!(seen, (1..=60).collect::<Vec<_>>(), "each link exactly once");
    assert!(ids_in(&store).await.is_empty(), "the catalog holds no link");

    // A list over every shard comes back merged, newest first, in pages that join up.
    let first = links::list(&store, &page("u1", 25)).await.expect("list");
    let ids: Vec<i64> = first.iter().map(|l| l.row.id).collect();
    assert_eq!(ids, (36..=60).rev().collect::<Vec<_>>());
    let mut next = page("u1", 25);
    next.after = Some((36, 36));
    let second = links::list(&store, &next).await.expect("list");
    assert_eq!(second.first().map(|l| l.row.id), Some(35));
    store.close().await;
    dbs.drop_all().await;
}

#[tokio::test]
async fn an_alias_is_held_by_one_link_across_all_shard_databases() {
    let Some(admin) = admin_url() else { return };
    let dbs = Databases::new(&admin, 3).await;
    let store = open(&dbs.url(0), &[dbs.url(1), dbs.url(2)])
        .await
        .expect("open");
    let map = store.link_shards().expect("sharded").layout().map.clone();
    // Two ids whose links live on different databases.
    let first = 1;
    let other = (2..1000)
        .find(|id| map.database_of(*id as u64) != map.database_of(first as u64))
        .expect("an id on the other database");

    links::insert(&store, &link(first, Some("launch"), "u1"))
        .await
        .expect("the first holder");
    let refused = links::insert(&store, &link(other, Some("launch"), "u2")).await;
    assert!(
        matches!(refused, Err(Error::Conflict("alias"))),
        "{refused:?}"
    );
    assert_eq!(
        links::find(&store, LinkKey::Alias("launch"))
            .await
            .unwrap()
            .map(|l| l.id),
        Some(first)
    );
    assert!(
        links::find(&store, LinkKey::Id(other))
            .await
            .unwrap()
            .is_none(),
        "a refused link writes nothing"
    );
    assert_eq!(
        links::taken_aliases(&store, &["launch", "free"], None)
            .await
            .unwrap(),
        ["launch"]
    );

    // Deleting the holder frees the alias for a link on another database.
    assert!(links::delete(&store, first, 5).await.unwrap());
    links::insert(&store, &link(other, Some("launch"), "u2"))
        .await
        .expect("the alias is free again");
    assert_eq!(
        links::find(&store, LinkKey::Alias("launch"))
            .await
            .unwrap()
            .map(|l| l.id),
        Some(other)
    );
    store.close().await;
    dbs.drop_all().await;
}

#[tokio::test]
async fn shard_databases_that_do_not_match_the_map_are_refused_with_what_differs() {
    let Some(admin) = admin_url() else { return };
    let dbs = Databases::new(&admin, 4).await;
    let catalog = dbs.url(0);
    let (a, b, stranger) = (dbs.url(1), dbs.url(2), dbs.url(3));
    open(&catalog, &[a.clone(), b.clone()])
        .await
        .expect("the first start writes the even map")
        .close()
        .await;

    // The same databases in another order are the same map.
    open(&catalog, &[b.clone(), a.clone()])
        .await
        .expect("order does not matter")
        .close()
        .await;
    // A database of the map left out of the configuration (a reshard added it since) is
    // reached through the catalog.
    let partial = open(&catalog, std::slice::from_ref(&a))
        .await
        .expect("the catalog knows the other database");
    assert_eq!(partial.link_shards().unwrap().layout().databases.len(), 2);
    partial.close().await;
    let extra = open(&catalog, &[a.clone(), b.clone(), stranger])
        .await
        .unwrap_err();
    assert!(
        matches!(&extra, Error::ShardMap(why) if why.contains(&dbs.names[3]) && why.contains("reshard --add")),
        "{extra}"
    );
    let twice = open(&catalog, &[a.clone(), a.clone()]).await.unwrap_err();
    assert!(
        matches!(&twice, Error::ShardMap(why) if why.contains("twice")),
        "{twice}"
    );

    execute(
        &catalog,
        "DELETE FROM link_shard_map WHERE logical_shard = 7",
    )
    .await;
    let holed = open(&catalog, &[a.clone(), b.clone()]).await.unwrap_err();
    assert!(
        matches!(&holed, Error::ShardMap(why)
            if why.contains(&format!("covers {} of the {LOGICAL_SHARDS}", LOGICAL_SHARDS - 1))),
        "{holed}"
    );

    // Only a PostgreSQL catalog can hold the map.
    let dir = tempfile::tempdir().unwrap();
    let sqlite = Store::connect(&Store::sqlite_url_in(dir.path()), &options())
        .await
        .unwrap();
    let refused = sqlite.with_link_shards(&[a], &options()).await.unwrap_err();
    assert!(
        matches!(&refused, Error::ShardMap(why) if why.contains("PostgreSQL")),
        "{refused}"
    );
    dbs.drop_all().await;
}

#[tokio::test]
async fn a_shard_database_that_is_down_fails_only_the_links_it_holds() {
    let Some(admin) = admin_url() else { return };
    let Some(mut private) = PrivatePostgres::crash_safe().await else {
        return;
    };
    let dbs = Databases::new(&admin, 2).await;
    let remote = private.create_database("links_b");
    let store = open(&dbs.url(0), &[dbs.url(1), remote])
        .await
        .expect("open");
    let map = store.link_shards().expect("sharded").layout().map.clone();
    let rows: Vec<LinkRow> = (1..=20).map(|id| link(id, None, "u1")).collect();
    links::insert_many(&store, &rows).await.expect("insert");
    let (up, down): (Vec<i64>, Vec<i64>) =
        (1..=20).partition(|id| map.database_of(*id as u64) == 0);
    assert!(!up.is_empty() && !down.is_empty());

    private.crash();
    for id in &up {
        assert!(
            links::find(&store, LinkKey::Id(*id))
                .await
                .unwrap()
                .is_some(),
            "link {id} on the live database is still found"
        );
    }
    let lost = links::find(&store, LinkKey::Id(down[0])).await.unwrap_err();
    assert!(matches!(lost, Error::Unavailable(_)), "{lost}");
    // A list needs every shard, and says which one is missing.
    let partial = links::list(&store, &page("u1", 50)).await.unwrap_err();
    assert!(
        matches!(&partial, Error::ShardUnavailable(name, _) if name.ends_with("/links_b")),
        "{partial}"
    );

    private.start_again().await;
    let listed = links::list(&store, &page("u1", 50)).await.expect("back");
    assert_eq!(listed.len(), 20);
    store.close().await;
    dbs.drop_all().await;
}

#[tokio::test]
async fn each_shard_database_numbers_its_outbox_events_in_its_own_range() {
    let Some(admin) = admin_url() else { return };
    let dbs = Databases::new(&admin, 3).await;
    let store = open(&dbs.url(0), &[dbs.url(1), dbs.url(2)])
        .await
        .expect("open");
    let rows: Vec<LinkRow> = (1..=20).map(|id| link(id, None, "u1")).collect();
    links::insert_many(&store, &rows).await.expect("insert");
    let layout = store.link_shards().expect("sharded").layout();
    let mut all = Vec::new();
    for (number, database) in layout.databases.iter().enumerate() {
        // The table itself: the relay's read waits for older transactions anywhere on the
        // server to end, which other tests' may not have.
        let events: Vec<i64> = match database.store.pools() {
            Pools::Postgres { write, .. } => sqlx::query_scalar("SELECT id FROM outbox")
                .fetch_all(write)
                .await
                .expect("read the outbox"),
            Pools::Sqlite { .. } => unreachable!(),
        };
        assert!(!events.is_empty());
        let base = basis_store::link_shards::outbox_id_base(number as u16);
        for id in &events {
            assert!(
                (base..base + (1 << 47)).contains(id),
                "event {id} of database {number}"
            );
        }
        all.extend(events);
    }
    assert_eq!(all.len(), 20, "one link.created per link");
    store.close().await;
    dbs.drop_all().await;
}
