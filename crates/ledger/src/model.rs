//! The ledger's values: currencies, accounts, transfers, events and the errors.

use serde::Serialize;

/// An ISO 4217 currency code (three upper-case letters from the active list).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(transparent)]
pub struct Currency(String);

/// The active ISO 4217 codes (2024), so a typo such as `USX` is refused, not a new currency.
const ISO_4217: &str = "AED AFN ALL AMD ANG AOA ARS AUD AWG AZN BAM BBD BDT BGN BHD BIF BMD BND BOB \
BRL BSD BTN BWP BYN BZD CAD CDF CHF CLP CNY COP CRC CUP CVE CZK DJF DKK DOP DZD EGP ERN ETB EUR FJD \
FKP GBP GEL GHS GIP GMD GNF GTQ GYD HKD HNL HTG HUF IDR ILS INR IQD IRR ISK JMD JOD JPY KES KGS KHR \
KMF KPW KRW KWD KYD KZT LAK LBP LKR LRD LSL LYD MAD MDL MGA MKD MMK MNT MOP MRU MUR MVR MWK MXN MYR \
MZN NAD NGN NIO NOK NPR NZD OMR PAB PEN PGK PHP PKR PLN PYG QAR RON RSD RUB RWF SAR SBD SCR SDG SEK \
SGD SHP SLE SOS SRD SSP STN SVC SYP SZL THB TJS TMT TND TOP TRY TTD TWD TZS UAH UGX USD UYU UZS VES \
VND VUV WST XAF XCD XOF XPF YER ZAR ZMW ZWG";

impl Currency {
    /// Parses an ISO 4217 code; lower case is refused rather than guessed.
    pub fn parse(code: &str) -> Result<Self, Error> {
        let known = code.len() == 3
            && code.bytes().all(|b| b.is_ascii_uppercase())
            && ISO_4217.split_ascii_whitespace().any(|c| c == code);
        if known {
            Ok(Self(code.to_owned()))
        } else {
            Err(Error::InvalidCurrency(code.to_owned()))
        }
    }

    /// Every code [`Currency::parse`] takes, for documents that list them.
    pub fn known() -> impl Iterator<Item = &'static str> {
        ISO_4217.split_ascii_whitespace()
    }

    /// The code.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// An account as the write side stores it. Balances are in minor units; `balance` is credits
/// minus debits of posted transfers, `pending_*` are amounts reserved by pending transfers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, sqlx::FromRow)]
#[serde(rename_all = "camelCase")]
pub struct Account {
    /// The account's id.
    pub id: i64,
    /// Its currency (ISO 4217).
    pub currency: String,
    /// A label chosen by the owner.
    pub name: Option<String>,
    /// The user who owns it; `None` for the system's funding accounts.
    pub owner_id: Option<String>,
    /// Whether this is the funding account of its currency (money enters and leaves here).
    pub is_funding: bool,
    /// Whether `balance - pending_debits` may go below zero.
    pub allow_overdraft: bool,
    /// Posted credits minus posted debits.
    pub balance: i64,
    /// Reserved by pending transfers out of this account.
    pub pending_debits: i64,
    /// Promised by pending transfers into this account.
    pub pending_credits: i64,
    /// The version of the account's event stream (number of events appended).
    pub version: i64,
    /// Unix milliseconds.
    pub created_at: i64,
}

impl Account {
    /// What the account can still spend: its balance less what pending debits reserve.
    pub fn available(&self) -> i64 {
        self.balance.saturating_sub(self.pending_debits)
    }
}

/// What [`crate::Ledger::open_account`] needs.
#[derive(Debug, Clone)]
pub struct NewAccount {
    /// The currency.
    pub currency: Currency,
    /// An optional label.
    pub name: Option<String>,
    /// The owning user.
    pub owner_id: Option<String>,
    /// Allow the balance to go below zero.
    pub allow_overdraft: bool,
}

