//! HTTP semantics shared by the blog's resources: content negotiation (406), media types of
//! bodies (415), strong ETags and conditional requests (304, 412), cache headers, JSON Merge
//! Patch (RFC 7396) and `OPTIONS`.

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};
use utoipa::ToSchema;

use crate::clock::to_datetime;
use crate::error::{ApiError, ApiResult, FieldError};

/// The media type of JSON Merge Patch bodies.
pub const MERGE_PATCH: &str = "application/merge-patch+json";

/// How a representation may be cached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Caching {
    /// The same for everyone: shared caches may keep it briefly.
    Public,
    /// Personal or unpublished: no cache may store it.
    Private,
}

impl Caching {
    fn header(self) -> HeaderValue {
        match self {
            Caching::Public => HeaderValue::from_static("public, max-age=60"),
            Caching::Private => HeaderValue::from_static("private, no-store"),
        }
    }
}

/// 406 unless the client accepts JSON (no `Accept` header accepts anything).
pub fn negotiate(headers: &HeaderMap) -> Result<(), ApiError> {
    let mut ranges = headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|r| !r.is_empty())
        .peekable();
    if ranges.peek().is_none() {
        return Ok(());
    }
    let accepted = ranges.any(|range| {
        let mut parts = range.split(';');
        let media = parts.next().unwrap_or_default().trim().to_ascii_lowercase();
        let refused = parts.any(|p| {
            let p = p.trim();
            p.strip_prefix("q=")
                .and_then(|q| q.trim().parse::<f32>().ok())
                .is_some_and(|q| q <= 0.0)
        });
        !refused && matches!(media.as_str(), "*/*" | "application/*" | "application/json")
    });
    if accepted {
        Ok(())
    } else {
        Err(ApiError::NotAcceptable(
            "this resource is only available as application/json".into(),
        ))
    }
}

/// The body as bytes, after checking its media type is `expected` (415 otherwise).
pub fn body_of(
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
    expected: &str,
) -> Result<Bytes, ApiError> {
    if crate::http::extract::media_type(headers).as_deref() != Some(expected) {
        return Err(ApiError::UnsupportedMediaType(format!(
            "the body must be {expected}"
        )));
    }
    body.map_err(|rejection| {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::PayloadTooLarge
        } else {
            ApiError::BadRequest(rejection.body_text())
        }
    })
}

/// Parses JSON text: malformed JSON is 400.
pub fn parse_json(bytes: &[u8]) -> Result<Value, ApiError> {
    serde_json::from_slice(bytes)
        .map_err(|err| ApiError::BadRequest(format!("malformed JSON: {err}")))
}

/// A whole-resource JSON body (`application/json`) read as `T`: 415, 413, 400 for
/// malformed JSON and 422 for missing or invalid fields, as [`body_of`], [`parse_json`] and
/// [`from_document`] decide.
pub fn json_document<T: DeserializeOwned>(
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<T, ApiError> {
    from_document(parse_json(&body_of(headers, body, "application/json")?)?)
}

/// A JSON Merge Patch body (`application/merge-patch+json`), which must be an object; a
/// patch of anything else is 400 naming the `resource`.
pub fn merge_patch_body(
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
    resource: &str,
) -> Result<Value, ApiError> {
    let patch = parse_json(&body_of(headers, body, MERGE_PATCH)?)?;
    if !patch.is_object() {
        return Err(ApiError::BadRequest(format!(
            "a merge patch of a {resource} must be a JSON object"
        )));
    }
    Ok(patch)
}

/// Reads a well-formed JSON document as `T`: a missing field, an unknown one or a value of
/// the wrong type is 422, naming the field where serde can.
pub fn from_document<T: DeserializeOwned>(document: Value) -> Result<T, ApiError> {
    if !document.is_object() {
        return Err(ApiError::UnprocessableFields(vec![FieldError::new(
            "",
            "the body must be a JSON object",
        )]));
    }
    crate::http::extract::from_value(document)
        .map_err(|error| ApiError::UnprocessableFields(vec![error]))
}

/// Applies a JSON Merge Patch (RFC 7396) to `target`: members set to `null` are removed,
/// objects merge recursively, anything else replaces.
pub fn merge_patch(target: &mut Value, patch: &Value) {
    let Value::Object(patch) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = Value::Object(Default::default());
    }
    if let Value::Object(target) = target {
        for (name, value) in patch {
            if value.is_null() {
                target.remove(name);
            } else {
                merge_patch(target.entry(name.clone()).or_insert(Value::Null), value);
            }
        }
    }
}

