//! The transactional outbox: events commit with their change, the relay publishes them to the
//! queue at least once, in order per aggregate, never skipping a late commit, with several
//! relays and across a relay crash; consumers apply each event once.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use basis_queue::{Backend, topic_queue};
use basis_server::clock::{Clock as _, ManualClock};
use basis_server::outbox::{EVENTS_TOPIC, Envelope, LEASE_MS, Relay, envelope};
use basis_store::outbox::{self, NewEvent, OutboxConn as _};
use basis_store::{ConnectOptions, Pools, Store};
use serde_json::json;
use sqlx::Connection as _;
use tempfile::TempDir;

use crate::helpers::{Engine, TestApp};
use crate::jobs_support::eventually;
use crate::on_both_engines;

/// A store and a queue on one fresh database, with a manual clock and no server.
struct Rig {
    store: Store,
    backend: Arc<dyn Backend>,
    clock: Arc<ManualClock>,
    url: String,
    _dir: TempDir,
}

async fn rig(engine: &Engine) -> Rig {
    let dir = tempfile::tempdir().unwrap();
    let url = match engine.fresh_database().await {
        Some(url) => url,
        None => Store::sqlite_url_in(dir.path()),
    };
    let store = Store::connect(&url, &ConnectOptions::default())
        .await
        .unwrap();
    store.migrate().await.unwrap();
    let clock = Arc::new(ManualClock::starting_now());
    let backend: Arc<dyn Backend> = match store.pools() {
        Pools::Sqlite { write, .. } => {
            let queue = basis_queue::sqlite::SqliteQueue::new(write.clone(), clock.clone());
            queue.install().await.unwrap();
            Arc::new(queue)
        }
        Pools::Postgres { .. } => basis_queue::connect(&url, clock.clone()).await.unwrap(),
    };
    backend.subscribe(EVENTS_TOPIC, "test").await.unwrap();
    Rig {
        store,
        backend,
        clock,
        url,
        _dir: dir,
    }
}

impl Rig {
    fn relay(&self) -> Relay {
        Relay::new(self.store.clone(), self.backend.clone(), self.clock.clone())
    }

    /// Consumes every event waiting for the `test` group, one at a time in queue order,
    /// applying each event id once (the processed-events table); returns what was applied
    /// and how many deliveries were duplicates.
    async fn consume(&self) -> (Vec<Envelope>, usize) {
        let queue = topic_queue(EVENTS_TOPIC, "test");
        let (mut applied, mut duplicates) = (Vec::new(), 0);
        loop {
            let claimed = self
                .backend
                .claim(&queue, Duration::from_secs(60), 1)
                .await
                .unwrap();
            let Some(job) = claimed.into_iter().next() else {
                break;
            };
            let event = envelope(&job.payload).expect("an outbox envelope");
            assert_eq!(job.kind, event.kind);
            if outbox::first_delivery(&self.store, "test", event.id, self.clock.now_ms())
                .await
                .unwrap()
            {
                applied.push(event);
            } else {
                duplicates += 1;
            }
            self.backend.complete(&job.lease, None).await.unwrap();
        }
        (applied, duplicates)
    }

    async fn waiting(&self) -> i64 {
        outbox::backlog(&self.store).await.unwrap().0
    }
}

/// A write transaction's opening statement: SQLite takes its write lock up front, as the
/// store's writers do, so that concurrent writers wait for each other instead of failing.
fn begin(rig: &Rig) -> &'static str {
    match rig.store.pools() {
        Pools::Sqlite { .. } => "BEGIN IMMEDIATE",
        Pools::Postgres { .. } => "BEGIN",
    }
}

fn event(aggregate: &str, seq: i64) -> NewEvent {
    NewEvent {
        kind: "test.happened",
        aggregate: aggregate.to_owned(),
        payload: json!({ "seq": seq }),
        at: 0,
    }
}

/// Runs `$body` with `$conn` bound to a new connection of its own (not from the store's
/// pools), on the rig's engine.
macro_rules! own_connection {
    ($rig:expr, $conn:ident => $body:expr) => {
        match $rig.store.pools() {
            Pools::Sqlite { .. } => {
                let mut $conn = sqlx::SqliteConnection::connect(&$rig.url).await.unwrap();
                $body
            }
            Pools::Postgres { .. } => {
                let mut $conn = sqlx::PgConnection::connect(&$rig.url).await.unwrap();
                $body
            }
        }
    };
}

