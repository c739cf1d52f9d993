//! Where `plugin add` and `plugin update` take a plugin from: a folder, a git
//! repository (`URL[#ref]`, through the `git` binary), or an archive
//! (`.tar.gz`, `.tgz`, `.tar.zst`).
//!
//! Repositories and archives are staged here, as the operator, into a private
//! temporary folder that tarkd then reads and validates like any folder (its
//! own checks: regular files only, owned by the caller, bounded). An archive is
//! refused before anything is written outside the staging folder, and entry by
//! entry: absolute paths, `..`, links, devices and anything not a file or a
//! folder, more than [`MAX_FILES`] entries or [`MAX_BYTES`] in all.
//!
//! A folder under `/tmp` or `/var/tmp` that tarkd answers it cannot find is
//! staged too (copied under its name, links kept as links for tarkd to
//! refuse), and asked for again: tarkd's systemd unit has `PrivateTmp=yes`, so
//! the operator's `/tmp` is not the one tarkd sees.

use std::io::Read;
use std::path::{Component, Path, PathBuf};
use std::process::Command;

use anyhow::{Context, bail};

/// As tarkd's own folder limits.
pub const MAX_FILES: usize = 1024;
pub const MAX_BYTES: u64 = 128 << 20;

/// A source as the operator wrote it.
#[derive(Debug, PartialEq, Eq)]
pub enum Source {
    Folder(PathBuf),
    Git { url: String, rev: Option<String> },
    TarGz(PathBuf),
    TarZst(PathBuf),
}

/// What the operator's source argument names.
pub fn classify(arg: &str) -> Source {
    let lower = arg.to_ascii_lowercase();
    let git = ["file://", "https://", "http://", "ssh://", "git://", "git@"]
        .iter()
        .any(|p| lower.starts_with(p))
        || lower.split('#').next().is_some_and(|u| u.ends_with(".git"));
    if git && !Path::new(arg).is_dir() {
        let (url, rev) = match arg.split_once('#') {
            Some((u, r)) if !r.is_empty() => (u.to_owned(), Some(r.to_owned())),
            Some((u, _)) => (u.to_owned(), None),
            None => (arg.to_owned(), None),
        };
        return Source::Git { url, rev };
    }
    if lower.ends_with(".tar.gz") || lower.ends_with(".tgz") {
        return Source::TarGz(PathBuf::from(arg));
    }
    if lower.ends_with(".tar.zst") || lower.ends_with(".tzst") {
        return Source::TarZst(PathBuf::from(arg));
    }
    Source::Folder(PathBuf::from(arg))
}

/// What is recorded as the source, to fetch it again on `update <id>`: paths
/// made absolute, repository URLs as written (with their `#ref`).
pub fn origin(arg: &str) -> String {
    match classify(arg) {
        Source::Git { .. } => arg.to_owned(),
        Source::Folder(p) | Source::TarGz(p) | Source::TarZst(p) => std::fs::canonicalize(&p)
            .map(|p| p.display().to_string())
            .unwrap_or_else(|_| arg.to_owned()),
    }
}

/// A source made into a folder tarkd can read; the staging folder, if any,
/// is removed when this is dropped.
pub struct Staged {
    pub folder: PathBuf,
    _staging: Option<tempfile::TempDir>,
}

/// Stages `arg` (see the module doc).
pub fn stage(arg: &str) -> anyhow::Result<Staged> {
    let source = classify(arg);
    let Source::Folder(dir) = &source else {
        let staging = tempfile::Builder::new()
            .prefix("tarkctl-plugin-")
            .tempdir_in(staging_dir()?)?;
        let root = staging.path().join("src");
        match &source {
            Source::Git { url, rev } => clone(url, rev.as_deref(), &root)?,
            Source::TarGz(path) => {
                let f = std::fs::File::open(path).with_context(|| path.display().to_string())?;
                unpack(flate2::read::GzDecoder::new(f), &root)
                    .with_context(|| format!("archive {}", path.display()))?
            }
            Source::TarZst(path) => {
                let f = std::fs::File::open(path).with_context(|| path.display().to_string())?;
                unpack(zstd::stream::read::Decoder::new(f)?, &root)
                    .with_context(|| format!("archive {}", path.display()))?
            }
            Source::Folder(_) => {}
        }
        return Ok(Staged {
            folder: plugin_root(&root)?,
            _staging: Some(staging),
        });
    };
    let folder = std::fs::canonicalize(dir).with_context(|| format!("plugin folder {arg}"))?;
    Ok(Staged {
        folder,
        _staging: None,
    })
}

