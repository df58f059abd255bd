//! The write side on both engines: transfers, pending transfers, refusals, and the
//! invariants the database enforces even against SQL that bypasses the Rust checks.

mod common;

use basis_ledger::{Error, NewAccount, TransferRequest, TransferStatus};
use common::{assert_invariants, engines, eur, funded, scalar, usd};

#[tokio::test]
async fn a_transfer_moves_money_as_one_debit_and_one_credit_and_the_currency_sums_to_zero() {
    for b in engines().await {
        let l = &b.ledger;
        let alice = funded(l, &usd(), 1_000, false).await;
        let bob = funded(l, &usd(), 0, false).await;
        let t = l
            .transfer(&TransferRequest::posted(alice, bob, 300, &usd()))
            .await
            .unwrap();
        assert_eq!(t.status, TransferStatus::Posted, "{}", b.name);
        assert_eq!(l.account(alice).await.unwrap().balance, 700);
        assert_eq!(l.account(bob).await.unwrap().balance, 300);
        let funding = l.funding_account(&usd()).await.unwrap();
        assert_eq!(
            funding.balance, -1_000,
            "the funding account absorbed the deposit"
        );
        let lines = l.entries(alice, i64::MAX, 10).await.unwrap();
        assert_eq!(lines.len(), 2, "the deposit and the transfer");
        assert_eq!(
            (lines[0].side.as_str(), lines[0].amount),
            ("debit", 300),
            "newest first"
        );
        assert_eq!((lines[1].side.as_str(), lines[1].amount), ("credit", 1_000));
        assert_invariants(l).await;
    }
}

/// What a refused request must fail with.
type Expect = fn(&Error) -> bool;

#[tokio::test]
async fn refused_transfers_change_nothing_stored() {
    for b in engines().await {
        let l = &b.ledger;
        let alice = funded(l, &usd(), 100, false).await;
        let bob = funded(l, &usd(), 0, false).await;
        let euro = funded(l, &eur(), 0, false).await;
        let before = scalar(l, "SELECT COUNT(*) FROM ledger_events").await;
        let cases: Vec<(TransferRequest, Expect)> = vec![
            (TransferRequest::posted(alice, bob, 101, &usd()), |e| {
                matches!(
                    e,
                    Error::InsufficientFunds {
                        available: 100,
                        requested: 101,
                        ..
                    }
                )
            }),
            (TransferRequest::posted(alice, bob, 0, &usd()), |e| {
                matches!(e, Error::InvalidAmount)
            }),
            (TransferRequest::posted(alice, bob, -5, &usd()), |e| {
                matches!(e, Error::InvalidAmount)
            }),
            (TransferRequest::posted(alice, alice, 5, &usd()), |e| {
                matches!(e, Error::SameAccount)
            }),
            (
                TransferRequest::posted(alice, euro, 5, &usd()),
                |e| matches!(e, Error::CurrencyMismatch { expected, .. } if expected == "EUR"),
            ),
            (TransferRequest::posted(alice, bob, 5, &eur()), |e| {
                matches!(e, Error::CurrencyMismatch { .. })
            }),
            (TransferRequest::posted(alice, 999_999, 5, &usd()), |e| {
                matches!(e, Error::AccountNotFound(999_999))
            }),
            (
                TransferRequest::posted(alice, bob, 5, &usd()).pending(Some(0)),
                |e| matches!(e, Error::InvalidTimeout),
            ),
        ];
        for (req, expected) in cases {
            let err = l.transfer(&req).await.unwrap_err();
            assert!(expected(&err), "{}: {req:?} gave {err:?}", b.name);
        }
        assert_eq!(
            scalar(l, "SELECT COUNT(*) FROM ledger_events").await,
            before
        );
        assert_eq!(l.account(alice).await.unwrap().balance, 100);
        assert!(basis_ledger::Currency::parse("usd").is_err());
        assert!(basis_ledger::Currency::parse("XYZ").is_err());
        assert_invariants(l).await;
    }
}

