-- The shop: products, orders, the checkout saga's rows and history, sent mail, and the
-- payment provider simulator's own records. The CHECKs are the invariants: stock never
-- goes below zero, quantities and prices are positive, each order has one saga, each
-- reservation is released at most once, each order gets at most one confirmation mail.
CREATE TABLE shop_products (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    name       TEXT   NOT NULL,
    price      INTEGER NOT NULL CHECK (price > 0),
    currency   TEXT   NOT NULL,
    stock      INTEGER NOT NULL CONSTRAINT shop_no_overselling CHECK (stock >= 0),
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);

CREATE TABLE shop_orders (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    buyer_id        TEXT   NOT NULL,
    payment_account INTEGER NOT NULL,
    currency        TEXT   NOT NULL,
    total           INTEGER NOT NULL CHECK (total > 0),
    status          TEXT   NOT NULL
                    CHECK (status IN ('pending', 'confirmed', 'cancelled', 'failed')),
    failure_reason  TEXT,
    created_at      INTEGER NOT NULL,
    updated_at      INTEGER NOT NULL
);
CREATE INDEX shop_orders_by_buyer ON shop_orders (buyer_id, id);

CREATE TABLE shop_order_items (
    order_id   INTEGER NOT NULL REFERENCES shop_orders (id),
    product_id INTEGER NOT NULL REFERENCES shop_products (id),
    quantity   INTEGER NOT NULL CHECK (quantity > 0),
    unit_price INTEGER NOT NULL CHECK (unit_price > 0),
    PRIMARY KEY (order_id, product_id)
);

-- Stock held by an order: written with the decrement, released (once) by the compensation.
CREATE TABLE shop_reservations (
    order_id    INTEGER NOT NULL REFERENCES shop_orders (id),
    product_id  INTEGER NOT NULL REFERENCES shop_products (id),
    quantity    INTEGER NOT NULL CHECK (quantity > 0),
    released_at INTEGER,
    PRIMARY KEY (order_id, product_id)
);

-- One saga per order (same id). `lease_token` fences a runner whose lease ran out.
CREATE TABLE shop_sagas (
    id           INTEGER PRIMARY KEY REFERENCES shop_orders (id),
    status       TEXT   NOT NULL
                 CHECK (status IN ('running', 'compensating', 'completed', 'compensated', 'stuck')),
    step         TEXT   NOT NULL,
    attempt      INTEGER NOT NULL DEFAULT 0,
    step_key     TEXT   NOT NULL,
    deadline     INTEGER NOT NULL,
    next_run_at  INTEGER NOT NULL,
    lease_until  INTEGER NOT NULL DEFAULT 0,
    lease_token  INTEGER NOT NULL DEFAULT 0,
    authorization_id INTEGER,
    done_steps   TEXT   NOT NULL DEFAULT '',
    last_error   TEXT,
    compensations INTEGER NOT NULL DEFAULT 0,
    created_at   INTEGER NOT NULL,
    updated_at   INTEGER NOT NULL
);
CREATE INDEX shop_sagas_due ON shop_sagas (next_run_at) WHERE status IN ('running', 'compensating');
CREATE INDEX shop_sagas_by_status ON shop_sagas (status, id);

-- What each attempt of each step and compensation did, in order.
CREATE TABLE shop_saga_log (
    id       INTEGER PRIMARY KEY AUTOINCREMENT,
    saga_id  INTEGER NOT NULL REFERENCES shop_sagas (id),
    step     TEXT   NOT NULL,
    action   TEXT   NOT NULL CHECK (action IN ('run', 'compensate')),
    outcome  TEXT   NOT NULL CHECK (outcome IN ('done', 'retry', 'failed')),
    attempt  INTEGER NOT NULL,
    detail   TEXT,
    at       INTEGER NOT NULL
);
CREATE INDEX shop_saga_log_by_saga ON shop_saga_log (saga_id, id);

-- One confirmation mail per order, whatever the deliveries of its job.
CREATE TABLE shop_mails (
    order_id INTEGER PRIMARY KEY REFERENCES shop_orders (id),
    sent_at  INTEGER NOT NULL
);

-- The payment provider simulator's authorizations, one per idempotency key. A tombstone
-- (status 'cancelled', no transfer) makes a late authorize with a cancelled key a refusal.
CREATE TABLE shop_payments (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    idem_key    TEXT   NOT NULL UNIQUE,
    account     INTEGER,
    payee       INTEGER,
    amount      INTEGER CHECK (amount > 0),
    currency    TEXT,
    status      TEXT   NOT NULL CHECK (status IN
                ('authorizing', 'authorized', 'captured', 'voided', 'refunding', 'refunded', 'cancelled')),
    transfer_id INTEGER,
    refund_transfer_id INTEGER,
    claim_until INTEGER NOT NULL DEFAULT 0,
    created_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL,
    CHECK (status = 'cancelled' OR (account IS NOT NULL AND payee IS NOT NULL
                                    AND amount IS NOT NULL AND currency IS NOT NULL))
);
