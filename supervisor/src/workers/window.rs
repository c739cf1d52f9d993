//! How many calls tarkd has sent a worker and not had answered.
//!
//! A worker runs one guest call at a time. When tarkd sent it one call and
//! waited for the answer before sending the next, every call paid a round
//! trip through both processes' schedulers (tarkd 5 context switches and 15
//! system calls per call under load, against 0.3 and 2 for two plain gRPC
//! hops): the worker slept between calls, and tarkd's channel task woke for
//! each request alone. Now up to [`WINDOW`] calls wait in the worker's
//! channel and it goes from one to the next; the frames of several calls
//! share a wake-up and a write.
//!
//! What a waiting call may cost the worker is bounded: a request larger
//! than [`SMALL`] is sent only into an empty window, so at most
//! `WINDOW - 1` small requests wait beside one of any size. A call's kill
//! timer still runs from its turn (`super::backstop`): each answer restarts
//! the timers of the calls behind it.

use tokio::sync::{AcquireError, Semaphore, SemaphorePermit, watch};

/// Calls a worker may hold at once: enough that it never waits for tarkd
/// under load, few enough that what waits is small.
pub const WINDOW: u32 = 8;

/// The largest request that shares the window.
pub const SMALL: usize = 64 << 10;

/// One worker's window and its count of answers.
pub struct Window {
    room: Semaphore,
    answers: watch::Sender<u64>,
}

impl Default for Window {
    fn default() -> Self {
        Self {
            room: Semaphore::new(WINDOW as usize),
            answers: watch::Sender::new(0),
        }
    }
}

impl Window {
    /// Waits for room for a request of `size` bytes. The permit is held
    /// until the call is answered or abandoned.
    pub async fn enter(&self, size: usize) -> Result<SemaphorePermit<'_>, AcquireError> {
        self.room.acquire_many(permits(size)).await
    }

    /// The count of answers, for a call's backstop.
    pub fn answers(&self) -> watch::Receiver<u64> {
        self.answers.subscribe()
    }

    /// The worker answered a call (with a result or a failure): the call
    /// behind it has its turn.
    pub fn answered(&self) {
        self.answers.send_modify(|n| *n = n.wrapping_add(1));
    }
}

/// Permits a request of `size` bytes takes: one if small, the whole window
/// if not.
fn permits(size: usize) -> u32 {
    if size <= SMALL { 1 } else { WINDOW }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_small_requests_share_the_window() {
        let cases = [
            (0, 1),
            (1, 1),
            (SMALL, 1),
            (SMALL + 1, WINDOW),
            (256 << 20, WINDOW),
        ];
        for (size, want) in cases {
            assert_eq!(permits(size), want, "{size} bytes");
        }
    }

    #[test]
    fn a_large_request_waits_for_an_empty_window_and_then_fills_it() -> std::io::Result<()> {
        let rt = tokio::runtime::Builder::new_current_thread().build()?;
        rt.block_on(async {
            let w = Window::default();
            let small = w.enter(10).await;
            assert!(small.is_ok());
            // One small call in: a large one does not fit.
            assert!(w.room.try_acquire_many(WINDOW).is_err());
            drop(small);
            let large = w.enter(SMALL + 1).await;
            assert!(large.is_ok());
            assert!(w.room.try_acquire().is_err(), "nothing beside a large call");
        });
        Ok(())
    }

    #[test]
    fn answers_are_counted_for_the_calls_behind() {
        let w = Window::default();
        let mut behind = w.answers();
        w.answered();
        w.answered();
        assert!(behind.has_changed().unwrap_or(false));
        assert_eq!(*behind.borrow_and_update(), 2);
    }
}
