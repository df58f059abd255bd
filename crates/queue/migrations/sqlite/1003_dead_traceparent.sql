-- A dead letter keeps the trace context its job carried: an operator finds the trace of the
-- request that made it, and a replay runs in that trace again.
ALTER TABLE queue_dead ADD COLUMN traceparent TEXT;
