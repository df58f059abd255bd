//! `/admin/rate-limits`: the rules the limiter applies (as configured), the requests
//! refused per minute over the last hour (drawn, with its table) and the last refusals,
//! newest first, with addresses and account names as digests
//! ([`crate::admin::rate_limits`]). The figures are this instance's.

use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use basis_ratelimit::Algorithm;
use basis_ratelimit::http::{KeyKind, RuleConfig};
use maud::{Markup, html};

use super::admin::{AdminVisitor, paths, section_nav, when};
use super::{charts, page};
use crate::admin::rate_limits::{RING, Rejected};
use crate::clock::to_datetime;
use crate::state::AppState;

fn algorithm(a: Algorithm) -> &'static str {
    match a {
        Algorithm::TokenBucket => "token bucket",
        Algorithm::Gcra => "GCRA",
        Algorithm::FixedWindow => "fixed window",
        Algorithm::SlidingLog => "sliding log",
        Algorithm::SlidingWindow => "sliding window",
    }
}

fn key(k: KeyKind) -> &'static str {
    match k {
        KeyKind::Ip => "client address",
        KeyKind::User => "user",
        KeyKind::ApiKey => "API key",
        KeyKind::Client => "API key, user or address",
        KeyKind::Account => "account named",
        KeyKind::AccountIp => "account named and address",
    }
}

fn period(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        0 => format!("{} ms", d.as_millis()),
        s if s % 3600 == 0 => format!("{} h", s / 3600),
        s if s % 60 == 0 => format!("{} min", s / 60),
        s => format!("{s} s"),
    }
}

fn rules_table(rules: &[RuleConfig]) -> Markup {
    html! {
        table {
            caption.skip { "Rules in force" }
            thead { tr { th scope="col" { "Rule" } th scope="col" { "Requests" } th scope="col" { "Counted per" } th scope="col" { "Limit" } th scope="col" { "Algorithm" } } }
            tbody {
                @for rule in rules {
                    tr {
                        th scope="row" { (rule.name) }
                        td {
                            @if rule.methods.is_empty() { "any method" } @else { (rule.methods.join(", ")) }
                            " "
                            @for (i, path) in rule.paths.iter().enumerate() {
                                @if i > 0 { ", " }
                                code { (path) }
                            }
                        }
                        td { (key(rule.key)) }
                        td {
                            (rule.limit) " per " (period(rule.period))
                            @if rule.cost.get() > 1 { " (" (rule.cost) " a request)" }
                        }
                        td { (algorithm(rule.algorithm)) }
                    }
                }
            }
        }
    }
}

fn per_minute_chart(minutes: &[(i64, u64)]) -> Markup {
    let labels: Vec<String> = (minutes.iter())
        .map(|(at, _)| to_datetime(*at).format("%H:%M").to_string())
        .collect();
    let values: Vec<i64> = (minutes.iter())
        .map(|(_, n)| i64::try_from(*n).unwrap_or(i64::MAX))
        .collect();
    let total: i64 = values.iter().sum();
    let peak = values.iter().copied().max().unwrap_or(0);
    let label = format!(
        "Line chart of requests refused per minute over the last hour (UTC): {total} in all, at most {peak} in one minute."
    );
    let table = html! {
        table {
            thead { tr { th scope="col" { "Minute (UTC)" } th scope="col" { "Refused" } } }
            tbody {
                @for (label, n) in labels.iter().zip(&values) {
                    tr { td { (label) } td { (n) } }
                }
            }
        }
    };
    charts::figure(
        "Requests refused per minute, last hour",
        charts::lines(
            &label,
            &labels,
            &[charts::Series {
                name: "Refused",
                class: "current",
                values: &values,
            }],
        ),
        table,
    )
}

fn recent_table(recent: &[Rejected]) -> Markup {
    html! {
        table {
            caption.skip { "Recent refusals, newest first" }
            thead { tr { th scope="col" { "When" } th scope="col" { "Rule" } th scope="col" { "Counted as" } th scope="col" { "Request" } } }
            tbody {
                @for r in recent {
                    tr {
                        td { (when(r.at_ms)) }
                        td { (r.rule) }
                        td.url { code { (r.key) } }
                        td.url { (r.request) }
                    }
                }
            }
        }
    }
}

/// `GET /admin/rate-limits`.
pub async fn show(State(state): State<AppState>, AdminVisitor(visitor): AdminVisitor) -> Response {
    let limits = &state.rate_limits;
    let minutes = limits.rejections.per_minute(state.clock.now_ms());
    let recent = limits.rejections.recent();
    let main = html! {
        (section_nav(paths::RATE_LIMITS))
        h2 { "Rules in force" }
        @if !limits.enabled {
            div.problem role="alert" { p { "The rate limiter is switched off: no rule is applied." } }
        }
        @if limits.rules.is_empty() { p.empty { "No rule." } } @else { (rules_table(&limits.rules)) }
        (per_minute_chart(&minutes))
        h2 { "Recent refusals" }
        p.muted {
            "The last " (RING) " kept by this instance. Addresses and account names show as a digest: the same client shows the same digest."
        }
        @if recent.is_empty() { p.empty { "No request refused since this instance started." } }
        @else { (recent_table(&recent)) }
    };
    page::render(Some(&visitor), StatusCode::OK, "Rate limits", main)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn periods_are_written_in_their_largest_whole_unit() {
        assert_eq!(period(Duration::from_secs(3600)), "1 h");
        assert_eq!(period(Duration::from_secs(120)), "2 min");
        assert_eq!(period(Duration::from_secs(90)), "90 s");
        assert_eq!(period(Duration::from_millis(500)), "500 ms");
    }
}
