//! The audit log: every decision to refuse a plugin something, as one JSON line
//! in `state_dir/audit.log` (mode 0600), the most recent kept in memory for
//! `tarkctl audit`, and counted per plugin and capability.
//!
//! The file never grows without bound: past `[audit] max_file_mib` it is
//! rotated (`audit.log.1` … `audit.log.<keep_files>`, the oldest dropped), and
//! SIGHUP reopens it for an external logrotate (`packaging/tarkd.logrotate`).
//! A plugin cannot flood it: refusals are written at most `per_window` per
//! (tenant, plugin, capability) in each `window_s`, then summarised
//! ([`limit`]); counts and metrics still see every one.

pub mod limit;

use std::collections::{BTreeMap, VecDeque};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::Serialize;

/// Entries kept in memory for `tarkctl audit`.
const RECENT: usize = 1000;

/// One audited decision.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Entry {
    /// Milliseconds since the Unix epoch.
    pub time_ms: u64,
    pub tenant: String,
    pub plugin: String,
    pub capability: String,
    pub target: String,
    pub decision: String,
    pub reason: String,
    /// On a summary: how many records of its kind the window left out.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub suppressed: Option<u64>,
}

/// Milliseconds since the Unix epoch.
pub(crate) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// How big the audit file may grow, and how many rotated files are kept.
#[derive(Debug, Clone, Copy, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuditConfig {
    pub max_file_mib: u64,
    pub keep_files: u32,
    /// Refusals of one (tenant, plugin, capability) written in full per
    /// window; the rest are counted in one summary record.
    pub per_window: u32,
    pub window_s: u64,
}

impl Default for AuditConfig {
    fn default() -> Self {
        let limit = limit::Limit::default();
        Self {
            max_file_mib: 64,
            keep_files: 4,
            per_window: limit.per_window,
            window_s: limit.window_s,
        }
    }
}

impl AuditConfig {
    pub fn limit(&self) -> limit::Limit {
        limit::Limit {
            per_window: self.per_window,
            window_s: self.window_s,
        }
    }
}

/// The open audit file and what has been written to it.
struct Sink {
    file: Option<std::fs::File>,
    written: u64,
}

/// Where audited decisions go.
pub struct AuditLog {
    path: PathBuf,
    limits: AuditConfig,
    file: Mutex<Sink>,
    recent: Mutex<VecDeque<Entry>>,
    /// Per (tenant, plugin, capability), so a caller sees only its tenants'.
    counts: Mutex<BTreeMap<(String, String, String), u64>>,
    /// The rate limit's open windows.
    windows: Mutex<limit::Windows>,
}

impl AuditLog {
    /// Appends to `path` (created 0600). The log is kept even if the file cannot
    /// be opened: the decision itself never depends on auditing succeeding.
    pub fn open(path: &Path, limits: AuditConfig) -> Self {
        Self {
            path: path.to_owned(),
            limits,
            file: Mutex::new(Self::sink(path)),
            recent: Mutex::default(),
            counts: Mutex::default(),
            windows: Mutex::default(),
        }
    }

    fn sink(path: &Path) -> Sink {
        use std::os::unix::fs::OpenOptionsExt;
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .open(path);
        match file {
            Ok(f) => Sink {
                written: f.metadata().map_or(0, |m| m.len()),
                file: Some(f),
            },
            Err(e) => {
                tracing::error!(
                    "audit log {}: {e}; denials are only kept in memory",
                    path.display()
                );
                Sink {
                    file: None,
                    written: 0,
                }
            }
        }
    }

    /// Opens the file at its path again (after logrotate moved it: SIGHUP).
    pub fn reopen(&self) {
        *self.file.lock().unwrap_or_else(|p| p.into_inner()) = Self::sink(&self.path);
        tracing::info!(path = %self.path.display(), "audit log reopened");
    }

    /// `audit.log` → `audit.log.1` → … → `audit.log.<keep_files>` (dropped
    /// past it), then a fresh `audit.log`, which starts with the first
    /// record of every rate-limit window still open: its summary will be
    /// written here, and the oldest file may soon be gone.
    fn rotate(&self, sink: &mut Sink) {
        sink.file = None;
        let numbered = |n: u32| PathBuf::from(format!("{}.{n}", self.path.display()));
        let keep = self.limits.keep_files;
        if keep == 0 {
            let _ = std::fs::remove_file(&self.path);
        } else {
            let _ = std::fs::remove_file(numbered(keep));
            for n in (1..keep).rev() {
                let _ = std::fs::rename(numbered(n), numbered(n + 1));
            }
            let _ = std::fs::rename(&self.path, numbered(1));
        }
        *sink = Self::sink(&self.path);
        let firsts = self
            .windows
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .firsts();
        for first in firsts {
            Self::append(sink, &first);
        }
    }

