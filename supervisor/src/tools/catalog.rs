//! Tool lists, described in the background, once per module version, with a
//! short deadline of their own, and kept with their failure.
//!
//! A plugin whose `get-tools` or `get-risk-level` hangs used to hold up every
//! tenant's `ListTools`, and the `InvokeTool` of other plugins' tools, for
//! its whole call deadline, on every call: the failed describe was neither
//! kept nor bounded, and describes ran one at a time. Here each plugin's
//! describe runs in a task of its own (a few at once), is cut off after
//! `workers.describe_deadline_ms` (its describing worker killed, which counts
//! against that worker like any crash), and its outcome is kept: a list until
//! the module changes, a failure until its retry time (10 s, doubling to 10
//! min). After `supervision.intensity` failures in a row the plugin is
//! quarantined (no more tries until `tarkctl restart`), as a crashing worker
//! is. Callers read what is known ([`Catalog::lookup`]) and wait, bounded,
//! only for what is not known yet.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{Semaphore, watch};

use super::Tool;

/// Describes running at once, at most (each holds a worker place).
const AT_ONCE: usize = 4;
/// The first retry of a failed describe, doubled per failure up to the max.
const FIRST_RETRY: Duration = Duration::from_secs(10);
const MAX_RETRY: Duration = Duration::from_secs(600);

/// What is known of one plugin's tools.
#[derive(Debug, Clone)]
pub enum Lookup {
    Listed(Arc<Vec<Tool>>),
    /// Its last describe failed, and it is not time to try again.
    Failed(String),
    /// Not described yet (or being described, or due for a retry).
    Unknown,
}

#[derive(Debug)]
enum State {
    /// Running; how many times in a row it failed before.
    Describing {
        done: watch::Receiver<bool>,
        failures: u32,
    },
    Listed(Arc<Vec<Tool>>),
    Failed {
        why: String,
        failures: u32,
        retry_at: Instant,
    },
}

#[derive(Debug)]
struct Entry {
    /// The module the state is about.
    sha: String,
    state: State,
}

/// Every plugin's tool list, as far as it is known.
#[derive(Debug)]
pub struct Catalog {
    entries: Mutex<HashMap<String, Entry>>,
    permits: Arc<Semaphore>,
}

impl Default for Catalog {
    fn default() -> Self {
        Self::new(AT_ONCE * 8)
    }
}

impl Catalog {
    /// A catalog whose describes take at most an eighth of `max_live`
    /// worker places at once (one, for a host of a few workers: a describe
    /// then waits for the last to give its place back rather than find
    /// every place taken).
    pub fn new(max_live: usize) -> Self {
        Self {
            entries: Mutex::default(),
            permits: Arc::new(Semaphore::new((max_live / 8).clamp(1, AT_ONCE))),
        }
    }
}

/// How long a plugin that failed `failures` times in a row waits to be tried
/// again.
fn retry_after(failures: u32) -> Duration {
    FIRST_RETRY
        .saturating_mul(1 << failures.saturating_sub(1).min(16))
        .min(MAX_RETRY)
}

impl Catalog {
    /// What is known of `plugin`'s tools for its module `sha`, now.
    pub fn lookup(&self, plugin: &str, sha: &str, now: Instant) -> Lookup {
        let entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        match entries
            .get(plugin)
            .filter(|e| e.sha == sha)
            .map(|e| &e.state)
        {
            Some(State::Listed(tools)) => Lookup::Listed(Arc::clone(tools)),
            Some(State::Failed { why, retry_at, .. }) if now < *retry_at => {
                Lookup::Failed(why.clone())
            }
            _ => Lookup::Unknown,
        }
    }

    /// Claims the describe of `plugin`'s module `sha`: `Ok(done)` when the
    /// caller is to run it (and send `true` on `done` once it has called
    /// [`Catalog::finish`]), `Err(Some(rx))` when one is running (wait on
    /// it), `Err(None)` when nothing is to be done (listed, or failed and
    /// not yet due).
    pub fn claim(
        &self,
        plugin: &str,
        sha: &str,
        now: Instant,
    ) -> Result<watch::Sender<bool>, Option<watch::Receiver<bool>>> {
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        let failures = match entries
            .get(plugin)
            .filter(|e| e.sha == sha)
            .map(|e| &e.state)
        {
            Some(State::Describing { done, .. }) => return Err(Some(done.clone())),
            Some(State::Listed(_)) => return Err(None),
            Some(State::Failed { retry_at, .. }) if now < *retry_at => return Err(None),
            Some(State::Failed { failures, .. }) => *failures,
            None => 0,
        };
        let (tx, done) = watch::channel(false);
        entries.insert(
            plugin.to_owned(),
            Entry {
                sha: sha.to_owned(),
                state: State::Describing { done, failures },
            },
        );
        Ok(tx)
    }

