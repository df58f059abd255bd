//! What anyone may see of an account ([`UserView`]), what its owner sees ([`Profile`]),
//! and the cache of public views.

use chrono::{DateTime, Utc};
use serde::Serialize;
use utoipa::ToSchema;

use crate::clock::to_datetime;

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
