-- The W3C traceparent of the request or job that wrote the event (NULL when spans are not
-- exported): the relay publishes the event within that trace, so its consumers' spans join
-- the writer's trace instead of starting one of their own.
ALTER TABLE outbox ADD COLUMN IF NOT EXISTS traceparent TEXT;
