//! `basis links import --from shlink|kutt|yourls|bitly FILE`: links from another
//! shortener's export, written through the store.
//!
//! The file is read whole and checked before anything is written: a file in the wrong
//! format, or with a row that cannot become a link, is refused with the line and the
//! reason. Then each link keeps its code where that code is free on the domain (and is a
//! valid alias here); otherwise it gets a generated code, and the report names it as a
//! conflict. Titles, tags, creation times and click totals come along (the totals as
//! carried-over clicks, which count in a link's total but in no day).
//!
//! The formats, as each tool documents its export:
//! - **Shlink**: the CSV of the web client's short-URL export, with a header naming
//!   `shortCode` and `longUrl`, and optionally `createdAt` (RFC 3339), `title`, `tags`
//!   (separated by `|`) and `visits`.
//! - **Kutt**: the JSON of its links API (`GET /api/v2/links`): an object whose `data` is
//!   the list of links, or the list itself; each link has `address` and `target`, and
//!   optionally `description`, `visit_count` and `created_at`.
//! - **YOURLS**: a CSV of its `yourls_url` table (as a database export writes it), with
//!   `keyword` and `url`, and optionally `title`, `timestamp` (`YYYY-MM-DD HH:MM:SS`, UTC)
//!   and `clicks`.
//! - **Bitly**: the CSV of its links export, with `link` (or `bitlink`: the short link,
//!   whose last path segment is the code) and `long_url`, and optionally `title`,
//!   `created_at`, `tags` (separated by `|` or `;`) and `clicks`.
//!
//! Column names are matched without regard to case; other columns are ignored.

use std::collections::{HashMap, HashSet};

use basis_store::Store;
use basis_store::ids::IdBlocks;
use basis_store::links::{self, CARRIED_DAY, ClickBatch, LinkClicks, LinkRow};
use chrono::{DateTime, NaiveDateTime};
use serde::Deserialize;

use super::code::CodeBook;
use super::input::{Alias, UrlPolicy};
use super::link::LinkTitle;
use super::tags::Tag;

/// The tool an export comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Source {
    /// Shlink (CSV).
    Shlink,
    /// Kutt (JSON).
    Kutt,
    /// YOURLS (CSV).
    Yourls,
    /// Bitly (CSV).
    Bitly,
}

/// One link read from an export, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Imported {
    /// The line it starts on.
    pub line: usize,
    /// Its code in the other tool.
    pub code: String,
    /// Where it redirects.
    pub long_url: String,
    /// Its title.
    pub title: Option<String>,
    /// Its tags (valid here, no duplicates).
    pub tags: Vec<String>,
    /// When it was made, Unix ms (now when the export does not say).
    pub created_at: Option<i64>,
    /// Its clicks so far.
    pub clicks: i64,
}

/// Why a file was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {reason}")]
pub struct FormatError {
    /// The line of the fault (1 for the file as a whole).
    pub line: usize,
    /// What is wrong.
    pub reason: String,
}

fn refuse<T>(line: usize, reason: impl Into<String>) -> Result<T, FormatError> {
    Err(FormatError {
        line,
        reason: reason.into(),
    })
}

/// Reads and checks every link of an export; nothing is written.
pub fn parse(source: Source, text: &str, policy: &UrlPolicy) -> Result<Vec<Imported>, FormatError> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let raw = match source {
        Source::Kutt => kutt(text)?,
        Source::Shlink => csv_rows(
            text,
            &Columns {
                code: &["shortcode"],
                url: &["longurl"],
                title: &["title"],
                tags: &["tags"],
                created: &["createdat"],
                clicks: &["visits", "visitscount"],
            },
        )?,
        Source::Yourls => csv_rows(
            text,
            &Columns {
                code: &["keyword"],
                url: &["url"],
                title: &["title"],
                tags: &[],
                created: &["timestamp"],
                clicks: &["clicks"],
            },
        )?,
        Source::Bitly => csv_rows(
            text,
            &Columns {
                code: &["link", "bitlink"],
                url: &["long_url", "long url"],
                title: &["title"],
                tags: &["tags"],
                created: &["created_at", "created"],
                clicks: &["clicks", "total clicks"],
            },
        )?,
    };
    if raw.is_empty() {
        return refuse(1, "the file holds no links");
    }
    raw.into_iter().map(|r| check(source, r, policy)).collect()
}

