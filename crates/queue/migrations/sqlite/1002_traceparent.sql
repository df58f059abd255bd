-- The W3C trace context a job was enqueued in (`traceparent`), so the worker's run joins
-- the producer's trace. NULL when traces are not exported.
ALTER TABLE queue_jobs ADD COLUMN traceparent TEXT;
