-- Finding a transfer by its reference: callers that create transfers idempotently (the
-- payment provider's refunds) look for the one they may already have made.
CREATE INDEX ledger_transfers_by_reference ON ledger_transfers (reference) WHERE reference IS NOT NULL;