/// Asserts that every aggregate's applied events carry seq 1, 2, 3… in order.
fn assert_in_order_per_aggregate(applied: &[Envelope], per_aggregate: &HashMap<String, i64>) {
    let mut seen: HashMap<&str, i64> = HashMap::new();
    for e in applied {
        let seq = e.data["seq"].as_i64().unwrap();
        let last = seen.entry(&e.aggregate).or_insert(0);
        assert_eq!(seq, *last + 1, "{} out of order: {applied:?}", e.aggregate);
        *last = seq;
    }
    for (aggregate, count) in per_aggregate {
        assert_eq!(
            seen.get(aggregate.as_str()),
            Some(count),
            "{aggregate} incomplete"
        );
    }
}

async fn a_transaction_that_commits_late_is_published_after_and_in_order(engine: Engine) {
    let rig = rig(&engine).await;
    let relays = [rig.relay(), rig.relay(), rig.relay()];
    let postgres = matches!(engine, Engine::Postgres(_));
    own_connection!(rig, t1 => own_connection!(rig, t2 => {
        // T1 begins first. On PostgreSQL it takes its transaction id now; SQLite's single
        // writer lets a write transaction wait for the lock only when it writes, so T1 begins
        // deferred and writes after T2 committed.
        sqlx::query("BEGIN").execute(&mut t1).await.unwrap();
        if postgres {
            t1.append_many(&[event("order:1", 1)]).await.unwrap();
        }
        sqlx::query("BEGIN").execute(&mut t2).await.unwrap();
        t2.append_many(&[event("order:2", 1)]).await.unwrap();
        sqlx::query("COMMIT").execute(&mut t2).await.unwrap();
        if postgres {
            // T2 has committed, but T1 (older) is still open: nothing may go out yet, or
            // T1's row, committing later with a smaller id, would be overtaken.
            for relay in &relays {
                assert_eq!(relay.run_once().await.unwrap(), 0);
            }
        } else {
            t1.append_many(&[event("order:1", 1)]).await.unwrap();
        }
        t1.append_many(&[event("order:1", 2)]).await.unwrap();
        sqlx::query("COMMIT").execute(&mut t1).await.unwrap();
    }));
    // Another test's open transaction in the cluster may hold the horizon for a moment.
    let published = AtomicUsize::new(0);
    eventually("all three published", || async {
        for relay in &relays {
            published.fetch_add(relay.run_once().await.unwrap(), Ordering::SeqCst);
        }
        (rig.waiting().await == 0).then_some(())
    })
    .await;
    assert_eq!(
        published.into_inner(),
        3,
        "one relay leads and publishes all three once"
    );
    let (applied, duplicates) = rig.consume().await;
    assert_eq!(duplicates, 0);
    let per_aggregate = HashMap::from([("order:1".to_owned(), 2), ("order:2".to_owned(), 1)]);
    assert_in_order_per_aggregate(&applied, &per_aggregate);
}

/// PostgreSQL only: a row committed by a newer transaction is held back while an older one
/// is open, so a later row of the same aggregate, written by a transaction older still,
/// cannot be published before it.
async fn a_settled_row_never_overtakes_an_unsettled_one_of_the_same_aggregate(engine: Engine) {
    if !matches!(engine, Engine::Postgres(_)) {
        return;
    }
    let rig = rig(&engine).await;
    let relay = rig.relay();
    let mut oldest = sqlx::PgConnection::connect(&rig.url).await.unwrap();
    let mut middle = sqlx::PgConnection::connect(&rig.url).await.unwrap();
    let mut newest = sqlx::PgConnection::connect(&rig.url).await.unwrap();
    for conn in [&mut oldest, &mut middle, &mut newest] {
        sqlx::query("BEGIN").execute(&mut *conn).await.unwrap();
        sqlx::query("SELECT pg_current_xact_id()")
            .execute(&mut *conn)
            .await
            .unwrap();
    }
    // The newest transaction writes event 1 of the link and commits; then the oldest writes
    // event 2 (it would have waited on the link's lock) and commits. The middle one stays
    // open: event 2 is below the horizon, event 1 is not.
    newest.append_many(&[event("link:7", 1)]).await.unwrap();
    sqlx::query("COMMIT").execute(&mut newest).await.unwrap();
    oldest.append_many(&[event("link:7", 2)]).await.unwrap();
    sqlx::query("COMMIT").execute(&mut oldest).await.unwrap();
    assert_eq!(relay.run_once().await.unwrap(), 0);
    assert_eq!(rig.waiting().await, 2);
    sqlx::query("ROLLBACK").execute(&mut middle).await.unwrap();
    eventually("both published", || async {
        relay.run_once().await.unwrap();
        (rig.waiting().await == 0).then_some(())
    })
    .await;
    let (applied, _) = rig.consume().await;
    assert_in_order_per_aggregate(&applied, &HashMap::from([("link:7".to_owned(), 2)]));
}

