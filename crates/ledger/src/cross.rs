//! Transfers between this ledger and another bank's: a second PostgreSQL database with the
//! same schema, named by `--ledger-remote-url`. The money leaves one ledger through its
//! funding account and enters the other through its own, so each ledger stays double-entry
//! (every currency sums to 0 in each database) and the customers' balances of both banks
//! together are conserved.
//!
//! Two ways to make the two halves agree ([`Mode`]):
//!
//! - **Two-phase commit** ([`crate::twopc`]): both halves are written and prepared
//!   (`PREPARE TRANSACTION`), the decision is logged in this database, then both are
//!   committed. Atomic, but every row a half touched stays locked from its first write to
//!   its `COMMIT PREPARED`, across two more round trips and a log write.
//! - **Saga** (this file): reserve locally (a pending transfer), credit remotely (a posted
//!   transfer), then post the reservation; a refusal of the credit voids the reservation
//!   (the compensation). Each step is its own short transaction, made at most once by its
//!   request key, so a coordinator that stops is resumed by recovery from the same step.
//!
//! Money goes either way ([`Direction`]): out of an account of this ledger into one of the
//! participant's, or in from one of the participant's. Whichever bank is debited holds the
//! first half (the saga's reservation); this ledger's database always keeps the log.
//!
//! Accounts are named by [`AccountRef`]: `42` is an account of this ledger, `remote:42` one
//! of the participant called `remote`.

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Instant;

use basis_store::Pools;
use serde::Serialize;
use sqlx::PgPool;

use crate::model::{Currency, Error, TransferRequest, TransferStatus};
use crate::{Clock, Ledger};

/// An account of this ledger or of a named participant: `42` or `remote:42`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountRef {
    /// The participant holding it; `None` for this ledger.
    pub participant: Option<String>,
    /// The account's id in that participant's ledger.
    pub id: i64,
}

impl FromStr for AccountRef {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || format!("{s:?} is not an account (an id, or participant:id)");
        let (participant, id) = match s.split_once(':') {
            Some((name, id)) => (Some(valid_name(name).map_err(|_| bad())?), id),
            None => (None, s),
        };
        let id = id
            .parse::<i64>()
            .ok()
            .filter(|id| *id > 0)
            .ok_or_else(bad)?;
        Ok(Self { participant, id })
    }
}

impl fmt::Display for AccountRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.participant {
            Some(name) => write!(f, "{name}:{}", self.id),
            None => write!(f, "{}", self.id),
        }
    }
}

/// A participant's name: 1–32 of `a-z`, `0-9`, `_`, `-` (it goes into global transaction
/// ids and request keys, so nothing that needs quoting).
pub fn valid_name(name: &str) -> Result<String, String> {
    let ok = (1..=32).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-');
    if ok {
        Ok(name.to_owned())
    } else {
        Err(format!(
            "{name:?} is not a participant name (1-32 of a-z, 0-9, _ and -)"
        ))
    }
}

/// Which way the money goes between this ledger and the participant.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize)]
pub enum Direction {
    /// From an account of this ledger to one of the participant's.
    #[default]
    #[serde(rename = "out")]
    Outgoing,
    /// From an account of the participant's to one of this ledger.
    #[serde(rename = "in")]
    Incoming,
}

impl Direction {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Outgoing => "out",
            Self::Incoming => "in",
        }
    }
}

/// How a cross-ledger transfer is made.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub enum Mode {
    /// Two-phase commit: prepare both, log the decision, commit both.
    #[serde(rename = "2pc")]
    TwoPhase,
    /// Reserve locally, credit remotely, post (or void) the reservation.
    #[serde(rename = "saga")]
    Saga,
}

impl Mode {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::TwoPhase => "2pc",
            Self::Saga => "saga",
        }
    }
}

impl FromStr for Mode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "2pc" => Ok(Self::TwoPhase),
            "saga" => Ok(Self::Saga),
            other => Err(format!(
                "{other:?} is not a cross-ledger mode (saga or 2pc)"
            )),
        }
    }
}

