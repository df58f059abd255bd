-- The ledger's tables (basis-ledger). Versions from 2001 keep them apart from the store's
-- (0001…) and the queue's (1001…). Money is in integer minor units (cents) of the account's
-- ISO 4217 currency. The invariants live here, not only in Rust:
--   * amounts are positive; a balance minus its reserved (pending) debits never goes below
--     zero unless the account allows overdraft (one CHECK on the account row);
--   * a balance moves only through entry lines (trigger), entry lines are append-only, and
--     every posted transfer has exactly one debit and one credit line of its posted amount
--     (unique side per transfer, a deferred foreign key to the partner line, a foreign key
--     to the transfer's accounts and amount); so the balances of a currency always sum to 0;
--   * a pending transfer resolves once (primary key of ledger_resolutions);
--   * SQLite turns an overflowing integer into a REAL: typeof() checks refuse that.

CREATE TABLE ledger_accounts (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    currency        TEXT    NOT NULL CONSTRAINT ledger_currency_code
                            CHECK (length(currency) = 3 AND currency GLOB '[A-Z][A-Z][A-Z]'),
    name            TEXT,
    owner_id        INTEGER,
    is_funding      BOOLEAN NOT NULL DEFAULT FALSE,
    allow_overdraft BOOLEAN NOT NULL DEFAULT FALSE,
    balance         INTEGER NOT NULL DEFAULT 0,
    pending_debits  INTEGER NOT NULL DEFAULT 0,
    pending_credits INTEGER NOT NULL DEFAULT 0,
    version         INTEGER NOT NULL DEFAULT 0 CHECK (version >= 0),
    created_at      INTEGER NOT NULL,
    CONSTRAINT ledger_integer_amounts CHECK (typeof(balance) = 'integer'
        AND typeof(pending_debits) = 'integer' AND typeof(pending_credits) = 'integer'),
    CONSTRAINT ledger_pending_not_negative CHECK (pending_debits >= 0 AND pending_credits >= 0),
    CONSTRAINT ledger_no_overdraft CHECK (allow_overdraft OR balance - pending_debits >= 0),
    CONSTRAINT ledger_funding_overdraws CHECK (NOT is_funding OR allow_overdraft),
    UNIQUE (id, currency)
);
-- One funding account per currency: the only way money enters or leaves the ledger.
CREATE UNIQUE INDEX ledger_funding_per_currency ON ledger_accounts (currency) WHERE is_funding;
CREATE INDEX ledger_accounts_by_owner ON ledger_accounts (owner_id, id);

CREATE TABLE ledger_transfers (
    id                INTEGER PRIMARY KEY AUTOINCREMENT,
    debit_account_id  INTEGER NOT NULL,
    credit_account_id INTEGER NOT NULL,
    currency          TEXT    NOT NULL,
    amount            INTEGER NOT NULL CONSTRAINT ledger_positive_amount
                              CHECK (typeof(amount) = 'integer' AND amount > 0),
    status            TEXT    NOT NULL CHECK (status IN ('pending', 'posted', 'voided')),
    posted_amount     INTEGER CHECK (posted_amount > 0 AND posted_amount <= amount),
    timeout_at        INTEGER,
    reference         TEXT,
    created_at        INTEGER NOT NULL,
    resolved_at       INTEGER,
    CONSTRAINT ledger_distinct_accounts CHECK (debit_account_id <> credit_account_id),
    CONSTRAINT ledger_posted_has_amount CHECK ((status = 'posted') = (posted_amount IS NOT NULL)),
    FOREIGN KEY (debit_account_id, currency) REFERENCES ledger_accounts (id, currency),
    FOREIGN KEY (credit_account_id, currency) REFERENCES ledger_accounts (id, currency),
    UNIQUE (id, debit_account_id, credit_account_id, posted_amount)
);
CREATE INDEX ledger_transfers_timeouts ON ledger_transfers (timeout_at) WHERE status = 'pending';

CREATE TABLE ledger_resolutions (
    transfer_id INTEGER PRIMARY KEY REFERENCES ledger_transfers (id),
    outcome     TEXT    NOT NULL CHECK (outcome IN ('posted', 'voided', 'expired')),
    amount      INTEGER NOT NULL CHECK (amount >= 0),
    resolved_at INTEGER NOT NULL
);

CREATE TABLE ledger_entries (
    id                INTEGER PRIMARY KEY AUTOINCREMENT,
    transfer_id       INTEGER NOT NULL,
    side              TEXT    NOT NULL CHECK (side IN ('debit', 'credit')),
    partner_side      TEXT    NOT NULL CHECK (partner_side IN ('debit', 'credit') AND partner_side <> side),
    account_id        INTEGER NOT NULL REFERENCES ledger_accounts (id),
    debit_account_id  INTEGER NOT NULL,
    credit_account_id INTEGER NOT NULL,
    amount            INTEGER NOT NULL CHECK (amount > 0),
    created_at        INTEGER NOT NULL,
    CONSTRAINT ledger_entry_account CHECK (account_id = CASE side WHEN 'debit' THEN debit_account_id ELSE credit_account_id END),
    UNIQUE (transfer_id, side),
    FOREIGN KEY (transfer_id, debit_account_id, credit_account_id, amount)
        REFERENCES ledger_transfers (id, debit_account_id, credit_account_id, posted_amount),
    FOREIGN KEY (transfer_id, partner_side) REFERENCES ledger_entries (transfer_id, side)
        DEFERRABLE INITIALLY DEFERRED
);
CREATE INDEX ledger_entries_by_account ON ledger_entries (account_id, id);

CREATE TRIGGER ledger_entries_move_balance AFTER INSERT ON ledger_entries BEGIN
    UPDATE ledger_accounts
       SET balance = balance + CASE NEW.side WHEN 'credit' THEN NEW.amount ELSE -NEW.amount END
     WHERE id = NEW.account_id;
END;
CREATE TRIGGER ledger_entries_no_update BEFORE UPDATE ON ledger_entries BEGIN
    SELECT RAISE(ABORT, 'ledger entries are append-only');
END;
CREATE TRIGGER ledger_entries_no_delete BEFORE DELETE ON ledger_entries BEGIN
    SELECT RAISE(ABORT, 'ledger entries are append-only');
END;

-- Event streams: one per account, versions 1, 2, 3… (the unique key makes an append at a
-- version someone else already took fail). `tx` orders the global feed: 0 on SQLite, whose
-- single writer commits in seq order; the writing transaction's id on PostgreSQL.
CREATE TABLE ledger_events (
    seq             INTEGER PRIMARY KEY AUTOINCREMENT,
    tx              INTEGER NOT NULL,
    account_id      INTEGER NOT NULL REFERENCES ledger_accounts (id),
    version         INTEGER NOT NULL CHECK (version >= 1),
    kind            TEXT    NOT NULL,
    currency        TEXT    NOT NULL,
    transfer_id     INTEGER,
    side            TEXT,
    counterparty_id INTEGER,
    amount          INTEGER NOT NULL DEFAULT 0,
    released        INTEGER NOT NULL DEFAULT 0,
    at              INTEGER NOT NULL,
    UNIQUE (account_id, version)
);
CREATE INDEX ledger_events_feed ON ledger_events (tx, seq);
CREATE TRIGGER ledger_events_no_update BEFORE UPDATE ON ledger_events BEGIN
    SELECT RAISE(ABORT, 'ledger events are append-only');
END;

-- Read models (projections) and where each one stands in the feed.
CREATE TABLE ledger_checkpoints (
    projection TEXT    PRIMARY KEY,
    tx         INTEGER NOT NULL,
    seq        INTEGER NOT NULL,
    at         INTEGER NOT NULL
);
CREATE TABLE ledger_view_balances (
    account_id      INTEGER PRIMARY KEY,
    currency        TEXT    NOT NULL,
    balance         INTEGER NOT NULL,
    pending_debits  INTEGER NOT NULL,
    pending_credits INTEGER NOT NULL,
    version         INTEGER NOT NULL
);
CREATE TABLE ledger_view_entries (
    account_id      INTEGER NOT NULL,
    seq             INTEGER NOT NULL,
    kind            TEXT    NOT NULL,
    transfer_id     INTEGER NOT NULL,
    side            TEXT    NOT NULL,
    counterparty_id INTEGER NOT NULL,
    amount          INTEGER NOT NULL,
    at              INTEGER NOT NULL,
    PRIMARY KEY (account_id, seq)
);
CREATE TABLE ledger_view_daily (
    day       INTEGER NOT NULL,
    currency  TEXT    NOT NULL,
    transfers INTEGER NOT NULL,
    amount    INTEGER NOT NULL,
    PRIMARY KEY (day, currency)
);
