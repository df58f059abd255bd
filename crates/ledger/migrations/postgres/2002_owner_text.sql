-- Owners are the server's user ids: 32 hex digits, text.
ALTER TABLE ledger_accounts ALTER COLUMN owner_id TYPE TEXT USING owner_id::text;