/// A link as read, before it is checked.
#[derive(Debug, Default)]
struct Raw {
    line: usize,
    code: String,
    url: String,
    title: Option<String>,
    tags: Option<String>,
    created: Option<String>,
    clicks: Option<String>,
}

fn check(source: Source, raw: Raw, policy: &UrlPolicy) -> Result<Imported, FormatError> {
    let line = raw.line;
    let mut code = raw.code.trim().to_owned();
    if source == Source::Bitly {
        // `bit.ly/abc` or `https://bit.ly/abc`: the code is the last segment.
        code = code
            .trim_end_matches('/')
            .rsplit('/')
            .next()
            .unwrap_or("")
            .to_owned();
    }
    if code.is_empty() {
        return refuse(line, "the short code is empty");
    }
    let long_url = policy
        .parse(raw.url.trim())
        .map_err(|why| FormatError {
            line,
            reason: format!("the long URL {why}"),
        })?
        .as_str()
        .to_owned();
    let title = match raw
        .title
        .as_deref()
        .map(str::trim)
        .filter(|t| !t.is_empty())
    {
        Some(title) => Some(
            LinkTitle::parse(title)
                .map_err(|why| FormatError {
                    line,
                    reason: format!("the title {why}"),
                })?
                .as_str()
                .to_owned(),
        ),
        None => None,
    };
    let mut tags: Vec<String> = Vec::new();
    for tag in raw
        .tags
        .as_deref()
        .unwrap_or("")
        .split(['|', ';'])
        .map(str::trim)
        .filter(|t| !t.is_empty())
    {
        let tag = Tag::parse(tag)
            .map_err(|why| FormatError {
                line,
                reason: format!("the tag {tag:?} {why}"),
            })?
            .into_string();
        if !tags.contains(&tag) {
            tags.push(tag);
        }
    }
    let created_at = match raw
        .created
        .as_deref()
        .map(str::trim)
        .filter(|t| !t.is_empty())
    {
        Some(text) => Some(time_of(text).ok_or_else(|| FormatError {
            line,
            reason: format!("the creation time {text:?} is not a date and time"),
        })?),
        None => None,
    };
    let clicks = match raw
        .clicks
        .as_deref()
        .map(str::trim)
        .filter(|t| !t.is_empty())
    {
        Some(text) => text
            .parse::<i64>()
            .ok()
            .filter(|n| *n >= 0)
            .ok_or_else(|| FormatError {
                line,
                reason: format!("the click count {text:?} is not a whole number"),
            })?,
        None => 0,
    };
    Ok(Imported {
        line,
        code,
        long_url,
        title,
        tags,
        created_at,
        clicks,
    })
}

/// RFC 3339, Bitly's `+0000` offsets, or a plain `YYYY-MM-DD HH:MM:SS` taken as UTC.
fn time_of(text: &str) -> Option<i64> {
    DateTime::parse_from_rfc3339(text)
        .or_else(|_| DateTime::parse_from_str(text, "%Y-%m-%dT%H:%M:%S%z"))
        .map(|t| t.timestamp_millis())
        .ok()
        .or_else(|| {
            NaiveDateTime::parse_from_str(text, "%Y-%m-%d %H:%M:%S")
                .ok()
                .map(|t| t.and_utc().timestamp_millis())
        })
}

