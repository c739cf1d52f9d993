//! Reading the plugin folder an operator asks tarkd to install.
//!
//! tarkd may read what its caller cannot, and the caller may change the folder
//! while tarkd reads it. So the folder is read once, into memory, and what is
//! installed is exactly what was read: every open is `openat2` beneath the
//! folder with no symlink followed anywhere on the path (`RESOLVE_BENEATH |
//! RESOLVE_NO_SYMLINKS`), only directories and regular files are accepted (a
//! link, fifo, socket or device fails the install, named), an unprivileged
//! caller must own every entry, and the walk stops at [`Limits`]. Names
//! starting with `.` (`.git`, editor files) are skipped.

use std::io::Read;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use nix::fcntl::{OFlag, OpenHow, ResolveFlag, openat2};
use nix::sys::stat::{FileStat, Mode, SFlag, fstat};

/// How much of a folder tarkd will copy.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub files: usize,
    pub bytes: u64,
    pub depth: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            files: 1024,
            bytes: 128 << 20,
            depth: 16,
        }
    }
}

/// A plugin folder as read: its directories and files, relative paths.
#[derive(Debug, Default)]
pub struct Folder {
    pub dirs: Vec<PathBuf>,
    pub files: Vec<(PathBuf, Vec<u8>)>,
    pub bytes: u64,
}

impl Folder {
    /// The contents of the file at `rel`, if the folder has one.
    pub fn file(&self, rel: &Path) -> Option<&[u8]> {
        self.files
            .iter()
            .find(|(p, _)| p == rel)
            .map(|(_, b)| b.as_slice())
    }

    /// Writes the folder under `dest` (which must not exist), each file synced.
    pub fn write(&self, dest: &Path) -> std::io::Result<()> {
        use std::io::Write;
        std::fs::create_dir(dest)?;
        for d in &self.dirs {
            std::fs::create_dir(dest.join(d))?;
        }
        for (rel, bytes) in &self.files {
            let mut f = std::fs::File::create_new(dest.join(rel))?;
            f.write_all(bytes)?;
            f.sync_all()?;
        }
        Ok(())
    }
}

struct Walk {
    root: PathBuf,
    must_own: Option<u32>,
    limits: Limits,
    folder: Folder,
    /// False once an entry was refused for its owner.
    owned: bool,
}

/// Opens `name` beneath `dir` with no symlink followed. `openat2` where the
/// kernel and any syscall filter around tarkd offer it; where they answer
/// `ENOSYS` (kernels before 5.6, a systemd whose filter predates the call),
/// the same rule one component at a time ([`beneath_by_walk`]).
fn beneath(dir: &impl AsFd, name: &Path, flags: OFlag) -> nix::Result<OwnedFd> {
    let flags = flags | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC | OFlag::O_NONBLOCK;
    let how = OpenHow::new()
        .flags(flags)
        .resolve(ResolveFlag::RESOLVE_BENEATH | ResolveFlag::RESOLVE_NO_SYMLINKS);
    match openat2(dir, name, how) {
        Err(nix::Error::ENOSYS) => beneath_by_walk(dir, name, flags),
        other => other,
    }
}

/// `RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS` without `openat2`: only plain
/// components (no `/`, `.` or `..`: `EXDEV`, as `openat2` answers for a path
/// that would leave), each folder opened from the one before and refused if
/// it is a link (`ELOOP`) or no folder (`ENOTDIR`), the last with
/// `flags`, which carry `O_NOFOLLOW`.
fn beneath_by_walk(dir: &impl AsFd, name: &Path, flags: OFlag) -> nix::Result<OwnedFd> {
    use std::path::Component;
    let mut parts = Vec::new();
    for c in name.components() {
        match c {
            Component::Normal(p) => parts.push(p),
            _ => return Err(nix::Error::EXDEV),
        }
    }
    let Some((last, folders)) = parts.split_last() else {
        return Err(nix::Error::ENOENT);
    };
    // O_PATH | O_NOFOLLOW opens a link itself, so fstat can tell a link
    // (ELOOP, as openat2 says) from any other non-folder (ENOTDIR).
    let folder_flags = OFlag::O_PATH | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
    let mut held: Option<OwnedFd> = None;
    for part in folders {
        let from = held.as_ref().map_or(dir.as_fd(), |fd| fd.as_fd());
        let next = nix::fcntl::openat(from, *part, folder_flags, Mode::empty())?;
        match SFlag::from_bits_truncate(fstat(&next)?.st_mode) & SFlag::S_IFMT {
            SFlag::S_IFDIR => held = Some(next),
            SFlag::S_IFLNK => return Err(nix::Error::ELOOP),
            _ => return Err(nix::Error::ENOTDIR),
        }
    }
    let from = held.as_ref().map_or(dir.as_fd(), |fd| fd.as_fd());
    nix::fcntl::openat(from, *last, flags, Mode::empty())
}

