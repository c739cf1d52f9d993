//! Read-only file access for plugins (`fs.read`).
//!
//! A path is allowed when it lies under an `fs_read` entry of every grant source.
//! It is checked twice: lexically first (so a refused path reveals nothing about
//! what exists), then after canonicalisation (so a symlink cannot lead out). The
//! file is then opened without following a final symlink, must be a regular
//! file, and the opened descriptor must still be the checked path.

use std::io::Read;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use serde::Deserialize;

/// `[fs]` configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FsConfig {
    /// What `~` means in entries and requests; default: tarkd's `$HOME`.
    pub home: Option<PathBuf>,
    pub max_read_kib: u64,
}

impl Default for FsConfig {
    fn default() -> Self {
        Self {
            home: None,
            max_read_kib: 1024,
        }
    }
}

/// Where `~`, `./` and `/proc/self` point for one plugin.
#[derive(Debug, Clone)]
pub struct Roots {
    pub home: Option<PathBuf>,
    pub plugin_dir: PathBuf,
    /// The plugin's own process (its worker, by tarkd's pid numbering) once
    /// known; 0 before, and for what runs in no worker.
    pub own_pid: Arc<AtomicU32>,
}

/// Longest path a plugin may name or declare, in bytes (PATH_MAX).
pub const MAX_PATH: usize = 4096;

/// Why a read failed. `Denied` is audited.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum FsError {
    #[error("{0}")]
    Denied(String),
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    TooLarge(String),
}

/// `~/x` against the home, `./x` against the plugin's folder, `/proc/self`
/// and `/proc/thread-self` as the plugin's own process, `/x` as it is; then
/// `.` and `..` resolved lexically. `None` for anything else.
pub fn expand(path: &str, roots: &Roots) -> Option<PathBuf> {
    if path.is_empty() || path.len() > MAX_PATH || path.contains('\0') {
        return None;
    }
    let own = roots.own_pid.load(Ordering::Relaxed);
    if own != 0
        && let Some(rest) = ["/proc/self", "/proc/thread-self"]
            .iter()
            .find_map(|p| path.strip_prefix(p))
            .filter(|rest| rest.is_empty() || rest.starts_with('/'))
    {
        return normalise(&PathBuf::from(format!("/proc/{own}{rest}")));
    }
    let joined = if path == "~" {
        roots.home.clone()?
    } else if let Some(rest) = path.strip_prefix("~/") {
        roots.home.as_ref()?.join(rest)
    } else if path == "." {
        roots.plugin_dir.clone()
    } else if let Some(rest) = path.strip_prefix("./") {
        roots.plugin_dir.join(rest)
    } else if path.starts_with('/') {
        PathBuf::from(path)
    } else {
        return None;
    };
    normalise(&joined)
}

/// Resolves `.` and `..` without touching the file system; `..` at the root
/// stays at the root. Relative paths are refused.
pub fn normalise(path: &Path) -> Option<PathBuf> {
    let mut out = PathBuf::from("/");
    for c in path.components() {
        match c {
            Component::RootDir => {}
            Component::CurDir => {}
            Component::ParentDir => {
                out.pop();
            }
            Component::Normal(n) => out.push(n),
            Component::Prefix(_) => return None,
        }
    }
    path.is_absolute().then_some(out)
}

/// Whether `path` is one of `entries` or below one (component-wise).
pub fn under(path: &Path, entries: &[PathBuf]) -> bool {
    entries.iter().any(|e| path.starts_with(e))
}

/// One list of allowed paths: the refusal to give when it does not allow a
/// path, the entries, and whether the trust mode lets a path it does not allow
/// through anyway (the refusal is then returned in `Ok` for the caller to log).
pub type PathList<'a> = (String, &'a [String], bool);

/// The lexical check: `request` expanded, and the entries of each list that
/// allows it (a list that does not, and whose refusal the trust mode softens,
/// gives the refusal to log instead).
pub struct Permitted {
    pub lexical: PathBuf,
    allowing: Vec<Vec<PathBuf>>,
    pub unlisted: Option<String>,
}

