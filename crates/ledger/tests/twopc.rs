//! Transfers between two banks (two PostgreSQL databases of a private cluster with
//! `max_prepared_transactions` above 0), either way: all or nothing by two-phase commit or by
//! saga, a coordinator stopped dead at each point of the protocol (or step of the saga)
//! converging on restart, and a coordinator that decides only after recovery presumed the
//! abort never committing half a transfer.

mod common;

use std::sync::Arc;
use std::time::Duration;

use basis_ledger::{
    Clock, CrashPoint, CrossError, CrossLedger, CrossRequest, CrossTransfer, Direction, Hold,
    Ledger, ManualClock, Mode, NewAccount, TransferStatus,
};
use basis_store::{ConnectOptions, Store};
use basis_testkit::PrivatePostgres;
use common::{T0, usd};

/// Two banks on one private cluster, each with a customer account; the home one funded.
struct Banks {
    home: Ledger,
    remote: Ledger,
    clock: Arc<ManualClock>,
    alice: i64,
    bob: i64,
    _pg: PrivatePostgres,
}

async fn ledger_on(url: &str, clock: &Arc<ManualClock>) -> Ledger {
    let options = ConnectOptions {
        max_connections: 8,
        ..ConnectOptions::default()
    };
    let store = Store::connect(url, &options).await.expect("connect");
    let ledger = Ledger::new(store, clock.clone() as Arc<dyn Clock>);
    ledger.install().await.expect("install");
    ledger
}

async fn banks() -> Option<Banks> {
    let pg = PrivatePostgres::start(10).await?;
    let clock = Arc::new(ManualClock::new(T0));
    let home = ledger_on(&pg.create_database("home"), &clock).await;
    let remote = ledger_on(&pg.create_database("remote"), &clock).await;
    let open = |owner: &str| NewAccount {
        currency: usd(),
        name: None,
        owner_id: Some(owner.into()),
        allow_overdraft: false,
    };
    let alice = home.open_account(&open("alice")).await.expect("open").id;
    let bob = remote.open_account(&open("bob")).await.expect("open").id;
    home.deposit(alice, 1_000, &usd()).await.expect("deposit");
    Some(Banks {
        home,
        remote,
        clock,
        alice,
        bob,
        _pg: pg,
    })
}

impl Banks {
    async fn coordinator(&self, mode: Mode) -> CrossLedger {
        CrossLedger::new(
            self.home.clone(),
            "home",
            self.remote.clone(),
            "remote",
            mode,
        )
        .await
        .expect("a coordinator")
    }

    fn send(&self, amount: i64, key: &str) -> CrossRequest {
        CrossRequest {
            direction: Direction::Outgoing,
            from: self.alice,
            to: self.bob,
            amount,
            currency: usd(),
            reference: None,
            request_key: Some(key.into()),
        }
    }

    /// Bob (at the other bank) sends Alice (at this one) `amount`.
    fn receive(&self, amount: i64, key: &str) -> CrossRequest {
        CrossRequest {
            direction: Direction::Incoming,
            from: self.bob,
            to: self.alice,
            ..self.send(amount, key)
        }
    }

    /// Money reserved and not yet posted or voided, on both banks.
    async fn pending(&self) -> i64 {
        let a = self.home.account(self.alice).await.expect("alice");
        let b = self.remote.account(self.bob).await.expect("bob");
        a.pending_debits + b.pending_debits
    }

    /// The decision logged for the transfer made with `key`, if any.
    async fn decision(&self, key: &str) -> Option<String> {
        let id = cross_id(self, key).await;
        basis_store::on_pool!(self.home.store(), write, pool => {
            sqlx::query_scalar::<_, String>("SELECT outcome FROM ledger_2pc_decisions WHERE transfer_id = $1")
                .bind(id).fetch_optional(pool).await
        })
        .expect("the decision log")
    }

    /// Alice's and Bob's balances.
    async fn balances(&self) -> (i64, i64) {
        let a = self.home.account(self.alice).await.expect("alice").balance;
        let b = self.remote.account(self.bob).await.expect("bob").balance;
        (a, b)
    }

