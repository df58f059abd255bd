//! Response compression: gzip, brotli or zstd, whichever the client's `Accept-Encoding`
//! prefers, for JSON, CSV, HTML and the pages' text assets (CSS, JavaScript, SVG) big
//! enough to gain from it.
//!
//! tower-http's compression does the negotiation and the streaming; [`Compressible`]
//! decides which responses qualify. Redirects and other bodiless answers never do (nothing
//! to gain, and the redirect path must stay cheap), nor do bodies under [`MIN_BYTES`], where
//! the encoding's framing eats the saving. A qualifying response carries
//! `Vary: Accept-Encoding` whatever the client asked for, so caches keep the variants
//! apart.
//!
//! [`Compress`] asks [`Compressible`] first and hands only a qualifying response to
//! tower-http. Wrapping every response instead costs each one a large body type (the
//! encoders' state sits inline in it) moved through the futures and boxed again by the
//! router: about a tenth of a redirect's instructions, for answers that are never
//! compressed. What the client gets is the same either way.

use std::convert::Infallible;
use std::future::{Future, Ready, ready};
use std::pin::Pin;
use std::task::{Context, Poll};

use axum::body::{Body, HttpBody};
use axum::extract::Request;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::Response;
use tower::{Layer, Service};
use tower_http::compression::{Compression, CompressionLayer, Predicate};

/// Bodies smaller than this are sent as they are.
pub const MIN_BYTES: u64 = 512;

/// The compression layer with the project's rules.
pub fn layer() -> CompressLayer {
    CompressLayer
}

/// Applies [`Compress`].
#[derive(Debug, Clone, Copy, Default)]
pub struct CompressLayer;

impl<S> Layer<S> for CompressLayer {
    type Service = Compress<S>;

    fn layer(&self, inner: S) -> Compress<S> {
        Compress { inner }
    }
}

/// Compresses the responses of `inner` that [`Compressible`] picks, as the client's
/// `Accept-Encoding` allows.
#[derive(Debug, Clone)]
pub struct Compress<S> {
    inner: S,
}

impl<S> Service<Request> for Compress<S>
where
    S: Service<Request, Response = Response, Error = Infallible>,
{
    type Response = Response;
    type Error = Infallible;
    type Future = Compressing<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request) -> Self::Future {
        // A reference count, not a copy: all the negotiation needs of the request.
        let accept = request.headers().get(header::ACCEPT_ENCODING).cloned();
        Compressing::Answering {
            inner: self.inner.call(request),
            accept,
        }
    }
}

/// tower-http's compression around one response already made.
type Encoding = <Compression<Given, Compressible> as Service<Request<()>>>::Future;

pin_project_lite::pin_project! {
    /// The response future of [`Compress`].
    #[project = State]
    pub enum Compressing<F> {
        /// The inner service is answering.
        Answering { #[pin] inner: F, accept: Option<HeaderValue> },
        /// tower-http is compressing a qualifying answer.
        Encoding { #[pin] encoding: Encoding },
    }
}

impl<F: Future<Output = Result<Response, Infallible>>> Future for Compressing<F> {
    type Output = Result<Response, Infallible>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        loop {
            match self.as_mut().project() {
                State::Answering { inner, accept } => {
                    let Ok(response) = std::task::ready!(inner.poll(cx));
                    if !Compressible.should_compress(&response) {
                        return Poll::Ready(Ok(response));
                    }
                    let encoding = encode(response, accept.take());
                    self.set(Compressing::Encoding { encoding });
                }
                State::Encoding { encoding } => {
                    let Ok(response) = std::task::ready!(encoding.poll(cx));
                    return Poll::Ready(Ok(response.map(Body::new)));
                }
            }
        }
    }
}

/// Runs `response` through tower-http's compression as a request with `accept` would have.
fn encode(response: Response, accept: Option<HeaderValue>) -> Encoding {
    let mut request = Request::new(());
    if let Some(accept) = accept {
        request
            .headers_mut()
            .insert(header::ACCEPT_ENCODING, accept);
    }
    CompressionLayer::new()
        .gzip(true)
        .br(true)
        .zstd(true)
        .compress_when(Compressible)
        .layer(Given(Some(response)))
        .call(request)
}

/// A service that answers its one call with the response it was made with.
struct Given(Option<Response>);

impl Service<Request<()>> for Given {
    type Response = Response;
    type Error = Infallible;
    type Future = Ready<Result<Response, Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _: Request<()>) -> Self::Future {
        // Called once, by `encode`: the default (an empty 200) is never sent.
        ready(Ok(self.0.take().unwrap_or_default()))
    }
}

/// Which responses are compressed: JSON (problem documents included), CSV, HTML, CSS,
/// JavaScript and SVG; not a redirect, not tiny.
#[derive(Debug, Clone, Copy, Default)]
pub struct Compressible;

impl Predicate for Compressible {
    fn should_compress<B: HttpBody>(&self, response: &axum::http::Response<B>) -> bool {
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
