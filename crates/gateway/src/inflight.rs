//! Counting requests in flight per backend: a guard taken when a request is sent, released
//! when the response body has been fully passed on (or dropped by a client that went away).

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use hyper::body::{Body, Frame, Incoming, SizeHint};

use crate::backend::Pool;

/// Counts a request in its backend's in-flight number until dropped.
pub struct InFlight {
    pool: Arc<Pool>,
    id: usize,
}

impl InFlight {
    pub(crate) fn enter(pool: Arc<Pool>, id: usize) -> Self {
        let backend = &pool.backends[id];
        backend
            .in_flight
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        backend
            .requests
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Self { pool, id }
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.pool.backends[self.id]
            .in_flight
            .fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
    }
}

/// A backend's response body, streamed; the request leaves the in-flight count when the body
/// ends or the client goes away (the body is dropped either way).
pub struct Tracked {
    pub(crate) inner: Incoming,
    pub(crate) _guard: InFlight,
}

impl Body for Tracked {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
