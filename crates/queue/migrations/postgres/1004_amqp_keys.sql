-- Deduplication keys of the RabbitMQ backend, when they are kept in PostgreSQL rather than
-- as marker queues in the broker: one row per held key, naming the job that holds it.
-- `expires_at` (ms since the epoch) frees a key whose release was lost.
CREATE TABLE queue_amqp_keys (
    marker     TEXT PRIMARY KEY,
    job_id     TEXT NOT NULL,
    expires_at BIGINT NOT NULL
);
