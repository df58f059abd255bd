-- Id blocks: each server instance leases a range of ids at a time.
CREATE TABLE id_sequences (
    name       TEXT PRIMARY KEY,
    next_value BIGINT NOT NULL
);
INSERT INTO id_sequences (name, next_value) VALUES ('links', 1);

-- Installation-wide settings that every instance must agree on (e.g. the code key).
CREATE TABLE settings (
    name  TEXT PRIMARY KEY,
    value TEXT NOT NULL
);

-- Times are Unix milliseconds (UTC) on both engines, so one set of queries serves both.
CREATE TABLE links (
    id            BIGINT  PRIMARY KEY,
    code          TEXT    NOT NULL UNIQUE,
    long_url      TEXT    NOT NULL,
    -- Set only on plain links (no alias, password, expiry or click limit): the reuse index.
    url_hash      BIGINT,
    created_at    BIGINT  NOT NULL,
    expires_at    BIGINT,
    max_clicks    BIGINT,
    redirect_type INTEGER NOT NULL DEFAULT 301,
    password_hash TEXT,
    owner_id      TEXT,
    click_count   BIGINT  NOT NULL DEFAULT 0
);
CREATE INDEX links_reuse ON links (url_hash) WHERE url_hash IS NOT NULL;

CREATE TABLE link_daily_clicks (
    link_id    BIGINT NOT NULL REFERENCES links (id) ON DELETE CASCADE,
    day        BIGINT NOT NULL, -- days since 1970-01-01 (UTC)
    clicks     BIGINT NOT NULL DEFAULT 0,
    bot_clicks BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (link_id, day)
);

CREATE TABLE link_referrers (
    link_id BIGINT NOT NULL REFERENCES links (id) ON DELETE CASCADE,
    host    TEXT   NOT NULL,
    clicks  BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (link_id, host)
);

CREATE TABLE link_devices (
    link_id BIGINT NOT NULL REFERENCES links (id) ON DELETE CASCADE,
    device  TEXT   NOT NULL,
    clicks  BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (link_id, device)
);
