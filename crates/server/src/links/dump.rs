//! Exporting a user's links with their click totals: `GET /links/export` (CSV or JSON,
//! streamed a page at a time) and `basis links export`.
//!
//! The CSV has the header `shortCode,shortUrl,longUrl,domain,title,tags,createdAt,clicks`
//! (tags separated by `|`); the JSON is a list of objects with the same members. Links come
//! oldest first. Click totals are the stored ones plus, over HTTP, this instance's clicks
//! not stored yet.

use axum::body::Body;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use basis_auth::role::Scope;
use basis_store::Store;
use basis_store::links::{self, LinkQuery, LinkSort};
use chrono::{DateTime, Utc};
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::code::CodeBook;
use super::domains::Domains;
use super::exports::field;
use crate::clock::to_datetime;
use crate::error::{ApiError, ApiResult, Problem};
use crate::identity::caller::Caller;
use crate::state::AppState;

/// Links read per query while an export streams.
const PAGE: i64 = 500;
/// The CSV header of a link export.
pub const CSV_HEADER: &str = "shortCode,shortUrl,longUrl,domain,title,tags,createdAt,clicks\n";

/// One exported link.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ExportedLink {
    /// Its code.
    pub short_code: String,
    /// Its short URL.
    pub short_url: String,
    /// Where it redirects.
    pub long_url: String,
    /// Its domain.
    pub domain: String,
    /// Its title.
    pub title: Option<String>,
    /// Its tags.
    pub tags: Vec<String>,
    /// When it was made.
    pub created_at: DateTime<Utc>,
    /// Human clicks.
    pub clicks: i64,
}

/// The output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// CSV with a header row.
    Csv,
    /// A JSON list.
    Json,
}

/// What an export reads from.
#[derive(Debug, Clone, Copy)]
pub struct Source<'a> {
    /// The database.
    pub store: &'a Store,
    /// ids ↔ codes.
    pub codes: &'a CodeBook,
    /// The domains, for short URLs.
    pub domains: &'a Domains,
    /// The default domain's origin (no trailing slash).
    pub base_url: &'a str,
}

/// One page of `owner`'s links after `after` (oldest first), and where the next starts;
/// `unstored` adds clicks not stored yet to a link's total.
pub async fn page(
    source: Source<'_>,
    owner: &str,
    after: Option<(i64, i64)>,
    unstored: &(dyn Fn(i64) -> i64 + Sync),
) -> Result<(Vec<ExportedLink>, Option<(i64, i64)>), basis_store::Error> {
    let rows = links::list(
        source.store,
        &LinkQuery {
            owner_id: owner.to_owned(),
            search: None,
            search_id: None,
            tag: None,
            domain: None,
            sort: LinkSort::OldestFirst,
            after,
            limit: PAGE,
        },
    )
    .await?;
    let next = (rows.len() as i64 == PAGE)
        .then(|| rows.last().map(|l| (l.row.created_at, l.row.id)))
        .flatten();
    let ids: Vec<i64> = rows.iter().map(|r| r.row.id).collect();
    let tags = links::tags_of(source.store, &ids).await?;
    let mut titles: std::collections::HashMap<i64, String> = links::titles_of(source.store, &ids)
        .await?
        .into_iter()
        .collect();
    let mut rows_out = Vec::with_capacity(rows.len());
    // `tags_of` is ordered by link id; the rows by creation: gather them by id first.
    let mut by_id: std::collections::HashMap<i64, Vec<String>> = Default::default();
    for (id, tag) in tags {
        by_id.entry(id).or_default().push(tag);
    }
    for link in rows {
        let code = source.codes.code_of(&link.row);
        let domain = link.row.domain.as_deref();
        rows_out.push(ExportedLink {
            short_url: source.domains.short_url(source.base_url, domain, &code),
            short_code: code,
            long_url: link.row.long_url.clone(),
            domain: domain.unwrap_or(source.domains.default_name()).to_owned(),
            title: titles.remove(&link.row.id),
            tags: by_id.remove(&link.row.id).unwrap_or_default(),
            created_at: to_datetime(link.row.created_at),
            clicks: link.clicks + unstored(link.row.id),
        });
    }
    Ok((rows_out, next))
}

/// One CSV line of `link`.
pub fn csv_line(link: &ExportedLink) -> String {
    format!(
        "{},{},{},{},{},{},{},{}\n",
        field(&link.short_code),
        field(&link.short_url),
        field(&link.long_url),
        field(&link.domain),
        field(link.title.as_deref().unwrap_or("")),
        field(&link.tags.join("|")),
        link.created_at
            .to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        link.clicks,
    )
}

/// The query of `GET /links/export`.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ExportParams {
    /// Whose links (admins only; default: yours).
    #[param(value_type = Option<crate::http::schema::AccountId>)]
    pub owner: Option<String>,
    /// `json` (the default) or `csv`; `Accept: text/csv` also asks for CSV.
    #[param(pattern = "^(json|csv)$")]
    pub format: Option<String>,
}

