//! When a crashed worker may be started again: exponential backoff, and an
//! OTP-style restart intensity after which the plugin is quarantined.
//!
//! A crash is a worker exit tarkd did not ask for (a signal, a non-zero status, a
//! kill by tarkd's own deadline backstop). Traps inside the guest are not crashes:
//! the worker survives them and replaces the instance.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use serde::Deserialize;

/// The policy's settings (config section `[supervision]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RestartPolicy {
    /// Backoff after the second crash in a row (the first restart is
    /// immediate); it doubles with each further crash in a row.
    pub initial_backoff_ms: u64,
    pub max_backoff_ms: u64,
    /// Crashes within `period_s` that quarantine the plugin.
    pub intensity: u32,
    pub period_s: u64,
}

impl Default for RestartPolicy {
    fn default() -> Self {
        Self {
            initial_backoff_ms: 100,
            max_backoff_ms: 30_000,
            intensity: 5,
            period_s: 60,
        }
    }
}

/// What happens after a crash.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// A new worker may start at this instant.
    RestartAt(Instant),
    /// Too many crashes: no new worker until an operator restarts the plugin.
    Quarantine,
}

/// One tenant × plugin's crash history.
#[derive(Debug, Clone, Default)]
pub struct CrashHistory {
    crashes: VecDeque<Instant>,
    /// Crashes since the last call that succeeded, for the backoff exponent.
    in_a_row: u32,
    decision: Option<Decision>,
}

impl CrashHistory {
    /// Records a crash at `now` and decides what follows.
    pub fn crashed(&mut self, policy: &RestartPolicy, now: Instant) -> Decision {
        let period = Duration::from_secs(policy.period_s);
        while self
            .crashes
            .front()
            .is_some_and(|t| now.saturating_duration_since(*t) >= period)
        {
            self.crashes.pop_front();
        }
        self.crashes.push_back(now);
        self.in_a_row = self.in_a_row.saturating_add(1);
        let decision = if self.crashes.len() >= policy.intensity.max(1) as usize {
            Decision::Quarantine
        } else {
            // The first restart is immediate; then initial, doubling, capped.
            let backoff = match self.in_a_row {
                0 | 1 => 0,
                n => policy
                    .initial_backoff_ms
                    .saturating_mul(1u64 << (n - 2).min(32))
                    .min(policy.max_backoff_ms),
            };
            Decision::RestartAt(now + Duration::from_millis(backoff))
        };
        self.decision = Some(decision);
        decision
    }

    /// A call succeeded: the backoff starts from the beginning after the next crash
    /// (the intensity window still counts it).
    pub fn succeeded(&mut self) {
        self.in_a_row = 0;
    }

    /// Whether a worker may start at `now`: `Ok`, or why not.
    pub fn may_start(&self, now: Instant) -> Result<(), Decision> {
        match self.decision {
            Some(Decision::Quarantine) => Err(Decision::Quarantine),
            Some(Decision::RestartAt(at)) if now < at => Err(Decision::RestartAt(at)),
            _ => Ok(()),
        }
    }

    pub fn quarantined(&self) -> bool {
        self.decision == Some(Decision::Quarantine)
    }

    /// Whether forgetting this history would lose a crash still within its
    /// period (backoff or quarantine depends on it).
    pub fn remembers_crashes(&self) -> bool {
        !self.crashes.is_empty() || self.decision.is_some()
    }

    /// An operator restart: forget everything.
    pub fn reset(&mut self) {
        *self = Self::default();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn backoff_doubles_to_the_cap_and_resets_after_success() {
        let policy = RestartPolicy {
            initial_backoff_ms: 100,
            max_backoff_ms: 500,
            intensity: 100,
            period_s: 60,
        };
        let t0 = Instant::now();
        let mut h = CrashHistory::default();
        let mut backoffs = Vec::new();
        for i in 0..6 {
            let now = t0 + ms(i * 1000);
            match h.crashed(&policy, now) {
                Decision::RestartAt(at) => backoffs.push(at - now),
                Decision::Quarantine => panic!("quarantined at crash {i}"),
            }
        }
        assert_eq!(
            backoffs,
            [ms(0), ms(100), ms(200), ms(400), ms(500), ms(500)]
        );
        h.succeeded();
        assert_eq!(
            h.crashed(&policy, t0 + ms(10_000)),
            Decision::RestartAt(t0 + ms(10_000))
        );
        assert_eq!(
            h.crashed(&policy, t0 + ms(11_000)),
            Decision::RestartAt(t0 + ms(11_100))
        );
    }

    #[test]
    fn intensity_within_the_period_quarantines() {
        let policy = RestartPolicy::default();
        let t0 = Instant::now();
        let cases: &[(&[u64], bool)] = &[
            (&[0, 1, 2, 3], false),
            (&[0, 1, 2, 3, 4], true),
            // Crashes older than the period no longer count.
            (&[0, 10, 20, 30, 60], false),
            (&[0, 10, 20, 30, 59], true),
            (&[0, 61, 122, 183, 244, 305], false),
        ];
        for (seconds, quarantined) in cases {
            let mut h = CrashHistory::default();
            let last = seconds
                .iter()
                .map(|s| h.crashed(&policy, t0 + Duration::from_secs(*s)))
                .last();
            assert_eq!(
                last == Some(Decision::Quarantine),
                *quarantined,
                "crashes at {seconds:?}"
            );
            assert_eq!(h.quarantined(), *quarantined);
        }
    }

    #[test]
    fn starts_wait_for_the_backoff_and_quarantine_holds_until_reset() {
        let policy = RestartPolicy {
            intensity: 3,
            ..RestartPolicy::default()
        };
        let t0 = Instant::now();
        let mut h = CrashHistory::default();
        assert_eq!(h.may_start(t0), Ok(()));
        h.crashed(&policy, t0);
        assert_eq!(h.may_start(t0), Ok(()), "the first restart is immediate");
        h.crashed(&policy, t0 + ms(10));
        assert_eq!(
            h.may_start(t0 + ms(50)),
            Err(Decision::RestartAt(t0 + ms(110)))
        );
        assert_eq!(h.may_start(t0 + ms(110)), Ok(()));
        h.crashed(&policy, t0 + ms(200));
        assert_eq!(
            h.may_start(t0 + Duration::from_secs(3600)),
            Err(Decision::Quarantine)
        );
        h.reset();
        assert_eq!(h.may_start(t0 + ms(300)), Ok(()));
    }

    #[test]
    fn zero_intensity_is_treated_as_one() {
        let policy = RestartPolicy {
            intensity: 0,
            ..RestartPolicy::default()
        };
        let mut h = CrashHistory::default();
        assert_eq!(h.crashed(&policy, Instant::now()), Decision::Quarantine);
    }
}
