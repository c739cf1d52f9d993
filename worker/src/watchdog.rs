//! The per-call deadline: one thread that ticks the engine's epoch when a call
//! overruns, which traps the guest at its next epoch check.
//!
//! It is a plain thread, not a tokio task, on purpose: a guest in a tight loop
//! holds the runtime thread it runs on, and a task queued behind it (tokio's
//! non-stealable LIFO slot) would never fire.

use std::sync::{Arc, Condvar, Mutex};
use std::time::Instant;

use wasmtime::Engine;

#[derive(Default)]
struct State {
    /// The running call's deadline and its number.
    armed: Option<(u64, Instant)>,
    next: u64,
    stop: bool,
    /// The thread waits with no timer and must be woken to see a new deadline.
    idle: bool,
}

/// Ticks an engine's epoch at armed deadlines.
pub struct Watchdog {
    shared: Arc<(Mutex<State>, Condvar)>,
}

/// Disarms the deadline when the call ends (however it ends).
pub struct Armed {
    shared: Arc<(Mutex<State>, Condvar)>,
    id: u64,
}

impl Watchdog {
    /// Starts the watchdog thread for `engine`. With a `slice`, it also ticks
    /// every `slice` while a call runs, so the guest's epoch callback runs (and
    /// yields) that often; without one, it ticks only at deadlines.
    pub fn start(engine: Engine, slice: Option<std::time::Duration>) -> std::io::Result<Self> {
        let shared = Arc::new((Mutex::new(State::default()), Condvar::new()));
        let theirs = Arc::clone(&shared);
        std::thread::Builder::new()
            .name("tark-watchdog".into())
            .spawn(move || {
                let (lock, cv) = &*theirs;
                let mut state = lock.lock().unwrap_or_else(|p| p.into_inner());
                loop {
                    if state.stop {
                        return;
                    }
                    match state.armed {
                        None => {
                            state.idle = true;
                            state = cv.wait(state).unwrap_or_else(|p| p.into_inner());
                            state.idle = false;
                        }
                        Some((_, at)) if Instant::now() >= at => {
                            state.armed = None;
                            engine.increment_epoch();
                        }
                        Some((_, at)) => {
                            let now = Instant::now();
                            // An idle-priority call yields ten times less often.
                            let slice = slice.map(|s| {
                                if crate::priority::is_idle() {
                                    s * 10
                                } else {
                                    s
                                }
                            });
                            let wake = slice.map_or(at, |s| at.min(now + s));
                            let (s, waited) = cv
                                .wait_timeout(state, wake.saturating_duration_since(now))
                                .unwrap_or_else(|p| p.into_inner());
                            state = s;
                            // A slice ended with a call still running: tick, so
                            // the guest yields (the store decides, by its deadline).
                            if slice.is_some() && waited.timed_out() && state.armed.is_some() {
                                engine.increment_epoch();
                            }
                        }
                    }
                }
            })?;
        Ok(Self { shared })
    }

    /// Arms the deadline for one call; dropping the guard disarms it.
    ///
    /// The thread is woken only when it is idle (or waiting for a later time).
    /// A thread already waiting on a timer wakes at that earlier, stale deadline
    /// (deadlines only move later, being `now + limit`), sees the new one and waits
    /// again: at most one wake-up per deadline period instead of two per call.
    pub fn arm(&self, at: Instant) -> Armed {
        let (lock, cv) = &*self.shared;
        let mut state = lock.lock().unwrap_or_else(|p| p.into_inner());
        state.next += 1;
        let id = state.next;
        let wake = state.idle || state.armed.is_some_and(|(_, old)| old > at);
        state.armed = Some((id, at));
        if wake {
            cv.notify_one();
        }
        Armed {
            shared: Arc::clone(&self.shared),
            id,
        }
    }
}

#[cfg(test)]
impl Watchdog {
    fn is_idle(&self) -> bool {
        self.shared.0.lock().map(|s| s.idle).unwrap_or(false)
    }
}