#[tokio::test]
async fn an_account_with_overdraft_may_go_below_zero_and_one_without_may_not() {
    for b in engines().await {
        let l = &b.ledger;
        let credit_line = funded(l, &usd(), 0, true).await;
        let plain = funded(l, &usd(), 0, false).await;
        l.transfer(&TransferRequest::posted(credit_line, plain, 50, &usd()))
            .await
            .unwrap();
        assert_eq!(l.account(credit_line).await.unwrap().balance, -50);
        let err = l
            .transfer(&TransferRequest::posted(plain, credit_line, 51, &usd()))
            .await
            .unwrap_err();
        assert!(matches!(err, Error::InsufficientFunds { .. }), "{err:?}");
        assert_invariants(l).await;
    }
}

#[tokio::test]
async fn a_pending_transfer_reserves_funds_and_resolves_exactly_once() {
    for b in engines().await {
        let l = &b.ledger;
        let alice = funded(l, &usd(), 100, false).await;
        let bob = funded(l, &usd(), 0, false).await;
        let hold = TransferRequest::posted(alice, bob, 80, &usd()).pending(None);
        let t = l.transfer(&hold).await.unwrap();
        assert_eq!(t.status, TransferStatus::Pending);
        let a = l.account(alice).await.unwrap();
        assert_eq!((a.balance, a.pending_debits, a.available()), (100, 80, 20));
        let err = l
            .transfer(&TransferRequest::posted(alice, bob, 21, &usd()))
            .await
            .unwrap_err();
        assert!(
            matches!(err, Error::InsufficientFunds { available: 20, .. }),
            "{err:?}"
        );
        let err = l.post(t.id, Some(81)).await.unwrap_err();
        assert!(
            matches!(err, Error::PostExceedsPending { reserved: 80, .. }),
            "{err:?}"
        );
        let posted = l.post(t.id, Some(30)).await.unwrap();
        assert_eq!(
            (posted.status, posted.posted_amount),
            (TransferStatus::Posted, Some(30))
        );
        let a = l.account(alice).await.unwrap();
        assert_eq!((a.balance, a.pending_debits), (70, 0), "{}", b.name);
        assert_eq!(l.account(bob).await.unwrap().pending_credits, 0);
        for again in [l.post(t.id, None).await, l.void(t.id).await] {
            assert!(
                matches!(
                    again,
                    Err(Error::NotPending {
                        status: TransferStatus::Posted,
                        ..
                    })
                ),
                "{again:?}"
            );
        }
        let voided = l
            .transfer(&TransferRequest::posted(alice, bob, 10, &usd()).pending(None))
            .await
            .unwrap();
        assert_eq!(
            l.void(voided.id).await.unwrap().status,
            TransferStatus::Voided
        );
        assert!(matches!(
            l.post(voided.id, None).await,
            Err(Error::NotPending { .. })
        ));
        assert!(matches!(
            l.void(424_242).await,
            Err(Error::TransferNotFound(424_242))
        ));
        assert_eq!(l.account(alice).await.unwrap().available(), 70);
        assert_invariants(l).await;
    }
}

#[tokio::test]
async fn a_pending_transfer_past_its_timeout_cannot_be_posted_and_the_sweep_voids_it() {
    for b in engines().await {
        let l = &b.ledger;
        let alice = funded(l, &usd(), 100, false).await;
        let bob = funded(l, &usd(), 0, false).await;
        let t = l
            .transfer(&TransferRequest::posted(alice, bob, 60, &usd()).pending(Some(30_000)))
            .await
            .unwrap();
        b.clock.advance_ms(29_999);
        assert_eq!(l.expire_due(100).await.unwrap(), 0, "not due yet");
        b.clock.advance_ms(1);
        assert!(matches!(l.post(t.id, None).await, Err(Error::Expired(id)) if id == t.id));
        assert_eq!(l.expire_due(100).await.unwrap(), 1);
        assert_eq!(l.expire_due(100).await.unwrap(), 0, "resolved once");
        assert_eq!(
            l.transfer_by_id(t.id).await.unwrap().status,
            TransferStatus::Voided
        );
        assert_eq!(l.account(alice).await.unwrap().available(), 100);
        let outcome = scalar(
            l,
            "SELECT COUNT(*) FROM ledger_resolutions WHERE outcome = 'expired'",
        )
        .await;
        assert_eq!(outcome, 1);
        assert_invariants(l).await;
    }
}

