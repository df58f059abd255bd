//! A link's statistics on its page: clicks per day over a chosen period with the period
//! before it drawn behind, the top referrers, the devices, and (from the visit log) the
//! browsers and countries of the period, bots apart.
//!
//! The numbers are those of `GET /links/{code}/stats` ([`service::analytics`], stored and
//! not yet stored clicks together), read for twice the period so the previous one can be
//! drawn. The period (7, 30, 90 or 365 days) and whether bots are shown are GET
//! parameters, chosen by plain links, so the page can be bookmarked and needs no script.
//!
//! Browsers and countries are known per visit only, so they are counted by the database
//! over the visit log ([`service::visit_breakdown`]) for this period; without the log
//! (`--visit-log-days`) the page says so.
//!
//! [`service::analytics`]: crate::links::service::analytics
//! [`service::visit_breakdown`]: crate::links::service::visit_breakdown

use basis_store::links::{LinkStats, VisitBreakdown};
use maud::{Markup, html};
use serde::Deserialize;

use super::charts::{self, Series};
use crate::clock::to_datetime;

/// The periods people can choose, in days.
pub const PERIODS: [i64; 4] = [7, 30, 90, 365];
/// The period shown when none (or an unknown one) is asked for.
const DEFAULT_PERIOD: i64 = 30;
/// Referrers shown.
pub const TOP_REFERRERS: usize = 10;
/// Browsers and countries shown, each.
pub const TOP_VISIT_PARTS: usize = 10;

/// The statistics' part of the link page's query.
#[derive(Debug, Default, Deserialize)]
pub struct StatsQuery {
    /// Days per period: 7, 30, 90 or 365.
    pub period: Option<String>,
    /// `show` to show bots' clicks beside people's.
    pub bots: Option<String>,
}

/// What the statistics show.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct View {
    /// Days per period.
    pub period: i64,
    /// Whether bots' clicks are drawn and listed.
    pub bots: bool,
}

impl View {
    /// The view a query asks for; an unknown period is the default one.
    pub fn of(query: &StatsQuery) -> Self {
        let period = query
            .period
            .as_deref()
            .and_then(|p| p.trim().parse().ok())
            .filter(|p| PERIODS.contains(p))
            .unwrap_or(DEFAULT_PERIOD);
        Self {
            period,
            bots: query.bots.as_deref() == Some("show"),
        }
    }

    /// The days to read: this period and the one before it.
    pub fn days_to_read(self) -> i64 {
        self.period * 2
    }
}

/// The figures of one view, ready to draw.
#[derive(Debug)]
pub struct Figures {
    /// What they show.
    pub view: View,
    /// The dates of this period, oldest first.
    pub dates: Vec<String>,
    /// The dates of the previous period, oldest first.
    pub previous_dates: Vec<String>,
    /// People's clicks per day of this period.
    pub current: Vec<i64>,
    /// People's clicks per day of the previous period.
    pub previous: Vec<i64>,
    /// Bots' clicks per day of this period.
    pub bots: Vec<i64>,
    /// People's clicks ever.
    pub all_clicks: i64,
    /// Bots' clicks ever.
    pub all_bot_clicks: i64,
    /// The referring hosts with the most people's clicks (all time).
    pub referrers: Vec<(String, i64)>,
    /// Clicks per device class (all time), people's first, bots last when shown.
    pub devices: Vec<(String, i64)>,
    /// Visits per browser family over this period, people's first, bots last when shown;
    /// `None` without the visit log.
    pub browsers: Option<Vec<(String, i64)>>,
    /// Visits per country over this period (`unknown` where it is not known), the same way.
    pub countries: Option<Vec<(String, i64)>>,
    /// The days the browsers and countries cover: the period, or fewer when the visit log
    /// keeps fewer.
    pub visit_days: i64,
}