/// Whether every list in `sources` allows `request`, on its words alone.
pub fn permitted(
    request: &str,
    sources: &[PathList<'_>],
    roots: &Roots,
) -> Result<Permitted, FsError> {
    if request.len() > MAX_PATH {
        return Err(FsError::Denied(format!(
            "a path of {} bytes is over the {MAX_PATH}-byte limit",
            request.len()
        )));
    }
    let lexical = expand(request, roots).ok_or_else(|| {
        FsError::Invalid(format!(
            "{request:?} is not an absolute, ~/ or ./ path (or ~ has no home configured)"
        ))
    })?;
    let mut unlisted = None;
    let mut allowing = Vec::new();
    for (why, list, soft) in sources {
        let entries: Vec<PathBuf> = list.iter().filter_map(|e| expand(e, roots)).collect();
        if under(&lexical, &entries) {
            allowing.push(entries);
        } else if *soft {
            unlisted.get_or_insert_with(|| why.clone());
        } else {
            return Err(FsError::Denied(why.clone()));
        }
    }
    Ok(Permitted {
        lexical,
        allowing,
        unlisted,
    })
}

/// Whether a canonical path is inside the `/proc/<pid>` of a process other
/// than `own` (the plugin's worker; 0: none). Every other process's
/// environment, memory, command line, descriptors and root are out of reach
/// of any grant, tarkd's (which `/proc/self` would be, read by tarkd) and
/// other root processes' included: tarkd reads as root.
pub fn other_process(canonical: &Path, own: u32) -> bool {
    let mut parts = canonical.components();
    let (Some(Component::RootDir), Some(Component::Normal(proc)), Some(Component::Normal(n))) =
        (parts.next(), parts.next(), parts.next())
    else {
        return false;
    };
    if proc != "proc" {
        return false;
    }
    match n.to_str().and_then(|n| n.parse::<u32>().ok()) {
        Some(n) => n != own || own == 0,
        // Not canonical forms, but never a plugin's either.
        None => n == "self" || n == "thread-self",
    }
}

/// Reads `request` if every list in `sources` allows it.
pub fn read(
    request: &str,
    sources: &[PathList<'_>],
    roots: &Roots,
    max_bytes: u64,
) -> Result<(String, Option<String>), FsError> {
    let Permitted {
        lexical,
        allowing,
        unlisted,
    } = permitted(request, sources, roots)?;
    let canonical = std::fs::canonicalize(&lexical)
        .map_err(|e| FsError::NotFound(format!("{request:?}: {e}")))?;
    // Entries that do not exist allow nothing; those that do count by their real
    // location, so a symlinked entry still works and a symlink inside one cannot
    // lead out.
    for entries in allowing {
        let real: Vec<PathBuf> = entries
            .iter()
            .filter_map(|e| std::fs::canonicalize(e).ok())
            .collect();
        if !under(&canonical, &real) {
            return Err(FsError::Denied(format!(
                "{request:?} resolves to {} (through a symlink), outside the allowed paths",
                canonical.display()
            )));
        }
    }
    // No other process is a plugin's to read, whatever the grant says.
    if other_process(&canonical, roots.own_pid.load(Ordering::Relaxed)) {
        return Err(FsError::Denied(format!(
            "{request:?} resolves to {}, another process than the plugin's own, which no grant reaches",
            canonical.display()
        )));
    }
    // Devices, FIFOs and sockets are refused before they are opened (opening
    // one can block or act).
    let kind = std::fs::symlink_metadata(&canonical)
        .map_err(|e| FsError::NotFound(format!("{request:?}: {e}")))?;
    if !kind.is_file() {
        return Err(FsError::Invalid(format!(
            "{request:?} is not a regular file"
        )));
    }
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(&canonical)
        .map_err(|e| FsError::NotFound(format!("{request:?}: {e}")))?;
    let meta = file
        .metadata()
        .map_err(|e| FsError::NotFound(format!("{request:?}: {e}")))?;
    if !meta.is_file() {
        return Err(FsError::Invalid(format!(
            "{request:?} is not a regular file"
        )));
    }
    // The descriptor must be the file that was checked, not one swapped in since.
    let opened = std::fs::read_link(format!("/proc/self/fd/{}", {
        use std::os::fd::AsRawFd;
        file.as_raw_fd()
    }));
    if opened.as_deref().ok() != Some(canonical.as_path()) {
        return Err(FsError::Denied(format!(
            "{request:?} changed while it was being opened"
        )));
    }
    let too_large = || {
        FsError::TooLarge(format!(
            "{request:?} is over the {} KiB read limit",
            max_bytes / 1024
        ))
    };
    if meta.len() > max_bytes {
        return Err(too_large());
    }
    let mut bytes = Vec::new();
    (&mut file)
        .take(max_bytes + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| FsError::NotFound(format!("{request:?}: {e}")))?;
    if bytes.len() as u64 > max_bytes {
        return Err(too_large());
    }
    let text = String::from_utf8(bytes)
        .map_err(|_| FsError::Invalid(format!("{request:?} is not UTF-8 text")))?;
    Ok((text, unlisted))
}

#[cfg(test)]
mod tests;
