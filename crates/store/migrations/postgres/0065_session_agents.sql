-- The browser a session was started from (its User-Agent, cut to 256 characters), so the
-- owner can tell their sessions apart on the account page. NULL for sessions made before.
ALTER TABLE sessions ADD COLUMN user_agent TEXT;
