//! systemd's service protocol (`Type=notify`): tarkd says `READY=1` once its
//! socket is bound and its plugins scanned, keeps a `STATUS=` line current,
//! says `STOPPING=1` when it starts to drain, and, under `WatchdogSec=`,
//! sends `WATCHDOG=1` only while it is well: its event loop runs a fresh task
//! and its worker manager answers within half the watchdog interval. A wedged
//! tarkd stops pinging and systemd restarts it.
//!
//! Without `NOTIFY_SOCKET` (not under systemd) every message is a no-op. The
//! workers never inherit the variable: they start with an empty environment.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use sd_notify::NotifyState;

use crate::daemon::Daemon;

fn send(states: &[NotifyState]) {
    if let Err(e) = sd_notify::notify(false, states) {
        tracing::warn!("telling systemd {states:?}: {e}");
    }
}

/// Ready to serve, with what is being served.
pub fn ready(status: &str) {
    send(&[NotifyState::Ready, NotifyState::Status(status)]);
}

/// Draining calls in flight before exiting.
pub fn stopping() {
    send(&[
        NotifyState::Stopping,
        NotifyState::Status("draining calls in flight"),
    ]);
}

/// How often to ping: half the interval systemd set for this process.
pub fn watchdog_every() -> Option<Duration> {
    let var = |name| std::env::var(name).ok();
    ping_every(
        var("WATCHDOG_USEC").as_deref(),
        var("WATCHDOG_PID").as_deref(),
        std::process::id(),
    )
}

/// libsystemd's `sd_watchdog_enabled` rule: `WATCHDOG_USEC` set and
/// positive, and `WATCHDOG_PID`, when set, naming this process. (sd-notify's
/// own check also requires `WATCHDOG_PID`, which systemd may leave out.)
fn ping_every(usec: Option<&str>, pid: Option<&str>, own: u32) -> Option<Duration> {
    let usec: u64 = usec?.parse().ok().filter(|u| *u > 0)?;
    if let Some(pid) = pid
        && pid.parse::<u32>().ok() != Some(own)
    {
        return None;
    }
    Some(Duration::from_micros(usec / 2))
}

/// Pings systemd every `every` while tarkd is well (see the module doc).
pub async fn watchdog(daemon: Arc<Daemon>, every: Duration) {
    let in_flight = Arc::new(AtomicBool::new(false));
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        // One probe at a time: a manager that never answers holds one
        // blocking thread, not one per tick.
        if in_flight.swap(true, Ordering::AcqRel) {
            tracing::warn!("watchdog: the worker manager has not answered; not pinging");
            continue;
        }
        let (daemon, flag) = (Arc::clone(&daemon), Arc::clone(&in_flight));
        let probe = tokio::spawn(async move {
            let answered = tokio::task::spawn_blocking(move || {
                let live = daemon.workers.answers();
                flag.store(false, Ordering::Release);
                live
            });
            answered.await
        });
        match tokio::time::timeout(every, probe).await {
            Ok(Ok(Ok((live, standby)))) => send(&[
                NotifyState::Watchdog,
                NotifyState::Status(&format!("serving; {live} live workers, {standby} standby")),
            ]),
            _ => tracing::warn!("watchdog: tarkd did not answer within {every:?}; not pinging"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn when_the_watchdog_is_on() {
        let half = Some(Duration::from_millis(500));
        let table = [
            (Some("1000000"), None, half),
            (Some("1000000"), Some("42"), half),
            (Some("1000000"), Some("43"), None),
            (Some("1000000"), Some("x"), None),
            (Some("0"), None, None),
            (Some("-5"), None, None),
            (Some("soon"), None, None),
            (None, Some("42"), None),
            (None, None, None),
        ];
        for (usec, pid, want) in table {
            assert_eq!(ping_every(usec, pid, 42), want, "{usec:?} {pid:?}");
        }
    }
}
