//! A bank test in the Jepsen style, in process: writers move money between ten accounts
//! while readers sum the balances; every read must see the initial total, and at the end every
//! acknowledged transfer is applied exactly once (none lost, none doubled).

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use basis_ledger::{Error, TransferRequest};
use common::{assert_invariants, engines, funded, scalar, usd};
use rand::Rng;

const ACCOUNTS: usize = 10;
const INITIAL: i64 = 1_000;
const WRITERS: usize = 16;
const TRANSFERS_EACH: usize = 40;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_transfers_never_create_lose_or_double_money() {
    for b in engines().await {
        let l = b.ledger.clone();
        let mut ids = Vec::new();
        for _ in 0..ACCOUNTS {
            ids.push(funded(&l, &usd(), INITIAL, false).await);
        }
        let ids = Arc::new(ids);
        let in_list = ids.iter().map(i64::to_string).collect::<Vec<_>>().join(",");
        let total_sql = format!(
            "SELECT CAST(SUM(balance) AS BIGINT) FROM ledger_accounts WHERE id IN ({in_list})"
        );
        let done = Arc::new(AtomicBool::new(false));

        let writers: Vec<_> = (0..WRITERS)
            .map(|_| {
                let (l, ids) = (l.clone(), ids.clone());
                tokio::spawn(async move {
                    let mut acknowledged = Vec::new();
                    for _ in 0..TRANSFERS_EACH {
                        let (from, to, amount) = {
                            let mut rng = rand::rng();
                            let from = ids[rng.random_range(0..ACCOUNTS)];
                            let to = ids[rng.random_range(0..ACCOUNTS)];
                            (from, to, rng.random_range(1..=300))
                        };
                        match l
                            .transfer(&TransferRequest::posted(from, to, amount, &usd()))
                            .await
                        {
                            Ok(t) => acknowledged.push((t.id, from, to, amount)),
                            Err(Error::InsufficientFunds { .. } | Error::SameAccount) => {}
                            Err(other) => panic!("transfer failed: {other:?}"),
                        }
                    }
                    acknowledged
                })
            })
            .collect();
        let readers: Vec<_> = (0..4)
            .map(|_| {
                let (l, done, sql) = (l.clone(), done.clone(), total_sql.clone());
                tokio::spawn(async move {
                    let mut reads = 0u64;
                    while !done.load(Ordering::Relaxed) || reads == 0 {
                        let total = scalar(&l, &sql).await;
                        assert_eq!(
                            total,
                            INITIAL * ACCOUNTS as i64,
                            "a read saw money appear or vanish"
                        );
                        reads += 1;
                        tokio::task::yield_now().await;
                    }
                    reads
                })
            })
            .collect();

        let mut acknowledged = Vec::new();
        for w in writers {
            acknowledged.extend(w.await.expect("writer"));
        }
        done.store(true, Ordering::Relaxed);
        let mut reads = 0;
        for r in readers {
            reads += r.await.expect("reader");
        }
        assert!(
            reads > 0 && acknowledged.len() > 100,
            "{}: {reads} reads, {} transfers",
            b.name,
            acknowledged.len()
        );

        // Every acknowledged transfer applied once: the balances are what they imply.
        for id in ids.iter() {
            let expected: i64 = INITIAL
                + acknowledged
                    .iter()
                    .filter(|t| t.2 == *id)
                    .map(|t| t.3)
                    .sum::<i64>()
                - acknowledged
                    .iter()
                    .filter(|t| t.1 == *id)
                    .map(|t| t.3)
                    .sum::<i64>();
            assert_eq!(
                l.account(*id).await.unwrap().balance,
                expected,
                "{}: account {id}",
                b.name
            );
        }
        let stored = scalar(&l, &format!(
            "SELECT COUNT(*) FROM ledger_transfers WHERE debit_account_id IN ({in_list}) AND credit_account_id IN ({in_list})"
        ))
        .await;
        assert_eq!(
            stored,
            acknowledged.len() as i64,
            "{}: no transfer stored twice or unacknowledged",
            b.name
        );
        assert_invariants(&l).await;
        println!(
            "{}: {} transfers, {reads} consistent reads",
            b.name,
            acknowledged.len()
        );
    }
}
