//! `plugin.toml`: parsing and validation, as tark writes it.
//!
//! What tarkd uses is checked strictly, and every problem is reported at once,
//! so an author fixes a manifest in one round. A key tarkd does not know (a
//! typo, or a field of a newer tark) does not stop the plugin: it becomes a
//! warning in the plugin's diagnostics rather than vanishing, so a misspelt
//! `[capabilites]` is seen instead of silently granting nothing.

use std::fmt;
use std::path::Path;

use serde::Deserialize;

pub mod commands;
pub mod extension;
pub mod oauth;
pub mod tau;

pub use commands::CommandTool;
pub use oauth::OAuth;
pub use tau::Requested;

/// The tark plugin API versions this tarkd serves (`plugin.api_version` is a
/// semver requirement, tark's default "0.1").
pub const API_VERSION: semver::Version = semver::Version::new(0, 1, 0);

/// The kinds of plugin tark knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PluginType {
    Auth,
    Tool,
    Provider,
    Channel,
    Hook,
}

impl fmt::Display for PluginType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PluginType::Auth => "auth",
            PluginType::Tool => "tool",
            PluginType::Provider => "provider",
            PluginType::Channel => "channel",
            PluginType::Hook => "hook",
        })
    }
}

/// What a plugin declares it needs. Everything absent is denied.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(default)]
pub struct Capabilities {
    pub storage: bool,
    pub http: Vec<String>,
    pub env: Vec<String>,
    pub fs_read: Vec<String>,
    pub shell: bool,
}

/// A validated manifest.
#[derive(Debug, Clone, PartialEq)]
pub struct Manifest {
    pub name: String,
    pub version: semver::Version,
    pub plugin_type: PluginType,
    pub description: String,
    pub author: String,
    pub homepage: String,
    pub license: String,
    pub min_tark_version: Option<semver::Version>,
    /// The wasm file, relative to the plugin folder.
    pub wasm: String,
    pub capabilities: Capabilities,
    /// `[contributes]`: the providers and channels the plugin adds.
    pub contributes: Contributes,
    /// `plugin.api_version` as written ("0.1" when absent).
    pub api_version: String,
    /// `[activation] events`. tarkd starts a worker on the first call that
    /// needs it, per tenant, whatever the events say; they are reported.
    pub activation: Vec<String>,
    /// `[config]`: the plugin's own settings schema, kept as written.
    pub config: Option<toml::Value>,
    /// `[oauth]`: the sign-in tarkd runs for the plugin.
    pub oauth: Option<OAuth>,
    /// Per-call limits the plugin asks for (`[tau]`), capped by tarkd's policy.
    pub limits: Requested,
    /// `[[tools]]`: command tools, for a plugin with no module.
    pub commands: Vec<CommandTool>,
    /// A tau process extension's program, relative to its folder: its hooks
    /// run as jailed commands (behind the shell capability, tau's
    /// `run-commands`), and it has no module.
    pub process: Option<String>,
    /// tau's `permissions` as an extension.json declares them (none for
    /// plugin.toml). tau runs no hook of an extension without `run-commands`.
    pub tau_permissions: Vec<String>,
    /// The hook events (tau's hook names) a hook plugin receives: `None`, every
    /// event (plugin.toml declares none); `Some`, only these (extension.json's
    /// `hooks`, as tau delivers them).
    pub subscriptions: Option<Vec<String>>,
    /// Keys tarkd did not understand and capabilities it does not grant.
    pub warnings: Vec<String>,
}

/// `[contributes]` as tark's manifests write it.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct Contributes {
    pub providers: Vec<Contribution>,
    pub channels: Vec<Contribution>,
    /// tark's command palette entries; kept, not used by tarkd.
    pub commands: Vec<toml::Value>,
    /// tark's settings schema entries; kept, not used by tarkd.
    pub configuration: Vec<toml::Value>,
}

/// One contributed provider or channel.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct Contribution {
    pub id: String,
    pub name: String,
    pub description: String,
    /// For a provider: the agent's built-in provider it authenticates.
    pub base_provider: String,
}

impl Manifest {
    /// Why tau would not run this extension's hooks, if it would not: an
    /// extension.json without permission `run-commands`.
    pub fn tau_refusal(&self, hook: &str) -> Option<String> {
        (self.subscriptions.is_some() && !self.tau_permissions.iter().any(|p| p == "run-commands"))
            .then(|| {
                format!(
                    "hook '{hook}' requires permission 'run-commands': its extension.json does not declare it"
                )
            })
    }

    /// Whether this hook plugin receives the hook event `hook` (tau's name).
    pub fn receives(&self, hook: &str) -> bool {
        self.subscriptions
            .as_ref()
            .is_none_or(|hooks| hooks.iter().any(|h| h == hook))
    }

    /// The built-in provider an (auth-only) provider plugin stands in for.
    pub fn base_provider(&self) -> &str {
        self.contributes
            .providers
            .iter()
            .map(|p| p.base_provider.as_str())
            .find(|b| !b.is_empty())
            .unwrap_or("")
    }
}

