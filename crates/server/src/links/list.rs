//! `GET /links`: the caller's links (an admin may name another owner), searched in URL and
//! alias, filtered by tag and domain, ordered by creation or clicks, in cursor pages.

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::{HeaderValue, Uri, header};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use basis_auth::role::Scope;
use basis_store::links::{self, LinkKey, LinkQuery, LinkSort};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::LinkView;
use super::code::ShortCode;
use super::tags::Tag;
use crate::error::{ApiError, ApiResult, Problem};
use crate::identity::caller::Caller;
use crate::state::AppState;

/// Longest search text, in bytes.
const MAX_SEARCH: usize = 200;

/// The query of `GET /links`.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct LinkListParams {
    /// Whose links (admins only; default: yours).
    pub owner: Option<String>,
    /// Only links whose long URL or alias contains this text (any case), or whose generated
    /// code it is.
    pub q: Option<String>,
    /// Only links with this tag.
    pub tag: Option<String>,
    /// Only links on this domain (one of the server's).
    #[param(value_type = Option<crate::http::schema::HostName>)]
    pub domain: Option<String>,
    /// `-created` (newest first, the default), `created`, `-clicks` (most clicked first) or
    /// `clicks`. Clicks are those stored, which trail the redirects by the flush interval.
    #[param(pattern = "^-?(created|clicks)$")]
    pub sort: Option<String>,
    /// Page size, 1–100 (default 20).
    #[param(value_type = Option<i64>, minimum = 1, maximum = 100)]
    pub limit: Option<String>,
    /// The `nextCursor` of the previous page.
    #[param(value_type = Option<crate::http::schema::PageCursor>)]
    pub cursor: Option<String>,
}

/// A page of links.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct LinkPage {
    /// The links.
    pub items: Vec<LinkView>,
    /// Pass as `cursor` for the next page; `null` at the end.
    pub next_cursor: Option<String>,
}

/// What a cursor holds: the order's name, the last link's sort key and id.
#[derive(Debug, Serialize, Deserialize, PartialEq, Eq)]
struct Cursor {
    s: String,
    k: i64,
    i: i64,
}

fn sort_of(raw: Option<&str>) -> ApiResult<(LinkSort, &'static str)> {
    Ok(match raw {
        None | Some("-created") => (LinkSort::NewestFirst, "-created"),
        Some("created") => (LinkSort::OldestFirst, "created"),
        Some("-clicks") => (LinkSort::MostClicked, "-clicks"),
        Some("clicks") => (LinkSort::LeastClicked, "clicks"),
        Some(_) => {
            return Err(ApiError::field(
                "sort",
                "must be one of -created, created, -clicks, clicks",
            ));
        }
    })
}

fn encode(cursor: &Cursor) -> String {
    let json = serde_json::to_vec(cursor).unwrap_or_default();
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(json)
}

/// Where a page starts; a cursor of another order or not ours is a 400.
pub fn after_of(raw: Option<&str>, sort_name: &str) -> ApiResult<Option<(i64, i64)>> {
    let Some(raw) = raw else { return Ok(None) };
    let invalid = || ApiError::field("cursor", "is not a cursor of this list and order");
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(raw.trim())
        .map_err(|_| invalid())?;
    let cursor: Cursor = serde_json::from_slice(&bytes).map_err(|_| invalid())?;
    if cursor.s != sort_name {
        return Err(invalid());
    }
    Ok(Some((cursor.k, cursor.i)))
}

