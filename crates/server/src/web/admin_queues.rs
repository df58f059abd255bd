//! `/admin/job-queues`: each queue's depth, oldest waiting job and dead letters (drawn and
//! tabled), the dead letters themselves; one dead letter's page (payload, last error,
//! attempts) with its replay (`POST …/replay`); and purging, asked first on a page of its
//! own (`GET /admin/job-queues/purge` asks, its form's POST purges), so no script is
//! needed to ask "are you sure?". Every action is [`crate::admin::queues`]'s, as in the API.

use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, Uri};
use axum::response::Response;
use maud::{Markup, html};
use serde::Deserialize;

use super::admin::{AdminVisitor, paths, queue_charts, require_admin, section_nav};
use super::forms::{optional, token};
use super::session::{Posted, csrf_forms};
use super::{page, see_other};
use crate::admin::queues::{self, DeadView};
use crate::error::ApiError;
use crate::state::AppState;

/// Dead letters listed (the API's largest page).
const DEAD_SHOWN: usize = 100;

/// The query of the queue pages.
#[derive(Debug, Default, Deserialize)]
pub struct QueueQuery {
    /// Only this queue (purge).
    pub queue: Option<String>,
    /// How many dead letters were just purged, to say so.
    pub purged: Option<String>,
    /// The dead letter just replayed, to say so.
    pub replayed: Option<String>,
}

/// A form with nothing but its token (replay, purge).
#[derive(Debug, Default, Deserialize)]
pub struct ActionForm {
    /// The CSRF token.
    pub csrf: Option<String>,
}

csrf_forms!(ActionForm);

/// The path of a dead letter's page (its id may hold any character).
fn dead_path(id: &str) -> String {
    let id: String = url::form_urlencoded::byte_serialize(id.as_bytes()).collect();
    format!("{}/dead/{id}", paths::QUEUES)
}

fn purge_path(queue: Option<&str>) -> String {
    match queue {
        None => paths::PURGE.to_owned(),
        Some(queue) => {
            let query = url::form_urlencoded::Serializer::new(String::new())
                .append_pair("queue", queue)
                .finish();
            format!("{}?{query}", paths::PURGE)
        }
    }
}

fn dead_table(dead: &[DeadView]) -> Markup {
    html! {
        table {
            caption.skip { "Dead letters, oldest first" }
            thead { tr { th scope="col" { "Died" } th scope="col" { "Queue" } th scope="col" { "Kind" } th scope="col" { "Attempts" } th scope="col" { "Last error" } } }
            tbody {
                @for d in dead {
                    tr {
                        td { a href=(dead_path(&d.id)) { (d.died_at.format("%Y-%m-%d %H:%M:%S")) span.skip { ": " (d.kind) " on " (d.queue) } } }
                        td { (d.queue) }
                        td { (d.kind) }
                        td { (d.attempts) }
                        td.url { (super::charts::shorten(&d.last_error, 120)) }
                    }
                }
            }
        }
    }
}

/// `GET /admin/job-queues`.
pub async fn show(
    State(state): State<AppState>,
    AdminVisitor(visitor): AdminVisitor,
    Query(query): Query<QueueQuery>,
) -> Response {
    let figures = match queues::figures(&state).await {
        Ok(figures) => figures,
        Err(err) => return page::failure(&visitor, err),
    };
    let dead = match queues::dead_letters(&state, None, DEAD_SHOWN).await {
        Ok(dead) => dead,
        Err(err) => return page::failure(&visitor, err),
    };
    let total_dead: u64 = figures.queues.iter().map(|q| q.dead).sum();
    let main = html! {
        (section_nav(paths::QUEUES))
        @if let Some(n) = optional(&query.purged).and_then(|n| n.parse::<u64>().ok()) {
            p.notice role="status" { "Purged " (n) @if n == 1 { " dead letter." } @else { " dead letters." } }
        }
        @if optional(&query.replayed).is_some() {
            p.notice role="status" { "The dead letter is back on its queue." }
        }
        p { "Backend: " (figures.backend) "." }
        (queue_charts(&figures))
        h2 { "Dead letters" }
        @if dead.is_empty() {
            p.empty { "No dead letter." }
        } @else {
            @if total_dead as usize > dead.len() {
                p.muted { "The oldest " (dead.len()) " of " (total_dead) "." }
            }
            (dead_table(&dead))
            div.actions {
                @for q in figures.queues.iter().filter(|q| q.dead > 0) {
                    a.button.secondary href=(purge_path(Some(&q.queue))) { "Purge " (q.queue) "’s " (q.dead) }
                }
                a.button.secondary href=(purge_path(None)) { "Purge all" }
            }
        }
    };
    page::render(Some(&visitor), StatusCode::OK, "Queues", main)
}

