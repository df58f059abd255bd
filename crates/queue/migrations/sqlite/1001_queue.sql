-- The queue's tables (basis-queue). Versions from 1001 keep them apart from the store's.
-- queue_jobs holds unfinished jobs only; finished ones move to queue_done (pruned after a
-- retention) and dead ones to queue_dead, so the table every claim scans stays small.
CREATE TABLE queue_jobs (
    id             INTEGER PRIMARY KEY AUTOINCREMENT, -- never reused: ids live on in done/dead
    queue          TEXT    NOT NULL,
    kind           TEXT    NOT NULL,
    payload        TEXT    NOT NULL,
    priority       INTEGER NOT NULL DEFAULT 0,
    status         TEXT    NOT NULL CHECK (status IN ('queued', 'running', 'failed')),
    attempts       INTEGER NOT NULL DEFAULT 0,
    max_attempts   INTEGER NOT NULL,
    -- When the job may next be claimed: its due time, its retry time, or, while running,
    -- the end of its lease (an expired lease makes it claimable again).
    run_at         INTEGER NOT NULL,
    enqueued_at    INTEGER NOT NULL,
    token          INTEGER NOT NULL DEFAULT 0,       -- fencing token, +1 at every claim
    dedup_key      TEXT,
    owner          TEXT,
    reply_to       TEXT,
    correlation_id TEXT,
    last_error     TEXT
);
CREATE INDEX queue_jobs_claim ON queue_jobs (queue, priority DESC, run_at, id);
-- One unfinished job per key and queue (every row here is unfinished).
CREATE UNIQUE INDEX queue_jobs_dedup ON queue_jobs (queue, dedup_key) WHERE dedup_key IS NOT NULL;

CREATE TABLE queue_done (
    id          INTEGER PRIMARY KEY,
    queue       TEXT    NOT NULL,
    kind        TEXT    NOT NULL,
    attempts    INTEGER NOT NULL,
    result      TEXT,
    owner       TEXT,
    enqueued_at INTEGER NOT NULL,
    finished_at INTEGER NOT NULL
);
CREATE INDEX queue_done_finished ON queue_done (finished_at);

CREATE TABLE queue_dead (
    id             INTEGER PRIMARY KEY,
    queue          TEXT    NOT NULL,
    kind           TEXT    NOT NULL,
    payload        TEXT    NOT NULL,
    priority       INTEGER NOT NULL,
    attempts       INTEGER NOT NULL,
    max_attempts   INTEGER NOT NULL,
    dedup_key      TEXT,
    owner          TEXT,
    reply_to       TEXT,
    correlation_id TEXT,
    last_error     TEXT    NOT NULL,
    token          INTEGER NOT NULL, -- kept, so a replayed job's tokens keep rising
    enqueued_at    INTEGER NOT NULL,
    died_at        INTEGER NOT NULL
);
CREATE INDEX queue_dead_queue ON queue_dead (queue, died_at);

CREATE TABLE queue_subscriptions (
    topic TEXT NOT NULL,
    grp   TEXT NOT NULL,
    PRIMARY KEY (topic, grp)
);