    /// Records how a describe of `sha` ended (unless the module changed
    /// meanwhile); the `quarantine_after`th failure in a row is the last
    /// tried.
    pub fn finish(
        &self,
        plugin: &str,
        sha: &str,
        result: Result<Vec<Tool>, String>,
        now: Instant,
        quarantine_after: u32,
    ) {
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        let Some(entry) = entries.get_mut(plugin).filter(|e| e.sha == sha) else {
            return;
        };
        let before = match entry.state {
            State::Describing { failures, .. } => failures,
            _ => 0,
        };
        entry.state = match result {
            Ok(tools) => State::Listed(Arc::new(tools)),
            Err(why) if before + 1 >= quarantine_after => State::Failed {
                why: format!(
                    "quarantined after {} failed attempts to list its tools (last: {why}); run `tarkctl restart {plugin}` once it is fixed",
                    before + 1
                ),
                failures: before + 1,
                // Not tried again until a restart forgets it.
                retry_at: now + Duration::from_secs(100 * 365 * 24 * 3600),
            },
            Err(why) => State::Failed {
                why,
                failures: before + 1,
                retry_at: now + retry_after(before + 1),
            },
        };
    }

    /// Forgets a plugin's list (it changed, was disabled or removed).
    pub fn forget(&self, plugin: &str) {
        self.entries
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(plugin);
    }

    /// A place among the describes running at once.
    pub fn permits(&self) -> Arc<Semaphore> {
        Arc::clone(&self.permits)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tool(name: &str) -> Tool {
        Tool {
            plugin: "p".into(),
            name: name.into(),
            description: String::new(),
            parameters_schema: String::new(),
            risk: tark_proto::worker::v1::RiskLevel::ReadOnly,
        }
    }

    #[test]
    fn a_describe_is_claimed_once_and_its_outcome_kept() {
        let c = Catalog::default();
        let t0 = Instant::now();
        assert!(matches!(c.lookup("p", "v1", t0), Lookup::Unknown));
        let Ok(done) = c.claim("p", "v1", t0) else {
            panic!("the first caller runs it");
        };
        // Others wait on the one running.
        let waiting = c.claim("p", "v1", t0);
        assert!(matches!(waiting, Err(Some(_))));
        c.finish("p", "v1", Ok(vec![tool("a")]), t0, 100);
        let _ = done.send(true);
        assert!(matches!(c.lookup("p", "v1", t0), Lookup::Listed(t) if t[0].name == "a"));
        assert!(
            matches!(c.claim("p", "v1", t0), Err(None)),
            "listed: nothing to do"
        );
        // A new module is another matter.
        assert!(matches!(c.lookup("p", "v2", t0), Lookup::Unknown));
        assert!(c.claim("p", "v2", t0).is_ok());
    }

    #[test]
    fn failures_are_kept_until_their_retry_which_backs_off() {
        let c = Catalog::default();
        let t0 = Instant::now();
        let mut at = t0;
        let mut waits = Vec::new();
        for _ in 0..8 {
            assert!(c.claim("p", "v", at).is_ok(), "due at {:?}", at - t0);
            c.finish("p", "v", Err("hung".into()), at, 100);
            assert!(matches!(c.lookup("p", "v", at), Lookup::Failed(w) if w == "hung"));
            assert!(matches!(c.claim("p", "v", at), Err(None)), "not due yet");
            // Due again once its wait is over.
            let mut wait = Duration::from_secs(1);
            while matches!(c.lookup("p", "v", at + wait), Lookup::Failed(_)) {
                wait += Duration::from_secs(1);
            }
            waits.push(wait.as_secs());
            at += wait;
        }
        assert_eq!(waits, [10, 20, 40, 80, 160, 320, 600, 600]);
        // Listed after all: the count starts again.
        assert!(c.claim("p", "v", at).is_ok());
        c.finish("p", "v", Ok(vec![]), at, 100);
        assert!(c.claim("p", "v", at).is_err());
        c.forget("p");
        assert!(c.claim("p", "v", at).is_ok());
        c.finish("p", "v", Err("x".into()), at, 100);
        assert!(matches!(
            c.lookup("p", "v", at + Duration::from_secs(11)),
            Lookup::Unknown
        ));
    }

    #[test]
    fn a_plugin_that_keeps_failing_is_quarantined_until_forgotten() {
        let c = Catalog::default();
        let mut at = Instant::now();
        for _ in 0..3 {
            assert!(c.claim("p", "v", at).is_ok());
            c.finish("p", "v", Err("hung".into()), at, 3);
            at += Duration::from_secs(601);
        }
        let year = at + Duration::from_secs(365 * 24 * 3600);
        assert!(
            matches!(c.lookup("p", "v", year), Lookup::Failed(w) if w.starts_with("quarantined after 3 failed attempts") && w.contains("tarkctl restart p"))
        );
        assert!(matches!(c.claim("p", "v", year), Err(None)));
        c.forget("p");
        assert!(c.claim("p", "v", year).is_ok());
    }
}
