//! Tags on links: the [`Tag`] type, the tag list of a create or patch ([`parse_tags`]),
//! and `GET /links/tags` (each tag with its links and clicks), `PATCH|DELETE
//! /links/tags/{tag}` (rename, delete). A tag is always its owner's: the routes act on the
//! caller's links only.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use basis_auth::role::Scope;
use basis_store::links;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::error::{ApiError, ApiResult, Problem};
use crate::http::extract::ApiJson;
use crate::identity::caller::Caller;
use crate::state::AppState;

/// Most tags on one link.
pub const MAX_TAGS: usize = 20;
/// Longest tag, in characters.
pub const MAX_TAG_CHARS: usize = 50;

/// A tag: 1–50 characters of letters, digits, ` `, `-`, `_`, `.` and `:`, stored trimmed and
/// lower-case, so `Launch` and `launch ` are one tag.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Tag(String);

impl Tag {
    /// Parses a tag, explaining a refusal.
    pub fn parse(raw: &str) -> Result<Self, String> {
        let tag = raw.trim().to_lowercase();
        let chars = tag.chars().count();
        if chars == 0 || chars > MAX_TAG_CHARS {
            return Err(format!("a tag is 1 to {MAX_TAG_CHARS} characters"));
        }
        if !tag
            .chars()
            .all(|c| c.is_alphanumeric() || matches!(c, ' ' | '-' | '_' | '.' | ':'))
        {
            return Err(format!(
                "'{raw}' may contain only letters, digits, spaces and - _ . :"
            ));
        }
        Ok(Self(tag))
    }

    /// The tag.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The tag.
    pub fn into_string(self) -> String {
        self.0
    }
}

/// The tags of a create or patch: at most [`MAX_TAGS`] as sent (the document's `maxItems`),
/// each parsed, duplicates merged.
pub fn parse_tags(raw: &[String]) -> Result<Vec<Tag>, String> {
    if raw.len() > MAX_TAGS {
        return Err(format!("at most {MAX_TAGS} tags"));
    }
    let mut tags = raw
        .iter()
        .map(|t| Tag::parse(t))
        .collect::<Result<Vec<_>, _>>()?;
    tags.sort();
    tags.dedup();
    Ok(tags)
}

/// A tag with what it covers.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TagView {
    /// The tag.
    pub tag: String,
    /// How many of your links carry it.
    pub links: i64,
    /// The human clicks of those links (as stored: clicks reach the database within the
    /// flush interval).
    pub clicks: i64,
}

/// The answer of `GET /links/tags`.
#[derive(Debug, Serialize, ToSchema)]
pub struct TagList {
    /// Every tag on your links, by name.
    pub items: Vec<TagView>,
}

/// The body of `PATCH /links/tags/{tag}`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RenameTag {
    /// The new name (the rules of a tag); links that had both keep one.
    #[schema(value_type = crate::http::schema::LinkTag)]
    pub name: String,
}

/// The answer of a rename or delete.
#[derive(Debug, Serialize, ToSchema)]
pub struct TagChange {
    /// How many of your links carried the tag.
    pub links: u64,
}

/// Lists the tags on your links with their statistics.
#[utoipa::path(
    get, path = "/links/tags", tag = "links",
    responses(
        (status = 200, description = "Your tags", body = TagList),
        (status = 401, description = "Not signed in", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "The API key lacks links:read", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn list(State(state): State<AppState>, caller: Caller) -> ApiResult<Json<TagList>> {
    let owner = caller.require()?.user_id.clone();
    caller.require_scope(Scope::LinksRead)?;
    let items = links::tag_stats(&state.store, &owner)
        .await?
        .into_iter()
        .map(|s| TagView {
            tag: s.tag,
            links: s.links,
            clicks: s.clicks,
        })
        .collect();
    Ok(Json(TagList { items }))
}

/// The caller's id once signed in with the links:write scope, and the tag in the path.
fn tag_of_caller(caller: &Caller, raw: &str) -> ApiResult<(String, Tag)> {
    let owner = caller.require()?.user_id.clone();
    caller.require_scope(Scope::LinksWrite)?;
    // A tag that cannot exist is on none of the caller's links.
    let tag = Tag::parse(raw).map_err(|_| ApiError::NotFound)?;
    Ok((owner, tag))
}

/// Renames a tag on all your links.
#[utoipa::path(
    patch, path = "/links/tags/{tag}", tag = "links",
    params(("tag" = String, Path, description = "The tag")),
    request_body = RenameTag,
    responses(
        (status = 200, description = "Renamed", body = TagChange),
        (status = 400, description = "Invalid name or malformed body", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Not signed in", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "The API key lacks links:write", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "None of your links has this tag", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "Body too large", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "Not JSON", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn rename(
    State(state): State<AppState>,
    caller: Caller,
    Path(raw): Path<String>,
    body: Result<ApiJson<RenameTag>, ApiError>,
) -> ApiResult<Json<TagChange>> {
    let (owner, from) = tag_of_caller(&caller, &raw)?;
    let ApiJson(body) = body?;
    let to = Tag::parse(&body.name).map_err(|e| ApiError::field("name", e))?;
    let links = links::rename_tag(&state.store, &owner, from.as_str(), to.as_str()).await?;
    if links == 0 {
        return Err(ApiError::NotFound);
    }
    Ok(Json(TagChange { links }))
}

/// Removes a tag from all your links (the links stay).
#[utoipa::path(
    delete, path = "/links/tags/{tag}", tag = "links",
    params(("tag" = String, Path, description = "The tag")),
    responses(
        (status = 200, description = "Removed", body = TagChange),
        (status = 401, description = "Not signed in", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "The API key lacks links:write", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "None of your links has this tag", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn remove(
    State(state): State<AppState>,
    caller: Caller,
    Path(raw): Path<String>,
) -> ApiResult<(StatusCode, Json<TagChange>)> {
    let (owner, tag) = tag_of_caller(&caller, &raw)?;
    let links = links::delete_tag(&state.store, &owner, tag.as_str()).await?;
    if links == 0 {
        return Err(ApiError::NotFound);
    }
    Ok((StatusCode::OK, Json(TagChange { links })))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_are_trimmed_lower_case_and_of_a_small_alphabet() {
        assert_eq!(
            Tag::parse("  Launch 2026 ").unwrap().as_str(),
            "launch 2026"
        );
        assert_eq!(Tag::parse("Été").unwrap().as_str(), "été");
        for bad in ["", "   ", "a/b", "<b>", &"x".repeat(51)] {
            assert!(Tag::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_tag_list_merges_duplicates_and_has_at_most_twenty() {
        let tags = parse_tags(&["b".into(), "A".into(), "a ".into()]).unwrap();
        assert_eq!(tags, vec![Tag("a".into()), Tag("b".into())]);
        let many: Vec<String> = (0..21).map(|i| format!("t{i}")).collect();
        assert!(parse_tags(&many).is_err());
        assert!(parse_tags(&many[..20]).is_ok());
        // The limit is the document's `maxItems`: it counts the list as sent, duplicates too.
        let repeated = vec!["same".to_owned(); 21];
        assert_eq!(parse_tags(&repeated), Err("at most 20 tags".to_owned()));
        assert_eq!(parse_tags(&repeated[..20]).unwrap().len(), 1);
    }
}