/// The strong entity tag of a representation: a digest of its exact bytes.
pub fn etag_of(bytes: &[u8]) -> String {
    let digest = Sha256::digest(bytes);
    format!(
        "\"{}\"",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&digest[..18])
    )
}

/// The entity tags listed in a conditional header (`*` is returned as is).
fn listed_tags(headers: &HeaderMap, name: header::HeaderName) -> Option<Vec<String>> {
    let values: Vec<&str> = headers
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect();
    if values.is_empty() {
        return None;
    }
    Some(
        values
            .iter()
            .filter_map(|v| match v.trim_matches([' ', '\t']) {
                "*" => Some(vec!["*"]),
                list => entity_tags(list),
            })
            .flatten()
            .map(str::to_owned)
            .collect(),
    )
}

/// The entity tags of a comma-separated list (RFC 9110 §8.8.3: `"…"` or `W/"…"` around
/// visible ASCII other than `"`, so a tag may hold a comma), each as written; `None` when
/// the list is malformed or empty.
fn entity_tags(list: &str) -> Option<Vec<&str>> {
    let bytes = list.as_bytes();
    let mut tags = Vec::new();
    let mut at = 0;
    loop {
        let start = at;
        if bytes[at..].starts_with(b"W/") {
            at += 2;
        }
        if bytes.get(at) != Some(&b'"') {
            return None;
        }
        at += 1;
        while bytes
            .get(at)
            .is_some_and(|&b| b == b'!' || (b'#'..=b'~').contains(&b))
        {
            at += 1;
        }
        if bytes.get(at) != Some(&b'"') {
            return None;
        }
        at += 1;
        tags.push(&list[start..at]);
        while matches!(bytes.get(at), Some(b' ' | b'\t')) {
            at += 1;
        }
        match bytes.get(at) {
            None => return Some(tags),
            Some(b',') => at += 1,
            Some(_) => return None,
        }
        while matches!(bytes.get(at), Some(b' ' | b'\t')) {
            at += 1;
        }
    }
}

/// Whether an `If-Match` value is well formed (`http::schema::IF_MATCH_PATTERN`): `*`
/// alone, or entity tags separated by commas.
pub fn is_if_match(value: &str) -> bool {
    value == "*" || entity_tags(value).is_some()
}

/// 400 naming `If-Match` when it is present but not `*` or a list of entity tags: a
/// malformed precondition is the client's mistake, not a resource that changed.
pub fn check_if_match_syntax(headers: &HeaderMap) -> Result<(), ApiError> {
    let values: Vec<_> = headers.get_all(header::IF_MATCH).iter().collect();
    if values.is_empty() {
        return Ok(());
    }
    let well_formed = values.iter().all(|value| {
        value
            .to_str()
            .is_ok_and(|text| is_if_match(text.trim_matches([' ', '\t'])))
    });
    if well_formed {
        Ok(())
    } else {
        Err(ApiError::field(
            "If-Match",
            "must be * or a list of entity tags such as \"xyz\"",
        ))
    }
}

/// Whether `If-None-Match` matches `etag` (weak comparison, RFC 9110 §13.1.2).
fn none_match_hits(headers: &HeaderMap, etag: &str) -> bool {
    listed_tags(headers, header::IF_NONE_MATCH).is_some_and(|tags| {
        tags.iter()
            .any(|t| t == "*" || t.strip_prefix("W/").unwrap_or(t) == etag)
    })
}

