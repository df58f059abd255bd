//! List parameters shared by `GET /posts`, `GET /users/{id}/posts` and the comment lists:
//! parsing (every bad value is a 400 naming the parameter), opaque cursors and the
//! `Link: rel="next"` header.

use axum::http::{HeaderValue, header};
use axum::response::Response;
use base64::Engine as _;
use basis_store::posts::{After, Sort};
use serde::{Deserialize, Serialize};
use utoipa::IntoParams;

use crate::error::ApiError;

/// The query parameters of `GET /posts` (and of `GET /users/{id}/posts`, without `author`).
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PostListParams {
    /// Only posts by this user id.
    pub author: Option<String>,
    /// Only posts in this category.
    pub category: Option<String>,
    /// Only posts with this tag.
    pub tag: Option<String>,
    /// `published` (the default) or `draft` (your own drafts; every draft for admins).
    #[param(pattern = "^(draft|published)$")]
    pub status: Option<String>,
    /// Full-text search over titles and bodies; results are ranked unless `sort` is given.
    pub q: Option<String>,
    /// `-date` (newest first, the default), `date`, `title` or `-title`.
    #[param(pattern = "^-?(date|title)$")]
    pub sort: Option<String>,
    /// Page size, 1–100 (default 20).
    #[param(value_type = Option<i64>, minimum = 1, maximum = 100)]
    pub limit: Option<String>,
    /// The `nextCursor` of the previous page.
    #[param(value_type = Option<crate::http::schema::PageCursor>)]
    pub cursor: Option<String>,
}

/// The query parameters of the comment lists.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PageParams {
    /// Page size, 1–100 (default 20).
    #[param(value_type = Option<i64>, minimum = 1, maximum = 100)]
    pub limit: Option<String>,
    /// The `nextCursor` of the previous page.
    #[param(value_type = Option<crate::http::schema::PageCursor>)]
    pub cursor: Option<String>,
}

/// Reads the query string: the first value of each known parameter (unknown ones are
/// ignored, as HTTP caches and proxies may add their own).
pub fn parse_query(raw: Option<&str>) -> (PostListParams, PageParams) {
    let mut list = PostListParams::default();
    let mut page = PageParams::default();
    for (name, value) in url::form_urlencoded::parse(raw.unwrap_or_default().as_bytes()) {
        let value = Some(value.into_owned());
        let slot = match name.as_ref() {
            "author" => &mut list.author,
            "category" => &mut list.category,
            "tag" => &mut list.tag,
            "status" => &mut list.status,
            "q" => &mut list.q,
            "sort" => &mut list.sort,
            "limit" => &mut list.limit,
            "cursor" => &mut list.cursor,
            _ => continue,
        };
        if slot.is_none() {
            *slot = value;
        }
    }
    page.limit = list.limit.clone();
    page.cursor = list.cursor.clone();
    (list, page)
}

/// The order asked for (`None` means the default for the request).
pub fn sort(raw: Option<&str>) -> Result<Option<Sort>, ApiError> {
    Ok(Some(match raw {
        None => return Ok(None),
        Some("-date") => Sort::NewestFirst,
        Some("date") => Sort::OldestFirst,
        Some("title") => Sort::TitleAsc,
        Some("-title") => Sort::TitleDesc,
        Some(_) => {
            return Err(ApiError::field(
                "sort",
                "must be one of date, -date, title, -title",
            ));
        }
    }))
}

/// What a cursor holds: the order it was made for and the last item's sort key.
#[derive(Debug, Serialize, Deserialize, PartialEq, Eq)]
struct CursorData {
    /// The order's name.
    s: String,
    /// Creation time (date orders and comments).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    c: Option<i64>,
    /// Title (title orders).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    t: Option<String>,
    /// Id of the last item, or the offset (relevance).
    i: i64,
}

fn sort_name(sort: Sort) -> &'static str {
    match sort {
        Sort::NewestFirst => "-date",
        Sort::OldestFirst => "date",
        Sort::TitleAsc => "title",
        Sort::TitleDesc => "-title",
        Sort::Relevance => "rank",
    }
}

fn encode(data: &CursorData) -> String {
    let json = serde_json::to_vec(data).unwrap_or_default();
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(json)
}

