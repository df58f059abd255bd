//! Request extractors whose rejections are problem documents, and the one translation of a
//! body that does not fit its type into field errors in the project's words.

use std::net::{IpAddr, SocketAddr};

use axum::body::Bytes;
use axum::extract::{ConnectInfo, FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use serde::de::DeserializeOwned;

use crate::error::{ApiError, FieldError};

/// A JSON body (`application/json` or any `application/*+json`, such as
/// `application/merge-patch+json`). A missing or wrong media type is 415, a body over the
/// limit 413, malformed JSON 400, and a field of the wrong shape 400 with `errors` naming it.
#[derive(Debug, Clone, Copy, Default)]
pub struct ApiJson<T>(pub T);

impl<S, T> FromRequest<S> for ApiJson<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        if !is_json(req.headers()) {
            return Err(not_json());
        }
        let bytes = Bytes::from_request(req, state).await.map_err(body_error)?;
        json_from_bytes(&bytes).map(Self)
    }
}

/// An optional JSON body: `None` when the request has neither a body nor a `Content-Type`;
/// any body it has is read as [`ApiJson`] reads one (415, 413, 400), never ignored.
#[derive(Debug, Clone, Copy, Default)]
pub struct OptionalJson<T>(pub Option<T>);

impl<S, T> FromRequest<S> for OptionalJson<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let typed = req.headers().contains_key(header::CONTENT_TYPE);
        let json = is_json(req.headers());
        let bytes = Bytes::from_request(req, state).await.map_err(body_error)?;
        if !typed && bytes.is_empty() {
            return Ok(Self(None));
        }
        if !json {
            return Err(not_json());
        }
        json_from_bytes(&bytes).map(|value| Self(Some(value)))
    }
}

fn not_json() -> ApiError {
    ApiError::UnsupportedMediaType("the body must be JSON (Content-Type: application/json)".into())
}

fn body_error(rejection: axum::extract::rejection::BytesRejection) -> ApiError {
    if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
        ApiError::PayloadTooLarge
    } else {
        ApiError::BadRequest(rejection.body_text())
    }
}

/// JSON text read as `T`: malformed JSON is 400, a field of the wrong shape 400 naming it.
fn json_from_bytes<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let mut json = serde_json::Deserializer::from_slice(bytes);
    let malformed =
        |err: &serde_json::Error| ApiError::BadRequest(format!("malformed JSON: {err}"));
    let value = serde_path_to_error::deserialize(&mut json).map_err(|err| {
        match err.inner().classify() {
            serde_json::error::Category::Data => ApiError::Invalid(vec![field_error(&err)]),
            _ => malformed(err.inner()),
        }
    })?;
    json.end().map_err(|err| malformed(&err))?;
    Ok(value)
}

/// The media type of the body (`Content-Type` without parameters, lower-cased).
pub fn media_type(headers: &axum::http::HeaderMap) -> Option<String> {
    let value = headers.get(header::CONTENT_TYPE)?.to_str().ok()?;
    Some(value.split(';').next()?.trim().to_ascii_lowercase())
}

/// `application/json` or `application/<anything>+json`, parameters aside.
fn is_json(headers: &axum::http::HeaderMap) -> bool {
    media_type(headers).is_some_and(|essence| {
        essence == "application/json"
            || essence
                .strip_prefix("application/")
                .is_some_and(|sub| sub.ends_with("+json"))
    })
}

/// The TCP peer's address (the rate limiter and the redirect path read a trusted proxy's
/// forwarding headers with `basis_ratelimit::http::client_ip`).
#[derive(Debug, Clone, Copy)]
pub struct ClientIp(pub Option<IpAddr>);

impl<S: Send + Sync> FromRequestParts<S> for ClientIp {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(Self(
            parts
                .extensions
                .get::<ConnectInfo<SocketAddr>>()
                .map(|ConnectInfo(addr)| addr.ip()),
        ))
    }
}

impl ClientIp {
    /// The address as text for throttle keys and audit events.
    pub fn text(&self) -> String {
        self.0.map_or_else(|| "-".to_owned(), |ip| ip.to_string())
    }
}

