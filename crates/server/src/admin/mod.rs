//! Administration: the audit log (`GET /admin/audit`) and the job queue
//! (`/admin/queues…`: figures and dead letters), with the service functions the admin
//! pages (`web::admin`) call too; the rate limiter's rules and recent refusals
//! ([`rate_limits`]); the instance's health and cache figures ([`overview`]).

use crate::http::routes::Routes;
use crate::state::AppState;

pub mod audit_log;
pub mod overview;
pub mod queues;
pub mod rate_limits;

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
