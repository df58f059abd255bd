//! The one place where failures become HTTP responses: RFC 9457 `application/problem+json`.
//!
//! Handlers return [`ApiError`]; its `IntoResponse` picks the status and writes the problem
//! document. A 5xx never shows internals: the cause is attached to the response as an
//! [`InternalError`] extension, and the request middleware logs it with the request id that
//! the client sees in `x-request-id`.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

/// The media type of error bodies.
pub const PROBLEM_JSON: &str = "application/problem+json";

/// An RFC 9457 problem document.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Problem {
    /// A URI reference naming the problem type; `about:blank` means "see the status".
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// Short summary of the problem type.
    pub title: &'static str,
    /// The HTTP status.
    pub status: u16,
    /// What went wrong with this request, for a human.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// Problems with individual fields of the request.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<FieldError>,
}

/// A problem with one field of the request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct FieldError {
    /// The field's name as it appears in the request (camelCase).
    pub field: String,
    /// What is wrong with it.
    pub message: String,
}

impl FieldError {
    /// A problem with `field`.
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
        }
    }
}

/// Collects the problems of a request's fields while each is parsed, so a client hears of
/// all of them at once.
#[derive(Debug, Default)]
pub struct FieldProblems(Vec<FieldError>);

impl FieldProblems {
    /// The parsed value of `field`, or `None` with its problem noted.
    pub fn check<T, M: Into<String>>(&mut self, field: &str, parsed: Result<T, M>) -> Option<T> {
        parsed
            .map_err(|message| self.0.push(FieldError::new(field, message)))
            .ok()
    }

    /// Notes a problem found outside a parse.
    pub fn add(&mut self, field: &str, message: impl Into<String>) {
        self.0.push(FieldError::new(field, message));
    }

    /// `Ok(())` when no field had a problem, else every problem.
    pub fn finish(self) -> Result<(), Vec<FieldError>> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(self.0)
        }
    }
}

impl Problem {
    /// A problem of `status` with its canonical title and no detail.
    pub fn new(status: StatusCode) -> Self {
        Self {
            kind: "about:blank",
            title: status.canonical_reason().unwrap_or("Error"),
            status: status.as_u16(),
            detail: None,
            errors: Vec::new(),
        }
    }

    /// Adds the human-readable detail.
    pub fn detail(mut self, detail: impl Into<String>) -> Self {
        self.detail = Some(detail.into());
        self
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let body = serde_json::to_vec(&self).unwrap_or_default();
        let mut response = (status, body).into_response();
        response
            .headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
        response
    }
}

/// The cause of a 5xx, kept out of the body and logged by the request middleware.
#[derive(Debug, Clone)]
pub struct InternalError(pub String);

/// Every way a request can fail.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// One or more fields are invalid (400, with `errors`).
    #[error("invalid request")]
    Invalid(Vec<FieldError>),
    /// The request is malformed in a way not tied to one field (400).
    #[error("{0}")]
    BadRequest(String),
    /// Authentication is required or failed (401); the challenge goes to `WWW-Authenticate`.
    #[error("{detail}")]
    Unauthorized {
        /// The `WWW-Authenticate` challenge.
        challenge: &'static str,
        /// What the client should do.
        detail: String,
    },
    /// Authenticated but not allowed (403).
    #[error("{0}")]
    Forbidden(String),
    /// No such resource (404).
    #[error("not found")]
    NotFound,
    /// The resource existed but is no longer available (410).
    #[error("{0}")]
    Gone(String),
    /// The request conflicts with the current state (409).
    #[error("{0}")]
    Conflict(String),
    /// The body is not of a media type this route accepts (415).
    #[error("{0}")]
    UnsupportedMediaType(String),
    /// The body is larger than allowed (413).
    #[error("request body too large")]
    PayloadTooLarge,
    /// Well-formed but semantically invalid (422).
    #[error("{0}")]
    Unprocessable(String),
    /// Well-formed, but fields are missing or invalid (422, with `errors`).
    #[error("invalid fields")]
    UnprocessableFields(Vec<FieldError>),
    /// No representation matches the request's `Accept` (406).
    #[error("{0}")]
    NotAcceptable(String),
    /// An `If-Match` precondition failed: the resource changed since the client read it (412).
    #[error("{0}")]
    PreconditionFailed(String),
    /// Too many attempts (429); `retry_after` seconds go to `Retry-After` and `retryAfter`.
    #[error("{detail}")]
    TooManyRequests {
        /// Seconds until a new attempt may succeed.
        retry_after: u64,
        /// What was limited.
        detail: String,
    },
    /// A dependency is down (503).
    #[error("service unavailable: {0}")]
    Unavailable(String),
    /// A bug or an unexpected failure (500).
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

impl ApiError {
    /// A 400 for a single field.
    pub fn field(field: &str, message: impl Into<String>) -> Self {
        Self::Invalid(vec![FieldError::new(field, message)])
    }

    /// A 422: the request is well formed, but `field`'s value cannot be taken.
    pub fn unprocessable(field: &str, message: impl Into<String>) -> Self {
        Self::UnprocessableFields(vec![FieldError::new(field, message)])
    }
}