    /// Every account's balance of each bank sums to zero (double entry on both sides).
    async fn assert_each_bank_balances(&self) {
        for ledger in [&self.home, &self.remote] {
            let sum: i64 = basis_store::on_pool!(ledger.store(), write, pool => {
                sqlx::query_scalar::<_, i64>("SELECT COALESCE(SUM(balance), 0)::bigint FROM ledger_accounts")
                    .fetch_one(pool).await
            })
            .expect("sum");
            assert_eq!(sum, 0, "the balances of one bank sum to zero");
        }
    }
}

#[tokio::test]
async fn a_cross_bank_transfer_commits_on_both_banks_in_either_mode() {
    let Some(b) = banks().await else { return };
    for (mode, key) in [(Mode::TwoPhase, "k-2pc"), (Mode::Saga, "k-saga")] {
        let cross = b.coordinator(mode).await;
        let t = cross.transfer(&b.send(100, key)).await.expect("committed");
        assert_eq!(
            (t.status.as_str(), t.mode.as_str()),
            ("committed", mode.as_str())
        );
        assert!(t.local_transfer_id.is_some() && t.remote_transfer_id.is_some());
        assert!(
            t.hold_us.is_some_and(|us| us > 0),
            "lock hold time measured"
        );
        // The same key again gets the same transfer, not a second one.
        let again = cross.transfer(&b.send(100, key)).await.expect("replayed");
        assert_eq!(again.id, t.id);
        let reused = cross.transfer(&b.send(5, key)).await;
        assert!(
            matches!(reused, Err(CrossError::RequestKeyReused(_))),
            "{reused:?}"
        );
    }
    assert_eq!(b.balances().await, (800, 200));
    b.assert_each_bank_balances().await;
    assert_eq!(
        b.coordinator(Mode::TwoPhase)
            .await
            .prepared()
            .await
            .unwrap()
            .0,
        0
    );
}

#[tokio::test]
async fn a_refused_half_moves_nothing_on_either_bank() {
    let Some(b) = banks().await else { return };
    for mode in [Mode::TwoPhase, Mode::Saga] {
        let cross = b.coordinator(mode).await;
        let broke = cross
            .transfer(&b.send(5_000, &format!("{mode:?}-funds")))
            .await;
        assert!(
            matches!(
                broke,
                Err(CrossError::Ledger(
                    basis_ledger::Error::InsufficientFunds { .. }
                ))
            ),
            "{broke:?}"
        );
        let mut nobody = b.send(10, &format!("{mode:?}-nobody"));
        nobody.to = 999_999;
        let missing = cross.transfer(&nobody).await;
        assert!(
            matches!(
                missing,
                Err(CrossError::Ledger(basis_ledger::Error::AccountNotFound(_)))
            ),
            "{missing:?}"
        );
        let logged = cross
            .get(cross_id(&b, &format!("{mode:?}-nobody")).await)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(logged.status, "aborted");
    }
    assert_eq!(b.balances().await, (1_000, 0));
    let alice = b.home.account(b.alice).await.unwrap();
    assert_eq!(alice.pending_debits, 0, "the saga's reservation was voided");
    b.assert_each_bank_balances().await;
    assert_eq!(
        b.coordinator(Mode::TwoPhase)
            .await
            .prepared()
            .await
            .unwrap()
            .0,
        0
    );
}

async fn cross_id(b: &Banks, key: &str) -> i64 {
    basis_store::on_pool!(b.home.store(), write, pool => {
        sqlx::query_scalar::<_, i64>("SELECT id FROM ledger_cross_transfers WHERE request_key = $1")
            .bind(key).fetch_one(pool).await
    })
    .expect("logged")
}