/// Which header names hold which field in a CSV export.
struct Columns {
    code: &'static [&'static str],
    url: &'static [&'static str],
    title: &'static [&'static str],
    tags: &'static [&'static str],
    created: &'static [&'static str],
    clicks: &'static [&'static str],
}

fn csv_rows(text: &str, columns: &Columns) -> Result<Vec<Raw>, FormatError> {
    let records = super::csv::records(text).map_err(|message| {
        // The reader says "line N: …".
        let (line, reason) = message
            .strip_prefix("line ")
            .and_then(|rest| rest.split_once(": "))
            .and_then(|(n, why)| Some((n.parse().ok()?, why.to_owned())))
            .unwrap_or((1, message));
        FormatError { line, reason }
    })?;
    let mut records = records.into_iter();
    let Some((header_line, header)) = records.next() else {
        return refuse(1, "the file is empty");
    };
    let names: Vec<String> = header
        .iter()
        .map(|h| h.trim().to_ascii_lowercase())
        .collect();
    let find = |wanted: &[&str]| names.iter().position(|n| wanted.contains(&n.as_str()));
    let code = find(columns.code).ok_or_else(|| FormatError {
        line: header_line,
        reason: format!(
            "the header has no {} column (is this the right --from?)",
            columns.code[0]
        ),
    })?;
    let url = find(columns.url).ok_or_else(|| FormatError {
        line: header_line,
        reason: format!(
            "the header has no {} column (is this the right --from?)",
            columns.url[0]
        ),
    })?;
    let (title, tags, created, clicks) = (
        find(columns.title),
        find(columns.tags),
        find(columns.created),
        find(columns.clicks),
    );
    let mut rows = Vec::new();
    for (line, fields) in records {
        if fields.len() != names.len() {
            return refuse(
                line,
                format!(
                    "{} fields where the header has {}",
                    fields.len(),
                    names.len()
                ),
            );
        }
        let get = |i: Option<usize>| i.map(|i| fields[i].clone());
        rows.push(Raw {
            line,
            code: fields[code].clone(),
            url: fields[url].clone(),
            title: get(title),
            tags: get(tags),
            created: get(created),
            clicks: get(clicks),
        });
    }
    Ok(rows)
}

/// One link of Kutt's links API.
#[derive(Debug, Deserialize)]
struct KuttLink {
    address: String,
    target: String,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    visit_count: Option<i64>,
    #[serde(default)]
    created_at: Option<String>,
}

fn kutt(text: &str) -> Result<Vec<Raw>, FormatError> {
    let value: serde_json::Value = serde_json::from_str(text).map_err(|err| FormatError {
        line: err.line().max(1),
        reason: format!("not Kutt's JSON: {err}"),
    })?;
    let (items, nested) = match value {
        serde_json::Value::Array(items) => (items, false),
        serde_json::Value::Object(mut page) => match page.remove("data") {
            Some(serde_json::Value::Array(items)) => (items, true),
            _ => {
                return refuse(
                    1,
                    "not Kutt's JSON: an object without a `data` list of links",
                );
            }
        },
        _ => {
            return refuse(
                1,
                "not Kutt's JSON: expected a list of links or an object with `data`",
            );
        }
    };
    let lines = item_lines(text, nested);
    items
        .into_iter()
        .enumerate()
        .map(|(i, item)| {
            let line = lines.get(i).copied().unwrap_or(1);
            let link: KuttLink = serde_json::from_value(item).map_err(|err| FormatError {
                line,
                reason: format!("not a Kutt link: {err}"),
            })?;
            Ok(Raw {
                line,
                code: link.address,
                url: link.target,
                title: link.description,
                tags: None,
                created: link.created_at,
                clicks: link.visit_count.map(|n| n.to_string()),
            })
        })
        .collect()
}

