-- Every plain link is a reuse candidate, and a link costs at most 200 bytes with the reuse
-- index included. At 1M links with 91-byte URLs, the 0004 shape plus an index entry for
-- every link measured 225.7 bytes; this shape measures about 196. Where the bytes went:
--
-- - An 11-column tuple has a 2-byte null bitmap, so its header is 32 bytes after alignment;
--   with 8 columns or fewer it is 24. `links` keeps six: what every link has.
-- - Expiry, click limit and password, set on few links, move to `link_guards`, one row per
--   link that has any of them, joined on lookup.
-- - `click_count` is gone: it repeated the sum of `link_daily_clicks.clicks`, and rewriting
--   it at every click flush made a new tuple version each time (not HOT on full pages),
--   with new primary-key and reuse-index entries. `links` is now insert-mostly, so pages
--   are filled to 100% and the primary key uses `fillfactor = 100` too (ids only grow).
-- - `redirect_type` fits a SMALLINT.
-- - The reuse index needs no column: it is an expression index on `hashtext(long_url)`
--   (4 bytes, computed by PostgreSQL on insert and update, so it cannot disagree with the
--   URL). It holds every link without an alias; the query compares the full URL and
--   leaves out links with guards or another redirect type. A stored 4-byte hash column
--   would have cost about 4 bytes more per row, 199.5 bytes per link at 1M.
--
-- The table is rebuilt rather than altered: dropped columns would still count towards the
-- null bitmap, and the rows would keep their old width until rewritten.
CREATE TABLE links_v6 (
    id            BIGINT   PRIMARY KEY WITH (fillfactor = 100),
    created_at    BIGINT   NOT NULL,
    redirect_type SMALLINT NOT NULL DEFAULT 301,
    long_url      TEXT     NOT NULL,
    -- A custom alias; NULL for a generated code (derived from `id`).
    alias         TEXT,
    owner_id      TEXT
);

INSERT INTO links_v6 (id, created_at, redirect_type, long_url, alias, owner_id)
SELECT id, created_at, redirect_type, long_url, alias, owner_id
FROM links
ORDER BY id;

-- The rarely set options of a link. A row exists only while at least one is set.
CREATE TABLE link_guards (
    link_id       BIGINT PRIMARY KEY,
    expires_at    BIGINT,
    max_clicks    BIGINT,
    password_hash TEXT
);

INSERT INTO link_guards (link_id, expires_at, max_clicks, password_hash)
SELECT id, expires_at, max_clicks, password_hash
FROM links
WHERE expires_at IS NOT NULL OR max_clicks IS NOT NULL OR password_hash IS NOT NULL;

-- A link's human clicks are now the sum of its per-day rows. Every version so far added
-- a flush's human clicks to `click_count` and to the day rows in one transaction, so the
-- two agree; where they do not (rows written by hand or by other tools), the difference
-- is kept on day -1, a row the per-day lists skip, so `clickCount` reads as before and
-- the per-day figures do too.
INSERT INTO link_daily_clicks (link_id, day, clicks, bot_clicks)
SELECT l.id, -1, l.click_count - COALESCE(d.clicks, 0), 0
FROM links l
LEFT JOIN (SELECT link_id, SUM(clicks) AS clicks FROM link_daily_clicks GROUP BY link_id) d
    ON d.link_id = l.id
WHERE l.click_count <> COALESCE(d.clicks, 0);

ALTER TABLE link_daily_clicks DROP CONSTRAINT link_daily_clicks_link_id_fkey;
ALTER TABLE link_referrers DROP CONSTRAINT link_referrers_link_id_fkey;
ALTER TABLE link_devices DROP CONSTRAINT link_devices_link_id_fkey;
ALTER TABLE link_exports DROP CONSTRAINT link_exports_link_id_fkey;
DROP TABLE links;
ALTER TABLE links_v6 RENAME TO links;
ALTER INDEX links_v6_pkey RENAME TO links_pkey;

CREATE UNIQUE INDEX links_alias ON links (alias) WHERE alias IS NOT NULL;
CREATE INDEX links_reuse ON links (hashtext(long_url)) WHERE alias IS NULL;

ALTER TABLE link_guards ADD CONSTRAINT link_guards_link_id_fkey
    FOREIGN KEY (link_id) REFERENCES links (id) ON DELETE CASCADE;
ALTER TABLE link_daily_clicks ADD CONSTRAINT link_daily_clicks_link_id_fkey
    FOREIGN KEY (link_id) REFERENCES links (id) ON DELETE CASCADE;
ALTER TABLE link_referrers ADD CONSTRAINT link_referrers_link_id_fkey
    FOREIGN KEY (link_id) REFERENCES links (id) ON DELETE CASCADE;
ALTER TABLE link_devices ADD CONSTRAINT link_devices_link_id_fkey
    FOREIGN KEY (link_id) REFERENCES links (id) ON DELETE CASCADE;
ALTER TABLE link_exports ADD CONSTRAINT link_exports_link_id_fkey
    FOREIGN KEY (link_id) REFERENCES links (id) ON DELETE CASCADE;
