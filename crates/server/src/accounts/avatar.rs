//! Avatars: `PUT /users/{id}/avatar` takes an image and answers 202 with a job; a worker
//! makes 64 px and 256 px PNG thumbnails; `GET /users/{id}/avatar?size=64|256` serves them.
//!
//! An upload is checked before any job exists: its first bytes must be those of PNG, JPEG
//! or WebP (else 415, whatever the name or `Content-Type` say), and it must decode within
//! [`MAX_SIDE`] pixels a side (else 422), so a worker never receives a file it cannot use
//! and a small file cannot unpack into gigabytes. The upload waits in the database, and the
//! thumbnails live there too, so every instance and every worker can reach them.
//!
//! The job is idempotent: thumbnails are upserted by `(user, size)` and the upload row is
//! deleted in the same transaction; a second delivery finds the upload gone and the avatar
//! made from it. An older upload processed late never replaces a newer avatar (uploads are
//! ordered by id).
//!
//! The upload is stored before its job is enqueued (the queue may live elsewhere, such as
//! RabbitMQ), so a crash in between, or an enqueue lost after its status row was written,
//! would leave it waiting forever. [`sweep`] closes that gap: every instance periodically
//! enqueues again the job of any upload still waiting [`SWEEP_AFTER_MS`] after it was
//! stored or last swept. The job's dedup key and its idempotence make an extra delivery
//! harmless.

use std::io::Cursor;
use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::Response;
use basis_queue::{ClaimedJob, JobError};
use basis_store::avatars;
use image::{DynamicImage, ImageFormat, ImageReader};
use serde::Deserialize;

use crate::error::{ApiError, ApiResult};
use crate::identity::caller::Authenticated;
use crate::jobs::context::JobContext;
use crate::state::AppState;

/// The job kind.
pub const THUMBNAILS: &str = "avatar.thumbnails";
/// The largest upload, bytes (413 beyond).
pub const MAX_UPLOAD_BYTES: usize = 5 * 1024 * 1024;
/// The largest accepted width or height, pixels.
pub const MAX_SIDE: u32 = 8192;
/// Uploads decoded at the same time in one process (each can need `MAX_SIDE`² × 4 bytes).
static UPLOAD_DECODES: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(2);
/// The thumbnail sizes, pixels (square).
pub const SIZES: [u32; 2] = [64, 256];

/// Why an upload is refused.
#[derive(Debug, PartialEq, Eq)]
pub enum ImageProblem {
    /// Not PNG, JPEG or WebP by content.
    UnsupportedType,
    /// Claims a supported type but does not decode (or is too large).
    Undecodable(String),
}

/// The upload's format, by its first bytes.
pub fn sniff(bytes: &[u8]) -> Result<ImageFormat, ImageProblem> {
    match image::guess_format(bytes) {
        Ok(format @ (ImageFormat::Png | ImageFormat::Jpeg | ImageFormat::WebP)) => Ok(format),
        _ => Err(ImageProblem::UnsupportedType),
    }
}

/// Decodes an upload, refusing anything beyond [`MAX_SIDE`] (CPU-heavy: blocking pool).
pub fn decode(bytes: &[u8]) -> Result<DynamicImage, ImageProblem> {
    let format = sniff(bytes)?;
    let mut reader = ImageReader::with_format(Cursor::new(bytes), format);
    let mut limits = image::Limits::default();
    limits.max_image_width = Some(MAX_SIDE);
    limits.max_image_height = Some(MAX_SIDE);
    limits.max_alloc = Some(512 * 1024 * 1024);
    reader.limits(limits);
    reader
        .decode()
        .map_err(|e| ImageProblem::Undecodable(e.to_string()))
}

/// The square PNG thumbnails of an upload, centre-cropped (CPU-heavy: blocking pool).
pub fn thumbnails_of(bytes: &[u8]) -> Result<Vec<(u32, Vec<u8>)>, ImageProblem> {
    let image = decode(bytes)?;
    SIZES
        .iter()
        .map(|&side| {
            let thumb = image.resize_to_fill(side, side, image::imageops::FilterType::CatmullRom);
            let mut png = Vec::new();
            thumb
                .write_to(&mut Cursor::new(&mut png), ImageFormat::Png)
                .map_err(|e| ImageProblem::Undecodable(e.to_string()))?;
            Ok((side, png))
        })
        .collect()
}

