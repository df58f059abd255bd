//! Administration: the audit log (`GET /admin/audit`).

use axum::Router;
use axum::routing::get;

use crate::state::AppState;

pub mod audit;

/// The admin routes.
pub fn router() -> Router<AppState> {
    Router::new().route("/admin/audit", get(audit::list))
}
