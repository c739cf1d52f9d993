//! Per-plugin secrets files: `<secrets_dir>/<plugin>.env`, `NAME=value` lines, so
//! an operator can give one plugin an API key without putting it in tarkd's
//! environment (where every plugin granted that name could read it). The file
//! must be a regular file owned by tarkd's user and readable by nobody else;
//! otherwise it is ignored and the reason logged.

use std::io::Read;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::Path;

/// Largest secrets file read.
const MAX_BYTES: u64 = 64 * 1024;

/// The value of `name` in `plugin`'s secrets file: `Ok(None)` when there is no
/// file or no such line, `Err` when the file is unsafe or unreadable.
pub fn lookup(dir: &Path, plugin: &str, name: &str) -> Result<Option<String>, String> {
    let path = dir.join(format!("{plugin}.env"));
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(&path);
    let file = match file {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("secrets file {}: {e}", path.display())),
    };
    let meta = file
        .metadata()
        .map_err(|e| format!("secrets file {}: {e}", path.display()))?;
    check_mode(
        &path,
        meta.is_file(),
        meta.mode(),
        meta.uid(),
        nix::unistd::geteuid().as_raw(),
    )?;
    let mut text = String::new();
    file.take(MAX_BYTES)
        .read_to_string(&mut text)
        .map_err(|e| format!("secrets file {}: {e}", path.display()))?;
    Ok(parse(&text, name))
}

/// Refuses a secrets file others could read or change.
fn check_mode(path: &Path, regular: bool, mode: u32, owner: u32, me: u32) -> Result<(), String> {
    if !regular {
        return Err(format!(
            "secrets file {} is not a regular file",
            path.display()
        ));
    }
    if owner != me {
        return Err(format!(
            "secrets file {} is owned by uid {owner}, not tarkd's uid {me}; ignored",
            path.display()
        ));
    }
    if mode & 0o077 != 0 {
        return Err(format!(
            "secrets file {} has mode {:04o}; it must be 0600 (chmod 600); ignored",
            path.display(),
            mode & 0o7777
        ));
    }
    Ok(())
}

/// The value of the last `name=` line; `#` comments and blank lines skipped.
fn parse(text: &str, name: &str) -> Option<String> {
    text.lines()
        .map(str::trim_start)
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split_once('='))
        .filter(|(k, _)| k.trim() == name)
        .map(|(_, v)| v.trim_end_matches('\r').to_owned())
        .next_back()
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    #[test]
    fn parse_table() {
        let text = "# comment\nA=1\n  B = two words \nC=x=y\nA=last\r\n#D=hidden\nE=\n";
        for (name, want) in [
            ("A", Some("last")),
            ("B", Some(" two words ")),
            ("C", Some("x=y")),
            ("D", None),
            ("E", Some("")),
            ("F", None),
        ] {
            assert_eq!(parse(text, name).as_deref(), want, "{name}");
        }
    }

    #[test]
    fn mode_table() {
        let p = Path::new("/s/p.env");
        assert!(check_mode(p, true, 0o100600, 5, 5).is_ok());
        assert!(check_mode(p, true, 0o100400, 5, 5).is_ok());
        assert!(check_mode(p, true, 0o100640, 5, 5).is_err_and(|e| e.contains("0640")));
        assert!(check_mode(p, true, 0o100604, 5, 5).is_err());
        assert!(check_mode(p, true, 0o100600, 6, 5).is_err_and(|e| e.contains("owned by uid 6")));
        assert!(check_mode(p, false, 0o100600, 5, 5).is_err());
    }

    #[test]
    fn files_are_read_only_when_private() -> std::io::Result<()> {
        let d = tempfile::tempdir()?;
        assert_eq!(lookup(d.path(), "p", "K"), Ok(None));
        let f = d.path().join("p.env");
        std::fs::write(&f, "K=v\n")?;
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o644))?;
        assert!(lookup(d.path(), "p", "K").is_err_and(|e| e.contains("chmod 600")));
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o600))?;
        assert_eq!(lookup(d.path(), "p", "K"), Ok(Some("v".into())));
        std::os::unix::fs::symlink(&f, d.path().join("q.env"))?;
        assert!(lookup(d.path(), "q", "K").is_err());
        Ok(())
    }
}