#[tokio::test]
async fn a_coordinator_stopped_at_any_point_converges_to_all_or_nothing_on_restart() {
    let Some(b) = banks().await else { return };
    let mut expected = (1_000, 0);
    for (i, point) in [
        CrashPoint::BeforePrepare,
        CrashPoint::AfterFirstPrepare,
        CrashPoint::AfterBothPrepares,
        CrashPoint::AfterDecision,
    ]
    .into_iter()
    .enumerate()
    {
        let key = format!("crash-{i}");
        let dying = b.coordinator(Mode::TwoPhase).await.crashing_at(point);
        let out = dying.transfer(&b.send(50, &key)).await;
        assert!(
            matches!(out, Err(CrossError::Crashed(p)) if p == point),
            "{out:?}"
        );
        let prepared_now = dying.prepared().await.unwrap().0;
        let want_prepared = match point {
            CrashPoint::BeforePrepare => 0,
            CrashPoint::AfterFirstPrepare => 1,
            _ => 2,
        };
        assert_eq!(
            prepared_now, want_prepared,
            "{point:?}: halves left prepared"
        );
        drop(dying);

        // A fresh coordinator starts and recovers with no grace, as `basis serve` does.
        let fresh = b.coordinator(Mode::TwoPhase).await;
        fresh.recover(Duration::ZERO).await.expect("recovery");
        assert_eq!(
            fresh.prepared().await.unwrap().0,
            0,
            "{point:?}: nothing left prepared"
        );
        let row = fresh.get(cross_id(&b, &key).await).await.unwrap().unwrap();
        if point == CrashPoint::AfterDecision {
            expected = (expected.0 - 50, expected.1 + 50);
            assert_eq!(row.status, "committed", "{point:?}");
            assert!(row.local_transfer_id.is_some() && row.remote_transfer_id.is_some());
        } else {
            assert_eq!(row.status, "aborted", "{point:?}");
        }
        assert!(row.finished_at.is_some(), "{point:?}: settled");
        assert_eq!(b.balances().await, expected, "{point:?}: all or nothing");
        b.assert_each_bank_balances().await;
    }
}

#[tokio::test]
async fn recovery_spares_young_prepared_halves_and_fences_off_their_coordinator_past_the_grace() {
    let Some(b) = banks().await else { return };
    let dying = b
        .coordinator(Mode::TwoPhase)
        .await
        .crashing_at(CrashPoint::AfterBothPrepares);
    assert!(dying.transfer(&b.send(70, "young")).await.is_err());
    let fresh = b.coordinator(Mode::TwoPhase).await;
    let spared = fresh.recover(Duration::from_secs(3600)).await.unwrap();
    assert_eq!(
        spared.still_prepared, 2,
        "younger than the grace: left to its coordinator"
    );
    // The prepared halves hold Alice's row: a local transfer touching it waits, so they
    // must not outlive the grace. Past it (the clock moved), recovery rolls them back.
    b.clock.advance_ms(3_600_000);
    let settled = fresh.recover(Duration::from_secs(3600)).await.unwrap();
    assert_eq!((settled.rolled_back, settled.still_prepared), (2, 0));
    assert_eq!(b.balances().await, (1_000, 0));
    // Recovery logged 'abort' first: a coordinator that was only slow and now comes to
    // decide meets that row and cannot log 'commit'.
    let id = cross_id(&b, "young").await;
    let decided: String = basis_store::on_pool!(b.home.store(), write, pool => {
        sqlx::query_scalar::<_, String>("SELECT outcome FROM ledger_2pc_decisions WHERE transfer_id = $1")
            .bind(id).fetch_one(pool).await
    })
    .expect("a decision row");
    assert_eq!(decided, "abort");

    // Alice's row is free again: the next transfer goes through.
    let saga = b.coordinator(Mode::Saga).await;
    let reserved = saga.transfer(&b.send(30, "saga-ok")).await.expect("saga");
    assert_eq!(reserved.status, "committed");
    assert_eq!(b.balances().await, (970, 30));
}

#[tokio::test]
async fn two_phase_commit_is_refused_where_transactions_cannot_be_prepared() {
    let Some(pg) = PrivatePostgres::start(0).await else {
        return;
    };
    let clock = Arc::new(ManualClock::new(T0));
    let home = ledger_on(&pg.create_database("home"), &clock).await;
    let remote = ledger_on(&pg.create_database("remote"), &clock).await;
    let cross = CrossLedger::new(home.clone(), "home", remote, "remote", Mode::TwoPhase)
        .await
        .unwrap();
    let err = cross.check_prepared_capacity().await.expect_err("refused");
    assert!(matches!(err, CrossError::NoPreparedTransactions(ref db) if db == "home"));
    assert!(
        err.to_string().contains("max_prepared_transactions is 0"),
        "{err}"
    );

    let sqlite = common::sqlite().await;
    let refused = CrossLedger::new(sqlite.ledger.clone(), "home", home, "remote", Mode::Saga).await;
    assert!(
        matches!(refused, Err(CrossError::Unsupported(ref m)) if m.contains("SQLite")),
        "{refused:?}"
    );
}

