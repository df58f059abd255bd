//! The JSON shapes of the ledger's resources. Amounts are integers in minor units.

use basis_ledger::{Account, Entry, Event, Transfer};
use chrono::{DateTime, Utc};
use serde::Serialize;
use utoipa::ToSchema;

use crate::clock::to_datetime;

/// An account.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AccountView {
    /// The account's id.
    pub id: i64,
    /// ISO 4217 code.
    pub currency: String,
    /// The owner's label.
    pub name: Option<String>,
    /// Posted credits minus posted debits, in minor units.
    pub balance: i64,
    /// Reserved by pending transfers out of this account (not spendable).
    pub pending: i64,
    /// Promised by pending transfers into this account.
    pub pending_credits: i64,
    /// The version of the account's event stream.
    pub version: i64,
    /// Whether the balance may go below zero.
    pub allow_overdraft: bool,
    /// When it was opened.
    pub created_at: DateTime<Utc>,
}

impl AccountView {
    /// The write side's view of `account`.
    pub fn strong(account: &Account) -> Self {
        Self {
            id: account.id,
            currency: account.currency.clone(),
            name: account.name.clone(),
            balance: account.balance,
            pending: account.pending_debits,
            pending_credits: account.pending_credits,
            version: account.version,
            allow_overdraft: account.allow_overdraft,
            created_at: to_datetime(account.created_at),
        }
    }
}

/// A transfer.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TransferView {
    /// The transfer's id.
    pub id: i64,
    /// `pending`, `posted` or `voided`.
    pub status: String,
    /// The account debited.
    pub from: i64,
    /// The account credited.
    pub to: i64,
    /// The amount asked for (reserved, while pending), in minor units.
    pub amount: i64,
    /// The amount that moved, once posted.
    pub posted_amount: Option<i64>,
    /// ISO 4217 code.
    pub currency: String,
    /// The caller's reference.
    pub reference: Option<String>,
    /// When a pending transfer is voided if not resolved before.
    pub timeout_at: Option<DateTime<Utc>>,
    /// When it was made.
    pub created_at: DateTime<Utc>,
    /// When a pending transfer was posted or voided.
    pub resolved_at: Option<DateTime<Utc>>,
}

impl From<&Transfer> for TransferView {
    fn from(t: &Transfer) -> Self {
        Self {
            id: t.id,
            status: t.status.as_str().to_owned(),
            from: t.debit_account_id,
            to: t.credit_account_id,
            amount: t.amount,
            posted_amount: t.posted_amount,
            currency: t.currency.clone(),
            reference: t.reference.clone(),
            timeout_at: t.timeout_at.map(to_datetime),
            created_at: to_datetime(t.created_at),
            resolved_at: t.resolved_at.map(to_datetime),
        }
    }
}

/// One line of an account statement.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct EntryView {
    /// The line's id (the list is newest first).
    pub id: i64,
    /// The transfer it belongs to.
    pub transfer_id: i64,
    /// `debit` or `credit`.
    pub side: String,
    /// Minor units.
    pub amount: i64,
    /// When it was written.
    pub created_at: DateTime<Utc>,
}

impl From<&Entry> for EntryView {
    fn from(e: &Entry) -> Self {
        Self {
            id: e.id,
            transfer_id: e.transfer_id,
            side: e.side.clone(),
            amount: e.amount,
            created_at: to_datetime(e.created_at),
        }
    }
}

/// One event of the global feed.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct EventView {
    /// Its place in the feed (`tx.seq`); pass the last one as `after`.
    pub position: String,
    /// The stream (account) it belongs to.
    pub account_id: i64,
    /// The stream version it made.
    pub version: i64,
    /// `AccountOpened`, `TransferPending`, `TransferPosted`, `TransferVoided`, `TransferExpired`.
    pub kind: String,
    /// ISO 4217 code.
    pub currency: String,
    /// The transfer, for transfer events.
    pub transfer_id: Option<i64>,
    /// This account's side of the transfer.
    pub side: Option<String>,
    /// Minor units reserved or moved.
    pub amount: i64,
    /// Reservation released.
    pub released: i64,
    /// When it happened.
    pub at: DateTime<Utc>,
}

impl From<&Event> for EventView {
    fn from(e: &Event) -> Self {
        Self {
            position: e.position().to_string(),
            account_id: e.account_id,
            version: e.version,
            kind: e.kind.as_str().to_owned(),
            currency: e.currency.clone(),
            transfer_id: e.transfer_id,
            side: e.side.clone(),
            amount: e.amount,
            released: e.released,
            at: to_datetime(e.at),
        }
    }
}

/// A page of the event feed.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct EventPage {
    /// The events, in feed order.
    pub items: Vec<EventView>,
    /// Where to continue from: pass as `after` (the request's own `after` when empty).
    pub next: String,
}
