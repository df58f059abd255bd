//! Event streams and the global feed.
//!
//! Every state change appends events in the same transaction: one stream per account
//! (versions 1, 2, 3…, unique per account), and a global feed ordered by [`Position`].
//!
//! # Why the feed's position has two parts
//!
//! On PostgreSQL a sequence number is taken at insert but becomes visible at commit, and
//! transactions commit in any order: a reader that saw seq 11 could later find seq 10 appear
//! and skip it for ever. So each event also records the id of the transaction that wrote it,
//! the feed is ordered by (transaction id, seq), and a reader only receives events of
//! transactions older than every transaction of this database still running
//! (`pg_current_snapshot()`). Anything that commits later has a larger transaction id than
//! those, so the feed only ever grows at its end. The price: a writing transaction left open
//! in the ledger's database holds the feed (not the writes) back until it ends.
//! SQLite has one writer at a time, commit order is seq order, and the transaction part is 0.

use serde::Serialize;

use crate::model::Account;

/// What happened, from one account's point of view.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub enum EventKind {
    /// The account exists (version 1 of its stream).
    AccountOpened,
    /// A pending transfer reserved `amount`.
    TransferPending,
    /// `amount` moved; a pending transfer being posted also releases `released`.
    TransferPosted,
    /// A pending transfer was voided, releasing `released`.
    TransferVoided,
    /// A pending transfer timed out and was voided, releasing `released`.
    TransferExpired,
}

impl EventKind {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::AccountOpened => "AccountOpened",
            Self::TransferPending => "TransferPending",
            Self::TransferPosted => "TransferPosted",
            Self::TransferVoided => "TransferVoided",
            Self::TransferExpired => "TransferExpired",
        }
    }
}

impl TryFrom<String> for EventKind {
    type Error = String;
    fn try_from(value: String) -> Result<Self, String> {
        Ok(match value.as_str() {
            "AccountOpened" => Self::AccountOpened,
            "TransferPending" => Self::TransferPending,
            "TransferPosted" => Self::TransferPosted,
            "TransferVoided" => Self::TransferVoided,
            "TransferExpired" => Self::TransferExpired,
            other => return Err(format!("unknown event kind {other:?}")),
        })
    }
}

/// An event about to be appended.
#[derive(Debug, Clone)]
pub(crate) struct NewEvent {
    pub kind: EventKind,
    pub currency: String,
    pub transfer_id: Option<i64>,
    pub side: Option<&'static str>,
    pub counterparty_id: Option<i64>,
    pub amount: i64,
    pub released: i64,
}

impl NewEvent {
    pub(crate) fn opened(account: &Account) -> Self {
        Self {
            kind: EventKind::AccountOpened,
            currency: account.currency.clone(),
            transfer_id: None,
            side: None,
            counterparty_id: None,
            amount: 0,
            released: 0,
        }
    }
}

/// A stored event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, sqlx::FromRow)]
#[serde(rename_all = "camelCase")]
pub struct Event {
    /// Global sequence number (unique; the feed's order is [`Event::position`]).
    pub seq: i64,
    /// The writing transaction (PostgreSQL) or 0 (SQLite).
    pub tx: i64,
    /// The stream: the account this event is about.
    pub account_id: i64,
    /// The stream version this event made.
    pub version: i64,
    /// What happened.
    #[sqlx(try_from = "String")]
    pub kind: EventKind,
    /// The account's currency.
    pub currency: String,
    /// The transfer, for transfer events.
    pub transfer_id: Option<i64>,
    /// `"debit"` or `"credit"`: this account's side of the transfer.
    pub side: Option<String>,
    /// The other account of the transfer.
    pub counterparty_id: Option<i64>,
    /// Reserved (pending) or moved (posted) minor units; 0 for a void.
    pub amount: i64,
    /// Reservation released by a post, void or expiry.
    pub released: i64,
    /// Unix milliseconds.
    pub at: i64,
}

impl Event {
    /// Where this event stands in the global feed.
    pub fn position(&self) -> Position {
        Position {
            tx: self.tx,
            seq: self.seq,
        }
    }
}

/// A place in the global feed: events are ordered by `(tx, seq)`. `Position::START` is
/// before the first event. Written `tx.seq` in URLs and logs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct Position {
    /// The transaction part (0 on SQLite).
    pub tx: i64,
    /// The sequence part.
    pub seq: i64,
}

impl Position {
    /// Before every event.
    pub const START: Position = Position { tx: 0, seq: 0 };
}

impl std::fmt::Display for Position {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}", self.tx, self.seq)
    }
}

impl std::str::FromStr for Position {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || format!("{s:?} is not a feed position (tx.seq)");
        let (tx, seq) = s.split_once('.').ok_or_else(bad)?;
        let tx: i64 = tx.parse().map_err(|_| bad())?;
        let seq: i64 = seq.parse().map_err(|_| bad())?;
        if tx < 0 || seq < 0 {
            return Err(bad());
        }
        Ok(Position { tx, seq })
    }
}

/// The feed query on SQLite.
pub(crate) const FEED_SQLITE: &str = "SELECT * FROM ledger_events \
     WHERE (tx > $1 OR (tx = $1 AND seq > $2)) ORDER BY tx, seq LIMIT $3";

/// The feed query on PostgreSQL: only events of transactions older than every transaction
/// of this database that was still running when the statement's snapshot was taken.
/// Running transactions seen to belong to another database are left out (a backend serves
/// one database), so a busy neighbour on the same server does not hold this feed back;
/// anything not positively known to be elsewhere counts, which can only delay, never skip.
pub(crate) const FEED_POSTGRES: &str = "SELECT * FROM ledger_events \
     WHERE (tx > $1 OR (tx = $1 AND seq > $2)) \
       AND tx < (SELECT COALESCE(MIN(x::text::bigint), \
                                 pg_snapshot_xmax(pg_current_snapshot())::text::bigint) \
                 FROM pg_snapshot_xip(pg_current_snapshot()) AS x \
                 WHERE NOT EXISTS (SELECT 1 FROM pg_stat_activity a \
                                   WHERE a.datname <> current_database() \
                                     AND a.backend_xid::text::bigint = x::text::bigint % 4294967296)) \
     ORDER BY tx, seq LIMIT $3";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_position_reads_back_what_it_writes_and_refuses_junk() {
        let p = Position { tx: 812, seq: 77 };
        assert_eq!(p.to_string().parse::<Position>(), Ok(p));
        assert!("12".parse::<Position>().is_err());
        assert!("-1.3".parse::<Position>().is_err());
        assert!(Position { tx: 1, seq: 0 } > Position { tx: 0, seq: 99 });
    }
}