#[tokio::test]
async fn amounts_beyond_64_bits_are_an_error_never_a_wrap() {
    for b in engines().await {
        let l = &b.ledger;
        let rich = funded(l, &usd(), i64::MAX, false).await;
        let err = l.deposit(rich, 1, &usd()).await.unwrap_err();
        assert!(matches!(err, Error::Overflow), "{}: {err:?}", b.name);
        assert_eq!(l.account(rich).await.unwrap().balance, i64::MAX);
        let err = l
            .transfer(&TransferRequest::posted(rich, rich + 1, 1, &usd()).pending(Some(i64::MAX)))
            .await
            .unwrap_err();
        assert!(
            matches!(err, Error::Overflow | Error::AccountNotFound(_)),
            "{err:?}"
        );
        // The database's own range check, for a write that skips the Rust one.
        let raw = basis_store::on_pool!(l.store(), write, pool => {
            sqlx::query("UPDATE ledger_accounts SET balance = balance + 1 WHERE id = $1")
                .bind(rich).execute(pool).await.map(drop)
        });
        assert!(
            raw.is_err(),
            "{}: the database accepted an overflowing balance",
            b.name
        );
        assert_eq!(l.account(rich).await.unwrap().balance, i64::MAX);
        assert_invariants(l).await;
    }
}

/// Statements that bypass the Rust checks (`{a}` is alice, `{b}` bob); each must be refused
/// by the schema with an error naming the middle string. The first is allowed, to show the harness itself runs statements.
const FORBIDDEN: &[(&str, &str, &str)] = &[
    (
        "(control) renaming an account",
        "",
        "UPDATE ledger_accounts SET name = 'renamed' WHERE id = {a}",
    ),
    (
        "a negative balance without overdraft",
        "ledger_no_overdraft",
        "UPDATE ledger_accounts SET balance = -1 WHERE id = {a}",
    ),
    (
        "reserving more than the balance",
        "ledger_no_overdraft",
        "UPDATE ledger_accounts SET pending_debits = 1000 WHERE id = {a}",
    ),
    (
        "a zero amount",
        "ledger_positive_amount",
        "INSERT INTO ledger_transfers (debit_account_id, credit_account_id, currency, amount, status, created_at) VALUES ({a}, {b}, 'USD', 0, 'pending', 0)",
    ),
    (
        "a transfer to the same account",
        "ledger_distinct_accounts",
        "INSERT INTO ledger_transfers (debit_account_id, credit_account_id, currency, amount, status, created_at) VALUES ({a}, {a}, 'USD', 5, 'pending', 0)",
    ),
    (
        "a posted transfer without its posted amount",
        "ledger_posted_has_amount",
        "INSERT INTO ledger_transfers (debit_account_id, credit_account_id, currency, amount, status, created_at) VALUES ({a}, {b}, 'USD', 5, 'posted', 0)",
    ),
    (
        "a transfer across currencies",
        "foreign key",
        "INSERT INTO ledger_transfers (debit_account_id, credit_account_id, currency, amount, status, created_at) VALUES ({a}, {b}, 'EUR', 5, 'pending', 0)",
    ),
    (
        "an edited entry line",
        "append-only",
        "UPDATE ledger_entries SET amount = amount + 1 WHERE account_id = {a}",
    ),
    (
        "a deleted entry line",
        "append-only",
        "DELETE FROM ledger_entries WHERE account_id = {a}",
    ),
    (
        "a debit line without its credit line (checked at commit)",
        "foreign key",
        "INSERT INTO ledger_transfers (debit_account_id, credit_account_id, currency, amount, status, posted_amount, created_at) VALUES ({a}, {b}, 'USD', 5, 'posted', 5, 0); INSERT INTO ledger_entries (transfer_id, side, partner_side, account_id, debit_account_id, credit_account_id, amount, created_at) SELECT MAX(id), 'debit', 'credit', {a}, {a}, {b}, 5, 0 FROM ledger_transfers",
    ),
    (
        "a line of another amount than the transfer's",
        "foreign key",
        "INSERT INTO ledger_entries (transfer_id, side, partner_side, account_id, debit_account_id, credit_account_id, amount, created_at) SELECT id, 'debit', 'credit', debit_account_id, debit_account_id, credit_account_id, 1, 0 FROM ledger_transfers WHERE debit_account_id = {a} AND status = 'pending'",
    ),
    (
        "a second resolution",
        "unique",
        "INSERT INTO ledger_resolutions (transfer_id, outcome, amount, resolved_at) SELECT transfer_id, 'voided', 0, 0 FROM ledger_resolutions",
    ),
    (
        "two events at one stream version",
        "unique",
        "INSERT INTO ledger_events (tx, account_id, version, kind, currency, at) VALUES (0, {a}, 1, 'AccountOpened', 'USD', 0)",
    ),
    (
        "a second funding account",
        "unique",
        "INSERT INTO ledger_accounts (currency, is_funding, allow_overdraft, created_at) VALUES ('USD', TRUE, TRUE, 0)",
    ),
    (
        "a currency that is not a code",
        "ledger_currency_code",
        "INSERT INTO ledger_accounts (currency, created_at) VALUES ('usd', 0)",
    ),
];

