//! Administration: the audit log (`GET /admin/audit`) and the job queue
//! (`/admin/queues…`: figures and dead letters).

use axum::Router;
use axum::routing::{get, post};

use crate::state::AppState;

pub mod audit;
pub mod queues;

/// The admin routes.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/admin/audit", get(audit::list))
        .route("/admin/queues", get(queues::stats))
        .route(
            "/admin/queues/dead",
            get(queues::list).delete(queues::purge),
        )
        .route("/admin/queues/dead/{id}", get(queues::show))
        .route("/admin/queues/dead/{id}/replay", post(queues::replay))
}
