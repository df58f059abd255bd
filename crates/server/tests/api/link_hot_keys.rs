//! A hot link on sharded links: thousands of redirects of one link are served from the
//! instance's cache and reach its shard database as one counter row written once per flush,
//! never one write per click.

use std::time::Duration;

use basis_server::jobs::CLICKS_QUEUE;
use basis_server::links::click_batches::ClickBatchJob;
use basis_store::{Pools, links};
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

/// The window between a shard database applying its part of a click batch and the catalog
/// recording the whole batch: a count read then already holds the part, so the recorder
/// must stop adding that part as unstored (it once showed 6 for 3 clicks).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_count_read_while_a_batch_is_on_its_shard_but_not_yet_recorded_whole_is_not_doubled() {
    let Some(Engine::Postgres(url)) = Engine::postgres() else {
        return;
    };
    let app = TestApp::spawn_with(&Engine::Sharded(url), |c| {
        c.jobs.workers = basis_server::jobs::config::Workers::Off;
    })
    .await;
    let url = "https://example.com/window";
    let code = app.create(json!({"longUrl": url})).await["shortCode"]
        .as_str()
        .unwrap()
        .to_owned();
    for _ in 0..3 {
        assert_eq!(app.follow(&code).await.status(), 301);
    }
    app.state.clicks.flush().await.unwrap();
    assert_eq!(
        app.link(&code).await["clickCount"],
        3,
        "in flight, counted once"
    );

    // A worker's application of the batch, stopped between the shard and the catalog.
    let jobs = crate::jobs_support::backend(&app)
        .claim(CLICKS_QUEUE, Duration::from_secs(30), 10)
        .await
        .unwrap();
    assert_eq!(jobs.len(), 1, "{jobs:?}");
    let job: ClickBatchJob = serde_json::from_value(jobs[0].payload.clone()).unwrap();
    let id = job.batch.clone();
    let batch = job.into_batch().expect("a valid batch");
    links::apply_clicks_once(&app.state.store, &id, 0, &batch)
        .await
        .unwrap()
        .expect("applied now");
    let Pools::Postgres { write, .. } = app.state.store.pools() else {
        unreachable!("the catalog is PostgreSQL")
    };
    sqlx::query("DELETE FROM click_batches_applied WHERE batch_id = $1")
        .bind(&id)
        .execute(write)
        .await
        .unwrap();
    assert_eq!(
        on_home_shard(&app, url).await.1,
        3,
        "the shard holds the part"
    );
    assert!(app.state.clicks.has_in_flight(), "not recorded whole yet");

    assert_eq!(
        app.link(&code).await["clickCount"],
        3,
        "stored, not added again"
    );
    let stats: serde_json::Value = app
        .get(&format!("/links/{code}/stats"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(stats["totalClicks"], 3);
}
