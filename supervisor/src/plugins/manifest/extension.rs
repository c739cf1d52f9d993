//! `extension.json`: a tau extension as tau writes it, read as a hook plugin.
//!
//! A folder with `extension.json` and no `plugin.toml` is a tau extension. tau's
//! own rules are kept, with tau's words where tau has them: `schema_version` 1,
//! an `id` and a `version`, `runtime` `wasm` or `process`, an `entrypoint` inside
//! the folder, `hooks` and `permissions` from tau's lists and each named once,
//! `timeout_ms` in 1..=300000 (5000 when absent), and positive `wasm` limits.
//! Then it becomes a tarkd manifest: a `hook` plugin whose module is the
//! entrypoint, which receives only the hook events it declares (reported as
//! activation events `onHook:run-start`, ...), and whose limits are requested as `[tau]` requests them, capped by tarkd's
//! policy. A `process` extension has no module: its entrypoint runs as a
//! jailed command per hook (the command tools' jail), which needs the shell
//! capability, declared by tau's `run-commands` and approved by the operator
//! like any other. Nothing else in it grants a capability: tau's other
//! permissions and wasm modes are reported, and an extension reaches the host
//! only through what the operator approves.

use std::collections::{BTreeMap, HashSet};

use serde::Deserialize;

use super::tau::{self, RawTau, RawTauWasm};
use super::{Capabilities, Manifest, ManifestError, PluginType, valid_name};

/// The file a tau extension's folder has instead of `plugin.toml`.
pub const FILE: &str = "extension.json";

/// tau's hooks, in tau's order.
pub const HOOKS: [&str; 6] = [
    "run-start",
    "run-end",
    "pre-tool-call",
    "post-tool-call",
    "message-transform",
    "policy-override",
];

const PERMISSIONS: [&str; 4] = ["read-files", "write-files", "run-commands", "network"];
const TIMEOUT_MS_DEFAULT: u64 = 5_000;
const TIMEOUT_MS_MAX: u64 = 300_000;

#[derive(Deserialize)]
struct RawExtension {
    schema_version: Option<u64>,
    id: Option<String>,
    version: Option<String>,
    runtime: Option<String>,
    entrypoint: Option<String>,
    #[serde(default)]
    hooks: Vec<String>,
    #[serde(default)]
    permissions: Vec<String>,
    #[serde(default)]
    tools: Vec<serde_json::Value>,
    #[serde(default)]
    commands: Vec<serde_json::Value>,
    timeout_ms: Option<u64>,
    #[serde(default)]
    wasm: RawTauWasm,
    /// Fields tau does not define: warnings, as unknown keys are in plugin.toml.
    #[serde(flatten)]
    unknown: BTreeMap<String, serde_json::Value>,
}

