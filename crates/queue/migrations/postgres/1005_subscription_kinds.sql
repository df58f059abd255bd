-- The message kinds a subscriber group receives from its topic, or NULL for every kind.
-- Filtering at the fan-out keeps a group's queue free of messages its consumer would only
-- throw away.
ALTER TABLE queue_subscriptions ADD COLUMN kinds TEXT[];
