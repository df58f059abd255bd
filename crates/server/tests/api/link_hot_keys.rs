//! A hot link on sharded links: thousands of redirects of one link are served from the
//! instance's cache and reach its shard database as one counter row written once per flush,
//! never one write per click.

use basis_store::Pools;
use serde_json::json;

use crate::helpers::{Engine, TestApp};

/// `(stored human clicks of the link to url, its day rows, click batches applied)` on the
/// one shard database holding that link, and that database's number.
async fn on_home_shard(app: &TestApp, url: &str) -> (usize, i64, i64, i64) {
    let layout = app.state.store.link_shards().expect("sharded").layout();
    for (number, database) in layout.databases.iter().enumerate() {
        let Pools::Postgres { write, .. } = database.store.pools() else {
            unreachable!("shard databases are PostgreSQL")
        };
        let id: Option<i64> = sqlx::query_scalar("SELECT id FROM links WHERE long_url = $1")
            .bind(url)
            .fetch_optional(write)
            .await
            .unwrap();
        let Some(id) = id else { continue };
        let (clicks, rows): (i64, i64) = sqlx::query_as(
            "SELECT CAST(COALESCE(SUM(clicks), 0) AS BIGINT), COUNT(*) \
             FROM link_daily_clicks WHERE link_id = $1",
        )
        .bind(id)
        .fetch_one(write)
        .await
        .unwrap();
        let batches: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM click_batches_applied")
            .fetch_one(write)
            .await
            .unwrap();
        return (number, clicks, rows, batches);
    }
    panic!("no shard database holds {url}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hot_link_costs_its_shard_one_counter_write_per_flush_not_one_per_click() {
    let Some(Engine::Postgres(url)) = Engine::postgres() else {
        return;
    };
    let app = TestApp::spawn(&Engine::Sharded(url)).await;
    let hot_url = "https://example.com/hot";
    let hot = app.create(json!({"longUrl": hot_url})).await["shortCode"]
        .as_str()
        .unwrap()
        .to_owned();
    for _ in 0..2000 {
        assert_eq!(app.follow(&hot).await.status(), 301);
    }
    assert!(app.state.link_cache.holds(&hot), "served from the cache");
    app.state.clicks.flush().await.unwrap();
    assert!(
        app.state
            .clicks
            .drain(std::time::Duration::from_secs(30))
            .await,
        "the flush is applied"
    );
    let (_, clicks, rows, batches) = on_home_shard(&app, hot_url).await;
    assert_eq!(clicks, 2000, "every click counted");
    assert_eq!(rows, 1, "in one counter row");
    assert_eq!(batches, 1, "written by one batch");

    // The next flush adds to the same row, again once.
    for _ in 0..500 {
        assert_eq!(app.follow(&hot).await.status(), 301);
    }
    app.state.clicks.flush().await.unwrap();
    assert!(
        app.state
            .clicks
            .drain(std::time::Duration::from_secs(30))
            .await
    );
    let (_, clicks, rows, batches) = on_home_shard(&app, hot_url).await;
    assert_eq!((clicks, rows, batches), (2500, 1, 2));
    assert_eq!(app.link(&hot).await["clickCount"], 2500);
}