/// Where a coordinator may be made to stop dead (tests of recovery): it returns
/// [`CrossError::Crashed`] at once, closing its connections without rolling anything back,
/// as a process killed at that point would. The first four are points of two-phase commit,
/// the last three step boundaries of the saga.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CrashPoint {
    /// Both halves written, neither prepared.
    BeforePrepare,
    /// The local half prepared, the remote one not.
    AfterFirstPrepare,
    /// Both prepared, no decision logged.
    AfterBothPrepares,
    /// 'commit' logged, nothing committed.
    AfterDecision,
    /// Saga: the sender's money reserved (a pending transfer), nothing credited.
    AfterReserve,
    /// Saga: the receiver credited, the reservation not yet posted.
    AfterCredit,
    /// Saga: the credit refused and the compensation logged, the reservation not yet voided.
    BeforeVoid,
}

/// Holds a coordinator at a [`CrashPoint`] until released, instead of stopping it: a
/// coordinator that is only slow there (tests of its race with recovery).
#[derive(Debug, Default)]
pub struct Hold {
    reached: tokio::sync::Notify,
    release: tokio::sync::Notify,
}

impl Hold {
    /// Waits until the coordinator has arrived at the point.
    pub async fn reached(&self) {
        self.reached.notified().await;
    }

    /// Lets the coordinator go on.
    pub fn release(&self) {
        self.release.notify_one();
    }
}

/// A request to move money between an account of this ledger and one of the remote
/// participant, either way.
#[derive(Debug, Clone)]
pub struct CrossRequest {
    /// Out of this ledger (the default) or into it.
    pub direction: Direction,
    /// The account debited: this ledger's when outgoing, the participant's when incoming.
    pub from: i64,
    /// The account credited: the participant's when outgoing, this ledger's when incoming.
    pub to: i64,
    /// Minor units, at least 1.
    pub amount: i64,
    /// The currency of both accounts.
    pub currency: Currency,
    /// Free text kept with the transfer.
    pub reference: Option<String>,
    /// Makes the transfer at most once for this key (a second request gets the first's row).
    pub request_key: Option<String>,
}

/// A cross-ledger transfer as its coordinator logged it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, sqlx::FromRow)]
#[serde(rename_all = "camelCase")]
pub struct CrossTransfer {
    /// The global transfer's number in this ledger's log.
    pub id: i64,
    /// `2pc` or `saga`.
    pub mode: String,
    /// `out` (this ledger debited, the participant credited) or `in` (the other way).
    pub direction: String,
    /// The account debited (in the participant's ledger when `in`).
    pub from_account: i64,
    /// The other bank.
    pub participant: String,
    /// The account credited (in the participant's ledger when `out`).
    pub to_account: i64,
    /// Minor units.
    pub amount: i64,
    /// ISO 4217.
    pub currency: String,
    /// The caller's reference.
    pub reference: Option<String>,
    /// `started`, `committed` or `aborted`.
    pub status: String,
    /// The last phase (2PC) or the next step (saga).
    pub step: String,
    /// The local half, once committed (for a saga out: the reservation, from its first step).
    pub local_transfer_id: Option<i64>,
    /// The remote half, once committed (for a saga in: the reservation, from its first step).
    pub remote_transfer_id: Option<i64>,
    /// Why it was aborted.
    pub failure: Option<String>,
    /// The longest time one of its transactions held row locks, in microseconds.
    pub hold_us: Option<i64>,
    /// Unix ms.
    pub created_at: i64,
    /// When the outcome was decided (Unix ms).
    pub decided_at: Option<i64>,
    /// When both halves were settled (Unix ms).
    pub finished_at: Option<i64>,
}