/// 400 if `If-Match` is malformed ([`check_if_match_syntax`]), else 412 unless it is absent
/// or lists `etag` (strong comparison) or `*`.
pub fn check_if_match(headers: &HeaderMap, etag: &str) -> Result<(), ApiError> {
    check_if_match_syntax(headers)?;
    match listed_tags(headers, header::IF_MATCH) {
        None => Ok(()),
        Some(tags) if tags.iter().any(|t| t == "*" || t == etag) => Ok(()),
        Some(_) => Err(ApiError::PreconditionFailed(
            "the resource changed since you read it; fetch it again and reapply your change".into(),
        )),
    }
}

/// Whether the request made a precondition on the current state (then a concurrent change
/// is a 412, not a retry).
pub fn has_if_match(headers: &HeaderMap) -> bool {
    headers.contains_key(header::IF_MATCH)
}

/// Unix milliseconds as an HTTP date.
pub fn http_date(ms: i64) -> String {
    to_datetime(ms)
        .format("%a, %d %b %Y %H:%M:%S GMT")
        .to_string()
}

/// A serialised JSON representation with its validators.
#[derive(Debug)]
pub struct Representation {
    /// The body.
    pub bytes: Vec<u8>,
    /// Its strong ETag.
    pub etag: String,
}

impl Representation {
    /// Serialises `value`.
    pub fn of<T: Serialize>(value: &T) -> Result<Self, ApiError> {
        let bytes = serde_json::to_vec(value).map_err(|e| ApiError::Internal(e.into()))?;
        let etag = etag_of(&bytes);
        Ok(Self { bytes, etag })
    }

    /// The response: `status` with the body, or 304 with no body when `If-None-Match`
    /// matches (only for reads). Validators and cache headers go on both.
    pub fn respond(
        self,
        request: &HeaderMap,
        status: StatusCode,
        caching: Caching,
        last_modified: Option<i64>,
    ) -> Response {
        let not_modified = status == StatusCode::OK && none_match_hits(request, &self.etag);
        let mut response = if not_modified {
            StatusCode::NOT_MODIFIED.into_response()
        } else {
            let mut response = (status, self.bytes).into_response();
            response.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            response
        };
        let headers = response.headers_mut();
        if let Ok(etag) = HeaderValue::from_str(&self.etag) {
            headers.insert(header::ETAG, etag);
        }
        if let Some(ms) = last_modified
            && let Ok(date) = HeaderValue::from_str(&http_date(ms))
        {
            headers.insert(header::LAST_MODIFIED, date);
        }
        headers.insert(header::CACHE_CONTROL, caching.header());
        // Drafts differ by caller, and the representation by negotiation.
        headers.insert(
            header::VARY,
            HeaderValue::from_static("Accept, Authorization, Cookie"),
        );
        response
    }
}

/// The answer to `OPTIONS`: 204 with `Allow` (and `Accept-Patch` where PATCH is allowed).
pub fn options(allow: &'static str) -> Response {
    let mut response = StatusCode::NO_CONTENT.into_response();
    let headers = response.headers_mut();
    headers.insert(header::ALLOW, HeaderValue::from_static(allow));
    if allow.contains("PATCH") {
        headers.insert("accept-patch", HeaderValue::from_static(MERGE_PATCH));
    }
    response
}

/// Parses a numeric resource id from a path segment; anything else names no resource (404).
pub fn parse_id(segment: &str) -> Result<i64, ApiError> {
    if segment.is_empty() || segment.len() > 18 || !segment.bytes().all(|b| b.is_ascii_digit()) {
        return Err(ApiError::NotFound);
    }
    segment
        .parse::<i64>()
        .ok()
        .filter(|id| *id > 0)
        .ok_or(ApiError::NotFound)
}

/// A response carrying credentials: never stored by caches.
pub fn no_store(status: StatusCode, body: impl Serialize) -> Response {
    let mut response = (status, Json(body)).into_response();
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// Query of the lists ordered by id.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct Page {
    /// Items per page (1–100, default 20).
    #[param(minimum = 1, maximum = 100)]
    pub limit: Option<i64>,
    /// The `nextCursor` of the previous page.
    #[param(value_type = Option<crate::http::schema::IdCursor>)]
    pub cursor: Option<String>,
}

