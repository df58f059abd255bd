//! Administration: the audit log (`GET /admin/audit`) and the job queue
//! (`/admin/queues…`: figures and dead letters).

use crate::http::routes::Routes;
use crate::state::AppState;

pub mod audit_log;
pub mod queues;

/// The admin routes.
pub fn router() -> Routes<AppState> {
    Routes::new()
        .get("/admin/audit", audit_log::list)
        .get("/admin/queues", queues::stats)
        .get("/admin/queues/dead", queues::list)
        .delete("/admin/queues/dead", queues::purge)
        .get("/admin/queues/dead/{id}", queues::show)
        .post("/admin/queues/dead/{id}/replay", queues::replay)
}
