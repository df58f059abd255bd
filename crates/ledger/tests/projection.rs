//! The event feed and the read models on both engines.

mod common;

use basis_ledger::projection::ViewBalance;
use basis_ledger::{Account, EventKind, Ledger, Position, Projector, TransferRequest};
use common::{engines, funded, scalar, usd};

/// Some history: deposits, posted, pending-then-posted, voided and expired transfers.
async fn history(l: &Ledger, clock: &basis_ledger::ManualClock) -> Vec<i64> {
    let a = funded(l, &usd(), 1_000, false).await;
    let b = funded(l, &usd(), 500, false).await;
    let c = funded(l, &usd(), 0, true).await;
    l.transfer(&TransferRequest::posted(a, b, 120, &usd()))
        .await
        .unwrap();
    let hold = l
        .transfer(&TransferRequest::posted(b, c, 300, &usd()).pending(None))
        .await
        .unwrap();
    l.post(hold.id, Some(250)).await.unwrap();
    let hold = l
        .transfer(&TransferRequest::posted(a, c, 50, &usd()).pending(None))
        .await
        .unwrap();
    l.void(hold.id).await.unwrap();
    l.transfer(&TransferRequest::posted(c, a, 40, &usd()).pending(Some(1_000)))
        .await
        .unwrap();
    clock.advance_ms(86_400_000); // the next day, for the daily totals
    l.transfer(&TransferRequest::posted(c, b, 75, &usd()))
        .await
        .unwrap();
    assert_eq!(l.expire_due(10).await.unwrap(), 1);
    l.transfer(&TransferRequest::posted(a, b, 5, &usd()).pending(None))
        .await
        .unwrap();
    vec![a, b, c]
}

async fn write_side(l: &Ledger) -> Vec<ViewBalance> {
    let accounts: Vec<Account> = basis_store::on_pool!(l.store(), read, pool => {
        sqlx::query_as("SELECT * FROM ledger_accounts ORDER BY id").fetch_all(pool).await
    })
    .unwrap();
    accounts
        .into_iter()
        .map(|a| ViewBalance {
            account_id: a.id,
            currency: a.currency,
            balance: a.balance,
            pending_debits: a.pending_debits,
            pending_credits: a.pending_credits,
            version: a.version,
        })
        .collect()
}

#[tokio::test]
async fn the_read_models_equal_the_write_side_and_a_rebuild_hashes_equal_to_the_live_ones() {
    for b in engines().await {
        let l = &b.ledger;
        history(l, &b.clock).await;
        let projector = Projector::new(l.clone());
        assert!(
            projector.lag_ms().await.unwrap() > 0,
            "{}: behind before catching up",
            b.name
        );
        let applied = projector.catch_up_all(3).await.unwrap();
        let events = scalar(l, "SELECT COUNT(*) FROM ledger_events").await;
        assert_eq!(
            applied as i64, events,
            "{}: every event once, in batches of 3",
            b.name
        );
        assert_eq!(projector.lag_ms().await.unwrap(), 0);
        assert_eq!(
            projector.balances().await.unwrap(),
            write_side(l).await,
            "{}",
            b.name
        );
        let lines = scalar(l, "SELECT COUNT(*) FROM ledger_entries").await;
        assert_eq!(
            scalar(l, "SELECT COUNT(*) FROM ledger_view_entries").await,
            lines
        );
        // Day 1: two deposits, 120 and 250; day 2: 75.
        let day2 = scalar(
            l,
            "SELECT amount FROM ledger_view_daily ORDER BY day DESC LIMIT 1",
        )
        .await;
        assert_eq!(day2, 75, "{}", b.name);
        let total = scalar(
            l,
            "SELECT CAST(SUM(transfers) AS BIGINT) FROM ledger_view_daily",
        )
        .await;
        assert_eq!(total, 5, "{}: each posted transfer counted once", b.name);

        let live = projector.hash().await.unwrap();
        assert_eq!(projector.rebuild(100).await.unwrap() as i64, events);
        assert_eq!(projector.hash().await.unwrap(), live, "{}", b.name);
        // And the hash does see the read models: an edit changes it.
        basis_store::on_pool!(l.store(), write, pool => {
            sqlx::query("UPDATE ledger_view_balances SET balance = balance + 1 WHERE account_id = 1")
                .execute(pool).await.map(drop)
        })
        .unwrap();
        assert_ne!(projector.hash().await.unwrap(), live);
    }
}