/// A request to move money from one account to another.
#[derive(Debug, Clone)]
pub struct TransferRequest {
    /// The account debited.
    pub from: i64,
    /// The account credited.
    pub to: i64,
    /// Minor units, at least 1.
    pub amount: i64,
    /// Must be the currency of both accounts.
    pub currency: Currency,
    /// `None`: posted at once. `Some(timeout)`: pending, reserving the amount until posted,
    /// voided, or voided by the expiry sweep once `timeout` ms have passed (`None` inside: no
    /// timeout).
    pub pending: Option<Option<i64>>,
    /// Free text kept with the transfer.
    pub reference: Option<String>,
    /// If set, the debited account's stream must be at exactly this version (optimistic
    /// concurrency for callers that read the account before deciding).
    pub expected_version: Option<i64>,
    /// If set, the key of the request that asks for this transfer (unique for ever): a
    /// second request with the key gets the transfer the first one made, not a new one.
    pub request_key: Option<String>,
}

impl TransferRequest {
    /// A posted transfer with no reference and no version expectation.
    pub fn posted(from: i64, to: i64, amount: i64, currency: &Currency) -> Self {
        Self {
            from,
            to,
            amount,
            currency: currency.clone(),
            pending: None,
            reference: None,
            expected_version: None,
            request_key: None,
        }
    }

    /// The same transfer, made at most once for `key` (see [`TransferRequest::request_key`]).
    pub fn once_for(mut self, key: impl Into<String>) -> Self {
        self.request_key = Some(key.into());
        self
    }

    /// The same transfer, pending with an optional timeout in milliseconds.
    pub fn pending(mut self, timeout_ms: Option<i64>) -> Self {
        self.pending = Some(timeout_ms);
        self
    }

    /// Refuses what no database round trip is needed to refuse.
    pub(crate) fn validate(&self) -> Result<(), Error> {
        if self.amount <= 0 {
            return Err(Error::InvalidAmount);
        }
        if self.from == self.to {
            return Err(Error::SameAccount);
        }
        if let Some(Some(timeout)) = self.pending
            && timeout <= 0
        {
            return Err(Error::InvalidTimeout);
        }
        Ok(())
    }
}

/// Where a transfer stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum TransferStatus {
    /// Reserved, not yet moved.
    Pending,
    /// Moved (for a pending transfer: its posted amount).
    Posted,
    /// Released without moving (by a void or by its timeout).
    Voided,
}

impl TransferStatus {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Posted => "posted",
            Self::Voided => "voided",
        }
    }
}

impl std::fmt::Display for TransferStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl TryFrom<String> for TransferStatus {
    type Error = String;
    fn try_from(value: String) -> Result<Self, String> {
        match value.as_str() {
            "pending" => Ok(Self::Pending),
            "posted" => Ok(Self::Posted),
            "voided" => Ok(Self::Voided),
            other => Err(format!("unknown transfer status {other:?}")),
        }
    }
}

/// A transfer as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, sqlx::FromRow)]
#[serde(rename_all = "camelCase")]
pub struct Transfer {
    /// The transfer's id.
    pub id: i64,
    /// The account debited.
    pub debit_account_id: i64,
    /// The account credited.
    pub credit_account_id: i64,
    /// The currency of both.
    pub currency: String,
    /// The amount asked for (reserved, while pending).
    pub amount: i64,
    /// Where it stands.
    #[sqlx(try_from = "String")]
    pub status: TransferStatus,
    /// The amount that moved, once posted.
    pub posted_amount: Option<i64>,
    /// When a pending transfer is voided by the sweep (Unix ms).
    pub timeout_at: Option<i64>,
    /// The caller's reference.
    pub reference: Option<String>,
    /// Unix ms.
    pub created_at: i64,
    /// When it was posted or voided, if it was pending (Unix ms).
    pub resolved_at: Option<i64>,
}

/// One entry line: the debit or the credit half of a posted transfer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, sqlx::FromRow)]
#[serde(rename_all = "camelCase")]
pub struct Entry {
    /// The line's id (newest first in listings).
    pub id: i64,
    /// The transfer it belongs to.
    pub transfer_id: i64,
    /// The account whose balance it moved.
    pub account_id: i64,
    /// `"debit"` or `"credit"`.
    pub side: String,
    /// Minor units.
    pub amount: i64,
    /// Unix ms.
    pub created_at: i64,
}