/// A copy of `folder` where tarkd can read it, under the same name: for a
/// folder in `/tmp` that tarkd, under its unit's `PrivateTmp`, did not find.
pub fn stage_copy(folder: &Path) -> anyhow::Result<Staged> {
    let staging = tempfile::Builder::new()
        .prefix("tarkctl-plugin-")
        .tempdir_in(staging_dir()?)?;
    let name = folder.file_name().context("a plugin folder has a name")?;
    let root = staging.path().join(name);
    let mut budget = (MAX_FILES, MAX_BYTES);
    copy_folder(folder, &root, &mut budget)
        .with_context(|| format!("copying plugin folder {}", folder.display()))?;
    Ok(Staged {
        folder: root,
        _staging: Some(staging),
    })
}

/// Whether tarkd under its unit (`PrivateTmp=yes`) sees another folder at
/// `path` than the operator does.
pub fn in_private_tmp(path: &Path) -> bool {
    ["/tmp", "/var/tmp"].iter().any(|tmp| path.starts_with(tmp))
}

/// Copies `from` to `to` as it is: files and folders, symbolic links as
/// links (tarkd refuses them, as it would have in place), anything else
/// refused; within `budget` (entries, bytes).
fn copy_folder(from: &Path, to: &Path, budget: &mut (usize, u64)) -> anyhow::Result<()> {
    std::fs::create_dir(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let (src, dst) = (entry.path(), to.join(entry.file_name()));
        budget.0 = budget
            .0
            .checked_sub(1)
            .with_context(|| format!("more than {MAX_FILES} entries"))?;
        let kind = entry.file_type()?;
        if kind.is_symlink() {
            std::os::unix::fs::symlink(std::fs::read_link(&src)?, &dst)?;
        } else if kind.is_dir() {
            copy_folder(&src, &dst, budget)?;
        } else if kind.is_file() {
            let copied = std::fs::copy(&src, &dst)?;
            budget.1 = budget
                .1
                .checked_sub(copied)
                .with_context(|| format!("more than {MAX_BYTES} bytes"))?;
        } else {
            bail!("{} is not a file, a folder or a link", src.display());
        }
    }
    Ok(())
}

/// Where sources are staged: somewhere tarkd can read, which under systemd
/// (`PrivateTmp=yes`) is not /tmp. `$TARKCTL_STAGING_DIR`, else
/// `$XDG_CACHE_HOME/tarkctl`, else `~/.cache/tarkctl` (`$HOME`, or the user's
/// home in the password database; tarkd's unit keeps home directories
/// readable), else the temporary directory.
fn staging_dir() -> anyhow::Result<PathBuf> {
    let var = |name: &str| {
        std::env::var_os(name)
            .map(PathBuf::from)
            .filter(|p| p.is_absolute())
    };
    // Without $HOME (a systemd service, cron), the home directory of the
    // user tarkctl runs as: the temporary directory is the one place tarkd
    // under its unit cannot see.
    let home = || {
        var("HOME").or_else(|| {
            nix::unistd::User::from_uid(nix::unistd::getuid())
                .ok()
                .flatten()
                .map(|u| u.dir)
                .filter(|d| d.is_absolute() && d.is_dir())
        })
    };
    let dir = var("TARKCTL_STAGING_DIR")
        .or_else(|| var("XDG_CACHE_HOME").map(|d| d.join("tarkctl")))
        .or_else(|| home().map(|h| h.join(".cache/tarkctl")))
        .unwrap_or_else(std::env::temp_dir);
    std::fs::create_dir_all(&dir).with_context(|| format!("staging in {}", dir.display()))?;
    Ok(dir)
}