impl Page {
    /// The checked limit.
    pub fn limit(&self) -> ApiResult<i64> {
        match self.limit.unwrap_or(20) {
            n @ 1..=100 => Ok(n),
            _ => Err(ApiError::field("limit", "must be between 1 and 100")),
        }
    }
}

/// A page of a list.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct List<T> {
    /// The items.
    pub items: Vec<T>,
    /// Pass as `cursor` for the next page; `null` at the end.
    pub next_cursor: Option<String>,
}

impl<T> List<T> {
    /// The page made of `rows`, read with `limit + 1`: a row past `limit` only tells that
    /// another page follows, and that page starts after `cursor_of` the last row kept.
    pub fn from_rows<R>(
        mut rows: Vec<R>,
        limit: i64,
        cursor_of: impl Fn(&R) -> String,
        view: impl Fn(&R) -> T,
    ) -> Self {
        let next_cursor = (rows.len() as i64 > limit).then(|| {
            rows.truncate(limit as usize);
            rows.last().map(&cursor_of).unwrap_or_default()
        });
        List {
            items: rows.iter().map(view).collect(),
            next_cursor,
        }
    }
}

/// Page size when a list is asked for none.
pub const DEFAULT_LIMIT: i64 = 20;
/// Largest page size; a larger `limit` is refused (not silently clamped).
pub const MAX_LIMIT: i64 = 100;

/// A `limit` query parameter read as text (so any text gets a 400 naming `limit`, not a
/// generic query rejection): the default when absent, else a whole number from 1 to 100.
pub fn limit_param(raw: Option<&str>) -> ApiResult<i64> {
    match raw {
        None => Ok(DEFAULT_LIMIT),
        Some(text) => text
            .trim()
            .parse::<i64>()
            .ok()
            .filter(|n| (1..=MAX_LIMIT).contains(n))
            .ok_or_else(|| {
                ApiError::field(
                    "limit",
                    format!("must be a whole number from 1 to {MAX_LIMIT}"),
                )
            }),
    }
}

/// A page cursor that is an id of the list (`default` on the first page): 1 to 18 decimal
/// digits (`http::schema::ID_CURSOR_PATTERN`), else a 400 naming `cursor`.
pub fn id_cursor(raw: Option<&str>, default: i64) -> ApiResult<i64> {
    match raw {
        None => Ok(default),
        Some(c) => Some(c)
            .filter(|c| (1..=18).contains(&c.len()) && c.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|c| c.parse::<i64>().ok())
            .ok_or_else(|| ApiError::field("cursor", "is not a cursor from this list")),
    }
}

/// The whole number a JSON number stands for: `288` or `288.0` alike, since JSON Schema's
/// `integer` (what the document says) is any number without a fractional part. A float is
/// taken only while it is exact (at most 2⁵³ in size); fractions and anything else are `None`.
pub fn json_integer(value: &Value) -> Option<i64> {
    const EXACT: f64 = 9_007_199_254_740_992.0; // 2^53
    value.as_i64().or_else(|| {
        value
            .as_f64()
            .filter(|f| f.fract() == 0.0 && f.abs() <= EXACT)
            .map(|f| f as i64)
    })
}

/// An integer type a JSON field may hold, with its range for the error message.
pub trait JsonInteger: TryFrom<i64> {
    /// The smallest value.
    const MIN: i64;
    /// The largest value.
    const MAX: i64;
}

impl JsonInteger for i64 {
    const MIN: i64 = i64::MIN;
    const MAX: i64 = i64::MAX;
}

impl JsonInteger for u16 {
    const MIN: i64 = 0;
    const MAX: i64 = u16::MAX as i64;
}

/// `value` as a `T` ([`json_integer`], then the type's range), or the message saying so.
fn integer_of<T: JsonInteger, E: serde::de::Error>(value: &Value) -> Result<T, E> {
    json_integer(value)
        .and_then(|n| T::try_from(n).ok())
        .ok_or_else(|| E::custom(format!("must be an integer from {} to {}", T::MIN, T::MAX)))
}

