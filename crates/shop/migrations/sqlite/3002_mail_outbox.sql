-- The confirmation mail goes through the outbox, at least once: the saga's last step inserts
-- the order's row here and writes its `order.completed` event in one transaction (the row
-- keeps a re-run of that step from writing a second event), and the mail consumer sets
-- `sent_at` once the mail went out, with the event id in `processed_events`. Rows from
-- before were claimed just before sending, so they count as sent.
ALTER TABLE shop_mails RENAME COLUMN sent_at TO requested_at;
ALTER TABLE shop_mails ADD COLUMN sent_at BIGINT;
UPDATE shop_mails SET sent_at = requested_at;
