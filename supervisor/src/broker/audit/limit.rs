//! How many refusals of one kind the audit writes: per (tenant, plugin,
//! capability, decision), the first `[audit] per_window` records of each
//! `window_s` are written in full, the rest only counted, and one summary
//! record ("N more … suppressed in 10 s") closes the window. A plugin that
//! asks for a forbidden variable 50,000 times in a call costs the audit file
//! a few lines, not 11 MB, and the rotation does not sweep away the history
//! it was meant to keep.
//!
//! Only refusals and what the trust mode let through are limited
//! ([`limited`]): those a plugin can produce at will. Actions tarkd took
//! (a command run, a sign-out) are always written.
//!
//! The decisions here are pure (time is passed in), so they are tested as a
//! table; `super::AuditLog` writes what they say.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use serde::Deserialize;

use super::Entry;

/// `[audit]` settings of the limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Limit {
    /// Records written in full per key and window.
    pub per_window: u32,
    /// The window's length.
    pub window_s: u64,
}

impl Default for Limit {
    fn default() -> Self {
        Self {
            per_window: 20,
            window_s: 10,
        }
    }
}

/// Whether records of this decision are limited.
pub fn limited(decision: &str) -> bool {
    matches!(decision, "deny" | "allow-undeclared")
}

/// What one key's records are grouped by.
pub type Key = (String, String, String, String);

/// One key's current window.
#[derive(Debug)]
struct Window {
    start: Instant,
    written: u32,
    suppressed: u64,
    /// The window's first record, written again at the top of a rotated file
    /// while the window is open, so no file holds a summary without it.
    first: Entry,
}

/// What to do with a record.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    Write,
    Suppress,
}

/// The open windows.
#[derive(Debug, Default)]
pub struct Windows {
    open: HashMap<Key, Window>,
}

impl Windows {
    /// Decides on `entry` at `now`. A window of its key that has ended is
    /// closed first: its summary (if it suppressed anything) is returned to be
    /// written before the entry.
    pub fn admit(&mut self, limit: Limit, entry: &Entry, now: Instant) -> (Option<Entry>, Verdict) {
        let key = key_of(entry);
        let window = Duration::from_secs(limit.window_s);
        let closed = match self.open.get(&key) {
            Some(w) if now.saturating_duration_since(w.start) >= window => {
                self.open.remove(&key).and_then(|w| summary(w, limit))
            }
            _ => None,
        };
        let w = self.open.entry(key).or_insert_with(|| Window {
            start: now,
            written: 0,
            suppressed: 0,
            first: entry.clone(),
        });
        let verdict = if w.written < limit.per_window {
            w.written += 1;
            Verdict::Write
        } else {
            w.suppressed += 1;
            Verdict::Suppress
        };
        (closed, verdict)
    }

    /// Closes every window that has ended by `now`; their summaries, oldest
    /// window first.
    pub fn close_ended(&mut self, limit: Limit, now: Instant) -> Vec<Entry> {
        let window = Duration::from_secs(limit.window_s);
        let mut ended: Vec<Key> = self
            .open
            .iter()
            .filter(|(_, w)| now.saturating_duration_since(w.start) >= window)
            .map(|(k, _)| k.clone())
            .collect();
        ended.sort_by_key(|k| self.open.get(k).map(|w| w.start));
        ended
            .into_iter()
            .filter_map(|k| self.open.remove(&k))
            .filter_map(|w| summary(w, limit))
            .collect()
    }

    /// The first records of the windows still open that have suppressed
    /// something, oldest first: what a fresh file must start with.
    pub fn firsts(&self) -> Vec<Entry> {
        let mut open: Vec<&Window> = self.open.values().filter(|w| w.suppressed > 0).collect();
        open.sort_by_key(|w| w.start);
        open.into_iter().map(|w| w.first.clone()).collect()
    }
}

fn key_of(e: &Entry) -> Key {
    (
        e.tenant.clone(),
        e.plugin.clone(),
        e.capability.clone(),
        e.decision.clone(),
    )
}