/// Deserializes an integer field written as any JSON integer, `5.0` included
/// ([`json_integer`]); for `#[serde(deserialize_with = …)]`.
pub fn whole_number<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: JsonInteger,
{
    integer_of(&Value::deserialize(deserializer)?)
}

/// [`whole_number`] for an optional field (absent or `null` is `None`); for
/// `#[serde(default, deserialize_with = …)]`.
pub fn optional_whole_number<'de, D, T>(deserializer: D) -> Result<Option<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: JsonInteger,
{
    match Option::<Value>::deserialize(deserializer)? {
        None | Some(Value::Null) => Ok(None),
        Some(value) => integer_of(&value).map(Some),
    }
}

/// A list response with its `Link: <…>; rel="next"` header.
pub fn list_response<T: Serialize>(path: &str, limit: i64, list: List<T>) -> Response {
    // `path` may carry the list's own filters (`/users?q=…`); the page's parameters follow.
    let sep = if path.contains('?') { '&' } else { '?' };
    let link = list.next_cursor.as_ref().and_then(|c| {
        HeaderValue::from_str(&format!(
            "<{path}{sep}limit={limit}&cursor={c}>; rel=\"next\""
        ))
        .ok()
    });
    let mut response = Json(list).into_response();
    if let Some(link) = link {
        response.headers_mut().insert(header::LINK, link);
    }
    response
}

/// JSON with `status`, never cached (`private, no-store`), and `Location` when given: the
/// answers of the money and shop resources, which must not be served from a cache.
pub fn json_response<T: Serialize>(
    status: StatusCode,
    location: Option<String>,
    body: &T,
) -> Result<Response, ApiError> {
    let bytes = serde_json::to_vec(body).map_err(|e| ApiError::Internal(e.into()))?;
    let mut response = (status, bytes).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("private, no-store"),
    );
    if let Some(location) = location.and_then(|l| HeaderValue::from_str(&l).ok()) {
        headers.insert(header::LOCATION, location);
    }
    Ok(response)
}

/// Whether the client lists `text/html` before any JSON type (a browser): pages and the
/// HTML 404 are for it, problem documents for everyone else.
pub fn wants_html(headers: &HeaderMap) -> bool {
    accepts_html_first(headers.get(header::ACCEPT))
}