/// The errors a ledger operation can end in. Each refusal changes nothing stored.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Not an active ISO 4217 code.
    #[error("{0:?} is not an ISO 4217 currency code")]
    InvalidCurrency(String),
    /// Amounts are whole minor units, at least 1.
    #[error("the amount must be at least 1 minor unit")]
    InvalidAmount,
    /// A pending transfer's timeout must be positive.
    #[error("the timeout must be positive")]
    InvalidTimeout,
    /// Debit and credit account are the same.
    #[error("a transfer needs two different accounts")]
    SameAccount,
    /// No such account.
    #[error("account {0} does not exist")]
    AccountNotFound(i64),
    /// No such transfer.
    #[error("transfer {0} does not exist")]
    TransferNotFound(i64),
    /// The request's currency is not the accounts'.
    #[error("account {account} holds {expected}, not {got}")]
    CurrencyMismatch {
        /// The account whose currency differs.
        account: i64,
        /// Its currency.
        expected: String,
        /// The currency asked for.
        got: String,
    },
    /// Without overdraft, the debited account cannot cover the amount.
    #[error("account {account} has {available} available, {requested} requested")]
    InsufficientFunds {
        /// The debited account.
        account: i64,
        /// Balance less pending debits.
        available: i64,
        /// The amount asked for.
        requested: i64,
    },
    /// A balance or pending total would leave the 64-bit range.
    #[error("the amount would overflow a 64-bit balance")]
    Overflow,
    /// Posting or voiding a transfer that is not pending (it resolved already).
    #[error("transfer {id} is {status}, not pending")]
    NotPending {
        /// The transfer.
        id: i64,
        /// What it is now.
        status: TransferStatus,
    },
    /// Posting a pending transfer after its timeout.
    #[error("transfer {0} timed out")]
    Expired(i64),
    /// Posting more than was reserved.
    #[error("cannot post {requested}, transfer {id} reserved {reserved}")]
    PostExceedsPending {
        /// The transfer.
        id: i64,
        /// What it reserved.
        reserved: i64,
        /// What the caller asked to post.
        requested: i64,
    },
    /// The account's stream moved past the version the caller expected.
    #[error("account {account} is at version {current}, not {expected}")]
    VersionConflict {
        /// The account.
        account: i64,
        /// The version the caller expected.
        expected: i64,
        /// The stream's current version.
        current: i64,
    },
    /// The request key already made a transfer that differs from this request.
    #[error("request key {0:?} already made a different transfer")]
    RequestKeyReused(String),
    /// Every seat of the event is booked.
    #[error("event {0} is sold out")]
    SoldOut(i64),
    /// No such event with seats.
    #[error("event {0} does not exist")]
    SeatEventNotFound(i64),
    /// The database refused the write on an invariant (a CHECK, a key or a trigger). The
    /// checks in Rust come first, so this means a bug or a write that bypassed them.
    #[error("invariant violated: {0}")]
    Invariant(String),
    /// The database failed.
    #[error(transparent)]
    Store(#[from] basis_store::Error),
}

impl Error {
    /// Whether the transaction lost a race the database detected and may simply run again:
    /// serialization failure (40001), deadlock (40P01), a stream version taken by a
    /// concurrent append, or a request key taken by a concurrent transfer (the next attempt
    /// finds that transfer).
    pub(crate) fn is_retryable(&self) -> bool {
        match self {
            Error::Store(basis_store::Error::Database(sqlx::Error::Database(db))) => {
                matches!(db.code().as_deref(), Some("40001" | "40P01"))
                    || (db.is_unique_violation()
                        && (db.message().contains("version")
                            || db.message().contains("request_key")))
            }
            _ => false,
        }
    }
}

impl From<sqlx::Error> for Error {
    fn from(err: sqlx::Error) -> Self {
        if let sqlx::Error::Database(db) = &err {
            // 22003: PostgreSQL's numeric_value_out_of_range.
            if db.code().as_deref() == Some("22003") {
                return Error::Overflow;
            }
            let message = db.message();
            if matches!(db.kind(), sqlx::error::ErrorKind::CheckViolation)
                || message.contains("append-only")
            {
                if message.contains("ledger_integer_amounts") {
                    return Error::Overflow;
                }
                return Error::Invariant(message.to_owned());
            }
            if db.is_foreign_key_violation() {
                return Error::Invariant(message.to_owned());
            }
        }
        Error::Store(err.into())
    }
}