#[tokio::test]
async fn events_committed_while_no_projector_ran_are_caught_up_by_the_next_one() {
    for b in engines().await {
        let l = &b.ledger;
        let accounts = history(l, &b.clock).await;
        let first = Projector::new(l.clone());
        assert!(first.catch_up(4).await.unwrap() > 0);
        drop(first); // the process dies here; events keep being committed
        l.transfer(&TransferRequest::posted(
            accounts[0],
            accounts[1],
            1,
            &usd(),
        ))
        .await
        .unwrap();
        let restarted = Projector::new(l.clone());
        restarted.catch_up_all(1_000).await.unwrap();
        assert_eq!(
            restarted.balances().await.unwrap(),
            write_side(l).await,
            "{}",
            b.name
        );
        // What `basis ledger rebuild` runs.
        let report = restarted.rebuild_and_compare(7).await.unwrap();
        assert!(
            report.matches() && report.replayed > 20,
            "{}: {report:?}",
            b.name
        );
    }
}

#[tokio::test]
async fn concurrent_runners_never_apply_an_event_twice() {
    for b in engines().await {
        let l = &b.ledger;
        history(l, &b.clock).await;
        let runners: Vec<_> = (0..4)
            .map(|_| {
                let p = Projector::new(l.clone());
                tokio::spawn(async move { p.catch_up_all(2).await })
            })
            .collect();
        let mut applied = 0;
        for r in runners {
            applied += r.await.unwrap().unwrap();
        }
        let events = scalar(l, "SELECT COUNT(*) FROM ledger_events").await;
        assert!(applied as i64 >= events, "{}", b.name);
        let p = Projector::new(l.clone());
        assert_eq!(
            p.balances().await.unwrap(),
            write_side(l).await,
            "{}",
            b.name
        );
        let lines = scalar(l, "SELECT COUNT(*) FROM ledger_entries").await;
        assert_eq!(
            scalar(l, "SELECT COUNT(*) FROM ledger_view_entries").await,
            lines
        );
    }
}

#[tokio::test]
async fn the_feed_pages_through_every_event_once_in_order() {
    for b in engines().await {
        let l = &b.ledger;
        let accounts = history(l, &b.clock).await;
        let mut after = Position::START;
        let mut seen = Vec::new();
        loop {
            let page = l.events_after(after, 4).await.unwrap();
            let Some(last) = page.last() else { break };
            after = last.position();
            seen.extend(page);
        }
        let positions: Vec<_> = seen.iter().map(|e| e.position()).collect();
        assert!(
            positions.windows(2).all(|w| w[0] < w[1]),
            "{}: strictly increasing",
            b.name
        );
        assert_eq!(
            seen.len() as i64,
            scalar(l, "SELECT COUNT(*) FROM ledger_events").await
        );
        let stream = l.stream(accounts[0]).await.unwrap();
        assert_eq!(stream[0].kind, EventKind::AccountOpened);
        assert_eq!(
            stream.iter().map(|e| e.version).collect::<Vec<_>>(),
            (1..=stream.len() as i64).collect::<Vec<_>>()
        );
    }
}

/// PostgreSQL hands out sequence numbers at insert and makes them visible at commit: an older
/// transaction still open must hold back the events committed after it, or a reader would
/// move past its events and never see them.
#[tokio::test]
async fn the_feed_holds_back_what_an_older_open_transaction_may_still_commit() {
    let Some(b) = common::postgres().await else {
        return;
    };
    let l = &b.ledger;
    let a = funded(l, &usd(), 100, false).await;
    let c = funded(l, &usd(), 0, false).await;
    let basis_store::Pools::Postgres { write, .. } = l.store().pools() else {
        unreachable!()
    };
    // An older transaction that has written an event and not committed yet.
    let mut older = write.begin().await.unwrap();
    sqlx::query(
        "INSERT INTO ledger_events (tx, account_id, version, kind, currency, at) \
                 VALUES (pg_current_xact_id()::text::bigint, $1, 1000, 'TransferVoided', 'USD', 0)",
    )
    .bind(a)
    .execute(&mut *older)
    .await
    .unwrap();
    let before = l.events_after(Position::START, 1_000).await.unwrap().len();
    l.transfer(&TransferRequest::posted(a, c, 10, &usd()))
        .await
        .unwrap();
    let during = l.events_after(Position::START, 1_000).await.unwrap();
    assert_eq!(
        during.len(),
        before,
        "the newer transfer waits behind the open transaction"
    );
    older.commit().await.unwrap();
    let after = l.events_after(Position::START, 1_000).await.unwrap();
    assert_eq!(
        after.len(),
        before + 3,
        "the older event, then the transfer's two"
    );
    assert_eq!(
        after[before].version, 1000,
        "the older transaction's event comes first"
    );
}
