//! The write side. Every command runs in one transaction that locks the accounts it touches
//! (PostgreSQL: `FOR NO KEY UPDATE`, lower id first, so two transfers between the same accounts in
//! opposite directions cannot deadlock; SQLite: the transaction began with `BEGIN IMMEDIATE`,
//! which takes the database's write lock up front), checks in Rust with checked arithmetic,
//! writes, and appends its events to the streams at the versions it read under the lock.
//!
//! The functions are written once and instantiated per engine by `write_ops!`, so each copy
//! is typed against its own driver (the store's `on_pool!` does the same for single queries);
//! the engines differ only in the lock clause and in how an event records its transaction.

use crate::events::{EventKind, NewEvent};
use crate::model::{Account, Error, Transfer, TransferStatus};

/// How a pending transfer resolves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Resolution {
    /// Post the reserved amount, or the smaller amount given.
    Post(Option<i64>),
    /// Release the reservation on request.
    Void,
    /// Release the reservation because its timeout passed.
    Expire,
}

/// The checks a resolution makes before writing anything; returns the amount to post.
fn check_resolution(t: &Transfer, how: Resolution, now: i64) -> Result<Option<i64>, Error> {
    if t.status != TransferStatus::Pending {
        return Err(Error::NotPending {
            id: t.id,
            status: t.status,
        });
    }
    let timed_out = t.timeout_at.is_some_and(|at| at <= now);
    match how {
        Resolution::Post(_) if timed_out => Err(Error::Expired(t.id)),
        Resolution::Post(amount) => {
            let amount = amount.unwrap_or(t.amount);
            if amount <= 0 {
                Err(Error::InvalidAmount)
            } else if amount > t.amount {
                Err(Error::PostExceedsPending {
                    id: t.id,
                    reserved: t.amount,
                    requested: amount,
                })
            } else {
                Ok(Some(amount))
            }
        }
        Resolution::Void => Ok(None),
        Resolution::Expire if timed_out => Ok(None),
        // Not due: the sweep raced a post or void and lost; nothing to do.
        Resolution::Expire => Err(Error::NotPending {
            id: t.id,
            status: t.status,
        }),
    }
}

/// The funds and range checks of a new transfer, on the accounts as locked.
fn check_transfer(
    from: &Account,
    to: &Account,
    amount: i64,
    pending: bool,
    currency: &str,
) -> Result<(), Error> {
    for account in [from, to] {
        if account.currency != currency {
            return Err(Error::CurrencyMismatch {
                account: account.id,
                expected: account.currency.clone(),
                got: currency.to_owned(),
            });
        }
    }
    let available = from
        .balance
        .checked_sub(from.pending_debits)
        .ok_or(Error::Overflow)?;
    if !from.allow_overdraft && available < amount {
        return Err(Error::InsufficientFunds {
            account: from.id,
            available,
            requested: amount,
        });
    }
    if pending {
        let reserved = from.pending_debits.checked_add(amount);
        reserved
            .and_then(|r| from.balance.checked_sub(r))
            .ok_or(Error::Overflow)?;
        to.pending_credits
            .checked_add(amount)
            .ok_or(Error::Overflow)?;
    } else {
        from.balance.checked_sub(amount).ok_or(Error::Overflow)?;
        to.balance.checked_add(amount).ok_or(Error::Overflow)?;
    }
    Ok(())
}

/// The two events of a transfer: one on each account's stream, from that account's side.
fn pair_events(kind: EventKind, t: &Transfer, amount: i64, released: i64) -> [(i64, NewEvent); 2] {
    let event = |side: &'static str, counterparty: i64| NewEvent {
        kind,
        currency: t.currency.clone(),
        transfer_id: Some(t.id),
        side: Some(side),
        counterparty_id: Some(counterparty),
        amount,
        released,
    };
    [
        (t.debit_account_id, event("debit", t.credit_account_id)),
        (t.credit_account_id, event("credit", t.debit_account_id)),
    ]
}

/// The event kind announcing money that moved.
pub const TRANSFER_POSTED: &str = "transfer.posted";