/// Why a manifest was refused: every problem found, in file order.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", .problems.join("; "))]
pub struct ManifestError {
    pub problems: Vec<String>,
}

impl ManifestError {
    fn one(problem: impl Into<String>) -> Self {
        Self {
            problems: vec![problem.into()],
        }
    }
}

#[derive(Deserialize)]
struct Raw {
    plugin: Option<RawPlugin>,
    #[serde(default)]
    capabilities: RawCapabilities,
    #[serde(default)]
    contributes: Contributes,
    #[serde(default)]
    activation: RawActivation,
    config: Option<toml::Value>,
    oauth: Option<oauth::RawOAuth>,
    tau: Option<tau::RawTau>,
    #[serde(default)]
    tools: Vec<commands::RawTool>,
}

#[derive(Default, Deserialize)]
#[serde(default)]
struct RawCapabilities {
    storage: bool,
    http: Vec<String>,
    env: Vec<String>,
    fs_read: Vec<String>,
    shell: bool,
    /// tark's workspace paths: declared, but no import of tark's ABI uses it.
    filesystem: Vec<String>,
}

#[derive(Default, Deserialize)]
#[serde(default)]
struct RawActivation {
    events: Vec<String>,
}

/// Activation events tark defines: `onStartup` and `onKIND:ID`.
fn known_activation(event: &str) -> bool {
    event == "onStartup"
        || ["onProvider:", "onCommand:", "onChannel:"]
            .iter()
            .any(|p| event.strip_prefix(p).is_some_and(|id| !id.is_empty()))
}

/// `plugin.colour`, `contributes.providers.0.basse_provider`: the key's place
/// as the author wrote it (serde_ignored's own form marks optional tables `?`).
fn dotted(path: &serde_ignored::Path) -> String {
    use serde_ignored::Path;
    let (parent, own) = match path {
        Path::Root => return String::new(),
        Path::Seq { parent, index } => (parent, index.to_string()),
        Path::Map { parent, key } => (parent, key.clone()),
        Path::Some { parent }
        | Path::NewtypeStruct { parent }
        | Path::NewtypeVariant { parent } => return dotted(parent),
    };
    match dotted(parent) {
        p if p.is_empty() => own,
        p => format!("{p}.{own}"),
    }
}

/// Reads the document, collecting the keys serde skipped as warnings.
fn read(text: &str) -> Result<(Raw, Vec<String>), ManifestError> {
    let de = toml::Deserializer::parse(text)
        .map_err(|e| ManifestError::one(format!("plugin.toml: {e}")))?;
    let mut warnings = Vec::new();
    let raw: Raw = serde_ignored::deserialize(de, |path| {
        warnings.push(format!(
            "plugin.toml: unknown key {} (ignored; check its spelling)",
            dotted(&path)
        ));
    })
    .map_err(|e| ManifestError::one(format!("plugin.toml: {e}")))?;
    Ok((raw, warnings))
}

#[derive(Deserialize)]
struct RawPlugin {
    name: Option<String>,
    version: Option<String>,
    #[serde(rename = "type")]
    plugin_type: Option<String>,
    #[serde(default)]
    description: String,
    #[serde(default)]
    author: String,
    #[serde(default)]
    homepage: String,
    #[serde(default)]
    license: String,
    min_tark_version: Option<String>,
    api_version: Option<String>,
    wasm: Option<String>,
}

/// Lowercase ASCII letters, digits and single hyphens inside; 1 to 64 bytes.
pub fn valid_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.starts_with('-')
        && !name.ends_with('-')
        && !name.contains("--")
}

/// The manifest files a plugin folder may have, the first found is read:
/// tark's `plugin.toml`, or a tau extension's `extension.json`.
pub const FILES: [&str; 2] = ["plugin.toml", extension::FILE];

/// Parses the manifest `file` (one of [`FILES`]) of the plugin folder `folder`.
pub fn parse_file(
    file: &str,
    text: &str,
    folder: &str,
    host_version: &semver::Version,
) -> Result<Manifest, ManifestError> {
    if file == extension::FILE {
        extension::parse(text, folder)
    } else {
        parse(text, folder, host_version)
    }
}