async fn relays_racing_writers_and_each_other_deliver_everything_in_order(engine: Engine) {
    let rig = Arc::new(rig(&engine).await);
    const AGGREGATES: i64 = 6;
    const EVENTS: i64 = 30;
    let writers: Vec<_> = (0..AGGREGATES)
        .map(|a| {
            let rig = rig.clone();
            tokio::spawn(async move {
                for seq in 1..=EVENTS {
                    own_connection!(rig, conn => {
                        sqlx::query(begin(&rig)).execute(&mut conn).await.unwrap();
                        conn.append_many(&[event(&format!("agg:{a}"), seq)]).await.unwrap();
                        sqlx::query("COMMIT").execute(&mut conn).await.unwrap();
                    });
                }
            })
        })
        .collect();
    let relays: Vec<_> = (0..3)
        .map(|_| {
            let rig = rig.clone();
            tokio::spawn(async move {
                let relay = rig.relay();
                let mut published = 0;
                for round in 0..200 {
                    published += relay.run_once().await.unwrap();
                    if round % 50 == 49 {
                        // Let the lease lapse now and then: another relay may take over
                        // while this one is between passes.
                        rig.clock
                            .advance(Duration::from_millis(LEASE_MS as u64 + 1));
                    }
                    tokio::task::yield_now().await;
                }
                published
            })
        })
        .collect();
    for w in writers {
        w.await.unwrap();
    }
    for r in relays {
        r.await.unwrap();
    }
    // Whatever the race left is published by a last relay once the leases lapse.
    rig.clock
        .advance(Duration::from_millis(LEASE_MS as u64 + 1));
    let last = rig.relay();
    eventually("the backlog drained", || async {
        last.run_once().await.unwrap();
        (rig.waiting().await == 0).then_some(())
    })
    .await;
    let (applied, _) = rig.consume().await;
    let per_aggregate = (0..AGGREGATES)
        .map(|a| (format!("agg:{a}"), EVENTS))
        .collect();
    assert_in_order_per_aggregate(&applied, &per_aggregate);
}

async fn a_relay_crashing_after_publishing_loses_nothing_and_consumers_apply_once(engine: Engine) {
    let rig = rig(&engine).await;
    let events: Vec<NewEvent> = (1..=5)
        .flat_map(|seq| [event("a", seq), event("b", seq)])
        .collect();
    own_connection!(rig, conn => {
        sqlx::query("BEGIN").execute(&mut conn).await.unwrap();
        conn.append_many(&events).await.unwrap();
        sqlx::query("COMMIT").execute(&mut conn).await.unwrap();
    });
    // The first relay leads, publishes the first six events and dies before deleting them.
    let first = rig.relay();
    assert!(first.lead().await.unwrap());
    // Another test's open transaction anywhere in the cluster holds the horizon back for a
    // moment: wait until the six rows are readable.
    let rows = eventually("six settled rows", || async {
        let rows = outbox::pending(&rig.store, 6).await.unwrap();
        (rows.len() == 6).then_some(rows)
    })
    .await;
    assert_eq!(first.publish(&rows).await.len(), 6);
    drop(first);
    // A restarted relay waits for the dead one's lease, then publishes everything left.
    let second = rig.relay();
    assert_eq!(
        second.run_once().await.unwrap(),
        0,
        "the lease is still held"
    );
    rig.clock.advance(Duration::from_millis(LEASE_MS as u64));
    let published = AtomicUsize::new(0);
    eventually("the rest published", || async {
        published.fetch_add(second.run_once().await.unwrap(), Ordering::SeqCst);
        (rig.waiting().await == 0).then_some(())
    })
    .await;
    assert_eq!(published.into_inner(), 10);
    let (applied, duplicates) = rig.consume().await;
    assert_eq!(
        duplicates, 6,
        "the six events published twice were applied once"
    );
    assert_eq!(applied.len(), 10);
    let per_aggregate = HashMap::from([("a".to_owned(), 5), ("b".to_owned(), 5)]);
    assert_in_order_per_aggregate(&applied, &per_aggregate);
}

