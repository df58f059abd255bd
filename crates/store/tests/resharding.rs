//! Online resharding from two shard databases to three: under a load of creates, edits,
//! clicks and reads from two instances, every link resolves before, during and after the
//! move, none is lost or left in two places, no click is lost or counted twice; and a
//! reshard stopped half way is finished by running it again. Needs `BASIS_TEST_POSTGRES_URL`.

mod shard_rig;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use basis_store::links::{self, ClickBatch, LinkClicks, LinkKey, LinkRow};
use basis_store::reshard::{self, Progress};
use basis_store::shards::logical_shard;
use basis_store::{Error, Store};
use shard_rig::{Databases, admin_url, ids_in, link, open, options};
use tokio::sync::Mutex;

/// Long enough for every instance to reload the map (it polls every 500 ms).
const SETTLE: Duration = Duration::from_millis(1200);

/// A batch of `clicks` human clicks on link `id`, on day 100.
fn clicks(id: i64, clicks: i64) -> ClickBatch {
    ClickBatch {
        links: vec![LinkClicks {
            link_id: id,
            humans: clicks,
            days: vec![(100, clicks, 0)],
            ..Default::default()
        }],
        visits: Vec::new(),
    }
}

/// The stored clicks of link `id`, found by its code or, for the aliased ones, its alias.
async fn stored_clicks(store: &Store, id: i64) -> i64 {
    let alias = format!("alias{id}");
    let key = if id <= 3000 && id % 30 == 0 {
        LinkKey::Alias(&alias)
    } else {
        LinkKey::Id(id)
    };
    links::find_counted(store, key)
        .await
        .unwrap()
        .map_or(-1, |l| l.clicks)
}

/// The stores of `store`'s shard databases, in map order, to read them one by one.
fn shard_stores(store: &Store) -> Vec<Store> {
    let layout = store.link_shards().expect("sharded").layout();
    layout.databases.iter().map(|d| d.store.clone()).collect()
}

/// How many of the databases of `stores` hold each id.
async fn copies(stores: &[Store]) -> HashMap<i64, usize> {
    let mut seen = HashMap::new();
    for store in stores {
        for id in ids_in(store).await {
            *seen.entry(id).or_insert(0) += 1;
        }
    }
    seen
}