impl Figures {
    /// The figures of `stats` (read for [`View::days_to_read`] days up to `today`, a day
    /// number) for `view`; `all_clicks` are the link's people's clicks ever.
    pub fn new(stats: &LinkStats, all_clicks: i64, today: i64, view: View) -> Self {
        let period = view.period;
        let first = today - period + 1;
        let previous_first = first - period;
        let mut current = vec![0; period as usize];
        let mut previous = vec![0; period as usize];
        let mut bots = vec![0; period as usize];
        for &(day, humans, bot_clicks) in &stats.days {
            if (first..=today).contains(&day) {
                let i = (day - first) as usize;
                current[i] += humans;
                bots[i] += bot_clicks;
            } else if (previous_first..first).contains(&day) {
                previous[(day - previous_first) as usize] += humans;
            }
        }
        let date = |day: i64| to_datetime(day * 86_400_000).format("%Y-%m-%d").to_string();
        let mut devices: Vec<(String, i64)> = ["desktop", "mobile", "tablet"]
            .iter()
            .map(|class| {
                let n = stats
                    .devices
                    .iter()
                    .filter(|(name, _)| name == class)
                    .map(|(_, n)| n)
                    .sum();
                ((*class).to_owned(), n)
            })
            .filter(|(_, n)| *n > 0)
            .collect();
        devices.sort_by_key(|d| std::cmp::Reverse(d.1));
        if view.bots && stats.bot_clicks > 0 {
            devices.push(("bot".to_owned(), stats.bot_clicks));
        }
        Self {
            view,
            dates: (first..=today).map(date).collect(),
            previous_dates: (previous_first..first).map(date).collect(),
            current,
            previous,
            bots,
            all_clicks,
            all_bot_clicks: stats.bot_clicks,
            referrers: stats.referrers.clone(),
            devices,
            browsers: None,
            countries: None,
            visit_days: period,
        }
    }

    /// These figures with the browsers and countries of `visits` over the last `days`
    /// days (`None`: no visit log).
    pub fn with_visits(mut self, visits: Option<&VisitBreakdown>, days: i64) -> Self {
        let Some(visits) = visits else {
            return self;
        };
        self.visit_days = days;
        let bots = (self.view.bots && visits.bot_visits > 0).then_some(visits.bot_visits);
        let with_bots = |mut rows: Vec<(String, i64)>| {
            rows.extend(bots.map(|n| ("bot".to_owned(), n)));
            rows
        };
        self.browsers = Some(with_bots(visits.browsers.clone()));
        self.countries = Some(with_bots(
            visits
                .countries
                .iter()
                .map(|(code, n)| (code.clone().unwrap_or_else(|| "unknown".to_owned()), *n))
                .collect(),
        ));
        self
    }

    fn sum(values: &[i64]) -> i64 {
        values.iter().sum()
    }
}

/// The change from `before` to `now`, as people say it.
fn change(now: i64, before: i64) -> String {
    match (now, before) {
        (0, 0) => "no change".to_owned(),
        (_, 0) => "none before".to_owned(),
        _ => {
            let percent = (now - before) as f64 * 100.0 / before as f64;
            format!("{percent:+.0} %")
        }
    }
}

/// The statistics section; `href(view)` is the address of the page showing `view`.
pub fn section(figures: &Figures, href: &(dyn Fn(View) -> String + Sync)) -> Markup {
    let view = figures.view;
    let period = view.period;
    let now = Figures::sum(&figures.current);
    let before = Figures::sum(&figures.previous);
    let bots_now = Figures::sum(&figures.bots);
    let nothing_ever = figures.all_clicks == 0 && figures.all_bot_clicks == 0;
    let quiet_period = now == 0 && before == 0 && !(view.bots && bots_now > 0);
    html! {
        section.panel #stats aria-labelledby="stats-title" {
            h2 #stats-title { "Statistics" }
            @if nothing_ever {
                div.empty role="status" {
                    p { strong { "No clicks yet." } }
                    p.muted { "When people follow this link, their clicks per day, where they came from and their devices appear here." }
                }
            } @else {
                div.stats-controls {
                    nav aria-label="Period" {
                        ul.choices {
                            @for days in PERIODS {
                                li {
                                    @let chosen = days == period;
                                    a href=(href(View { period: days, ..view }))
                                        aria-current=[chosen.then_some("true")] { (days) " days" }
                                }
                            }
                        }
                    }
                    p.toggle {
                        @if view.bots {
                            a href=(href(View { bots: false, ..view })) { "Hide bots" }
                        } @else {
                            a href=(href(View { bots: true, ..view })) { "Show bots" }
                        }
                    }
                }
                dl.totals {
                    div { dt { "Clicks, last " (period) " days" } dd { (now) } }
                    div { dt { "The " (period) " days before" } dd { (before) " " span.muted { "(" (change(now, before)) ")" } } }
                    div { dt { "All clicks" } dd { (figures.all_clicks) } }
                    div { dt { "Bot clicks (not counted)" } dd { (figures.all_bot_clicks) } }
                }
                @if quiet_period {
                    div.empty role="status" {
                        p { "No clicks in the last " (period * 2) " days. Choose a longer period to see older ones." }
                    }
                } @else {
                    (daily(figures))
                }
                (referrers(figures))
                (devices(figures))
                (visit_parts(figures))
            }
        }
    }
}

