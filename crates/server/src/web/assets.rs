//! The pages' stylesheet and script, compiled into the binary and served under names that
//! carry a hash of their content (`/assets/app.3f9c….css`): a browser may keep them a year
//! without asking again (`immutable`), and a new release, whose files hash differently, is
//! fetched at once. The router's compression layer shrinks them on the way out.

use std::sync::LazyLock;

use axum::extract::Path;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};

use crate::error::ApiError;

/// Where hashed assets are served.
pub const PREFIX: &str = "/assets/";
/// A year, and never revalidated: the name changes when the content does.
const IMMUTABLE: HeaderValue = HeaderValue::from_static("public, max-age=31536000, immutable");

/// One embedded file.
#[derive(Debug)]
pub struct Asset {
    /// The name it is served under, with its hash (`app.<hash>.css`).
    pub name: String,
    /// Its media type.
    pub media: &'static str,
    /// Its content.
    pub body: &'static str,
}

impl Asset {
    fn new(stem: &str, extension: &str, media: &'static str, body: &'static str) -> Self {
        let hash = Sha256::digest(body.as_bytes());
        let hex: String = hash[..8].iter().map(|b| format!("{b:02x}")).collect();
        Self {
            name: format!("{stem}.{hex}.{extension}"),
            media,
            body,
        }
    }

    /// The path a page links to.
    pub fn path(&self) -> String {
        format!("{PREFIX}{}", self.name)
    }
}

/// The stylesheet.
pub static STYLESHEET: LazyLock<Asset> = LazyLock::new(|| {
    Asset::new(
        "app",
        "css",
        "text/css; charset=utf-8",
        include_str!("assets/app.css"),
    )
});

/// The copy button's script.
pub static SCRIPT: LazyLock<Asset> = LazyLock::new(|| {
    Asset::new(
        "copy",
        "js",
        "text/javascript; charset=utf-8",
        include_str!("assets/copy.js"),
    )
});

/// `GET /assets/{name}`: an embedded file by its hashed name, else 404 (an old name after
/// a release is gone: the page that named it is old too).
pub async fn serve(Path(name): Path<String>) -> Result<Response, ApiError> {
    let asset = [&*STYLESHEET, &*SCRIPT]
        .into_iter()
        .find(|asset| asset.name == name)
        .ok_or(ApiError::NotFound)?;
    Ok((
        [
            (header::CONTENT_TYPE, HeaderValue::from_static(asset.media)),
            (header::CACHE_CONTROL, IMMUTABLE),
        ],
        asset.body,
    )
        .into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_carry_a_hash_of_the_content() {
        let a = Asset::new("app", "css", "text/css", "a {}");
        let b = Asset::new("app", "css", "text/css", "b {}");
        assert_ne!(a.name, b.name);
        assert!(
            a.name.starts_with("app.") && a.name.ends_with(".css"),
            "{}",
            a.name
        );
        assert_eq!(a.name.len(), "app..css".len() + 16);
        assert_eq!(a.path(), format!("/assets/{}", a.name));
    }
}
