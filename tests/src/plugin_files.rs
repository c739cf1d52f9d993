//! Plugin folders a test installs before tarkd starts: the committed examples
//! (some with their manifest edited for the test) and fixtures.

use crate::fixtures;

/// A plugin folder to install before tarkd starts.
pub struct PluginFiles {
    pub folder: String,
    pub files: Vec<(String, Vec<u8>)>,
}

impl PluginFiles {
    /// An example plugin as committed in `examples/plugins/<dir>`, installed
    /// under its plugin name `name`.
    pub fn example(dir: &str, name: &str) -> anyhow::Result<Self> {
        Self::example_edited(dir, name, "", "")
    }

    /// An example plugin whose manifest text has `from` replaced by `to`.
    pub fn example_edited(dir: &str, name: &str, from: &str, to: &str) -> anyhow::Result<Self> {
        let dir = fixtures::repo_root().join("examples/plugins").join(dir);
        let mut manifest = std::fs::read_to_string(dir.join("plugin.toml"))?;
        if !from.is_empty() {
            manifest = manifest.replace(from, to);
        }
        let wasm = std::fs::read(dir.join(wasm_path(&manifest)))?;
        Ok(Self::new(name, &manifest, Some(wasm)))
    }

    /// The core-module provider example (examples/plugins/legacy-provider).
    pub fn legacy_provider() -> anyhow::Result<Self> {
        Self::example("legacy-provider", "legacy-provider")
    }

    /// The core-module auth example (examples/plugins/legacy-auth), its
    /// `[oauth]` device flow pointed at a provider on loopback `port`.
    pub fn legacy_auth(port: u16) -> anyhow::Result<Self> {
        Self::example_edited(
            "legacy-auth",
            "legacy-auth",
            "http://127.0.0.1:8812",
            &format!("http://127.0.0.1:{port}"),
        )
    }

    /// The tau extension example (examples/plugins/tau-guard), a hook plugin.
    pub fn tau_guard() -> anyhow::Result<Self> {
        Self::example("tau-guard", "tau-guard")
    }

    /// The wasm32-wasip1 core-module channel (examples/plugins/ws-channel),
    /// allowed to reach a WebSocket server on loopback `port`.
    pub fn ws_channel(port: u16) -> anyhow::Result<Self> {
        Self::example_edited(
            "ws-channel",
            "ws-channel",
            "http://127.0.0.1:8809",
            &format!("http://127.0.0.1:{port}"),
        )
    }

    /// The [oauth] example (examples/plugins/oauth-provider) pointed at a
    /// provider on loopback `port`, its redirect on loopback `redirect_port`,
    /// with `flow` ("pkce", or "device_flow" against the provider's
    /// device-authorization endpoint).
    pub fn oauth_provider(port: u16, redirect_port: u16, flow: &str) -> anyhow::Result<Self> {
        let dir = fixtures::repo_root().join("examples/plugins/oauth-provider");
        let mut manifest = std::fs::read_to_string(dir.join("plugin.toml"))?
            .replace("http://127.0.0.1:8810", &format!("http://127.0.0.1:{port}"))
            .replace(
                "http://127.0.0.1:8811",
                &format!("http://127.0.0.1:{redirect_port}"),
            );
        if flow == "device_flow" {
            manifest = manifest
                .replace("flow = \"pkce\"", "flow = \"device_flow\"")
                .replace("/authorize", "/device/code");
        }
        Ok(Self::new(
            "oauth-provider",
            &manifest,
            Some(std::fs::read(dir.join("plugin.wasm"))?),
        ))
    }

    /// The notes example plugin as committed in examples/plugins/notes.
    pub fn notes() -> anyhow::Result<Self> {
        Self::example("notes", "notes")
    }

    /// The echo provider example plugin (examples/plugins/echo-provider).
    pub fn echo() -> anyhow::Result<Self> {
        Self::example("echo-provider", "echo")
    }

    /// The echo channel example plugin (examples/plugins/echo-channel).
    pub fn echo_channel() -> anyhow::Result<Self> {
        Self::example("echo-channel", "echo-channel")
    }

    /// The guard hook example plugin (examples/plugins/guard-hook), installed as
    /// `name`.
    pub fn guard(name: &str) -> anyhow::Result<Self> {
        Self::example_edited(
            "guard-hook",
            name,
            "name = \"guard\"",
            &format!("name = \"{name}\""),
        )
    }

    /// The device-flow auth example (examples/plugins/device-auth), allowed to
    /// reach an authorization server on loopback `port`.
    pub fn device_auth(port: u16) -> anyhow::Result<Self> {
        Self::example_edited(
            "device-auth",
            "device-auth",
            "http://127.0.0.1:8808",
            &format!("http://127.0.0.1:{port}"),
        )
    }

    /// The probe example plugin (examples/plugins/probe) with `capabilities`
    /// (TOML lines) instead of its own, and its data file.
    pub fn probe(capabilities: &str) -> anyhow::Result<Self> {
        let dir = fixtures::repo_root().join("examples/plugins/probe");
        Ok(Self::new(
            "probe",
            &fixtures::manifest("probe", "tool", capabilities),
            Some(std::fs::read(dir.join("plugin.wasm"))?),
        )
        .with_file(
            "data/readme.txt",
            &std::fs::read(dir.join("data/readme.txt"))?,
        ))
    }

    /// A fixture: manifest text and wasm bytes.
    pub fn new(folder: &str, manifest: &str, wasm: Option<Vec<u8>>) -> Self {
        let mut files = vec![("plugin.toml".to_owned(), manifest.as_bytes().to_vec())];
        if let Some(w) = wasm {
            files.push((wasm_path(manifest), w));
        }
        Self {
            folder: folder.into(),
            files,
        }
    }

    /// Replaces one file's content.
    pub fn with_file(mut self, name: &str, content: &[u8]) -> Self {
        self.files.retain(|(n, _)| n != name);
        self.files.push((name.to_owned(), content.to_vec()));
        self
    }
}

/// Where a manifest puts its wasm (`plugin.wasm` unless `wasm = "…"` says).
fn wasm_path(manifest: &str) -> String {
    manifest
        .lines()
        .find_map(|l| {
            let v = l
                .trim()
                .strip_prefix("wasm")?
                .trim_start()
                .strip_prefix('=')?;
            Some(v.trim().trim_matches('"').to_owned())
        })
        .unwrap_or_else(|| "plugin.wasm".to_owned())
}
