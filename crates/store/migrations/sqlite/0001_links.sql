-- Id blocks: each server instance leases a range of ids at a time.
CREATE TABLE id_sequences (
    name       TEXT PRIMARY KEY,
    next_value INTEGER NOT NULL
) WITHOUT ROWID;
INSERT INTO id_sequences (name, next_value) VALUES ('links', 1);

-- Installation-wide settings that every instance must agree on (e.g. the code key).
CREATE TABLE settings (
    name  TEXT PRIMARY KEY,
    value TEXT NOT NULL
) WITHOUT ROWID;

-- Times are Unix milliseconds (UTC) on both engines.
CREATE TABLE links (
    id            INTEGER PRIMARY KEY,
    code          TEXT    NOT NULL UNIQUE,
    long_url      TEXT    NOT NULL,
    -- Set only on plain links (no alias, password, expiry or click limit): the reuse index.
    url_hash      INTEGER,
    created_at    INTEGER NOT NULL,
    expires_at    INTEGER,
    max_clicks    INTEGER,
    redirect_type INTEGER NOT NULL DEFAULT 301,
    password_hash TEXT,
    owner_id      TEXT,
    click_count   INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX links_reuse ON links (url_hash) WHERE url_hash IS NOT NULL;

CREATE TABLE link_daily_clicks (
    link_id    INTEGER NOT NULL REFERENCES links (id) ON DELETE CASCADE,
    day        INTEGER NOT NULL, -- days since 1970-01-01 (UTC)
    clicks     INTEGER NOT NULL DEFAULT 0,
    bot_clicks INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (link_id, day)
) WITHOUT ROWID;

CREATE TABLE link_referrers (
    link_id INTEGER NOT NULL REFERENCES links (id) ON DELETE CASCADE,
    host    TEXT    NOT NULL,
    clicks  INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (link_id, host)
) WITHOUT ROWID;

CREATE TABLE link_devices (
    link_id INTEGER NOT NULL REFERENCES links (id) ON DELETE CASCADE,
    device  TEXT    NOT NULL,
    clicks  INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (link_id, device)
) WITHOUT ROWID;
