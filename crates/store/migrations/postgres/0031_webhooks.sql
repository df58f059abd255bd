-- Webhooks (see `webhooks.rs`): endpoints users register, and the log of every delivery.
-- `events` is a space-separated list of event kinds. Times are Unix ms.
CREATE TABLE webhooks (
    id         BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    owner_id   TEXT   NOT NULL,
    url        TEXT   NOT NULL,
    events     TEXT   NOT NULL,
    secret     TEXT   NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE INDEX webhooks_owner ON webhooks (owner_id, id);

-- One row per event and endpoint: the exact body sent, where the attempts stand.
-- status: pending (an attempt is due at next_attempt_at), delivered, dead.
CREATE TABLE webhook_deliveries (
    id              BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    webhook_id      BIGINT NOT NULL REFERENCES webhooks (id) ON DELETE CASCADE,
    event_id        BIGINT NOT NULL,
    kind            TEXT   NOT NULL,
    body            TEXT   NOT NULL,
    status          TEXT   NOT NULL,
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at BIGINT NOT NULL,
    last_status     INTEGER,
    last_error      TEXT,
    created_at      BIGINT NOT NULL,
    finished_at     BIGINT,
    UNIQUE (webhook_id, event_id)
);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (next_attempt_at) WHERE status = 'pending';
CREATE INDEX webhook_deliveries_webhook ON webhook_deliveries (webhook_id, id);
