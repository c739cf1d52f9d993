//! A call's CPU priority: heavy calls give way to light ones.
//!
//! Without cgroups, all workers compete for the CPU as equals, so 200 tenants
//! running a plugin that spins pushed another plugin's light calls (and tarkd
//! itself) from 6 ms to 90 ms at the median. Here a call that has used more
//! than its plugin's budget of CPU (`limits.idle_after_cpu_ms`) runs on as
//! `SCHED_IDLE` — it still gets every cycle nobody else wants, but any
//! normal task runs first — and so does its worker's next call, until a call
//! stays under the budget again; then the worker is `SCHED_OTHER` once more.
//! The thread changes its own policy (the only one seccomp lets it change),
//! from the epoch tick that already runs every
//! [`TIME_SLICE`](crate::abi::runner::TIME_SLICE) of a call.
//!
//! Going back to `SCHED_OTHER` needs `RLIMIT_NICE` ≥ 20 (tarkd sets it, or
//! the unit's `LimitNICE=+0`); without it a worker once demoted stays idle
//! until it is restarted, which [`report`] says.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

/// The budget, in nanoseconds of the calling thread's CPU (0: no budget).
static BUDGET_NS: AtomicU64 = AtomicU64::new(0);
/// The thread CPU time when the current call started.
static CALL_START_NS: AtomicU64 = AtomicU64::new(0);
/// The last call went past the budget: the next one starts idle.
static HEAVY: AtomicBool = AtomicBool::new(false);
/// The guest thread is SCHED_IDLE now.
static IDLE: AtomicBool = AtomicBool::new(false);

/// CPU time of the calling thread.
fn thread_cpu_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime fills the timespec.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    u64::try_from(ts.tv_sec).unwrap_or(0) * 1_000_000_000 + u64::try_from(ts.tv_nsec).unwrap_or(0)
}

/// Sets the calling thread's policy; whether the kernel took it.
fn set_policy(policy: libc::c_int) -> bool {
    let param = libc::sched_param { sched_priority: 0 };
    // SAFETY: sched_setscheduler on the calling thread (pid 0).
    unsafe { libc::sched_setscheduler(0, policy, &param) == 0 }
}

/// The budget calls run under (from the load request).
pub fn set_budget(budget: Option<Duration>) {
    let ns = budget.map_or(0, |b| u64::try_from(b.as_nanos()).unwrap_or(u64::MAX));
    BUDGET_NS.store(ns, Ordering::Relaxed);
}

/// Whether the running call is at idle priority (its watchdog then ticks
/// less often: an idle call's yields need not be prompt, and 200 workers
/// waking every slice are noise for everyone else).
pub fn is_idle() -> bool {
    IDLE.load(Ordering::Relaxed)
}

/// A call begins (on the guest thread): idle from the start if the last
/// one was heavy.
pub fn call_started() {
    CALL_START_NS.store(thread_cpu_ns(), Ordering::Relaxed);
    if HEAVY.load(Ordering::Relaxed)
        && !IDLE.load(Ordering::Relaxed)
        && set_policy(libc::SCHED_IDLE)
    {
        IDLE.store(true, Ordering::Relaxed);
    }
}

/// A tick of a running call: past the budget, it goes idle.
pub fn tick() {
    let budget = BUDGET_NS.load(Ordering::Relaxed);
    if budget == 0 || IDLE.load(Ordering::Relaxed) {
        return;
    }
    let used = thread_cpu_ns().saturating_sub(CALL_START_NS.load(Ordering::Relaxed));
    if used > budget && set_policy(libc::SCHED_IDLE) {
        IDLE.store(true, Ordering::Relaxed);
        HEAVY.store(true, Ordering::Relaxed);
    }
}

/// A call ended: one that stayed under the budget makes the worker normal
/// again.
pub fn call_ended() {
    let budget = BUDGET_NS.load(Ordering::Relaxed);
    let used = thread_cpu_ns().saturating_sub(CALL_START_NS.load(Ordering::Relaxed));
    let heavy = budget > 0 && used > budget;
    HEAVY.store(heavy, Ordering::Relaxed);
    if !heavy && IDLE.load(Ordering::Relaxed) && set_policy(libc::SCHED_OTHER) {
        IDLE.store(false, Ordering::Relaxed);
    }
}

/// Whether a demoted worker can be made normal again (`RLIMIT_NICE` lets an
/// unprivileged thread back to nice 0), as the layer tarkd shows.
pub fn report() -> crate::sandbox::Layer {
    let budget = BUDGET_NS.load(Ordering::Relaxed);
    let nice = rlimit::getrlimit(rlimit::Resource::NICE).map_or(0, |(soft, _)| soft);
    let (applied, detail) = match (budget, nice >= 20) {
        (0, _) => (
            false,
            "no CPU budget (limits.idle_after_cpu_ms = 0)".to_owned(),
        ),
        (b, true) => (
            true,
            format!(
                "calls past {} ms of CPU run at SCHED_IDLE until one stays under it",
                b / 1_000_000
            ),
        ),
        (b, false) => (
            true,
            format!(
                "calls past {} ms of CPU run at SCHED_IDLE; RLIMIT_NICE is {nice} (< 20), so a demoted worker stays idle until it is restarted",
                b / 1_000_000
            ),
        ),
    };
    crate::sandbox::Layer {
        name: "cpu_priority".into(),
        applied,
        detail,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// On a thread of its own: a call that burns past the budget goes idle
    /// (as the kernel reports), its successor starts idle, and a light call
    /// brings the thread back (the test runs as root: RLIMIT_NICE is no
    /// obstacle there, and is checked by the layer's report elsewhere).
    #[test]
    fn heavy_calls_go_idle_and_light_ones_come_back() {
        let policies = std::thread::spawn(|| {
            // SAFETY: sched_getscheduler on the calling thread.
            let policy = || unsafe { libc::sched_getscheduler(0) };
            set_budget(Some(Duration::from_millis(5)));
            let mut seen = Vec::new();
            call_started();
            seen.push(policy());
            let started = std::time::Instant::now();
            while started.elapsed() < Duration::from_millis(30) {
                tick();
            }
            seen.push(policy());
            call_ended();
            call_started();
            seen.push(policy());
            call_ended();
            seen.push(policy());
            seen
        })
        .join();
        let Ok(seen) = policies else {
            panic!("the thread failed");
        };
        assert_eq!(
            seen,
            [
                libc::SCHED_OTHER,
                libc::SCHED_IDLE,
                libc::SCHED_IDLE,
                libc::SCHED_OTHER
            ],
            "normal, idle past the budget, idle from the start of the next, normal after a light one"
        );
    }
}
