-- Generated codes are no longer stored. A generated code is the link's id passed through a
-- keyed permutation and written in base62 (crates/server/src/links/code.rs); the server
-- decodes it back to the id, so a lookup by generated code is a primary-key lookup. Only
-- custom aliases need a column and a unique index, and that index is partial: it holds
-- aliased links only.
--
-- The reuse index becomes partial in a stricter sense: `url_hash` is set only on plain
-- links created with `"reuse": true` (and kept on the rows that had it before this
-- migration), so links made without asking for reuse cost no index entry.
--
-- The table is rebuilt rather than altered so every row is rewritten in the new column
-- order: fixed-width columns first and the rarely set ones last, which keeps a plain link's
-- tuple free of alignment padding.
CREATE TABLE links_v4 (
    id            BIGINT  PRIMARY KEY,
    created_at    BIGINT  NOT NULL,
    click_count   BIGINT  NOT NULL DEFAULT 0,
    redirect_type INTEGER NOT NULL DEFAULT 301,
    long_url      TEXT    NOT NULL,
    -- A custom alias; NULL for a generated code (derived from `id`).
    alias         TEXT,
    -- Set only on reuse candidates (see above).
    url_hash      BIGINT,
    expires_at    BIGINT,
    max_clicks    BIGINT,
    password_hash TEXT,
    owner_id      TEXT
);

-- A stored code of exactly seven letters and digits is either a generated code or an alias
-- of that shape: SQL cannot tell, since that needs the key and the permutation. Such rows
-- start without an alias and their code waits here; the server classifies them at start
-- (an alias is written back to `alias`, a generated code needs nothing) and empties the
-- table. Every other stored code is an alias.
CREATE TABLE links_pending_codes (
    link_id BIGINT PRIMARY KEY,
    code    TEXT   NOT NULL
);

INSERT INTO links_v4 (id, created_at, click_count, redirect_type, long_url, alias, url_hash,
                      expires_at, max_clicks, password_hash, owner_id)
SELECT id, created_at, click_count, redirect_type, long_url,
       CASE WHEN code ~ '^[A-Za-z0-9]{7}$' THEN NULL ELSE code END,
       url_hash, expires_at, max_clicks, password_hash, owner_id
FROM links
ORDER BY id;

INSERT INTO links_pending_codes (link_id, code)
SELECT id, code FROM links WHERE code ~ '^[A-Za-z0-9]{7}$';

ALTER TABLE link_daily_clicks DROP CONSTRAINT link_daily_clicks_link_id_fkey;
ALTER TABLE link_referrers DROP CONSTRAINT link_referrers_link_id_fkey;
ALTER TABLE link_devices DROP CONSTRAINT link_devices_link_id_fkey;
DROP TABLE links;
ALTER TABLE links_v4 RENAME TO links;
ALTER INDEX links_v4_pkey RENAME TO links_pkey;

CREATE UNIQUE INDEX links_alias ON links (alias) WHERE alias IS NOT NULL;
CREATE INDEX links_reuse ON links (url_hash) WHERE url_hash IS NOT NULL;

ALTER TABLE link_daily_clicks ADD CONSTRAINT link_daily_clicks_link_id_fkey
    FOREIGN KEY (link_id) REFERENCES links (id) ON DELETE CASCADE;
ALTER TABLE link_referrers ADD CONSTRAINT link_referrers_link_id_fkey
    FOREIGN KEY (link_id) REFERENCES links (id) ON DELETE CASCADE;
ALTER TABLE link_devices ADD CONSTRAINT link_devices_link_id_fkey
    FOREIGN KEY (link_id) REFERENCES links (id) ON DELETE CASCADE;
