//! `POST /links/bulk`: up to 1,000 links in one request, as a JSON array of `POST /shorten`
//! bodies or as a CSV file with a header row. Each link succeeds or fails on its own: the
//! answer is 207 with one result per link (the link, or the problem with it), in order.
//! The whole request is refused only when it cannot be read at all (415, 413, 400).

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use basis_auth::role::Scope;
use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;

use super::LinkView;
use super::create::CreateLink;
use super::csv;
use super::link::NewLink;
use super::service;
use crate::error::{ApiError, ApiResult, FieldError, Problem};
use crate::identity::caller::Caller;
use crate::state::AppState;

/// Most links in one request.
pub const MAX_ITEMS: usize = 1000;
/// The body limit of this route: 1,000 links of the longest URLs with their options.
pub const BODY_LIMIT: usize = 4 * 1024 * 1024;

/// The JSON body of `POST /links/bulk`, for the document: 1 to [`MAX_ITEMS`] link bodies.
#[derive(Debug)]
pub struct BulkLinks;

impl utoipa::PartialSchema for BulkLinks {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        utoipa::openapi::schema::ArrayBuilder::new()
            .items(utoipa::openapi::Ref::from_schema_name("CreateLink"))
            .min_items(Some(1))
            .max_items(Some(MAX_ITEMS))
            .into()
    }
}

impl ToSchema for BulkLinks {}

/// The result for one link of the request.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct BulkItem {
    /// Its position in the request, from 0 (data rows only, for CSV).
    pub index: usize,
    /// For CSV: the line of the file it was read from.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub line: Option<usize>,
    /// 201 when it was created; else the status a `POST /shorten` would have had.
    pub status: u16,
    /// The link, when created.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub link: Option<LinkView>,
    /// Why it was not created.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub problem: Option<Problem>,
}

/// The answer of `POST /links/bulk`.
#[derive(Debug, Serialize, ToSchema)]
pub struct BulkResult {
    /// How many links were created.
    pub created: usize,
    /// How many were not.
    pub failed: usize,
    /// One result per link, in the request's order.
    pub items: Vec<BulkItem>,
}

/// One link as read from the request: its body, or why it could not be read.
type Read = (Option<usize>, Result<CreateLink, Problem>);

/// Creates up to 1,000 links at once.
#[utoipa::path(
    post, path = "/links/bulk", tag = "links",
    request_body(
        description = "A JSON array of `POST /shorten` bodies (without `reuse`), or a CSV file whose header names the columns: `longUrl` (required), `customAlias`, `tags` (separated by `|`), `expiresAt`, `maxClicks`, `redirectType`, `password`, `title`, `domain` (one this server serves; default: the default domain)",
        content(
            (BulkLinks = "application/json"),
            (String = "text/csv"),
        )
    ),
    responses(
        (status = 207, description = "One result per link: created (201) or refused with its problem", body = BulkResult),
        (status = 400, description = "Not a JSON array or CSV file, no link, more than 1,000 links, or an unknown CSV column", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Not signed in", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "The API key lacks links:write", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "Body over 4 MiB", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "Neither JSON nor CSV", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<Response> {
    let owner_id = caller.require()?.user_id.clone();
    caller.require_scope(Scope::LinksWrite)?;
    let media = crate::http::extract::media_type(&headers);
    let body = body.map_err(|rejection| {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::PayloadTooLarge
        } else {
            ApiError::BadRequest(rejection.body_text())
        }
    })?;
    let read = match media.as_deref() {
        Some("application/json") => from_json(&body)?,
        Some("text/csv") => from_csv(&body)?,
        _ => {
            return Err(ApiError::UnsupportedMediaType(
                "send a JSON array (application/json) or a CSV file (text/csv)".into(),
            ));
        }
    };
    if read.is_empty() {
        return Err(ApiError::BadRequest("the request holds no link".into()));
    }
    if read.len() > MAX_ITEMS {
        return Err(ApiError::BadRequest(format!(
            "at most {MAX_ITEMS} links per request, not {}",
            read.len()
        )));
    }
    Ok(run(&state, &owner_id, read).await?.into_response())
}

/// Creates what parsed and answers for every link.
async fn run(state: &AppState, owner_id: &str, read: Vec<Read>) -> ApiResult<impl IntoResponse> {
    let mut items = Vec::with_capacity(read.len());
    let mut links: Vec<NewLink> = Vec::new();
    for (index, (line, body)) in read.into_iter().enumerate() {
        let parsed = body.and_then(|body| {
            if body.reuse {
                return Err(invalid(vec![FieldError::new(
                    "reuse",
                    "is not available in bulk creation",
                )]));
            }
            super::create::parse(state, body).map_err(|err| match err {
                ApiError::UnprocessableFields(errors) => Problem {
                    errors,
                    ..Problem::new(StatusCode::UNPROCESSABLE_ENTITY)
                        .detail("the link's rules cannot work, or its domain is not served here")
                },
                ApiError::Invalid(errors) => invalid(errors),
                other => Problem::new(StatusCode::BAD_REQUEST).detail(other.to_string()),
            })
        });
        let problem = match parsed {
            Ok(link) => {
                links.push(link);
                None
            }
            Err(problem) => Some(problem),
        };
        items.push(BulkItem {
            index,
            line,
            status: problem.as_ref().map_or(201, |p| p.status),
            link: None,
            problem,
        });
    }
    let mut answers = service::create_many(state, owner_id, links)
        .await?
        .into_iter();
    for item in items.iter_mut().filter(|item| item.problem.is_none()) {
        match answers.next().expect("one answer per parsed link") {
            Ok(made) => {
                let view = LinkView::new(state, &made.row, 0).with_extras(made.tags, made.title);
                item.link = Some(view);
            }
            Err(ApiError::Conflict(detail)) => {
                item.status = 409;
                item.problem = Some(Problem::new(StatusCode::CONFLICT).detail(detail));
            }
            Err(other) => return Err(other),
        }
    }
    let created = items.iter().filter(|i| i.link.is_some()).count();
    let result = BulkResult {
        created,
        failed: items.len() - created,
        items,
    };
    Ok((StatusCode::MULTI_STATUS, Json(result)))
}