impl Walk {
    fn shown(&self, rel: &Path) -> String {
        self.root.join(rel).display().to_string()
    }

    fn check(&mut self, rel: &Path, st: &FileStat) -> Result<(), String> {
        if let Some(uid) = self.must_own
            && st.st_uid != uid
        {
            self.owned = false;
            return Err(format!(
                "{} is owned by uid {}, not by the caller (uid {uid})",
                self.shown(rel),
                st.st_uid
            ));
        }
        Ok(())
    }

    fn dir(&mut self, fd: OwnedFd, rel: &Path, depth: usize) -> Result<(), String> {
        if depth > self.limits.depth {
            return Err(format!(
                "{} is nested more than {} folders deep",
                self.shown(rel),
                self.limits.depth
            ));
        }
        let listing = nix::dir::Dir::from_fd(fd.try_clone().map_err(|e| e.to_string())?)
            .map_err(|e| format!("{}: {e}", self.shown(rel)))?;
        let mut names: Vec<PathBuf> = Vec::new();
        for entry in listing {
            let entry = entry.map_err(|e| format!("{}: {e}", self.shown(rel)))?;
            let name = entry.file_name().to_bytes();
            if name.first() != Some(&b'.') {
                names.push(PathBuf::from(std::ffi::OsStr::from_bytes(name)));
            }
        }
        names.sort();
        for name in names {
            let child = rel.join(&name);
            let opened = beneath(&fd, &name, OFlag::O_RDONLY).map_err(|e| match e {
                nix::Error::ELOOP | nix::Error::EXDEV => format!(
                    "{} is a symbolic link: a plugin folder holds only folders and regular files",
                    self.shown(&child)
                ),
                e => format!("{}: {e}", self.shown(&child)),
            })?;
            let st = fstat(&opened).map_err(|e| format!("{}: {e}", self.shown(&child)))?;
            self.check(&child, &st)?;
            match SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT {
                SFlag::S_IFDIR => {
                    self.folder.dirs.push(child.clone());
                    self.dir(opened, &child, depth + 1)?;
                }
                SFlag::S_IFREG => self.file(opened, child, st.st_size as u64)?,
                _ => {
                    return Err(format!(
                        "{} is not a regular file or folder (a fifo, socket or device)",
                        self.shown(&child)
                    ));
                }
            }
        }
        Ok(())
    }

    fn file(&mut self, fd: OwnedFd, rel: PathBuf, size: u64) -> Result<(), String> {
        if self.folder.files.len() >= self.limits.files {
            return Err(format!(
                "{} has more than {} files",
                self.root.display(),
                self.limits.files
            ));
        }
        let room = self.limits.bytes - self.folder.bytes;
        let too_big = || {
            format!(
                "{} holds more than {} bytes",
                self.root.display(),
                self.limits.bytes
            )
        };
        if size > room {
            return Err(too_big());
        }
        let mut bytes = Vec::with_capacity(size as usize);
        std::fs::File::from(fd)
            .take(room + 1)
            .read_to_end(&mut bytes)
            .map_err(|e| format!("{}: {e}", self.shown(&rel)))?;
        if bytes.len() as u64 > room {
            return Err(too_big());
        }
        self.folder.bytes += bytes.len() as u64;
        self.folder.files.push((rel, bytes));
        Ok(())
    }
}

/// Reads one file of an installed plugin folder: `rel` beneath `dir`, with no
/// link anywhere on the way, must be a regular file of at most `max` bytes,
/// checked on the opened file before a byte is read (a device would otherwise
/// be read without end, and a FIFO would block tarkd).
pub fn read_regular(dir: &Path, rel: &Path, max: u64) -> Result<Vec<u8>, String> {
    let path = dir.join(rel);
    let shown = || path.display().to_string();
    let root = nix::fcntl::open(
        dir,
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| format!("{}: {e}", dir.display()))?;
    let fd = beneath(&root, rel, OFlag::O_RDONLY | OFlag::O_NOCTTY).map_err(|e| match e {
        nix::Error::ENOENT => format!("{} not found", shown()),
        nix::Error::ELOOP | nix::Error::EXDEV => {
            format!("{} is a symbolic link or leaves the plugin folder", shown())
        }
        e => format!("{}: {e}", shown()),
    })?;
    let st = fstat(&fd).map_err(|e| format!("{}: {e}", shown()))?;
    if SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT != SFlag::S_IFREG {
        return Err(format!(
            "{} is not a regular file (a folder, fifo, socket or device)",
            shown()
        ));
    }
    let size = st.st_size as u64;
    if size > max {
        return Err(format!(
            "{} is {size} bytes, over the limit of {max}",
            shown()
        ));
    }
    let mut bytes = Vec::with_capacity(size as usize);
    std::fs::File::from(fd)
        .take(max + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| format!("{}: {e}", shown()))?;
    if bytes.len() as u64 > max {
        return Err(format!("{} grew past the limit of {max} bytes", shown()));
    }
    Ok(bytes)
}

