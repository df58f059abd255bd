-- The visit log (`--visit-log-days`): one row per visit, written in batches by the click
-- worker and pruned after the configured number of days. Off by default, so an install
-- that never turns it on keeps an empty table.
--
-- The IP is truncated before it is stored (/24 for IPv4, /48 for IPv6); `bot` repeats
-- `device = 'bot'` so the default listing (humans only) filters on one column.
CREATE TABLE link_visits (
    id       BIGINT  GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    link_id  BIGINT  NOT NULL REFERENCES links (id) ON DELETE CASCADE,
    at       BIGINT  NOT NULL,
    referrer TEXT,
    device   TEXT    NOT NULL,
    browser  TEXT    NOT NULL,
    country  TEXT,
    bot      BOOLEAN NOT NULL,
    ip       TEXT
);
-- A link's visits newest first (the listing and its cursor), and the pruning by age.
CREATE INDEX link_visits_link ON link_visits (link_id, at, id);
CREATE INDEX link_visits_at ON link_visits (at);
