//! Files tarkd keeps across restarts (approvals, started channels, compiled
//! artifacts): written whole or not at all, readable only by tarkd's user.

use std::io::Write;
use std::path::Path;

/// Writes `name` in `dir` (created 0700 if need be) as a 0600 file: into a
/// temporary file, synced, then renamed over the old one, and the directory
/// synced, so a crash leaves the old contents or the new, never half.
pub fn write_private(dir: &Path, name: &str, contents: &[u8]) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(dir)?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
    let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
    tmp.write_all(contents)?;
    tmp.as_file().sync_all()?;
    tmp.persist(dir.join(name)).map_err(|e| e.error)?;
    std::fs::File::open(dir)?.sync_all()
}

/// Removes `path`; one that is already gone is fine.
pub fn remove(path: &Path) -> std::io::Result<()> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn private_whole_and_replaced() -> std::io::Result<()> {
        let d = tempfile::tempdir()?;
        let dir = d.path().join("sub");
        write_private(&dir, "f", b"one")?;
        write_private(&dir, "f", b"two")?;
        assert_eq!(std::fs::read(dir.join("f"))?, b"two");
        let mode = |p: &Path| std::fs::metadata(p).map(|m| m.permissions().mode() & 0o777);
        assert_eq!(mode(&dir.join("f"))?, 0o600);
        assert_eq!(mode(&dir)?, 0o700);
        assert_eq!(
            std::fs::read_dir(&dir)?.count(),
            1,
            "no temporary file left"
        );
        remove(&dir.join("f"))?;
        remove(&dir.join("f"))?;
        assert!(!dir.join("f").exists());
        Ok(())
    }
}