fn daily(figures: &Figures) -> Markup {
    let view = figures.view;
    let period = view.period;
    let mut series = vec![
        Series {
            name: "Previous period",
            class: "previous",
            values: &figures.previous,
        },
        Series {
            name: "This period",
            class: "current",
            values: &figures.current,
        },
    ];
    if view.bots {
        series.push(Series {
            name: "Bots",
            class: "bots",
            values: &figures.bots,
        });
    }
    let now: i64 = figures.current.iter().sum();
    let before: i64 = figures.previous.iter().sum();
    let peak = figures.current.iter().max().copied().unwrap_or(0);
    let label = format!(
        "Line chart of clicks per day over the last {period} days: {now} in all, at most {peak} \
         on one day, against {before} in the {period} days before{}.",
        if view.bots {
            format!(", with {} bot clicks", figures.bots.iter().sum::<i64>())
        } else {
            String::new()
        }
    );
    let caption = format!("Clicks per day, last {period} days, with the {period} days before");
    let table = html! {
        table {
            thead {
                tr {
                    th scope="col" { "Day" }
                    th scope="col" { "Clicks" }
                    @if view.bots { th scope="col" { "Bot clicks" } }
                    th scope="col" { "Day, period before" }
                    th scope="col" { "Clicks, period before" }
                }
            }
            tbody {
                @for i in 0..figures.dates.len() {
                    tr {
                        td { (figures.dates[i]) }
                        td { (figures.current[i]) }
                        @if view.bots { td { (figures.bots[i]) } }
                        td { (figures.previous_dates[i]) }
                        td { (figures.previous[i]) }
                    }
                }
            }
        }
    };
    charts::figure(
        &caption,
        charts::lines(&label, &figures.dates, &series),
        table,
    )
}

fn referrers(figures: &Figures) -> Markup {
    let caption = "Top referrers (all time, people only)";
    if figures.referrers.is_empty() {
        return html! {
            h3 { (caption) }
            p.muted { "No referrer yet: the clicks so far came without one (typed, bookmarked or from an app)." }
        };
    }
    let label = format!(
        "Bar chart of the {} referring sites with the most clicks; first {} with {}.",
        figures.referrers.len(),
        figures.referrers[0].0,
        figures.referrers[0].1
    );
    named_table(caption, &label, "Site", &figures.referrers)
}

fn devices(figures: &Figures) -> Markup {
    let caption = if figures.view.bots {
        "Devices (all time, bots included)"
    } else {
        "Devices (all time, people only)"
    };
    if figures.devices.is_empty() {
        return html! {
            h3 { (caption) }
            p.muted { "No device to show yet." }
        };
    }
    let parts: Vec<String> = figures
        .devices
        .iter()
        .map(|(name, n)| format!("{name} {n}"))
        .collect();
    let label = format!("Bar chart of clicks per device: {}.", parts.join(", "));
    named_table(caption, &label, "Device", &figures.devices)
}

/// The browsers and countries of this period.
fn visit_parts(figures: &Figures) -> Markup {
    let period = figures.visit_days;
    let whose = if figures.view.bots {
        "bots included"
    } else {
        "people only"
    };
    let (Some(browsers), Some(countries)) = (&figures.browsers, &figures.countries) else {
        return html! {
            h3 { "Browsers and countries" }
            p.muted { "Browsers and countries are counted from the visit log, which is off on this server." }
        };
    };
    let part = |what: &str, title: &str, column: &str, rows: &[(String, i64)]| {
        let caption = format!("{title}, last {period} days ({whose})");
        if rows.is_empty() {
            return html! {
                h3 { (caption) }
                p.muted { "No visit logged in the last " (period) " days." }
            };
        }
        let parts: Vec<String> = rows.iter().map(|(name, n)| format!("{name} {n}")).collect();
        let label = format!(
            "Bar chart of visits per {what} over the last {period} days: {}.",
            parts.join(", ")
        );
        named_table(&caption, &label, column, rows)
    };
    html! {
        (part("browser", "Browsers", "Browser", browsers))
        (part("country", "Countries", "Country", countries))
    }
}

