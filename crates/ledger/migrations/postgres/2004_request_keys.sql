-- A transfer may carry the key of the request that made it (the caller's Idempotency-Key,
-- scoped to the caller). The unique index makes a retried request find its transfer instead
-- of making a second one, even when the process that ran the first attempt died between the
-- transfer's commit and storing its response.
ALTER TABLE ledger_transfers ADD COLUMN request_key TEXT;
CREATE UNIQUE INDEX ledger_transfers_request_key ON ledger_transfers (request_key);
