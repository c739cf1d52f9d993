//! `plugin.toml`: parsing and validation.
//!
//! Published plugins carry tables tarkd does not use (`[contributes]`,
//! `[activation]`, `[oauth]`, ...); unknown tables and keys are ignored so they
//! keep loading. What tarkd does use is checked strictly, and every problem is
//! reported at once, so an author fixes a manifest in one round.

use std::fmt;
use std::path::Path;

use serde::Deserialize;

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
#[derive(Debug, Clone, PartialEq, Eq)]
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
}

/// `[contributes]` as tark's manifests write it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct Contributes {
    pub providers: Vec<Contribution>,
    pub channels: Vec<Contribution>,
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
    capabilities: Capabilities,
    #[serde(default)]
    contributes: Contributes,
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

/// Parses `plugin.toml` text and validates it. `folder` is the plugin's folder
/// name, which must equal the plugin name (it is the plugin's id).
pub fn parse(
    text: &str,
    folder: &str,
    host_version: &semver::Version,
) -> Result<Manifest, ManifestError> {
    let raw: Raw =
        toml::from_str(text).map_err(|e| ManifestError::one(format!("plugin.toml: {e}")))?;
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
    let caps = raw.capabilities;
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
            "capabilities.env entry {e:?} must be a variable name or PREFIX_*"
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
        }),
        _ => Err(ManifestError { problems }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host() -> semver::Version {
        semver::Version::new(0, 5, 0)
    }

    fn manifest(plugin: &str, caps: &str) -> String {
        format!("[plugin]\n{plugin}\n[capabilities]\n{caps}\n")
    }

    const OK: &str = "name = \"my-plugin\"\nversion = \"1.0.0\"\ntype = \"tool\"";

    #[test]
    fn a_full_published_manifest_loads_and_ignores_unknown_tables() {
        let text = r#"
api_version = "0.1"
[plugin]
name = "my-plugin"
version = "0.2.3-beta.1"
type = "provider"
description = "d"
min_tark_version = "0.5.0"
wasm = "build/p.wasm"
[capabilities]
storage = true
http = ["api.example.com", "*.googleapis.com", "http://localhost:11434"]
env = ["MY_API_KEY", "GEMINI_*"]
fs_read = ["~/.config/app/credentials.json", "./data"]
[contributes]
providers = [{ id = "x" }]
[activation]
events = ["onStartup"]
[oauth]
flow = "pkce"
"#;
        let m = parse(text, "my-plugin", &host());
        let m = m.ok();
        assert!(
            m.as_ref()
                .is_some_and(|m| m.plugin_type == PluginType::Provider && m.wasm == "build/p.wasm")
        );
        assert!(m.is_some_and(|m| m.capabilities.storage && m.capabilities.env.len() == 2));
    }

    #[test]
    fn defaults_apply() {
        let m = parse(&manifest(OK, ""), "my-plugin", &host()).ok();
        assert!(
            m.is_some_and(|m| m.wasm == "plugin.wasm" && m.capabilities == Capabilities::default())
        );
    }

    #[test]
    fn invalid_manifests_name_the_problem() {
        let cases: &[(&str, &str, &str)] = &[
            (
                "name = \"My_Plugin\"\nversion = \"1.0.0\"\ntype = \"tool\"",
                "",
                "lowercase",
            ),
            (
                "version = \"1.0.0\"\ntype = \"tool\"",
                "",
                "plugin.name is required",
            ),
            (
                "name = \"my-plugin\"\nversion = \"1.0\"\ntype = \"tool\"",
                "",
                "not semver",
            ),
            (
                "name = \"my-plugin\"\ntype = \"tool\"",
                "",
                "plugin.version is required",
            ),
            (
                "name = \"my-plugin\"\nversion = \"1.0.0\"\ntype = \"widget\"",
                "",
                "not one of",
            ),
            (
                "name = \"my-plugin\"\nversion = \"1.0.0\"",
                "",
                "plugin.type is required",
            ),
            (
                "name = \"other\"\nversion = \"1.0.0\"\ntype = \"tool\"",
                "",
                "does not match its folder",
            ),
            (
                OK,
                "http = [\"https://ok.com@evil.com\"]",
                "capabilities.http",
            ),
            (OK, "http = [\"api.example.com/path\"]", "capabilities.http"),
            (OK, "http = [\"\"]", "capabilities.http"),
            (OK, "http = [\"host:0\"]", "capabilities.http"),
            (OK, "env = [\"*\"]", "capabilities.env"),
            (OK, "env = [\"A-B\"]", "capabilities.env"),
            (OK, "fs_read = [\"\"]", "capabilities.fs_read"),
            (OK, "storage = \"yes\"", "invalid type"),
            (
                "name = \"my-plugin\"\nversion = \"1.0.0\"\ntype = \"tool\"\nwasm = \"../x.wasm\"",
                "",
                "inside the plugin folder",
            ),
            (
                "name = \"my-plugin\"\nversion = \"1.0.0\"\ntype = \"tool\"\nwasm = \"/etc/x.wasm\"",
                "",
                "inside the plugin folder",
            ),
            (
                "name = \"my-plugin\"\nversion = \"1.0.0\"\ntype = \"tool\"\nmin_tark_version = \"9.0.0\"",
                "",
                "needs tark 9.0.0",
            ),
        ];
        for (plugin, caps, want) in cases {
            let err = parse(&manifest(plugin, caps), "my-plugin", &host())
                .err()
                .map(|e| e.to_string());
            assert!(
                err.as_deref().is_some_and(|e| e.contains(want)),
                "{plugin:?} {caps:?} gave {err:?}"
            );
        }
        let garbage = parse("this is [not toml", "x", &host())
            .err()
            .map(|e| e.to_string());
        assert!(garbage.is_some_and(|e| e.starts_with("plugin.toml:")));
        let missing = parse("[other]\n", "x", &host())
            .err()
            .map(|e| e.to_string());
        assert!(missing.is_some_and(|e| e.contains("no [plugin] table")));
    }

    #[test]
    fn all_problems_are_reported_together() {
        let err = parse(
            &manifest("name = \"A\"\nversion = \"x\"", "env = [\"*\"]"),
            "a",
            &host(),
        )
        .err();
        assert_eq!(err.map(|e| e.problems.len()), Some(4));
    }

    #[test]
    fn name_table() {
        for (name, ok) in [
            ("a", true),
            ("my-plugin2", true),
            ("-a", false),
            ("a-", false),
            ("a--b", false),
            ("A", false),
            ("a_b", false),
            ("", false),
            ("a.b", false),
            (&"a".repeat(65), false),
        ] {
            assert_eq!(valid_name(name), ok, "{name:?}");
        }
    }
}