async fn a_refused_write_announces_nothing_and_a_done_one_announces_once(engine: Engine) {
    let rig = rig(&engine).await;
    let link = |id: i64, alias: &str| basis_store::links::LinkRow {
        id,
        alias: Some(alias.to_owned()),
        long_url: format!("https://example.com/{id}"),
        created_at: 1,
        expires_at: None,
        max_clicks: None,
        redirect_type: 301,
        password_hash: None,
        owner_id: Some("ann".into()),
        rules: None,
        domain: None,
    };
    basis_store::links::insert(&rig.store, &link(1, "taken"))
        .await
        .unwrap();
    // A taken alias refuses the whole batch: the link that was fine is not announced either.
    let refused =
        basis_store::links::insert_many(&rig.store, &[link(2, "free"), link(3, "taken")]).await;
    assert!(matches!(
        refused,
        Err(basis_store::Error::Conflict("alias"))
    ));
    assert!(basis_store::links::delete(&rig.store, 1, 5).await.unwrap());
    assert!(!basis_store::links::delete(&rig.store, 1, 6).await.unwrap());
    let relay = rig.relay();
    eventually("the events published", || async {
        relay.run_once().await.unwrap();
        (rig.waiting().await == 0).then_some(())
    })
    .await;
    let (applied, _) = rig.consume().await;
    let kinds: Vec<(&str, &str)> = applied
        .iter()
        .map(|e| (e.kind.as_str(), e.aggregate.as_str()))
        .collect();
    assert_eq!(
        kinds,
        [("link.created", "link:1"), ("link.deleted", "link:1")]
    );
    assert_eq!(applied[1].data["ownerId"], "ann");
}

async fn the_outbox_depth_and_lag_are_on_the_metrics_page(engine: Engine) {
    let app = TestApp::spawn_with(&engine, |c| {
        c.jobs.workers = basis_server::jobs::config::Workers::Off;
    })
    .await;
    let relay = Relay::new(
        app.state.store.clone(),
        app.state.jobs.backend().clone(),
        app.clock.clone(),
    );
    let store = app.state.store.clone();
    let at = app.clock.now_ms();
    let events = [event("x", 1), event("x", 2)].map(|e| NewEvent { at, ..e });
    match store.pools() {
        Pools::Sqlite { write, .. } => {
            let mut conn = write.acquire().await.unwrap();
            conn.append_many(&events).await.unwrap();
        }
        Pools::Postgres { write, .. } => {
            let mut conn = write.acquire().await.unwrap();
            conn.append_many(&events).await.unwrap();
        }
    }
    app.clock.advance(Duration::from_secs(90));
    // The gauges are process-wide and other tests' relays set them too: refresh and read
    // until this app's figures are the ones shown.
    eventually("the outbox gauges on /metrics", || async {
        relay.refresh_gauges().await.unwrap();
        let metrics = app.get("/metrics").await.text().await.unwrap();
        (metrics.contains("outbox_depth 2") && metrics.contains("outbox_lag_ms 90000"))
            .then_some(())
    })
    .await;
}

on_both_engines!(
    a_transaction_that_commits_late_is_published_after_and_in_order,
    a_settled_row_never_overtakes_an_unsettled_one_of_the_same_aggregate,
    relays_racing_writers_and_each_other_deliver_everything_in_order,
    a_relay_crashing_after_publishing_loses_nothing_and_consumers_apply_once,
    a_refused_write_announces_nothing_and_a_done_one_announces_once,
    the_outbox_depth_and_lag_are_on_the_metrics_page,
);
