-- Every plain link is a reuse candidate: the reuse index holds every link without an alias
-- (it held only links created with `"reuse": true`). The layout follows PostgreSQL's, where
-- the bytes per link are tight (see that engine's 0006): `links` keeps what every link has,
-- and the rarely set options live in `link_guards`.
--
-- - Expiry, click limit and password move to `link_guards`, one row per link that has any
--   of them, joined on lookup.
-- - `click_count` is gone: it repeated the sum of `link_daily_clicks.clicks`, and each
--   click flush rewrote it.
-- - `url_hash` is now the hash of every link's URL. SQLite has no hash function, so the
--   store computes it (64-bit FNV-1a, `links::url_hash`) when it writes a URL. SQL cannot
--   compute it for the rows already here, so those without one wait in
--   `links_pending_hashes` and the store fills them in right after migrating, before the
--   server starts (`Store::migrate`).
--
-- `ALTER TABLE … DROP COLUMN` rewrites the rows in place, so unlike 0004 nothing needs to
-- be set aside: no table that refers to `links` is dropped or recreated.
CREATE TABLE link_guards (
    link_id       INTEGER PRIMARY KEY REFERENCES links (id) ON DELETE CASCADE,
    expires_at    INTEGER,
    max_clicks    INTEGER,
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

CREATE TABLE links_pending_hashes (
    link_id INTEGER PRIMARY KEY
);
INSERT INTO links_pending_hashes (link_id) SELECT id FROM links WHERE url_hash IS NULL;

DROP INDEX links_reuse;
ALTER TABLE links DROP COLUMN click_count;
ALTER TABLE links DROP COLUMN expires_at;
ALTER TABLE links DROP COLUMN max_clicks;
ALTER TABLE links DROP COLUMN password_hash;
CREATE INDEX links_reuse ON links (url_hash) WHERE alias IS NULL;
