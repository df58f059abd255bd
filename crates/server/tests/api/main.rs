//! Black-box tests of the HTTP API. Every test starts its own app on port 0 with a fresh
//! database, and runs on SQLite and (when `BASIS_TEST_POSTGRES_URL` is set) PostgreSQL.

mod accounts_support;
mod blog_support;
mod helpers;
mod jobs_support;
mod smtp_sink;
mod web_support;

mod compression;
mod concurrency;
mod errors;
mod link_bulk;
mod link_codes;
mod link_countries;
mod link_domains;
mod link_hot_keys;
mod link_import;
mod link_lists;
mod link_preview;
mod link_rules;
mod link_visits;
mod links;
mod ops;
mod outbox;
mod rate_limits;
mod redirect;
mod replicas;
mod webhooks;

// Identity.
mod accounts;
mod api_keys;
mod hostile;
mod jwt_attacks;
mod mfa;
mod oidc;
mod ownership;
mod password_reset;
mod revocation;
mod route_table;
mod secrets;
mod sessions;
mod tokens;
mod transport;
// The web pages.
mod web_account;
mod web_admin;
mod web_blog;
mod web_links;
mod web_mfa;
mod web_pages;
mod web_reset;

// Background jobs.
mod avatars;
mod backup;
mod comment_mail;
mod exports;
mod jobs;
mod jobs_amqp;
// The blog.
mod comments;
mod posts;
mod posts_http;
mod posts_lists;
mod posts_plans;
mod spec_rules;
// The ledger.
mod ledger;
mod ledger_idempotency;
mod ledger_pending;
mod ledger_support;
// The shop.
mod shop;
mod shop_mail;
mod shop_saga;
mod shop_support;