#[tokio::test]
async fn a_coordinator_deciding_after_recovery_presumed_abort_never_commits_half_a_transfer() {
    let Some(b) = banks().await else { return };
    let grace = Duration::from_secs(30);
    let recovery = b.coordinator(Mode::TwoPhase).await;
    // Starts a transfer whose coordinator waits at `point` (both halves prepared, or the
    // commit logged), and moves the clock past the grace, so recovery takes it for dead.
    let slow = |point: CrashPoint, key: String| {
        let hold = Arc::new(Hold::default());
        let b = &b;
        let held = hold.clone();
        async move {
            let coordinator = b.coordinator(Mode::TwoPhase).await.holding_at(point, held);
            let req = b.send(40, &key);
            let running = tokio::spawn(async move { coordinator.transfer(&req).await });
            hold.reached().await;
            b.clock.advance_ms(60_000);
            (hold, running)
        }
    };

    // Recovery first: it logs 'abort' and rolls both halves back; the coordinator, released,
    // meets that row when it logs 'commit', and rolls back too.
    let (hold, running) = slow(CrashPoint::AfterBothPrepares, "late".into()).await;
    let settled = recovery.recover(grace).await.expect("recovery");
    assert_eq!((settled.rolled_back, settled.committed), (2, 0));
    hold.release();
    let out = running.await.unwrap();
    assert!(matches!(out, Err(CrossError::Aborted(_))), "{out:?}");
    assert_eq!(b.decision("late").await.as_deref(), Some("abort"));
    assert_eq!(
        b.balances().await,
        (1_000, 0),
        "nothing moved on either bank"
    );

    // The coordinator's commit first: recovery finds it and commits, never aborts.
    let (hold, running) = slow(CrashPoint::AfterDecision, "early".into()).await;
    let settled = recovery.recover(grace).await.expect("recovery");
    assert_eq!((settled.rolled_back, settled.committed), (0, 2));
    hold.release();
    let t = running.await.unwrap().expect("committed");
    assert_eq!(t.status, "committed");
    assert_eq!(b.balances().await, (960, 40), "moved once on both banks");

    // Both at once, again and again: whichever decision wins, the transfer is on both banks
    // or on neither, and the coordinator's answer says which.
    let mut expected = (960, 40);
    let mut outcomes = (0, 0);
    for round in 0..12 {
        let key = format!("race-{round}");
        let (hold, running) = slow(CrashPoint::AfterBothPrepares, key.clone()).await;
        let (out, recovered) = tokio::join!(
            async {
                hold.release();
                running.await.unwrap()
            },
            recovery.recover(grace)
        );
        recovered.expect("recovery never fails on the race");
        match out {
            Ok(CrossTransfer { ref status, .. }) if status == "committed" => {
                expected = (expected.0 - 40, expected.1 + 40);
                outcomes.0 += 1;
                assert_eq!(b.decision(&key).await.as_deref(), Some("commit"));
            }
            Err(CrossError::Aborted(_)) => {
                outcomes.1 += 1;
                assert_eq!(b.decision(&key).await.as_deref(), Some("abort"));
            }
            other => panic!("round {round}: neither committed nor aborted: {other:?}"),
        }
        assert_eq!(
            b.balances().await,
            expected,
            "round {round}: all or nothing"
        );
        assert_eq!(recovery.prepared().await.unwrap().0, 0, "round {round}");
    }
    eprintln!("race outcomes (committed, aborted): {outcomes:?}");
    b.assert_each_bank_balances().await;
    recovery.recover(grace).await.expect("recovery");
    let open: i64 = basis_store::on_pool!(b.home.store(), write, pool => {
        sqlx::query_scalar::<_, i64>("SELECT count(*) FROM ledger_cross_transfers WHERE status = 'started'")
            .fetch_one(pool).await
    })
    .unwrap();
    assert_eq!(open, 0, "every transfer decided");
}

