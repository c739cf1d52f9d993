//! The jail's filesystem: a root of its own, holding only what the command
//! needs.
//!
//! tarkd starts tark-jail as uid 0 of a user namespace of its own (mapped to
//! the jail's uid outside), in a mount namespace of its own, so it may build
//! one: a small tmpfs becomes the root, and into it go, bind-mounted
//! read-only, the system's programs and libraries ([`paths::SYSTEM`]), the
//! few files the C library reads ([`paths::CONFIG`]), the paths the plugin
//! declared and the operator approved, and, read-write, `/dev/null` and the
//! Unix sockets the tool declared. The old root is detached. So there is no
//! `/run`, `/var/run`, `/tmp` or `/dev` of the host inside: a command cannot
//! reach journald's `/dev/log`, D-Bus or a container runtime's socket by
//! path, whatever landlock (which does not cover `connect`) allows. Symbolic
//! links among those paths (a merged `/usr`'s `/bin`) are made again as
//! links. A path that does not exist on the host is skipped. Every host path
//! is opened (`O_PATH`) before the staging folder is covered, and bound from
//! its descriptor, so a declared path beneath the staging folder (a folder
//! in `/tmp`) is still the host's.

use std::path::{Path, PathBuf};

use nix::mount::{MntFlags, MsFlags, mount, umount2};

use super::paths;

/// Where the new root is assembled before it becomes `/`: the first of
/// these that is a directory (they are the host's; in this mount namespace,
/// covering one changes nothing outside).
const STAGING: &[&str] = &["/tmp", "/mnt", "/var/tmp", "/media"];

/// How a host path is mounted into the new root.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    ReadOnly,
    /// `/dev/null` and declared sockets: written to, or connected to.
    ReadWrite,
}

/// What goes into the root, in order: system folders and files first, then
/// the sinks, then the declared paths and sockets. A path inside one placed
/// before is already there, and is not placed again.
pub fn plan<'a>(read: &'a [String], sockets: &'a [String]) -> Vec<(&'a str, Access)> {
    let ro = |p: &'a str| (p, Access::ReadOnly);
    paths::SYSTEM
        .iter()
        .chain(paths::CONFIG)
        .copied()
        .map(ro)
        .chain(paths::SINKS.iter().map(|p| (*p, Access::ReadWrite)))
        .chain(read.iter().map(|p| ro(p.as_str())))
        .chain(sockets.iter().map(|p| (p.as_str(), Access::ReadWrite)))
        .collect()
}

fn err(what: &str, path: &Path, e: impl std::fmt::Display) -> String {
    format!("{what} {}: {e}", path.display())
}

