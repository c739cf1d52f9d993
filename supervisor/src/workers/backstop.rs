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
//!
//! A worker holds several calls at once and runs them one after another
//! (`super::window`), so a call's time starts at its turn, not when it was
//! sent: each answer the worker gives restarts the timers of the calls
//! still waiting. A worker that answers nothing for `limit` is stuck, with
//! all it holds. And however many answers come, a call is given up on at
//! `most` after it was sent (a limit for each call that can be ahead of it
//! and its own): a worker that answers the calls behind one while holding
//! it does not hold it for ever.

use std::future::Future;
use std::time::Duration;

use tokio::sync::watch;
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
/// tarkd was running with no change of `answers` (the worker's count of
/// answers: each one means the worker moved on to a call behind it), or
/// `most` passes since it was sent.
pub async fn within<F: Future>(
    (limit, most): (Duration, Duration),
    grace: Duration,
    answers: &mut watch::Receiver<u64>,
    call: F,
) -> Result<F::Output, Overran> {
    let mut call = std::pin::pin!(call);
    let sent = Instant::now();
    let last = sent + most.max(limit);
    let mut deadline = sent + limit;
    let mut stalled = Duration::ZERO;
    let mut retries = 0;
    // Once the counter's owner is gone, no answer restarts the timer.
    let mut counted = true;
    loop {
        tokio::select! {
            biased;
            out = &mut call => return Ok(out),
            changed = answers.changed(), if counted => match changed {
                Ok(()) => deadline = deadline.max((Instant::now() + limit).min(last)),
                Err(_) => counted = false,
            },
            () = tokio::time::sleep_until(deadline) => {
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
            let (_count, mut answers) = watch::channel(0);
            let limit = Duration::from_millis(100);
            let got = within((limit, limit), Duration::from_secs(5), &mut answers, rx).await;
            let _ = tokio::join!(blocker, answerer);
            assert_eq!(got.map(Result::ok), Ok(Some(42)));
        });
        Ok(())
    }

    #[test]
    fn a_silent_worker_is_given_up_on() -> std::io::Result<()> {
        runtime()?.block_on(async {
            let never = std::future::pending::<()>();
            let (_count, mut answers) = watch::channel(0);
            let (limit, grace) = (Duration::from_millis(50), Duration::from_millis(50));
            let got = within((limit, limit), grace, &mut answers, never).await;
            assert!(got.is_err());
        });
        Ok(())
    }

    #[test]
    fn a_call_behind_others_is_timed_from_the_last_answer() -> std::io::Result<()> {
        runtime()?.block_on(async {
            // Five calls ahead answer 100 ms apart, then this one 100 ms
            // later: 600 ms in all against a 400 ms limit, never 400 ms
            // without an answer (a scheduling delay of up to STALL keeps
            // every gap under the limit; a longer one is tarkd's stall).
            let (count, mut answers) = watch::channel(0u64);
            let (tx, rx) = tokio::sync::oneshot::channel();
            let worker = tokio::spawn(async move {
                for _ in 0..5 {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    count.send_modify(|n| *n += 1);
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
                let _ = tx.send(7);
                count
            });
            let (limit, most) = (Duration::from_millis(400), Duration::from_secs(30));
            let got = within((limit, most), Duration::from_secs(5), &mut answers, rx).await;
            assert_eq!(got.map(Result::ok), Ok(Some(7)));
            // Its owner gone, the counter restarts nothing: a silent call
            // is still given up on.
            drop(worker.await);
            let never = std::future::pending::<()>();
            let short = Duration::from_millis(50);
            assert!(
                within((short, most), short, &mut answers, never)
                    .await
                    .is_err()
            );
        });
        Ok(())
    }

    #[test]
    fn answers_to_others_do_not_hold_a_call_for_ever() -> std::io::Result<()> {
        runtime()?.block_on(async {
            // A worker answering the calls behind this one every 20 ms
            // while holding it: given up on at `most`, 300 ms, not never.
            let (count, mut answers) = watch::channel(0u64);
            let others = tokio::spawn(async move {
                loop {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    count.send_modify(|n| *n += 1);
                }
            });
            let (limit, most) = (Duration::from_millis(100), Duration::from_millis(300));
            let never = std::future::pending::<()>();
            // Ten seconds, thirty times `most`: the old backstop never ended.
            let bounded = within((limit, most), limit, &mut answers, never);
            let got = tokio::time::timeout(Duration::from_secs(10), bounded).await;
            others.abort();
            assert!(matches!(got, Ok(Err(_))), "{got:?}");
        });
        Ok(())
    }
}
