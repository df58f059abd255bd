//! The admin pages (admins only): `/admin`, an overview of the instance, and beside it
//! [`admin_users`](super::admin_users), [`admin_queues`](super::admin_queues),
//! [`admin_limits`](super::admin_limits) and [`admin_audit`](super::admin_audit). They read
//! through the service functions the JSON admin API calls ([`crate::admin`],
//! [`crate::accounts::users`]), so a page and an API answer cannot disagree.
//!
//! # Paths
//!
//! The JSON API already answers `/admin/audit` and `/admin/queues…`. The pages take paths
//! of their own (`/admin/audit-log`, `/admin/job-queues`) rather than sharing those and
//! choosing a representation by `Accept`: one address, one representation, so the API's
//! routes, its OpenAPI document and its caching stay as they are (no `Vary: Accept`), a
//! script asking with a lax `Accept` never gets HTML, and a page's links and forms can
//! never be mistaken for API calls. The 404 page negotiates only because it answers
//! addresses nobody owns.
//!
//! Someone signed out is sent to sign in and back; someone signed in without the admin
//! role gets the 403 page.

use axum::extract::{FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{StatusCode, Uri};
use axum::response::Response;
use basis_auth::role::Role;
use maud::{Markup, html};

use super::session::Visitor;
use super::{charts, page, sign_in_first};
use crate::admin::overview::{self, CacheFigures};
use crate::admin::queues::QueueList;
use crate::clock::to_datetime;
use crate::state::AppState;

/// The admin pages' paths.
pub mod paths {
    /// The overview.
    pub const OVERVIEW: &str = "/admin";
    /// Users and their roles.
    pub const USERS: &str = "/admin/users";
    /// Queues and dead letters (`/admin/queues` is the JSON API's).
    pub const QUEUES: &str = "/admin/job-queues";
    /// Purging dead letters, confirmed.
    pub const PURGE: &str = "/admin/job-queues/purge";
    /// Rate-limit rules and recent refusals.
    pub const RATE_LIMITS: &str = "/admin/rate-limits";
    /// The audit log (`/admin/audit` is the JSON API's).
    pub const AUDIT: &str = "/admin/audit-log";
}

/// Whether `visitor` may see the admin pages: `Ok` for an admin; otherwise the answer,
/// sign-in (and back to `uri`) or the 403 page.
#[allow(
    clippy::result_large_err,
    reason = "the error is the answer itself, made once on a rare path"
)]
pub fn require_admin(visitor: &Visitor, uri: &Uri) -> Result<(), Response> {
    match &visitor.user {
        None => Err(sign_in_first(uri)),
        Some(user) if user.role.at_least(Role::Admin) => Ok(()),
        Some(_) => Err(page::message(
            Some(visitor),
            StatusCode::FORBIDDEN,
            "Admins only",
            "This page is for administrators. If you need something done here, ask one.",
        )),
    }
}

/// The visitor of an admin page, extracted only for an admin: anyone else gets the answer
/// [`require_admin`] gives (sign-in and back, or the 403 page) before the handler runs.
pub struct AdminVisitor(pub Visitor);

impl FromRequestParts<AppState> for AdminVisitor {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Response> {
        let visitor = Visitor::from_request_parts(parts, state).await?;
        require_admin(&visitor, &parts.uri)?;
        Ok(Self(visitor))
    }
}

/// The admin section's own navigation, with `current` marked.
pub fn section_nav(current: &str) -> Markup {
    const LINKS: [(&str, &str); 5] = [
        (paths::OVERVIEW, "Overview"),
        (paths::USERS, "Users"),
        (paths::QUEUES, "Queues"),
        (paths::RATE_LIMITS, "Rate limits"),
        (paths::AUDIT, "Audit log"),
    ];
    html! {
        nav aria-label="Admin" {
            ul.choices {
                @for (path, name) in LINKS {
                    li {
                        @if path == current { a href=(path) aria-current="page" { (name) } }
                        @else { a href=(path) { (name) } }
                    }
                }
            }
        }
    }
}

/// A time as admins read it (UTC, to the second).
pub fn when(ms: i64) -> String {
    to_datetime(ms).format("%Y-%m-%d %H:%M:%S UTC").to_string()
}

/// A duration in milliseconds, in the largest unit that keeps it readable.
pub fn age(ms: u64) -> String {
    match ms {
        0 => "none waiting".to_owned(),
        ms if ms < 1_000 => format!("{ms} ms"),
        ms if ms < 120_000 => format!("{} s", ms / 1_000),
        ms if ms < 7_200_000 => format!("{} min", ms / 60_000),
        ms => format!("{} h", ms / 3_600_000),
    }
}