/// Why a cross-ledger transfer did not commit.
#[derive(Debug, thiserror::Error)]
pub enum CrossError {
    /// A ledger refused one half (funds, currency, unknown account…): nothing moved.
    #[error(transparent)]
    Ledger(#[from] Error),
    /// The request key already made a different cross-ledger transfer.
    #[error("request key {0:?} already made a different transfer")]
    RequestKeyReused(String),
    /// Cross-ledger transfers need both ledgers on PostgreSQL.
    #[error("{0}")]
    Unsupported(String),
    /// A database cannot prepare transactions.
    #[error(
        "max_prepared_transactions is 0 on the {0} database: two-phase commit cannot prepare \
         transactions there. Set max_prepared_transactions (at least the number of concurrent \
         transfers) in postgresql.conf and restart PostgreSQL, or run with --cross-ledger=saga"
    )]
    NoPreparedTransactions(String),
    /// Recovery decided to abort it first (the coordinator was too slow).
    #[error("cross-ledger transfer {0} was aborted by recovery")]
    Aborted(i64),
    /// The fault-injection hook stopped the coordinator here.
    #[error("the coordinator stopped at {0:?} (fault injection)")]
    Crashed(CrashPoint),
}

impl From<sqlx::Error> for CrossError {
    fn from(err: sqlx::Error) -> Self {
        Self::Ledger(err.into())
    }
}

/// The two ledgers and how transfers between them are made. Cheap to clone.
#[derive(Debug, Clone)]
pub struct CrossLedger {
    pub(crate) home: Ledger,
    pub(crate) remote: Ledger,
    pub(crate) home_name: String,
    pub(crate) remote_name: String,
    pub(crate) mode: Mode,
    pub(crate) crash_at: Option<CrashPoint>,
    pub(crate) hold_at: Option<(CrashPoint, Arc<Hold>)>,
}

impl CrossLedger {
    /// Transfers from `home` (whose database keeps the coordinator's log) to `remote`
    /// (called `remote_name` in account references). Both must be on PostgreSQL and
    /// installed; the remote's schema is migrated here.
    pub async fn new(
        home: Ledger,
        home_name: &str,
        remote: Ledger,
        remote_name: &str,
        mode: Mode,
    ) -> Result<Self, CrossError> {
        let home_name = valid_name(home_name).map_err(CrossError::Unsupported)?;
        let remote_name = valid_name(remote_name).map_err(CrossError::Unsupported)?;
        if home_name == remote_name {
            return Err(CrossError::Unsupported(format!(
                "the two ledgers need different names, both are {home_name:?}"
            )));
        }
        for (name, ledger) in [(&home_name, &home), (&remote_name, &remote)] {
            if !matches!(ledger.store().pools(), Pools::Postgres { .. }) {
                return Err(CrossError::Unsupported(format!(
                    "the {name} ledger is on SQLite: cross-ledger transfers need PostgreSQL \
                     for both ledgers"
                )));
            }
        }
        remote.install().await?;
        for outcome in ["committed", "aborted"] {
            for m in [Mode::TwoPhase, Mode::Saga] {
                metrics::counter!("ledger_cross_transfers_total",
                    "mode" => m.as_str(), "outcome" => outcome)
                .increment(0);
            }
        }
        Ok(Self {
            home,
            remote,
            home_name,
            remote_name,
            mode,
            crash_at: None,
            hold_at: None,
        })
    }

    /// The same coordinator, stopping dead at `point` (tests of recovery only).
    pub fn crashing_at(mut self, point: CrashPoint) -> Self {
        self.crash_at = Some(point);
        self
    }

    /// The same coordinator, waiting at `point` until `hold` releases it (tests only).
    pub fn holding_at(mut self, point: CrashPoint, hold: Arc<Hold>) -> Self {
        self.hold_at = Some((point, hold));
        self
    }

    /// Waits at `here` if told to hold there, then stops dead if told to crash there.
    pub(crate) async fn checkpoint(&self, here: CrashPoint) -> Result<(), CrossError> {
        if let Some((at, hold)) = &self.hold_at
            && *at == here
        {
            hold.reached.notify_one();
            hold.release.notified().await;
        }
        if self.crash_at == Some(here) {
            Err(CrossError::Crashed(here))
        } else {
            Ok(())
        }
    }