/// Uploads a new avatar (owner or admin): 202 with the thumbnail job.
#[utoipa::path(put, path = "/users/{id}/avatar", tag = "users",
    params(("id" = String, Path, description = "The account's id")),
    request_body(content = Vec<u8>, description = "A PNG, JPEG or WebP image, at most 5 MB", content_type = "image/*"),
    responses(
        (status = 202, body = crate::jobs::JobAccepted, headers(("Location" = String, description = "The job: /jobs/{id}"))),
        (status = 401), (status = 403), (status = 404),
        (status = 413, description = "Larger than 5 MB", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 415, description = "Not PNG, JPEG or WebP", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 422, description = "Not a decodable image", body = crate::error::Problem, content_type = "application/problem+json"),
    ))]
pub async fn upload(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    Path(id): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<Response> {
    caller.require_account()?;
    let principal = caller.act_for(&id)?;
    let bytes = body.map_err(|rejection| {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::PayloadTooLarge
        } else {
            ApiError::BadRequest(rejection.body_text())
        }
    })?;
    let job_id = accept_upload(&state, &id, &principal.user_id, bytes).await?;
    Ok(crate::jobs::accepted(job_id))
}

/// Checks an upload for account `id` (the type from its first bytes, else 415; it must
/// decode within [`MAX_SIDE`] pixels a side, else 422), stores it and submits its
/// thumbnail job on behalf of `owner`; answers the job's id.
pub async fn accept_upload(
    state: &AppState,
    id: &str,
    owner: &str,
    bytes: Bytes,
) -> ApiResult<String> {
    basis_store::users::find(&state.store, id)
        .await?
        .ok_or(ApiError::NotFound)?;
    let checked = bytes.clone();
    // A decode may take hundreds of MB for a large photo: a few at a time per process.
    let _permit = UPLOAD_DECODES
        .acquire()
        .await
        .map_err(|e| ApiError::Internal(e.into()))?;
    tokio::task::spawn_blocking(move || decode(&checked).map(drop))
        .await
        .map_err(|e| ApiError::Internal(e.into()))?
        .map_err(|problem| match problem {
            ImageProblem::UnsupportedType => ApiError::UnsupportedMediaType(
                "the avatar must be a PNG, JPEG or WebP image".into(),
            ),
            ImageProblem::Undecodable(_) => ApiError::Unprocessable(format!(
                "the image cannot be decoded (or is over {MAX_SIDE} pixels a side)"
            )),
        })?;

    let job_id = crate::jobs::new_id();
    let now = state.clock.now_ms();
    let upload_id = avatars::insert_upload(&state.store, id, &job_id, &bytes, now).await?;
    let payload = thumbnail_payload(upload_id, id);
    let submitted = state
        .jobs
        .submit(
            crate::jobs::MEDIA_QUEUE,
            THUMBNAILS,
            owner,
            Some(job_id),
            payload,
            5,
        )
        .await;
    if submitted.is_err() {
        let _ = avatars::delete_upload(&state.store, upload_id).await;
    }
    submitted
}

/// An upload still waiting this long (ms) after it was stored, or last swept, gets its
/// job enqueued again: far longer than a thumbnail takes, even behind a backlog.
pub const SWEEP_AFTER_MS: i64 = 5 * 60 * 1000;
/// How often each instance sweeps.
const SWEEP_EVERY: std::time::Duration = std::time::Duration::from_secs(60);

fn thumbnail_payload(upload_id: i64, user_id: &str) -> serde_json::Map<String, serde_json::Value> {
    let mut payload = serde_json::Map::new();
    payload.insert("uploadId".into(), upload_id.into());
    payload.insert("userId".into(), user_id.into());
    payload
}

