//! Kept versions of each plugin, for `history` and `rollback`.
//!
//! An update moves the copy it replaces into `plugins_dir/.history/<id>/<stamp>/`
//! (the same filesystem, so one rename; the scan skips dot-names) and keeps the
//! newest `lifecycle.keep_versions`. A rollback installs a kept copy again
//! through the same validation and approval rules as any install, and the copy
//! it replaces becomes history in turn.

use std::path::{Path, PathBuf};

use crate::plugins::registry;

/// One kept version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Kept {
    /// From its manifest; `None` if the kept copy no longer loads.
    pub version: Option<semver::Version>,
    pub sha256: String,
    /// When it was replaced (ms since the epoch).
    pub replaced_ms: u64,
    pub dir: PathBuf,
}

/// The history of every plugin.
#[derive(Debug, Clone)]
pub struct History {
    root: PathBuf,
    keep: usize,
}

impl History {
    pub fn new(plugins_dir: &Path, keep: usize) -> Self {
        Self {
            root: plugins_dir.join(".history"),
            keep,
        }
    }

    fn dir(&self, id: &str) -> PathBuf {
        self.root.join(id)
    }

    /// Moves `replaced` (a plugin folder in the plugins dir) into `id`'s
    /// history, then drops the oldest beyond the number kept.
    pub fn push(&self, id: &str, replaced: &Path) -> std::io::Result<()> {
        if self.keep == 0 {
            return std::fs::remove_dir_all(replaced);
        }
        let dir = self.dir(id);
        std::fs::create_dir_all(&dir)?;
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        // Zero-padded, so names sort as times do.
        let mut stamp = now.as_nanos();
        while dir.join(format!("{stamp:024}")).exists() {
            stamp += 1;
        }
        std::fs::rename(replaced, dir.join(format!("{stamp:024}")))?;
        std::fs::File::open(&dir)?.sync_all()?;
        self.prune(id)
    }

    fn entries(&self, id: &str) -> Vec<(u128, PathBuf)> {
        let Ok(read) = std::fs::read_dir(self.dir(id)) else {
            return Vec::new();
        };
        let mut entries: Vec<(u128, PathBuf)> = read
            .flatten()
            .filter_map(|e| {
                let stamp = e.file_name().to_str()?.parse::<u128>().ok()?;
                Some((stamp, e.path()))
            })
            .collect();
        entries.sort_by_key(|e| std::cmp::Reverse(e.0));
        entries
    }

    fn prune(&self, id: &str) -> std::io::Result<()> {
        for (_, dir) in self.entries(id).into_iter().skip(self.keep) {
            std::fs::remove_dir_all(dir)?;
        }
        Ok(())
    }

    /// `id`'s kept versions, newest first.
    pub fn list(&self, id: &str, host_version: &semver::Version) -> Vec<Kept> {
        self.entries(id)
            .into_iter()
            .map(|(stamp, dir)| {
                let plugin = registry::load(&dir, id, host_version);
                let loaded = plugin.loaded.as_ref();
                Kept {
                    version: loaded.map(|l| l.manifest.version.clone()),
                    sha256: loaded.map(|l| l.sha256.clone()).unwrap_or_default(),
                    replaced_ms: u64::try_from(stamp / 1_000_000).unwrap_or(u64::MAX),
                    dir,
                }
            })
            .collect()
    }

    /// Puts back versions a rollback had taken out when tarkd was killed
    /// before it finished (at start).
    pub fn recover(&self) {
        let Ok(ids) = std::fs::read_dir(&self.root) else {
            return;
        };
        for id in ids.flatten() {
            let Ok(entries) = std::fs::read_dir(id.path()) else {
                continue;
            };
            for e in entries.flatten() {
                let path = e.path();
                if path.extension().is_some_and(|x| x == "taken") {
                    let back = path.with_extension("");
                    if let Err(err) = std::fs::rename(&path, &back) {
                        tracing::warn!(path = %path.display(), "kept version not put back: {err}");
                    }
                }
            }
        }
    }

    /// Deletes `id`'s history (the plugin was removed and purged).
    pub fn clear(&self, id: &str) -> std::io::Result<()> {
        match std::fs::remove_dir_all(self.dir(id)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }
}

/// The kept version a rollback goes to: the newest, or the newest of
/// `version`.
pub fn pick<'a>(kept: &'a [Kept], version: Option<&semver::Version>) -> Option<&'a Kept> {
    kept.iter()
        .filter(|k| k.version.is_some())
        .find(|k| version.is_none_or(|v| k.version.as_ref() == Some(v)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn folder(dir: &Path, version: &str) -> std::io::Result<()> {
        std::fs::create_dir_all(dir)?;
        std::fs::write(
            dir.join("plugin.toml"),
            format!("[plugin]\nname = \"p\"\nversion = \"{version}\"\ntype = \"tool\"\n"),
        )?;
        std::fs::write(dir.join("plugin.wasm"), format!("\0asm{version}"))
    }

    #[test]
    fn newest_first_and_only_as_many_as_kept() -> std::io::Result<()> {
        let d = tempfile::tempdir()?;
        let host = semver::Version::new(0, 5, 0);
        let h = History::new(d.path(), 2);
        for v in ["1.0.0", "1.1.0", "1.2.0"] {
            let replaced = d.path().join(".p.staging");
            folder(&replaced, v)?;
            h.push("p", &replaced)?;
            assert!(!replaced.exists());
        }
        let kept = h.list("p", &host);
        let versions: Vec<String> = kept
            .iter()
            .map(|k| {
                k.version
                    .as_ref()
                    .map(ToString::to_string)
                    .unwrap_or_default()
            })
            .collect();
        assert_eq!(versions, ["1.2.0", "1.1.0"]);
        // (asked, picked)
        let cases = [
            (None, Some("1.2.0")),
            (Some("1.1.0"), Some("1.1.0")),
            (Some("1.0.0"), None),
        ];
        for (asked, want) in cases {
            let asked = asked.map(semver::Version::parse).transpose();
            let asked = asked.map_err(std::io::Error::other)?;
            let got = pick(&kept, asked.as_ref()).and_then(|k| k.version.as_ref());
            assert_eq!(got.map(ToString::to_string).as_deref(), want);
        }
        h.clear("p")?;
        assert!(h.list("p", &host).is_empty());
        h.clear("p")?;
        // Keeping none deletes the replaced copy.
        let none = History::new(d.path(), 0);
        let replaced = d.path().join(".p.staging");
        folder(&replaced, "2.0.0")?;
        none.push("p", &replaced)?;
        assert!(!replaced.exists() && none.list("p", &host).is_empty());
        Ok(())
    }
}