/// The record that closes a window which suppressed something.
fn summary(w: Window, limit: Limit) -> Option<Entry> {
    (w.suppressed > 0).then(|| Entry {
        time_ms: super::now_ms(),
        target: String::new(),
        reason: format!(
            "{} more {} records suppressed in {} s (over {} per window; the first was {:?}: {})",
            w.suppressed,
            w.first.decision,
            limit.window_s,
            limit.per_window,
            w.first.target,
            w.first.reason
        ),
        suppressed: Some(w.suppressed),
        ..w.first
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(plugin: &str, capability: &str, target: &str) -> Entry {
        Entry {
            time_ms: 0,
            tenant: "t".into(),
            plugin: plugin.into(),
            capability: capability.into(),
            target: target.into(),
            decision: "deny".into(),
            reason: "not declared".into(),
            suppressed: None,
        }
    }

    const LIMIT: Limit = Limit {
        per_window: 3,
        window_s: 10,
    };

    #[test]
    fn each_key_writes_its_quota_then_counts_and_summarises() {
        let t0 = Instant::now();
        let at = |s: u64| t0 + Duration::from_secs(s);
        let mut w = Windows::default();
        // (plugin, capability, seconds, summary written first?, verdict)
        let table = [
            ("a", "env", 0, false, Verdict::Write),
            ("a", "env", 1, false, Verdict::Write),
            ("a", "env", 2, false, Verdict::Write),
            ("a", "env", 3, false, Verdict::Suppress),
            ("a", "env", 4, false, Verdict::Suppress),
            // Other keys have windows of their own.
            ("b", "env", 4, false, Verdict::Write),
            ("a", "http", 4, false, Verdict::Write),
            ("a", "env", 9, false, Verdict::Suppress),
            // The window ended: its summary, then a fresh window.
            ("a", "env", 10, true, Verdict::Write),
            ("a", "env", 11, false, Verdict::Write),
        ];
        for (plugin, cap, s, summarised, verdict) in table {
            let (summary, got) = w.admit(LIMIT, &entry(plugin, cap, "X"), at(s));
            assert_eq!(got, verdict, "{plugin} {cap} at {s}");
            assert_eq!(summary.is_some(), summarised, "{plugin} {cap} at {s}");
            if let Some(s) = summary {
                assert_eq!(s.suppressed, Some(3));
                assert!(
                    s.reason
                        .starts_with("3 more deny records suppressed in 10 s"),
                    "{}",
                    s.reason
                );
                assert_eq!((s.plugin.as_str(), s.capability.as_str()), ("a", "env"));
            }
        }
        // Nothing suppressed since: closing ends windows without a summary.
        assert!(w.close_ended(LIMIT, at(30)).is_empty());
    }

    #[test]
    fn ended_windows_close_on_their_own_and_open_ones_keep_their_first() {
        let t0 = Instant::now();
        let mut w = Windows::default();
        for i in 0..10 {
            w.admit(LIMIT, &entry("a", "env", &format!("V{i}")), t0);
        }
        w.admit(LIMIT, &entry("b", "fs", "/x"), t0 + Duration::from_secs(5));
        let firsts = w.firsts();
        assert_eq!(firsts.len(), 1, "only windows that suppressed something");
        assert_eq!(firsts[0].target, "V0");
        assert!(w.close_ended(LIMIT, t0 + Duration::from_secs(9)).is_empty());
        let closed = w.close_ended(LIMIT, t0 + Duration::from_secs(10));
        assert_eq!(closed.len(), 1);
        assert_eq!(closed[0].suppressed, Some(7));
        assert!(
            closed[0].reason.contains("the first was \"V0\""),
            "{}",
            closed[0].reason
        );
        assert!(w.firsts().is_empty());
    }

    #[test]
    fn only_what_a_plugin_can_repeat_is_limited() {
        for (d, want) in [
            ("deny", true),
            ("allow-undeclared", true),
            ("allow", false),
            ("conflict", false),
            ("block", false),
        ] {
            assert_eq!(limited(d), want, "{d}");
        }
    }
}
