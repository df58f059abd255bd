//! Accounts: sign-up, the public view, the owner's profile, changes, deletion, the admin
//! list, password change and API keys.
//!
//! - [`api`]: `/users` and `/users/{id}` (and its `/profile` and `/password`).
//! - [`keys`]: `/users/{id}/api-keys`, the API keys.
//! - [`avatar`]: `/users/{id}/avatar`, uploads and thumbnails (made by a job).

use axum::handler::Handler as _;

use crate::http::routes::Routes;
use axum::extract::DefaultBodyLimit;
use chrono::{DateTime, Utc};
use serde::Serialize;
use utoipa::ToSchema;

use crate::clock::to_datetime;
use crate::state::AppState;

pub mod api;
pub mod avatar;
pub mod keys;

/// The account routes.
pub fn router() -> Routes<AppState> {
    // The avatar upload's own limit: images are far larger than JSON bodies.
    let upload = avatar::upload.layer(DefaultBodyLimit::max(avatar::MAX_UPLOAD_BYTES));
    Routes::new()
        .post("/users", api::create)
        .get("/users", api::list)
        .get("/users/{id}", api::read)
        .patch("/users/{id}", api::update)
        .delete("/users/{id}", api::remove)
        .get("/users/{id}/profile", api::profile)
        .post("/users/{id}/password", api::change_password)
        .post("/users/{id}/api-keys", keys::create)
        .get("/users/{id}/api-keys", keys::list)
        .delete("/users/{id}/api-keys/{key_id}", keys::revoke)
        .put("/users/{id}/avatar", upload)
        .get("/users/{id}/avatar", avatar::read)
}

/// What anyone may see of an account (also what the user cache holds: no secrets).
#[derive(Debug, Clone, Serialize, serde::Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct UserView {
    /// The id.
    pub id: String,
    /// The display name.
    pub name: String,
    /// `user`, `moderator` or `admin`.
    pub role: String,
    /// When the account was made.
    pub created_at: DateTime<Utc>,
}

impl From<&basis_store::users::UserRow> for UserView {
    fn from(row: &basis_store::users::UserRow) -> Self {
        Self {
            id: row.id.clone(),
            name: row.name.clone(),
            role: row.role.clone(),
            created_at: to_datetime(row.created_at),
        }
    }
}

/// What the owner (or an admin) sees.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Profile {
    /// The id.
    pub id: String,
    /// The normalised email.
    pub email: String,
    /// The display name.
    pub name: String,
    /// The role.
    pub role: String,
    /// The owner's settings (a JSON object).
    #[schema(value_type = Object)]
    pub settings: serde_json::Value,
    /// Whether the account can sign in with a password.
    pub has_password: bool,
    /// Creation time.
    pub created_at: DateTime<Utc>,
    /// Last change.
    pub updated_at: DateTime<Utc>,
}

impl From<&basis_store::users::UserRow> for Profile {
    fn from(row: &basis_store::users::UserRow) -> Self {
        Self {
            id: row.id.clone(),
            email: row.email.clone(),
            name: row.name.clone(),
            role: row.role.clone(),
            settings: serde_json::from_str(&row.settings).unwrap_or_default(),
            has_password: row.password_hash.is_some(),
            created_at: to_datetime(row.created_at),
            updated_at: to_datetime(row.updated_at),
        }
    }
}

/// The cache of public account views (`GET /users/{id}`): in process, plus Redis when
/// `redis_url` is set. Every write to an account invalidates its entry.
pub fn view_cache(
    redis_url: Option<&str>,
) -> Result<basis_cache::Cache<String, UserView>, basis_cache::Error> {
    basis_cache::Cache::builder("users")
        .version(1)
        .ttl(std::time::Duration::from_secs(300))
        .negative_ttl(std::time::Duration::from_secs(10))
        .l1_max_bytes(16 * 1024 * 1024)
        .weigher(|id: &String, view: &UserView| {
            u32::try_from(96 + id.len() + view.name.len()).unwrap_or(u32::MAX)
        })
        .redis_url(redis_url)
        .build()
}