/// Parses `extension.json` text into a hook plugin's manifest. `folder` is the
/// plugin's folder name, which must equal the extension's `id`.
pub fn parse(text: &str, folder: &str) -> Result<Manifest, ManifestError> {
    let raw: RawExtension =
        serde_json::from_str(text).map_err(|e| ManifestError::one(format!("{FILE}: {e}")))?;
    let mut problems = Vec::new();
    let mut warnings: Vec<String> = raw
        .unknown
        .keys()
        .map(|k| format!("{FILE}: unknown field {k:?} (ignored; check its spelling)"))
        .collect();
    match raw.schema_version {
        Some(1) => {}
        Some(v) => problems.push(format!(
            "unsupported extension manifest schema: schema_version {v} (this tarkd reads 1)"
        )),
        None => problems.push("schema_version is required (1)".to_owned()),
    }
    let id = raw.id.unwrap_or_default();
    if id.trim().is_empty() {
        problems.push("id is required".to_owned());
    } else if !valid_name(&id) {
        problems.push(format!(
            "id {id:?} must be lowercase letters, digits and hyphens (it is the plugin's name)"
        ));
    } else if id != folder {
        problems.push(format!("id {id:?} does not match its folder {folder:?}"));
    }
    let version = match raw.version.as_deref().map(semver::Version::parse) {
        None => {
            problems.push("version is required".to_owned());
            None
        }
        Some(Err(e)) => {
            problems.push(format!("version is not semver: {e}"));
            None
        }
        Some(Ok(v)) => Some(v),
    };
    let process = match raw.runtime.as_deref() {
        Some("wasm") => false,
        Some("process") => true,
        Some(r) => {
            problems.push(format!(
                "unsupported extension runtime {r:?}: expected wasm or process"
            ));
            false
        }
        None => {
            problems.push("runtime is required (wasm or process)".to_owned());
            false
        }
    };
    let entrypoint = entrypoint(raw.entrypoint.as_deref().unwrap_or(""), &mut problems);
    for (field, list, known) in [
        ("hooks", &raw.hooks, &HOOKS[..]),
        ("permissions", &raw.permissions, &PERMISSIONS[..]),
    ] {
        let mut seen = HashSet::new();
        for item in list {
            if !known.contains(&item.as_str()) {
                problems.push(format!(
                    "unsupported extension {field} entry {item:?}: expected one of {}",
                    known.join(", ")
                ));
            } else if !seen.insert(item) {
                problems.push(format!(
                    "extension manifest '{field}' contains duplicate entries"
                ));
            }
        }
    }
    let timeout_ms = raw.timeout_ms.unwrap_or(TIMEOUT_MS_DEFAULT);
    if timeout_ms > TIMEOUT_MS_MAX {
        problems.push(format!(
            "extension manifest 'timeout_ms' must be <= {TIMEOUT_MS_MAX}"
        ));
    }
    // tau's gate for running a process is `run-commands`; tarkd's is the shell
    // capability, which the operator approves like any other.
    let run_commands = raw.permissions.iter().any(|p| p == "run-commands");
    if !run_commands && !raw.hooks.is_empty() {
        warnings.push(
            "an extension without permission \"run-commands\" runs none of its hooks (tau's rule): each is refused".to_owned(),
        );
    }
    for p in raw.permissions.iter().filter(|p| *p != "run-commands") {
        warnings.push(format!(
            "permission {p:?} grants nothing by itself: tarkd grants only capabilities the operator approved"
        ));
    }
    if !raw.tools.is_empty() || !raw.commands.is_empty() {
        warnings.push(format!(
            "{} tools and {} commands are not served from {FILE}: only its hooks are",
            raw.tools.len(),
            raw.commands.len()
        ));
    }
    let limits = tau::validate(
        RawTau {
            timeout_ms: Some(timeout_ms),
            wasm: raw.wasm,
        },
        &mut problems,
        &mut warnings,
    );
    match (version, problems.is_empty()) {
        (Some(version), true) => Ok(Manifest {
            description: format!("tau extension {id}"),
            name: id,
            version,
            plugin_type: PluginType::Hook,
            author: String::new(),
            homepage: String::new(),
            license: String::new(),
            min_tark_version: None,
            wasm: if process {
                String::new()
            } else {
                entrypoint.clone()
            },
            capabilities: Capabilities {
                shell: process && run_commands,
                ..Capabilities::default()
            },
            contributes: Default::default(),
            api_version: "0.1".to_owned(),
            activation: raw.hooks.iter().map(|h| format!("onHook:{h}")).collect(),
            config: None,
            oauth: None,
            limits,
            commands: Vec::new(),
            process: process.then_some(entrypoint),
            tau_permissions: raw.permissions,
            subscriptions: Some(raw.hooks),
            warnings,
        }),
        _ => Err(ManifestError { problems }),
    }
}

/// The entrypoint as a path inside the folder (`./` dropped), or a problem.
fn entrypoint(raw: &str, problems: &mut Vec<String>) -> String {
    use std::path::{Component, Path};
    let trimmed = raw.trim();
    if trimmed.is_empty() {
        problems.push("extension manifest entrypoint must not be empty".to_owned());
        return String::new();
    }
    let mut parts = Vec::new();
    for c in Path::new(trimmed).components() {
        match c {
            Component::Normal(p) => parts.push(p.to_string_lossy().into_owned()),
            Component::CurDir => {}
            Component::ParentDir => {
                problems.push(format!(
                    "extension manifest entrypoint '{trimmed}' must not contain parent traversals"
                ));
                return String::new();
            }
            Component::RootDir | Component::Prefix(_) => {
                problems.push(format!(
                    "extension manifest entrypoint '{trimmed}' must be relative"
                ));
                return String::new();
            }
        }
    }
    if parts.is_empty() {
        problems.push(format!(
            "extension manifest entrypoint '{trimmed}' names no file"
        ));
    }
    parts.join("/")
}

#[cfg(test)]
mod tests;