/// Reads a JSON value as `T`, naming the field that does not fit.
pub fn from_value<T: DeserializeOwned>(value: serde_json::Value) -> Result<T, FieldError> {
    serde_path_to_error::deserialize(value).map_err(|err| field_error(&err))
}

/// `value` without the whitespace around it, when that leaves 1 to `max_chars` characters;
/// otherwise a 422 naming `field`. For the names of things (products, events).
pub fn trimmed_name<'a>(
    field: &str,
    value: &'a str,
    max_chars: usize,
) -> Result<&'a str, ApiError> {
    let name = value.trim();
    if name.is_empty() || name.chars().count() > max_chars {
        return Err(ApiError::unprocessable(
            field,
            format!("must be 1 to {max_chars} characters"),
        ));
    }
    Ok(name)
}

/// The field a deserialisation failure is about, and what is wrong with it, in words a
/// client can act on: no Rust type names, no line and column of our own parser.
pub fn field_error(err: &serde_path_to_error::Error<serde_json::Error>) -> FieldError {
    let path = err.path().to_string();
    let path = if path == "." { String::new() } else { path };
    // serde_json appends " at line L column C" to what serde said; the path says where.
    let text = err.inner().to_string();
    let said = text
        .rsplit_once(" at line ")
        .map_or(text.as_str(), |(said, _)| said);
    let quoted = |s: &str| s.split('`').nth(1).map(str::to_owned);
    // The path stops at the object for a missing field, and may or may not include an
    // unknown field's own key.
    let join = |parent: &str, child: &str| {
        if parent.is_empty() {
            child.to_owned()
        } else if parent == child || parent.ends_with(&format!(".{child}")) {
            parent.to_owned()
        } else {
            format!("{parent}.{child}")
        }
    };
    if let Some(rest) = said.strip_prefix("missing field ") {
        let name = quoted(rest).unwrap_or_default();
        return FieldError::new(join(&path, &name), "is required");
    }
    if let Some(rest) = said.strip_prefix("unknown field ") {
        let name = quoted(rest).unwrap_or_default();
        return FieldError::new(join(&path, &name), "is not a field of this request");
    }
    if let Some(rest) = said.strip_prefix("duplicate field ") {
        let name = quoted(rest).unwrap_or_default();
        return FieldError::new(join(&path, &name), "is given more than once");
    }
    if let Some(rest) = said.strip_prefix("unknown variant ") {
        let allowed = rest
            .split_once("expected ")
            .map(|(_, expected)| expected.replace('`', ""))
            .unwrap_or_default();
        let allowed = allowed.trim_start_matches("one of ");
        return FieldError::new(path, format!("must be one of {allowed}"));
    }
    for prefix in ["invalid type: ", "invalid value: ", "invalid length "] {
        if let Some(rest) = said.strip_prefix(prefix)
            && let Some((_, expected)) = rest.split_once(", expected ")
        {
            return FieldError::new(path, format!("must be {}", in_words(expected)));
        }
    }
    // The project's own deserializers (`rest::whole_number`…) say what a value must be.
    if said.starts_with("must be ") {
        return FieldError::new(path, said);
    }
    // A type's own parser (a date, a URL) explains itself in plain words.
    FieldError::new(path, format!("is not valid: {said}"))
}

