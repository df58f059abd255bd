//! `GET /{code}+`: where a link goes, without going there. Nothing is counted and nothing
//! redirects; a link that would answer 404 or 410 answers the same here. A password
//! protects the destination, so a protected link's preview leaves it (and the title) out.
//! Browsers asking for HTML get a small page; everyone else gets JSON.

use axum::Json;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use serde::Serialize;
use utoipa::ToSchema;

use super::unavailable_reason;
use crate::clock::to_datetime;
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;

/// What the preview of a link shows.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct LinkPreview {
    /// The code.
    pub short_code: String,
    /// The short URL.
    pub short_url: String,
    /// Where it goes (absent when a password protects it).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub long_url: Option<String>,
    /// The title its owner gave it, if any (absent when a password protects it).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    /// When it was made.
    pub created_at: DateTime<Utc>,
    /// Whether following it needs a password.
    pub password_protected: bool,
}

/// The preview of the link `code` names (the path without its trailing `+`).
pub async fn show(
    state: &AppState,
    code: &str,
    domain: Option<&str>,
    headers: &HeaderMap,
) -> ApiResult<Response> {
    let (link, clicks) = super::redirect::find(state, code, domain).await?;
    let row = &link.row;
    if let Some(reason) = unavailable_reason(row, state.clock.now_ms(), clicks) {
        return Err(ApiError::Gone(reason.into()));
    }
    let protected = row.password_hash.is_some();
    let title = if protected {
        None
    } else {
        basis_store::links::titles_of(&state.store, &[row.id])
            .await?
            .pop()
            .map(|(_, title)| title)
    };
    let short_code = state.codes.code_of(row);
    let preview = LinkPreview {
        short_url: state.domains.short_url(
            &state.base_url,
            link.row.domain.as_deref(),
            &short_code,
        ),
        short_code,
        long_url: (!protected).then(|| row.long_url.clone()),
        title,
        created_at: to_datetime(row.created_at),
        password_protected: protected,
    };
    let mut response = if crate::http::rest::wants_html(headers) {
        (
            [
                (
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("text/html; charset=utf-8"),
                ),
                // The page is text and one link: it needs nothing loaded, run or framed.
                (
                    header::CONTENT_SECURITY_POLICY,
                    HeaderValue::from_static(
                        "default-src 'none'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
                    ),
                ),
            ],
            page(&preview),
        )
            .into_response()
    } else {
        (StatusCode::OK, Json(preview)).into_response()
    };
    let headers = response.headers_mut();
    headers.insert(header::VARY, HeaderValue::from_static("accept"));
    // The answer changes with every edit: no cache keeps it.
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert("x-robots-tag", HeaderValue::from_static("noindex"));
    Ok(response)
}

/// Escapes text for HTML.
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// The HTML page of a preview.
fn page(preview: &LinkPreview) -> String {
    let heading = preview.title.as_deref().unwrap_or("Where this link goes");
    let destination = match &preview.long_url {
        Some(url) => format!(
            "<p>{} leads to</p><p><a href=\"{url}\" rel=\"nofollow noopener\">{url}</a></p>",
            escape(&preview.short_url),
            url = escape(url)
        ),
        None => format!(
            "<p>{} is protected by a password; its destination is shown after the password \
             is given.</p>",
            escape(&preview.short_url)
        ),
    };
    format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"robots\" content=\"noindex\"><title>{title}</title></head><body>\
         <h1>{title}</h1>{destination}<p>Created {created}.</p></body></html>",
        title = escape(heading),
        created = preview.created_at.format("%Y-%m-%d"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_escapes_what_owners_wrote() {
        let preview = LinkPreview {
            short_code: "abc".into(),
            short_url: "https://s.example/abc".into(),
            long_url: Some("https://example.com/?a=1&b=\"<x>\"".into()),
            title: Some("<script>alert(1)</script>".into()),
            created_at: to_datetime(0),
            password_protected: false,
        };
        let html = page(&preview);
        assert!(!html.contains("<script>"));
        assert!(html.contains("&lt;script&gt;"));
        assert!(html.contains("a=1&amp;b=&quot;&lt;x&gt;&quot;"));
    }
}
