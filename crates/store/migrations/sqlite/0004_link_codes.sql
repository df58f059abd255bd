-- Generated codes are no longer stored. A generated code is the link's id passed through a
-- keyed permutation and written in base62 (crates/server/src/links/code.rs); the server
-- decodes it back to the id, so a lookup by generated code is a rowid lookup. Only custom
-- aliases need a column and a unique index, and that index is partial: it holds aliased
-- links only.
--
-- `url_hash` (the reuse index) is set only on plain links created with `"reuse": true`,
-- and kept on the rows that had it before this migration.
--
-- SQLite cannot drop a UNIQUE column, so the table is rebuilt. sqlx runs a migration inside
-- a transaction, where `PRAGMA foreign_keys = OFF` has no effect, and dropping a parent
-- table with foreign keys on would cascade-delete the click aggregates. So the aggregates
-- are set aside first and their tables recreated around the new `links`.
CREATE TABLE links_v4 (
    id            INTEGER PRIMARY KEY,
    created_at    INTEGER NOT NULL,
    click_count   INTEGER NOT NULL DEFAULT 0,
    redirect_type INTEGER NOT NULL DEFAULT 301,
    long_url      TEXT    NOT NULL,
    -- A custom alias; NULL for a generated code (derived from `id`).
    alias         TEXT,
    -- Set only on reuse candidates (see above).
    url_hash      INTEGER,
    expires_at    INTEGER,
    max_clicks    INTEGER,
    password_hash TEXT,
    owner_id      TEXT
);

-- A stored code of exactly seven letters and digits is either a generated code or an alias
-- of that shape: SQL cannot tell, since that needs the key and the permutation. Such rows
-- start without an alias and their code waits here; the server classifies them at start
-- (an alias is written back to `alias`, a generated code needs nothing) and empties the
-- table. Every other stored code is an alias.
CREATE TABLE links_pending_codes (
    link_id INTEGER PRIMARY KEY,
    code    TEXT    NOT NULL
);

INSERT INTO links_v4 (id, created_at, click_count, redirect_type, long_url, alias, url_hash,
                      expires_at, max_clicks, password_hash, owner_id)
SELECT id, created_at, click_count, redirect_type, long_url,
       CASE WHEN length(code) = 7 AND code NOT GLOB '*[^A-Za-z0-9]*' THEN NULL ELSE code END,
       url_hash, expires_at, max_clicks, password_hash, owner_id
FROM links
ORDER BY id;

INSERT INTO links_pending_codes (link_id, code)
SELECT id, code FROM links WHERE length(code) = 7 AND code NOT GLOB '*[^A-Za-z0-9]*';

CREATE TEMP TABLE kept_daily AS SELECT * FROM link_daily_clicks;
CREATE TEMP TABLE kept_referrers AS SELECT * FROM link_referrers;
CREATE TEMP TABLE kept_devices AS SELECT * FROM link_devices;
DROP TABLE link_daily_clicks;
DROP TABLE link_referrers;
DROP TABLE link_devices;
-- No table refers to `links` any more, so dropping it deletes nothing else.
DROP TABLE links;
ALTER TABLE links_v4 RENAME TO links;

CREATE UNIQUE INDEX links_alias ON links (alias) WHERE alias IS NOT NULL;
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

INSERT INTO link_daily_clicks (link_id, day, clicks, bot_clicks)
SELECT link_id, day, clicks, bot_clicks FROM kept_daily;
INSERT INTO link_referrers (link_id, host, clicks) SELECT link_id, host, clicks FROM kept_referrers;
INSERT INTO link_devices (link_id, device, clicks) SELECT link_id, device, clicks FROM kept_devices;
DROP TABLE kept_daily;
DROP TABLE kept_referrers;
DROP TABLE kept_devices;