/// What serde says a type expects, in a client's words.
fn in_words(expected: &str) -> String {
    let integer = |low: i128, high: i128| format!("an integer from {low} to {high}");
    match expected {
        "u8" => integer(0, u8::MAX.into()),
        "u16" => integer(0, u16::MAX.into()),
        "u32" => integer(0, u32::MAX.into()),
        "u64" | "usize" => integer(0, u64::MAX.into()),
        "i8" => integer(i8::MIN.into(), i8::MAX.into()),
        "i16" => integer(i16::MIN.into(), i16::MAX.into()),
        "i32" => integer(i32::MIN.into(), i32::MAX.into()),
        "i64" | "isize" => integer(i64::MIN.into(), i64::MAX.into()),
        "f32" | "f64" => "a number".into(),
        "a boolean" => "true or false".into(),
        "a sequence" => "an array".into(),
        "a map" => "an object".into(),
        "a borrowed string" | "a string" | "a character" => "a string".into(),
        other if other.starts_with("struct ") || other.starts_with("a map") => "an object".into(),
        other if other.starts_with("enum ") || other.starts_with("variant ") => {
            "one of the allowed values".into()
        }
        // serde's own phrases ("a date and time in RFC 3339 format", "an array of length 2")
        // are already plain English; anything with a Rust path in it is not.
        other if other.contains("::") => "a value of the documented type".into(),
        other => other.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;

    use super::*;

    #[derive(Debug, Deserialize)]
    #[serde(rename_all = "camelCase", deny_unknown_fields)]
    #[allow(dead_code)]
    struct Order {
        product_id: String,
        quantity: u16,
        items: Vec<Item>,
        kind: Option<Kind>,
    }

    #[derive(Debug, Deserialize)]
    #[serde(rename_all = "camelCase")]
    #[allow(dead_code)]
    struct Item {
        count: i64,
        at: Option<chrono::DateTime<chrono::Utc>>,
    }

    #[derive(Debug, Deserialize)]
    #[serde(rename_all = "lowercase")]
    enum Kind {
        Plain,
        Gift,
    }

    fn error_of(json: &str) -> FieldError {
        let mut de = serde_json::Deserializer::from_str(json);
        let err = serde_path_to_error::deserialize::<_, Order>(&mut de).unwrap_err();
        field_error(&err)
    }

    fn shows_no_internals(error: &FieldError) {
        for word in [
            "u16", "i64", "struct", "Order", "Item", "line", "column", "`",
        ] {
            assert!(!error.message.contains(word), "{error:?} shows {word}");
        }
    }

    #[test]
    fn a_missing_field_is_named_with_its_path() {
        let error = error_of(r#"{"quantity": 1, "items": []}"#);
        assert_eq!(error, FieldError::new("productId", "is required"));
        let error = error_of(r#"{"productId": "p", "quantity": 1, "items": [{}]}"#);
        assert_eq!(error, FieldError::new("items[0].count", "is required"));
    }

    #[test]
    fn a_value_of_the_wrong_type_says_what_is_expected_in_plain_words() {
        let error = error_of(r#"{"productId": 5}"#);
        assert_eq!(error, FieldError::new("productId", "must be a string"));
        let error = error_of(r#"{"productId": "p", "quantity": 70000}"#);
        assert_eq!(
            error,
            FieldError::new("quantity", "must be an integer from 0 to 65535")
        );
        shows_no_internals(&error);
        let error = error_of(r#"{"productId": "p", "quantity": 1, "items": {}}"#);
        assert_eq!(error, FieldError::new("items", "must be an array"));
    }

    #[test]
    fn unknown_fields_and_variants_are_named() {
        let error = error_of(r#"{"productId": "p", "colour": 1}"#);
        assert_eq!(
            error,
            FieldError::new("colour", "is not a field of this request")
        );
        let error = error_of(r#"{"productId": "p", "quantity": 1, "items": [], "kind": "x"}"#);
        assert_eq!(
            error,
            FieldError::new("kind", "must be one of plain or gift")
        );
    }

    #[test]
    fn a_type_s_own_parser_explains_itself_without_internals() {
        let error =
            error_of(r#"{"productId": "p", "quantity": 1, "items": [{"count": 1, "at": "soon"}]}"#);
        assert_eq!(error.field, "items[0].at");
        shows_no_internals(&error);
    }

    #[test]
    fn json_media_types_include_the_structured_suffix() {
        let headers = |value: &'static str| {
            let mut map = axum::http::HeaderMap::new();
            map.insert(header::CONTENT_TYPE, value.parse().unwrap());
            map
        };
        assert!(is_json(&headers("application/json; charset=utf-8")));
        assert!(is_json(&headers("Application/Merge-Patch+JSON")));
        assert!(!is_json(&headers("text/json")));
        assert!(!is_json(&headers("application/jsonp")));
        assert!(!is_json(&axum::http::HeaderMap::new()));
    }
}