#[tokio::test]
async fn money_comes_in_from_the_other_bank_in_either_mode() {
    let Some(b) = banks().await else { return };
    b.remote.deposit(b.bob, 500, &usd()).await.expect("deposit");
    for mode in [Mode::TwoPhase, Mode::Saga] {
        let cross = b.coordinator(mode).await;
        let key = format!("in-{mode:?}");
        let t = cross
            .transfer(&b.receive(100, &key))
            .await
            .expect("committed");
        assert_eq!(
            (t.status.as_str(), t.direction.as_str()),
            ("committed", "in")
        );
        assert_eq!((t.from_account, t.to_account), (b.bob, b.alice));
        assert!(t.local_transfer_id.is_some() && t.remote_transfer_id.is_some());
        // The local half credits Alice, the remote one debits Bob.
        let local = b
            .home
            .transfer_by_id(t.local_transfer_id.unwrap())
            .await
            .unwrap();
        assert_eq!(
            (local.credit_account_id, local.status),
            (b.alice, TransferStatus::Posted)
        );
        let remote = b
            .remote
            .transfer_by_id(t.remote_transfer_id.unwrap())
            .await
            .unwrap();
        assert_eq!(
            (remote.debit_account_id, remote.status),
            (b.bob, TransferStatus::Posted)
        );
        // The same key the other way is another transfer: refused.
        let turned = cross.transfer(&b.send(100, &key)).await;
        assert!(
            matches!(turned, Err(CrossError::RequestKeyReused(_))),
            "{turned:?}"
        );

        // Refusals move nothing: too little money at the other bank, no such account here.
        let broke = cross
            .transfer(&b.receive(10_000, &format!("{key}-broke")))
            .await;
        assert!(
            matches!(
                broke,
                Err(CrossError::Ledger(
                    basis_ledger::Error::InsufficientFunds { .. }
                ))
            ),
            "{broke:?}"
        );
        let mut nobody = b.receive(10, &format!("{key}-nobody"));
        nobody.to = 999_999;
        let missing = cross.transfer(&nobody).await;
        assert!(
            matches!(
                missing,
                Err(CrossError::Ledger(basis_ledger::Error::AccountNotFound(_)))
            ),
            "{missing:?}"
        );
        assert_eq!(
            b.pending().await,
            0,
            "{mode:?}: the reservation at the other bank voided"
        );
    }
    assert_eq!(b.balances().await, (1_200, 300));
    b.assert_each_bank_balances().await;
    assert_eq!(
        b.coordinator(Mode::TwoPhase)
            .await
            .prepared()
            .await
            .unwrap()
            .0,
        0
    );
}

#[tokio::test]
async fn a_saga_stopped_at_any_step_converges_to_all_or_nothing_on_restart() {
    let Some(b) = banks().await else { return };
    b.remote
        .deposit(b.bob, 1_000, &usd())
        .await
        .expect("deposit");
    let mut expected = (1_000, 1_000);
    for direction in [Direction::Outgoing, Direction::Incoming] {
        for point in [
            CrashPoint::AfterReserve,
            CrashPoint::AfterCredit,
            CrashPoint::BeforeVoid,
        ] {
            let key = format!("saga-{direction:?}-{point:?}");
            let mut req = match direction {
                Direction::Outgoing => b.send(30, &key),
                Direction::Incoming => b.receive(30, &key),
            };
            if point == CrashPoint::BeforeVoid {
                req.to = 999_999; // the credit is refused, the saga compensates
            }
            let dying = b.coordinator(Mode::Saga).await.crashing_at(point);
            let out = dying.transfer(&req).await;
            assert!(
                matches!(out, Err(CrossError::Crashed(p)) if p == point),
                "{out:?}"
            );
            // Stopped in the middle: the sender's money is reserved, not yet settled.
            assert_eq!(b.pending().await, 30, "{key}: stopped between steps");

            // A fresh coordinator starts and recovers with no grace, as `basis serve` does.
            let fresh = b.coordinator(Mode::Saga).await;
            let report = fresh.recover(Duration::ZERO).await.expect("recovery");
            assert_eq!(report.settled, 1, "{key}");
            let row = fresh.get(cross_id(&b, &key).await).await.unwrap().unwrap();
            if point == CrashPoint::BeforeVoid {
                assert_eq!(row.status, "aborted", "{key}");
            } else {
                assert_eq!(row.status, "committed", "{key}");
                expected = match direction {
                    Direction::Outgoing => (expected.0 - 30, expected.1 + 30),
                    Direction::Incoming => (expected.0 + 30, expected.1 - 30),
                };
            }
            assert!(row.finished_at.is_some(), "{key}: settled");
            assert_eq!(b.pending().await, 0, "{key}: nothing left reserved");
            assert_eq!(b.balances().await, expected, "{key}: all or nothing");
            b.assert_each_bank_balances().await;
            // Settled for good: another pass finds nothing to do.
            let again = fresh.recover(Duration::ZERO).await.unwrap();
            assert_eq!(again.settled, 0, "{key}");
        }
    }
}