fn named_table(caption: &str, label: &str, column: &str, rows: &[(String, i64)]) -> Markup {
    let table = html! {
        table {
            thead { tr { th scope="col" { (column) } th scope="col" { "Clicks" } } }
            tbody {
                @for (name, n) in rows { tr { td { (name) } td { (n) } } }
            }
        }
    };
    charts::figure(caption, charts::bars(label, rows), table)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stats(days: Vec<(i64, i64, i64)>) -> LinkStats {
        LinkStats {
            days,
            bot_clicks: 3,
            referrers: vec![("news.example".into(), 4)],
            devices: vec![
                ("desktop".into(), 1),
                ("mobile".into(), 5),
                ("bot".into(), 3),
            ],
        }
    }

    #[test]
    fn days_fall_into_this_period_or_the_one_before() {
        let view = View {
            period: 7,
            bots: false,
        };
        // Day 100 is today: 94..=100 is this period, 87..=93 the one before.
        let figures = Figures::new(
            &stats(vec![
                (100, 2, 1),
                (94, 1, 0),
                (93, 5, 0),
                (87, 1, 0),
                (86, 9, 9),
            ]),
            18,
            100,
            view,
        );
        assert_eq!(figures.current, [1, 0, 0, 0, 0, 0, 2]);
        assert_eq!(figures.previous, [1, 0, 0, 0, 0, 0, 5]);
        assert_eq!(figures.bots, [0, 0, 0, 0, 0, 0, 1]);
        assert_eq!(figures.dates.len(), 7);
        assert_eq!(
            figures.previous_dates.last(),
            Some(&"1970-04-04".to_owned())
        );
        assert_eq!(figures.dates.last(), Some(&"1970-04-11".to_owned()));
        // People's devices, most first; bots only when asked for.
        assert_eq!(
            figures.devices,
            [("mobile".to_owned(), 5), ("desktop".to_owned(), 1)]
        );
        let with_bots = Figures::new(&stats(vec![]), 0, 100, View { bots: true, ..view });
        assert_eq!(with_bots.devices.last(), Some(&("bot".to_owned(), 3)));
    }

    #[test]
    fn browsers_and_countries_name_the_unknown_and_show_bots_only_when_asked() {
        let visits = VisitBreakdown {
            browsers: vec![("chrome".into(), 3), ("firefox".into(), 1)],
            countries: vec![(Some("FR".into()), 3), (None, 1)],
            bot_visits: 2,
        };
        let view = View {
            period: 90,
            bots: false,
        };
        let people = Figures::new(&stats(vec![]), 4, 100, view).with_visits(Some(&visits), 30);
        assert_eq!(
            people.countries,
            Some(vec![("FR".to_owned(), 3), ("unknown".to_owned(), 1)])
        );
        let html = section(&people, &|_| "/x".into()).into_string();
        assert!(
            html.contains("visits per browser over the last 30 days: chrome 3, firefox 1."),
            "the visit log's 30 days, not the period's 90: {html}"
        );
        let with_bots = Figures::new(&stats(vec![]), 4, 100, View { bots: true, ..view })
            .with_visits(Some(&visits), 30);
        assert_eq!(
            with_bots.browsers.as_ref().and_then(|b| b.last()),
            Some(&("bot".to_owned(), 2))
        );
        let without_log = Figures::new(&stats(vec![]), 4, 100, view).with_visits(None, 30);
        let html = section(&without_log, &|_| "/x".into()).into_string();
        assert!(html.contains("visit log, which is off"), "{html}");
    }

    #[test]
    fn an_unknown_period_is_the_default_one() {
        let of = |period: &str, bots: Option<&str>| {
            View::of(&StatsQuery {
                period: Some(period.into()),
                bots: bots.map(Into::into),
            })
        };
        assert_eq!(of("90", None).period, 90);
        assert_eq!(of("12", None).period, DEFAULT_PERIOD);
        assert_eq!(of("<x>", None).period, DEFAULT_PERIOD);
        assert!(of("7", Some("show")).bots);
        assert!(!of("7", Some("yes")).bots);
    }

    #[test]
    fn a_link_without_clicks_shows_an_empty_state_and_no_chart() {
        let empty = LinkStats {
            days: vec![],
            bot_clicks: 0,
            referrers: vec![],
            devices: vec![],
        };
        let view = View::of(&StatsQuery::default());
        let html = section(&Figures::new(&empty, 0, 100, view), &|_| "/x".into()).into_string();
        assert!(html.contains("No clicks yet."), "{html}");
        assert!(!html.contains("<svg"), "{html}");
    }

    #[test]
    fn changes_are_said_in_percent() {
        assert_eq!(change(15, 10), "+50 %");
        assert_eq!(change(5, 10), "-50 %");
        assert_eq!(change(3, 0), "none before");
        assert_eq!(change(0, 0), "no change");
    }
}
