//! The kill backstop of a call: how long tarkd waits for a worker's answer
//! before it takes the worker for stuck and kills it.
//!
//! The worker keeps its own deadline (wasmtime's epoch, its own watchdog
//! thread), so a worker that is not stuck answers by the deadline; tarkd's
//! timer only backs that up. But tarkd's timer runs on tarkd's threads: when
//! tarkd itself could not run (its runtime busy elsewhere, the host swapping,
//! the process stopped), the timer fires late, and the answer may be sitting
//! unread in the channel. A timer that fires more than [`STALL`] late is
//! taken as tarkd's stall, not the plugin's silence: it is re-armed for
//! the grace period (at most [`MAX_RETRIES`] times), and logged. A plugin is
//! killed only for time tarkd was there to see.

use std::future::Future;
use std::time::Duration;

use tokio::time::Instant;

/// How late a timer may fire before tarkd counts itself as stalled. Far
/// above a loaded scheduler's jitter (milliseconds), far below a stall
/// that blames anyone (seconds).
pub const STALL: Duration = Duration::from_millis(250);

/// How many times a stalled backstop is re-armed.
pub const MAX_RETRIES: u32 = 4;

/// The backstop passed while tarkd was running.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Overran {
    /// Time tarkd was stalled while waiting (not held against the worker).
    pub stalled: Duration,
}

/// `call`'s output, unless `limit` (then `grace` per re-arm) passes in time
/// tarkd was running.
pub async fn within<F: Future>(
    limit: Duration,
    grace: Duration,
    call: F,
) -> Result<F::Output, Overran> {
    let mut call = std::pin::pin!(call);
    let mut deadline = Instant::now() + limit;
    let mut stalled = Duration::ZERO;
    let mut retries = 0;
    loop {
        match tokio::time::timeout_at(deadline, &mut call).await {
            Ok(out) => return Ok(out),
            Err(_) => {
                let late = Instant::now().saturating_duration_since(deadline);
                if late <= STALL || retries == MAX_RETRIES {
                    return Err(Overran { stalled });
                }
                retries += 1;
                stalled += late;
                tracing::warn!(
                    "tarkd itself did not run for {} ms while a worker's answer was due; waiting {} ms more before judging the worker",
                    late.as_millis(),
                    grace.as_millis()
                );
                deadline = Instant::now() + grace;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    }

    #[test]
    fn a_stall_of_tarkd_is_not_the_workers_silence() -> std::io::Result<()> {
        runtime()?.block_on(async {
            // The answer is sent at 50 ms by another task (as the channel's
            // connection task delivers it); the backstop is 100 ms; tarkd's
            // only thread is blocked from 20 ms to 1 s, so when it runs
            // again the backstop is overdue and the answer not yet handed on.
            let (tx, rx) = tokio::sync::oneshot::channel();
            let blocker = tokio::spawn(async {
                tokio::time::sleep(Duration::from_millis(20)).await;
                std::thread::sleep(Duration::from_secs(1));
            });
            let answerer = tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(50)).await;
                let _ = tx.send(42);
            });
            let got = within(Duration::from_millis(100), Duration::from_secs(5), rx).await;
            let _ = tokio::join!(blocker, answerer);
            assert_eq!(got.map(Result::ok), Ok(Some(42)));
        });
        Ok(())
    }

    #[test]
    fn a_silent_worker_is_given_up_on() -> std::io::Result<()> {
        runtime()?.block_on(async {
            let never = std::future::pending::<()>();
            let got = within(Duration::from_millis(50), Duration::from_millis(50), never).await;
            assert!(got.is_err());
        });
        Ok(())
    }
}
