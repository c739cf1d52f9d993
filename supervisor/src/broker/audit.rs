//! The audit log: every decision to refuse a plugin something, as one JSON line
//! in `state_dir/audit.log` (mode 0600), the most recent kept in memory for
//! `tarkctl audit`, and counted per plugin and capability.

use std::collections::{BTreeMap, VecDeque};
use std::io::Write;
use std::path::Path;
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

/// Where audited decisions go.
pub struct AuditLog {
    file: Mutex<Option<std::fs::File>>,
    recent: Mutex<VecDeque<Entry>>,
    /// Per (tenant, plugin, capability), so a caller sees only its tenants'.
    counts: Mutex<BTreeMap<(String, String, String), u64>>,
}

impl AuditLog {
    /// Appends to `path` (created 0600). The log is kept even if the file cannot
    /// be opened: the decision itself never depends on auditing succeeding.
    pub fn open(path: &Path) -> Self {
        use std::os::unix::fs::OpenOptionsExt;
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .open(path);
        let file = match file {
            Ok(f) => Some(f),
            Err(e) => {
                tracing::error!(
                    "audit log {}: {e}; denials are only kept in memory",
                    path.display()
                );
                None
            }
        };
        Self {
            file: Mutex::new(file),
            recent: Mutex::default(),
            counts: Mutex::default(),
        }
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
            reason: reason.to_owned(),
        };
        if let Some(file) = self.file.lock().unwrap_or_else(|p| p.into_inner()).as_mut()
            && let Ok(line) = serde_json::to_string(&entry)
            && let Err(e) = writeln!(file, "{line}")
        {
            tracing::error!("writing the audit log: {e}");
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
        let log = AuditLog::open(&path);
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
}