impl From<basis_store::Error> for ApiError {
    fn from(err: basis_store::Error) -> Self {
        match err {
            basis_store::Error::Unavailable(_) | basis_store::Error::ShardUnavailable(..) => {
                Self::Unavailable(err.to_string())
            }
            basis_store::Error::Conflict(what) => {
                Self::Conflict(format!("this {what} is already taken"))
            }
            // The only references a client can break are to accounts deleted while their
            // access token is still valid: the credential no longer names anyone.
            basis_store::Error::MissingReference(_) => Self::Unauthorized {
                challenge: "Bearer realm=\"basis\", error=\"invalid_token\"",
                detail: "the signed-in account no longer exists".into(),
            },
            other => Self::Internal(other.into()),
        }
    }
}

impl From<basis_auth::Error> for ApiError {
    fn from(err: basis_auth::Error) -> Self {
        match err {
            basis_auth::Error::WeakPassword(message) => Self::field("password", message),
            basis_auth::Error::InvalidToken(_) => Self::Unauthorized {
                challenge: "Bearer error=\"invalid_token\"",
                detail: "the credentials are invalid or expired".into(),
            },
            basis_auth::Error::Oidc(cause) | basis_auth::Error::Mail(cause) => {
                Self::Unavailable(cause)
            }
            other => Self::Internal(other.into()),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let problem = |status| Problem::new(status);
        match self {
            Self::Invalid(errors) => Problem {
                errors,
                ..problem(StatusCode::BAD_REQUEST).detail("the request has invalid fields")
            }
            .into_response(),
            Self::BadRequest(detail) => problem(StatusCode::BAD_REQUEST)
                .detail(detail)
                .into_response(),
            Self::Unauthorized { challenge, detail } => {
                let mut response = problem(StatusCode::UNAUTHORIZED)
                    .detail(detail)
                    .into_response();
                response.headers_mut().insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static(challenge),
                );
                response
            }
            Self::Forbidden(detail) => problem(StatusCode::FORBIDDEN)
                .detail(detail)
                .into_response(),
            Self::NotFound => problem(StatusCode::NOT_FOUND).into_response(),
            Self::Gone(detail) => problem(StatusCode::GONE).detail(detail).into_response(),
            Self::Conflict(detail) => problem(StatusCode::CONFLICT).detail(detail).into_response(),
            Self::UnsupportedMediaType(detail) => problem(StatusCode::UNSUPPORTED_MEDIA_TYPE)
                .detail(detail)
                .into_response(),
            // The unread rest of the body makes the connection unusable: say so, so that a
            // client does not send its next request on a connection about to close.
            Self::PayloadTooLarge => (
                [(axum::http::header::CONNECTION, "close")],
                problem(StatusCode::PAYLOAD_TOO_LARGE)
                    .detail("the request body exceeds the size limit"),
            )
                .into_response(),
            Self::Unprocessable(detail) => problem(StatusCode::UNPROCESSABLE_ENTITY)
                .detail(detail)
                .into_response(),
            Self::UnprocessableFields(errors) => Problem {
                errors,
                ..problem(StatusCode::UNPROCESSABLE_ENTITY)
                    .detail("the request has missing or invalid fields")
            }
            .into_response(),
            Self::NotAcceptable(detail) => problem(StatusCode::NOT_ACCEPTABLE)
                .detail(detail)
                .into_response(),
            Self::PreconditionFailed(detail) => problem(StatusCode::PRECONDITION_FAILED)
                .detail(detail)
                .into_response(),
            Self::TooManyRequests {
                retry_after,
                detail,
            } => {
                let mut body =
                    serde_json::to_value(problem(StatusCode::TOO_MANY_REQUESTS).detail(detail))
                        .unwrap_or_default();
                body["retryAfter"] = retry_after.into();
                let mut response =
                    (StatusCode::TOO_MANY_REQUESTS, body.to_string()).into_response();
                let headers = response.headers_mut();
                headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
                headers.insert(header::RETRY_AFTER, HeaderValue::from(retry_after));
                response
            }
            Self::Unavailable(cause) => {
                let mut response = problem(StatusCode::SERVICE_UNAVAILABLE)
                    .detail("a dependency is unavailable; try again shortly")
                    .into_response();
                response
                    .headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
                response.extensions_mut().insert(InternalError(cause));
                response
            }
            Self::Internal(err) => {
                let mut response = problem(StatusCode::INTERNAL_SERVER_ERROR)
                    .detail("an unexpected error occurred; quote the x-request-id header when reporting it")
                    .into_response();
                response
                    .extensions_mut()
                    .insert(InternalError(format!("{err:#}")));
                response
            }
        }
    }
}

/// Shorthand for handler results.
pub type ApiResult<T> = Result<T, ApiError>;

impl From<basis_cache::Error> for ApiError {
    /// A loader's database outage stays a 503; anything else from the cache is a bug.
    fn from(err: basis_cache::Error) -> Self {
        match &err {
            basis_cache::Error::Load(cause) => match cause.downcast_ref::<basis_store::Error>() {
                Some(
                    basis_store::Error::Unavailable(_) | basis_store::Error::ShardUnavailable(..),
                ) => Self::Unavailable(cause.to_string()),
                _ => Self::Internal(anyhow::anyhow!("{cause}")),
            },
            _ => Self::Internal(err.into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn field_problems_gather_every_refusal() {
        let mut problems = FieldProblems::default();
        assert_eq!(problems.check("a", Ok::<_, &str>(1)), Some(1));
        assert_eq!(problems.check::<i32, _>("b", Err("bad")), None);
        problems.add("c", "worse");
        let errors = problems.finish().unwrap_err();
        assert_eq!(
            errors,
            vec![FieldError::new("b", "bad"), FieldError::new("c", "worse")]
        );
        assert!(FieldProblems::default().finish().is_ok());
    }
}
