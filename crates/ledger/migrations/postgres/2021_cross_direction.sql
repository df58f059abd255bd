-- Transfers from the other bank into this one (`direction` 'in'): the debited half is the
-- participant's (`from_account` is its account; a saga's reservation is kept in
-- `remote_transfer_id`), the credited half this ledger's (`to_account`). The column that
-- named the credited bank when every transfer went out names the other bank in either
-- direction now, hence `participant`.
ALTER TABLE ledger_cross_transfers RENAME COLUMN to_participant TO participant;
ALTER TABLE ledger_cross_transfers
    ADD COLUMN direction TEXT NOT NULL DEFAULT 'out' CHECK (direction IN ('out', 'in'));