    /// The same coordinator in another mode.
    pub fn with_mode(mut self, mode: Mode) -> Self {
        self.mode = mode;
        self
    }

    /// How transfers are made.
    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// The remote participant's name (`remote` in `remote:42`).
    pub fn remote_name(&self) -> &str {
        &self.remote_name
    }

    /// The remote ledger.
    pub fn remote(&self) -> &Ledger {
        &self.remote
    }

    /// The home ledger.
    pub fn home(&self) -> &Ledger {
        &self.home
    }

    pub(crate) fn clock(&self) -> &Arc<dyn Clock> {
        self.home.clock()
    }

    pub(crate) fn home_pool(&self) -> &PgPool {
        pg(&self.home)
    }

    pub(crate) fn remote_pool(&self) -> &PgPool {
        pg(&self.remote)
    }

    /// The request key of one half (also its 2PC global transaction id):
    /// `basis:<home>.<id>:<participant>`.
    pub fn half_key(&self, id: i64, participant: &str) -> String {
        format!("basis:{}.{id}:{participant}", self.home_name)
    }

    /// The prefix of every global id and request key this coordinator makes.
    pub(crate) fn key_prefix(&self) -> String {
        format!("basis:{}.", self.home_name)
    }

    /// The ledger debited by a transfer going `direction`, and the one credited, each with
    /// its participant name.
    pub(crate) fn sides(&self, direction: &str) -> ((&Ledger, &str), (&Ledger, &str)) {
        let home = (&self.home, self.home_name.as_str());
        let remote = (&self.remote, self.remote_name.as_str());
        if direction == Direction::Incoming.as_str() {
            (remote, home)
        } else {
            (home, remote)
        }
    }

    /// Moves `req.amount` between a local account and a remote one (`req.direction` says
    /// which way), on both ledgers or neither.
    pub async fn transfer(&self, req: &CrossRequest) -> Result<CrossTransfer, CrossError> {
        if req.amount <= 0 {
            return Err(Error::InvalidAmount.into());
        }
        let (row, new) = self.start(req).await?;
        if !new {
            return Ok(row);
        }
        let outcome = match self.mode {
            Mode::TwoPhase => self.two_phase(row).await,
            Mode::Saga => self.saga(row).await,
        };
        let label = match &outcome {
            Ok(_) => "committed",
            Err(CrossError::Crashed(_)) => return outcome,
            Err(_) => "aborted",
        };
        metrics::counter!("ledger_cross_transfers_total",
            "mode" => self.mode.as_str(), "outcome" => label)
        .increment(1);
        outcome
    }

    /// A logged transfer.
    pub async fn get(&self, id: i64) -> Result<Option<CrossTransfer>, CrossError> {
        Ok(
            sqlx::query_as("SELECT * FROM ledger_cross_transfers WHERE id = $1")
                .bind(id)
                .fetch_optional(self.home_pool())
                .await?,
        )
    }

    /// Logs a new transfer (committed before any half is written), or finds the one the
    /// request key already made.
    async fn start(&self, req: &CrossRequest) -> Result<(CrossTransfer, bool), CrossError> {
        let now = self.clock().now_ms();
        let first_step = match self.mode {
            Mode::TwoPhase => "write",
            Mode::Saga => "debit",
        };
        let made: Option<CrossTransfer> = sqlx::query_as(
            "INSERT INTO ledger_cross_transfers (request_key, mode, from_account, participant, \
             to_account, amount, currency, reference, status, step, created_at, direction) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 'started', $9, $10, $11) \
             ON CONFLICT (request_key) DO NOTHING RETURNING *",
        )
        .bind(&req.request_key)
        .bind(self.mode.as_str())
        .bind(req.from)
        .bind(&self.remote_name)
        .bind(req.to)
        .bind(req.amount)
        .bind(req.currency.as_str())
        .bind(&req.reference)
        .bind(first_step)
        .bind(now)
        .bind(req.direction.as_str())
        .fetch_optional(self.home_pool())
        .await?;
        if let Some(row) = made {
            return Ok((row, true));
        }
        let key = req.request_key.clone().unwrap_or_default();
        let row: CrossTransfer =
            sqlx::query_as("SELECT * FROM ledger_cross_transfers WHERE request_key = $1")
                .bind(&key)
                .fetch_one(self.home_pool())
                .await?;
        let same = row.direction == req.direction.as_str()
            && row.from_account == req.from
            && row.to_account == req.to
            && row.amount == req.amount
            && row.currency == req.currency.as_str();
        if same {
            Ok((row, false))
        } else {
            Err(CrossError::RequestKeyReused(key))
        }
    }