/// A 400 problem listing field errors.
fn invalid(errors: Vec<FieldError>) -> Problem {
    Problem {
        errors,
        ..Problem::new(StatusCode::BAD_REQUEST).detail("the link has invalid fields")
    }
}

/// The links of a JSON array; an element that is not a link body fails alone.
fn from_json(body: &[u8]) -> ApiResult<Vec<Read>> {
    let value: Value = serde_json::from_slice(body)
        .map_err(|err| ApiError::BadRequest(format!("malformed JSON: {err}")))?;
    let Value::Array(elements) = value else {
        return Err(ApiError::BadRequest(
            "the body must be a JSON array of links".into(),
        ));
    };
    Ok(elements
        .into_iter()
        .map(|element| {
            let body = if element.is_object() {
                crate::http::extract::from_value::<CreateLink>(element)
                    .map_err(|e| invalid(vec![e]))
            } else {
                Err(invalid(vec![FieldError::new(
                    "",
                    "each link must be a JSON object",
                )]))
            };
            (None, body)
        })
        .collect())
}

/// The columns a CSV upload may have: the members of a `POST /shorten` body, matched in
/// any case, with `_` and spaces ignored.
const COLUMNS: &[&str] = &[
    "longUrl",
    "customAlias",
    "tags",
    "expiresAt",
    "maxClicks",
    "redirectType",
    "password",
    "title",
    "domain",
];

/// The links of a CSV file with a header row; a row that does not parse fails alone.
fn from_csv(body: &[u8]) -> ApiResult<Vec<Read>> {
    let text = std::str::from_utf8(body)
        .map_err(|_| ApiError::BadRequest("the CSV file is not UTF-8".into()))?;
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let records = csv::records(text).map_err(ApiError::BadRequest)?;
    let mut records = records.into_iter();
    let Some((_, header)) = records.next() else {
        return Ok(Vec::new());
    };
    let mut columns = Vec::with_capacity(header.len());
    for name in &header {
        let key = name.trim().to_ascii_lowercase().replace(['_', ' '], "");
        let Some(known) = COLUMNS.iter().position(|c| c.eq_ignore_ascii_case(&key)) else {
            return Err(ApiError::BadRequest(format!(
                "line 1: unknown column '{name}' (known: {})",
                COLUMNS.join(", ")
            )));
        };
        columns.push(known);
    }
    if !columns.contains(&0) {
        return Err(ApiError::BadRequest(
            "line 1: the longUrl column is missing".into(),
        ));
    }
    Ok(records
        .map(|(line, fields)| (Some(line), csv_link(&columns, &header, fields)))
        .collect())
}

/// One CSV row as a link body.
fn csv_link(
    columns: &[usize],
    header: &[String],
    fields: Vec<String>,
) -> Result<CreateLink, Problem> {
    if fields.len() != columns.len() {
        return Err(invalid(vec![FieldError::new(
            "",
            format!(
                "has {} fields where the header has {}",
                fields.len(),
                header.len()
            ),
        )]));
    }
    let mut object = serde_json::Map::new();
    let mut errors = Vec::new();
    for (column, field) in columns.iter().zip(fields) {
        let field = field.trim();
        if field.is_empty() {
            continue;
        }
        let name = COLUMNS[*column];
        let value = match *column {
            2 => Value::from(
                field
                    .split('|')
                    .map(str::trim)
                    .filter(|t| !t.is_empty())
                    .collect::<Vec<_>>(),
            ),
            4 | 5 => match field.parse::<i64>() {
                Ok(n) => Value::from(n),
                Err(_) => {
                    errors.push(FieldError::new(name, "must be a whole number"));
                    continue;
                }
            },
            _ => Value::from(field),
        };
        object.insert(name.to_owned(), value);
    }
    if !errors.is_empty() {
        return Err(invalid(errors));
    }
    crate::http::extract::from_value::<CreateLink>(Value::Object(object))
        .map_err(|e| invalid(vec![e]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_csv_header_names_known_columns_in_any_case_and_order() {
        let read = from_csv(
            b"Tags,long_url,MaxClicks\nA|b,https://example.com/,3\n,https://x.example/,many\n",
        )
        .unwrap();
        assert_eq!(read.len(), 2);
        assert_eq!(read[0].0, Some(2));
        let first = read[0].1.as_ref().unwrap();
        assert_eq!(first.tags, ["A", "b"]);
        assert_eq!(first.max_clicks, Some(3));
        let refused = read[1].1.as_ref().unwrap_err();
        assert_eq!(refused.errors[0].field, "maxClicks");
        let on_domain = from_csv(b"longUrl,Domain\nhttps://example.com/,go.example\n").unwrap();
        assert_eq!(
            on_domain[0].1.as_ref().unwrap().domain.as_deref(),
            Some("go.example")
        );
        assert!(from_csv(b"url,shape\n").is_err());
        assert!(from_csv(b"customAlias\nabc\n").is_err());
    }
}
