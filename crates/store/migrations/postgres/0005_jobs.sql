-- Background jobs of the product (the queue's own tables are the queue crate's).
-- Times are Unix milliseconds (UTC).

-- The status of jobs a user asked for (GET /jobs/{id}), kept by the server so it reads the
-- same on every queue backend, RabbitMQ included.
CREATE TABLE jobs (
    id         TEXT    PRIMARY KEY,
    kind       TEXT    NOT NULL,
    owner_id   TEXT    REFERENCES users (id) ON DELETE CASCADE,
    status     TEXT    NOT NULL CHECK (status IN ('queued', 'running', 'done', 'failed', 'dead')),
    attempts   BIGINT  NOT NULL DEFAULT 0,
    result     TEXT,    -- JSON
    error      TEXT,
    created_at BIGINT  NOT NULL,
    updated_at BIGINT  NOT NULL
);
CREATE INDEX jobs_owner ON jobs (owner_id);

-- Click batches already applied: written in the transaction that applies a batch, so a
-- second delivery of the same batch changes nothing.
CREATE TABLE click_batches_applied (
    batch_id   TEXT    PRIMARY KEY,
    applied_at BIGINT  NOT NULL
);
CREATE INDEX click_batches_applied_at ON click_batches_applied (applied_at);

-- Mail already handed to the SMTP server, by the mail job's own id.
CREATE TABLE mail_sent (
    mail_id TEXT    PRIMARY KEY,
    sent_at BIGINT  NOT NULL
);

-- Uploaded avatars waiting for their thumbnails; the id orders uploads, so an older
-- upload processed late never replaces a newer avatar.
CREATE TABLE avatar_uploads (
    id         BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    user_id    TEXT    NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    job_id     TEXT    NOT NULL,
    image      BYTEA   NOT NULL,
    created_at BIGINT  NOT NULL
);
CREATE INDEX avatar_uploads_user ON avatar_uploads (user_id);

-- Thumbnails (PNG), in the database so every instance serves them.
CREATE TABLE avatars (
    user_id    TEXT    NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    size       BIGINT  NOT NULL,
    image      BYTEA   NOT NULL,
    etag       TEXT    NOT NULL,
    upload_id  BIGINT  NOT NULL,
    updated_at BIGINT  NOT NULL,
    PRIMARY KEY (user_id, size)
);

-- Finished click exports (CSV), by their job's id.
CREATE TABLE link_exports (
    id         TEXT    PRIMARY KEY,
    link_id    BIGINT  NOT NULL REFERENCES links (id) ON DELETE CASCADE,
    csv        TEXT    NOT NULL,
    rows       BIGINT  NOT NULL,
    created_at BIGINT  NOT NULL
);
CREATE INDEX link_exports_link ON link_exports (link_id);