/// The line each element of the list of links starts on: the top-level array's objects,
/// or (`nested`) those of an array inside the top-level object.
fn item_lines(text: &str, nested: bool) -> Vec<usize> {
    let mut lines = Vec::new();
    let mut stack: Vec<char> = Vec::new();
    let (mut line, mut in_string, mut escaped) = (1, false, false);
    for c in text.chars() {
        if in_string {
            match c {
                _ if escaped => escaped = false,
                '\\' => escaped = true,
                '"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match c {
            '\n' => line += 1,
            '"' => in_string = true,
            '{' | '[' => {
                let parent_is_list = if nested {
                    stack == ['{', '[']
                } else {
                    stack == ['[']
                };
                if c == '{' && parent_is_list {
                    lines.push(line);
                }
                stack.push(c);
            }
            '}' | ']' => {
                stack.pop();
            }
            _ => {}
        }
    }
    lines
}

/// What an import needs of the server: the store, the code book and the id sequence.
#[derive(Debug, Clone, Copy)]
pub struct Target<'a> {
    /// The database.
    pub store: &'a Store,
    /// ids ↔ codes.
    pub codes: &'a CodeBook,
    /// The link id sequence.
    pub ids: &'a IdBlocks,
}

/// A link that could not keep its code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conflict {
    /// Its line in the file.
    pub line: usize,
    /// Its code there.
    pub code: String,
    /// Its code here.
    pub new_code: String,
    /// Why it changed.
    pub reason: String,
}

/// What an import did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    /// Links written.
    pub created: usize,
    /// Of those, how many kept their code.
    pub kept: usize,
    /// The others.
    pub conflicts: Vec<Conflict>,
}

/// Links written per transaction.
const CHUNK: usize = 1000;

/// Writes `items` (from [`parse`]) as links of `owner` on `domain` (`None`: the default
/// one), telling `progress` how many of how many are written after each chunk.
pub async fn write(
    target: Target<'_>,
    owner: &str,
    domain: Option<&str>,
    now_ms: i64,
    items: Vec<Imported>,
    mut progress: impl FnMut(usize, usize),
) -> Result<Report, basis_store::Error> {
    let total = items.len();
    let wanted: Vec<&str> = items.iter().map(|i| i.code.as_str()).collect();
    let mut taken: HashSet<String> = HashSet::new();
    for chunk in wanted.chunks(CHUNK) {
        taken.extend(links::taken_aliases(target.store, chunk, domain).await?);
    }
    let mut report = Report::default();
    let mut done = 0;
    for chunk in items.chunks(CHUNK) {
        let mut rows = Vec::with_capacity(chunk.len());
        let mut conflicts: HashMap<i64, (usize, String, String)> = HashMap::new();
        for item in chunk {
            let refusal = match Alias::parse(&item.code) {
                Err(why) => Some(format!("the code {why}")),
                Ok(_) if taken.contains(&item.code) => Some("the code is taken".to_owned()),
                Ok(_) => None,
            };
            let id = next_id(target).await?;
            let alias = refusal.is_none().then(|| item.code.clone());
            if let Some(reason) = refusal {
                conflicts.insert(id, (item.line, item.code.clone(), reason));
            } else {
                taken.insert(item.code.clone());
            }
            rows.push(LinkRow {
                id,
                alias,
                long_url: item.long_url.clone(),
                created_at: item.created_at.unwrap_or(now_ms),
                expires_at: None,
                max_clicks: None,
                redirect_type: 301,
                password_hash: None,
                owner_id: Some(owner.to_owned()),
                rules: None,
                domain: domain.map(str::to_owned),
            });
        }
        let extras = links::Extras {
            tags: rows
                .iter()
                .zip(chunk)
                .flat_map(|(row, item)| item.tags.iter().map(|t| (row.id, t.clone())))
                .collect(),
            titles: rows
                .iter()
                .zip(chunk)
                .filter_map(|(row, item)| item.title.clone().map(|t| (row.id, t)))
                .collect(),
        };
        links::insert_with(target.store, &rows, &extras).await?;
        let clicks: Vec<LinkClicks> = rows
            .iter()
            .zip(chunk)
            .filter(|(_, item)| item.clicks > 0)
            .map(|(row, item)| LinkClicks {
                link_id: row.id,
                humans: item.clicks,
                days: vec![(CARRIED_DAY, item.clicks, 0)],
                ..Default::default()
            })
            .collect();
        links::apply_clicks(
            target.store,
            &ClickBatch {
                links: clicks,
                ..Default::default()
            },
        )
        .await?;
        for row in &rows {
            match conflicts.remove(&row.id) {
                Some((line, code, reason)) => report.conflicts.push(Conflict {
                    line,
                    code,
                    new_code: target.codes.code_of(row),
                    reason,
                }),
                None => report.kept += 1,
            }
        }
        report.created += rows.len();
        done += chunk.len();
        progress(done, total);
    }
    Ok(report)
}