impl Drop for Armed {
    fn drop(&mut self) {
        // No wake-up: the thread finds the deadline gone when its timer fires.
        let (lock, _) = &*self.shared;
        let mut state = lock.lock().unwrap_or_else(|p| p.into_inner());
        if state.armed.is_some_and(|(id, _)| id == self.id) {
            state.armed = None;
        }
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        let (lock, cv) = &*self.shared;
        lock.lock().unwrap_or_else(|p| p.into_inner()).stop = true;
        cv.notify_one();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn epoch_config() -> wasmtime::Result<Engine> {
        let mut c = wasmtime::Config::new();
        c.epoch_interruption(true);
        Engine::new(&c)
    }

    /// A guest loop is interrupted at the deadline even though the thread that
    /// armed it never yields.
    #[test]
    fn interrupts_a_spinning_guest() -> wasmtime::Result<()> {
        let engine = epoch_config()?;
        let wasm = wat::parse_str(r#"(module (func (export "spin") (loop $l (br $l))))"#)?;
        let module = wasmtime::Module::new(&engine, wasm)?;
        let dog = Watchdog::start(engine.clone(), None)?;
        let mut store = wasmtime::Store::new(&engine, ());
        store.set_epoch_deadline(1);
        store.epoch_deadline_trap();
        let spin = wasmtime::Instance::new(&mut store, &module, &[])?
            .get_typed_func::<(), ()>(&mut store, "spin")?;
        let started = Instant::now();
        let err = {
            let _armed = dog.arm(Instant::now() + Duration::from_millis(50));
            spin.call(&mut store, ()).err()
        };
        assert_eq!(
            err.and_then(|e| e.downcast_ref::<wasmtime::Trap>().copied()),
            Some(wasmtime::Trap::Interrupt)
        );
        assert!(started.elapsed() >= Duration::from_millis(50));
        Ok(())
    }

    /// A guest loop long enough to outlast any deadline in these tests, but
    /// finite: a missed wake-up makes the test fail instead of hang.
    const LONG_LOOP: &str = r#"(module (func (export "spin") (local i64)
        (loop $l (br_if $l (i64.lt_u (local.tee 0 (i64.add (local.get 0) (i64.const 1))) (i64.const 20000000000))))))"#;

    fn spin_with(
        dog: &Watchdog,
        engine: &Engine,
        after: Duration,
    ) -> wasmtime::Result<Option<wasmtime::Trap>> {
        let module = wasmtime::Module::new(engine, wat::parse_str(LONG_LOOP)?)?;
        let mut store = wasmtime::Store::new(engine, ());
        store.set_epoch_deadline(1);
        store.epoch_deadline_trap();
        let spin = wasmtime::Instance::new(&mut store, &module, &[])?
            .get_typed_func::<(), ()>(&mut store, "spin")?;
        let _armed = dog.arm(Instant::now() + after);
        Ok(spin
            .call(&mut store, ())
            .err()
            .and_then(|e| e.downcast_ref::<wasmtime::Trap>().copied()))
    }

    /// A deadline armed while the thread waits with no timer wakes it.
    #[test]
    fn interrupts_when_armed_while_idle() -> wasmtime::Result<()> {
        let engine = epoch_config()?;
        let dog = Watchdog::start(engine.clone(), None)?;
        let started = Instant::now();
        while !dog.is_idle() {
            assert!(
                started.elapsed() < Duration::from_secs(5),
                "the watchdog never went idle"
            );
            std::thread::yield_now();
        }
        assert_eq!(
            spin_with(&dog, &engine, Duration::from_millis(20))?,
            Some(wasmtime::Trap::Interrupt)
        );
        Ok(())
    }

    /// Deadlines of calls that finished early leave the thread on a stale timer;
    /// a later call's deadline still fires.
    #[test]
    fn interrupts_after_earlier_calls_finished_in_time() -> wasmtime::Result<()> {
        let engine = epoch_config()?;
        let dog = Watchdog::start(engine.clone(), None)?;
        for _ in 0..3 {
            drop(dog.arm(Instant::now() + Duration::from_millis(30)));
        }
        assert_eq!(
            spin_with(&dog, &engine, Duration::from_millis(60))?,
            Some(wasmtime::Trap::Interrupt)
        );
        Ok(())
    }
}
