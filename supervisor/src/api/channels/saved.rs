//! Started channels on disk (`state_dir/channels/<tenant>.<plugin>.json`, the
//! channel's configuration), so a channel started once stays started across
//! tarkd restarts as it does across worker restarts.

use std::path::{Path, PathBuf};

use crate::workers::WorkerKey;

/// The started channels of every tenant.
#[derive(Debug)]
pub struct Saved {
    dir: PathBuf,
}

impl Saved {
    pub fn new(state_dir: &Path) -> Self {
        Self {
            dir: state_dir.join("channels"),
        }
    }

    /// Tenant and plugin names are lowercase letters, digits and hyphens, so the
    /// dot between them is unambiguous.
    fn name(key: &WorkerKey) -> String {
        format!("{}.{}.json", key.tenant, key.plugin)
    }

    pub fn put(&self, key: &WorkerKey, config_json: &str) -> std::io::Result<()> {
        crate::durable::write_private(&self.dir, &Self::name(key), config_json.as_bytes())
    }

    pub fn remove(&self, key: &WorkerKey) -> std::io::Result<()> {
        crate::durable::remove(&self.dir.join(Self::name(key)))
    }

    /// Every saved channel with its configuration; files that are not one are
    /// skipped with a warning.
    pub fn all(&self) -> Vec<(WorkerKey, String)> {
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for entry in entries.flatten() {
            let path = entry.path();
            let name = entry.file_name().to_string_lossy().into_owned();
            let key = name
                .strip_suffix(".json")
                .and_then(|stem| stem.split_once('.'))
                .filter(|(t, p)| valid(t) && valid(p));
            match (key, std::fs::read_to_string(&path)) {
                (Some((tenant, plugin)), Ok(config)) => out.push((
                    WorkerKey {
                        tenant: tenant.to_owned(),
                        plugin: plugin.to_owned(),
                    },
                    config,
                )),
                _ => tracing::warn!(path = %path.display(), "not a saved channel; ignored"),
            }
        }
        out.sort();
        out
    }
}

fn valid(name: &str) -> bool {
    crate::plugins::manifest::valid_name(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn saved_channels_round_trip_and_strays_are_skipped() -> std::io::Result<()> {
        let d = tempfile::tempdir()?;
        let saved = Saved::new(d.path());
        assert!(saved.all().is_empty(), "no dir yet");
        let key = |t: &str, p: &str| WorkerKey {
            tenant: t.into(),
            plugin: p.into(),
        };
        saved.put(&key("default", "echo-channel"), r#"{"room":"a"}"#)?;
        saved.put(&key("acme", "chat"), "{}")?;
        saved.put(&key("acme", "chat"), r#"{"v":2}"#)?;
        for stray in ["junk", "x.json", "Bad.name.json", ".hidden.tmp"] {
            std::fs::write(d.path().join("channels").join(stray), "{}")?;
        }
        assert_eq!(
            saved.all(),
            [
                (key("acme", "chat"), r#"{"v":2}"#.to_owned()),
                (key("default", "echo-channel"), r#"{"room":"a"}"#.to_owned()),
            ]
        );
        saved.remove(&key("acme", "chat"))?;
        assert_eq!(saved.all().len(), 1);
        Ok(())
    }
}
