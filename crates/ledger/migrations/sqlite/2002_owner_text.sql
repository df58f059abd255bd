-- Owners are the server's user ids: 32 hex digits, text. A column declared INTEGER would
-- turn an all-digit id into a REAL, so the column is replaced by a TEXT one.
DROP INDEX ledger_accounts_by_owner;
ALTER TABLE ledger_accounts RENAME COLUMN owner_id TO owner_id_number;
ALTER TABLE ledger_accounts ADD COLUMN owner_id TEXT;
UPDATE ledger_accounts SET owner_id = CAST(owner_id_number AS TEXT) WHERE owner_id_number IS NOT NULL;
ALTER TABLE ledger_accounts DROP COLUMN owner_id_number;
CREATE INDEX ledger_accounts_by_owner ON ledger_accounts (owner_id, id);
