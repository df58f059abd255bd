-- The queue's tables (basis-queue). Versions from 1001 keep them apart from the store's.
-- queue_jobs holds unfinished jobs only; finished ones move to queue_done (pruned after a
-- retention) and dead ones to queue_dead, so the table every claim scans stays small and
-- its dead tuples are vacuumed quickly.
CREATE SEQUENCE queue_job_ids;

CREATE TABLE queue_jobs (
    id             BIGINT   PRIMARY KEY DEFAULT nextval('queue_job_ids'),
    queue          TEXT     NOT NULL,
    kind           TEXT     NOT NULL,
    payload        JSONB    NOT NULL,
    priority       SMALLINT NOT NULL DEFAULT 0,
    status         TEXT     NOT NULL CHECK (status IN ('queued', 'running', 'failed')),
    attempts       INT      NOT NULL DEFAULT 0,
    max_attempts   INT      NOT NULL,
    -- When the job may next be claimed: its due time, its retry time, or, while running,
    -- the end of its lease (an expired lease makes it claimable again). Unix ms.
    run_at         BIGINT   NOT NULL,
    enqueued_at    BIGINT   NOT NULL,
    token          BIGINT   NOT NULL DEFAULT 0, -- fencing token, +1 at every claim
    dedup_key      TEXT,
    owner          TEXT,
    reply_to       TEXT,
    correlation_id TEXT,
    last_error     TEXT
) WITH (autovacuum_vacuum_scale_factor = 0.01, autovacuum_vacuum_threshold = 1000);
CREATE INDEX queue_jobs_claim ON queue_jobs (queue, priority DESC, run_at, id);
-- One unfinished job per key and queue (every row here is unfinished).
CREATE UNIQUE INDEX queue_jobs_dedup ON queue_jobs (queue, dedup_key) WHERE dedup_key IS NOT NULL;

CREATE TABLE queue_done (
    id          BIGINT PRIMARY KEY,
    queue       TEXT   NOT NULL,
    kind        TEXT   NOT NULL,
    attempts    INT    NOT NULL,
    result      JSONB,
    owner       TEXT,
    enqueued_at BIGINT NOT NULL,
    finished_at BIGINT NOT NULL
);
CREATE INDEX queue_done_finished ON queue_done (finished_at);

CREATE TABLE queue_dead (
    id             BIGINT   PRIMARY KEY,
    queue          TEXT     NOT NULL,
    kind           TEXT     NOT NULL,
    payload        JSONB    NOT NULL,
    priority       SMALLINT NOT NULL,
    attempts       INT      NOT NULL,
    max_attempts   INT      NOT NULL,
    dedup_key      TEXT,
    owner          TEXT,
    reply_to       TEXT,
    correlation_id TEXT,
    last_error     TEXT     NOT NULL,
    token          BIGINT   NOT NULL, -- kept, so a replayed job's tokens keep rising
    enqueued_at    BIGINT   NOT NULL,
    died_at        BIGINT   NOT NULL
);
CREATE INDEX queue_dead_queue ON queue_dead (queue, died_at);

CREATE TABLE queue_subscriptions (
    topic TEXT NOT NULL,
    grp   TEXT NOT NULL,
    PRIMARY KEY (topic, grp)
);

-- Wake listening workers when a job appears. NOTIFY is transactional: a job enqueued inside
-- a caller's transaction is announced at its commit, never before.
CREATE FUNCTION queue_jobs_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('basis_queue', NEW.queue);
    RETURN NULL;
END
$$;
CREATE TRIGGER queue_jobs_notify AFTER INSERT ON queue_jobs
    FOR EACH ROW EXECUTE FUNCTION queue_jobs_notify();