/// The outbox event of a transfer just posted, written in the posting transaction so the
/// announcement and the money move together (see `basis_store::outbox`).
fn posted_event(t: &Transfer, now: i64) -> basis_store::outbox::NewEvent {
    basis_store::outbox::NewEvent {
        kind: TRANSFER_POSTED,
        aggregate: format!("transfer:{}", t.id),
        payload: serde_json::json!({
            "transferId": t.id,
            "debitAccountId": t.debit_account_id,
            "creditAccountId": t.credit_account_id,
            "currency": t.currency,
            "amount": t.posted_amount.unwrap_or(t.amount),
            "reference": t.reference,
        }),
        at: now,
    }
}

macro_rules! write_ops {
    ($engine:ident, $Conn:ty, for_update = $for_update:literal, tx_id = $tx_id:literal) => {
        pub(crate) mod $engine {
            use super::*;
            use crate::model::{NewAccount, TransferRequest};

            /// Locks both accounts (lower id first) and returns them in the order asked.
            async fn lock_pair(conn: &mut $Conn, a: i64, b: i64) -> Result<(Account, Account), Error> {
                let rows: Vec<Account> = sqlx::query_as(concat!(
                    "SELECT * FROM ledger_accounts WHERE id IN ($1, $2) ORDER BY id",
                    $for_update
                ))
                .bind(a)
                .bind(b)
                .fetch_all(&mut *conn)
                .await?;
                let find = |id: i64| {
                    rows.iter().find(|r| r.id == id).cloned().ok_or(Error::AccountNotFound(id))
                };
                Ok((find(a)?, find(b)?))
            }

            /// Appends `event` to the stream of `account` at the version after `expected`.
            /// Two appends at one version cannot both commit: the unique (account, version)
            /// key refuses the second, and the caller's transaction is retried.
            async fn append(
                conn: &mut $Conn,
                account: i64,
                expected: i64,
                now: i64,
                event: &NewEvent,
            ) -> Result<i64, Error> {
                let version = expected + 1;
                sqlx::query(concat!(
                    "INSERT INTO ledger_events (tx, account_id, version, kind, currency, transfer_id, \
                     side, counterparty_id, amount, released, at) VALUES (",
                    $tx_id,
                    ", $1, $2, $3, $4, $5, $6, $7, $8, $9, $10)"
                ))
                .bind(account)
                .bind(version)
                .bind(event.kind.as_str())
                .bind(&event.currency)
                .bind(event.transfer_id)
                .bind(event.side)
                .bind(event.counterparty_id)
                .bind(event.amount)
                .bind(event.released)
                .bind(now)
                .execute(&mut *conn)
                .await?;
                sqlx::query("UPDATE ledger_accounts SET version = $1 WHERE id = $2 AND version = $3")
                    .bind(version)
                    .bind(account)
                    .bind(expected)
                    .execute(&mut *conn)
                    .await?;
                Ok(version)
            }

            /// Opens an account and its stream (`AccountOpened` at version 1).
            pub(crate) async fn open_account(
                conn: &mut $Conn,
                now: i64,
                new: &NewAccount,
            ) -> Result<Account, Error> {
                let mut account: Account = sqlx::query_as(
                    "INSERT INTO ledger_accounts (currency, name, owner_id, allow_overdraft, created_at) \
                     VALUES ($1, $2, $3, $4, $5) RETURNING *",
                )
                .bind(new.currency.as_str())
                .bind(&new.name)
                .bind(&new.owner_id)
                .bind(new.allow_overdraft)
                .bind(now)
                .fetch_one(&mut *conn)
                .await?;
                account.version = append(conn, account.id, 0, now, &NewEvent::opened(&account)).await?;
                Ok(account)
            }

            /// The funding account of `currency`, opened on first use.
            pub(crate) async fn funding_account(
                conn: &mut $Conn,
                now: i64,
                currency: &str,
            ) -> Result<Account, Error> {
                let opened: Option<Account> = sqlx::query_as(
                    "INSERT INTO ledger_accounts (currency, name, is_funding, allow_overdraft, created_at) \
                     VALUES ($1, 'funding', TRUE, TRUE, $2) \
                     ON CONFLICT (currency) WHERE is_funding DO NOTHING RETURNING *",
                )
                .bind(currency)
                .bind(now)
                .fetch_optional(&mut *conn)
                .await?;
                if let Some(mut account) = opened {
                    account.version =
                        append(conn, account.id, 0, now, &NewEvent::opened(&account)).await?;
                    return Ok(account);
                }
                Ok(sqlx::query_as("SELECT * FROM ledger_accounts WHERE currency = $1 AND is_funding")
                    .bind(currency)
                    .fetch_one(&mut *conn)
                    .await?)
            }

            /// Writes the debit and the credit line of a posted amount; the trigger on
            /// `ledger_entries` moves the two balances.
            async fn insert_lines(conn: &mut $Conn, t: &Transfer, amount: i64, now: i64) -> Result<(), Error> {
                sqlx::query(
                    "INSERT INTO ledger_entries (transfer_id, side, partner_side, account_id, \
                     debit_account_id, credit_account_id, amount, created_at) VALUES \
                     ($1, 'debit', 'credit', $2, $2, $3, $4, $5), \
                     ($1, 'credit', 'debit', $3, $2, $3, $4, $5)",
                )
                .bind(t.id)
                .bind(t.debit_account_id)
                .bind(t.credit_account_id)
                .bind(amount)
                .bind(now)
                .execute(&mut *conn)
                .await?;
                Ok(())
            }

            /// Moves (or reserves) money between two accounts. Returns the transfer and
            /// whether it is new: a request key that already made a transfer returns that
            /// one (read under the accounts' locks, so a concurrent twin has committed).
            pub(crate) async fn transfer(
                conn: &mut $Conn,
                now: i64,
                req: &TransferRequest,
            ) -> Result<(Transfer, bool), Error> {
                let (from, to) = lock_pair(conn, req.from, req.to).await?;
                if let Some(key) = &req.request_key {
                    let made: Option<Transfer> =
                        sqlx::query_as("SELECT * FROM ledger_transfers WHERE request_key = $1")
                            .bind(key)
                            .fetch_optional(&mut *conn)
                            .await?;
                    if let Some(t) = made {
                        let same = t.debit_account_id == req.from
                            && t.credit_account_id == req.to
                            && t.amount == req.amount
                            && t.currency == req.currency.as_str();
                        if !same {
                            return Err(Error::RequestKeyReused(key.clone()));
                        }
                        return Ok((t, false));
                    }
                }
                if let Some(expected) = req.expected_version
                    && from.version != expected
                {
                    return Err(Error::VersionConflict { account: from.id, expected, current: from.version });
                }
                let pending = req.pending.is_some();
                check_transfer(&from, &to, req.amount, pending, req.currency.as_str())?;
                let timeout_at = match req.pending {
                    Some(Some(ms)) => Some(now.checked_add(ms).ok_or(Error::Overflow)?),
                    _ => None,
                };
                let status = if pending { TransferStatus::Pending } else { TransferStatus::Posted };
                let t: Transfer = sqlx::query_as(
                    "INSERT INTO ledger_transfers (debit_account_id, credit_account_id, currency, amount, \
                     status, posted_amount, timeout_at, reference, created_at, request_key) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) RETURNING *",
                )
                .bind(from.id)
                .bind(to.id)
                .bind(req.currency.as_str())
                .bind(req.amount)
                .bind(status.as_str())
                .bind((!pending).then_some(req.amount))
                .bind(timeout_at)
                .bind(&req.reference)
                .bind(now)
                .bind(&req.request_key)
                .fetch_one(&mut *conn)
                .await?;
                let kind = if pending {
                    sqlx::query("UPDATE ledger_accounts SET pending_debits = pending_debits + $1 WHERE id = $2")
                        .bind(req.amount).bind(from.id).execute(&mut *conn).await?;
                    sqlx::query("UPDATE ledger_accounts SET pending_credits = pending_credits + $1 WHERE id = $2")
                        .bind(req.amount).bind(to.id).execute(&mut *conn).await?;
                    EventKind::TransferPending
                } else {
                    insert_lines(conn, &t, req.amount, now).await?;
                    basis_store::outbox::append(&mut *conn, &posted_event(&t, now)).await?;
                    EventKind::TransferPosted
                };
                let versions = [(from.id, from.version), (to.id, to.version)];
                for (account, event) in pair_events(kind, &t, req.amount, 0) {
                    let expected = versions.iter().find(|(id, _)| *id == account).map_or(0, |v| v.1);
                    append(conn, account, expected, now, &event).await?;
                }
                Ok((t, true))
            }

            /// Posts, voids or expires a pending transfer, exactly once.
            pub(crate) async fn resolve(
                conn: &mut $Conn,
                now: i64,
                id: i64,
                how: Resolution,
            ) -> Result<Transfer, Error> {
                let t: Transfer = sqlx::query_as("SELECT * FROM ledger_transfers WHERE id = $1")
                    .bind(id)
                    .fetch_optional(&mut *conn)
                    .await?
                    .ok_or(Error::TransferNotFound(id))?;
                check_resolution(&t, how, now)?;
                let (debit, credit) = lock_pair(conn, t.debit_account_id, t.credit_account_id).await?;
                // Re-read under the account locks: a concurrent resolution may have won.
                let t: Transfer = sqlx::query_as("SELECT * FROM ledger_transfers WHERE id = $1")
                    .bind(id)
                    .fetch_one(&mut *conn)
                    .await?;
                let posted = check_resolution(&t, how, now)?;
                if let Some(amount) = posted {
                    credit.balance.checked_add(amount).ok_or(Error::Overflow)?;
                }
                let (status, outcome, kind) = match how {
                    Resolution::Post(_) => (TransferStatus::Posted, "posted", EventKind::TransferPosted),
                    Resolution::Void => (TransferStatus::Voided, "voided", EventKind::TransferVoided),
                    Resolution::Expire => (TransferStatus::Voided, "expired", EventKind::TransferExpired),
                };
                let t: Transfer = sqlx::query_as(
                    "UPDATE ledger_transfers SET status = $1, posted_amount = $2, resolved_at = $3 \
                     WHERE id = $4 AND status = 'pending' RETURNING *",
                )
                .bind(status.as_str())
                .bind(posted)
                .bind(now)
                .bind(id)
                .fetch_optional(&mut *conn)
                .await?
                .ok_or(Error::NotPending { id, status: t.status })?;
                sqlx::query("INSERT INTO ledger_resolutions (transfer_id, outcome, amount, resolved_at) VALUES ($1, $2, $3, $4)")
                    .bind(id).bind(outcome).bind(posted.unwrap_or(0)).bind(now)
                    .execute(&mut *conn).await?;
                // Release the reservation before the lines move the balance, so the overdraft
                // check on the account row holds after every statement.
                sqlx::query("UPDATE ledger_accounts SET pending_debits = pending_debits - $1 WHERE id = $2")
                    .bind(t.amount).bind(debit.id).execute(&mut *conn).await?;
                sqlx::query("UPDATE ledger_accounts SET pending_credits = pending_credits - $1 WHERE id = $2")
                    .bind(t.amount).bind(credit.id).execute(&mut *conn).await?;
                if let Some(amount) = posted {
                    insert_lines(conn, &t, amount, now).await?;
                    basis_store::outbox::append(&mut *conn, &posted_event(&t, now)).await?;
                }
                let versions = [(debit.id, debit.version), (credit.id, credit.version)];
                for (account, event) in pair_events(kind, &t, posted.unwrap_or(0), t.amount) {
                    let expected = versions.iter().find(|(id, _)| *id == account).map_or(0, |v| v.1);
                    append(conn, account, expected, now, &event).await?;
                }
                Ok(t)
            }
        }
    };
}

write_ops!(sqlite, sqlx::SqliteConnection, for_update = "", tx_id = "0");
write_ops!(
    postgres,
    sqlx::PgConnection,
    // NO KEY UPDATE: as exclusive as FOR UPDATE against other writers of the row, but it
    // lets foreign-key checks of rows referring to the account (KEY SHARE) through.
    for_update = " FOR NO KEY UPDATE",
    tx_id = "pg_current_xact_id()::text::bigint"
);
