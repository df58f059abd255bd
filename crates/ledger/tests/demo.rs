//! The anomaly demos assert what they print, on both engines.

mod common;

use basis_ledger::demo::{self, DemoDb};

async fn databases() -> (Vec<DemoDb>, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let sqlite = format!("sqlite://{}", dir.path().join("demo.db").display());
    let mut all = vec![DemoDb::connect(&sqlite, 8).await.unwrap()];
    if let Some(url) = common::fresh_pg_database().await {
        all.push(DemoDb::connect(&url, 16).await.unwrap());
    }
    (all, dir)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_naive_withdrawal_loses_an_update_and_every_remedy_keeps_both() {
    let (dbs, _dir) = databases().await;
    for db in dbs {
        let rows = demo::lost_update(&db).await.unwrap();
        println!("{}", demo::lost_update_table(db.engine(), &rows));
        let balances: Vec<i64> = rows.iter().map(|r| r.final_balance).collect();
        assert_eq!(balances, [900, 800, 800, 800], "{}: {rows:?}", db.engine());
        assert_eq!(rows[0].retries + rows[1].retries, 0);
        assert!(
            rows[2].retries >= 1,
            "the optimistic check caught the conflict"
        );
        assert!(rows[3].retries >= 1, "the database refused the stale write");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_hundred_buyers_for_the_last_seat_oversell_naively_and_exactly_one_wins_guarded() {
    let (dbs, _dir) = databases().await;
    for db in dbs {
        let rows = demo::last_seat(&db).await.unwrap();
        println!("{}", demo::last_seat_table(db.engine(), &rows));
        let naive = &rows[0];
        assert!(
            naive.winners > 1 && naive.bookings > 1,
            "{}: the naive way oversells: {naive:?}",
            db.engine()
        );
        let guarded = &rows[1];
        assert_eq!(
            (guarded.winners, guarded.sold_out, guarded.bookings),
            (1, 99, 1),
            "{}",
            db.engine()
        );
    }
}