/// Queue depths and dead letters drawn as bars, with their table.
pub fn queue_charts(list: &QueueList) -> Markup {
    if list.queues.is_empty() {
        return html! { p.empty { "No queue has had a job yet." } };
    }
    let depth: Vec<(String, i64)> = (list.queues.iter())
        .map(|q| (q.queue.clone(), i64::try_from(q.depth).unwrap_or(i64::MAX)))
        .collect();
    let dead: Vec<(String, i64)> = (list.queues.iter())
        .map(|q| (q.queue.clone(), i64::try_from(q.dead).unwrap_or(i64::MAX)))
        .collect();
    let table = html! {
        table {
            thead { tr { th scope="col" { "Queue" } th scope="col" { "Waiting" } th scope="col" { "Running" } th scope="col" { "Oldest waiting" } th scope="col" { "Dead letters" } } }
            tbody {
                @for q in &list.queues {
                    tr { th scope="row" { (q.queue) } td { (q.depth) } td { (q.running) } td { (age(q.oldest_ready_age_ms)) } td { (q.dead) } }
                }
            }
        }
    };
    html! {
        (charts::figure(
            "Jobs waiting per queue",
            charts::bars(&format!("Bar chart of the jobs waiting in each of {} queues.", depth.len()), &depth),
            table.clone(),
        ))
        (charts::figure(
            "Dead letters per queue",
            charts::bars(&format!("Bar chart of the dead letters of each of {} queues.", dead.len()), &dead),
            table,
        ))
    }
}

fn percent(ratio: Option<f64>) -> String {
    ratio.map_or_else(
        || "no lookup yet".to_owned(),
        |r| format!("{:.1}%", r * 100.0),
    )
}

/// Cache hit ratios per namespace and tier as bars, with the counts behind them.
pub fn cache_chart(caches: &[CacheFigures]) -> Markup {
    let mut rows = Vec::new();
    for cache in caches {
        if let Some(r) = cache.l1_ratio() {
            rows.push((
                format!("{} L1", cache.namespace),
                (r * 100.0).round() as i64,
            ));
        }
        if cache.has_l2
            && let Some(r) = cache.l2_ratio()
        {
            rows.push((
                format!("{} L2", cache.namespace),
                (r * 100.0).round() as i64,
            ));
        }
    }
    let table = html! {
        table {
            thead { tr { th scope="col" { "Namespace" } th scope="col" { "Tier" } th scope="col" { "Hits" } th scope="col" { "Misses" } th scope="col" { "Hit ratio" } } }
            tbody {
                @for cache in caches {
                    tr { th scope="row" { (cache.namespace) } td { "L1 (in process)" } td { (cache.counts.l1_hits) } td { (cache.counts.l1_misses) } td { (percent(cache.l1_ratio())) } }
                    @if cache.has_l2 {
                        tr { th scope="row" { (cache.namespace) } td { "L2 (Redis)" } td { (cache.counts.l2_hits) } td { (cache.counts.l2_misses) } td { (percent(cache.l2_ratio())) } }
                    }
                }
            }
        }
    };
    if rows.is_empty() {
        return html! {
            h2 { "Cache hit ratio" }
            p.empty { "No cache lookup yet in this process." }
            (table)
        };
    }
    charts::figure(
        "Cache hit ratio per namespace and tier (since this process started)",
        charts::bars_to(
            &format!(
                "Bar chart of the hit ratio, in percent, of {} cache tiers.",
                rows.len()
            ),
            &rows,
            100,
            "%",
        ),
        table,
    )
}

/// `GET /admin`: the instance at a glance.
pub async fn overview(
    State(state): State<AppState>,
    AdminVisitor(visitor): AdminVisitor,
) -> Response {
    let figures = overview::read(&state).await;
    let now = state.clock.now_ms();
    let minutes = state.rate_limits.rejections.per_minute(now);
    let last_hour: u64 = minutes.iter().map(|(_, n)| n).sum();
    let last_five: u64 = minutes.iter().rev().take(5).map(|(_, n)| n).sum();
    let all_up = figures.dependencies.iter().all(|d| d.up);
    let main = html! {
        (section_nav(paths::OVERVIEW))
        h2 { "Health" }
        @if all_up { p.notice role="status" { "Every dependency answers." } }
        @else { div.problem role="alert" { p { "A dependency is down: see below." } } }
        table {
            caption.skip { "Dependencies" }
            thead { tr { th scope="col" { "Dependency" } th scope="col" { "Backend" } th scope="col" { "State" } } }
            tbody {
                @for d in &figures.dependencies {
                    tr {
                        th scope="row" { (d.name) }
                        td { (d.backend) }
                        td {
                            @if d.up { "up" } @else { strong { "down" } }
                            @if let Some(problem) = &d.problem { br; span.muted { (problem) } }
                        }
                    }
                }
            }
        }
        h2 { "Queues" }
        @match &figures.queues {
            Some(list) => {
                p { "Backend: " (list.backend) ". " a href=(paths::QUEUES) { "Queues and dead letters" } }
                (queue_charts(list))
            }
            None => p.empty { "The queue did not answer." },
        }
        (cache_chart(&figures.caches))
        h2 { "Rate limits" }
        dl.totals {
            div { dt { "Refused, last 5 minutes" } dd { (last_five) } }
            div { dt { "Refused, last hour" } dd { (last_hour) } }
        }
        p { a href=(paths::RATE_LIMITS) { "Rules and recent refusals" } }
        h2 { "More" }
        ul {
            li { a href=(paths::USERS) { "Users and roles" } }
            li { a href=(paths::AUDIT) { "Audit log" } }
        }
    };
    page::render(Some(&visitor), StatusCode::OK, "Admin", main)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages_are_written_in_a_readable_unit() {
        assert_eq!(age(0), "none waiting");
        assert_eq!(age(250), "250 ms");
        assert_eq!(age(90_000), "90 s");
        assert_eq!(age(600_000), "10 min");
        assert_eq!(age(36_000_000), "10 h");
    }
}