    /// Writes one line (no rotation).
    fn append(sink: &mut Sink, entry: &Entry) -> u64 {
        let Ok(line) = serde_json::to_string(entry) else {
            return 0;
        };
        let len = line.len() as u64 + 1;
        if let Some(file) = sink.file.as_mut() {
            match writeln!(file, "{line}") {
                Ok(()) => sink.written += len,
                Err(e) => tracing::error!("writing the audit log: {e}"),
            }
        }
        len
    }

    /// Writes one record to the file (rotating first if it would pass the
    /// cap) and keeps it among the recent ones.
    fn write(&self, entry: Entry) {
        if let Ok(line) = serde_json::to_string(&entry) {
            let mut sink = self.file.lock().unwrap_or_else(|p| p.into_inner());
            let len = line.len() as u64 + 1;
            if sink.written > 0 && sink.written + len > self.limits.max_file_mib << 20 {
                self.rotate(&mut sink);
            }
            Self::append(&mut sink, &entry);
        }
        let mut recent = self.recent.lock().unwrap_or_else(|p| p.into_inner());
        if recent.len() == RECENT {
            recent.pop_front();
        }
        recent.push_back(entry);
    }

    /// Writes the summaries of rate-limit windows that have ended (called
    /// every few seconds, so a flood's summary does not wait for the next
    /// refusal).
    pub fn close_windows(&self) {
        self.close_windows_by(std::time::Instant::now());
    }

    /// Writes the summaries of every window, ended or not (tarkd is
    /// stopping).
    pub fn close_all_windows(&self) {
        let window = std::time::Duration::from_secs(self.limits.window_s);
        self.close_windows_by(std::time::Instant::now() + window);
    }

    fn close_windows_by(&self, now: std::time::Instant) {
        let limit = self.limits.limit();
        let ended = self
            .windows
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .close_ended(limit, now);
        for summary in ended {
            self.write(summary);
        }
    }

    /// Records a decision; false if the rate limit left it out of the file
    /// (it is counted all the same), so the caller need not log it either.
    pub fn record(
        &self,
        tenant: &str,
        plugin: &str,
        capability: &str,
        target: &str,
        decision: &str,
        reason: &str,
    ) -> bool {
        if decision == "deny" {
            crate::metrics::Metrics::capability_event(&crate::metrics::METRICS.denials, capability);
        }
        *self
            .counts
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry((tenant.to_owned(), plugin.to_owned(), capability.to_owned()))
            .or_default() += 1;
        let entry = Entry {
            time_ms: now_ms(),
            tenant: tenant.to_owned(),
            plugin: plugin.to_owned(),
            capability: capability.to_owned(),
            // A plugin chooses the target: bounded, so it cannot bloat the log.
            target: target.chars().take(512).collect(),
            decision: decision.to_owned(),
            // It may quote the target.
            reason: crate::reasons::cut(reason),
            suppressed: None,
        };
        if limit::limited(decision) {
            let (closed, verdict) = self
                .windows
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .admit(self.limits.limit(), &entry, std::time::Instant::now());
            if let Some(summary) = closed {
                self.write(summary);
            }
            if verdict == limit::Verdict::Suppress {
                return false;
            }
        }
        self.write(entry);
        true
    }

    /// The most recent entries (oldest first) that `keep` selects.
    pub fn recent(&self, keep: impl Fn(&Entry) -> bool, limit: usize) -> Vec<Entry> {
        let recent = self.recent.lock().unwrap_or_else(|p| p.into_inner());
        let matching: Vec<&Entry> = recent.iter().filter(|e| keep(e)).collect();
        matching[matching.len().saturating_sub(limit)..]
            .iter()
            .map(|e| (*e).clone())
            .collect()
    }

