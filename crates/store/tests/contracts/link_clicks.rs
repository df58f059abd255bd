use std::collections::HashSet;
use std::sync::Arc;

use basis_store::Store;
use basis_store::ids::IdBlocks;
use basis_store::links::{
    self, BOT_DEVICE, CARRIED_DAY, ClickBatch, LinkClicks, LinkKey, LinkStats,
};

use crate::links::{clicks, plain};
use crate::on_every_layout;

on_every_layout!(
    a_click_batch_is_applied_once_and_only_to_links_that_exist,
    stats_order_days_and_referrers_and_stored_plus_pending_equals_stored_after,
    two_leasers_never_hand_out_the_same_id,
);

async fn stored_clicks(store: &Store, id: i64) -> i64 {
    links::find_counted(store, LinkKey::Id(id))
        .await
        .unwrap()
        .expect("the link")
        .clicks
}

async fn a_click_batch_is_applied_once_and_only_to_links_that_exist(store: &Store) {
    links::insert(store, &plain(1, "https://example.com/1", None))
        .await
        .unwrap();
    let batch = ClickBatch {
        links: vec![clicks(1, 3), clicks(404, 5)],
        ..Default::default()
    };
    assert_eq!(
        links::apply_clicks_once(store, "b1", 10, &batch)
            .await
            .unwrap(),
        Some(1)
    );
    // Redelivered: nothing changes.
    assert_eq!(
        links::apply_clicks_once(store, "b1", 20, &batch)
            .await
            .unwrap(),
        None
    );
    assert_eq!(stored_clicks(store, 1).await, 3);
    assert_eq!(
        links::applied_batches(store, &["b0".into(), "b1".into()])
            .await
            .unwrap(),
        ["b1"]
    );
    // Counts add up across batches, on the same day row.
    assert_eq!(
        links::apply_clicks_once(store, "b2", 30, &batch)
            .await
            .unwrap(),
        Some(1)
    );
    assert_eq!(stored_clicks(store, 1).await, 6);
    assert_eq!(
        links::stats(store, 1, 30, 10).await.unwrap().days,
        [(100, 6, 0)]
    );

    // Records older than the cut are forgotten, younger ones kept.
    assert_eq!(links::prune_applied_batches(store, 30).await.unwrap(), 1);
    assert_eq!(
        links::applied_batches(store, &["b1".into(), "b2".into()])
            .await
            .unwrap(),
        ["b2"]
    );

    // Clicks carried over by migration 0006 count towards the total, never as a day.
    let carried = ClickBatch {
        links: vec![LinkClicks {
            days: vec![(CARRIED_DAY, 4, 0)],
            ..clicks(1, 4)
        }],
        ..Default::default()
    };
    links::apply_clicks(store, &carried).await.unwrap();
    assert_eq!(stored_clicks(store, 1).await, 10);
    assert_eq!(
        links::stats(store, 1, 30, 10).await.unwrap().days,
        [(100, 6, 0)]
    );
    assert_eq!(
        links::apply_clicks(store, &ClickBatch::default())
            .await
            .unwrap(),
        0
    );
}

fn link_clicks(days: &[(i64, i64, i64)], referrers: &[(&str, i64)]) -> LinkClicks {
    let humans = days.iter().map(|d| d.1).sum();
    let bots = days.iter().map(|d| d.2).sum();
    LinkClicks {
        link_id: 1,
        humans,
        days: days.to_vec(),
        referrers: referrers.iter().map(|&(h, n)| (h.to_owned(), n)).collect(),
        devices: vec![("mobile", humans), (BOT_DEVICE, bots)],
    }
}

/// The stats with devices sorted: the store does not order them.
async fn stats(store: &Store) -> LinkStats {
    let mut stats = links::stats(store, 1, 30, 10).await.unwrap();
    stats.devices.sort();
    stats
}

async fn stats_order_days_and_referrers_and_stored_plus_pending_equals_stored_after(store: &Store) {
    links::insert(store, &plain(1, "https://example.com/1", None))
        .await
        .unwrap();
    let stored = link_clicks(
        &[(3, 1, 0), (1, 5, 2), (2, 2, 1)],
        &[("b.example", 5), ("c.example", 9), ("a.example", 5)],
    );
    links::apply_clicks(
        store,
        &ClickBatch {
            links: vec![stored],
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let recent = links::stats(store, 1, 2, 2).await.unwrap();
    // The last two days, newest first; the top two referrers, ties by host.
    assert_eq!(recent.days, [(3, 1, 0), (2, 2, 1)]);
    assert_eq!(
        recent.referrers,
        [("c.example".to_owned(), 9), ("a.example".to_owned(), 5)]
    );
    // Bots are counted over every day, not only those listed.
    assert_eq!(recent.bot_clicks, 3);

    // What the server shows before a flush (stored + pending) is what it shows after.
    // d.example comes to tie with a.example: both orders break the tie by host.
    let pending = link_clicks(
        &[(4, 2, 1), (2, 1, 0)],
        &[("b.example", 2), ("d.example", 5)],
    );
    let mut merged = stats(store).await;
    merged.add(&pending);
    merged.devices.sort();
    links::apply_clicks(
        store,
        &ClickBatch {
            links: vec![pending],
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let after = stats(store).await;
    assert_eq!(merged, after);
    assert_eq!(after.days, [(4, 2, 1), (3, 1, 0), (2, 3, 1), (1, 5, 2)]);
    assert_eq!(after.bot_clicks, 4);
    let hosts: Vec<&str> = after.referrers.iter().map(|r| r.0.as_str()).collect();
    assert_eq!(hosts, ["c.example", "b.example", "a.example", "d.example"]);
}

async fn two_leasers_never_hand_out_the_same_id(store: &Store) {
    // Two instances on one database, small blocks so they lease often and concurrently.
    let one = Arc::new(IdBlocks::new(store.clone(), "links", 3));
    let two = Arc::new(IdBlocks::new(store.clone(), "links", 3));
    let take = |blocks: Arc<IdBlocks>| async move {
        let mut ids = Vec::new();
        for _ in 0..20 {
            ids.push(blocks.next_id().await.unwrap());
        }
        ids
    };
    let (a, b, c) = tokio::join!(take(one.clone()), take(two.clone()), take(one.clone()));
    let all: Vec<i64> = a.iter().chain(&b).chain(&c).copied().collect();
    let distinct: HashSet<i64> = all.iter().copied().collect();
    assert_eq!(distinct.len(), all.len(), "{a:?} {b:?} {c:?}");
    assert!(b.windows(2).all(|w| w[0] < w[1]), "{b:?}");
    // A leaser started later (a restart) continues past every id handed out, even those
    // left unused in the others' blocks.
    let later = IdBlocks::new(store.clone(), "links", 3);
    let next = later.next_id().await.unwrap();
    let highest = all.iter().max().copied().unwrap();
    assert!(next > highest, "{next} after {highest}");
}
