//! Contract tests of the repositories: each case runs on a fresh SQLite file and, when
//! `BASIS_TEST_POSTGRES_URL` is set, on a fresh PostgreSQL database, so both engines keep
//! the same rules (constraints, cascades, expiry by the given time, rotation, order).

mod harness;

mod api_keys;
mod audit;
mod avatars;
mod comments;
mod exports;
mod idempotency;
mod jobs;
mod link_clicks;
mod link_lists;
mod links;
mod mail;
mod oidc_logins;
mod password_resets;
mod posts;
mod refresh_tokens;
mod sessions;
mod users;