    /// Denials counted per (tenant, plugin, capability), since tarkd started.
    pub fn counts(&self) -> BTreeMap<(String, String, String), u64> {
        self.counts
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(path: &Path) -> Vec<serde_json::Value> {
        std::fs::read_to_string(path)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    #[test]
    fn a_flood_is_written_as_its_first_records_and_a_summary() -> std::io::Result<()> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("audit.log");
        let log = AuditLog::open(&path, AuditConfig::default());
        let mut written = 0;
        for i in 0..50_000 {
            written += usize::from(log.record("t", "p", "env", &format!("V{i}"), "deny", "no"));
        }
        // Actions are never limited.
        for _ in 0..30 {
            assert!(log.record("t", "p", "shell", "ls", "allow", ""));
        }
        assert_eq!(written, 20);
        assert_eq!(
            log.counts().get(&("t".into(), "p".into(), "env".into())),
            Some(&50_000)
        );
        // Within its window nothing more is written; once it ends, its summary.
        log.close_windows();
        assert_eq!(lines(&path).len(), 50);
        let log = AuditLog {
            limits: AuditConfig {
                window_s: 0,
                ..log.limits
            },
            ..log
        };
        log.close_windows();
        let all = lines(&path);
        let summary = &all[all.len() - 1];
        assert_eq!(summary["suppressed"], 49_980);
        assert!(
            summary["reason"]
                .as_str()
                .is_some_and(|r| r.starts_with("49980 more deny records suppressed")
                    && r.contains("the first was \"V0\"")),
            "{summary}"
        );
        assert!(std::fs::metadata(&path)?.len() < 32 << 10);
        Ok(())
    }

    #[test]
    fn rotation_keeps_the_first_record_of_an_open_window() -> std::io::Result<()> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("audit.log");
        let limits = AuditConfig {
            max_file_mib: 1,
            keep_files: 1,
            per_window: 2,
            window_s: 3600,
        };
        let log = AuditLog::open(&path, limits);
        for i in 0..5 {
            log.record("t", "flood", "env", &format!("F{i}"), "deny", "no");
        }
        // Enough other plugins' records to rotate past keep_files twice.
        let reason = "r".repeat(1000);
        for i in 0..3000 {
            log.record("t", &format!("p{i}"), "http", "h", "deny", &reason);
        }
        let live = lines(&path);
        assert!(
            live.iter()
                .any(|l| l["plugin"] == "flood" && l["target"] == "F0"),
            "the open window's first record is in the live file"
        );
        Ok(())
    }

    #[test]
    fn records_lines_counts_and_recent_entries() -> std::io::Result<()> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("audit.log");
        let log = AuditLog::open(&path, AuditConfig::default());
        log.record("t", "a", "env", "HOME", "deny", "not declared");
        log.record("t", "b", "env", "PATH", "deny", "not declared");
        log.record(
            "t",
            "a",
            "storage",
            &"k".repeat(2000),
            "deny",
            "not declared",
        );
        let text = std::fs::read_to_string(&path)?;
        let lines: Vec<serde_json::Value> = text
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect();
        assert_eq!(lines.len(), 3);
        assert_eq!(
            (lines[0]["plugin"].as_str(), lines[0]["target"].as_str()),
            (Some("a"), Some("HOME"))
        );
        assert_eq!(lines[2]["target"].as_str().map(str::len), Some(512));
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&path)?.permissions().mode() & 0o777,
            0o600
        );
        let recent_a: Vec<_> = log
            .recent(|e| e.plugin == "a", 10)
            .into_iter()
            .map(|e| e.capability)
            .collect();
        assert_eq!(recent_a, ["env", "storage"]);
        assert_eq!(log.recent(|_| true, 1).len(), 1);
        let counts = log.counts();
        let key = |p: &str, c: &str| ("t".to_owned(), p.to_owned(), c.to_owned());
        assert_eq!(counts.get(&key("a", "env")), Some(&1));
        assert_eq!(counts.get(&key("b", "env")), Some(&1));
        Ok(())
    }

    #[test]
    fn the_file_rotates_past_its_cap_and_keeps_only_keep_files() -> std::io::Result<()> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("audit.log");
        let limits = AuditConfig {
            max_file_mib: 1,
            keep_files: 2,
            per_window: u32::MAX,
            ..AuditConfig::default()
        };
        let log = AuditLog::open(&path, limits);
        // ~1.2 KiB per line: 4,000 lines are ~4.6 MiB, so several rotations.
        let reason = "r".repeat(1000);
        for i in 0..4000 {
            log.record("t", "p", "http", &format!("h{i}"), "deny", &reason);
        }
        let size = |p: &Path| std::fs::metadata(p).map(|m| m.len());
        assert!(size(&path)? <= 1 << 20);
        assert!(size(&dir.path().join("audit.log.1"))? <= 1 << 20);
        assert!(size(&dir.path().join("audit.log.2"))? <= 1 << 20);
        assert!(!dir.path().join("audit.log.3").exists());
        // The newest line is in the live file; nothing was lost from it.
        let text = std::fs::read_to_string(&path)?;
        assert!(text.lines().last().is_some_and(|l| l.contains("\"h3999\"")));
        // Reopen after an external move (logrotate): a fresh file.
        std::fs::rename(&path, dir.path().join("moved"))?;
        log.reopen();
        log.record("t", "p", "env", "HOME", "deny", "x");
        assert_eq!(std::fs::read_to_string(&path)?.lines().count(), 1);
        Ok(())
    }
}
