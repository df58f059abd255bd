//! Random sequences of opens, deposits, transfers, pending transfers, posts, voids, timeouts
//! and expiry sweeps (with the injected clock), checked after every sequence against a model
//! and against the invariants; at the end the read models are rebuilt and compared.

mod common;

use std::collections::HashMap;

use basis_ledger::{Error, NewAccount, Projector, TransferRequest, TransferStatus};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};

use common::{Bench, assert_invariants, usd};

#[derive(Debug, Clone)]
enum Op {
    Open {
        overdraft: bool,
    },
    Deposit {
        to: usize,
        amount: i64,
    },
    Transfer {
        from: usize,
        to: usize,
        amount: i64,
        pending: Option<Option<i64>>,
    },
    Post {
        which: usize,
        amount: Option<i64>,
    },
    Void {
        which: usize,
    },
    Advance {
        ms: i64,
    },
    Expire,
}

fn op() -> impl Strategy<Value = Op> {
    let amount = 1i64..=400;
    prop_oneof![
        1 => any::<bool>().prop_map(|overdraft| Op::Open { overdraft }),
        2 => (0usize..8, amount.clone()).prop_map(|(to, amount)| Op::Deposit { to, amount }),
        6 => (0usize..8, 0usize..8, amount.clone(), prop::option::of(prop::option::of(1i64..5_000)))
            .prop_map(|(from, to, amount, pending)| Op::Transfer { from, to, amount, pending }),
        3 => (0usize..8, prop::option::of(1i64..=400)).prop_map(|(which, amount)| Op::Post { which, amount }),
        2 => (0usize..8).prop_map(|which| Op::Void { which }),
        2 => (1i64..3_000).prop_map(|ms| Op::Advance { ms }),
        1 => Just(Op::Expire),
    ]
}

/// Runs one sequence on fresh accounts and checks it against a model of the balances.
async fn run_case(b: &Bench, ops: Vec<Op>) {
    let l = &b.ledger;
    let mut accounts = Vec::new();
    let mut model: HashMap<i64, i64> = HashMap::new();
    let mut pendings: Vec<i64> = Vec::new();
    let mut resolved: HashMap<i64, u32> = HashMap::new();
    let open = |overdraft| NewAccount {
        currency: usd(),
        name: None,
        owner_id: Some("7".into()),
        allow_overdraft: overdraft,
    };
    for overdraft in [false, false, true] {
        accounts.push(l.open_account(&open(overdraft)).await.unwrap().id);
    }
    for op in ops {
        let pick = |i: usize| accounts[i % accounts.len()];
        match op {
            Op::Open { overdraft } => {
                accounts.push(l.open_account(&open(overdraft)).await.unwrap().id)
            }
            Op::Deposit { to, amount } => {
                l.deposit(pick(to), amount, &usd()).await.unwrap();
                *model.entry(pick(to)).or_default() += amount;
            }
            Op::Transfer {
                from,
                to,
                amount,
                pending,
            } => {
                let mut req = TransferRequest::posted(pick(from), pick(to), amount, &usd());
                req.pending = pending;
                match l.transfer(&req).await {
                    Ok(t) if t.status == TransferStatus::Pending => pendings.push(t.id),
                    Ok(_) => {
                        *model.entry(req.from).or_default() -= amount;
                        *model.entry(req.to).or_default() += amount;
                    }
                    Err(Error::InsufficientFunds { .. } | Error::SameAccount) => {}
                    Err(other) => panic!("{req:?}: {other:?}"),
                }
            }
            Op::Post { which, amount } if !pendings.is_empty() => {
                let id = pendings[which % pendings.len()];
                match l.post(id, amount).await {
                    Ok(t) => {
                        let moved = t.posted_amount.expect("posted amount");
                        *model.entry(t.debit_account_id).or_default() -= moved;
                        *model.entry(t.credit_account_id).or_default() += moved;
                        *resolved.entry(id).or_default() += 1;
                    }
                    Err(
                        Error::NotPending { .. }
                        | Error::Expired(_)
                        | Error::PostExceedsPending { .. },
                    ) => {}
                    Err(other) => panic!("post {id}: {other:?}"),
                }
            }
            Op::Void { which } if !pendings.is_empty() => {
                let id = pendings[which % pendings.len()];
                match l.void(id).await {
                    Ok(_) => *resolved.entry(id).or_default() += 1,
                    Err(Error::NotPending { .. }) => {}
                    Err(other) => panic!("void {id}: {other:?}"),
                }
            }
            Op::Advance { ms } => b.clock.advance_ms(ms as u64),
            Op::Expire => {
                l.expire_due(1_000).await.unwrap();
            }
            Op::Post { .. } | Op::Void { .. } => {}
        }
    }
    l.expire_due(1_000).await.unwrap();
    for id in &pendings {
        let t = l.transfer_by_id(*id).await.unwrap();
        if t.status != TransferStatus::Pending && t.timeout_at.is_some() {
            // Resolved by us or by the sweep: at most once either way.
            let by_us = resolved.get(id).copied().unwrap_or(0);
            assert!(by_us <= 1, "transfer {id} resolved {by_us} times");
        }
        assert!(resolved.get(id).copied().unwrap_or(0) <= 1);
    }
    for id in &accounts {
        let a = l.account(*id).await.unwrap();
        assert_eq!(
            a.balance,
            model.get(id).copied().unwrap_or(0),
            "balance of {id}"
        );
        let reserved: i64 = {
            let mut sum = 0;
            for t in &pendings {
                let t = l.transfer_by_id(*t).await.unwrap();
                if t.status == TransferStatus::Pending && t.debit_account_id == *id {
                    sum += t.amount;
                }
            }
            sum
        };
        assert_eq!(a.pending_debits, reserved, "reserved on {id}");
        if !a.allow_overdraft {
            assert!(a.available() >= 0, "account {id} overdrawn: {a:?}");
        }
    }
    assert_invariants(l).await;
    let projector = Projector::new(l.clone());
    projector.catch_up_all(500).await.unwrap();
    for id in &accounts {
        let view = projector.balance(*id).await.unwrap().expect("projected");
        let live = l.account(*id).await.unwrap();
        assert_eq!(
            (view.balance, view.pending_debits, view.version),
            (live.balance, live.pending_debits, live.version)
        );
    }
}

fn check(make: impl std::future::Future<Output = Option<Bench>>, cases: u32) {
    // One runtime for the pools and every case: sqlx pools belong to the runtime that made them.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let Some(b) = rt.block_on(make) else { return };
    let mut runner = TestRunner::new(Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    });
    let result = runner.run(&prop::collection::vec(op(), 1..40), |ops| {
        rt.block_on(run_case(&b, ops));
        Ok(())
    });
    if let Err(failure) = result {
        panic!("{}: {failure}", b.name);
    }
    rt.block_on(async {
        let projector = Projector::new(b.ledger.clone());
        projector.catch_up_all(500).await.unwrap();
        let live = projector.hash().await.unwrap();
        projector.rebuild(500).await.unwrap();
        assert_eq!(
            projector.hash().await.unwrap(),
            live,
            "{}: rebuilt read models differ",
            b.name
        );
    });
}

#[test]
fn random_histories_keep_every_invariant_on_sqlite() {
    check(async { Some(common::sqlite().await) }, 48);
}

#[test]
fn random_histories_keep_every_invariant_on_postgres() {
    check(common::postgres(), 24);
}
