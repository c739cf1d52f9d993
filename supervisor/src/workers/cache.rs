//! Compiled-module cache: a plugin is compiled once per version, not at every
//! worker start.
//!
//! A worker compiles a module it is given as wasm and returns the artifact before
//! any guest code runs; tarkd keeps it here, keyed by the wasm's SHA-256, the
//! worker binary's identity (wasmtime version and build) and the engine settings
//! that change code (fuel). The directory is tarkd's own (0700): an artifact is
//! native code the next worker maps executable.

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

#[derive(Debug, Clone)]
pub struct ArtifactCache {
    dir: PathBuf,
    /// Identifies the worker build; part of every key.
    worker_id: String,
}

impl ArtifactCache {
    /// Opens the cache for artifacts of the worker executable at `worker`.
    pub fn open(dir: PathBuf, worker: &Path) -> std::io::Result<Self> {
        std::fs::create_dir_all(&dir)?;
        set_private(&dir)?;
        // The worker build is identified by its file's metadata, which changes on
        // every install. Hashing the binary would cost seconds per start in debug
        // builds, and is not needed for safety: wasmtime itself refuses an artifact
        // made by another engine version or configuration, and tarkd recompiles.
        use std::os::unix::fs::MetadataExt;
        let m = std::fs::metadata(worker)?;
        let id = format!(
            "{}:{}:{}:{}",
            m.dev(),
            m.ino(),
            m.size(),
            m.mtime_nsec() + m.mtime() * 1_000_000_000
        );
        let worker_id = hex::encode(&Sha256::digest(id.as_bytes())[..12]);
        Ok(Self { dir, worker_id })
    }

    fn name(&self, wasm_sha256: &str, fuel: bool) -> String {
        let fuel = if fuel { "-fuel" } else { "" };
        format!("{wasm_sha256}-{}{fuel}.cwasm", self.worker_id)
    }

    fn path(&self, wasm_sha256: &str, fuel: bool) -> PathBuf {
        self.dir.join(self.name(wasm_sha256, fuel))
    }

    /// The artifact for this module, if an earlier worker compiled it.
    pub fn get(&self, wasm_sha256: &str, fuel: bool) -> Option<Vec<u8>> {
        std::fs::read(self.path(wasm_sha256, fuel)).ok()
    }

    /// Stores an artifact, atomically: readers never see a partial file.
    pub fn put(&self, wasm_sha256: &str, fuel: bool, artifact: &[u8]) -> std::io::Result<()> {
        crate::durable::write_private(&self.dir, &self.name(wasm_sha256, fuel), artifact)
    }

    /// Drops an artifact a worker refused (for instance after an upgrade).
    pub fn remove(&self, wasm_sha256: &str, fuel: bool) {
        let _ = std::fs::remove_file(self.path(wasm_sha256, fuel));
    }
}

/// Makes a directory private to tarkd's user.
pub fn set_private(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_keys_differ_by_fuel() -> std::io::Result<()> {
        let d = tempfile::tempdir()?;
        let worker = d.path().join("worker");
        std::fs::write(&worker, b"binary v1")?;
        let c = ArtifactCache::open(d.path().join("cache"), &worker)?;
        assert!(c.get("abc", false).is_none());
        c.put("abc", false, b"artifact")?;
        assert_eq!(c.get("abc", false).as_deref(), Some(&b"artifact"[..]));
        assert!(c.get("abc", true).is_none());
        c.remove("abc", false);
        assert!(c.get("abc", false).is_none());
        std::fs::write(&worker, b"binary v2, longer")?;
        c.put("abc", false, b"old")?;
        let c2 = ArtifactCache::open(d.path().join("cache"), &worker)?;
        assert!(
            c2.get("abc", false).is_none(),
            "a new worker build must not see old artifacts"
        );
        Ok(())
    }
}
