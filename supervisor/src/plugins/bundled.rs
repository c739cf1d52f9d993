//! The example plugins compiled into tarkd, so `tarkd --dev` works from anywhere
//! without a separate install step.

use std::path::Path;

/// (folder, plugin.toml, the wasm's path in the folder, the wasm) of each
/// bundled example.
const BUNDLED: &[(&str, &str, &str, &[u8])] = &[
    (
        "notes",
        include_str!("../../../examples/plugins/notes/plugin.toml"),
        "plugin.wasm",
        include_bytes!("../../../examples/plugins/notes/plugin.wasm"),
    ),
    (
        "echo",
        include_str!("../../../examples/plugins/echo-provider/plugin.toml"),
        "plugin.wasm",
        include_bytes!("../../../examples/plugins/echo-provider/plugin.wasm"),
    ),
    (
        "guard",
        include_str!("../../../examples/plugins/guard-hook/plugin.toml"),
        "plugin.wasm",
        include_bytes!("../../../examples/plugins/guard-hook/plugin.wasm"),
    ),
    (
        "device-auth",
        include_str!("../../../examples/plugins/device-auth/plugin.toml"),
        "plugin.wasm",
        include_bytes!("../../../examples/plugins/device-auth/plugin.wasm"),
    ),
    (
        "echo-channel",
        include_str!("../../../examples/plugins/echo-channel/plugin.toml"),
        "plugin.wasm",
        include_bytes!("../../../examples/plugins/echo-channel/plugin.wasm"),
    ),
    (
        "wordcount",
        include_str!("../../../examples/plugins/wordcount/plugin.toml"),
        "plugin.wasm",
        include_bytes!("../../../examples/plugins/wordcount/plugin.wasm"),
    ),
    (
        "legacy-provider",
        include_str!("../../../examples/plugins/legacy-provider/plugin.toml"),
        "dist/plugin.wasm",
        include_bytes!("../../../examples/plugins/legacy-provider/dist/plugin.wasm"),
    ),
    (
        "tau-guard",
        include_str!("../../../examples/plugins/tau-guard/plugin.toml"),
        "plugin.wasm",
        include_bytes!("../../../examples/plugins/tau-guard/plugin.wasm"),
    ),
];

/// Installs each bundled example that is not already installed. An installed copy
/// (perhaps edited by the user) is never overwritten. Returns the names installed.
pub fn install_missing(plugins_dir: &Path) -> std::io::Result<Vec<&'static str>> {
    let mut installed = Vec::new();
    for (name, toml, wasm_path, wasm) in BUNDLED {
        let dir = plugins_dir.join(name);
        if dir.exists() {
            continue;
        }
        // Stage, then rename: a crash never leaves a half-written plugin behind.
        let staging = plugins_dir.join(format!(".{name}.staging"));
        let _ = std::fs::remove_dir_all(&staging);
        std::fs::create_dir_all(&staging)?;
        std::fs::write(staging.join("plugin.toml"), toml)?;
        let wasm_path = staging.join(wasm_path);
        if let Some(parent) = wasm_path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(wasm_path, wasm)?;
        std::fs::rename(&staging, &dir)?;
        installed.push(*name);
    }
    Ok(installed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn installs_once_and_keeps_user_copies() -> std::io::Result<()> {
        let d = tempfile::tempdir()?;
        assert_eq!(
            install_missing(d.path())?,
            [
                "notes",
                "echo",
                "guard",
                "device-auth",
                "echo-channel",
                "wordcount",
                "legacy-provider",
                "tau-guard"
            ]
        );
        std::fs::write(d.path().join("notes/plugin.toml"), "edited")?;
        assert!(d.path().join("legacy-provider/dist/plugin.wasm").is_file());
        assert!(install_missing(d.path())?.is_empty());
        assert_eq!(
            std::fs::read_to_string(d.path().join("notes/plugin.toml"))?,
            "edited"
        );
        Ok(())
    }
}
