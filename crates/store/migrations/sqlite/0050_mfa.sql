-- Multi-factor sign-in (TOTP, RFC 6238). Times are Unix milliseconds.
--
-- The TOTP secret has to be stored as it is (the server recomputes codes from it), so it
-- is kept apart from the password hash and never returned after enrolment. A row with
-- confirmed_at NULL is an enrolment still waiting for its first code. last_step is the
-- highest 30-second step whose code was accepted: a code is never accepted twice.

CREATE TABLE mfa_totp (
    user_id      TEXT    PRIMARY KEY REFERENCES users (id) ON DELETE CASCADE,
    secret       TEXT    NOT NULL,
    confirmed_at INTEGER,
    last_step    INTEGER NOT NULL DEFAULT -1,
    created_at   INTEGER NOT NULL
);

-- One-use recovery codes: only their SHA-256 digests (the codes carry 80 random bits).
CREATE TABLE mfa_recovery_codes (
    user_id   TEXT    NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    code_hash TEXT    NOT NULL,
    used_at   INTEGER,
    PRIMARY KEY (user_id, code_hash)
);

-- A password check passed and the second step is awaited: the challenge token's digest,
-- for whom, and what to issue once a code is given ('token' or 'session'; 'enrol' when
-- the account's role requires MFA and it has none yet).
CREATE TABLE mfa_challenges (
    id_hash    TEXT    PRIMARY KEY,
    user_id    TEXT    NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    kind       TEXT    NOT NULL CHECK (kind IN ('token', 'session', 'enrol')),
    expires_at INTEGER NOT NULL,
    created_at INTEGER NOT NULL
);
CREATE INDEX mfa_challenges_expiry ON mfa_challenges (expires_at);

-- The roles whose members must sign in with a second factor (set by admins).
CREATE TABLE mfa_required_roles (
    role TEXT PRIMARY KEY CHECK (role IN ('user', 'moderator', 'admin'))
);