/// A plugin folder's manifest: tark's plugin.toml or a tau extension's
/// extension.json.
fn has_manifest(dir: &Path) -> bool {
    ["plugin.toml", "extension.json"]
        .iter()
        .any(|f| dir.join(f).is_file())
}

/// The folder holding plugin.toml (or extension.json): the root, or its single
/// folder (archives usually wrap their contents in one).
fn plugin_root(root: &Path) -> anyhow::Result<PathBuf> {
    if has_manifest(root) {
        return Ok(root.to_owned());
    }
    let entries: Vec<PathBuf> = std::fs::read_dir(root)?
        .flatten()
        .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
        .map(|e| e.path())
        .collect();
    match entries.as_slice() {
        [only] if has_manifest(only) => Ok(only.clone()),
        _ => bail!(
            "no plugin.toml or extension.json at the top of the source (or in its single folder)"
        ),
    }
}

/// `git clone` then a detached checkout of `rev` (tag, branch or commit).
fn clone(url: &str, rev: Option<&str>, into: &Path) -> anyhow::Result<()> {
    let git = |args: &[&str]| -> anyhow::Result<()> {
        let out = Command::new("git")
            .args(args)
            .env("GIT_TERMINAL_PROMPT", "0")
            .output()
            .context("running git (is it installed?)")?;
        if !out.status.success() {
            bail!(
                "git {}: {}",
                args.first().unwrap_or(&""),
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(())
    };
    let into_arg = into.display().to_string();
    // No checkout yet: the ref is checked out next, and symlinks stay files
    // (tarkd refuses links anyway).
    git(&[
        "-c",
        "core.symlinks=false",
        "clone",
        "--quiet",
        "--no-checkout",
        "--",
        url,
        &into_arg,
    ])?;
    let rev = rev.unwrap_or("HEAD");
    if rev.starts_with('-') {
        bail!("git ref {rev:?} is not a ref");
    }
    git(&[
        "-C",
        &into_arg,
        "-c",
        "core.symlinks=false",
        "-c",
        "advice.detachedHead=false",
        "checkout",
        "--quiet",
        "--detach",
        rev,
        "--",
    ])
    .with_context(|| format!("{url}#{rev}"))
}

/// Why one archive entry is refused, if it is: `kind` is the tar entry type,
/// `path` its name as stored. The whole decision, table-tested.
pub fn refusal(path: &Path, kind: tar::EntryType) -> Option<String> {
    let shown = path.display();
    if !(kind.is_file() || kind.is_dir()) {
        let what = if kind.is_symlink() {
            "a symbolic link"
        } else if kind.is_hard_link() {
            "a hard link"
        } else if kind.is_character_special() || kind.is_block_special() {
            "a device"
        } else if kind.is_fifo() {
            "a fifo"
        } else {
            "not a file or folder"
        };
        return Some(format!(
            "{shown} is {what}: an archive may hold only files and folders"
        ));
    }
    for c in path.components() {
        match c {
            Component::Normal(_) | Component::CurDir => {}
            Component::RootDir | Component::Prefix(_) => {
                return Some(format!("{shown} is an absolute path"));
            }
            Component::ParentDir => return Some(format!("{shown} leaves the archive (..)")),
        }
    }
    if path.as_os_str().is_empty() {
        return Some("an entry with an empty name".into());
    }
    None
}

/// Unpacks a tar stream under `root` (created), refusing as [`refusal`] says
/// and within [`MAX_FILES`] and [`MAX_BYTES`]. Permissions and owners in the
/// archive are ignored.
pub fn unpack(stream: impl Read, root: &Path) -> anyhow::Result<()> {
    use std::io::Write;
    std::fs::create_dir(root)?;
    let mut archive = tar::Archive::new(stream);
    let (mut entries, mut bytes) = (0usize, 0u64);
    for entry in archive.entries()? {
        let mut entry = entry?;
        entries += 1;
        if entries > MAX_FILES {
            bail!("more than {MAX_FILES} entries");
        }
        let path = entry.path()?.into_owned();
        let kind = entry.header().entry_type();
        if let Some(why) = refusal(&path, kind) {
            bail!("{why}");
        }
        let dest = root.join(&path);
        if kind.is_dir() {
            std::fs::create_dir_all(&dest)?;
            continue;
        }
        let size = entry.header().size()?;
        bytes = bytes.saturating_add(size);
        if bytes > MAX_BYTES {
            bail!("more than {MAX_BYTES} bytes");
        }
        if let Some(parent) = dest.parent() {
            std::fs::create_dir_all(parent)?;
        }
        // create_new: an archive naming a file twice does not overwrite it.
        let mut out = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&dest)
            .with_context(|| path.display().to_string())?;
        let copied = std::io::copy(&mut (&mut entry).take(size), &mut out)?;
        if copied != size {
            bail!("{}: truncated", path.display());
        }
        out.flush()?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folders_tarkds_private_tmp_hides_are_known() {
        for (path, hidden) in [
            ("/tmp/notes", true),
            ("/tmp", true),
            ("/var/tmp/x/y", true),
            ("/tmpfoo/notes", false),
            ("/var/tmpx", false),
            ("/home/op/notes", false),
            ("/srv/tmp/notes", false),
        ] {
            assert_eq!(in_private_tmp(Path::new(path)), hidden, "{path}");
        }
    }

    #[test]
    fn a_folder_in_tmp_is_copied_as_it_is_links_included() -> anyhow::Result<()> {
        let src = tempfile::tempdir_in("/tmp")?;
        std::fs::write(src.path().join("plugin.toml"), "x")?;
        std::fs::create_dir(src.path().join("data"))?;
        std::fs::write(src.path().join("data/a"), "aa")?;
        std::os::unix::fs::symlink("/etc/passwd", src.path().join("data/link"))?;
        let staging = tempfile::tempdir()?;
        copy_as_stage_does(src.path(), staging.path())?;
        let to = staging.path().join("copy");
        assert_eq!(std::fs::read(to.join("data/a"))?, b"aa");
        assert_eq!(
            std::fs::read_link(to.join("data/link"))?,
            Path::new("/etc/passwd")
        );
        // Over budget: refused, naming the limit.
        let mut tight = (2, MAX_BYTES);
        let err = copy_folder(src.path(), &staging.path().join("tight"), &mut tight);
        assert!(err.is_err_and(|e| e.to_string().contains("entries")));
        Ok(())
    }

    /// What `stage` does with a folder in /tmp, without reading the
    /// environment for a staging dir.
    fn copy_as_stage_does(src: &Path, staging: &Path) -> anyhow::Result<()> {
        let mut budget = (MAX_FILES, MAX_BYTES);
        copy_folder(src, &staging.join("copy"), &mut budget)
    }
    use tar::EntryType;

    #[test]
    fn sources_are_told_apart() {
        let git = |u: &str, r: Option<&str>| Source::Git {
            url: u.into(),
            rev: r.map(Into::into),
        };
        let cases = [
            (
                "/srv/plugins/notes",
                Source::Folder("/srv/plugins/notes".into()),
            ),
            ("notes", Source::Folder("notes".into())),
            (
                "file:///srv/notes.git#v1.0.0",
                git("file:///srv/notes.git", Some("v1.0.0")),
            ),
            (
                "https://example.com/notes#main",
                git("https://example.com/notes", Some("main")),
            ),
            (
                "git@example.com:t/notes.git",
                git("git@example.com:t/notes.git", None),
            ),
            ("/srv/notes.git#", git("/srv/notes.git", None)),
            ("notes-1.0.tar.gz", Source::TarGz("notes-1.0.tar.gz".into())),
            ("notes.TGZ", Source::TarGz("notes.TGZ".into())),
            ("notes.tar.zst", Source::TarZst("notes.tar.zst".into())),
        ];
        for (arg, want) in cases {
            assert_eq!(classify(arg), want, "{arg}");
        }
    }

    #[test]
    fn archive_entries_are_refused_by_kind_and_path() {
        let cases: [(&str, EntryType, Option<&str>); 12] = [
            ("plugin.toml", EntryType::Regular, None),
            ("notes/plugin.wasm", EntryType::Regular, None),
            ("./notes/data", EntryType::Directory, None),
            ("/etc/cron.d/x", EntryType::Regular, Some("absolute path")),
            ("../x", EntryType::Regular, Some("leaves the archive")),
            ("a/../../x", EntryType::Regular, Some("leaves the archive")),
            ("link", EntryType::Symlink, Some("a symbolic link")),
            ("hard", EntryType::Link, Some("a hard link")),
            ("zero", EntryType::Char, Some("a device")),
            ("disk", EntryType::Block, Some("a device")),
            ("pipe", EntryType::Fifo, Some("a fifo")),
            ("", EntryType::Regular, Some("empty name")),
        ];
        for (path, kind, want) in cases {
            let got = refusal(Path::new(path), kind);
            match want {
                None => assert_eq!(got, None, "{path}"),
                Some(words) => assert!(
                    got.as_deref().is_some_and(|g| g.contains(words)),
                    "{path}: {got:?}"
                ),
            }
        }
    }

    /// A tar with one raw entry (name and type as given, as a hostile tool
    /// would write them).
    fn raw(name: &[u8], kind: EntryType, body: &[u8]) -> Vec<u8> {
        let mut h = tar::Header::new_old();
        h.as_old_mut().name[..name.len()].copy_from_slice(name);
        h.set_entry_type(kind);
        h.set_size(body.len() as u64);
        h.set_mode(0o644);
        h.set_cksum();
        let mut out = h.as_bytes().to_vec();
        out.extend_from_slice(body);
        out.resize(out.len().div_ceil(512) * 512, 0);
        out.extend_from_slice(&[0; 1024]);
        out
    }

    #[test]
    fn unpacking_stops_at_the_first_bad_entry_and_writes_nothing_outside() -> anyhow::Result<()> {
        let d = tempfile::tempdir()?;
        let outside = d.path().join("x");
        for (i, bad) in [
            raw(b"../x", EntryType::Regular, b"escaped"),
            raw(b"/tmp/x", EntryType::Regular, b"escaped"),
            raw(b"x", EntryType::Symlink, b""),
        ]
        .into_iter()
        .enumerate()
        {
            let root = d.path().join(format!("root{i}"));
            assert!(unpack(bad.as_slice(), &root).is_err());
            assert!(!outside.exists());
        }
        let ok = raw(b"plugin.toml", EntryType::Regular, b"[plugin]");
        let root = d.path().join("ok");
        unpack(ok.as_slice(), &root)?;
        assert_eq!(std::fs::read(root.join("plugin.toml"))?, b"[plugin]");
        Ok(())
    }

    #[test]
    fn too_many_entries_or_bytes_are_refused() -> anyhow::Result<()> {
        let d = tempfile::tempdir()?;
        let mut many = tar::Builder::new(Vec::new());
        for i in 0..=MAX_FILES {
            let mut h = tar::Header::new_gnu();
            h.set_size(0);
            h.set_mode(0o644);
            h.set_cksum();
            many.append_data(&mut h, format!("f{i}"), std::io::empty())?;
        }
        let many = many.into_inner()?;
        let err = unpack(many.as_slice(), &d.path().join("many")).err();
        assert!(err.is_some_and(|e| e.to_string().contains("more than 1024 entries")));
        // A header claiming more than the limit is refused before it is read.
        let mut h = tar::Header::new_gnu();
        h.set_size(MAX_BYTES + 1);
        h.set_mode(0o644);
        h.set_path("big")?;
        h.set_cksum();
        let big = [h.as_bytes().as_slice(), &[0; 1024]].concat();
        let err = unpack(big.as_slice(), &d.path().join("big")).err();
        assert!(err.is_some_and(|e| e.to_string().contains("more than 134217728 bytes")));
        Ok(())
    }
}