/// What the load did, for the checker.
#[derive(Default)]
struct Ledger {
    /// Links whose create was acknowledged.
    created: Vec<i64>,
    /// Clicks acknowledged per link.
    clicks: HashMap<i64, i64>,
    /// Titles acknowledged per link (the last one wins).
    titles: HashMap<i64, String>,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reshard_from_two_to_three_databases_under_load_loses_and_duplicates_nothing() {
    let Some(admin) = admin_url() else { return };
    let dbs = Databases::new(&admin, 4).await;
    let (a, b, c) = (dbs.url(1), dbs.url(2), dbs.url(3));
    let writer = open(&dbs.url(0), &[a.clone(), b.clone()]).await.unwrap();
    // A second instance of the service on the same catalog: it learns of the move only
    // through the catalog.
    let reader = open(&dbs.url(0), &[a.clone(), b.clone()]).await.unwrap();

    let before: Vec<LinkRow> = (1..=3000)
        .map(|id| {
            link(
                id,
                (id % 30 == 0).then(|| format!("alias{id}")).as_deref(),
                "u1",
            )
        })
        .collect();
    links::insert_many(&writer, &before).await.unwrap();
    let ledger = Arc::new(Mutex::new(Ledger {
        created: (1..=3000).collect(),
        ..Ledger::default()
    }));
    for id in (1..=3000).step_by(7) {
        links::apply_clicks_once(&writer, &format!("seed-{id}"), 1, &clicks(id, 2))
            .await
            .unwrap();
        ledger.lock().await.clicks.insert(id, 2);
    }

    let stop = Arc::new(AtomicBool::new(false));
    let misses = Arc::new(AtomicU64::new(0));
    let reads = Arc::new(AtomicU64::new(0));
    let load = {
        let (store, ledger, stop) = (writer.clone(), ledger.clone(), stop.clone());
        tokio::spawn(async move {
            let mut next = 100_000;
            let mut round = 0_i64;
            while !stop.load(Ordering::Relaxed) {
                round += 1;
                next += 1;
                links::insert(&store, &link(next, None, "u1"))
                    .await
                    .expect("a create");
                ledger.lock().await.created.push(next);
                let target = 1 + (round * 37) % 3000;
                links::apply_clicks_once(&store, &format!("load-{round}"), 2, &clicks(target, 1))
                    .await
                    .expect("clicks");
                *ledger.lock().await.clicks.entry(target).or_insert(0) += 1;
                let titled = 1 + (round * 53) % 3000;
                let title = format!("t{round}");
                links::set_title(&store, titled, Some(&title))
                    .await
                    .expect("a title");
                ledger.lock().await.titles.insert(titled, title);
            }
        })
    };
    let checker = {
        let (store, ledger, stop) = (reader.clone(), ledger.clone(), stop.clone());
        let (misses, reads) = (misses.clone(), reads.clone());
        tokio::spawn(async move {
            let mut round = 0_usize;
            while !stop.load(Ordering::Relaxed) {
                round += 1;
                let id = {
                    let ledger = ledger.lock().await;
                    ledger.created[(round * 7919) % ledger.created.len()]
                };
                let key = if id <= 3000 && id % 30 == 0 {
                    format!("alias{id}")
                } else {
                    String::new()
                };
                let found = if key.is_empty() {
                    links::find(&store, LinkKey::Id(id)).await
                } else {
                    links::find(&store, LinkKey::Alias(&key)).await
                };
                reads.fetch_add(1, Ordering::Relaxed);
                if !matches!(found, Ok(Some(ref l)) if l.id == id) {
                    misses.fetch_add(1, Ordering::Relaxed);
                }
            }
        })
    };

    let reports = Arc::new(std::sync::Mutex::new(Vec::<Progress>::new()));
    let summary = {
        let reports = reports.clone();
        let resharder = open(&dbs.url(0), &[a.clone(), b.clone()]).await.unwrap();
        let summary = reshard::add_database(&resharder, &c, &options(), SETTLE, move |p| {
            reports.lock().unwrap().push(p.clone())
        })
        .await
        .expect("the reshard finishes");
        resharder.close().await;
        summary
    };
    stop.store(true, Ordering::Relaxed);
    load.await.unwrap();
    checker.await.unwrap();

    // The new database took its even share, reported shard by shard.
    assert_eq!(summary.database, 2);
    assert_eq!(summary.shards, 85);
    let reports = reports.lock().unwrap().clone();
    assert_eq!(reports.len(), 85);
    assert!(
        reports
            .windows(2)
            .all(|w| w[0].shards_done < w[1].shards_done)
    );
    assert_eq!(reports.last().unwrap().shards_done, 85);
    assert!(reads.load(Ordering::Relaxed) > 0);
    assert_eq!(
        misses.load(Ordering::Relaxed),
        0,
        "every read found its link"
    );

    // Both instances follow the new map; every acknowledged link is in exactly one place.
    writer.refresh_link_shards().await.unwrap();
    let raw = shard_stores(&writer);
    assert_eq!(raw.len(), 3);
    let ledger = ledger.lock().await;
    let placed = copies(&raw).await;
    assert_eq!(
        placed.len(),
        ledger.created.len(),
        "no link lost, none extra"
    );
    assert!(placed.values().all(|n| *n == 1), "no link in two databases");
    let map = writer.link_shards().unwrap().layout().map.clone();
    let on_new = ids_in(&raw[2]).await;
    assert!(on_new.iter().all(|id| map.database_of(*id as u64) == 2));
    assert!(
        on_new.len() * 4 > ledger.created.len(),
        "about a third moved"
    );
    for id in &ledger.created {
        for store in [&writer, &reader] {
            assert!(
                links::find(store, LinkKey::Id(*id))
                    .await
                    .unwrap()
                    .is_some()
                    || links::find(store, LinkKey::Alias(&format!("alias{id}")))
                        .await
                        .unwrap()
                        .is_some(),
                "link {id}"
            );
        }
    }
    for (id, expected) in &ledger.clicks {
        assert_eq!(
            stored_clicks(&writer, *id).await,
            *expected,
            "clicks of {id}"
        );
    }
    let titled: Vec<i64> = ledger.titles.keys().copied().collect();
    let titles: HashMap<i64, String> = links::titles_of(&writer, &titled)
        .await
        .unwrap()
        .into_iter()
        .collect();
    for (id, title) in &ledger.titles {
        assert_eq!(titles.get(id), Some(title), "title of {id}");
    }
    writer.close().await;
    reader.close().await;
    dbs.drop_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reshard_stopped_half_way_is_finished_by_running_it_again() {
    let Some(admin) = admin_url() else { return };
    let dbs = Databases::new(&admin, 4).await;
    let (a, b, c) = (dbs.url(1), dbs.url(2), dbs.url(3));
    let service = open(&dbs.url(0), &[a.clone(), b.clone()]).await.unwrap();
    let before: Vec<LinkRow> = (1..=1500).map(|id| link(id, None, "u1")).collect();
    links::insert_many(&service, &before).await.unwrap();

    // The first run is stopped (its task dropped, its connections closed) after 5 shards.
    let resharder = open(&dbs.url(0), &[a.clone(), b.clone()]).await.unwrap();
    let (moved_five, five) = tokio::sync::oneshot::channel();
    let mut moved_five = Some(moved_five);
    let first = {
        let (resharder, c) = (resharder.clone(), c.clone());
        tokio::spawn(async move {
            reshard::add_database(&resharder, &c, &options(), SETTLE, move |p| {
                if p.shards_done == 5
                    && let Some(tell) = moved_five.take()
                {
                    let _ = tell.send(());
                }
            })
            .await
        })
    };
    five.await.expect("five shards moved");
    first.abort();
    assert!(first.await.unwrap_err().is_cancelled());
    resharder.close().await;

    // Meanwhile the service writes to a moved shard and to one still waiting.
    service.refresh_link_shards().await.unwrap();
    let map = service.link_shards().unwrap().layout().map.clone();
    let on_new = (5000..10_000)
        .find(|id| map.database_of(*id as u64) == 2)
        .expect("an id of a moved shard");
    links::insert(&service, &link(on_new, None, "u1"))
        .await
        .unwrap();
    let waiting = (5000..10_000)
        .find(|id| map.database_of(*id as u64) != 2 && logical_shard(*id as u64) == 255)
        .expect("an id of a shard not moved yet");
    links::insert(&service, &link(waiting, None, "u1"))
        .await
        .unwrap();

    // Running it again finishes the plan.
    let resharder = open(&dbs.url(0), &[a.clone(), b.clone()]).await.unwrap();
    let summary = reshard::add_database(&resharder, &c, &options(), SETTLE, |_| {})
        .await
        .expect("the rerun finishes");
    resharder.close().await;
    assert_eq!(summary.shards, 85);
    assert!(summary.progress.shards_moved_now <= 80);

    // A third run has nothing left to do, and says so.
    let again = open(&dbs.url(0), &[a.clone(), b.clone(), c.clone()])
        .await
        .unwrap();
    let done = reshard::add_database(&again, &c, &options(), SETTLE, |_| {}).await;
    assert!(
        matches!(&done, Err(Error::ShardMap(why)) if why.contains("already")),
        "{done:?}"
    );
    again.close().await;

    service.refresh_link_shards().await.unwrap();
    let raw = shard_stores(&service);
    let placed = copies(&raw).await;
    assert_eq!(placed.len(), 1502, "no link lost, none extra");
    assert!(placed.values().all(|n| *n == 1), "no link in two databases");
    for id in (1..=1500).chain([on_new, waiting]) {
        assert!(
            links::find(&service, LinkKey::Id(id))
                .await
                .unwrap()
                .is_some(),
            "link {id}"
        );
    }
    service.close().await;
    dbs.drop_all().await;
}
