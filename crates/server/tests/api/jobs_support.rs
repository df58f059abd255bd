//! Helpers for the background-job tests: following a job to its end, running a worker
//! beside an app started with `--workers off`, and images to upload.

use std::io::Cursor;
use std::sync::Arc;
use std::time::Duration;

use basis_queue::{Backend, JobId, JobStatus};
use basis_server::jobs::context::JobContext;
use basis_server::workers::{registry, worker_config};
use image::{DynamicImage, ImageFormat};
use reqwest::Method;
use serde_json::Value;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::helpers::TestApp;

/// How many times a condition is checked before a test gives up (every 20 ms: 20 s).
const POLLS: usize = 1_000;

/// Polls `check` until it returns `Some`, for at most [`POLLS`] rounds.
pub async fn eventually<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    for _ in 0..POLLS {
        if let Some(value) = check().await {
            return value;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("gave up waiting for {what}");
}

impl TestApp {
    /// `GET /jobs/{id}` as `token`, asserting 200.
    pub async fn job_status(&self, id: &str, token: &str) -> Value {
        let response = self
            .bearer(Method::GET, &format!("/jobs/{id}"), token)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "{:?}", response.text().await);
        response.json().await.unwrap()
    }

    /// Follows a job until it is `done` or `dead`, returning its last status.
    pub async fn finished_job(&self, id: &str, token: &str) -> Value {
        eventually("the job to finish", || async {
            let job = self.job_status(id, token).await;
            matches!(job["status"].as_str(), Some("done" | "dead")).then_some(job)
        })
        .await
    }

    /// Waits until the queue reports job `id` (the backend's id) finished.
    pub async fn backend_job_finished(&self, id: &JobId) -> JobStatus {
        let backend = self.state.jobs.backend().clone();
        eventually("the backend job to finish", || {
            let backend = backend.clone();
            async move {
                let info = backend.job(id).await.expect("the job's state")?;
                matches!(info.status, JobStatus::Done | JobStatus::Dead).then_some(info.status)
            }
        })
        .await
    }

    /// Starts a worker on this app's queue, as `basis worker` would run one.
    pub fn start_worker(&self) -> RunningWorker {
        let ctx = Arc::new(JobContext {
            store: self.state.store.clone(),
            clock: self.state.clock.clone(),
            mailer: self.state.identity.mailer.clone(),
            clicks: None,
            shop: Some(self.state.shop.clone()),
            webhooks: Some(self.state.webhooks.clone()),
        });
        let worker = basis_queue::worker::Worker::new(
            self.state.jobs.backend().clone(),
            self.state.clock.clone(),
            worker_config(&self.config),
            registry(&ctx),
        );
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            worker
                .run(async move {
                    let _ = stopped.await;
                })
                .await;
        });
        RunningWorker {
            stop: Some(stop),
            task,
        }
    }

    /// Jobs waiting on `queue`.
    pub async fn depth(&self, queue: &str) -> u64 {
        let stats = self.state.jobs.backend().stats().await.unwrap();
        stats
            .iter()
            .find(|s| s.queue == queue)
            .map_or(0, |s| s.depth + s.running)
    }
}

/// A worker started by a test.
pub struct RunningWorker {
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<()>,
}

impl RunningWorker {
    /// Stops it gracefully.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        (&mut self.task).await.expect("the worker task");
    }
}

impl Drop for RunningWorker {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A `width`×`height` test picture encoded as `format`.
pub fn picture(format: ImageFormat, width: u32, height: u32) -> Vec<u8> {
    let image = DynamicImage::ImageRgb8(image::RgbImage::from_fn(width, height, |x, y| {
        image::Rgb([(x * 7 % 256) as u8, (y * 5 % 256) as u8, 90])
    }));
    let mut out = Vec::new();
    image
        .write_to(&mut Cursor::new(&mut out), format)
        .expect("an encoded picture");
    out
}

/// The backend as a trait object (for calls the tests make directly).
pub fn backend(app: &TestApp) -> Arc<dyn Backend> {
    app.state.jobs.backend().clone()
}