#[tokio::test]
async fn the_schema_refuses_what_would_break_an_invariant() {
    for b in engines().await {
        let l = &b.ledger;
        let alice = funded(l, &usd(), 100, false).await;
        let bob = funded(l, &usd(), 0, false).await;
        // A pending transfer posted, and one still pending.
        let t = l
            .transfer(&TransferRequest::posted(alice, bob, 10, &usd()).pending(None))
            .await
            .unwrap();
        l.post(t.id, None).await.unwrap();
        l.transfer(&TransferRequest::posted(alice, bob, 7, &usd()).pending(None))
            .await
            .unwrap();
        for (i, (what, refusal, sql)) in FORBIDDEN.iter().enumerate() {
            let sql = sql
                .replace("{a}", &alice.to_string())
                .replace("{b}", &bob.to_string());
            let result = basis_store::on_pool!(l.store(), write, pool => async {
                let mut tx = pool.begin().await?;
                let done = sqlx::raw_sql(&sql).execute(&mut *tx).await?.rows_affected();
                tx.commit().await?;
                Ok::<u64, sqlx::Error>(done)
            }.await);
            if i == 0 {
                assert_eq!(result.unwrap(), 1, "{}: {what}", b.name);
                continue;
            }
            match result {
                Err(sqlx::Error::Database(db)) => assert!(
                    db.message().to_lowercase().contains(refusal),
                    "{}: {what} failed for another reason: {}",
                    b.name,
                    db.message()
                ),
                other => panic!("{}: the schema allowed {what} ({other:?})", b.name),
            }
        }
        assert_invariants(l).await;
    }
}

#[tokio::test]
async fn a_stale_expected_version_reports_the_current_one() {
    for b in engines().await {
        let l = &b.ledger;
        let alice = funded(l, &usd(), 100, false).await;
        let bob = funded(l, &usd(), 0, false).await;
        let seen = l.account(alice).await.unwrap().version;
        assert_eq!(seen, 2, "opened, then the deposit");
        let mut first = TransferRequest::posted(alice, bob, 10, &usd());
        first.expected_version = Some(seen);
        let mut second = first.clone();
        second.amount = 20;
        // Both commands read version 2; they race, one wins.
        let (a, c) = tokio::join!(l.transfer(&first), l.transfer(&second));
        let (won, lost) = match (a, c) {
            (Ok(_), Err(e)) | (Err(e), Ok(_)) => (1, e),
            other => panic!("{}: expected one winner, got {other:?}", b.name),
        };
        assert_eq!(won, 1);
        assert!(
            matches!(
                lost,
                Error::VersionConflict {
                    expected: 2,
                    current: 3,
                    ..
                }
            ),
            "{lost:?}"
        );
        let _ = NewAccount {
            currency: usd(),
            name: None,
            owner_id: None,
            allow_overdraft: false,
        };
        assert_invariants(l).await;
    }
}