/// Why a folder was not read.
#[derive(Debug, thiserror::Error)]
pub enum Refused {
    /// An entry belongs to someone other than the caller.
    #[error("{0}")]
    NotOwned(String),
    /// Links, special files, limits, I/O.
    #[error("{0}")]
    Invalid(String),
}

/// Reads `root` (an absolute path to a folder; itself not a link). With
/// `must_own`, every entry must belong to that uid.
pub fn read(root: &Path, must_own: Option<u32>, limits: Limits) -> Result<Folder, Refused> {
    let mut owned = true;
    read_inner(root, must_own, limits, &mut owned).map_err(|e| {
        if owned {
            Refused::Invalid(e)
        } else {
            Refused::NotOwned(e)
        }
    })
}

fn read_inner(
    root: &Path,
    must_own: Option<u32>,
    limits: Limits,
    owned: &mut bool,
) -> Result<Folder, String> {
    let fd = nix::fcntl::open(
        root,
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| match e {
        nix::Error::ELOOP | nix::Error::ENOTDIR => {
            format!("{} is not a folder (a link or a file)", root.display())
        }
        e => format!("{}: {e}", root.display()),
    })?;
    let mut walk = Walk {
        root: root.to_owned(),
        must_own,
        limits,
        folder: Folder::default(),
        owned: true,
    };
    let st = fstat(&fd).map_err(|e| format!("{}: {e}", root.display()))?;
    let result = walk
        .check(Path::new(""), &st)
        .and_then(|()| walk.dir(fd, Path::new(""), 0));
    *owned = walk.owned;
    result.map(|()| walk.folder)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree(d: &Path) -> std::io::Result<()> {
        std::fs::create_dir_all(d.join("dist/sub"))?;
        std::fs::write(d.join("plugin.toml"), b"toml")?;
        std::fs::write(d.join("dist/plugin.wasm"), b"\0asm")?;
        std::fs::write(d.join("dist/sub/readme"), b"hi")?;
        std::fs::create_dir(d.join(".git"))?;
        std::fs::write(d.join(".git/HEAD"), b"ref")?;
        Ok(())
    }

    #[test]
    fn a_folder_is_read_whole_skipping_dot_entries() -> std::io::Result<()> {
        let d = tempfile::tempdir()?;
        tree(d.path())?;
        let f = read(d.path(), None, Limits::default()).map_err(std::io::Error::other)?;
        assert_eq!(f.dirs, [PathBuf::from("dist"), PathBuf::from("dist/sub")]);
        let names: Vec<_> = f.files.iter().map(|(p, _)| p.clone()).collect();
        assert_eq!(
            names,
            ["dist/plugin.wasm", "dist/sub/readme", "plugin.toml"].map(PathBuf::from)
        );
        assert_eq!(f.bytes, 10);
        assert_eq!(f.file(Path::new("dist/sub/readme")), Some(&b"hi"[..]));
        let out = tempfile::tempdir()?;
        f.write(&out.path().join("copy"))?;
        assert_eq!(
            std::fs::read(out.path().join("copy/dist/plugin.wasm"))?,
            b"\0asm"
        );
        Ok(())
    }

    #[test]
    fn links_special_files_and_excess_are_refused_by_name() -> std::io::Result<()> {
        type Setup = fn(&Path) -> std::io::Result<()>;
        let cases: &[(Setup, Limits, &str)] = &[
            (
                |d| std::os::unix::fs::symlink("/etc/passwd", d.join("dist/passwd")),
                Limits::default(),
                "dist/passwd is a symbolic link",
            ),
            (
                |d| std::os::unix::fs::symlink("/etc", d.join("etc")),
                Limits::default(),
                "etc is a symbolic link",
            ),
            (
                |d| std::os::unix::fs::symlink("sub", d.join("dist/again")),
                Limits::default(),
                "dist/again is a symbolic link",
            ),
            (
                |d| {
                    nix::unistd::mkfifo(&d.join("fifo"), Mode::S_IRWXU)
                        .map_err(std::io::Error::other)
                },
                Limits::default(),
                "fifo is not a regular file",
            ),
            (
                |_| Ok(()),
                Limits {
                    files: 2,
                    ..Limits::default()
                },
                "more than 2 files",
            ),
            (
                |_| Ok(()),
                Limits {
                    bytes: 9,
                    ..Limits::default()
                },
                "more than 9 bytes",
            ),
            (
                |_| Ok(()),
                Limits {
                    depth: 1,
                    ..Limits::default()
                },
                "dist/sub is nested more than 1",
            ),
        ];
        for (setup, limits, want) in cases {
            let d = tempfile::tempdir()?;
            tree(d.path())?;
            setup(d.path())?;
            let err = read(d.path(), None, *limits)
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default();
            assert!(err.contains(want), "{want}: {err}");
        }
        let d = tempfile::tempdir()?;
        tree(d.path())?;
        let link = d.path().join("link");
        std::os::unix::fs::symlink(d.path().join("dist"), &link)?;
        let err = read(&link, None, Limits::default()).err();
        assert!(
            matches!(&err, Some(Refused::Invalid(e)) if e.contains("is not a folder")),
            "{err:?}"
        );
        // Owned by the test's user: another uid is refused.
        let err = read(d.path(), Some(4242), Limits::default()).err();
        assert!(
            matches!(&err, Some(Refused::NotOwned(e)) if e.contains("not by the caller (uid 4242)")),
            "{err:?}"
        );
        Ok(())
    }

    /// The walk that stands in for `openat2` where it is missing never opens
    /// what `openat2` refuses: it opens the same file, refuses with the same
    /// kind of error, or (for `.` and `..` that stay inside) is stricter.
    #[test]
    fn the_walk_without_openat2_refuses_what_openat2_refuses() -> std::io::Result<()> {
        let d = tempfile::tempdir()?;
        tree(d.path())?;
        let outside = tempfile::tempdir()?;
        std::fs::write(outside.path().join("secret"), b"s")?;
        std::os::unix::fs::symlink(outside.path(), d.path().join("out"))?;
        std::os::unix::fs::symlink("plugin.toml", d.path().join("alias"))?;
        std::os::unix::fs::symlink("dist", d.path().join("distlink"))?;
        let root = nix::fcntl::open(
            d.path(),
            OFlag::O_RDONLY | OFlag::O_DIRECTORY,
            Mode::empty(),
        )?;
        let flags = OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC | OFlag::O_NONBLOCK;
        let how = OpenHow::new()
            .flags(flags)
            .resolve(ResolveFlag::RESOLVE_BENEATH | ResolveFlag::RESOLVE_NO_SYMLINKS);
        let kind = |r: nix::Result<OwnedFd>| match r {
            Ok(fd) => Ok(fstat(&fd).map(|st| st.st_ino).unwrap_or(0)),
            // openat2 says ELOOP or EXDEV for a link, as the walk does.
            Err(nix::Error::EXDEV | nix::Error::ELOOP) => Err("link or outside"),
            Err(nix::Error::ENOENT) => Err("missing"),
            Err(nix::Error::ENOTDIR) => Err("not a folder"),
            Err(_) => Err("other"),
        };
        // (path, the walk opens it, openat2 opens it)
        let cases = [
            ("plugin.toml", true, true),
            ("dist/plugin.wasm", true, true),
            ("dist/sub/readme", true, true),
            ("dist/sub", true, true),
            ("alias", false, false),
            ("out/secret", false, false),
            ("distlink/plugin.wasm", false, false),
            ("../x", false, false),
            ("/etc/passwd", false, false),
            ("missing", false, false),
            ("plugin.toml/x", false, false),
            ("dist/../plugin.toml", false, true),
            ("./plugin.toml", false, true),
        ];
        for (path, walk_opens, openat2_opens) in cases {
            let want = kind(openat2(&root, path, how));
            let got = kind(beneath_by_walk(&root, Path::new(path), flags));
            assert_eq!(got.is_ok(), walk_opens, "{path}: {got:?}");
            assert_eq!(want.is_ok(), openat2_opens, "{path}: {want:?}");
            if walk_opens == openat2_opens {
                assert_eq!(got, want, "{path}: the walk and openat2 disagree");
            }
        }
        Ok(())
    }
}
