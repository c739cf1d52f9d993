//! The operator's approvals: for each installed plugin, the capabilities the
//! operator agreed to (at install, or later with `tarkctl plugin grants`). Kept in
//! `state_dir/approvals/<plugin>.toml`, 0600, written atomically, in the form of a
//! manifest's `[capabilities]` table so an operator can read (and provision) them.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::plugins::manifest::Capabilities;

/// Why an approval could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum ApprovalError {
    #[error("approval file {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("approval file {path}: {message}")]
    Invalid { path: PathBuf, message: String },
}

/// An approval tarkd cannot read or write is its own failure, not the caller's.
impl From<ApprovalError> for crate::workers::CallError {
    fn from(e: ApprovalError) -> Self {
        Self::new(tonic::Code::Internal, e.to_string())
    }
}

#[derive(Serialize, Deserialize)]
struct File {
    capabilities: Capabilities,
}

/// The approvals directory.
#[derive(Debug, Clone)]
pub struct Approvals {
    dir: PathBuf,
}

impl Approvals {
    pub fn new(state_dir: &Path) -> Self {
        Self {
            dir: state_dir.join("approvals"),
        }
    }

    fn path(&self, plugin: &str) -> PathBuf {
        self.dir.join(format!("{plugin}.toml"))
    }

    /// The plugin's approval; `None` if nobody approved it.
    pub fn get(&self, plugin: &str) -> Result<Option<Capabilities>, ApprovalError> {
        let path = self.path(plugin);
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => return Err(ApprovalError::Io { path, source }),
        };
        let file: File = toml::from_str(&text).map_err(|e| ApprovalError::Invalid {
            path: path.clone(),
            message: e.to_string(),
        })?;
        Ok(Some(file.capabilities))
    }

    /// Records an approval, atomically (see [`crate::durable`]).
    pub fn set(&self, plugin: &str, caps: &Capabilities) -> Result<(), ApprovalError> {
        let path = self.path(plugin);
        let body = toml::to_string(&File {
            capabilities: caps.clone(),
        })
        .map_err(|e| ApprovalError::Invalid {
            path: path.clone(),
            message: e.to_string(),
        })?;
        let text = format!("# Capabilities the operator approved for plugin {plugin:?}.\n{body}");
        crate::durable::write_private(&self.dir, &format!("{plugin}.toml"), text.as_bytes())
            .map_err(|source| ApprovalError::Io { path, source })
    }

    pub fn remove(&self, plugin: &str) -> Result<(), ApprovalError> {
        let path = self.path(plugin);
        crate::durable::remove(&path).map_err(|source| ApprovalError::Io { path, source })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn round_trip_private_and_absent() -> Result<(), Box<dyn std::error::Error>> {
        let d = tempfile::tempdir()?;
        let a = Approvals::new(d.path());
        assert_eq!(a.get("p")?, None);
        let caps = Capabilities {
            storage: true,
            http: vec!["api.example.com".into()],
            env: vec!["A_*".into()],
            fs_read: vec![],
            shell: false,
        };
        a.set("p", &caps)?;
        assert_eq!(a.get("p")?, Some(caps.clone()));
        let mode = std::fs::metadata(d.path().join("approvals/p.toml"))?
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        // The format is a manifest's [capabilities] table.
        std::fs::write(
            d.path().join("approvals/q.toml"),
            "[capabilities]\nstorage = true\nenv = [\"X\"]\n",
        )?;
        assert!(a.get("q")?.is_some_and(|c| c.storage && c.env == ["X"]));
        std::fs::write(
            d.path().join("approvals/r.toml"),
            "[capabilities]\nstorage = 1\n",
        )?;
        assert!(a.get("r").is_err_and(|e| e.to_string().contains("r.toml")));
        a.remove("p")?;
        a.remove("p")?;
        assert_eq!(a.get("p")?, None);
        Ok(())
    }
}