/// Exports your links (admins: anyone's with `owner`) with their click totals.
#[utoipa::path(
    get, path = "/links/export", tag = "links", params(ExportParams),
    responses(
        (status = 200, description = "Every link, oldest first, streamed", content((Vec<ExportedLink> = "application/json"), (String = "text/csv"))),
        (status = 400, description = "A bad parameter", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Not signed in", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Another owner's links, and not an admin; or the API key lacks links:read", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn export(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    params: Result<Query<ExportParams>, QueryRejection>,
) -> ApiResult<Response> {
    let principal = caller.require()?;
    caller.require_scope(Scope::LinksRead)?;
    let Query(params) = params.map_err(|e| ApiError::BadRequest(e.body_text()))?;
    let owner = match params.owner {
        // Refused before the answer starts: a failure inside the stream could only cut it.
        Some(owner) if !crate::accounts::users::is_account_id(&owner) => {
            return Err(ApiError::field("owner", "must be an account id"));
        }
        Some(owner) if owner != principal.user_id => caller.act_for(&owner).map(|_| owner)?,
        _ => principal.user_id.clone(),
    };
    let csv_accepted = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.contains("text/csv"));
    let format = match params.format.as_deref() {
        Some("csv") => Format::Csv,
        Some("json") => Format::Json,
        None if csv_accepted => Format::Csv,
        None => Format::Json,
        Some(_) => return Err(ApiError::field("format", "must be json or csv")),
    };
    let body = futures_util::stream::unfold(
        (state, owner, Some((None::<(i64, i64)>, true)), false),
        move |(state, owner, position, written)| async move {
            let (after, first) = position?;
            let source = Source {
                store: &state.store,
                codes: &state.codes,
                domains: &state.domains,
                base_url: &state.base_url,
            };
            let unstored = |id: i64| state.clicks.unflushed_humans(id);
            let (links, next) = match page(source, &owner, after, &unstored).await {
                Ok(found) => found,
                Err(err) => {
                    tracing::warn!(error = %err, "link export failed midway");
                    let err = std::io::Error::other(err.to_string());
                    return Some((Err(err), (state, owner, None, written)));
                }
            };
            let (text, written) = render(format, &links, first, next.is_none(), written);
            let position = next.map(|after| (Some(after), false));
            Some((
                Ok::<_, std::io::Error>(text),
                (state, owner, position, written),
            ))
        },
    );
    // Fused: the compression layer may poll again after the end, which an unfold forbids.
    let mut response = Body::from_stream(body.fuse()).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(match format {
            Format::Csv => "text/csv; charset=utf-8",
            Format::Json => "application/json",
        }),
    );
    headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("private, no-store"),
    );
    Ok(response)
}

/// The text of one page of an export: the opening on the `first` page, the closing on the
/// `last`; `written` says whether a JSON item came before (for commas), and is returned
/// updated.
pub fn render(
    format: Format,
    links: &[ExportedLink],
    first: bool,
    last: bool,
    mut written: bool,
) -> (String, bool) {
    let mut text = String::new();
    if first {
        text.push_str(match format {
            Format::Csv => CSV_HEADER,
            Format::Json => "[",
        });
    }
    for link in links {
        match format {
            Format::Csv => text.push_str(&csv_line(link)),
            Format::Json => {
                if written {
                    text.push(',');
                }
                text.push_str(&serde_json::to_string(link).unwrap_or_default());
                written = true;
            }
        }
    }
    if last && format == Format::Json {
        text.push_str("]\n");
    }
    (text, written)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn link(code: &str) -> ExportedLink {
        ExportedLink {
            short_code: code.into(),
            short_url: format!("https://sho.rt/{code}"),
            long_url: "https://example.com/a,b".into(),
            domain: "sho.rt".into(),
            title: Some("A \"title\"".into()),
            tags: vec!["news".into(), "promo".into()],
            created_at: to_datetime(0),
            clicks: 3,
        }
    }

    #[test]
    fn pages_join_into_one_document() {
        let (a, written) = render(Format::Json, &[link("a1")], true, false, false);
        let (b, _) = render(Format::Json, &[link("b1")], false, true, written);
        let all: Vec<ExportedLink> = serde_json::from_str(&(a + &b)).unwrap();
        assert_eq!(all, [link("a1"), link("b1")]);
        let (csv, _) = render(Format::Csv, &[link("a1")], true, true, false);
        assert_eq!(
            csv,
            format!(
                "{CSV_HEADER}a1,https://sho.rt/a1,\"https://example.com/a,b\",sho.rt,\
                 \"A \"\"title\"\"\",news|promo,1970-01-01T00:00:00.000Z,3\n"
            )
        );
        let (empty, _) = render(Format::Json, &[], true, true, false);
        assert_eq!(
            serde_json::from_str::<Vec<ExportedLink>>(&empty).unwrap(),
            []
        );
    }
}