/// [`wants_html`] of an `Accept` value already taken from its request.
pub fn accepts_html_first(accept: Option<&HeaderValue>) -> bool {
    let accept = accept.and_then(|v| v.to_str().ok()).unwrap_or_default();
    let html = accept.find("text/html");
    let json = accept.find("json");
    match (html, json) {
        (Some(h), Some(j)) => h < j,
        (Some(_), None) => true,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn html_is_for_clients_that_prefer_it() {
        let mut headers = HeaderMap::new();
        assert!(!wants_html(&headers));
        headers.insert(
            header::ACCEPT,
            HeaderValue::from_static("text/html,application/xhtml+xml,*/*;q=0.8"),
        );
        assert!(wants_html(&headers));
        headers.insert(
            header::ACCEPT,
            HeaderValue::from_static("application/json, text/html"),
        );
        assert!(!wants_html(&headers));
    }

    fn accept(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(header::ACCEPT, HeaderValue::from_str(value).unwrap());
        headers
    }

    #[test]
    fn limits_outside_one_to_a_hundred_are_refused() {
        assert_eq!(limit_param(None).ok(), Some(20));
        assert_eq!(limit_param(Some("100")).ok(), Some(100));
        for bad in ["0", "101", "-1", "ten", ""] {
            assert!(limit_param(Some(bad)).is_err(), "{bad}");
        }
    }

    #[test]
    fn merge_patch_follows_the_rfc_examples() {
        let mut target = json!({"a": "b", "c": {"d": "e", "f": "g"}});
        merge_patch(&mut target, &json!({"a": "z", "c": {"f": null}}));
        assert_eq!(target, json!({"a": "z", "c": {"d": "e"}}));
        let mut target = json!({"a": ["b"]});
        merge_patch(&mut target, &json!({"a": ["c"]}));
        assert_eq!(target, json!({"a": ["c"]}));
        let mut target = json!({"a": "foo"});
        merge_patch(&mut target, &json!("bar"));
        assert_eq!(target, json!("bar"));
    }

    #[test]
    fn json_is_acceptable_through_wildcards_and_refused_by_q_zero() {
        assert!(negotiate(&HeaderMap::new()).is_ok());
        assert!(negotiate(&accept("text/html, application/*;q=0.5")).is_ok());
        assert!(negotiate(&accept("*/*")).is_ok());
        assert!(negotiate(&accept("text/html")).is_err());
        assert!(negotiate(&accept("application/json;q=0")).is_err());
    }

    #[test]
    fn integers_may_be_written_with_a_zero_fraction() {
        assert_eq!(json_integer(&json!(288)), Some(288));
        assert_eq!(json_integer(&json!(288.0)), Some(288));
        assert_eq!(json_integer(&json!(-3.0)), Some(-3));
        assert_eq!(json_integer(&json!(i64::MAX)), Some(i64::MAX));
        for bad in [
            json!(1.5),
            json!(1e30),
            json!(9.1e15),
            json!("1"),
            json!(null),
        ] {
            assert_eq!(json_integer(&bad), None, "{bad}");
        }
    }

    #[test]
    fn whole_number_fields_take_a_zero_fraction_and_refuse_others() {
        #[derive(Deserialize)]
        struct Weighted {
            #[serde(deserialize_with = "whole_number")]
            weight: i64,
        }
        let read = |v: Value| serde_json::from_value::<Weighted>(v).map(|w| w.weight);
        assert_eq!(read(json!({"weight": 7})).ok(), Some(7));
        assert_eq!(read(json!({"weight": 3510873.0})).ok(), Some(3510873));
        assert!(read(json!({"weight": 1.5})).is_err());
        assert!(read(json!({"weight": "7"})).is_err());
    }

    #[test]
    fn id_cursors_are_decimal_digits_only() {
        assert_eq!(id_cursor(None, 7).ok(), Some(7));
        assert_eq!(id_cursor(Some("0"), 7).ok(), Some(0));
        assert_eq!(id_cursor(Some("123"), 7).ok(), Some(123));
        for bad in ["", "+5", "-1", " 5", "1e3", "9999999999999999999"] {
            assert!(id_cursor(Some(bad), 7).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn if_match_is_a_star_or_a_list_of_entity_tags() {
        for good in [
            "*",
            "\"abc\"",
            "W/\"abc\"",
            "\"\"",
            "\"a\", \"b\"",
            "\"a\",W/\"b\"",
            "\"a,b\" ,\t\"c\"",
        ] {
            assert!(is_if_match(good), "{good:?}");
        }
        for bad in [
            "",
            "abc",
            "\"abc",
            "*, \"a\"",
            "\"a\",,\"b\"",
            "w/\"a\"",
            "\"a b\"",
            "\"\"\"",
            "\"a\",",
            ", \"a\"",
            "\"a\" \"b\"",
        ] {
            assert!(!is_if_match(bad), "{bad:?}");
        }
    }

    #[test]
    fn an_entity_tag_holding_a_comma_is_one_tag() {
        assert_eq!(
            entity_tags("W/\"x,y\" , \"z\""),
            Some(vec!["W/\"x,y\"", "\"z\""])
        );
        let mut headers = HeaderMap::new();
        headers.insert(
            header::IF_MATCH,
            HeaderValue::from_static("\"a,b\", \"v1\""),
        );
        assert!(check_if_match(&headers, "\"v1\"").is_ok());
        assert!(matches!(
            check_if_match(&headers, "\"a\""),
            Err(ApiError::PreconditionFailed(_))
        ));
    }

    #[test]
    fn ids_are_positive_decimal_numbers() {
        assert_eq!(parse_id("42").ok(), Some(42));
        for bad in ["0", "-1", "1e3", "abc", "99999999999999999999", "", " 1"] {
            assert!(parse_id(bad).is_err(), "{bad}");
        }
    }
}
