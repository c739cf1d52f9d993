//! The installed plugins: one folder each under the plugins dir. A plugin that
//! cannot be loaded stays listed with its diagnostics; it never stops the others.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use sha2::{Digest, Sha256};

use crate::plugins::manifest::{self, Capabilities, Manifest, PluginType};
use crate::plugins::sources::{ConflictPolicy, Origin};

/// Largest wasm file tarkd will read for a plugin.
pub const MAX_WASM_BYTES: u64 = 64 << 20;
/// Largest manifest tarkd will read.
pub const MAX_MANIFEST_BYTES: u64 = 1 << 20;

/// One plugin folder, loaded or not.
#[derive(Debug)]
pub struct Plugin {
    /// The folder name, which is also the plugin's name when it is valid.
    pub id: String,
    pub dir: PathBuf,
    /// Present when the manifest is valid and the module was read.
    pub loaded: Option<Loaded>,
    /// Why the plugin is invalid, or warnings about a valid one.
    pub diagnostics: Vec<String>,
    /// Set by the operator (`tarkctl plugin disable`, kept in the state dir):
    /// the plugin keeps its files and grants and serves nothing.
    pub disabled: std::sync::atomic::AtomicBool,
    /// The canonical digest of its whole folder as loaded (`tark_sign`), or
    /// why it could not be read: what tells a reload that any file changed.
    pub package_digest: String,
    /// What tarkd concluded of its signature (`None` until judged).
    pub signature: std::sync::Mutex<Option<crate::plugins::trust::Verdict>>,
    /// The root it was read from (see `sources`).
    pub origin: Origin,
    /// When it was first installed or found (see `seniority`): of two in
    /// one root, the earlier keeps a name both claim.
    pub seniority: u64,
    /// A provider or channel id it claims that `sources.conflicts` gave to
    /// another plugin (or to none): it then serves nothing. Settled again
    /// whenever the set of plugins changes (`Registry::settle`, in `roots`).
    pub(crate) conflict: std::sync::Mutex<Option<String>>,
}

/// A plugin whose manifest validated and whose module (if it has one) was read.
#[derive(Debug)]
pub struct Loaded {
    pub manifest: Manifest,
    pub wasm: Arc<[u8]>,
    pub sha256: String,
    /// Of plugin.toml as read: with `sha256`, what tells a reload the plugin
    /// changed.
    pub manifest_sha256: String,
}

impl Loaded {
    /// A plugin that runs commands (command tools, `[[tools]]`, or a tau
    /// process extension): no module, no worker.
    pub fn is_commands(&self) -> bool {
        !self.manifest.commands.is_empty() || self.manifest.process.is_some()
    }
}

impl Plugin {
    /// What the plugin's manifest declares; nothing for an invalid plugin.
    pub fn declared(&self) -> Capabilities {
        self.loaded
            .as_ref()
            .map(|l| l.manifest.capabilities.clone())
            .unwrap_or_default()
    }

    /// A plugin the worker manager can start: its manifest and module are
    /// valid and it is not disabled.
    pub fn runnable(&self) -> Option<&Loaded> {
        self.loaded.as_ref().filter(|_| !self.is_disabled())
    }

    /// The signature verdict (unsigned until judged).
    pub fn verdict(&self) -> crate::plugins::trust::Verdict {
        self.signature
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
            .unwrap_or_default()
    }

    /// Why it may not run where `required_by` asks for signatures (see
    /// `trust::gate`), without copying the verdict: this is on every call's path.
    pub fn signature_gate(&self, required_by: Option<&str>) -> Result<(), String> {
        let verdict = self.signature.lock().unwrap_or_else(|p| p.into_inner());
        let unsigned = crate::plugins::trust::Verdict::Unsigned;
        crate::plugins::trust::gate(&self.id, verdict.as_ref().unwrap_or(&unsigned), required_by)
    }