/// Builds the root and makes it `/`. Needs CAP_SYS_ADMIN in the jail's user
/// namespace (see the module doc); the caller drops every capability after.
pub fn enter(read: &[String], sockets: &[String]) -> Result<(), String> {
    // Nothing mounted here propagates back to the host.
    mount(
        None::<&str>,
        "/",
        None::<&str>,
        MsFlags::MS_REC | MsFlags::MS_PRIVATE,
        None::<&str>,
    )
    .map_err(|e| format!("making the mount namespace private: {e}"))?;
    let staging = STAGING
        .iter()
        .map(Path::new)
        .find(|p| p.is_dir())
        .ok_or("no folder to build the jail's root in (/tmp, /mnt, /var/tmp, /media)")?;
    let found: Vec<Found> = plan(read, sockets)
        .into_iter()
        .filter_map(|(host, access)| find(Path::new(host), access).transpose())
        .collect::<Result<_, _>>()?;
    mount(
        Some("tmpfs"),
        staging,
        Some("tmpfs"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
        Some("mode=0755,size=1m,nr_inodes=4096"),
    )
    .map_err(|e| err("mounting the jail's root on", staging, e))?;
    for f in &found {
        place(f, staging)?;
    }
    // The new root becomes `/`; the old one, stacked under it, is detached.
    std::env::set_current_dir(staging).map_err(|e| err("entering", staging, e))?;
    nix::unistd::pivot_root(".", ".").map_err(|e| format!("pivot_root: {e}"))?;
    umount2(".", MntFlags::MNT_DETACH).map_err(|e| format!("detaching the host's root: {e}"))?;
    std::env::set_current_dir("/").map_err(|e| format!("entering the new root: {e}"))?;
    mount(
        None::<&str>,
        "/",
        None::<&str>,
        MsFlags::MS_REMOUNT
            | MsFlags::MS_BIND
            | MsFlags::MS_RDONLY
            | MsFlags::MS_NOSUID
            | MsFlags::MS_NODEV,
        None::<&str>,
    )
    .map_err(|e| format!("making the jail's root read-only: {e}"))
}

/// A host path to place, as found before anything was covered.
struct Found {
    host: PathBuf,
    access: Access,
    what: Kind,
}

enum Kind {
    /// A symbolic link, made again with the same target.
    Link(PathBuf),
    /// A folder or file, bound from this descriptor (O_PATH).
    Dir(std::os::fd::OwnedFd),
    File(std::os::fd::OwnedFd),
}

/// `host` as it is now: `None` when the host has no such path.
fn find(host: &Path, access: Access) -> Result<Option<Found>, String> {
    use std::os::unix::fs::OpenOptionsExt;
    let Ok(meta) = std::fs::symlink_metadata(host) else {
        return Ok(None);
    };
    let what = if meta.file_type().is_symlink() {
        Kind::Link(std::fs::read_link(host).map_err(|e| err("reading the link", host, e))?)
    } else {
        let fd = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_PATH | libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(host)
            .map_err(|e| err("opening", host, e))?;
        if meta.is_dir() {
            Kind::Dir(fd.into())
        } else {
            Kind::File(fd.into())
        }
    };
    Ok(Some(Found {
        host: host.to_owned(),
        access,
        what,
    }))
}

/// Puts a found path at the same path under `root`: a link as a link, a
/// folder or file bind-mounted. Skipped when it is already there (inside a
/// folder placed before).
fn place(found: &Found, root: &Path) -> Result<(), String> {
    use std::os::fd::AsRawFd;
    let host = &found.host;
    let inside = root.join(host.strip_prefix("/").unwrap_or(host));
    if std::fs::symlink_metadata(&inside).is_ok() {
        return Ok(());
    }
    if let Some(parent) = inside.parent() {
        std::fs::create_dir_all(parent).map_err(|e| err("making", parent, e))?;
    }
    let fd = match &found.what {
        Kind::Link(to) => {
            return std::os::unix::fs::symlink(to, &inside).map_err(|e| err("linking", &inside, e));
        }
        Kind::Dir(fd) => {
            std::fs::create_dir(&inside).map_err(|e| err("making", &inside, e))?;
            fd
        }
        Kind::File(fd) => {
            std::fs::File::create(&inside).map_err(|e| err("making", &inside, e))?;
            fd
        }
    };
    let source = PathBuf::from(format!("/proc/self/fd/{}", fd.as_raw_fd()));
    // The system's device files (/dev/null, /dev/zero, /dev/urandom) stay
    // devices; nothing else may be one.
    let device = host.starts_with("/dev");
    bind(&source, &inside, found.access, device).map_err(|e| format!("{} ({})", e, host.display()))
}

/// A recursive bind mount of `host` at `at`, read-only (with everything
/// beneath it) unless `access` says otherwise; never set-uid, and no device
/// files unless it is one of the system's (`device`).
fn bind(host: &Path, at: &Path, access: Access, device: bool) -> Result<(), String> {
    mount(
        Some(host),
        at,
        None::<&str>,
        MsFlags::MS_BIND | MsFlags::MS_REC,
        None::<&str>,
    )
    .map_err(|e| err("bind-mounting", host, e))?;
    let mut attrs = MOUNT_ATTR_NOSUID;
    if access == Access::ReadOnly {
        attrs |= MOUNT_ATTR_RDONLY;
    }
    if !device {
        attrs |= MOUNT_ATTR_NODEV;
    }
    set_recursive(at, attrs).map_err(|e| err("restricting", host, e))
}

const MOUNT_ATTR_RDONLY: u64 = 0x1;
const MOUNT_ATTR_NOSUID: u64 = 0x2;
const MOUNT_ATTR_NODEV: u64 = 0x4;

/// `struct mount_attr` of mount_setattr(2).
#[repr(C)]
struct MountAttr {
    attr_set: u64,
    attr_clr: u64,
    propagation: u64,
    userns_fd: u64,
}

/// Sets `attrs` on the mount at `path` and every mount beneath it
/// (mount_setattr(2) with AT_RECURSIVE: Linux 5.12; a classic remount would
/// leave mounts beneath a bound folder writable).
fn set_recursive(path: &Path, attrs: u64) -> std::io::Result<()> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes())?;
    let attr = MountAttr {
        attr_set: attrs,
        attr_clr: 0,
        propagation: 0,
        userns_fd: 0,
    };
    // SAFETY: mount_setattr reads `attr` (its size given) and the path.
    let r = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            libc::AT_FDCWD,
            c.as_ptr(),
            libc::AT_RECURSIVE,
            &attr as *const MountAttr,
            std::mem::size_of::<MountAttr>(),
        )
    };
    if r != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_plan_is_system_paths_then_sinks_then_declared_ones() {
        let read = vec!["/srv/repo".to_owned()];
        let sockets = vec!["/run/app.sock".to_owned()];
        let plan = plan(&read, &sockets);
        let at = |p: &str| plan.iter().position(|(q, _)| *q == p);
        assert!(at("/usr") < at("/dev/null") && at("/dev/null") < at("/srv/repo"));
        assert_eq!(plan.last(), Some(&("/run/app.sock", Access::ReadWrite)));
        assert!(plan.contains(&("/dev/null", Access::ReadWrite)));
        assert!(plan.contains(&("/srv/repo", Access::ReadOnly)));
        // Nothing of the host's runtime state unless declared.
        for (p, _) in &plan {
            for hidden in [
                "/run", "/var/run", "/tmp", "/dev/log", "/proc", "/sys", "/home",
            ] {
                assert!(
                    *p == "/run/app.sock"
                        || !(*p == hidden || p.starts_with(&format!("{hidden}/"))),
                    "{p} reaches {hidden}"
                );
            }
        }
        let writable: Vec<_> = plan
            .iter()
            .filter(|(_, a)| *a == Access::ReadWrite)
            .map(|(p, _)| *p)
            .collect();
        assert_eq!(writable, ["/dev/null", "/run/app.sock"]);
    }
}
