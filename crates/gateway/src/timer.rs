//! One timer per client connection for the per-request deadlines of an HTTP/1.1 connection:
//! hyper's header read timeout and the proxy's wait for the backend's response headers.
//!
//! Both would otherwise arm a tokio timer for every request: created, inserted into the
//! runtime's timer wheel when first polled, and taken out again when the request moves on
//! (hyper also boxes a new one each time). A [`ConnectionTimer`] hands out deadlines that share
//! one tokio timer instead. That timer is never set later than the deadline being waited for;
//! when it fires before it (it was set for an earlier request), the deadline still waiting
//! moves it forward. On a busy keep-alive connection it fires about once per timeout period
//! instead of being inserted and removed per request.
//!
//! The shared timer keeps one waker and one deadline, so a `ConnectionTimer` serves one task
//! waiting for one deadline at a time: an HTTP/1.1 connection, whose requests hyper polls
//! inside the connection's task one after another, and which starts reading the next request's
//! headers only once the previous response is written, long after the wait for the backend's
//! headers ended. HTTP/2 streams run as tasks of their own and keep tokio's timers.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::time::Instant;

type Shared = Arc<Mutex<Option<Pin<Box<tokio::time::Sleep>>>>>;

/// The deadlines of one HTTP/1.1 client connection; cheap to clone (the clones share the timer).
#[derive(Clone, Default)]
pub struct ConnectionTimer {
    shared: Shared,
}

impl ConnectionTimer {
    /// A future that completes at `deadline`.
    pub fn deadline(&self, deadline: Instant) -> Deadline {
        Deadline {
            shared: self.shared.clone(),
            deadline,
        }
    }

    /// Runs `future` for at most `duration`; `Err` when the time ran out first.
    pub async fn timeout<F: Future>(
        &self,
        duration: Duration,
        future: F,
    ) -> Result<F::Output, Elapsed> {
        let mut deadline = self.deadline(Instant::now() + duration);
        let mut future = std::pin::pin!(future);
        std::future::poll_fn(|cx| {
            if let Poll::Ready(output) = future.as_mut().poll(cx) {
                return Poll::Ready(Ok(output));
            }
            Pin::new(&mut deadline).poll(cx).map(|()| Err(Elapsed))
        })
        .await
    }
}

/// The time given to [`ConnectionTimer::timeout`] ran out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Elapsed;

impl hyper::rt::Timer for ConnectionTimer {
    fn sleep(&self, duration: Duration) -> Pin<Box<dyn hyper::rt::Sleep>> {
        Box::pin(self.deadline(Instant::now() + duration))
    }

    fn sleep_until(&self, deadline: std::time::Instant) -> Pin<Box<dyn hyper::rt::Sleep>> {
        Box::pin(self.deadline(Instant::from_std(deadline)))
    }

    fn now(&self) -> std::time::Instant {
        // tokio's clock, as hyper-util's `TokioTimer` uses, so paused test time applies.
        Instant::now().into_std()
    }
}

/// One deadline of a [`ConnectionTimer`].
pub struct Deadline {
    shared: Shared,
    deadline: Instant,
}

impl hyper::rt::Sleep for Deadline {}

impl Future for Deadline {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let deadline = self.deadline;
        if Instant::now() >= deadline {
            return Poll::Ready(());
        }
        // Polled by the connection's task only, and never held across an await.
        let mut shared = self.shared.lock().unwrap_or_else(|e| e.into_inner());
        let timer = shared.get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
        if timer.deadline() > deadline {
            timer.as_mut().reset(deadline);
        }
        if timer.as_mut().poll(cx).is_ready() {
            // It fired for an earlier deadline; this one has not passed yet.
            timer.as_mut().reset(deadline);
            if timer.as_mut().poll(cx).is_ready() {
                return Poll::Ready(());
            }
        }
        Poll::Pending
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ready<F: Future + Unpin>(future: &mut F) -> bool {
        let mut cx = Context::from_waker(std::task::Waker::noop());
        Pin::new(future).poll(&mut cx).is_ready()
    }

    #[tokio::test(start_paused = true)]
    async fn a_deadline_completes_at_its_time_and_not_before() {
        let timer = ConnectionTimer::default();
        let mut deadline = timer.deadline(Instant::now() + Duration::from_secs(10));
        assert!(!ready(&mut deadline));
        tokio::time::advance(Duration::from_millis(9_999)).await;
        assert!(!ready(&mut deadline));
        tokio::time::advance(Duration::from_millis(1)).await;
        assert!(ready(&mut deadline));
    }

    #[tokio::test(start_paused = true)]
    async fn the_timer_firing_for_an_earlier_deadline_does_not_end_a_later_one() {
        let timer = ConnectionTimer::default();
        let mut early = timer.deadline(Instant::now() + Duration::from_secs(1));
        assert!(!ready(&mut early));
        drop(early);
        let later = timer.deadline(Instant::now() + Duration::from_secs(5));
        let started = Instant::now();
        later.await;
        assert_eq!(started.elapsed(), Duration::from_secs(5));
    }

    #[tokio::test(start_paused = true)]
    async fn an_earlier_deadline_moves_the_timer_back() {
        let timer = ConnectionTimer::default();
        let mut late = timer.deadline(Instant::now() + Duration::from_secs(60));
        assert!(!ready(&mut late));
        drop(late);
        let started = Instant::now();
        timer
            .deadline(Instant::now() + Duration::from_secs(2))
            .await;
        assert_eq!(started.elapsed(), Duration::from_secs(2));
    }

    #[tokio::test(start_paused = true)]
    async fn timeout_gives_the_output_in_time_and_elapsed_otherwise() {
        let timer = ConnectionTimer::default();
        let quick = timer.timeout(Duration::from_secs(1), async { 7 }).await;
        assert_eq!(quick, Ok(7));
        let slow = timer
            .timeout(
                Duration::from_secs(1),
                tokio::time::sleep(Duration::from_secs(2)),
            )
            .await;
        assert_eq!(slow, Err(Elapsed));
    }
}
