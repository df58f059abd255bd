//! Charts drawn on the server as SVG: no chart library and no script. Each chart is a
//! `<figure>` with a caption, an SVG that says what it shows (`role="img"`, `aria-label`)
//! and a data table behind it, so the numbers can be read without seeing the drawing.
//!
//! Colours come from the stylesheet (classes on the shapes), so the charts follow the
//! light and dark themes and need no inline style, which the pages' policy forbids.

use std::fmt::Write as _;

use maud::{Markup, html};

/// The drawing's coordinate space; the SVG scales to its box.
const WIDTH: f64 = 640.0;
const HEIGHT: f64 = 220.0;
/// Room for the value labels on the left and the date labels below.
const LEFT: f64 = 40.0;
const BOTTOM: f64 = 24.0;
const TOP: f64 = 8.0;
const RIGHT: f64 = 8.0;

/// One series of a line chart: a value per point, oldest first.
#[derive(Debug, Clone, Copy)]
pub struct Series<'a> {
    /// Its name in the legend.
    pub name: &'a str,
    /// The CSS class of its line (`current`, `previous`, `bots`).
    pub class: &'a str,
    /// Its values.
    pub values: &'a [i64],
}

/// A line chart of `series` (all of one length) over the points named by `labels`
/// (dates, oldest first). `label` is what a screen reader hears for the drawing.
pub fn lines(label: &str, labels: &[String], series: &[Series<'_>]) -> Markup {
    let points = labels.len().max(1);
    let max = series
        .iter()
        .flat_map(|s| s.values.iter().copied())
        .max()
        .unwrap_or(0)
        .max(1);
    let plot_w = WIDTH - LEFT - RIGHT;
    let plot_h = HEIGHT - TOP - BOTTOM;
    let x = |i: usize| {
        if points == 1 {
            LEFT + plot_w / 2.0
        } else {
            LEFT + plot_w * i as f64 / (points - 1) as f64
        }
    };
    let y = |v: i64| TOP + plot_h - plot_h * v as f64 / max as f64;
    let paths: Vec<(&str, String)> = series
        .iter()
        .map(|s| {
            let mut d = String::with_capacity(s.values.len() * 14);
            for (i, v) in s.values.iter().enumerate() {
                let command = if i == 0 { 'M' } else { 'L' };
                let _ = write!(d, "{command}{:.1} {:.1}", x(i), y(*v));
            }
            (s.class, d)
        })
        .collect();
    let ticks = [0, max / 2, max];
    let date_ticks: Vec<(usize, &str)> = match labels.len() {
        0 => Vec::new(),
        1 => vec![(0, labels[0].as_str())],
        n => vec![
            (0, labels[0].as_str()),
            (n / 2, labels[n / 2].as_str()),
            (n - 1, labels[n - 1].as_str()),
        ],
    };
    html! {
        svg.chart viewBox=(format!("0 0 {WIDTH} {HEIGHT}")) role="img" aria-label=(label)
            focusable="false" {
            title { (label) }
            @for tick in ticks {
                line.grid x1=(LEFT) x2=(WIDTH - RIGHT) y1=(fmt(y(tick))) y2=(fmt(y(tick))) {}
                text.axis x=(LEFT - 4.0) y=(fmt(y(tick) + 4.0)) text-anchor="end" { (tick) }
            }
            @for (i, text) in &date_ticks {
                @let anchor = if *i == 0 { "start" } else if *i + 1 == labels.len() { "end" } else { "middle" };
                text.axis x=(fmt(x(*i))) y=(HEIGHT - 6.0) text-anchor=(anchor) { (text) }
            }
            @for (class, d) in &paths {
                path class=(format!("line {class}")) d=(d) {}
            }
        }
        ul.legend aria-hidden="true" {
            @for s in series { li { span class=(format!("swatch {}", s.class)) {} (s.name) } }
        }
    }
}

/// A horizontal bar chart of `rows` (name, value), largest first as given.
pub fn bars(label: &str, rows: &[(String, i64)]) -> Markup {
    let max = rows.iter().map(|(_, v)| *v).max().unwrap_or(0);
    bars_to(label, rows, max, "")
}

/// A horizontal bar chart whose full width is `max` (100 for percentages), each value
/// written with `unit` after it.
pub fn bars_to(label: &str, rows: &[(String, i64)], max: i64, unit: &str) -> Markup {
    const ROW: f64 = 26.0;
    const NAME_W: f64 = 180.0;
    const VALUE_W: f64 = 60.0;
    let height = ROW * rows.len().max(1) as f64;
    let max = max.max(1);
    let bar_w = WIDTH - NAME_W - VALUE_W;
    html! {
        svg.chart.bars viewBox=(format!("0 0 {WIDTH} {height}")) role="img" aria-label=(label) focusable="false" {
            title { (label) }
            @for (i, (name, value)) in rows.iter().enumerate() {
                @let top = ROW * i as f64;
                @let w = bar_w * (*value).clamp(0, max) as f64 / max as f64;
                text.axis x=(NAME_W - 8.0) y=(fmt(top + 17.0)) text-anchor="end" { (shorten(name, 26)) }
                rect.bar x=(NAME_W) y=(fmt(top + 5.0)) width=(fmt(w.max(1.0))) height="16" rx="2" {}
                text.axis x=(fmt(NAME_W + w + 6.0)) y=(fmt(top + 17.0)) { (value) (unit) }
            }
        }
    }
}

/// A chart in its figure: the caption, the drawing, and its data behind a disclosure.
pub fn figure(caption: &str, chart: Markup, table: Markup) -> Markup {
    html! {
        figure.chart-figure {
            figcaption { (caption) }
            (chart)
            details {
                summary { "Data table" span.skip { ": " (caption) } }
                // Scrolls when long: focusable, so a keyboard can scroll it too.
                div.table-scroll tabindex="0" role="region" aria-label=(format!("Data of: {caption}")) { (table) }
            }
        }
    }
}

/// `text` cut to `max` characters with an ellipsis (long hosts in a bar's label).
pub(super) fn shorten(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_owned();
    }
    let mut cut: String = text.chars().take(max - 1).collect();
    cut.push('…');
    cut
}

