-- Per-account "valid after" times: an access token issued before its account's cutoff is
-- refused although its signature and expiry are fine (account deleted or demoted, or
-- signed out everywhere). No foreign key: the cutoff of a deleted account must outlive it.
-- Times are Unix milliseconds; rows older than the access-token lifetime may be removed.

CREATE TABLE token_cutoffs (
    user_id     TEXT    PRIMARY KEY,
    valid_after INTEGER NOT NULL
);
CREATE INDEX token_cutoffs_valid_after ON token_cutoffs (valid_after);