/// Checks a page cursor as the list would read it: 400 unless this list produced it
/// (the fuzz targets' entry point).
pub fn check_cursor(raw: &str) -> Result<(), ApiError> {
    decode(raw).map(drop)
}

fn decode(raw: &str) -> Result<CursorData, ApiError> {
    let invalid = || ApiError::field("cursor", "is not a cursor this list produced");
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(raw.trim())
        .map_err(|_| invalid())?;
    serde_json::from_slice(&bytes).map_err(|_| invalid())
}

/// The cursor after `(created_at, title, id)` of a page's last item, in `sort`'s order.
/// `offset` is where the next relevance page starts.
pub fn post_cursor(sort: Sort, created_at: i64, title: &str, id: i64, offset: i64) -> String {
    let name = sort_name(sort).to_owned();
    encode(&match sort {
        Sort::NewestFirst | Sort::OldestFirst => CursorData {
            s: name,
            c: Some(created_at),
            t: None,
            i: id,
        },
        Sort::TitleAsc | Sort::TitleDesc => CursorData {
            s: name,
            c: None,
            t: Some(title.to_owned()),
            i: id,
        },
        Sort::Relevance => CursorData {
            s: name,
            c: None,
            t: None,
            i: offset,
        },
    })
}

/// Where a post page starts, checking that the cursor was made for this order (400 if not).
pub fn post_after(raw: Option<&str>, sort: Sort) -> Result<After, ApiError> {
    let Some(raw) = raw else {
        return Ok(After::Start);
    };
    let data = decode(raw)?;
    let mismatch = || ApiError::field("cursor", "was made for another sort order");
    if data.s != sort_name(sort) {
        return Err(mismatch());
    }
    match (sort, data.c, data.t) {
        (Sort::NewestFirst | Sort::OldestFirst, Some(created_at), None) => Ok(After::Date {
            created_at,
            id: data.i,
        }),
        (Sort::TitleAsc | Sort::TitleDesc, None, Some(title)) => {
            Ok(After::Title { title, id: data.i })
        }
        (Sort::Relevance, None, None) if data.i >= 0 => Ok(After::Offset(data.i)),
        _ => Err(mismatch()),
    }
}

/// The cursor after a comment.
pub fn comment_cursor(created_at: i64, id: i64) -> String {
    encode(&CursorData {
        s: "comments".into(),
        c: Some(created_at),
        t: None,
        i: id,
    })
}

/// Where a comment page starts.
pub fn comment_after(raw: Option<&str>) -> Result<Option<(i64, i64)>, ApiError> {
    let Some(raw) = raw else {
        return Ok(None);
    };
    match decode(raw)? {
        CursorData {
            s,
            c: Some(created_at),
            t: None,
            i,
        } if s == "comments" => Ok(Some((created_at, i))),
        _ => Err(ApiError::field(
            "cursor",
            "is not a cursor this list produced",
        )),
    }
}

/// Adds `Link: <path?…&cursor=next>; rel="next"`, keeping the request's other parameters.
pub fn link_next(response: &mut Response, path: &str, raw_query: Option<&str>, next: &str) {
    let mut query = url::form_urlencoded::Serializer::new(String::new());
    for (name, value) in url::form_urlencoded::parse(raw_query.unwrap_or_default().as_bytes()) {
        if name != "cursor" {
            query.append_pair(&name, &value);
        }
    }
    query.append_pair("cursor", next);
    let link = format!("<{path}?{}>; rel=\"next\"", query.finish());
    if let Ok(value) = HeaderValue::from_str(&link) {
        response.headers_mut().insert(header::LINK, value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_belong_to_their_order() {
        let cursor = post_cursor(Sort::TitleAsc, 5, "Hello", 9, 0);
        assert_eq!(
            post_after(Some(&cursor), Sort::TitleAsc).ok(),
            Some(After::Title {
                title: "Hello".into(),
                id: 9
            })
        );
        assert!(post_after(Some(&cursor), Sort::NewestFirst).is_err());
        assert!(post_after(Some("not a cursor"), Sort::NewestFirst).is_err());
        assert!(comment_after(Some(&cursor)).is_err());
    }
}