/// A coordinate with one decimal, as short as the SVG needs.
fn fmt(v: f64) -> String {
    format!("{v:.1}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_chart_scales_its_highest_value_to_the_top_and_names_itself() {
        let labels: Vec<String> = ["2030-01-01", "2030-01-02", "2030-01-03"]
            .map(String::from)
            .to_vec();
        let svg = lines(
            "Clicks per day",
            &labels,
            &[Series {
                name: "This period",
                class: "current",
                values: &[0, 5, 10],
            }],
        )
        .into_string();
        assert!(svg.contains(r#"role="img""#), "{svg}");
        assert!(svg.contains(r#"aria-label="Clicks per day""#), "{svg}");
        // The first point sits on the baseline, the last at the top of the plot.
        let bottom = TOP + (HEIGHT - TOP - BOTTOM);
        assert!(svg.contains(&format!("M{LEFT:.1} {bottom:.1}")), "{svg}");
        assert!(
            svg.contains(&format!("L{:.1} {TOP:.1}", WIDTH - RIGHT)),
            "{svg}"
        );
        assert!(svg.contains(">2030-01-03<"), "{svg}");
    }

    #[test]
    fn bars_are_as_long_as_their_share_of_the_largest_and_names_are_escaped() {
        let svg = bars(
            "Top referrers",
            &[("<b>x</b>".to_owned(), 4), ("b.example".to_owned(), 2)],
        )
        .into_string();
        assert!(svg.contains("&lt;b&gt;x&lt;/b&gt;"), "{svg}");
        assert!(!svg.contains("<b>"), "{svg}");
        let full = WIDTH - 180.0 - 60.0;
        assert!(svg.contains(&format!(r#"width="{full:.1}""#)), "{svg}");
        assert!(
            svg.contains(&format!(r#"width="{:.1}""#, full / 2.0)),
            "{svg}"
        );
    }

    #[test]
    fn long_names_are_cut_with_an_ellipsis() {
        assert_eq!(shorten("abcdef", 4), "abc…");
        assert_eq!(shorten("abc", 4), "abc");
    }
}