    /// Records the outcome of `id` (and, for a saga, its step).
    pub(crate) async fn finish(
        &self,
        id: i64,
        status: &str,
        failure: Option<String>,
        hold_us: Option<i64>,
    ) -> Result<CrossTransfer, CrossError> {
        let now = self.clock().now_ms();
        let (local_key, remote_key) = (
            self.half_key(id, &self.home_name),
            self.half_key(id, &self.remote_name),
        );
        let (local, remote) = tokio::try_join!(
            self.transfer_id(self.home_pool(), &local_key),
            self.transfer_id(self.remote_pool(), &remote_key)
        )?;
        Ok(sqlx::query_as(
            "UPDATE ledger_cross_transfers SET status = $2, failure = COALESCE($3, failure), \
             hold_us = GREATEST(hold_us, $4), decided_at = COALESCE(decided_at, $5), \
             finished_at = $5, step = 'done', \
             local_transfer_id = COALESCE($6, local_transfer_id), \
             remote_transfer_id = COALESCE($7, remote_transfer_id) \
             WHERE id = $1 RETURNING *",
        )
        .bind(id)
        .bind(status)
        .bind(failure)
        .bind(hold_us)
        .bind(now)
        .bind(local)
        .bind(remote)
        .fetch_one(self.home_pool())
        .await?)
    }

    /// The id of the transfer made with `key` in `pool`'s ledger, if it committed.
    async fn transfer_id(&self, pool: &PgPool, key: &str) -> Result<Option<i64>, sqlx::Error> {
        sqlx::query_scalar("SELECT id FROM ledger_transfers WHERE request_key = $1")
            .bind(key)
            .fetch_optional(pool)
            .await
    }

    /// Runs (or resumes) the saga of `row`: every step is made at most once by its request
    /// key, so running it again after a crash continues where it stopped. A refusal of the
    /// debit aborts; a refusal of the credit voids the reservation (the compensation). A
    /// database failure leaves the row `started` for recovery to resume.
    pub(crate) async fn saga(&self, row: CrossTransfer) -> Result<CrossTransfer, CrossError> {
        let id = row.id;
        let currency = Currency::parse(&row.currency)?;
        let ((payer, payer_name), (payee, payee_name)) = self.sides(&row.direction);
        let incoming = row.direction == Direction::Incoming.as_str();
        if row.step == "void" {
            // Stopped while compensating: the credit was refused, finish the void.
            let reservation = if incoming {
                row.remote_transfer_id
            } else {
                row.local_transfer_id
            };
            if let Some(reservation) = reservation {
                match payer.void(reservation).await {
                    Ok(_)
                    | Err(Error::NotPending {
                        status: TransferStatus::Voided,
                        ..
                    }) => {}
                    Err(err) => return Err(err.into()),
                }
            }
            return self.finish(id, "aborted", None, None).await;
        }
        let mut hold = 0i64;
        let funding = payer.funding_account(&currency).await?;
        let reserve = TransferRequest::posted(row.from_account, funding.id, row.amount, &currency)
            .pending(None)
            .once_for(self.half_key(id, payer_name));
        let timed = Instant::now();
        let debit = match payer.transfer(&reserve).await {
            Ok(t) => t,
            Err(err) if is_refusal(&err) => {
                self.finish(id, "aborted", Some(err.to_string()), None)
                    .await?;
                return Err(err.into());
            }
            Err(err) => return Err(err.into()),
        };
        hold = hold.max(micros(timed.elapsed()));
        self.saga_step(id, "credit", Some(debit.id), incoming)
            .await?;
        self.checkpoint(CrashPoint::AfterReserve).await?;
        let payee_funding = payee.funding_account(&currency).await?;
        let credit =
            TransferRequest::posted(payee_funding.id, row.to_account, row.amount, &currency)
                .once_for(self.half_key(id, payee_name));
        let timed = Instant::now();
        let credited = payee.transfer(&credit).await;
        hold = hold.max(micros(timed.elapsed()));
        match credited {
            Ok(_) => {
                self.saga_step(id, "post", None, incoming).await?;
                self.checkpoint(CrashPoint::AfterCredit).await?;
                let timed = Instant::now();
                match payer.post(debit.id, None).await {
                    Ok(_) => {}
                    Err(Error::NotPending {
                        status: TransferStatus::Posted,
                        ..
                    }) => {}
                    Err(err) => return Err(err.into()),
                }
                hold = hold.max(micros(timed.elapsed()));
                self.finish(id, "committed", None, Some(hold)).await
            }
            Err(err) if is_refusal(&err) => {
                self.saga_step(id, "void", None, incoming).await?;
                self.checkpoint(CrashPoint::BeforeVoid).await?;
                let timed = Instant::now();
                match payer.void(debit.id).await {
                    Ok(_) => {}
                    Err(Error::NotPending {
                        status: TransferStatus::Voided,
                        ..
                    }) => {}
                    Err(other) => return Err(other.into()),
                }
                hold = hold.max(micros(timed.elapsed()));
                self.finish(id, "aborted", Some(err.to_string()), Some(hold))
                    .await?;
                Err(err.into())
            }
            Err(err) => Err(err.into()),
        }
    }

