//! `GET /{code}/qr.svg` and `GET /{code}/qr.png`: a link's short URL as a QR code, for the
//! home page's result and for API users alike.
//!
//! The code holds the short URL only (on the link's own domain), never the long URL, so a
//! printed code keeps working after the target changes and still counts every scan. Error
//! correction is level M (15 % of the modules may be lost), what print and screens need;
//! the four-module quiet zone the standard asks for is included. The PNG is drawn and
//! encoded on the blocking pool; the SVG is text and cheap.

use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, Uri, header};
use axum::response::{IntoResponse, Response};
use qrcode::{EcLevel, QrCode};

use super::domains::Served;
use crate::error::{ApiError, ApiResult, Problem};
use crate::state::AppState;

/// Pixels per module in the PNG: a version-3 code (a typical short URL) comes out near
/// 300 pixels square, sharp when printed a few centimetres wide.
const PNG_MODULE_PIXELS: u32 = 8;
/// The SVG's smallest side, in user units (it scales without loss anyway).
const SVG_MIN_SIDE: u32 = 256;
/// A code's image changes only when its short URL does, which it never does; a deleted
/// link's image may outlive it in a cache for this long.
const CACHE_CONTROL: HeaderValue = HeaderValue::from_static("public, max-age=3600");
/// Nothing in the image runs or loads anything.
const IMAGE_CSP: HeaderValue = HeaderValue::from_static("default-src 'none'");

/// The short URL of the link `code` names on the request's domain (404 when there is none).
async fn short_url_of(
    state: &AppState,
    code: &str,
    headers: &HeaderMap,
    uri: &Uri,
) -> ApiResult<String> {
    let domain = match state.domains.served(headers, uri) {
        Served::Default => None,
        Served::Named(name) => Some(name),
        Served::Unknown => return Err(ApiError::NotFound),
    };
    let (link, _) = super::redirect::find(state, code, domain).await?;
    let row = &link.row;
    Ok(state.domains.short_url(
        &state.base_url,
        row.domain.as_deref(),
        &state.codes.code_of(row),
    ))
}

fn qr_of(text: &str) -> ApiResult<QrCode> {
    QrCode::with_error_correction_level(text.as_bytes(), EcLevel::M).map_err(|err| {
        ApiError::Internal(anyhow::anyhow!("cannot encode {text} as a QR code: {err}"))
    })
}

/// The QR code of `text` as an SVG document.
pub fn svg_of(text: &str) -> ApiResult<String> {
    Ok(qr_of(text)?
        .render::<qrcode::render::svg::Color<'_>>()
        .min_dimensions(SVG_MIN_SIDE, SVG_MIN_SIDE)
        .quiet_zone(true)
        .build())
}

/// The QR code of `text` as a greyscale PNG.
pub fn png_of(text: &str) -> ApiResult<Vec<u8>> {
    let image = qr_of(text)?
        .render::<image::Luma<u8>>()
        .module_dimensions(PNG_MODULE_PIXELS, PNG_MODULE_PIXELS)
        .quiet_zone(true)
        .build();
    let mut png = std::io::Cursor::new(Vec::new());
    image
        .write_to(&mut png, image::ImageFormat::Png)
        .map_err(|err| ApiError::Internal(err.into()))?;
    Ok(png.into_inner())
}

fn image_response(media: &'static str, body: impl IntoResponse) -> Response {
    (
        [
            (header::CONTENT_TYPE, HeaderValue::from_static(media)),
            (header::CACHE_CONTROL, CACHE_CONTROL),
            (header::CONTENT_SECURITY_POLICY, IMAGE_CSP),
        ],
        body,
    )
        .into_response()
}

/// The link's short URL as an SVG QR code.
#[utoipa::path(
    get, path = "/{code}/qr.svg", tag = "links",
    params(("code" = String, Path, description = "The short code")),
    responses(
        (status = 200, description = "The short URL as a QR code", content_type = "image/svg+xml", body = String),
        (status = 404, description = "No such link on this host's domain", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn svg(
    State(state): State<AppState>,
    Path(code): Path<String>,
    headers: HeaderMap,
    uri: Uri,
) -> ApiResult<Response> {
    let url = short_url_of(&state, &code, &headers, &uri).await?;
    Ok(image_response("image/svg+xml", svg_of(&url)?))
}

/// The link's short URL as a PNG QR code.
#[utoipa::path(
    get, path = "/{code}/qr.png", tag = "links",
    params(("code" = String, Path, description = "The short code")),
    responses(
        (status = 200, description = "The short URL as a QR code", content_type = "image/png", body = Vec<u8>),
        (status = 404, description = "No such link on this host's domain", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn png(
    State(state): State<AppState>,
    Path(code): Path<String>,
    headers: HeaderMap,
    uri: Uri,
) -> ApiResult<Response> {
    let url = short_url_of(&state, &code, &headers, &uri).await?;
    let png = tokio::task::spawn_blocking(move || png_of(&url))
        .await
        .map_err(|err| ApiError::Internal(err.into()))??;
    Ok(image_response("image/png", png))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_svg_is_a_standalone_document_without_scripts() {
        let svg = svg_of("https://sho.rt/abcdefg").unwrap();
        assert!(svg.contains("<svg"), "{svg}");
        assert!(!svg.contains("<script"), "{svg}");
    }

    #[test]
    fn the_png_has_the_png_signature() {
        let png = png_of("https://sho.rt/abcdefg").unwrap();
        assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
    }
}
