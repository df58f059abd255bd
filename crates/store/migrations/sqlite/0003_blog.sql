-- The blog: posts, their tags and categories, comments, and the idempotency keys of POSTs.
-- Times are Unix milliseconds (UTC). Every filter and sort of `GET /posts` has an index; the
-- EXPLAIN tests in crates/server/tests/api/posts_plans.rs check that the planner uses them.

-- Categories and tags are tables keyed by their (normalised) name: the name is the natural
-- key, so posts reference it directly and filtering needs no join.
CREATE TABLE categories (
    name TEXT PRIMARY KEY
) WITHOUT ROWID;

CREATE TABLE tags (
    name TEXT PRIMARY KEY
) WITHOUT ROWID;

CREATE TABLE posts (
    id         INTEGER PRIMARY KEY,
    author_id  TEXT    NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    title      TEXT    NOT NULL,
    body       TEXT    NOT NULL, -- Markdown as written
    -- Sanitised HTML rendered from body: derived data kept deliberately (rendering on every
    -- read would cost more than the bytes), written only together with body.
    body_html  TEXT    NOT NULL,
    category   TEXT    REFERENCES categories (name),
    status     TEXT    NOT NULL CHECK (status IN ('draft', 'published')),
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    version    INTEGER NOT NULL DEFAULT 1 -- bumped by every change: compare-and-set for If-Match
);
CREATE INDEX posts_status_created ON posts (status, created_at, id);
CREATE INDEX posts_status_title ON posts (status, title, id);
CREATE INDEX posts_author_created ON posts (author_id, status, created_at, id);
CREATE INDEX posts_category_created ON posts (category, status, created_at, id);

CREATE TABLE post_tags (
    post_id INTEGER NOT NULL REFERENCES posts (id) ON DELETE CASCADE,
    tag     TEXT    NOT NULL REFERENCES tags (name),
    PRIMARY KEY (post_id, tag)
) WITHOUT ROWID;
CREATE INDEX post_tags_tag ON post_tags (tag, post_id);

-- Deleting a post deletes its comments (ON DELETE CASCADE): see docs/blog.md.
CREATE TABLE comments (
    id         INTEGER PRIMARY KEY,
    post_id    INTEGER NOT NULL REFERENCES posts (id) ON DELETE CASCADE,
    author_id  TEXT    NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    body       TEXT    NOT NULL, -- plain text
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    version    INTEGER NOT NULL DEFAULT 1
);
CREATE INDEX comments_post_created ON comments (post_id, created_at, id);
CREATE INDEX comments_author ON comments (author_id);

-- Full-text search over title and body, kept in step with posts by triggers. The porter
-- stemmer matches the 'english' configuration PostgreSQL uses.
CREATE VIRTUAL TABLE posts_fts USING fts5 (
    title, body,
    content = 'posts', content_rowid = 'id',
    tokenize = 'porter unicode61 remove_diacritics 2'
);
CREATE TRIGGER posts_fts_insert AFTER INSERT ON posts BEGIN
    INSERT INTO posts_fts (rowid, title, body) VALUES (new.id, new.title, new.body);
END;
CREATE TRIGGER posts_fts_delete AFTER DELETE ON posts BEGIN
    INSERT INTO posts_fts (posts_fts, rowid, title, body) VALUES ('delete', old.id, old.title, old.body);
END;
CREATE TRIGGER posts_fts_update AFTER UPDATE OF title, body ON posts BEGIN
    INSERT INTO posts_fts (posts_fts, rowid, title, body) VALUES ('delete', old.id, old.title, old.body);
    INSERT INTO posts_fts (rowid, title, body) VALUES (new.id, new.title, new.body);
END;

-- Responses to POSTs that carried an Idempotency-Key, per caller, kept for 24 hours. A row
-- with no status is a request still in progress.
CREATE TABLE idempotency_keys (
    scope        TEXT    NOT NULL, -- the caller's user id
    key          TEXT    NOT NULL,
    fingerprint  TEXT    NOT NULL, -- SHA-256 of method, path and body
    status       INTEGER,
    location     TEXT,
    body         BLOB,
    created_at   INTEGER NOT NULL,
    expires_at   INTEGER NOT NULL,
    PRIMARY KEY (scope, key)
) WITHOUT ROWID;
CREATE INDEX idempotency_keys_expiry ON idempotency_keys (expires_at);