/// The next id whose generated code is not an old alias's text.
async fn next_id(target: Target<'_>) -> Result<i64, basis_store::Error> {
    loop {
        let id = target.ids.next_id().await?;
        if !target.codes.is_held(id as u64) {
            return Ok(id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> UrlPolicy {
        UrlPolicy {
            max_len: 2048,
            own_origin: url::Url::parse("http://127.0.0.1:8080").unwrap(),
            blocked_hosts: Default::default(),
        }
    }

    #[test]
    fn a_shlink_export_is_read_by_its_header() {
        let csv = "createdAt,domain,shortCode,shortUrl,longUrl,title,tags,visits\n\
                   2024-01-02T03:04:05+00:00,,abc12,https://s.test/abc12,https://example.com/a,Hello,news|Promo,7\n";
        let links = parse(Source::Shlink, csv, &policy()).unwrap();
        assert_eq!(links.len(), 1);
        assert_eq!(links[0].code, "abc12");
        assert_eq!(links[0].tags, ["news", "promo"]);
        assert_eq!(links[0].clicks, 7);
        assert_eq!(links[0].created_at, Some(1_704_164_645_000));
    }

    #[test]
    fn a_file_in_the_wrong_format_is_refused_with_its_line() {
        let yourls = "keyword,url,title,timestamp,ip,clicks\nabc,https://example.com/,,2024-01-01 00:00:00,1.2.3.4,3\n";
        let err = parse(Source::Shlink, yourls, &policy()).unwrap_err();
        assert_eq!(err.line, 1);
        assert!(err.reason.contains("shortcode"), "{err}");
        let bad_url = "keyword,url\nabc,https://example.com/\ndef,ftp://example.com/\n";
        let err = parse(Source::Yourls, bad_url, &policy()).unwrap_err();
        assert_eq!(err.line, 3);
        assert!(err.reason.contains("long URL"), "{err}");
        let bad_json = "{\"data\": [\n  {\"address\": \"a1\", \"target\": \"https://example.com/\"},\n  {\"address\": \"a2\"}\n]}";
        let err = parse(Source::Kutt, bad_json, &policy()).unwrap_err();
        assert_eq!(err.line, 3);
        assert!(err.reason.contains("target"), "{err}");
        let err = parse(Source::Kutt, "{\"data\": [", &policy()).unwrap_err();
        assert_eq!(err.line, 1);
        let short_row = "link,long_url,title\nbit.ly/x1,https://example.com/\n";
        assert_eq!(
            parse(Source::Bitly, short_row, &policy()).unwrap_err().line,
            2
        );
    }

    #[test]
    fn bitly_codes_are_the_last_segment_of_the_short_link() {
        let csv = "link,long_url,created_at\nhttps://bit.ly/3AbCdEf,https://example.com/b,2024-05-06T07:08:09+0000\n";
        let links = parse(Source::Bitly, csv, &policy()).unwrap();
        assert_eq!(links[0].code, "3AbCdEf");
        assert!(links[0].created_at.is_some());
    }
}