/// Parses `plugin.toml` text and validates it. `folder` is the plugin's folder
/// name, which must equal the plugin name (it is the plugin's id).
pub fn parse(
    text: &str,
    folder: &str,
    host_version: &semver::Version,
) -> Result<Manifest, ManifestError> {
    let (raw, mut warnings) = read(text)?;
    let Some(p) = raw.plugin else {
        return Err(ManifestError::one("plugin.toml has no [plugin] table"));
    };
    let mut problems = Vec::new();
    let name = p.name.unwrap_or_default();
    if name.is_empty() {
        problems.push("plugin.name is required".to_owned());
    } else if !valid_name(&name) {
        problems.push(format!(
            "plugin.name {name:?} must be lowercase letters, digits and hyphens"
        ));
    } else if name != folder {
        problems.push(format!(
            "plugin.name {name:?} does not match its folder {folder:?}"
        ));
    }
    let version = match p.version.as_deref().map(semver::Version::parse) {
        None => {
            problems.push("plugin.version is required".to_owned());
            None
        }
        Some(Err(e)) => {
            problems.push(format!(
                "plugin.version {:?} is not semver: {e}",
                p.version.unwrap_or_default()
            ));
            None
        }
        Some(Ok(v)) => Some(v),
    };
    let plugin_type = match p.plugin_type.as_deref() {
        None => {
            problems
                .push("plugin.type is required (auth, tool, provider, channel or hook)".to_owned());
            None
        }
        Some(t) => match toml::Value::String(t.to_owned()).try_into::<PluginType>() {
            Ok(t) => Some(t),
            Err(_) => {
                problems.push(format!(
                    "plugin.type {t:?} is not one of auth, tool, provider, channel, hook"
                ));
                None
            }
        },
    };
    let min_tark_version = match p.min_tark_version.as_deref().map(semver::Version::parse) {
        None => None,
        Some(Err(e)) => {
            problems.push(format!("plugin.min_tark_version is not semver: {e}"));
            None
        }
        Some(Ok(v)) if &v > host_version => {
            problems.push(format!(
                "needs tark {v} or newer; this host is {host_version}"
            ));
            None
        }
        Some(Ok(v)) => Some(v),
    };
    let api_version = p.api_version.unwrap_or_else(|| "0.1".to_owned());
    match semver::VersionReq::parse(&api_version) {
        Ok(req) if req.matches(&API_VERSION) => {}
        Ok(_) => problems.push(format!(
            "plugin.api_version {api_version:?} is not supported: this tarkd serves tark plugin API {API_VERSION}"
        )),
        Err(e) => problems.push(format!(
            "plugin.api_version {api_version:?} is not a version requirement: {e}"
        )),
    }
    let wasm_named = p.wasm.is_some();
    let wasm = p.wasm.unwrap_or_else(|| "plugin.wasm".to_owned());
    let wasm_path = Path::new(&wasm);
    if wasm.is_empty()
        || wasm_path.is_absolute()
        || wasm_path
            .components()
            .any(|c| !matches!(c, std::path::Component::Normal(_)))
    {
        problems.push(format!(
            "plugin.wasm {wasm:?} must be a path inside the plugin folder"
        ));
    }
    let raw_caps = raw.capabilities;
    if !raw_caps.filesystem.is_empty() {
        warnings.push(format!(
            "capabilities.filesystem {:?} grants nothing: tark's plugin ABI has no import that uses it (fs_read is how a plugin reads files)",
            raw_caps.filesystem
        ));
    }
    let caps = Capabilities {
        storage: raw_caps.storage,
        http: raw_caps.http,
        env: raw_caps.env,
        fs_read: raw_caps.fs_read,
        shell: raw_caps.shell,
    };
    for e in raw
        .activation
        .events
        .iter()
        .filter(|e| !known_activation(e))
    {
        warnings.push(format!(
            "activation event {e:?} is not one tark defines (onStartup, onProvider:ID, onCommand:ID, onChannel:ID)"
        ));
    }
    if raw.config.as_ref().is_some_and(|c| !c.is_table()) {
        problems.push("config must be a table".to_owned());
    }
    let oauth = raw.oauth.and_then(|o| oauth::validate(o, &mut problems));
    let limits = raw
        .tau
        .map(|t| tau::validate(t, &mut problems, &mut warnings))
        .unwrap_or_default();
    for h in &caps.http {
        if let Err(e) = crate::broker::hosts::parse_rule(h) {
            problems.push(format!("capabilities.http entry {e}"));
        }
    }
    for e in caps
        .env
        .iter()
        .filter(|e| !crate::broker::policy::valid_env_pattern(e))
    {
        problems.push(format!(
            "capabilities.env entry {e:?} must be {}",
            crate::broker::policy::ENV_RULE
        ));
    }
    for f in caps
        .fs_read
        .iter()
        .filter(|f| !crate::broker::policy::valid_fs_entry(f))
    {
        problems.push(format!(
            "capabilities.fs_read entry {f:?} must be an absolute, ~/ or ./ path without .."
        ));
    }
    let commands = commands::validate(raw.tools, plugin_type, &caps, wasm_named, &mut problems);
    match (version, plugin_type, problems.is_empty()) {
        (Some(version), Some(plugin_type), true) => Ok(Manifest {
            name,
            version,
            plugin_type,
            description: p.description,
            author: p.author,
            homepage: p.homepage,
            license: p.license,
            min_tark_version,
            wasm,
            capabilities: caps,
            contributes: raw.contributes,
            api_version,
            activation: raw.activation.events,
            config: raw.config,
            oauth,
            limits,
            commands,
            process: None,
            tau_permissions: Vec::new(),
            subscriptions: None,
            warnings,
        }),
        _ => Err(ManifestError { problems }),
    }
}

#[cfg(test)]
mod tests;
