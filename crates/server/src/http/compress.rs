//! Response compression: gzip, brotli or zstd, whichever the client's `Accept-Encoding`
//! prefers, for JSON, CSV, HTML and the pages' text assets (CSS, JavaScript, SVG) big
//! enough to gain from it.
//!
//! tower-http's layer does the negotiation and the streaming; [`Compressible`] decides
//! which responses qualify. Redirects and other bodiless answers never do (nothing to
//! gain, and the redirect path must stay cheap), nor do bodies under [`MIN_BYTES`], where
//! the encoding's framing eats the saving. A qualifying response carries
//! `Vary: Accept-Encoding` whatever the client asked for, so caches keep the variants
//! apart.

use axum::body::HttpBody as Body;
use axum::http::{Response, StatusCode, header};
use tower_http::compression::{CompressionLayer, Predicate};

/// Bodies smaller than this are sent as they are.
pub const MIN_BYTES: u64 = 512;

/// The compression layer with the project's rules.
pub fn layer() -> CompressionLayer<Compressible> {
    CompressionLayer::new()
        .gzip(true)
        .br(true)
        .zstd(true)
        .compress_when(Compressible)
}

/// Which responses are compressed: JSON (problem documents included), CSV, HTML, CSS,
/// JavaScript and SVG; not a redirect, not tiny.
#[derive(Debug, Clone, Copy, Default)]
pub struct Compressible;

impl Predicate for Compressible {
    fn should_compress<B: Body>(&self, response: &Response<B>) -> bool {
        let status = response.status();
        if status.is_redirection() || status.is_informational() || status == StatusCode::NO_CONTENT
        {
            return false;
        }
        let size = response.body().size_hint().exact().or_else(|| {
            response
                .headers()
                .get(header::CONTENT_LENGTH)
                .and_then(|v| v.to_str().ok()?.parse().ok())
        });
        if size.is_some_and(|bytes| bytes < MIN_BYTES) {
            return false;
        }
        let Some(media) = response
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
        else {
            return false;
        };
        let media = media.split(';').next().unwrap_or_default().trim();
        media.eq_ignore_ascii_case("application/json")
            || media.eq_ignore_ascii_case("application/problem+json")
            || media.eq_ignore_ascii_case("text/csv")
            || media.eq_ignore_ascii_case("text/html")
            || media.eq_ignore_ascii_case("text/css")
            || media.eq_ignore_ascii_case("text/javascript")
            || media.eq_ignore_ascii_case("image/svg+xml")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn response(status: u16, media: &str, bytes: usize) -> Response<String> {
        Response::builder()
            .status(status)
            .header(header::CONTENT_TYPE, media)
            .body("x".repeat(bytes))
            .unwrap()
    }

    #[test]
    fn json_and_html_of_some_size_qualify() {
        let rule = Compressible;
        assert!(rule.should_compress(&response(200, "application/json", 4096)));
        assert!(rule.should_compress(&response(404, "application/problem+json", 600)));
        assert!(rule.should_compress(&response(200, "text/html; charset=utf-8", 600)));
        assert!(rule.should_compress(&response(200, "text/csv; charset=utf-8", 600)));
        assert!(rule.should_compress(&response(200, "text/css", 600)));
        assert!(rule.should_compress(&response(200, "image/svg+xml", 600)));
    }

    #[test]
    fn redirects_tiny_bodies_and_other_media_do_not() {
        let rule = Compressible;
        assert!(!rule.should_compress(&response(301, "text/html", 4096)));
        assert!(!rule.should_compress(&response(302, "application/json", 4096)));
        assert!(!rule.should_compress(&response(200, "application/json", 100)));
        assert!(!rule.should_compress(&response(200, "image/png", 4096)));
        assert!(!rule.should_compress(&response(200, "application/octet-stream", 4096)));
    }
}