/// Enqueues again the thumbnail job of every upload still waiting [`SWEEP_AFTER_MS`]
/// after it was stored or last swept; returns how many. A job whose status row is
/// missing (the crash came before it) is submitted anew under the id the upload names;
/// one whose row exists is enqueued again with the same dedup key.
pub async fn sweep(state: &AppState) -> ApiResult<usize> {
    let now = state.clock.now_ms();
    let stale = avatars::stale_uploads(&state.store, now - SWEEP_AFTER_MS, 100).await?;
    let mut requeued = 0;
    for upload in stale {
        let payload = thumbnail_payload(upload.id, &upload.user_id);
        let status = basis_store::jobs::find(&state.store, &upload.job_id).await?;
        let enqueued = match status {
            None => state
                .jobs
                .submit(
                    crate::jobs::MEDIA_QUEUE,
                    THUMBNAILS,
                    &upload.user_id,
                    Some(upload.job_id.clone()),
                    payload,
                    5,
                )
                .await
                .map(drop),
            Some(row) if row.status == "dead" => {
                // Given up on (it could not be decoded after all): nothing will use it.
                avatars::delete_upload(&state.store, upload.id).await?;
                continue;
            }
            Some(row) => {
                let mut payload = payload;
                payload.insert("jobId".into(), row.id.clone().into());
                let job = basis_queue::NewJob {
                    owner: row.owner_id.clone(),
                    max_attempts: 5,
                    dedup_key: Some(format!("job:{}", row.id)),
                    ..basis_queue::NewJob::new(crate::jobs::MEDIA_QUEUE, THUMBNAILS, payload.into())
                };
                state
                    .jobs
                    .enqueue(job)
                    .await
                    .map(drop)
                    .map_err(ApiError::from)
            }
        };
        match enqueued {
            Ok(()) => {
                avatars::mark_swept(&state.store, upload.id, now).await?;
                tracing::info!(upload = upload.id, job = %upload.job_id, "thumbnail job enqueued again by the sweeper");
                requeued += 1;
            }
            Err(err) => {
                tracing::warn!(upload = upload.id, error = %err, "re-enqueueing a thumbnail job failed; will retry")
            }
        }
    }
    Ok(requeued)
}

/// Runs [`sweep`] every minute (the first a minute after start) until `stop` changes.
pub async fn sweep_periodically(state: AppState, mut stop: tokio::sync::watch::Receiver<bool>) {
    let mut ticks =
        tokio::time::interval_at(tokio::time::Instant::now() + SWEEP_EVERY, SWEEP_EVERY);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticks.tick() => {
                if let Err(err) = sweep(&state).await {
                    tracing::warn!(error = %err, "sweeping avatar uploads failed; will retry");
                }
            }
            _ = stop.changed() => return,
        }
    }
}

/// Which thumbnail to serve.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AvatarQuery {
    /// 64 or 256 (the default).
    #[param(value_type = Option<crate::http::schema::AvatarSize>)]
    pub size: Option<u32>,
}

/// Serves an avatar thumbnail (404 until the first one is ready).
#[utoipa::path(get, path = "/users/{id}/avatar", tag = "users",
    params(("id" = String, Path, description = "The account's id"), AvatarQuery),
    responses(
        (status = 200, description = "The PNG thumbnail", content_type = "image/png"),
        (status = 304, description = "Not modified"),
        (status = 400, body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 404, body = crate::error::Problem, content_type = "application/problem+json"),
    ))]
pub async fn read(
    State(state): State<AppState>,
    Path(id): Path<String>,
    query: Result<Query<AvatarQuery>, axum::extract::rejection::QueryRejection>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let Query(query) = query.map_err(|e| ApiError::BadRequest(e.body_text()))?;
    let size = query.size.unwrap_or(256);
    if !SIZES.contains(&size) {
        return Err(ApiError::field("size", "must be 64 or 256"));
    }
    let avatars::Thumbnail { image, etag } = avatars::thumbnail(&state.store, &id, size)
        .await?
        .ok_or(ApiError::NotFound)?;
    let etag =
        HeaderValue::from_str(&format!("\"{etag}\"")).map_err(|e| ApiError::Internal(e.into()))?;
    let fresh = headers
        .get(header::IF_NONE_MATCH)
        .is_some_and(|offered| offered == etag);
    let mut response = if fresh {
        let mut response = Response::new(Body::empty());
        *response.status_mut() = StatusCode::NOT_MODIFIED;
        response
    } else {
        let mut response = Response::new(Body::from(image));
        response
            .headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static("image/png"));
        response
    };
    let headers = response.headers_mut();
    headers.insert(header::ETAG, etag);
    // Shared caches may keep it briefly; a new avatar shows within a minute.
    headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=60"),
    );
    Ok(response)
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ThumbnailJob {
    upload_id: i64,
    user_id: String,
}

