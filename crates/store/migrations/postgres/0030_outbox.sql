-- The transactional outbox (see `outbox.rs`): an event is written here in the same
-- transaction as the change it announces, and the relay moves it to the queue, deleting it
-- once published. `xid` is the writing transaction's id: the relay publishes a row only
-- once every transaction that could have written an earlier row has ended (below the
-- snapshot's xmin). Times are Unix ms.
CREATE TABLE IF NOT EXISTS outbox (
    id         BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    xid        xid8   NOT NULL DEFAULT pg_current_xact_id(),
    kind       TEXT   NOT NULL,
    aggregate  TEXT   NOT NULL,
    payload    TEXT   NOT NULL,
    created_at BIGINT NOT NULL
);

-- Which relay instance may publish, until when (one row per relay name).
CREATE TABLE IF NOT EXISTS outbox_relay (
    name    TEXT   PRIMARY KEY,
    holder  TEXT   NOT NULL,
    held_until BIGINT NOT NULL
);

-- Events a consumer has applied, so a redelivery has no second effect.
CREATE TABLE IF NOT EXISTS processed_events (
    consumer     TEXT   NOT NULL,
    event_id     BIGINT NOT NULL,
    processed_at BIGINT NOT NULL,
    PRIMARY KEY (consumer, event_id)
);
CREATE INDEX IF NOT EXISTS processed_events_at ON processed_events (processed_at);