    /// Records the saga's next step, and its reservation (in the column of the ledger that
    /// holds it: the remote one for a transfer coming in).
    async fn saga_step(
        &self,
        id: i64,
        step: &str,
        reservation: Option<i64>,
        incoming: bool,
    ) -> Result<(), CrossError> {
        let (local, remote) = if incoming {
            (None, reservation)
        } else {
            (reservation, None)
        };
        sqlx::query(
            "UPDATE ledger_cross_transfers SET step = $2, \
             local_transfer_id = COALESCE($3, local_transfer_id), \
             remote_transfer_id = COALESCE($4, remote_transfer_id) WHERE id = $1",
        )
        .bind(id)
        .bind(step)
        .bind(local)
        .bind(remote)
        .execute(self.home_pool())
        .await?;
        Ok(())
    }
}

/// Whether a ledger error is a refusal (the request cannot succeed as it is) rather than a
/// failure of the database that a later attempt may get past.
pub(crate) fn is_refusal(err: &Error) -> bool {
    !matches!(err, Error::Store(_))
}

/// Microseconds, saturating.
pub(crate) fn micros(d: std::time::Duration) -> i64 {
    i64::try_from(d.as_micros()).unwrap_or(i64::MAX)
}

fn pg(ledger: &Ledger) -> &PgPool {
    match ledger.store().pools() {
        Pools::Postgres { write, .. } => write,
        Pools::Sqlite { .. } => unreachable!("CrossLedger::new accepts PostgreSQL ledgers only"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn account_references_name_a_participant_or_this_ledger() {
        assert_eq!(
            "42".parse::<AccountRef>(),
            Ok(AccountRef {
                participant: None,
                id: 42
            })
        );
        let remote: AccountRef = "bank-b:7".parse().unwrap();
        assert_eq!(remote.participant.as_deref(), Some("bank-b"));
        assert_eq!(remote.to_string(), "bank-b:7");
        for bad in [
            "", "x", "remote:", ":4", "Remote:4", "a b:4", "r:-1", "r:0", "r:1:2",
        ] {
            assert!(bad.parse::<AccountRef>().is_err(), "{bad}");
        }
        assert!("2pc".parse::<Mode>().is_ok() && "xa".parse::<Mode>().is_err());
    }
}