fn retry(err: impl std::fmt::Display) -> JobError {
    JobError::Retry(err.to_string())
}

/// The worker side: makes and stores the thumbnails of one upload.
pub async fn thumbnails(
    ctx: Arc<JobContext>,
    job: ClaimedJob,
) -> Result<Option<serde_json::Value>, JobError> {
    let task: ThumbnailJob = serde_json::from_value(job.payload).map_err(JobError::bad_payload)?;
    let done = serde_json::json!({
        "sizes": SIZES,
        "urls": SIZES.iter().map(|s| format!("/users/{}/avatar?size={s}", task.user_id)).collect::<Vec<_>>(),
    });
    let upload = avatars::upload(&ctx.store, task.upload_id)
        .await
        .map_err(retry)?;
    let Some(upload) = upload else {
        // Done by an earlier delivery (the upload goes with the thumbnails' commit), or the
        // account is gone.
        let made = avatars::made_from(&ctx.store, &task.user_id, task.upload_id)
            .await
            .map_err(retry)?;
        return match made {
            true => Ok(Some(done)),
            false => Err(JobError::Fatal("the upload no longer exists".into())),
        };
    };
    let thumbs = tokio::task::spawn_blocking(move || thumbnails_of(&upload))
        .await
        .map_err(retry)?
        .map_err(|_| JobError::Fatal("the image cannot be decoded".into()))?;
    let now = ctx.clock.now_ms();
    avatars::store_thumbnails(&ctx.store, &task.user_id, task.upload_id, &thumbs, now)
        .await
        .map_err(retry)?;
    Ok(Some(done))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encoded(format: ImageFormat, width: u32, height: u32) -> Vec<u8> {
        let image = DynamicImage::ImageRgb8(image::RgbImage::from_fn(width, height, |x, y| {
            image::Rgb([(x % 256) as u8, (y % 256) as u8, 128])
        }));
        let mut out = Vec::new();
        image.write_to(&mut Cursor::new(&mut out), format).unwrap();
        out
    }

    #[test]
    fn the_type_comes_from_the_content_not_the_name() {
        assert_eq!(
            sniff(&encoded(ImageFormat::Png, 4, 4)),
            Ok(ImageFormat::Png)
        );
        assert_eq!(
            sniff(&encoded(ImageFormat::Jpeg, 4, 4)),
            Ok(ImageFormat::Jpeg)
        );
        assert_eq!(
            sniff(&encoded(ImageFormat::WebP, 4, 4)),
            Ok(ImageFormat::WebP)
        );
        assert_eq!(sniff(b"GIF89a......"), Err(ImageProblem::UnsupportedType));
        assert_eq!(
            sniff(b"<svg xmlns=...>"),
            Err(ImageProblem::UnsupportedType)
        );
    }

    #[test]
    fn a_truncated_image_is_undecodable() {
        let png = encoded(ImageFormat::Png, 32, 32);
        assert!(matches!(
            decode(&png[..png.len() / 2]),
            Err(ImageProblem::Undecodable(_))
        ));
    }

    #[test]
    fn thumbnails_are_square_at_each_size() {
        for (side, png) in thumbnails_of(&encoded(ImageFormat::Jpeg, 300, 120)).unwrap() {
            let thumb = image::load_from_memory(&png).unwrap();
            assert_eq!((thumb.width(), thumb.height()), (side, side));
        }
    }
}