/// `GET /admin/job-queues/dead/{id}`: one dead letter, with its replay button.
pub async fn dead_letter(
    State(state): State<AppState>,
    AdminVisitor(visitor): AdminVisitor,
    Path(id): Path<String>,
) -> Response {
    let dead = match queues::dead_letter(&state, &id).await {
        Ok(dead) => dead,
        Err(ApiError::NotFound) => return page::not_found_for(&visitor),
        Err(err) => return page::failure(&visitor, err),
    };
    let payload = serde_json::to_string_pretty(&dead.payload).unwrap_or_default();
    let main = html! {
        (section_nav(paths::QUEUES))
        dl.facts {
            div { dt { "Queue" } dd { (dead.queue) } }
            div { dt { "Kind" } dd { (dead.kind) } }
            div { dt { "Attempts" } dd { (dead.attempts) } }
            div { dt { "Died" } dd { (dead.died_at.format("%Y-%m-%d %H:%M:%S UTC")) } }
        }
        h2 { "Last error" }
        pre.post-body tabindex="0" { (dead.last_error) }
        h2 { "Payload" }
        pre.post-body tabindex="0" { (payload) }
        form method="post" action=(format!("{}/replay", dead_path(&dead.id))) {
            (token(&visitor.csrf))
            div.actions {
                button type="submit" { "Replay" }
                a.button.secondary href=(purge_path(Some(&dead.queue))) { "Purge " (dead.queue) "’s dead letters" }
                a href=(paths::QUEUES) { "Back to the queues" }
            }
        }
    };
    page::render(Some(&visitor), StatusCode::OK, "Dead letter", main)
}

/// `POST /admin/job-queues/dead/{id}/replay`: back on its queue, then 303 to the queues.
pub async fn replay(
    State(state): State<AppState>,
    uri: Uri,
    Path(id): Path<String>,
    Posted { visitor, .. }: Posted<ActionForm>,
) -> Response {
    if let Err(answer) = require_admin(&visitor, &uri) {
        return answer;
    }
    match queues::replay_dead(&state, &id).await {
        Ok(()) => see_other(&format!("{}?replayed=1", paths::QUEUES)),
        Err(ApiError::NotFound) => page::not_found_for(&visitor),
        Err(err) => page::failure(&visitor, err),
    }
}

/// `GET /admin/job-queues/purge`: asks before purging (one queue's, or all).
pub async fn confirm_purge(
    State(state): State<AppState>,
    AdminVisitor(visitor): AdminVisitor,
    Query(query): Query<QueueQuery>,
) -> Response {
    let queue = optional(&query.queue);
    let figures = match queues::figures(&state).await {
        Ok(figures) => figures,
        Err(err) => return page::failure(&visitor, err),
    };
    let count: u64 = (figures.queues.iter())
        .filter(|q| queue.is_none_or(|name| q.queue == name))
        .map(|q| q.dead)
        .sum();
    let main = html! {
        div.panel {
            p {
                "Delete " strong { (count) } @if count == 1 { " dead letter" } @else { " dead letters" }
                @if let Some(queue) = queue { " of the queue " strong { (queue) } } @else { " of every queue" }
                "?"
            }
            p { "Their jobs will not run again, and their payloads and errors are gone. This cannot be undone." }
            form method="post" action=(purge_path(queue)) {
                (token(&visitor.csrf))
                div.actions {
                    button.danger type="submit" { "Purge" }
                    a.button.secondary href=(paths::QUEUES) { "Cancel" }
                }
            }
        }
    };
    page::render(Some(&visitor), StatusCode::OK, "Purge dead letters?", main)
}

/// `POST /admin/job-queues/purge`: purges, then 303 to the queues saying how many.
pub async fn purge(
    State(state): State<AppState>,
    uri: Uri,
    Query(query): Query<QueueQuery>,
    Posted { visitor, .. }: Posted<ActionForm>,
) -> Response {
    if let Err(answer) = require_admin(&visitor, &uri) {
        return answer;
    }
    match queues::purge_dead(&state, optional(&query.queue)).await {
        Ok(n) => see_other(&format!("{}?purged={n}", paths::QUEUES)),
        Err(err) => page::failure(&visitor, err),
    }
}
