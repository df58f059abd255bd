//! Batched acknowledgements for the worker: every finished job hands its ack to one task,
//! which sends whatever has gathered as one [`Backend::complete_many`] (one fenced
//! statement on the SQL engines) and answers each job with its own outcome.
//!
//! Nothing waits to fill a batch: while one batch is on its way the next gathers, so an
//! idle worker acknowledges each job at once and a busy one many per statement. A job's
//! task waits for its answer, so the job keeps its place among those the worker holds
//! until its ack is stored; its run slot is already free for the next job.

use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};

use crate::{Ack, Backend, Error, Lease, Result};

/// Most acks in one statement.
const MAX_BATCH: usize = 256;

type Request = (Ack, oneshot::Sender<Result<()>>);

/// The handle jobs send their acks through; the task ends when the last handle is dropped.
#[derive(Clone)]
pub(crate) struct Acker {
    tx: mpsc::UnboundedSender<Request>,
}

impl Acker {
    pub fn spawn(backend: Arc<dyn Backend>) -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(run(backend, rx));
        Self { tx }
    }

    /// Completes the attempt; answers as [`Backend::complete`] would.
    pub async fn complete(&self, lease: Lease, result: Option<serde_json::Value>) -> Result<()> {
        let (reply, answer) = oneshot::channel();
        self.tx
            .send(((lease, result), reply))
            .map_err(|_| Error::Unavailable("the worker's ack task has stopped".into()))?;
        answer.await.unwrap_or_else(|_| {
            Err(Error::Unavailable(
                "the worker's ack task has stopped".into(),
            ))
        })
    }
}

async fn run(backend: Arc<dyn Backend>, mut rx: mpsc::UnboundedReceiver<Request>) {
    let mut acks = Vec::with_capacity(MAX_BATCH);
    let mut replies = Vec::with_capacity(MAX_BATCH);
    while let Some((ack, reply)) = rx.recv().await {
        acks.push(ack);
        replies.push(reply);
        while acks.len() < MAX_BATCH {
            let Ok((ack, reply)) = rx.try_recv() else {
                break;
            };
            acks.push(ack);
            replies.push(reply);
        }
        match backend.complete_many(&acks).await {
            Ok(answers) => {
                for (reply, answer) in replies.drain(..).zip(answers) {
                    let _ = reply.send(answer);
                }
            }
            // The whole statement failed: every job of it keeps its lease until it expires
            // and runs again, as after a failed single `complete`.
            Err(e) => {
                let unavailable = matches!(e, Error::Unavailable(_));
                for reply in replies.drain(..) {
                    let _ = reply.send(Err(if unavailable {
                        Error::Unavailable(e.to_string())
                    } else {
                        Error::Backend(e.to_string())
                    }));
                }
            }
        }
        replies.clear();
        acks.clear();
    }
}
