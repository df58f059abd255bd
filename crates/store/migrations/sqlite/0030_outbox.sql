-- The transactional outbox (see `outbox.rs`): an event is written here in the same
-- transaction as the change it announces, and the relay moves it to the queue, deleting it
-- once published. AUTOINCREMENT: an id is never handed out twice, even after the newest row
-- is deleted, so ids stay valid event ids for consumers' deduplication. Times are Unix ms.
CREATE TABLE IF NOT EXISTS outbox (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    kind       TEXT    NOT NULL,
    aggregate  TEXT    NOT NULL,
    payload    TEXT    NOT NULL,
    created_at INTEGER NOT NULL
);

-- Which relay instance may publish, until when (one row per relay name).
CREATE TABLE IF NOT EXISTS outbox_relay (
    name    TEXT    PRIMARY KEY,
    holder  TEXT    NOT NULL,
    held_until INTEGER NOT NULL
);

-- Events a consumer has applied, so a redelivery has no second effect.
CREATE TABLE IF NOT EXISTS processed_events (
    consumer     TEXT    NOT NULL,
    event_id     INTEGER NOT NULL,
    processed_at INTEGER NOT NULL,
    PRIMARY KEY (consumer, event_id)
);
CREATE INDEX IF NOT EXISTS processed_events_at ON processed_events (processed_at);
