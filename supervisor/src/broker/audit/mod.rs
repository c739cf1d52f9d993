//! The audit log: every decision to refuse a plugin something, as one JSON line
//! in `state_dir/audit.log` (mode 0600), the most recent kept in memory for
//! `tarkctl audit`, and counted per plugin and capability.
//!
//! The file never grows without bound: past `[audit] max_file_mib` it is
//! rotated (`audit.log.1` … `audit.log.<keep_files>`, the oldest dropped), and
//! SIGHUP reopens it for an external logrotate (`packaging/tarkd.logrotate`).

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
}

/// How big the audit file may grow, and how many rotated files are kept.
#[derive(Debug, Clone, Copy, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuditConfig {
    pub max_file_mib: u64,
    pub keep_files: u32,
}

impl Default for AuditConfig {
    fn default() -> Self {
        Self {
            max_file_mib: 64,
            keep_files: 4,
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
    /// past it), then a fresh `audit.log`.
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
    }

    /// Records a decision.
    pub fn record(
        &self,
        tenant: &str,
        plugin: &str,
        capability: &str,
        target: &str,
        decision: &str,
        reason: &str,
    ) {
        if decision == "deny" {
            crate::metrics::Metrics::capability_event(&crate::metrics::METRICS.denials, capability);
        }
        let time_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        let entry = Entry {
            time_ms,
            tenant: tenant.to_owned(),
            plugin: plugin.to_owned(),
            capability: capability.to_owned(),
            // A plugin chooses the target: bounded, so it cannot bloat the log.
            target: target.chars().take(512).collect(),
            decision: decision.to_owned(),
            // It may quote the target.
            reason: crate::reasons::cut(reason),
        };
        if let Ok(line) = serde_json::to_string(&entry) {
            let mut sink = self.file.lock().unwrap_or_else(|p| p.into_inner());
            let len = line.len() as u64 + 1;
            if sink.written > 0 && sink.written + len > self.limits.max_file_mib << 20 {
                self.rotate(&mut sink);
            }
            if let Some(file) = sink.file.as_mut() {
                match writeln!(file, "{line}") {
                    Ok(()) => sink.written += len,
                    Err(e) => tracing::error!("writing the audit log: {e}"),
                }
            }
        }
        *self
            .counts
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry((tenant.to_owned(), plugin.to_owned(), capability.to_owned()))
            .or_default() += 1;
        let mut recent = self.recent.lock().unwrap_or_else(|p| p.into_inner());
        if recent.len() == RECENT {
            recent.pop_front();
        }
        recent.push_back(entry);
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