/// Lists your links (admins: anyone's with `owner`).
#[utoipa::path(
    get, path = "/links", tag = "links", params(LinkListParams),
    responses(
        (status = 200, description = "A page of links", body = LinkPage, headers(("Link" = String, description = "rel=\"next\" when there is a next page"))),
        (status = 400, description = "A bad parameter or cursor", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Not signed in", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Another owner's links, and not an admin; or the API key lacks links:read", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    uri: Uri,
    params: Result<Query<LinkListParams>, QueryRejection>,
) -> ApiResult<Response> {
    let principal = caller.require()?;
    caller.require_scope(Scope::LinksRead)?;
    let Query(params) = params.map_err(|e| ApiError::BadRequest(e.body_text()))?;
    let owner_id = match &params.owner {
        Some(owner) if *owner != principal.user_id => {
            caller.act_for(owner).map(|_| owner.clone())?
        }
        _ => principal.user_id.clone(),
    };
    let page = page_of(&state, owner_id, &params).await?;
    let link = page.next_cursor.as_ref().and_then(|next| {
        let mut query = url::form_urlencoded::Serializer::new(String::new());
        for (name, value) in url::form_urlencoded::parse(uri.query().unwrap_or_default().as_bytes())
        {
            if name != "cursor" {
                query.append_pair(&name, &value);
            }
        }
        query.append_pair("cursor", next);
        HeaderValue::from_str(&format!(
            "<{}?{}>; rel=\"next\"",
            uri.path(),
            query.finish()
        ))
        .ok()
    });
    let mut response = Json(page).into_response();
    if let Some(link) = link {
        response.headers_mut().insert(header::LINK, link);
    }
    Ok(response)
}

/// A page of `owner_id`'s links as `params` ask (search, tag, domain, order, cursor; the
/// `owner` parameter is the caller's to check): for `GET /links` and the "My links" page.
pub async fn page_of(
    state: &AppState,
    owner_id: String,
    params: &LinkListParams,
) -> ApiResult<LinkPage> {
    let (sort, sort_name) = sort_of(params.sort.as_deref())?;
    let limit = crate::http::rest::limit_param(params.limit.as_deref())?;
    let after = after_of(params.cursor.as_deref(), sort_name)?;
    let search = params
        .q
        .as_deref()
        .map(str::trim)
        .filter(|q| !q.is_empty())
        .map(str::to_owned);
    if search.as_ref().is_some_and(|q| q.len() > MAX_SEARCH) {
        return Err(ApiError::field(
            "q",
            format!("must be at most {MAX_SEARCH} bytes"),
        ));
    }
    let search_id = search.as_deref().and_then(|q| {
        let code = ShortCode::parse(q)?;
        match state.codes.key_of(code.as_str()) {
            LinkKey::Id(id) | LinkKey::IdOrAlias(id, _) => Some(id),
            LinkKey::Alias(_) => None,
        }
    });
    let tag = params
        .tag
        .as_deref()
        .map(|t| Tag::parse(t).map_err(|e| ApiError::field("tag", e)))
        .transpose()?;
    let domain = params
        .domain
        .as_deref()
        .map(|name| {
            state
                .domains
                .parse(name)
                .map_err(|why| ApiError::field("domain", why))
        })
        .transpose()?;
    let query = LinkQuery {
        owner_id,
        search,
        search_id,
        tag: tag.map(Tag::into_string),
        domain,
        sort,
        after,
        limit: limit + 1,
    };
    let mut rows = links::list(&state.store, &query).await?;
    let more = rows.len() as i64 > limit;
    rows.truncate(limit as usize);
    let next_cursor = rows.last().filter(|_| more).map(|last| {
        let key = match sort {
            LinkSort::NewestFirst | LinkSort::OldestFirst => last.row.created_at,
            LinkSort::MostClicked | LinkSort::LeastClicked => last.clicks,
        };
        encode(&Cursor {
            s: sort_name.to_owned(),
            k: key,
            i: last.row.id,
        })
    });
    let ids: Vec<i64> = rows.iter().map(|r| r.row.id).collect();
    let mut tags = links::tags_of(&state.store, &ids)
        .await?
        .into_iter()
        .peekable();
    let mut titles: std::collections::HashMap<i64, String> = links::titles_of(&state.store, &ids)
        .await?
        .into_iter()
        .collect();
    let items = rows
        .iter()
        .map(|link| {
            let clicks = link.clicks + state.clicks.unflushed_humans(link.row.id);
            let mut own = Vec::new();
            // `tags_of` is ordered by link id; pick this link's out of the whole list.
            while let Some((_, tag)) = tags.next_if(|(id, _)| *id == link.row.id) {
                own.push(tag);
            }
            let title = titles.remove(&link.row.id);
            LinkView::new(state, &link.row, clicks).with_extras(own, title)
        })
        .collect::<Vec<_>>();
    Ok(LinkPage { items, next_cursor })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cursor_belongs_to_its_order() {
        let cursor = encode(&Cursor {
            s: "-clicks".into(),
            k: 5,
            i: 9,
        });
        assert_eq!(after_of(Some(&cursor), "-clicks").ok(), Some(Some((5, 9))));
        assert!(after_of(Some(&cursor), "-created").is_err());
        assert!(after_of(Some("garbage!"), "-created").is_err());
        assert_eq!(after_of(None, "created").ok(), Some(None));
    }
}
