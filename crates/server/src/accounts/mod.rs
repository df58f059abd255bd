//! Accounts and signing in: sign-up, profiles, changes, deletion, the admin list, password
//! change, API keys and avatars; token login with rotating refresh tokens, cookie
//! sessions, password reset and OpenID Connect login.
//!
//! - [`users`]: `/users` and `/users/{id}` (and its `/profile` and `/password`);
//! - [`keys`]: `/users/{id}/api-keys`; [`avatar`]: `/users/{id}/avatar` (thumbnails by a job);
//! - [`tokens`]: `POST /auth/login`, `/auth/refresh`, `/auth/logout`, `GET /auth/me`;
//! - [`session`]: `POST|GET|DELETE /auth/session` (the browser cookie);
//! - [`mfa`]: `/auth/mfa/…` (TOTP enrolment, the second sign-in step, recovery codes) and
//!   `/admin/mfa-policy` (roles that must use it);
//! - [`reset`]: `POST /auth/password-reset` and `/auth/password-reset/confirm`;
//! - [`oidc`]: `GET /auth/oidc/start` and `/auth/oidc/callback`.
//!
//! Who is calling, and the identity services these handlers share, are in
//! [`crate::identity`].

use axum::extract::DefaultBodyLimit;
use axum::handler::Handler as _;

use crate::http::routes::Routes;
use crate::state::AppState;

pub mod avatar;
pub mod keys;
pub mod mfa;
pub mod oidc;
pub mod reset;
pub mod session;
pub mod tokens;
pub mod users;

/// The account and sign-in routes.
pub fn router() -> Routes<AppState> {
    // The avatar upload's own limit: images are far larger than JSON bodies.
    let upload = avatar::upload.layer(DefaultBodyLimit::max(avatar::MAX_UPLOAD_BYTES));
    Routes::new()
        .post("/users", users::create)
        .get("/users", users::list)
        .get("/users/{id}", users::read)
        .patch("/users/{id}", users::update)
        .delete("/users/{id}", users::remove)
        .get("/users/{id}/profile", users::profile)
        .post("/users/{id}/password", users::change_password)
        .post("/users/{id}/api-keys", keys::create)
        .get("/users/{id}/api-keys", keys::list)
        .delete("/users/{id}/api-keys/{key_id}", keys::revoke)
        .put("/users/{id}/avatar", upload)
        .get("/users/{id}/avatar", avatar::read)
        .post("/auth/login", tokens::login)
        .post("/auth/refresh", tokens::refresh)
        .post("/auth/logout", tokens::logout)
        .post("/auth/logout-all", tokens::logout_all)
        .get("/auth/me", tokens::me)
        .post("/auth/session", session::create)
        .get("/auth/session", session::read)
        .get("/auth/mfa", mfa::status)
        .post("/auth/mfa/totp", mfa::enrol)
        .post("/auth/mfa/totp/confirm", mfa::confirm)
        .post("/auth/mfa/totp/disable", mfa::disable)
        .post("/auth/mfa/verify", mfa::verify)
        .get("/admin/mfa-policy", mfa::policy)
        .put("/admin/mfa-policy", mfa::set_policy)
        .delete("/auth/session", session::remove)
        .post("/auth/password-reset", reset::request)
        .post("/auth/password-reset/confirm", reset::confirm)
        .get("/auth/oidc/start", oidc::start)
        .get("/auth/oidc/callback", oidc::callback)
}