    pub fn is_disabled(&self) -> bool {
        self.disabled.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// A runnable plugin of the given type that no conflict silenced.
    pub fn of_type(&self, kind: PluginType) -> Option<&Loaded> {
        self.runnable()
            .filter(|l| l.manifest.plugin_type == kind && self.conflict().is_none())
    }

    /// Why it serves nothing, if a conflict silenced it.
    pub fn conflict(&self) -> Option<String> {
        self.conflict
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

/// A snapshot of the plugin roots.
#[derive(Debug, Default)]
pub struct Registry {
    pub plugins: BTreeMap<String, Arc<Plugin>>,
    /// Shadowed copies and conflicts found by the scan, for the audit log
    /// (see `roots`): (plugin, what, resolution).
    pub notes: Vec<(String, String, String)>,
}

impl Registry {
    /// Reads every folder under `dir`. A missing dir is an empty registry.
    pub fn scan(dir: &Path, host_version: &semver::Version) -> std::io::Result<Self> {
        Self::scan_roots(
            &[(Origin::Installed, dir.to_owned())],
            ConflictPolicy::Error,
            host_version,
            None,
        )
    }

    pub fn get(&self, id: &str) -> Option<&Arc<Plugin>> {
        self.plugins.get(id)
    }
}

/// The plugins in one root, in name order.
pub(super) fn scan_dir(dir: &Path, host_version: &semver::Version) -> std::io::Result<Vec<Plugin>> {
    let mut plugins = Vec::new();
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(plugins),
        Err(e) => return Err(e),
    };
    for entry in entries {
        let entry = entry?;
        if !entry.file_type()?.is_dir() {
            continue;
        }
        let id = entry.file_name().to_string_lossy().into_owned();
        if id.starts_with('.') {
            continue;
        }
        let plugin = load(&entry.path(), &id, host_version);
        if let Some(d) = plugin.diagnostics.first() {
            tracing::warn!(plugin = %plugin.id, "{d}");
        }
        plugins.push(plugin);
    }
    plugins.sort_by(|a, b| a.id.cmp(&b.id));
    Ok(plugins)
}

/// Loads one plugin folder, turning every failure into a diagnostic.
pub fn load(dir: &Path, id: &str, host_version: &semver::Version) -> Plugin {
    use crate::plugins::folder::read_regular;
    // plugin.toml, else extension.json; a folder with neither is reported as
    // lacking plugin.toml, the usual manifest.
    let file = manifest::FILES
        .into_iter()
        .find(|f| dir.join(f).is_file())
        .unwrap_or(manifest::FILES[0]);
    let text = read_regular(dir, Path::new(file), MAX_MANIFEST_BYTES).and_then(|b| {
        String::from_utf8(b).map_err(|_| format!("{}/{file} is not UTF-8", dir.display()))
    });
    let mut plugin = build(dir, id, host_version, (file, text), |path| {
        read_regular(dir, Path::new(path), MAX_WASM_BYTES)
    });
    let folder = crate::plugins::folder::read(dir, None, crate::plugins::folder::Limits::default());
    plugin.package_digest = match folder {
        Ok(f) => package_digest(&f),
        Err(e) => format!("unreadable: {e}"),
    };
    plugin
}

/// The canonical digest of a folder as read, hex (non-UTF-8 paths by their
/// lossy form: such a package cannot be signed anyway).
pub fn package_digest(folder: &crate::plugins::folder::Folder) -> String {
    let paths: Vec<String> = folder
        .files
        .iter()
        .map(|(p, _)| p.to_string_lossy().into_owned())
        .collect();
    let files = paths
        .iter()
        .zip(&folder.files)
        .map(|(p, (_, b))| (p.as_str(), b.as_slice()));
    hex::encode(tark_sign::digest(files))
}

/// A plugin from a folder already read into memory (see `folder`), so what
/// is validated is exactly what is installed.
pub fn from_folder(
    dir: &Path,
    id: &str,
    folder: &crate::plugins::folder::Folder,
    host_version: &semver::Version,
) -> Plugin {
    let file = manifest::FILES
        .into_iter()
        .find(|f| folder.file(Path::new(f)).is_some())
        .unwrap_or(manifest::FILES[0]);
    let text = folder
        .file(Path::new(file))
        .ok_or_else(|| format!("{} has no plugin.toml (or extension.json)", dir.display()))
        .and_then(|b| {
            String::from_utf8(b.to_vec())
                .map_err(|_| format!("{}/{file} is not UTF-8", dir.display()))
        });
    let mut plugin = build(dir, id, host_version, (file, text), |path| {
        folder
            .file(Path::new(path))
            .map(<[u8]>::to_vec)
            .ok_or_else(|| format!("{} not found", dir.join(path).display()))
    });
    plugin.package_digest = package_digest(folder);
    plugin
}

fn build(
    dir: &Path,
    id: &str,
    host_version: &semver::Version,
    (file, text): (&str, Result<String, String>),
    read: impl FnOnce(&str) -> Result<Vec<u8>, String>,
) -> Plugin {
    let mut plugin = Plugin {
        id: id.to_owned(),
        dir: dir.to_owned(),
        loaded: None,
        diagnostics: Vec::new(),
        disabled: Default::default(),
        package_digest: String::new(),
        signature: Default::default(),
        origin: Origin::default(),
        seniority: 0,
        conflict: Default::default(),
    };
    let text = match text {
        Ok(t) => t,
        Err(e) => {
            plugin.diagnostics.push(e);
            return plugin;
        }
    };
    let manifest = match manifest::parse_file(file, &text, id, host_version) {
        Ok(m) => m,
        Err(e) => {
            plugin.diagnostics.extend(e.problems);
            return plugin;
        }
    };
    // A plugin of command tools has no module to read; a process extension
    // has its program (what its sha256 then follows).
    let module = if let Some(program) = &manifest.process {
        read(program).map_err(|e| format!("the extension's entrypoint {e}"))
    } else if manifest.commands.is_empty() {
        read(&manifest.wasm)
            .map_err(|e| format!("wasm file {e}"))
            .and_then(|bytes| {
                check_wasm(&dir.join(&manifest.wasm), bytes.len() as u64, &bytes)?;
                Ok(bytes)
            })
    } else {
        Ok(Vec::new())
    };
    match module {
        Ok(wasm) => {
            let sha256 = hex::encode(Sha256::digest(&wasm));
            let manifest_sha256 = hex::encode(Sha256::digest(text.as_bytes()));
            plugin.diagnostics.extend(manifest.warnings.iter().cloned());
            plugin.loaded = Some(Loaded {
                manifest,
                wasm: wasm.into(),
                sha256,
                manifest_sha256,
            });
        }
        Err(e) => plugin.diagnostics.push(e),
    }
    plugin
}

/// Refuses a module over the size limit or without wasm's magic bytes.
fn check_wasm(path: &Path, len: u64, head: &[u8]) -> Result<(), String> {
    if len > MAX_WASM_BYTES {
        return Err(format!(
            "wasm file {} is {len} bytes, over the limit of {MAX_WASM_BYTES}",
            path.display(),
        ));
    }
    if !head.starts_with(b"\0asm") {
        return Err(format!(
            "{} is not a WebAssembly file (bad magic bytes)",
            path.display()
        ));
    }
    Ok(())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn write(dir: &Path, rel: &str, bytes: &[u8]) -> std::io::Result<()> {
        let p = dir.join(rel);
        if let Some(parent) = p.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(p, bytes)
    }

    #[test]
    fn bad_plugins_are_listed_with_diagnostics_beside_good_ones() -> std::io::Result<()> {
        let d = tempfile::tempdir()?;
        let ok = "[plugin]\nname = \"good\"\nversion = \"1.0.0\"\ntype = \"tool\"\n";
        write(d.path(), "good/plugin.toml", ok.as_bytes())?;
        write(d.path(), "good/plugin.wasm", b"\0asm\x0d\0\x01\0")?;
        write(
            d.path(),
            "nowasm/plugin.toml",
            ok.replace("good", "nowasm").as_bytes(),
        )?;
        write(
            d.path(),
            "garbage/plugin.toml",
            ok.replace("good", "garbage").as_bytes(),
        )?;
        write(d.path(), "garbage/plugin.wasm", b"not wasm at all")?;
        write(d.path(), "broken/plugin.toml", b"[plugin\nname=")?;
        write(d.path(), "empty/README.md", b"hi")?;
        write(d.path(), "stray-file", b"x")?;
        let r = Registry::scan(d.path(), &semver::Version::new(0, 5, 0))?;
        let ids: Vec<_> = r.plugins.keys().cloned().collect();
        assert_eq!(ids, ["broken", "empty", "garbage", "good", "nowasm"]);
        let diag = |id: &str| {
            r.plugins
                .get(id)
                .map(|p| p.diagnostics.join(" | "))
                .unwrap_or_default()
        };
        assert!(
            r.plugins
                .get("good")
                .is_some_and(|p| p.runnable().is_some() && p.diagnostics.is_empty())
        );
        assert!(diag("nowasm").contains("not found"), "{}", diag("nowasm"));
        assert!(
            diag("garbage").contains("not a WebAssembly file"),
            "{}",
            diag("garbage")
        );
        assert!(
            diag("broken").starts_with("plugin.toml:"),
            "{}",
            diag("broken")
        );
        assert!(
            diag("empty").contains("plugin.toml not found"),
            "{}",
            diag("empty")
        );
        Ok(())
    }

    #[test]
    fn only_regular_files_are_read_each_size_checked_first() -> std::io::Result<()> {
        use std::os::unix::fs::symlink;
        let d = tempfile::tempdir()?;
        let toml =
            |n: &str| format!("[plugin]\nname = \"{n}\"\nversion = \"1.0.0\"\ntype = \"tool\"\n");
        let fifo =
            |p: &Path| nix::unistd::mkfifo(p, nix::sys::stat::Mode::from_bits_truncate(0o600));
        // (plugin, how its module or manifest is made, what the diagnostic says)
        write(
            d.path(),
            "fifo-wasm/plugin.toml",
            toml("fifo-wasm").as_bytes(),
        )?;
        fifo(&d.path().join("fifo-wasm/plugin.wasm"))?;
        write(d.path(), "fifo-toml/x", b"")?;
        fifo(&d.path().join("fifo-toml/plugin.toml"))?;
        write(
            d.path(),
            "link-wasm/plugin.toml",
            toml("link-wasm").as_bytes(),
        )?;
        symlink("/dev/zero", d.path().join("link-wasm/plugin.wasm"))?;
        write(d.path(), "link-toml/x", b"")?;
        symlink("/etc/passwd", d.path().join("link-toml/plugin.toml"))?;
        write(
            d.path(),
            "dir-wasm/plugin.toml",
            toml("dir-wasm").as_bytes(),
        )?;
        std::fs::create_dir(d.path().join("dir-wasm/plugin.wasm"))?;
        write(
            d.path(),
            "big-toml/plugin.toml",
            &vec![b'#'; (MAX_MANIFEST_BYTES + 1) as usize],
        )?;
        let mut cases = vec![
            ("fifo-wasm", "plugin.wasm is not a regular file"),
            ("fifo-toml", "plugin.toml is not a regular file"),
            ("link-wasm", "plugin.wasm is a symbolic link"),
            ("link-toml", "plugin.toml is a symbolic link"),
            ("dir-wasm", "plugin.wasm is not a regular file"),
            ("big-toml", "over the limit of 1048576"),
        ];
        // A device node, as an operator's mistake or an attacker would leave one.
        if nix::unistd::geteuid().is_root() {
            write(
                d.path(),
                "dev-wasm/plugin.toml",
                toml("dev-wasm").as_bytes(),
            )?;
            nix::sys::stat::mknod(
                &d.path().join("dev-wasm/plugin.wasm"),
                nix::sys::stat::SFlag::S_IFCHR,
                nix::sys::stat::Mode::from_bits_truncate(0o600),
                nix::sys::stat::makedev(1, 5),
            )?;
            cases.push(("dev-wasm", "plugin.wasm is not a regular file"));
        }
        // The scan returns (a FIFO would block it; /dev/zero would never end).
        let r = Registry::scan(d.path(), &semver::Version::new(0, 5, 0))?;
        for (id, want) in cases {
            let p = r.plugins.get(id);
            let diag = p.map(|p| p.diagnostics.join(" | ")).unwrap_or_default();
            assert!(p.is_some_and(|p| p.loaded.is_none()), "{id}");
            assert!(diag.contains(want), "{id}: {diag}");
        }
        Ok(())
    }

    #[test]
    fn missing_dir_is_empty() -> std::io::Result<()> {
        let r = Registry::scan(
            Path::new("/nonexistent/tarkd-plugins"),
            &semver::Version::new(0, 5, 0),
        )?;
        assert!(r.plugins.is_empty());
        Ok(())
    }
}
