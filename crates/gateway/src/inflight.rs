//! Counting requests in flight per backend: a guard taken when a request is sent, released
//! when the response body has been fully passed on (or dropped by a client that went away).

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll};

use bytes::Bytes;
use hyper::body::{Body, Frame, Incoming, SizeHint};

use crate::backend::Live;
use crate::upstream::Lease;

/// Counts a request in its backend's in-flight number until dropped.
pub struct InFlight {
    live: Arc<Live>,
}

impl InFlight {
    pub(crate) fn enter(live: &Arc<Live>) -> Self {
        live.in_flight.fetch_add(1, Ordering::Relaxed);
        live.requests.fetch_add(1, Ordering::Relaxed);
        Self { live: live.clone() }
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.live.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A backend's response body, streamed; the request leaves the in-flight count when the body
/// ends or the client goes away (the body is dropped either way). A body that ended gives its
/// upstream connection back for the next request; one dropped early closes it.
pub struct Tracked {
    inner: Incoming,
    lease: Option<Lease>,
    ended: bool,
    _guard: InFlight,
}

impl Tracked {
    pub(crate) fn new(inner: Incoming, lease: Option<Lease>, guard: InFlight) -> Self {
        Self {
            inner,
            lease,
            ended: false,
            _guard: guard,
        }
    }
}

impl Body for Tracked {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(None) => self.ended = true,
            Poll::Ready(Some(Err(_))) => self.lease = None,
            _ => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for Tracked {
    fn drop(&mut self) {
        if let Some(lease) = self.lease.take()
            && (self.ended || self.inner.is_end_stream())
        {
            lease.release();
        }
    }
}
